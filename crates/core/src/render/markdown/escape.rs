//! Escaping of everything that comes from files or the live systems: HTML parts get entities
//! and no line breaks (a blank line would end an HTML block), Markdown parts get backslash
//! escapes.

/// Text for an HTML part (a `<summary>`): entities for `& < > "`, and any line break or control
/// character as a space, since a blank line would end the HTML block. `@` and `#` become
/// entities too: free text such as a suspension reason must not mention people or teams, or
/// link issues, from a plan comment.
pub(super) fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in single_line(text).chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '@' => out.push_str("&#64;"),
            '#' => out.push_str("&#35;"),
            other => out.push(other),
        }
    }
    out
}

/// Text for a Markdown part: HTML escaped, and Markdown punctuation backslash-escaped so a value
/// cannot start a code span, emphasis, a link or a table cell.
pub(super) fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in html(text).chars() {
        if matches!(character, '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~') {
            out.push('\\');
        }
        out.push(character);
    }
    out
}

/// A message written with `code` spans in backticks (conflicts, refusals, hints): the spans
/// become `<code>`, everything escaped.
pub(super) fn rich(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len().is_multiple_of(2) {
        // Unbalanced backticks: no spans at all.
        return markdown(text);
    }
    parts
        .iter()
        .enumerate()
        .map(|(index, part)| {
            if index % 2 == 1 {
                format!("<code>{}</code>", markdown(part))
            } else {
                markdown(part)
            }
        })
        .collect()
}

pub(super) fn single_line(text: &str) -> String {
    text.split(|character: char| {
        character.is_control() || character == '\u{2028}' || character == '\u{2029}'
    })
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join(" ")
}
