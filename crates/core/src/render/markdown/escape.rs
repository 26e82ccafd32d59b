//! Escaping of everything that comes from files or the live systems: HTML parts get entities
//! and no line breaks (a blank line would end an HTML block), Markdown parts get backslash
//! escapes, and free text goes into code spans.
//!
//! Why code spans: GitHub turns `#12` into an issue link and `@team` into a mention, and
//! autolinks URLs, in every text node, and an entity (`&#35;`) is decoded into a text node
//! before that happens. Only text inside code (a Markdown code span, or `<code>` in an HTML
//! block) is left alone. In Markdown (not in an HTML block), `<code>…</code>` does not help: its
//! content is an ordinary text node there, so Markdown parts use backtick code spans.

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

/// A Markdown code span holding `text` literally, on one line: the delimiter is longer than any
/// run of backticks inside, with a space of padding where the text starts or ends with one.
/// Control characters are written as escapes (`\n`) so the value stays one line.
pub(super) fn code(text: &str) -> String {
    let text = one_line(text);
    if text.is_empty() {
        return "` `".to_string();
    }
    let fence = "`".repeat(longest_backtick_run(&text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// A code span for a cell of a Markdown table: `|` is escaped, since the table splits cells
/// before code spans are read.
pub(super) fn cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}

/// `<code>…</code>` for an HTML part (a `<summary>`), where GitHub leaves the content alone.
pub(super) fn html_code(text: &str) -> String {
    let mut out = String::from("<code>");
    for character in one_line(text).chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out.push_str("</code>");
    out
}

/// Control characters (and the Unicode line separators) as escapes, so a value stays one line.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|character| {
            if character.is_control() || character == '\u{2028}' || character == '\u{2029}' {
                character.escape_default().collect::<Vec<_>>()
            } else {
                vec![character]
            }
        })
        .collect()
}

/// The longest run of backticks in `text`: a code span or fence must be longer.
pub(super) fn longest_backtick_run(text: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for character in text.chars() {
        if character == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// A message written with `code` spans in backticks (conflicts, refusals, hints): the spans
/// become Markdown code spans, the rest is escaped.
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
                code(part)
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
