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

mod blocks;
mod escape;
mod summary;

use super::{plural, PlanContext};
use crate::plan::{Action, Conflict, Plan, Refusal, TenantChange};
use blocks::{block, collapsed_line};
use summary::summary_within_limit;

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
    let mut previous_is_line = false;
    for block in &blocks[..full] {
        // One-line entries (a tenant that only migrates) form one tight list.
        let is_line = block.starts_with("- ");
        if !(is_line && previous_is_line) {
            out.push('\n');
        }
        out.push_str(block);
        previous_is_line = is_line;
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
            Action::Migrate => 8,
            Action::Repair => 9,
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

#[cfg(test)]
mod tests {
    //! Plans come from the real planner run on hand-built states, as in `render::tests`.
    //! Update snapshots with `INSTA_UPDATE=always cargo test --lib render::markdown`, then read
    //! every changed `.snap` file.

    use super::blocks::fence;
    use super::escape::{html, markdown, rich};
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
            output.contains("**Migrations** for 1,000 tenants, each run in the tenant's schema"),
            "{output}"
        );
        assert!(
            output.contains("<code>0002\\_documents</code>: 1,000 tenants"),
            "{output}"
        );
        // Every tenant is named, collapsed to a line or counted as left out.
        let named = (1..=1000)
            .filter(|index| {
                output.contains(&format!("<b>tenant_{index:04}</b>"))
                    || output.contains(&format!(" tenant\\_{index:04} migrate"))
            })
            .count();
        let left_out: usize = output
            .lines()
            .find_map(|line| {
                line.strip_prefix("**")?
                    .strip_suffix(" tenants left out of this comment** (run `tenantctl plan` to see them all)")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        assert_eq!(
            named + left_out,
            1000,
            "{named} named, {left_out} left out:\n{output}"
        );
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
