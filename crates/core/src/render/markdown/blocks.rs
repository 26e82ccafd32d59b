//! One collapsible block per tenant: a one-line summary, why apply leaves the tenant alone if
//! it does, and its lines as a `diff` code block; the one-line form of a block that did not
//! fit; and the compact table of new tenants.

use super::escape::{cell, code, html, html_code, rich};
use super::summary::hint;
use super::Entry;
use crate::plan::TenantChange;
use crate::render::quote;
use crate::render::view::{Line as ViewLine, Mark, Note, TenantView};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write;

/// ``- `~` `acme` update``: a block that did not fit.
pub(super) fn collapsed_line(entry: &Entry) -> String {
    let mut line = format!(
        "- `{}` {} {}",
        entry.symbol(),
        code(&entry.change.tenant),
        verbs(entry.change)
    );
    if let Some(Note::Reason(reason)) = TenantView::of(entry.change).and_then(|view| view.note) {
        let _ = write!(line, " — reason: {}", code(&reason));
    }
    if entry.change.blocked {
        line.push_str(" (blocked by a conflict)");
    } else if !entry.refusals.is_empty() {
        line.push_str(" (refused)");
    }
    line.push('\n');
    line
}

/// `update, repair`, with `delete (soft)` for a soft delete.
pub(super) fn verbs(change: &TenantChange) -> String {
    TenantView::of(change)
        .map(|view| view.verbs)
        .unwrap_or_default()
}

/// One `<details>` block: a one-line summary, why apply leaves the tenant alone if it does, and
/// the diff; just the summary line when there is nothing to unfold.
pub(super) fn block(entry: &Entry) -> String {
    let change = entry.change;
    let view = TenantView::of(change);
    let mut headline = format!(
        "<code>{}</code> <b>{}</b> {}",
        entry.symbol(),
        html(&change.tenant),
        view.as_ref()
            .map(|view| view.verbs.as_str())
            .unwrap_or_default()
    );
    match view.as_ref().and_then(|view| view.note.as_ref()) {
        // Free text in `<code>`: the only place GitHub links no `#12` and mentions no `@team`.
        Some(Note::Reason(reason)) => {
            let _ = write!(headline, " — reason: {}", html_code(reason));
        }
        Some(note) => {
            let _ = write!(headline, " — {}", html(&note.to_string()));
        }
        None => {}
    }
    if entry.destroys {
        if let Some(rows) = change.at_risk.as_ref().and_then(|risk| risk.rows) {
            let _ = write!(
                headline,
                " — <b>{} at risk</b> (a migration drops or rewrites data)",
                crate::render::view::count(rows, "row")
            );
        }
    }
    if change.blocked {
        headline.push_str(" — <b>blocked by a conflict</b>, left alone");
    } else if !entry.refusals.is_empty() {
        headline.push_str(" — <b>refused</b>");
    }

    let body = view
        .as_ref()
        .map(|view| diff_body(view, entry.primary() == crate::plan::Action::Create))
        .unwrap_or_default();
    if body.is_empty() && entry.conflicts.is_empty() && entry.refusals.is_empty() {
        // Nothing to unfold (a tenant that only migrates: the SQL is shown once, above).
        return format!("- {headline}\n");
    }

    let mut out = String::new();
    let open = if entry.open() { " open" } else { "" };
    let _ = writeln!(out, "<details{open}><summary>{headline}</summary>\n");
    for conflict in &entry.conflicts {
        let _ = writeln!(
            out,
            "**Conflict:** {}{}\n",
            rich(&conflict.message),
            hint(conflict.hint.as_deref())
        );
    }
    for refusal in &entry.refusals {
        let _ = writeln!(
            out,
            "**Refused:** {}{}\n",
            rich(&refusal.message),
            hint(refusal.hint.as_deref())
        );
    }
    let fence = fence(&body);
    let _ = writeln!(out, "{fence}diff\n{body}{fence}\n\n</details>");
    out
}

/// A fence longer than any run of backticks in `body`, so no value can close it.
pub(super) fn fence(body: &str) -> String {
    "`".repeat((super::escape::longest_backtick_run(body) + 1).max(3))
}

/// One thing that changes: its lines before and after. Absent on one side for a create or a
/// removal; unchanged lines on both sides show as context.
pub(super) struct Item {
    before: Vec<String>,
    after: Vec<String>,
}

impl Item {
    fn added(line: String) -> Self {
        Item {
            before: Vec::new(),
            after: vec![line],
        }
    }

    fn removed(line: String) -> Self {
        Item {
            before: vec![line],
            after: Vec::new(),
        }
    }

    fn context(line: String) -> Self {
        Item {
            before: vec![line.clone()],
            after: vec![line],
        }
    }
}

/// The `+`/`-` lines of a tenant: each item diffed on its own so old and new values of a field
/// stay next to each other, and lines of multi-line values diffed by `similar`. A create leaves
/// out the fields that only repeat a default (`protected: false`, the default retention, the
/// billing plan's own configuration, `status: active`): what is left is what the file says.
pub(super) fn diff_body(view: &TenantView, create: bool) -> String {
    let mut body = String::new();
    let lines = view
        .lines
        .iter()
        .filter(|line| !(create && matches!(line, ViewLine::Field(field) if field.inherited)));
    for item in lines.map(item) {
        let before = joined(&item.before);
        let after = joined(&item.after);
        let diff = TextDiff::from_lines(before.as_str(), after.as_str());
        for line in diff.iter_all_changes() {
            let sign = match line.tag() {
                ChangeTag::Delete => '-',
                ChangeTag::Insert => '+',
                ChangeTag::Equal => ' ',
            };
            let _ = writeln!(body, "{sign} {}", line.value().trim_end_matches('\n'));
        }
    }
    body
}

pub(super) fn joined(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// A line of the view as lines before and after the change.
pub(super) fn item(line: &ViewLine) -> Item {
    match line {
        ViewLine::Field(field) => {
            let lines = |value: &Option<Value>| {
                value
                    .as_ref()
                    .map(|value| value_lines(&field.path, value))
                    .unwrap_or_default()
            };
            Item {
                before: lines(&field.old),
                after: lines(&field.new),
            }
        }
        ViewLine::Resource(line) => {
            let shown = format!("{}: {}", line.label, line.value_with_detail());
            match (line.mark, &line.old) {
                (Mark::Added, _) => Item::added(shown),
                (Mark::Removed, _) => Item::removed(shown),
                (Mark::Context, _) => Item::context(shown),
                (Mark::Changed, Some(old)) => Item {
                    before: vec![format!("{}: {old}", line.label)],
                    after: vec![format!("{}: {}", line.label, line.value)],
                },
                // Drift corrected in place: what was wrong, then the same resource corrected.
                (Mark::Changed, None) => Item {
                    before: vec![shown],
                    after: vec![format!("{}: {} (corrected)", line.label, line.value)],
                },
            }
        }
    }
}

/// `path: value`, or for a multi-line string `path: |` and the lines indented, so the diff of a
/// long text shows the lines that changed, not the whole text twice.
pub(super) fn value_lines(path: &str, value: &Value) -> Vec<String> {
    match value {
        // Statuses are keywords, shown bare as in the text plan.
        Value::String(text) if path == "status" => vec![format!("{path}: {}", code_line(text))],
        Value::String(text) if text.contains('\n') => {
            let mut lines = vec![format!("{path}: |")];
            lines.extend(
                text.split('\n')
                    .map(|line| format!("  {}", code_line(line))),
            );
            lines
        }
        Value::String(text) => vec![format!("{path}: {}", quote(text))],
        Value::Array(_) | Value::Object(_) => {
            let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
            let mut lines = vec![format!("{path}:")];
            lines.extend(pretty.lines().map(|line| format!("  {line}")));
            lines
        }
        other => vec![format!("{path}: {other}")],
    }
}

/// A line of free text inside a code block: control characters (a carriage return, an escape
/// sequence) written as escapes so each value stays on its own line.
pub(super) fn code_line(text: &str) -> String {
    text.chars()
        .flat_map(|character| {
            if character.is_control() && character != '\t' {
                character.escape_default().collect::<Vec<_>>()
            } else {
                vec![character]
            }
        })
        .collect()
}

/// The header of the table of new tenants.
pub(super) const NEW_TABLE_HEADER: &str =
    "| tenant | plan | model | max_tokens | rate limit / min |\n|:--|:--|:--|--:|--:|\n";

/// One row of the table of new tenants: id, plan, model, max_tokens and rate limit, each value
/// in a code span (a model name is free text).
pub(super) fn new_tenant_row(entry: &Entry) -> String {
    let change = entry.change;
    let Some(record) = change.record.as_ref() else {
        return format!("| {} | | | | |\n", cell(&change.tenant));
    };
    let mut id = cell(&change.tenant);
    if record.status != crate::observed::LiveStatus::Active {
        let _ = write!(id, " ({})", record.status.as_str());
    }
    format!(
        "| {id} | {} | {} | {} | {} |\n",
        cell(&record.plan),
        cell(&record.config.model),
        crate::render::thousands(u64::from(record.config.max_tokens)),
        crate::render::thousands(u64::from(record.config.rate_limit_per_minute)),
    )
}
