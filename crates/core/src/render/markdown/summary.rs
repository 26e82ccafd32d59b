//! The summary of the comment, always whole: the totals line, the header, warnings about the
//! live state, refusals and conflicts, the warning naming every tenant that will be
//! soft-deleted or purged with the data at risk, counts, orphans, scheduled purges and backup
//! leftovers.

use super::escape::{code, markdown, rich};
use super::{Entry, LIST_LIMIT, PURGE_MEANS, RISK_ORDER, SOFT_DELETE_MEANS, WARNING_NAME_LIMIT};
use crate::plan::{Action, Plan};
use crate::render::view::{count, volume};
use crate::render::{bytes, plural, text, thousands, PlanContext};
use std::fmt::Write;

/// How much of each destructive tenant the warning shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Detail {
    /// One line per tenant with the data at risk.
    Full,
    /// Names only, comma-separated.
    Names,
    /// The first [`WARNING_NAME_LIMIT`] names and a count of the rest.
    Capped,
}

/// The summary, compacted until it leaves room for at least the closing sentences within
/// `limit` bytes.
pub(super) fn summary_within_limit(
    plan: &Plan,
    context: &PlanContext,
    entries: &[Entry],
    limit: usize,
) -> String {
    let room = 1_000;
    let mut out = String::new();
    for detail in [Detail::Full, Detail::Names, Detail::Capped] {
        out = summary(plan, context, entries, detail);
        if out.len() + room <= limit {
            return out;
        }
    }
    // Only reachable with absurdly long names or a tiny budget: cut at a line boundary rather
    // than exceed the limit.
    let mut cut = limit.saturating_sub(room).min(out.len());
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = out[..cut].rfind('\n').map_or(cut, |index| index + 1);
    out.truncate(cut);
    out.push_str(
        "\n**The summary was cut to fit the comment** (run `tenantctl plan` to see it all)\n",
    );
    out
}

pub(super) fn summary(
    plan: &Plan,
    context: &PlanContext,
    entries: &[Entry],
    detail: Detail,
) -> String {
    let mut out = String::new();
    out.push_str("### tenantctl plan\n\n");
    let _ = writeln!(out, "{}\n", totals_line(plan));
    // Code spans, not `<code>`: GitHub autolinks a URL in `<code>` written in Markdown.
    let _ = writeln!(
        out,
        "{} against {} and chroma {}",
        code(&context.dir),
        code(&context.database),
        code(&context.chroma)
    );

    scope_warnings(&mut out, plan);
    refusals(&mut out, plan);
    conflicts(&mut out, plan);
    destructive_migrations(&mut out, plan);
    warning(&mut out, entries, detail);

    let summary = plan.summary();
    let has_changes = !(plan.is_empty() && plan.conflicts.is_empty() && plan.refusals.is_empty());
    if has_changes {
        out.push_str("\n| | action | tenants |\n|:-:|:--|--:|\n");
        for action in RISK_ORDER {
            let count = summary.count(action);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} |",
                    action.symbol(),
                    label(action),
                    thousands(count as u64)
                );
            }
        }
        for (symbol, label, count) in [
            ("", "unchanged", summary.unchanged),
            ("`?`", "orphans", summary.orphans),
            ("`x`", "conflicts", summary.conflicts),
        ] {
            if count > 0 {
                let _ = writeln!(out, "| {symbol} | {label} | {} |", thousands(count as u64));
            }
        }
    }

    if !plan.control_schema.pending.is_empty() {
        let target = plan.control_schema.pending.last().copied().unwrap_or(0);
        out.push('\n');
        match plan.control_schema.current_version {
            None => {
                let _ = writeln!(
                    out,
                    "The control schema `tenantctl` is created first (version {target})."
                );
            }
            Some(current) => {
                let _ = writeln!(
                    out,
                    "The control schema `tenantctl` is migrated first (version {current} -> {target})."
                );
            }
        }
    }

    if let Some(change) = &plan.app_role {
        out.push('\n');
        for line in crate::render::app_role_lines(change) {
            let _ = writeln!(out, "- {}", super::escape::rich(&line));
        }
    }

    if !plan.canary.is_empty() {
        let _ = writeln!(
            out,
            "\n**Canary:** {} migrate{} first; the rest of the fleet starts only when all of them succeeded.",
            plan.canary
                .iter()
                .map(|tenant| code(tenant))
                .collect::<Vec<_>>()
                .join(", "),
            if plan.canary.len() == 1 { "s" } else { "" }
        );
    }
    migrations(&mut out, plan);
    orphans(&mut out, plan);
    scheduled_purges(&mut out, plan);
    backup_leftovers(&mut out, plan);
    out
}

/// SQL of one migration shown before the rest is cut (the file holds it all).
const SQL_SHOWN: usize = 8_000;
/// SQL of all migrations shown together.
const SQL_SHOWN_IN_ALL: usize = 24_000;

/// The SQL of each migration existing tenants run, once, with how many tenants run it.
fn migrations(out: &mut String, plan: &Plan) {
    let (pending, tenants) = crate::render::view::pending_migrations(plan);
    if pending.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n**Migrations** for {} tenant{}, each run in the tenant's schema, in its transaction:",
        crate::render::thousands(tenants as u64),
        plural(tenants)
    );
    let mut room = SQL_SHOWN_IN_ALL;
    for (version, name, count) in pending {
        let Some(migration) = plan.migrations.get(version) else {
            continue;
        };
        let limit = SQL_SHOWN.min(room);
        let mut sql: String = migration.sql.chars().take(limit).collect();
        let cut = migration.sql.chars().count() > limit;
        room = room.saturating_sub(sql.len());
        if cut {
            sql.push_str("\n-- … (cut here; the whole migration is in the file)\n");
        }
        if !sql.ends_with('\n') {
            sql.push('\n');
        }
        let fence = super::blocks::fence(&sql);
        let online = if migration.online() {
            " (online: after the tenant's transaction, one statement at a time)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "\n<details open><summary>{}: {}{online}</summary>\n\n{fence}sql\n{sql}{fence}\n\n</details>\n",
            super::escape::html_code(&name),
            count_tenants(count)
        );
    }
}

/// The action as the totals line and the table name it: `soft-delete` for a soft delete.
fn label(action: Action) -> &'static str {
    match action {
        Action::Delete => "soft-delete",
        other => other.verb(),
    }
}

/// `Plan: **1 to purge**, **1 to soft-delete**, 1 to suspend, 1 to update, 301 to create.`:
/// what apply will do, the riskiest first and the destructive counts in bold (or the sentence
/// saying there is nothing to do).
pub(super) fn totals_line(plan: &Plan) -> String {
    let summary = plan.summary();
    if plan.is_empty() && plan.conflicts.is_empty() && plan.refusals.is_empty() {
        return markdown(&text::summary_line(plan));
    }
    let mut parts: Vec<String> = RISK_ORDER
        .iter()
        .filter(|action| summary.count(**action) > 0)
        .map(|action| {
            let part = format!(
                "{} to {}",
                thousands(summary.count(*action) as u64),
                label(*action)
            );
            if action.is_destructive() {
                format!("**{part}**")
            } else {
                part
            }
        })
        .collect();
    if parts.is_empty() {
        parts.push("no tenant changes".to_string());
    }
    let mut line = format!("Plan: {}", parts.join(", "));
    for extra in text::housekeeping(plan) {
        let _ = write!(line, ", {extra}");
    }
    let destroying = plan.destructive_migration_tenants();
    if destroying > 0 {
        let _ = write!(
            line,
            "; **{} will run migrations that drop or rewrite data**",
            count(destroying as u64, "tenant")
        );
    }
    if summary.conflicts > 0 {
        let _ = write!(
            line,
            "; {} left alone by {} conflict{}",
            count(
                plan.changes.iter().filter(|change| change.blocked).count() as u64,
                "tenant"
            ),
            thousands(summary.conflicts as u64),
            plural(summary.conflicts)
        );
    }
    line.push('.');
    if !plan.refusals.is_empty() {
        line.push_str(" **Refused: apply will change nothing.**");
    }
    line
}

fn count_tenants(count: usize) -> String {
    format!(
        "{} tenant{}",
        crate::render::thousands(count as u64),
        plural(count)
    )
}

/// What the reviewer must read before anything else about the live state itself.
pub(super) fn scope_warnings(out: &mut String, plan: &Plan) {
    for warning in &plan.warnings {
        // Warnings name flags and tenants in backticks: code spans.
        let _ = write!(out, "\n> [!WARNING]\n> {}\n", rich(warning));
    }
}

/// Backup folders no soft-deleted tenant accounts for.
pub(super) fn backup_leftovers(out: &mut String, plan: &Plan) {
    if plan.backup_leftovers.is_empty() {
        return;
    }
    out.push_str("\nBackups no soft-deleted tenant accounts for:\n\n");
    for leftover in plan.backup_leftovers.iter().take(LIST_LIMIT) {
        let fate = if leftover.removed_by_apply {
            "removed by apply"
        } else {
            "left alone: check it and delete it by hand"
        };
        let _ = writeln!(
            out,
            "- {} ({}, {}): {}; {fate}",
            code(&leftover.path),
            count(leftover.files, "file"),
            bytes(leftover.bytes),
            markdown(&leftover.reason)
        );
    }
    more(out, "", plan.backup_leftovers.len(), "backup folder");
}

/// Refusals stop the whole run: first and loud.
pub(super) fn refusals(out: &mut String, plan: &Plan) {
    if plan.refusals.is_empty() {
        return;
    }
    out.push_str("\n> [!CAUTION]\n> **Refused: apply will change nothing**\n");
    for refusal in plan.refusals.iter().take(LIST_LIMIT) {
        let who = refusal
            .tenant
            .as_deref()
            .map(|tenant| format!("{}: ", code(tenant)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "> - {who}{}{}",
            rich(&refusal.message),
            hint(refusal.hint.as_deref())
        );
    }
    more(out, "> ", plan.refusals.len(), "refusal");
}

/// Tenants tried most first under a destructive statement.
const MOST_AT_RISK: usize = 10;

/// Statements of migrations that drop or rewrite data in existing tenants: a caution, with
/// the rows at risk in all and the tenants with the most.
pub(super) fn destructive_migrations(out: &mut String, plan: &Plan) {
    let destructions = crate::render::view::destructions(plan);
    if destructions.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n> [!CAUTION]\n> **Migrations that will drop or rewrite data in {}**",
        count(plan.destructive_migration_tenants() as u64, "tenant")
    );
    for destruction in destructions.iter().take(LIST_LIMIT) {
        let statement = destruction.statement;
        let tables = if statement.tables.is_empty() {
            "a table named in quotes".to_string()
        } else {
            statement
                .tables
                .iter()
                .map(|table| code(table))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rows = destruction
            .rows
            .map(|rows| format!(": {} at risk", count(rows, "row")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "> - {} line {}: `{}` on {tables}, in {}{rows}",
            code(&statement.name),
            statement.line,
            statement.kind,
            count(statement.tenants as u64, "tenant")
        );
        let most: Vec<String> = destruction
            .most
            .iter()
            .filter(|(_, rows)| *rows > 0)
            .take(MOST_AT_RISK)
            .map(|(tenant, rows)| format!("{} {}", code(tenant), thousands(*rows)))
            .collect();
        if !most.is_empty() {
            let _ = writeln!(out, ">   most rows: {}", most.join(", "));
        }
    }
    more(out, "> ", destructions.len(), "destructive statement");
}

/// Conflicts leave their tenants alone and make apply fail.
pub(super) fn conflicts(out: &mut String, plan: &Plan) {
    if plan.conflicts.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n> [!CAUTION]\n> **{} conflict{}: these tenants will be left alone and apply will fail**",
        thousands(plan.conflicts.len() as u64),
        plural(plan.conflicts.len())
    );
    for conflict in plan.conflicts.iter().take(LIST_LIMIT) {
        let _ = writeln!(
            out,
            "> - {}: {}{}",
            code(&conflict.tenant),
            rich(&conflict.message),
            hint(conflict.hint.as_deref())
        );
    }
    more(out, "> ", plan.conflicts.len(), "conflict");
}

pub(super) fn hint(hint: Option<&str>) -> String {
    hint.map(|hint| format!("<br>hint: {}", rich(hint)))
        .unwrap_or_default()
}

/// `… and 12 more conflicts (run `tenantctl plan` to see them all)` after a capped list.
pub(super) fn more(out: &mut String, prefix: &str, total: usize, noun: &str) {
    if total > LIST_LIMIT {
        let rest = total - LIST_LIMIT;
        let _ = writeln!(
            out,
            "{prefix}- … and {} more {noun}{} (run `tenantctl plan` to see them all)",
            thousands(rest as u64),
            plural(rest)
        );
    }
}

/// The warning that names every tenant that will be soft-deleted or purged, with what it puts
/// at risk: a `[!CAUTION]` as soon as one purge is in the plan (nothing undoes it), a
/// `[!WARNING]` for soft deletes alone.
pub(super) fn warning(out: &mut String, entries: &[Entry], detail: Detail) {
    // Blocked tenants are left alone; refused ones are named (and marked) because they are what
    // the pull request asks for.
    let destructive: Vec<&Entry> = entries
        .iter()
        .filter(|entry| !entry.change.blocked && entry.primary().is_destructive())
        .collect();
    if destructive.is_empty() {
        return;
    }
    let purges = destructive
        .iter()
        .filter(|entry| entry.primary() == Action::Purge)
        .count();
    let deletes = destructive.len() - purges;
    let tenants = |count: usize| format!("{} tenant{}", thousands(count as u64), plural(count));
    let headline = match (purges, deletes) {
        (0, deletes) => format!("{} will be soft-deleted", tenants(deletes)),
        (purges, 0) => format!("{} will be purged", tenants(purges)),
        (purges, deletes) => format!(
            "{} will be purged and {} soft-deleted",
            tenants(purges),
            thousands(deletes as u64)
        ),
    };
    let explanation = match (purges, deletes) {
        (_, 0) => PURGE_MEANS.to_string(),
        (0, _) => SOFT_DELETE_MEANS.to_string(),
        _ => format!("{PURGE_MEANS} {SOFT_DELETE_MEANS}"),
    };
    let kind = if purges > 0 { "CAUTION" } else { "WARNING" };
    let _ = writeln!(out, "\n> [!{kind}]\n> **{headline}.** {explanation}");
    match detail {
        Detail::Full => {
            for entry in &destructive {
                let _ = writeln!(out, "> - {}", at_risk_line(entry));
            }
        }
        Detail::Names | Detail::Capped => {
            for (action, label) in [
                (Action::Purge, "will be purged, for good"),
                (Action::Delete, "will be soft-deleted"),
            ] {
                let names: Vec<String> = destructive
                    .iter()
                    .filter(|entry| entry.primary() == action)
                    .map(|entry| {
                        let refused = if entry.refusals.is_empty() {
                            ""
                        } else {
                            " (refused)"
                        };
                        format!("{}{refused}", code(&entry.change.tenant))
                    })
                    .collect();
                if names.is_empty() {
                    continue;
                }
                let limit = if detail == Detail::Capped {
                    WARNING_NAME_LIMIT
                } else {
                    names.len()
                };
                let mut line = names[..limit.min(names.len())].join(", ");
                if names.len() > limit {
                    let _ = write!(
                        line,
                        " and {} more",
                        thousands((names.len() - limit) as u64)
                    );
                }
                let _ = writeln!(out, "> - {label}: {line}");
            }
        }
    }
    let total = destructive
        .iter()
        .filter_map(|entry| entry.change.at_risk.as_ref())
        .fold((0u64, 0u64, 0u64, 0u64), |sum, risk| {
            (
                sum.0 + risk.rows.unwrap_or(0),
                sum.1 + risk.records.unwrap_or(0),
                sum.2 + risk.backup_files,
                sum.3 + risk.backup_bytes,
            )
        });
    if destructive.len() > 1 && total != (0, 0, 0, 0) {
        let mut parts = vec![count(total.0, "row"), count(total.1, "record")];
        if total.2 > 0 {
            parts.push(format!(
                "{} ({})",
                count(total.2, "backup file"),
                bytes(total.3)
            ));
        }
        let _ = writeln!(out, ">\n> Measured in total: {}.", parts.join(", "));
    }
}

/// `will permanently destroy `piedpiper`: 987,654 rows, 12 records, 3 backup files (18.2 MB)`,
/// or `will soft-delete `hooli`: 1,204 rows, 3,400 records, kept until the purge after …`.
pub(super) fn at_risk_line(entry: &Entry) -> String {
    let change = entry.change;
    let risk = change.at_risk.as_ref();
    let mut what = match risk {
        Some(risk) => volume(risk.rows, risk.records),
        None => "not measured".to_string(),
    };
    if what == "not measured" {
        what = "data not measured".to_string();
    }
    let mut line = if entry.primary() == Action::Purge {
        if let Some(risk) = risk {
            let _ = write!(
                what,
                ", {} ({})",
                count(risk.backup_files, "backup file"),
                bytes(risk.backup_bytes)
            );
        }
        format!("will permanently destroy {}: {what}", code(&change.tenant))
    } else {
        let mut line = format!("will soft-delete {}: {what}, kept", code(&change.tenant));
        if let Some(purge_after) = change.purge_after {
            let _ = write!(
                line,
                " until the purge after {}",
                purge_after.format("%Y-%m-%d")
            );
        }
        if change.file.is_none() {
            if let Some(reason) = &change.reason {
                let _ = write!(line, " ({})", markdown(reason));
            }
        }
        line
    };
    if !entry.refusals.is_empty() {
        line.push_str(" — **refused**");
    }
    line
}

pub(super) fn orphans(out: &mut String, plan: &Plan) {
    if plan.orphans.is_empty() {
        return;
    }
    out.push_str("\n**Orphans** (live, in no file):\n");
    for orphan in plan.orphans.iter().take(LIST_LIMIT) {
        let _ = writeln!(
            out,
            "- `?` {}: {}; {}",
            code(&orphan.tenant),
            markdown(&orphan.resources.join(", ")),
            rich(orphan.disposition())
        );
    }
    more(out, "", plan.orphans.len(), "orphan");
}

pub(super) fn scheduled_purges(out: &mut String, plan: &Plan) {
    if plan.scheduled_purges.is_empty() {
        return;
    }
    out.push_str("\n**Scheduled purges** (soft-deleted, data kept until then):\n");
    for purge in plan.scheduled_purges.iter().take(LIST_LIMIT) {
        let deleted = purge
            .deleted_at
            .map(|at| format!(" (deleted {})", at.format("%Y-%m-%d")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- {}: purge after {}{deleted}",
            code(&purge.tenant),
            purge.purge_after.format("%Y-%m-%d %H:%M UTC")
        );
    }
    more(out, "", plan.scheduled_purges.len(), "scheduled purge");
}
