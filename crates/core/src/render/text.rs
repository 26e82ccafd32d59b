//! Human output in terraform's visual language: `+` create, `~` change, `-` delete, `!` purge,
//! one block per tenant with per-field `old -> new`, and a closing summary line.

use super::view::{count, Line as ViewLine, Mark, Note, TenantView};
use super::{bytes, plural, quote, PlanContext, Style};
use crate::plan::{Action, FieldChange, Plan, TenantChange};
use crate::report::{ApplyReport, TenantOutcome, TenantResult};
use serde_json::Value;
use std::fmt::Write;

/// Width of the tenant column, so verbs line up.
const TENANT_WIDTH: usize = 26;
/// Width of the field column inside a block.
const FIELD_WIDTH: usize = 22;

/// The whole plan, header to summary line.
pub fn plan(plan: &Plan, context: &PlanContext, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tenantctl plan: `{}` against {} and chroma {}",
        context.dir, context.database, context.chroma
    );
    out.push('\n');

    // Said first: a typo in the Chroma scope would otherwise read as a fleet of creates.
    for warning in &plan.warnings {
        let _ = writeln!(out, "  {} {warning}", style.paint("33;1", "warning:"));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }

    // Migrations that drop or rewrite data, before anything else that changes.
    let destructions = super::view::destructions(plan);
    for destruction in &destructions {
        let statement = destruction.statement;
        let rows = destruction
            .rows
            .map(|rows| format!(", {} at risk", super::view::count(rows, "row")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {}{}:{} {} on {} ({}{rows})",
            style.paint("31;1", "!"),
            pad("destroys data", TENANT_WIDTH),
            statement.file,
            statement.line,
            statement.kind,
            if statement.tables.is_empty() {
                "a table named in quotes".to_string()
            } else {
                statement.tables.join(", ")
            },
            super::view::count(statement.tenants as u64, "tenant")
        );
    }
    if !destructions.is_empty() {
        out.push('\n');
    }

    if !plan.canary.is_empty() {
        let _ = writeln!(
            out,
            "  {} {}{} (migrated first; the rest of the fleet starts when all of them succeeded)",
            style.paint("33", "~"),
            pad("canary", TENANT_WIDTH),
            plan.canary.join(", ")
        );
        out.push('\n');
    }

    if !plan.control_schema.pending.is_empty() {
        let target = plan.control_schema.pending.last().copied().unwrap_or(0);
        let what = match plan.control_schema.current_version {
            None => format!("tenantctl, version {target} (new)"),
            Some(current) => format!("tenantctl, version {current} -> {target}"),
        };
        let symbol = if plan.control_schema.current_version.is_none() {
            style.paint("32", "+")
        } else {
            style.paint("33", "~")
        };
        let _ = writeln!(
            out,
            "  {symbol} {}{what}",
            pad("control schema", TENANT_WIDTH)
        );
        out.push('\n');
    }

    // Tenants of one line each (a fleet migrating) stay together; blocks with detail lines are
    // set apart.
    if let Some(change) = &plan.app_role {
        for line in super::app_role_lines(change) {
            let _ = writeln!(
                out,
                "  {} {}{line}",
                style.paint("33", "~"),
                pad("app role", TENANT_WIDTH)
            );
        }
        out.push('\n');
    }

    let blocks: Vec<String> = plan
        .effective_changes()
        .map(|change| {
            let mut block = String::new();
            tenant_block(&mut block, change, style);
            block
        })
        .collect();
    for (index, block) in blocks.iter().enumerate() {
        out.push_str(block);
        let one_line = |block: &String| block.lines().count() == 1;
        if !(one_line(block) && blocks.get(index + 1).is_some_and(one_line)) {
            out.push('\n');
        }
    }

    if !plan.orphans.is_empty() {
        for orphan in &plan.orphans {
            let what = orphan.resources.join(", ");
            let _ = writeln!(
                out,
                "  {} {}orphan: {what}, in no file; {}",
                style.paint("35", "?"),
                pad(&orphan.tenant, TENANT_WIDTH),
                orphan.disposition()
            );
        }
        out.push('\n');
    }

    if !plan.scheduled_purges.is_empty() {
        let _ = writeln!(
            out,
            "Scheduled purges (soft-deleted, data kept until then):"
        );
        for purge in &plan.scheduled_purges {
            let deleted = purge
                .deleted_at
                .map(|at| format!(" (deleted {})", at.format("%Y-%m-%d")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  · {}purge after {}{deleted}",
                pad(&purge.tenant, TENANT_WIDTH),
                purge.purge_after.format("%Y-%m-%d %H:%M UTC")
            );
        }
        out.push('\n');
    }

    if !plan.backup_leftovers.is_empty() {
        let _ = writeln!(out, "Backups no soft-deleted tenant accounts for:");
        for leftover in &plan.backup_leftovers {
            let fate = if leftover.removed_by_apply {
                style.paint("31", "removed by apply")
            } else {
                "left alone: check it and delete it by hand".to_string()
            };
            let _ = writeln!(
                out,
                "  {} {} ({}, {}): {}; {fate}",
                style.paint("35", "?"),
                leftover.path,
                count(leftover.files, "file"),
                bytes(leftover.bytes),
                leftover.reason
            );
        }
        out.push('\n');
    }

    problems(
        &mut out,
        style,
        "Refused: apply will change nothing",
        plan.refusals.iter().map(|refusal| {
            (
                refusal.tenant.as_deref().unwrap_or("(plan)"),
                refusal.message.as_str(),
                refusal.hint.as_deref(),
            )
        }),
    );
    problems(
        &mut out,
        style,
        "Conflicts: these tenants are left alone",
        plan.conflicts.iter().map(|conflict| {
            (
                conflict.tenant.as_str(),
                conflict.message.as_str(),
                conflict.hint.as_deref(),
            )
        }),
    );

    let (pending, migrating) = super::view::pending_migrations(plan);
    if !pending.is_empty() {
        // A no-transaction migration runs after the tenant's transaction: said, since a
        // failure in it keeps what committed before.
        let names: Vec<String> = pending
            .iter()
            .map(|(version, name, _)| match plan.migrations.get(*version) {
                Some(migration) if migration.online() => format!("{name} (online)"),
                _ => name.clone(),
            })
            .collect();
        let _ = writeln!(
            out,
            "Migrations: {} pending ({}) for {} tenant{}.\n",
            pending.len(),
            names.join(", "),
            super::thousands(migrating as u64),
            plural(migrating)
        );
    }

    out.push_str(&summary_line(plan));
    out.push('\n');
    out
}

/// A titled list of `x tenant  message` lines with their hints; nothing when empty.
fn problems<'a>(
    out: &mut String,
    style: Style,
    title: &str,
    items: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        return;
    }
    let _ = writeln!(out, "{}", style.paint("31;1", title));
    for (tenant, message, hint) in items {
        let _ = writeln!(
            out,
            "  {} {}{message}",
            style.paint("31;1", "x"),
            pad(tenant, TENANT_WIDTH)
        );
        if let Some(hint) = hint {
            let _ = writeln!(out, "      hint: {hint}");
        }
    }
    out.push('\n');
}

/// `Plan: 2 to create, 1 to update, 1 to repair. 3 unchanged.` or the no-changes line.
/// What a plan does besides tenants, for the totals lines of the text and Markdown plans:
/// `control schema migration`, `2 partial backups to remove`.
pub(crate) fn housekeeping(plan: &Plan) -> Vec<String> {
    let mut extras = Vec::new();
    if !plan.control_schema.pending.is_empty() {
        extras.push("control schema migration".to_string());
    }
    let cleanup = plan
        .backup_leftovers
        .iter()
        .filter(|leftover| leftover.removed_by_apply)
        .count();
    if cleanup > 0 {
        extras.push(format!(
            "{} partial backup{} to remove",
            super::thousands(cleanup as u64),
            plural(cleanup)
        ));
    }
    extras
}

pub fn summary_line(plan: &Plan) -> String {
    let summary = plan.summary();
    if plan.is_empty() && plan.conflicts.is_empty() && plan.refusals.is_empty() {
        let mut line = format!(
            "No changes. Live state matches the desired state ({} tenant{}).",
            summary.unchanged,
            plural(summary.unchanged)
        );
        if summary.orphans > 0 {
            let _ = write!(
                line,
                " {} orphan{} left alone.",
                summary.orphans,
                plural(summary.orphans)
            );
        }
        return line;
    }
    let parts: Vec<String> = Action::ALL
        .iter()
        .filter(|action| summary.count(**action) > 0)
        .map(|action| {
            format!(
                "{} to {}",
                super::thousands(summary.count(*action) as u64),
                action.verb()
            )
        })
        .collect();
    let mut line = if parts.is_empty() {
        "Plan: no tenant changes".to_string()
    } else {
        format!("Plan: {}", parts.join(", "))
    };
    for extra in housekeeping(plan) {
        let _ = write!(line, ", {extra}");
    }
    line.push('.');
    if summary.unchanged > 0 {
        let _ = write!(line, " {} unchanged.", summary.unchanged);
    }
    if summary.orphans > 0 {
        let _ = write!(
            line,
            " {} orphan{}.",
            summary.orphans,
            plural(summary.orphans)
        );
    }
    if summary.conflicts > 0 {
        let _ = write!(
            line,
            " {} conflict{} (tenants left alone).",
            summary.conflicts,
            plural(summary.conflicts)
        );
    }
    if !plan.refusals.is_empty() {
        line.push_str(" Refused: nothing will be applied.");
    }
    line
}

fn action_color(action: Action) -> &'static str {
    match action {
        Action::Create | Action::Restore => "32",
        Action::Update | Action::Migrate | Action::Repair | Action::Suspend | Action::Resume => {
            "33"
        }
        Action::Delete => "31",
        Action::Purge => "31;1",
    }
}

fn tenant_block(out: &mut String, change: &TenantChange, style: Style) {
    let Some(view) = TenantView::of(change) else {
        return;
    };
    let mut heading = view.verbs.clone();
    match &view.note {
        // A suspension's reason reads as an aside; what happens to data is the headline.
        Some(note @ Note::Reason(_)) => {
            let _ = write!(heading, "  ({note})");
        }
        Some(note) => {
            let _ = write!(heading, "  {note}");
        }
        None => {}
    }
    let _ = writeln!(
        out,
        "  {} {}{heading}",
        style.paint(action_color(view.primary), view.primary.symbol()),
        pad(&change.tenant, TENANT_WIDTH)
    );
    let create = view.primary == Action::Create;
    for view_line in &view.lines {
        match view_line {
            ViewLine::Resource(line) => resource_line(out, line, style),
            // A create's record reads as one block (name, plan, config, status) below.
            ViewLine::Field(_) if create => {}
            ViewLine::Field(field) => field_line(out, field, style),
        }
    }
    if create {
        record_lines(out, change, style);
    }
}

fn resource_line(out: &mut String, view_line: &super::view::ViewLine, style: Style) {
    let symbol = match view_line.mark {
        Mark::Added => style.paint("32", "+"),
        Mark::Changed | Mark::Context => style.paint("33", "~"),
        Mark::Removed => style.paint("31", "-"),
    };
    let value = match &view_line.old {
        Some(old) => format!("{old} -> {}", view_line.value),
        None => view_line.value_with_detail(),
    };
    line(out, &symbol, &view_line.label, &value);
}

/// Pads `text` to `width`, keeping at least two spaces before the next column so a long name
/// never runs into its value.
fn pad(text: &str, width: usize) -> String {
    let length = text.chars().count();
    if length + 2 <= width {
        format!("{text:<width$}")
    } else {
        format!("{text}  ")
    }
}

fn line(out: &mut String, symbol: &str, label: &str, value: &str) {
    let _ = writeln!(out, "      {symbol} {}{value}", pad(label, FIELD_WIDTH));
}

fn continuation(out: &mut String, value: &str) {
    let _ = writeln!(out, "        {}{value}", pad("", FIELD_WIDTH));
}

/// The new record of a create, compactly: name, plan, config on one line, features on the next.
fn record_lines(out: &mut String, change: &TenantChange, style: Style) {
    let plus = style.paint("32", "+");
    let Some(record) = &change.record else {
        return;
    };
    line(out, &plus, "name", &quote(&record.name));
    line(out, &plus, "plan", &quote(&record.plan));
    let config = &record.config;
    line(
        out,
        &plus,
        "config",
        &format!(
            "model={}  max_tokens={}  rate_limit_per_minute={}",
            quote(&config.model),
            config.max_tokens,
            config.rate_limit_per_minute
        ),
    );
    let enabled: Vec<&str> = config
        .features
        .iter()
        .filter(|(_, on)| **on)
        .map(|(name, _)| name.as_str())
        .collect();
    let disabled: Vec<&str> = config
        .features
        .iter()
        .filter(|(_, on)| !**on)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut features = format!(
        "features: {}",
        if enabled.is_empty() {
            "none".to_string()
        } else {
            enabled.join(", ")
        }
    );
    if !disabled.is_empty() {
        let _ = write!(features, " (off: {})", disabled.join(", "));
    }
    continuation(out, &features);
    if record.protected {
        line(out, &plus, "protected", "true");
    }
    line(out, &plus, "status", record.status.as_str());
    if let Some(reason) = &record.suspension_reason {
        line(out, &plus, "suspension.reason", &quote(reason));
    }
}

fn field_line(out: &mut String, field: &FieldChange, style: Style) {
    // Statuses are keywords, shown bare as in the create block; other strings are quoted.
    let show = |value: &Value| match (field.path.as_str(), value) {
        ("status", Value::String(text)) => text.clone(),
        _ => show(value),
    };
    let (symbol, value) = match (&field.old, &field.new) {
        (None, Some(new)) => (style.paint("32", "+"), show(new)),
        (Some(old), None) => (style.paint("31", "-"), show(old)),
        (Some(old), Some(new)) => (
            style.paint("33", "~"),
            format!("{} -> {}", show(old), show(new)),
        ),
        (None, None) => return,
    };
    line(out, &symbol, &field.path, &value);
}

/// A value as a reviewer reads it: strings quoted, everything else plain.
fn show(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        other => other.to_string(),
    }
}

/// One line per tenant as apply finishes it.
pub fn tenant_result(result: &TenantResult, style: Style) -> String {
    let verbs = result
        .actions
        .iter()
        .map(|action| action.verb())
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = String::new();
    match &result.outcome {
        TenantOutcome::Applied => {
            let _ = writeln!(
                out,
                "  {} {}applied ({verbs}){}",
                style.paint("32", "✓"),
                pad(&result.tenant, TENANT_WIDTH),
                retried(result.retries)
            );
        }
        TenantOutcome::RolledBack {
            reason,
            undone,
            undo_failed,
        } => {
            let _ = writeln!(
                out,
                "  {} {}rolled back: {reason}{}",
                style.paint("31;1", "x"),
                pad(&result.tenant, TENANT_WIDTH),
                retried(result.retries)
            );
            for item in undone {
                let _ = writeln!(out, "      undone: {item}");
            }
            for item in undo_failed {
                let _ = writeln!(out, "      {} {item}", style.paint("31;1", "warning:"));
            }
        }
        TenantOutcome::Blocked { reason } => {
            let _ = writeln!(
                out,
                "  {} {}not applied (conflict): {reason}",
                style.paint("31;1", "x"),
                pad(&result.tenant, TENANT_WIDTH)
            );
        }
        TenantOutcome::Unfinished { reason } => {
            let _ = writeln!(
                out,
                "  {} {}committed ({verbs}), then stopped: {reason}{}",
                style.paint("31;1", "x"),
                pad(&result.tenant, TENANT_WIDTH),
                retried(result.retries)
            );
        }
    }
    out
}

/// ` (after 2 retries on a lock timeout)`, or nothing.
fn retried(retries: u32) -> String {
    if retries == 0 {
        String::new()
    } else {
        format!(
            " (after {retries} retr{} on a lock timeout)",
            if retries == 1 { "y" } else { "ies" }
        )
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The closing line of an apply (and, after it, why it stopped early and what it cleaned).
pub fn report_summary(report: &ApplyReport) -> String {
    let applied = report.applied();
    let failed = report.tenants.len() - applied;
    let mut line = format!(
        "Apply {}: {applied} tenant{} applied",
        if report.stopped.is_some() {
            "stopped"
        } else {
            "complete"
        },
        plural(applied)
    );
    if failed > 0 {
        let _ = write!(line, ", {failed} failed");
    }
    if report.not_started > 0 {
        let _ = write!(line, ", {} not started", report.not_started);
    }
    if let Some(version) = report.migrated.last() {
        let _ = write!(line, ", control schema migrated to version {version}");
    }
    if !report.canary.is_empty() {
        let _ = write!(line, ", canary {} first", report.canary.join(", "));
    }
    if report.retries > 0 {
        let _ = write!(
            line,
            ", {} retr{} after lock timeouts",
            report.retries,
            if report.retries == 1 { "y" } else { "ies" }
        );
    }
    line.push('.');
    if let Some(stopped) = &report.stopped {
        let _ = write!(line, "\n{}.", capitalized(stopped));
    }
    for warning in &report.warnings {
        let _ = write!(line, "\nWarning: {warning}.");
    }
    for cleaned in &report.cleaned {
        let _ = write!(
            line,
            "\nRemoved the partial backup `{cleaned}` left by an interrupted run."
        );
    }
    line
}
