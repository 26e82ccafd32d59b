//! Markdown for pull-request comments.
//!
//! The comment reads risk first at any size. The summary comes first and is always whole: a
//! Terraform-style totals line (destructive counts in bold), the header, refusals and
//! conflicts, a `[!CAUTION]` (any purge) or `[!WARNING]` (soft deletes) naming every tenant
//! that will be destroyed or soft-deleted with the data at risk, the table of counts, then
//! migrations, orphans, scheduled purges and backup leftovers.
//!
//! Then one collapsible `<details>` block per tenant with its changes as a `diff` code block,
//! riskiest first: held tenants (conflicts, refusals), purges, soft deletes, suspensions,
//! updates and repairs (migrations and credentials included), restores and resumes, and new
//! tenants last. Changes to existing tenants get the room first: they are collapsed to one line
//! each (inside a `<details>`) only when they do not fit in full, and named when not even that
//! fits, and no create is ever shown in full while that happens. A handful of new tenants get
//! blocks; more become one compact table (id, plan, model, max_tokens, rate limit) inside
//! `<details>`, with as many rows as fit and the rest counted.
//!
//! The whole comment, the caller's header (a marker) and footer included, fits in
//! [`CommentOptions::max_chars`] (GitHub's limit by default), so no caller ever has to cut it.
//!
//! Everything that comes from files or from the live systems is escaped: HTML parts get `&`,
//! `<`, `>` and `"` as entities and no line breaks (a blank line would end an HTML block), Markdown
//! parts get backslash escapes, free text sits in code spans (see [`escape`]), and code fences are
//! longer than any run of backticks inside them.

mod blocks;
mod escape;
mod summary;

use super::{plural, thousands, PlanContext};
use crate::plan::{Action, Conflict, Plan, Refusal, TenantChange};
use blocks::{block, collapsed_line, new_tenant_row, NEW_TABLE_HEADER};
use escape::code;
use summary::summary_within_limit;

/// GitHub's limit on the body of an issue or pull-request comment.
pub const COMMENT_LIMIT: usize = 65_536;

/// Entries of a summary list (conflicts, refusals, orphans, scheduled purges) shown before the
/// rest are counted as "and N more": the summary must fit in the comment whatever the plan.
const LIST_LIMIT: usize = 20;

/// What the warning says a purge and a soft delete will do.
const PURGE_MEANS: &str = "A purge will drop the tenant's schema, role and collection and delete its backups: nothing can bring them back.";
const SOFT_DELETE_MEANS: &str =
    "A soft delete will revoke access and keep the data (with a final backup) until the purge.";

/// Destructive tenants named in the warning when even a names-only list would not fit.
const WARNING_NAME_LIMIT: usize = 100;

/// New tenants shown as blocks of their own; more become the compact table.
const NEW_BLOCKS_LIMIT: usize = 5;

/// Existing tenants named in the closing sentence when not even their one-line form fits.
const NAMED_LIMIT: usize = 200;

/// The actions in the order a reviewer must read them: the counts, the totals line and the
/// blocks follow it.
const RISK_ORDER: [Action; 9] = [
    Action::Purge,
    Action::Delete,
    Action::Suspend,
    Action::Update,
    Action::Repair,
    Action::Migrate,
    Action::Restore,
    Action::Resume,
    Action::Create,
];

/// Heading of the blocks.
const CHANGES_HEADING: &str = "\n#### Changes\n";

/// What the caller puts around the comment, and the size the whole must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommentOptions<'a> {
    /// First line(s), e.g. the `<!-- tenantctl-plan -->` marker a workflow finds its comment by.
    pub header: &'a str,
    /// Last line(s), e.g. which commit and run made the plan.
    pub footer: &'a str,
    /// Characters the whole comment may take (GitHub's [`COMMENT_LIMIT`] by default). Counted
    /// in bytes, which are never fewer.
    pub max_chars: usize,
}

impl Default for CommentOptions<'_> {
    fn default() -> Self {
        CommentOptions {
            header: "",
            footer: "",
            max_chars: COMMENT_LIMIT,
        }
    }
}

/// The plan as a pull-request comment of at most [`COMMENT_LIMIT`] characters (and bytes).
pub fn plan(plan: &Plan, context: &PlanContext) -> String {
    comment(plan, context, &CommentOptions::default())
}

/// The plan as a comment with the caller's header and footer, of at most `options.max_chars`
/// bytes in all.
pub fn comment(plan: &Plan, context: &PlanContext, options: &CommentOptions) -> String {
    let header = if options.header.is_empty() {
        String::new()
    } else {
        format!("{}\n", options.header.trim_end_matches('\n'))
    };
    let footer = if options.footer.is_empty() {
        String::new()
    } else {
        format!("\n{}\n", options.footer.trim_end_matches('\n'))
    };
    let limit = options
        .max_chars
        .saturating_sub(header.len() + footer.len());
    let body = body(plan, context, limit);
    let out = format!("{header}{body}{footer}");
    debug_assert!(
        out.len() <= options.max_chars.max(header.len() + footer.len()),
        "{} bytes",
        out.len()
    );
    out
}

/// The summary and the blocks in at most `limit` bytes.
fn body(plan: &Plan, context: &PlanContext, limit: usize) -> String {
    let entries = entries(plan);
    let mut out = summary_within_limit(plan, context, &entries, limit);
    if entries.is_empty() {
        return out;
    }
    let (existing, new): (Vec<&Entry>, Vec<&Entry>) =
        entries.iter().partition(|entry| !entry.is_create());
    out.push_str(CHANGES_HEADING);
    let room = limit.saturating_sub(out.len());
    // New tenants are never left without their one sentence.
    let reserve = if new.is_empty() {
        0
    } else {
        new_sentence(new.len()).len() + 2
    };
    let (existing_part, all_full) = existing_tenants(&existing, room.saturating_sub(reserve));
    let room = room.saturating_sub(existing_part.len());
    out.push_str(&existing_part);
    // No new tenant in full while a change to an existing one is not.
    out.push_str(&new_tenants(&new, room, all_full));
    out
}

/// The blocks of the existing tenants (and held creates) in at most `room` bytes: in full when
/// they fit; else the first ones (the riskiest) in full, as many as possible at all as one line
/// each inside a `<details>`, and the rest named. Also says whether all were shown in full.
fn existing_tenants(entries: &[&Entry], room: usize) -> (String, bool) {
    let blocks: Vec<String> = entries.iter().map(|entry| block(entry)).collect();
    let lines: Vec<String> = entries.iter().map(|entry| collapsed_line(entry)).collect();
    let all_full = join_blocks(&blocks);
    if all_full.len() <= room {
        return (all_full, true);
    }
    let must = entries.iter().filter(|entry| entry.open()).count();
    let footer = lines_wrapper(entries.len()).len() + named_sentence(entries, usize::MAX).len();
    let (full, covered) = layout(
        room.saturating_sub(footer),
        &blocks.iter().map(String::len).collect::<Vec<_>>(),
        &lines.iter().map(String::len).collect::<Vec<_>>(),
        must,
    );
    let mut out = join_blocks(&blocks[..full]);
    if covered > full {
        let wrapper = lines_wrapper(covered - full);
        let (open, close) = wrapper.split_once("\u{0}").unwrap_or((&wrapper, ""));
        out.push_str(open);
        for line in &lines[full..covered] {
            out.push_str(line);
        }
        out.push_str(close);
    }
    if covered < entries.len() {
        let left = room.saturating_sub(out.len());
        out.push_str(&named_sentence(&entries[covered..], left));
    }
    (out, false)
}

/// Blocks separated by blank lines; one-line entries (a tenant that only migrates) form one
/// tight list.
fn join_blocks(blocks: &[String]) -> String {
    let mut out = String::new();
    let mut previous_is_line = false;
    for block in blocks {
        let is_line = block.starts_with("- ");
        if !(is_line && previous_is_line) {
            out.push('\n');
        }
        out.push_str(block);
        previous_is_line = is_line;
    }
    out
}

/// The `<details>` around the one-line entries, split at a NUL where the lines go.
fn lines_wrapper(count: usize) -> String {
    format!(
        "\n<details><summary>{} more change{} to existing tenants, one line each (not enough room for them in full)</summary>\n\n\u{0}\n</details>\n",
        thousands(count as u64),
        plural(count)
    )
}

/// `**12 more changes to existing tenants, not shown here:** `~` `a`, `~` `b` and 10 more
/// (run `tenantctl plan` …)`: existing tenants for which not even a line fits are still named,
/// as many as fit in `room` (at most [`NAMED_LIMIT`]) and the rest counted. Without names, the
/// sentence is short enough for the room the summary always leaves.
fn named_sentence(entries: &[&Entry], room: usize) -> String {
    let head = format!(
        "\n**{} more change{} to existing tenants, not shown here:** ",
        thousands(entries.len() as u64),
        plural(entries.len())
    );
    let tail = |named: usize| {
        let rest = entries.len() - named;
        match (named, rest) {
            // Nothing named: the heading's count says it all.
            (0, _) | (_, 0) => "(run `tenantctl plan` to see them all)\n".to_string(),
            (_, rest) => format!(
                "and {} more (run `tenantctl plan` to see them all)\n",
                thousands(rest as u64)
            ),
        }
    };
    let mut names = String::new();
    let mut named = 0;
    for entry in entries.iter().take(NAMED_LIMIT) {
        let name = format!("`{}` {}", entry.symbol(), code(&entry.change.tenant));
        let separator = if named == 0 { "" } else { ", " };
        let longer =
            head.len() + names.len() + separator.len() + name.len() + 1 + tail(named + 1).len();
        if longer > room {
            break;
        }
        names.push_str(separator);
        names.push_str(&name);
        named += 1;
    }
    let gap = if named == 0 { "" } else { " " };
    format!("{head}{names}{gap}{}", tail(named))
}

/// The new tenants in at most `room` bytes: a handful as blocks (only when `blocks_allowed`:
/// every existing tenant was shown in full), more as the compact table inside `<details>` with
/// as many rows as fit, the rest counted.
fn new_tenants(entries: &[&Entry], room: usize, blocks_allowed: bool) -> String {
    if entries.is_empty() {
        return String::new();
    }
    if blocks_allowed && entries.len() <= NEW_BLOCKS_LIMIT {
        let blocks: Vec<String> = entries.iter().map(|entry| block(entry)).collect();
        let joined = join_blocks(&blocks);
        if joined.len() <= room {
            return joined;
        }
    }
    let open = format!(
        "\n<details><summary>{} new tenant{}</summary>\n\n{NEW_TABLE_HEADER}",
        thousands(entries.len() as u64),
        plural(entries.len())
    );
    let close = "\n</details>\n";
    let rows: Vec<String> = entries.iter().map(|entry| new_tenant_row(entry)).collect();
    let fixed = open.len() + close.len();
    let mut used = fixed;
    let mut shown = 0;
    for row in &rows {
        let rest = entries.len() - shown - 1;
        let tail = if rest > 0 { more_new(rest).len() } else { 0 };
        if used + row.len() + tail > room {
            break;
        }
        used += row.len();
        shown += 1;
    }
    if shown == 0 {
        return new_sentence(entries.len());
    }
    let mut out = open;
    for row in &rows[..shown] {
        out.push_str(row);
    }
    if shown < entries.len() {
        out.push_str(&more_new(entries.len() - shown));
    }
    out.push_str(close);
    out
}

/// After the rows that fit: `… and 1,172 more new tenants (run `tenantctl plan` …)`.
fn more_new(rest: usize) -> String {
    format!(
        "\n… and {} more new tenant{}, not listed here (run `tenantctl plan` to see them all)\n",
        thousands(rest as u64),
        plural(rest)
    )
}

/// When not even the table fits: `**2,500 new tenants**, not listed here (…)`.
fn new_sentence(count: usize) -> String {
    format!(
        "\n**{} new tenant{}**, not listed here (run `tenantctl plan` to see them all)\n",
        thousands(count as u64),
        plural(count)
    )
}

/// How many entries are shown in full and how many are shown at all (the rest collapsed), given
/// the room and the size of each entry's block and collapsed line.
///
/// The first `must` entries (destructive and held) get full blocks as far as they fit. Then the
/// number of entries shown at all is maximised, and with it the number shown in full: showing one
/// more in full never lets more entries be shown, so both are found by binary search.
fn layout(budget: usize, blocks: &[usize], lines: &[usize], must: usize) -> (usize, usize) {
    let count = blocks.len();
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

// Order of the blocks.

/// One tenant block to render, with what keeps tenantctl away from it.
struct Entry<'a> {
    change: &'a TenantChange,
    conflicts: Vec<&'a Conflict>,
    refusals: Vec<&'a Refusal>,
    /// It runs a migration that drops or rewrites data.
    destroys: bool,
}

impl Entry<'_> {
    fn primary(&self) -> Action {
        self.change.primary().unwrap_or(Action::Update)
    }

    /// Blocked by a conflict or refused by a safety rule: apply will not do what it shows.
    fn held(&self) -> bool {
        self.change.blocked || !self.refusals.is_empty()
    }

    /// A new tenant apply will create (a held one is shown with the conflicts instead).
    fn is_create(&self) -> bool {
        !self.held() && self.primary() == Action::Create
    }

    /// Held tenants next to their conflict or refusal, then purges, soft deletes and
    /// migrations that drop or rewrite data, suspensions, updates and repairs, restores and
    /// resumes, and new tenants last.
    fn importance(&self) -> u8 {
        if self.held() {
            return 0;
        }
        if self.destroys {
            return 2;
        }
        match self.primary() {
            Action::Purge => 1,
            Action::Delete => 2,
            Action::Suspend => 3,
            Action::Update | Action::Repair | Action::Migrate => 4,
            Action::Restore | Action::Resume => 5,
            Action::Create => 6,
        }
    }

    /// Held and destructive blocks open by default: those are the ones a reviewer must read.
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

/// Every tenant that changes or would change (blocked ones included), riskiest first.
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
            destroys: !plan.destructive_tables(change).is_empty(),
        })
        .collect();
    entries.sort_by(|a, b| {
        (a.importance(), &a.change.tenant).cmp(&(b.importance(), &b.change.tenant))
    });
    entries
}

#[cfg(test)]
mod tests {
    //! Plans come from the real planner run on hand-built states, as in `render::tests`.
    //! Update snapshots with `INSTA_UPDATE=always cargo test --lib render::markdown`, then read
    //! every changed `.snap` file. `tests/markdown_html.rs` renders every snapshot here with
    //! cmark-gfm (GitHub's renderer) and checks the HTML.

    use super::blocks::fence;
    use super::escape::{cell, code, html, html_code, markdown, rich};
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
        let mut depth = 0i32;
        for line in &outside {
            if line.starts_with("<details") {
                depth += 1;
            }
            if *line == "</details>" {
                depth -= 1;
            }
            assert!(depth >= 0, "</details> before its <details>:\n{output}");
        }
        assert_eq!(depth, 0, "unbalanced <details>:\n{output}");
        for line in outside.iter().filter(|line| **line != "</details>") {
            let without_ours = strip_code(line)
                .replace("<details open><summary>", "")
                .replace("<details><summary>", "")
                .replace("</summary>", "");
            assert!(
                !without_ours.contains("<details")
                    && !without_ours.contains("</details>")
                    && !without_ours.contains("summary>")
                    && !without_ours.contains("<script"),
                "raw HTML outside code blocks: {line}"
            );
        }
        outside
    }

    /// A line without its code (backtick spans and `<code>` elements): what GitHub would read
    /// for links, mentions and references.
    fn strip_code(line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(start) = rest.find("<code>") {
            out.push_str(&rest[..start]);
            match rest[start..].find("</code>") {
                Some(end) => rest = &rest[start + end + "</code>".len()..],
                None => {
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        // Backtick spans: the run that opens one closes it.
        let mut plain = String::new();
        let mut chars = out.chars().peekable();
        while let Some(character) = chars.next() {
            if character == '\\' {
                if let Some(next) = chars.next() {
                    plain.push(next);
                }
                continue;
            }
            if character != '`' {
                plain.push(character);
                continue;
            }
            let mut run = 1;
            while chars.peek() == Some(&'`') {
                chars.next();
                run += 1;
            }
            let closing = "`".repeat(run);
            let rest: String = chars.clone().collect();
            match rest.find(&closing) {
                Some(end) => {
                    for _ in 0..end + run {
                        chars.next();
                    }
                }
                None => plain.push_str(&closing),
            }
        }
        plain
    }

    /// The `N` of the closing sentence that names existing tenants and counts the rest
    /// (`… and N more (run `tenantctl plan` to see them all)`); 0 without one.
    fn counted_after_names(output: &str) -> usize {
        output
            .lines()
            .find_map(|line| {
                let (_, rest) = line.rsplit_once(" and ")?;
                rest.strip_suffix(" more (run `tenantctl plan` to see them all)")?
                    .replace(',', "")
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// The `<b>id</b>` of every block, in order.
    fn block_order(output: &str) -> Vec<String> {
        output
            .lines()
            .filter(|line| line.starts_with("<details") && line.contains("<b>"))
            .map(|line| {
                line.split("<b>")
                    .nth(1)
                    .unwrap()
                    .split("</b>")
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn markdown_plan_mixed() {
        let plan = mixed_plan();
        let output = super::plan(&plan, &plan_context());
        structure(&output);
        assert!(output.contains("> [!CAUTION]"), "the conflict");
        assert!(!output.contains("[!WARNING]"), "nothing is deleted");
        // The suspension has a symbol of its own, and the riskiest blocks come first.
        assert!(output.contains("| `=` | suspend | 1 |"), "{output}");
        assert_eq!(
            block_order(&output),
            ["stark", "hooli", "globex", "initech", "umbrella", "massive", "acme"]
        );
        insta::assert_snapshot!(output);
    }

    #[test]
    fn markdown_plan_lifecycle() {
        let plan = lifecycle_plan();
        assert_eq!(plan.refusals.len(), 1);
        let output = super::plan(&plan, &plan_context());
        structure(&output);
        assert!(
            output.starts_with(
                "### tenantctl plan\n\nPlan: **1 to purge**, **3 to soft-delete**, 1 to restore. **Refused: apply will change nothing.**"
            ),
            "{output}"
        );
        // A purge is in the plan: the warning is a caution, in the future tense, and names
        // every destructive tenant with what it puts at risk.
        let warning: String = output
            .lines()
            .skip_while(|line| !line.contains("will be purged"))
            .take_while(|line| line.starts_with('>'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            output.contains("> [!CAUTION]\n> **1 tenant will be purged and 3 soft-deleted.**"),
            "{output}"
        );
        for expected in [
            "will permanently destroy `piedpiper`: 987,654 rows, 12 records, 3 backup files (18.2 MB)",
            "will soft-delete `hooli`: 1,204 rows, 3,400 records, kept",
            "will soft-delete `soylent`",
            "will soft-delete `umbrella`",
        ] {
            assert!(warning.contains(expected), "{expected} missing from\n{warning}");
        }
        assert!(!output.contains("[!WARNING]"), "{output}");
        // The refused one first, then the purge, the soft deletes and the restore.
        assert_eq!(
            block_order(&output),
            ["umbrella", "piedpiper", "hooli", "soylent", "aviato"]
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

    /// What every size of the onboarding plan must show: the totals first, the destruction as a
    /// caution, the update's fields and the suspension's reason in full, every new tenant
    /// listed or counted, within the limit.
    fn check_onboarding(output: &str, creates: usize) {
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        let outside = structure(output);
        let first_lines: Vec<&str> = output.lines().take(3).collect();
        assert_eq!(
            first_lines[2],
            format!(
                "Plan: **1 to purge**, **1 to soft-delete**, 1 to suspend, 1 to update, {} to create.",
                thousands(creates as u64)
            ),
            "{output}"
        );
        assert!(output.contains("> [!CAUTION]\n> **1 tenant will be purged and 1 soft-deleted.**"));
        assert!(output.contains(
            "> - will permanently destroy `hooli`: 57 rows, 1,204 records, 3 backup files (18.2 MB)"
        ));
        // Changes to existing tenants in full, before any new tenant.
        assert_eq!(
            block_order(output)[..4],
            ["hooli", "initech", "massive", "globex"]
        );
        for line in [
            "- plan: \"pro\"\n+ plan: \"enterprise\"\n- config.max_tokens: 4000\n+ config.max_tokens: 8000\n",
            "<b>massive</b> suspend — reason: <code>invoice #4411 overdue &gt; 60 days | see &lt;billing&gt; ticket_*urgent*</code></summary>",
        ] {
            assert!(output.contains(line), "{line} missing from\n{output}");
        }
        // Outside code, no issue reference and no raw value.
        for line in &outside {
            let plain = strip_code(line);
            assert!(
                !plain.contains("#4411") && !plain.contains("<billing>"),
                "{line}"
            );
        }
        // Every new tenant is a row of the table or counted after it.
        let rows = (1..=creates)
            .filter(|index| output.contains(&format!("| `customer_{index:04}` | `pro` |")))
            .count();
        let counted: usize = output
            .lines()
            .find_map(|line| {
                line.strip_prefix("… and ")?
                    .split_once(" more new tenant")?
                    .0
                    .replace(',', "")
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        assert_eq!(rows + counted, creates, "{rows} rows, {counted} counted");
        assert!(output.contains(&format!(
            "<details><summary>{} new tenants</summary>",
            thousands(creates as u64)
        )));
        assert!(
            !output.contains("<b>customer_"),
            "no new tenant as a block of its own"
        );
    }

    #[test]
    fn markdown_onboarding_of_300_puts_risk_first() {
        let output = super::plan(&onboarding_plan(300), &plan_context());
        check_onboarding(&output, 300);
        assert!(!output.contains("more new tenant"), "all 300 fit as rows");
        insta::assert_snapshot!(output);
    }

    #[test]
    fn markdown_onboarding_of_2500_puts_risk_first() {
        let output = super::plan(&onboarding_plan(2500), &plan_context());
        check_onboarding(&output, 2500);
        assert!(
            output.contains("more new tenants, not listed here"),
            "{output}"
        );
        // The rows fill the comment: one more would not fit.
        assert!(output.len() > COMMENT_LIMIT - 100, "{} bytes", output.len());
        insta::assert_snapshot!(output);
    }

    #[test]
    fn a_few_new_tenants_are_blocks_that_leave_out_the_plans_defaults() {
        let output = super::plan(&onboarding_plan(2), &plan_context());
        structure(&output);
        assert_eq!(
            block_order(&output),
            [
                "hooli",
                "initech",
                "massive",
                "globex",
                "customer_0001",
                "customer_0002"
            ]
        );
        let block: String = output
            .split("<b>customer_0001</b>")
            .nth(1)
            .unwrap()
            .split("</details>")
            .next()
            .unwrap()
            .to_string();
        assert!(
            block.contains("+ name: \"customer_0001 inc\"\n+ plan: \"pro\"\n"),
            "{block}"
        );
        for default in ["protected", "retention_days", "config.", "status"] {
            assert!(!block.contains(default), "{default} shown in\n{block}");
        }
        assert!(
            !output.contains("new tenants</summary>"),
            "no table for two"
        );
    }

    #[test]
    fn the_callers_header_and_footer_fit_in_the_budget() {
        let plan = onboarding_plan(2500);
        let footer = format!(
            "---\nPlan of 1a2b3c4, [run 42](https://ci/run/42). {}",
            "x".repeat(500)
        );
        for max_chars in [COMMENT_LIMIT, 30_000, 8_000] {
            let options = CommentOptions {
                header: "<!-- tenantctl-plan -->",
                footer: &footer,
                max_chars,
            };
            let output = comment(&plan, &plan_context(), &options);
            assert!(
                output.len() <= max_chars,
                "{max_chars}: {} bytes",
                output.len()
            );
            assert!(output.starts_with("<!-- tenantctl-plan -->\n### tenantctl plan\n"));
            assert!(output.ends_with(&format!("\n{footer}\n")), "{max_chars}");
            structure(&output);
            // The update and the suspension stay in full whatever the size.
            assert!(output.contains("+ config.max_tokens: 8000"), "{max_chars}");
            assert!(
                output.contains("reason: <code>invoice #4411"),
                "{max_chars}"
            );
        }
    }

    /// The smallest budget the command line accepts holds for plans that name hundreds of
    /// existing tenants and thousands of new ones: the closing sentences shrink to fit.
    #[test]
    fn the_smallest_budget_holds_whatever_the_plan() {
        let mut observed = empty_observed();
        let mut specs = Vec::new();
        for index in 0..400 {
            let live = tenant(&format!(
                "existing_customer_with_a_longer_identifier_{index:04}"
            ));
            provision(&mut observed, &live, LiveStatus::Active, index);
            let mut spec = live.clone();
            spec.name = format!("{} renamed", live.name);
            specs.push(spec);
        }
        for index in 0..100 {
            specs.push(tenant(&format!("newcomer_{index:03}")));
        }
        let updates = diff(&desired(specs), &observed, &PlanOptions::default());
        for (plan, name) in [(updates, "updates"), (onboarding_plan(2500), "onboarding")] {
            let options = CommentOptions {
                header: "<!-- tenantctl-plan -->",
                footer: "---\nPlan of 1a2b3c4.",
                max_chars: 4_096,
            };
            let output = comment(&plan, &plan_context(), &options);
            assert!(
                output.len() <= 4_096,
                "{name}: {} bytes\n{output}",
                output.len()
            );
            structure(&output);
            assert!(
                output.contains("(run `tenantctl plan` to see them all)"),
                "{name}"
            );
        }
    }

    /// A run that did not finish is said first, its tenants in code spans.
    #[test]
    fn an_interrupted_run_is_the_first_warning() {
        let mut observed = empty_observed();
        let spec = tenant("initech");
        provision(&mut observed, &spec, LiveStatus::Active, 1);
        observed.last_migration_run = Some(crate::observed::MigrationRun {
            run_id: uuid::Uuid::from_u128(7),
            updated_at: observed.server_time,
            pending: 2,
            applied: 1,
            failed: 0,
            pending_tenants: vec!["initech".into(), "umbrella".into()],
        });
        let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
        let output = super::plan(&plan, &plan_context());
        assert!(
            output.contains(
                "> [!WARNING]\n> the migration run 00000000-0000-0000-0000-000000000007 (last active 2026-11-27 12:00:00 UTC) did not finish: 1 applied, 0 failed, 2 never finished (`initech`, `umbrella`); their migrations are still pending, and apply resumes them\n"
            ),
            "{output}"
        );
    }

    #[test]
    fn markdown_plan_stays_under_the_comment_limit() {
        let plan = huge_plan(1000);
        let output = super::plan(&plan, &plan_context());
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        assert!(output.chars().count() <= COMMENT_LIMIT);
        structure(&output);

        // The summary is complete.
        let summary = plan.summary();
        assert_eq!((summary.create, summary.delete), (1000, 3));
        assert!(output.contains("| `+` | create | 1,000 |"), "{output}");
        assert!(output.contains("| `-` | soft-delete | 3 |"), "{output}");

        // Destructive tenants come first, in full, and are named in the warning.
        for id in ["alpha_gone", "omega_gone", "zeta_gone"] {
            assert!(
                output.contains(&format!(
                    "<details open><summary><code>-</code> <b>{id}</b> delete (soft)"
                )),
                "{id}"
            );
            assert!(output.contains(&format!(
                "> - will soft-delete `{id}`: 10,000 rows, 250 records, kept"
            )));
        }
        // The new tenants: a table, as many rows as fit, the rest counted.
        assert!(output.contains("<details><summary>1,000 new tenants</summary>"));
        let rows = output
            .lines()
            .filter(|line| line.starts_with("| `tenant_with_a_rather_long_identifier_"))
            .count();
        assert!(rows > 100, "{rows}");
        assert!(output.contains(&format!(
            "… and {} more new tenants, not listed here",
            thousands((1000 - rows) as u64)
        )));
    }

    /// Many updates and a few creates: the updates keep the room, collapsed to one line each in
    /// a `<details>` when they do not fit in full; the creates get no block; and when not even
    /// a line fits, an existing tenant is still named.
    #[test]
    fn changes_to_existing_tenants_are_never_dropped_for_new_ones() {
        let mut observed = empty_observed();
        let mut specs = Vec::new();
        for index in 0..1500 {
            let live = tenant(&format!(
                "existing_customer_with_a_longer_identifier_{index:04}"
            ));
            provision(&mut observed, &live, LiveStatus::Active, index);
            let mut spec = live.clone();
            spec.name = format!("{} renamed {}", live.name, "with a longer name ".repeat(6));
            specs.push(spec);
        }
        for index in 0..3 {
            specs.push(tenant(&format!("newcomer_{index}")));
        }
        let plan = diff(&desired(specs), &observed, &PlanOptions::default());
        let output = super::plan(&plan, &plan_context());
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        let outside = structure(&output);
        assert!(
            !output.contains("<b>newcomer_"),
            "no new tenant in full:\n{output}"
        );
        let full = outside
            .iter()
            .filter(|line| line.starts_with("<details><summary><code>~</code>"))
            .count();
        let collapsed = outside
            .iter()
            .filter(|line| line.starts_with("- `~` `existing_customer_with_a_longer_identifier_"))
            .count();
        assert!(output.contains(&format!(
            "<details><summary>{} more changes to existing tenants, one line each",
            thousands(collapsed as u64)
        )));
        let named = output
            .lines()
            .find(|line| {
                line.starts_with("**")
                    && line.contains("more changes to existing tenants, not shown here")
            })
            .map(|line| {
                line.matches("`~` `existing_customer_with_a_longer_identifier_")
                    .count()
            })
            .unwrap_or(0);
        let and_more = counted_after_names(&output);
        assert_eq!(
            full + collapsed + named + and_more,
            1500,
            "{full} {collapsed} {named} {and_more}"
        );
        assert!(collapsed > 0 && named > 0, "{full} {collapsed} {named}");
        // The three new tenants are counted at the end.
        assert!(
            output.contains("**3 new tenants**, not listed here"),
            "{output}"
        );
    }

    #[test]
    fn markdown_plan_destructive_migration() {
        let output = super::plan(&destructive_plan(None), &plan_context());
        structure(&output);
        assert!(output.contains(
            "Plan: 3 to migrate, 1 to create; **3 tenants will run migrations that drop or rewrite data**."
        ), "{output}");
        assert!(output.contains(
            "> [!CAUTION]\n> **Migrations that will drop or rewrite data in 3 tenants**\n> - `0002_forget_messages` line 2: `DROP COLUMN` on `conversations`, in 3 tenants: 1,204 rows at risk\n>   most rows: `acme` 1,204\n"
        ), "{output}");
        // The tenants that lose data come first, with their rows at risk.
        let changes = output.split("#### Changes").nth(1).unwrap();
        let position = |needle: &str| changes.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(changes.contains(
            "<b>acme</b> migrate — 0002_forget_messages — <b>1,204 rows at risk</b> (a migration drops or rewrites data)"
        ), "{output}");
        assert!(position("<b>acme</b>") < position("<b>zeta_new</b>"));
        insta::assert_snapshot!(output);
    }

    #[test]
    fn markdown_plan_credentials() {
        insta::assert_snapshot!(super::plan(&credentials_plan(), &plan_context()));
    }

    #[test]
    fn markdown_plan_migrations() {
        insta::assert_snapshot!(super::plan(&migration_plan(3), &plan_context()));
    }

    #[test]
    fn markdown_plan_of_a_thousand_tenants_migrating_shows_the_sql_once() {
        let plan = migration_plan(1000);
        let output = super::plan(&plan, &plan_context());
        assert!(output.len() <= COMMENT_LIMIT, "{} bytes", output.len());
        structure(&output);
        assert_eq!(output.matches("CREATE TABLE documents").count(), 1);
        assert_eq!(output.matches("ADD COLUMN summary").count(), 1);
        assert!(
            output.contains("<code>0004_summary_index</code>: 1,000 tenants (online: after the tenant's transaction, one statement at a time)"),
            "{output}"
        );
        assert!(
            output.contains("**Migrations** for 1,000 tenants, each run in the tenant's schema"),
            "{output}"
        );
        assert!(
            output.contains("<code>0002_documents</code>: 1,000 tenants"),
            "{output}"
        );
        // Every tenant is named: in a block, on a line of its own, or in the closing sentence.
        let named = (1..=1000)
            .filter(|index| {
                output.contains(&format!("<b>tenant_{index:04}</b>"))
                    || output.contains(&format!("`tenant_{index:04}` migrate"))
                    || output.contains(&format!("`~` `tenant_{index:04}`"))
            })
            .count();
        let and_more = counted_after_names(&output);
        assert_eq!(
            named + and_more,
            1000,
            "{named} named, {and_more} counted:\n{output}"
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
        assert!(output.contains("| `-` | soft-delete | 2,000 |"));
        assert!(output.contains("> [!WARNING]\n> **2,000 tenants will be soft-deleted.**"));
        // Names only, capped: the count of the rest is still there.
        assert!(
            output.contains("> - will be soft-deleted: `tenant_with"),
            "{output}"
        );
        assert!(output.contains(" and 1,900 more\n"), "{output}");
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
        // The reason is escaped, in `<code>`, on one line in the summary of the block.
        assert!(
            output.contains(
                "<b>renamed</b> suspend, update — reason: <code>line one &lt;/summary&gt;\\n\\n&lt;/details&gt; **bold** `tick` @acme/security #12</code></summary>"
            ),
            "{output}"
        );
        // No mention or issue link outside code.
        assert!(
            outside.iter().all(
                |line| !strip_code(line).contains("@acme") && !strip_code(line).contains("#12")
            ),
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
        assert_eq!(rich("role `tenant_<x>` exists"), "role `tenant_<x>` exists");
        assert_eq!(rich("odd ` tick"), "odd \\` tick");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
        assert_eq!(code("two\nlines"), "`two\\nlines`");
        assert_eq!(code(""), "` `");
        assert_eq!(cell("a|b"), "`a\\|b`");
        assert_eq!(
            html_code("<x> & #1 @y"),
            "<code>&lt;x&gt; &amp; #1 @y</code>"
        );
        assert_eq!(fence("no ticks"), "```");
        assert_eq!(fence("a ```` b ` c"), "`````");
    }
}
