//! Markdown for pull-request comments.
//!
//! The comment has two parts. The summary (header, blocking refusals and conflicts, a warning
//! naming every tenant that is soft-deleted or purged with the data at risk, a table of counts,
//! orphans and scheduled purges) is always complete. Then one collapsible `<details>` block per
//! tenant with its changes as a `diff` code block, most important first (purges, soft deletes,
//! blocked and refused tenants, then the routine changes). GitHub rejects a comment over
//! [`COMMENT_LIMIT`] characters, so blocks that do not fit are collapsed to one line each, and
//! those that do not fit even then are counted in a closing sentence.
//!
//! Everything that comes from files or from the live systems is escaped: HTML parts get `&`,
//! `<`, `>` and `"` as entities and no line breaks (a blank line would end an HTML block), Markdown
//! parts get backslash escapes, and code fences are longer than any run of backticks inside them.

use super::{bytes, plural, quote, text, thousands, PlanContext};
use crate::observed::LiveStatus;
use crate::plan::{Action, Conflict, DriftProblem, Plan, Refusal, Step, TenantChange};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use std::fmt::Write;

/// GitHub's limit on the body of an issue or pull-request comment.
pub const COMMENT_LIMIT: usize = 65_536;

/// Entries of a summary list (conflicts, refusals, orphans, scheduled purges) shown before the
/// rest are counted as "and N more": the summary must fit in the comment whatever the plan.
const LIST_LIMIT: usize = 20;

/// What the warning says a purge and a soft delete do.
const PURGE_MEANS: &str =
    "A purge drops the tenant's schema, role and collection and deletes its backups, for good.";
const SOFT_DELETE_MEANS: &str =
    "A soft delete revokes access and keeps the data (with a final backup) until the purge.";

/// Destructive tenants named in the warning when even a names-only list would not fit.
const WARNING_NAME_LIMIT: usize = 100;

/// Heading of the blocks.
const CHANGES_HEADING: &str = "\n#### Changes\n";

/// Heading of the blocks collapsed to one line.
const MORE_HEADING: &str =
    "\n#### More changes\n\nCollapsed to one line each to stay under GitHub's comment limit.\n\n";

/// The plan as a pull-request comment of at most [`COMMENT_LIMIT`] characters (and bytes).
///
/// The summary is always whole. Blocks of soft deletes, purges, blocked and refused tenants come
/// first and are kept in full when they fit; then as many tenants as possible are shown at all
/// (in full, else collapsed to one line), and as many of those in full as that allows. Whatever
/// is left is counted in a closing sentence.
pub fn plan(plan: &Plan, context: &PlanContext) -> String {
    let entries = entries(plan);
    let mut out = summary_within_limit(plan, context, &entries);
    if entries.is_empty() {
        return out;
    }

    let blocks: Vec<String> = entries.iter().map(block).collect();
    let lines: Vec<String> = entries.iter().map(collapsed_line).collect();
    let must = entries.iter().filter(|entry| entry.open()).count();
    let (full, covered) = layout(
        out.len() + CHANGES_HEADING.len(),
        &blocks.iter().map(String::len).collect::<Vec<_>>(),
        &lines.iter().map(String::len).collect::<Vec<_>>(),
        must,
    );

    out.push_str(CHANGES_HEADING);
    for block in &blocks[..full] {
        out.push('\n');
        out.push_str(block);
    }
    if covered > full {
        out.push_str(MORE_HEADING);
        for line in &lines[full..covered] {
            out.push_str(line);
        }
    }
    let left_out = entries.len() - covered;
    if left_out > 0 {
        out.push('\n');
        out.push_str(&left_out_sentence(left_out));
    }
    debug_assert!(out.len() <= COMMENT_LIMIT, "{} bytes", out.len());
    out
}

/// How many entries are shown in full and how many are shown at all (the rest collapsed), given
/// the bytes already used and the size of each entry's block and collapsed line.
///
/// The first `must` entries (destructive and held) get full blocks as far as they fit. Then the
/// number of entries shown at all is maximised, and with it the number shown in full: showing one
/// more in full never lets more entries be shown, so both are found by binary search.
fn layout(used: usize, blocks: &[usize], lines: &[usize], must: usize) -> (usize, usize) {
    let count = blocks.len();
    let footer = MORE_HEADING.len() + 1 + left_out_sentence(count).len();
    let budget = COMMENT_LIMIT.saturating_sub(used + footer);
    let prefix = |sizes: &[usize], extra: usize| {
        let mut sums = vec![0];
        for size in sizes {
            sums.push(sums.last().copied().unwrap_or(0) + size + extra);
        }
        sums
    };
    // A block is written after a blank line.
    let block_sums = prefix(blocks, 1);
    let line_sums = prefix(lines, 0);
    // With the first `full` entries in full, how many entries fit at all.
    let covered = |full: usize| -> Option<usize> {
        let room = budget.checked_sub(block_sums[full])?;
        let limit = room + line_sums[full];
        let end = line_sums.partition_point(|sum| *sum <= limit) - 1;
        Some(end.max(full))
    };
    let mut minimum = 0;
    while minimum < must.min(count) && covered(minimum + 1).is_some() {
        minimum += 1;
    }
    let best = covered(minimum).unwrap_or(minimum);
    let (mut low, mut high) = (minimum, count);
    while low < high {
        let middle = (low + high).div_ceil(2);
        if covered(middle).is_some_and(|shown| shown >= best) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    (low, best)
}

/// `3 tenants left out of this comment (run `tenantctl plan` to see them all)`.
fn left_out_sentence(count: usize) -> String {
    format!(
        "**{count} tenant{} left out of this comment** (run `tenantctl plan` to see them all)\n",
        plural(count)
    )
}

// Order of the blocks.

/// One tenant block to render, with what keeps tenantctl away from it.
struct Entry<'a> {
    change: &'a TenantChange,
    conflicts: Vec<&'a Conflict>,
    refusals: Vec<&'a Refusal>,
}

impl Entry<'_> {
    fn primary(&self) -> Action {
        self.change.primary().unwrap_or(Action::Update)
    }

    /// Blocked by a conflict or refused by a safety rule: apply will not do what it shows.
    fn held(&self) -> bool {
        self.change.blocked || !self.refusals.is_empty()
    }

    /// Purges, then soft deletes, then blocked and refused tenants next to their conflict, then
    /// the changes that touch access, then the routine ones.
    fn importance(&self) -> u8 {
        if self.held() {
            return 2;
        }
        match self.primary() {
            Action::Purge => 0,
            Action::Delete => 1,
            Action::Suspend => 3,
            Action::Restore => 4,
            Action::Resume => 5,
            Action::Create => 6,
            Action::Update => 7,
            Action::Repair => 8,
        }
    }

    /// Destructive and held blocks open by default: those are the ones a reviewer must read.
    fn open(&self) -> bool {
        self.importance() <= 2
    }

    fn symbol(&self) -> &'static str {
        if self.change.blocked {
            "x"
        } else {
            self.primary().symbol()
        }
    }
}

/// Every tenant that changes or would change (blocked ones included), most important first.
fn entries(plan: &Plan) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry> = plan
        .changes
        .iter()
        .filter(|change| !change.actions.is_empty())
        .map(|change| Entry {
            change,
            conflicts: plan
                .conflicts
                .iter()
                .filter(|conflict| conflict.tenant == change.tenant)
                .collect(),
            refusals: plan
                .refusals
                .iter()
                .filter(|refusal| refusal.tenant.as_deref() == Some(change.tenant.as_str()))
                .collect(),
        })
        .collect();
    entries.sort_by(|a, b| {
        (a.importance(), &a.change.tenant).cmp(&(b.importance(), &b.change.tenant))
    });
    entries
}

// The summary.

/// How much of each destructive tenant the warning shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// One line per tenant with the data at risk.
    Full,
    /// Names only, comma-separated.
    Names,
    /// The first [`WARNING_NAME_LIMIT`] names and a count of the rest.
    Capped,
}

/// The summary, compacted until it leaves room for at least the footer.
fn summary_within_limit(plan: &Plan, context: &PlanContext, entries: &[Entry]) -> String {
    let room = 1_000;
    let mut out = String::new();
    for detail in [Detail::Full, Detail::Names, Detail::Capped] {
        out = summary(plan, context, entries, detail);
        if out.len() + room <= COMMENT_LIMIT {
            return out;
        }
    }
    // Only reachable with absurdly long names: cut at a line boundary rather than exceed the
    // limit GitHub enforces.
    let mut cut = COMMENT_LIMIT - room;
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

fn summary(plan: &Plan, context: &PlanContext, entries: &[Entry], detail: Detail) -> String {
    let mut out = String::new();
    out.push_str("### tenantctl plan\n\n");
    let _ = writeln!(
        out,
        "<code>{}</code> against <code>{}</code> and chroma <code>{}</code>",
        markdown(&context.dir),
        markdown(&context.database),
        markdown(&context.chroma)
    );

    scope_warnings(&mut out, plan);
    refusals(&mut out, plan);
    conflicts(&mut out, plan);
    warning(&mut out, entries, detail);

    let summary = plan.summary();
    let has_changes = !(plan.is_empty() && plan.conflicts.is_empty() && plan.refusals.is_empty());
    out.push('\n');
    if has_changes {
        out.push_str("| | action | tenants |\n|:-:|:--|--:|\n");
        for action in Action::ALL {
            let count = summary.count(action);
            if count > 0 {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {count} |",
                    action.symbol(),
                    action.verb()
                );
            }
        }
        for (symbol, label, count) in [
            ("", "unchanged", summary.unchanged),
            ("`?`", "orphans", summary.orphans),
            ("`x`", "conflicts", summary.conflicts),
        ] {
            if count > 0 {
                let _ = writeln!(out, "| {symbol} | {label} | {count} |");
            }
        }
    } else {
        let _ = writeln!(out, "{}", markdown(&text::summary_line(plan)));
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

    orphans(&mut out, plan);
    scheduled_purges(&mut out, plan);
    backup_leftovers(&mut out, plan);
    out
}

/// What the reviewer must read before anything else about the live state itself.
fn scope_warnings(out: &mut String, plan: &Plan) {
    for warning in &plan.warnings {
        let _ = write!(out, "\n> [!WARNING]\n> {}\n", markdown(warning));
    }
}

/// Backup folders no soft-deleted tenant accounts for.
fn backup_leftovers(out: &mut String, plan: &Plan) {
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
            "- <code>{}</code> ({}, {}): {}; {fate}",
            markdown(&leftover.path),
            count(leftover.files, "file"),
            bytes(leftover.bytes),
            markdown(&leftover.reason)
        );
    }
    more(out, "", plan.backup_leftovers.len(), "backup folder");
}

/// Refusals stop the whole run: first and loud.
fn refusals(out: &mut String, plan: &Plan) {
    if plan.refusals.is_empty() {
        return;
    }
    out.push_str("\n> [!CAUTION]\n> **Refused: apply will change nothing**\n");
    for refusal in plan.refusals.iter().take(LIST_LIMIT) {
        let who = refusal
            .tenant
            .as_deref()
            .map(|tenant| format!("<code>{}</code>: ", markdown(tenant)))
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

/// Conflicts leave their tenants alone and make apply fail.
fn conflicts(out: &mut String, plan: &Plan) {
    if plan.conflicts.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n> [!CAUTION]\n> **{} conflict{}: these tenants are left alone and apply fails**",
        plan.conflicts.len(),
        plural(plan.conflicts.len())
    );
    for conflict in plan.conflicts.iter().take(LIST_LIMIT) {
        let _ = writeln!(
            out,
            "> - <code>{}</code>: {}{}",
            markdown(&conflict.tenant),
            rich(&conflict.message),
            hint(conflict.hint.as_deref())
        );
    }
    more(out, "> ", plan.conflicts.len(), "conflict");
}

fn hint(hint: Option<&str>) -> String {
    hint.map(|hint| format!("<br>hint: {}", rich(hint)))
        .unwrap_or_default()
}

/// `… and 12 more conflicts (run `tenantctl plan` to see them all)` after a capped list.
fn more(out: &mut String, prefix: &str, total: usize, noun: &str) {
    if total > LIST_LIMIT {
        let rest = total - LIST_LIMIT;
        let _ = writeln!(
            out,
            "{prefix}- … and {rest} more {noun}{} (run `tenantctl plan` to see them all)",
            plural(rest)
        );
    }
}

/// The warning that names every tenant soft-deleted or purged, with what it puts at risk.
fn warning(out: &mut String, entries: &[Entry], detail: Detail) {
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
    let headline = match (purges, deletes) {
        (0, deletes) => format!("{deletes} tenant{} soft-deleted", plural(deletes)),
        (purges, 0) => format!("{purges} tenant{} purged", plural(purges)),
        (purges, deletes) => format!(
            "{purges} tenant{} purged and {deletes} soft-deleted",
            plural(purges)
        ),
    };
    let explanation = match (purges, deletes) {
        (_, 0) => PURGE_MEANS.to_string(),
        (0, _) => SOFT_DELETE_MEANS.to_string(),
        _ => format!("{PURGE_MEANS} {SOFT_DELETE_MEANS}"),
    };
    let _ = writeln!(out, "\n> [!WARNING]\n> **{headline}.** {explanation}");
    match detail {
        Detail::Full => {
            for entry in &destructive {
                let _ = writeln!(out, "> - {}", at_risk_line(entry));
            }
        }
        Detail::Names | Detail::Capped => {
            for (action, label) in [(Action::Purge, "purged"), (Action::Delete, "soft-deleted")] {
                let names: Vec<String> = destructive
                    .iter()
                    .filter(|entry| entry.primary() == action)
                    .map(|entry| {
                        let refused = if entry.refusals.is_empty() {
                            ""
                        } else {
                            " (refused)"
                        };
                        format!("<code>{}</code>{refused}", markdown(&entry.change.tenant))
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
                    let _ = write!(line, " and {} more", names.len() - limit);
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

/// `purge <code>piedpiper</code>: 987,654 rows, 12 records, 3 backup files (18.2 MB), destroyed`.
fn at_risk_line(entry: &Entry) -> String {
    let change = entry.change;
    let mut line = format!(
        "{} <code>{}</code>: ",
        entry.primary().verb(),
        markdown(&change.tenant)
    );
    let risk = change.at_risk.as_ref();
    let mut what = match risk {
        Some(risk) => volume(risk.rows, risk.records),
        None => "not measured".to_string(),
    };
    if what == "not measured" {
        what = "data not measured".to_string();
    }
    if entry.primary() == Action::Purge {
        if let Some(risk) = risk {
            let _ = write!(
                what,
                ", {} ({})",
                count(risk.backup_files, "backup file"),
                bytes(risk.backup_bytes)
            );
        }
        let _ = write!(line, "{what}, destroyed");
    } else {
        let _ = write!(line, "{what}, kept");
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
    }
    if !entry.refusals.is_empty() {
        line.push_str(" — **refused**");
    }
    line
}

fn orphans(out: &mut String, plan: &Plan) {
    if plan.orphans.is_empty() {
        return;
    }
    out.push_str("\n**Orphans** (live, in no file):\n");
    for orphan in plan.orphans.iter().take(LIST_LIMIT) {
        let _ = writeln!(
            out,
            "- `?` <code>{}</code>: {}; {}",
            markdown(&orphan.tenant),
            markdown(&orphan.resources.join(", ")),
            rich(orphan.disposition())
        );
    }
    more(out, "", plan.orphans.len(), "orphan");
}

fn scheduled_purges(out: &mut String, plan: &Plan) {
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
            "- <code>{}</code>: purge after {}{deleted}",
            markdown(&purge.tenant),
            purge.purge_after.format("%Y-%m-%d %H:%M UTC")
        );
    }
    more(out, "", plan.scheduled_purges.len(), "scheduled purge");
}

// Tenant blocks.

/// `- <code>~</code> acme update`: a block that did not fit.
fn collapsed_line(entry: &Entry) -> String {
    let mut line = format!(
        "- <code>{}</code> {} {}",
        entry.symbol(),
        markdown(&entry.change.tenant),
        verbs(entry.change)
    );
    if entry.change.blocked {
        line.push_str(" (blocked by a conflict)");
    } else if !entry.refusals.is_empty() {
        line.push_str(" (refused)");
    }
    line.push('\n');
    line
}

/// `update, repair`, with `delete (soft)` for a soft delete.
fn verbs(change: &TenantChange) -> String {
    change
        .actions
        .iter()
        .map(|action| match action {
            Action::Delete => "delete (soft)",
            other => other.verb(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `<details>` block: a one-line summary, why apply leaves the tenant alone if it does, and
/// the diff.
fn block(entry: &Entry) -> String {
    let change = entry.change;
    let mut headline = format!(
        "<code>{}</code> <b>{}</b> {}",
        entry.symbol(),
        html(&change.tenant),
        verbs(change)
    );
    match entry.primary() {
        Action::Suspend => {
            if let Some(reason) = change
                .record
                .as_ref()
                .and_then(|record| record.suspension_reason.as_deref())
            {
                let _ = write!(headline, " — reason: {}", html(&quote(reason)));
            }
        }
        Action::Delete => {
            headline.push_str(" — data kept");
            if let Some(purge_after) = change.purge_after {
                let _ = write!(headline, ", purge after {}", purge_after.format("%Y-%m-%d"));
            }
            if change.file.is_none() {
                if let Some(reason) = &change.reason {
                    let _ = write!(headline, " ({})", html(reason));
                }
            }
        }
        Action::Purge => {
            let mut parts = Vec::new();
            if let Some(deleted_at) = change.deleted_at {
                parts.push(format!("deleted {}", deleted_at.format("%Y-%m-%d")));
            }
            if let Some(reason) = &change.reason {
                parts.push(html(reason));
            }
            if !parts.is_empty() {
                let _ = write!(headline, " — {}", parts.join(", "));
            }
        }
        _ => {}
    }
    if change.blocked {
        headline.push_str(" — <b>blocked by a conflict</b>, left alone");
    } else if !entry.refusals.is_empty() {
        headline.push_str(" — <b>refused</b>");
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
    let body = diff_body(change);
    let fence = fence(&body);
    let _ = writeln!(out, "{fence}diff\n{body}{fence}\n\n</details>");
    out
}

/// A fence longer than any run of backticks in `body`, so no value can close it.
fn fence(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for character in body.chars() {
        if character == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// One thing that changes: its lines before and after. Absent on one side for a create or a
/// removal; unchanged lines on both sides show as context.
struct Item {
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
/// stay next to each other, and lines of multi-line values diffed by `similar`.
fn diff_body(change: &TenantChange) -> String {
    let mut body = String::new();
    for item in items(change) {
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

fn joined(lines: &[String]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

fn items(change: &TenantChange) -> Vec<Item> {
    let Some(primary) = change.primary() else {
        return Vec::new();
    };
    let mut items = Vec::new();
    match primary {
        Action::Create => {
            for step in &change.steps {
                match step {
                    Step::CreateSchema { schema } => {
                        items.push(Item::added(format!("schema: {schema} (table conversations)")))
                    }
                    Step::CreateRole { role } => {
                        let access = match change.status_after {
                            Some(LiveStatus::Active) => "usage on its schema only",
                            _ => "no access while not active",
                        };
                        items.push(Item::added(format!("role: {role} ({access})")))
                    }
                    Step::CreateCollection { collection } => {
                        items.push(Item::added(format!("collection: {collection}")))
                    }
                    Step::UpdateCollectionMetadata { collection, .. } => items.push(Item::added(
                        format!("collection: {collection} (adopting the one left by an interrupted create)"),
                    )),
                    _ => {}
                }
            }
            field_items(change, &mut items);
        }
        Action::Purge => {
            let risk = change.at_risk.clone().unwrap_or_default();
            for step in &change.steps {
                let line = match step {
                    Step::DropSchema { schema } => format!(
                        "schema: {schema}{}",
                        risk.rows
                            .map(|rows| format!(" ({})", count(rows, "row")))
                            .unwrap_or_default()
                    ),
                    Step::DropRole { role } => format!("role: {role}"),
                    Step::DeleteCollection { collection } => format!(
                        "collection: {collection}{}",
                        risk.records
                            .map(|records| format!(" ({})", count(records, "record")))
                            .unwrap_or_default()
                    ),
                    Step::DeleteBackups { .. } => format!(
                        "backups: {}, {}",
                        count(risk.backup_files, "file"),
                        bytes(risk.backup_bytes)
                    ),
                    Step::DeleteRegistry { .. } => format!(
                        "registry row: {} (an event records the purge)",
                        change.tenant
                    ),
                    _ => continue,
                };
                items.push(Item::removed(line));
            }
            // Drift of a purge is what it leaves alone.
            for drift in &change.drift {
                items.push(Item::context(format!(
                    "{}: {} ({})",
                    drift.resource.label(),
                    drift.name,
                    drift.detail
                )));
            }
            return items;
        }
        _ => {
            field_items(change, &mut items);
            let revoked = change.actions.contains(&Action::Suspend)
                || change.actions.contains(&Action::Delete);
            let granted = change.actions.contains(&Action::Resume)
                || (change.actions.contains(&Action::Restore)
                    && change.status_after == Some(LiveStatus::Active));
            if revoked {
                items.push(Item {
                    before: vec!["access: granted".into()],
                    after: vec!["access: revoked".into()],
                });
            } else if granted {
                items.push(Item {
                    before: vec!["access: revoked".into()],
                    after: vec!["access: granted".into()],
                });
            }
            if primary == Action::Delete {
                let mut what = "backup: final export of tables and collection".to_string();
                if let Some(risk) = &change.at_risk {
                    let _ = write!(what, " ({})", volume(risk.rows, risk.records));
                }
                items.push(Item::added(what));
            }
        }
    }
    for drift in &change.drift {
        let line = format!("{}: {}", drift.resource.label(), drift.name);
        items.push(match drift.problem {
            DriftProblem::Missing => Item::added(format!("{line} ({})", drift.detail)),
            DriftProblem::Wrong => Item {
                before: vec![format!("{line} ({})", drift.detail)],
                after: vec![format!("{line} (corrected)")],
            },
        });
    }
    items
}

fn field_items(change: &TenantChange, items: &mut Vec<Item>) {
    for field in &change.fields {
        let lines = |value: &Option<Value>| {
            value
                .as_ref()
                .map(|value| value_lines(&field.path, value))
                .unwrap_or_default()
        };
        items.push(Item {
            before: lines(&field.old),
            after: lines(&field.new),
        });
    }
}

/// `path: value`, or for a multi-line string `path: |` and the lines indented, so the diff of a
/// long text shows the lines that changed, not the whole text twice.
fn value_lines(path: &str, value: &Value) -> Vec<String> {
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
fn code_line(text: &str) -> String {
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

// Escaping.

/// Text for an HTML part (a `<summary>`): entities for `& < > "`, and any line break or control
/// character as a space, since a blank line would end the HTML block. `@` and `#` become
/// entities too: free text such as a suspension reason must not mention people or teams, or
/// link issues, from a plan comment.
fn html(text: &str) -> String {
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
fn markdown(text: &str) -> String {
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
fn rich(text: &str) -> String {
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

fn single_line(text: &str) -> String {
    text.split(|character: char| {
        character.is_control() || character == '\u{2028}' || character == '\u{2029}'
    })
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join(" ")
}

// Numbers, as the text plan writes them.

/// `1,204 rows`.
fn count(value: u64, noun: &str) -> String {
    format!(
        "{} {noun}{}",
        thousands(value),
        if value == 1 { "" } else { "s" }
    )
}

/// `1,204 rows, 3,400 records`, leaving out what was not measured.
fn volume(rows: Option<u64>, records: Option<u64>) -> String {
    let parts: Vec<String> = [(rows, "row"), (records, "record")]
        .into_iter()
        .filter_map(|(value, noun)| value.map(|value| count(value, noun)))
        .collect();
    if parts.is_empty() {
        "not measured".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    //! Plans come from the real planner run on hand-built states, as in `render::tests`.
    //! Update snapshots with `INSTA_UPDATE=always cargo test --lib render::markdown`, then read
    //! every changed `.snap` file.

    use super::*;
    use crate::observed::LiveStatus;
    use crate::plan::{diff, DataAtRisk, PlanOptions};
    use crate::spec::DesiredStatus;
    use crate::test_support::*;

    /// Creates with long ids, names and models, and three soft deletes.
    fn huge_plan(creates: usize) -> Plan {
        let mut observed = empty_observed();
        let mut specs = Vec::new();
        for index in 0..creates {
            let mut spec = tenant(&format!("tenant_with_a_rather_long_identifier_{index:04}"));
            spec.name = format!("Customer {index} {}", "with a long display name ".repeat(8));
            spec.config.model = format!("model-{}", "x".repeat(120));
            specs.push(spec);
        }
        for (index, id) in ["zeta_gone", "omega_gone", "alpha_gone"].iter().enumerate() {
            let mut spec = tenant(id);
            provision(&mut observed, &spec, LiveStatus::Active, 10 + index as u128);
            spec.state = DesiredStatus::Deleted;
            specs.push(spec);
        }
        let mut plan = diff(&desired(specs), &observed, &PlanOptions::default());
        for change in &mut plan.changes {
            if change.tenant.ends_with("_gone") {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(10_000),
                    records: Some(250),
                    ..DataAtRisk::default()
                });
            }
        }
        plan
    }

    /// Checks what GitHub needs to keep the comment's structure: code fences closed, every
    /// `<details>` closed outside them, and no raw HTML from values outside code blocks.
    /// Returns the lines outside code blocks.
    fn structure(output: &str) -> Vec<&str> {
        let mut outside = Vec::new();
        let mut fence: Option<usize> = None;
        for line in output.lines() {
            let ticks = line.chars().take_while(|c| *c == '`').count();
            match fence {
                Some(open) => {
                    if ticks >= open && line.trim_end().len() == ticks {
                        fence = None;
                    }
                }
                None if ticks >= 3 => fence = Some(ticks),
                None => outside.push(line),
            }
        }
        assert!(fence.is_none(), "unclosed code fence:\n{output}");
        let opened = outside
            .iter()
            .filter(|line| line.starts_with("<details"))
            .count();
        let closed = outside.iter().filter(|line| **line == "</details>").count();
        assert_eq!(opened, closed, "{output}");
        for line in outside.iter().filter(|line| **line != "</details>") {
            let without_summary = line
                .replace("<details open><summary>", "")
                .replace("<details><summary>", "")
                .replace("</summary>", "");
            assert!(
                !without_summary.contains("<details")
                    && !without_summary.contains("</details>")
                    && !without_summary.contains("summary>")
                    && !without_summary.contains("<script"),
                "raw HTML outside code blocks: {line}"
            );
        }
        outside
    }

    #[test]
    fn markdown_plan_mixed() {
        let plan = mixed_plan();
        let output = super::plan(&plan, &plan_context());
        structure(&output);
        assert!(output.contains("> [!CAUTION]"));
        assert!(!output.contains("[!WARNING]"), "nothing is deleted");
        insta::assert_snapshot!(output);
    }

    #[test]
    fn markdown_plan_lifecycle() {
        let plan = lifecycle_plan();
        assert_eq!(plan.refusals.len(), 1);
        let output = super::plan(&plan, &plan_context());
        structure(&output);
        // Every destructive tenant is in the warning with what it puts at risk.
        let warning: String = output
            .lines()
            .skip_while(|line| *line != "> [!WARNING]")
            .take_while(|line| line.starts_with('>'))
            .collect::<Vec<_>>()
            .join("\n");
        for expected in [
            "purge <code>piedpiper</code>: 987,654 rows, 12 records, 3 backup files (18.2 MB), destroyed",
            "delete <code>hooli</code>: 1,204 rows, 3,400 records, kept",
            "delete <code>soylent</code>",
            "delete <code>umbrella</code>",
        ] {
            assert!(warning.contains(expected), "{expected} missing from\n{warning}");
        }
        // Purge first, then soft deletes, then the refused one, then the restore.
        let order: Vec<&str> = output
            .lines()
            .filter(|line| line.starts_with("<details"))
            .map(|line| {
                line.split("<b>")
                    .nth(1)
                    .unwrap()
                    .split("</b>")
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            order,
            ["piedpiper", "hooli", "soylent", "umbrella", "aviato"]
        );
        insta::assert_snapshot!(output);
    }

    #[test]
    fn markdown_plan_no_changes() {
        let plan = no_change_plan();
        assert!(plan.is_empty());
        let output = super::plan(&plan, &plan_context());
        structure(&output);
        assert!(output.contains("No changes."));
        assert!(!output.contains("<details"));
        insta::assert_snapshot!(output);
    }

    #[test]
    fn markdown_plan_stays_under_the_comment_limit() {
        let plan = huge_plan(1000);
        let output = super::plan(&plan, &plan_context());
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        assert!(output.chars().count() <= COMMENT_LIMIT);
        let outside = structure(&output);

        // The summary is complete.
        let summary = plan.summary();
        assert_eq!((summary.create, summary.delete), (1000, 3));
        assert!(output.contains("| `+` | create | 1000 |"), "{output}");
        assert!(output.contains("| `-` | delete | 3 |"), "{output}");

        // Every changed tenant is a block, a collapsed line or counted as left out.
        let blocks = outside
            .iter()
            .filter(|line| line.starts_with("<details"))
            .count();
        let collapsed = outside
            .iter()
            .skip_while(|line| **line != "#### More changes")
            .filter(|line| line.starts_with("- <code>"))
            .count();
        let left_out: usize = output
            .lines()
            .find_map(|line| {
                line.strip_prefix("**")?
                    .strip_suffix(" tenants left out of this comment** (run `tenantctl plan` to see them all)")?
                    .parse()
                    .ok()
            })
            .expect("a left-out sentence");
        assert!(
            collapsed > 0 && left_out > 0,
            "{blocks} {collapsed} {left_out}"
        );
        assert_eq!(
            blocks + collapsed + left_out,
            plan.effective_changes().count()
        );

        // Destructive tenants come first, in full, and are named in the warning.
        for id in ["alpha_gone", "omega_gone", "zeta_gone"] {
            assert!(
                output.contains(&format!(
                    "<details open><summary><code>-</code> <b>{id}</b> delete (soft)"
                )),
                "{id}"
            );
            assert!(output.contains(&format!(
                "> - delete <code>{}</code>: 10,000 rows, 250 records, kept",
                markdown(id)
            )));
        }

        // Snapshot the shape, not 64 KB: the summary, then the first and last lines.
        let (head, _) = output.split_once("#### Changes").unwrap();
        let lines: Vec<&str> = output.lines().collect();
        let shape = format!(
            "{head}[{} bytes, {} characters: {blocks} blocks, {collapsed} collapsed, {left_out} left out]\n...\n{}\n",
            output.len(),
            output.chars().count(),
            lines[lines.len() - 6..].join("\n")
        );
        insta::assert_snapshot!(shape);
    }

    #[test]
    fn markdown_plan_lists_every_tenant_when_it_can() {
        let plan = huge_plan(300);
        let output = super::plan(&plan, &plan_context());
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        let outside = structure(&output);
        assert!(!output.contains("left out of this comment"));
        let blocks = outside
            .iter()
            .filter(|line| line.starts_with("<details"))
            .count();
        let collapsed = outside
            .iter()
            .skip_while(|line| **line != "#### More changes")
            .filter(|line| line.starts_with("- <code>"))
            .count();
        assert!(blocks > 3 && collapsed > 0, "{blocks} {collapsed}");
        assert_eq!(blocks + collapsed, 303);
        // Showing one more block in full would push a tenant out.
        assert!(
            output.len() > COMMENT_LIMIT - 2_000,
            "{} bytes",
            output.len()
        );
    }

    #[test]
    fn markdown_warning_compacts_but_stays_under_the_limit() {
        let mut observed = empty_observed();
        let mut specs = Vec::new();
        for index in 0..2000 {
            let mut spec = tenant(&format!("tenant_with_a_rather_long_identifier_{index:04}"));
            provision(&mut observed, &spec, LiveStatus::Active, index);
            spec.state = DesiredStatus::Deleted;
            specs.push(spec);
        }
        let plan = diff(&desired(specs), &observed, &PlanOptions::default());
        let output = super::plan(&plan, &plan_context());
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        structure(&output);
        assert!(output.contains("| `-` | delete | 2000 |"));
        // Names only, capped: the count of the rest is still there.
        assert!(
            output.contains("> - soft-deleted: <code>tenant\\_with"),
            "{output}"
        );
        assert!(output.contains(" and 1900 more\n"), "{output}");
    }

    #[test]
    fn markdown_values_cannot_break_the_structure() {
        let mut observed = empty_observed();
        let mut evil = tenant("evil");
        evil.name = "</details></summary><script>alert(1)</script> & co".into();
        evil.config.model = "gpt```\n```\n</details>".into();
        let mut renamed = tenant("renamed");
        renamed.name = "renamed inc\nsecond line\nthird line".into();
        provision(&mut observed, &renamed, LiveStatus::Active, 1);
        renamed.name = "renamed inc\nsecond line\n````\nthird line".into();
        renamed.state = DesiredStatus::Suspended;
        renamed.suspension_reason =
            Some("line one </summary>\n\n</details> **bold** `tick` @acme/security #12".into());
        let plan = diff(
            &desired(vec![evil, renamed]),
            &observed,
            &PlanOptions::default(),
        );
        let output = super::plan(&plan, &plan_context());
        let outside = structure(&output);
        assert_eq!(
            outside
                .iter()
                .filter(|line| line.starts_with("<details"))
                .count(),
            2
        );
        // The reason is escaped and on one line in the summary of the block.
        assert!(
            output.contains(
                "<b>renamed</b> suspend, update — reason: &quot;line one &lt;/summary&gt;\\n\\n&lt;/details&gt; **bold** `tick` &#64;acme/security &#35;12&quot;</summary>"
            ),
            "{output}"
        );
        // No mention or issue link outside code blocks.
        assert!(
            outside
                .iter()
                .all(|line| !line.contains("@acme") && !line.contains(" #12")),
            "{output}"
        );
        // A value with backticks gets a longer fence; multi-line values are diffed line by line.
        assert!(output.contains("\n`````diff\n"), "{output}");
        assert!(
            output.contains(
                "\n  name: |\n    renamed inc\n    second line\n+   ````\n    third line\n"
            ),
            "{output}"
        );
        insta::assert_snapshot!(output);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html("a <b>\n\nc & \"d\""),
            "a &lt;b&gt; c &amp; &quot;d&quot;"
        );
        assert_eq!(
            markdown("*x* | [y](z) `w`"),
            "\\*x\\* \\| \\[y\\](z) \\`w\\`"
        );
        assert_eq!(
            rich("role `tenant_<x>` exists"),
            "role <code>tenant\\_&lt;x&gt;</code> exists"
        );
        assert_eq!(rich("odd ` tick"), "odd \\` tick");
        assert_eq!(fence("no ticks"), "```");
        assert_eq!(fence("a ```` b ` c"), "`````");
    }
}
