//! Snapshot tests of the renderers, without any server: plans come from the real planner run on
//! hand-built desired and observed states, apply reports are built by hand.
//!
//! Update snapshots with `INSTA_UPDATE=always cargo test --lib render`, then read every changed
//! `.snap` file before committing it.

use super::{json, text, Style};
use crate::report::{ApplyReport, TenantOutcome, TenantResult};

use crate::plan::{diff, Action, Plan, PlanOptions, FORMAT_VERSION};
use crate::spec::DesiredStatus;
use crate::test_support::*;
use serde_json::Value;

const PLAIN: Style = Style { color: false };

// Plans.

/// A database tenantctl never touched: the control schema is pending and every tenant is new.
fn fresh_plan() -> Plan {
    let mut observed = empty_observed();
    observed.control_schema_version = None;

    let acme = tenant("acme");
    let mut beta = tenant("beta");
    beta.state = DesiredStatus::Suspended;
    beta.suspension_reason = Some("invoice overdue".into());
    let mut corp = tenant("corp");
    corp.protected = true;
    corp.plan = "enterprise".into();
    let mut delta = tenant("delta");
    delta.config.features.insert("rag".into(), false);

    diff(
        &desired(vec![acme, beta, corp, delta]),
        &observed,
        &PlanOptions::default(),
    )
}

fn apply_report() -> ApplyReport {
    ApplyReport {
        run_id: Some(uid(99)),
        migrated: vec![1],
        not_started: 2,
        stopped: Some("stopped by a signal".into()),
        tenants: vec![
            TenantResult {
                tenant: "acme".into(),
                actions: vec![Action::Create],
                outcome: TenantOutcome::Applied,
                retries: 1,
            },
            TenantResult {
                tenant: "globex".into(),
                actions: vec![Action::Update, Action::Repair],
                outcome: TenantOutcome::RolledBack {
                    reason: "postgres: permission denied for schema tenant_globex".into(),
                    undone: vec!["collection `tenant_globex` created by this run is gone".into()],
                    undo_failed: vec![
                        "could not restore the metadata of collection `tenant_globex_docs`: chroma at `http://chroma.internal:8000` answered 503 Service Unavailable to update collection metadata: overloaded; the next plan shows what is left".into(),
                    ],
                },
                retries: 0,
            },
            TenantResult {
                tenant: "stark".into(),
                actions: vec![Action::Create],
                outcome: TenantOutcome::Blocked {
                    reason: "role `tenant_stark` already exists (tenantctl did not create it)"
                        .into(),
                },
                retries: 0,
            },
            TenantResult {
                tenant: "initech".into(),
                actions: vec![Action::Migrate],
                outcome: TenantOutcome::Unfinished {
                    reason: "migration `tenants/migrations/0005_note_index.sql` failed at line 2: canceling statement due to lock timeout; what ran before it is kept, and the next apply resumes from there".into(),
                },
                retries: 2,
            },
        ],
        retries: 3,
        ..ApplyReport::default()
    }
}

/// Replaces the escape character so the colored snapshot stays readable.
fn visible_escapes(text: &str) -> String {
    text.replace('\u{1b}', "\\e")
}

// Text plan.

#[test]
fn text_plan_fresh_database() {
    let plan = fresh_plan();
    assert!(plan.conflicts.is_empty(), "{:#?}", plan.conflicts);
    insta::assert_snapshot!(text::plan(&plan, &plan_context(), PLAIN));
}

#[test]
fn text_plan_lifecycle() {
    let plan = lifecycle_plan();
    assert_eq!(
        actions_by_tenant(&plan),
        vec![
            ("aviato", &[Action::Restore][..]),
            ("hooli", &[Action::Delete][..]),
            ("piedpiper", &[Action::Purge][..]),
            ("raviga", &[][..]),
            ("soylent", &[Action::Delete][..]),
            ("umbrella", &[Action::Delete][..]),
        ]
    );
    assert_eq!(plan.refusals.len(), 1);
    insta::assert_snapshot!(text::plan(&plan, &plan_context(), PLAIN));
}

#[test]
fn json_plan_lifecycle() {
    insta::assert_snapshot!(json_plan_without_version(&lifecycle_plan()));
}

#[test]
fn text_plan_mixed() {
    let plan = mixed_plan();
    assert_eq!(
        actions_by_tenant(&plan),
        vec![
            ("acme", &[Action::Create][..]),
            ("globex", &[Action::Update][..]),
            ("hooli", &[Action::Suspend][..]),
            ("initech", &[Action::Repair][..]),
            ("massive", &[Action::Resume][..]),
            ("stark", &[Action::Create][..]),
            ("umbrella", &[Action::Repair][..]),
            ("wayne", &[][..]),
        ]
    );
    assert_eq!(plan.conflicts.len(), 1);
    insta::assert_snapshot!(text::plan(&plan, &plan_context(), PLAIN));
}

#[test]
fn text_plan_no_changes() {
    let plan = no_change_plan();
    assert!(plan.is_empty());
    let output = text::plan(&plan, &plan_context(), PLAIN);
    assert!(output.contains("No changes."));
    insta::assert_snapshot!(output);
}

#[test]
fn text_plan_mixed_in_color() {
    let output = text::plan(&mixed_plan(), &plan_context(), Style { color: true });
    assert!(output.contains("\u{1b}["));
    insta::assert_snapshot!(visible_escapes(&output));
}

#[test]
fn plain_style_has_no_escape_codes() {
    for plan in [fresh_plan(), mixed_plan(), no_change_plan()] {
        assert!(!text::plan(&plan, &plan_context(), PLAIN).contains('\u{1b}'));
    }
    for result in &apply_report().tenants {
        assert!(!text::tenant_result(result, PLAIN).contains('\u{1b}'));
    }
}

#[test]
fn detect_never_colors_when_not_a_terminal() {
    // Reads NO_COLOR but never sets it: tests run in parallel and share the environment.
    assert!(!Style::detect(false).color);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    assert_eq!(Style::detect(true).color, !no_color);
}

// JSON plan.

/// JSON output with the tool version replaced (exactly once), so a version bump does not break
/// snapshots.
fn without_version(output: String) -> String {
    let version = format!("\"tool_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(output.matches(&version).count(), 1, "{output}");
    output.replace(&version, "\"tool_version\": \"[version]\"")
}

fn json_plan_without_version(plan: &Plan) -> String {
    without_version(json::plan(plan))
}

#[test]
fn json_plan_mixed() {
    insta::assert_snapshot!(json_plan_without_version(&mixed_plan()));
}

#[test]
fn json_plan_has_the_documented_shape() {
    let plan = mixed_plan();
    let document: Value = serde_json::from_str(&json::plan(&plan)).unwrap();
    assert_eq!(document["format_version"], FORMAT_VERSION);
    assert_eq!(document["format_version"], 1);
    assert_eq!(document["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(document["has_changes"], true);
    let changes = document["changes"].as_array().expect("changes is an array");
    assert_eq!(changes.len(), plan.changes.len());
    for change in changes {
        assert!(change["tenant"].is_string(), "{change}");
        assert!(change["actions"].is_array(), "{change}");
        let steps = change["steps"].as_array().expect("steps is an array");
        for step in steps {
            assert!(step["kind"].is_string(), "{step}");
        }
    }
    assert!(changes
        .iter()
        .any(|change| !change["steps"].as_array().unwrap().is_empty()));
    assert_eq!(document["conflicts"].as_array().unwrap().len(), 1);
}

// Apply report.

#[test]
fn json_apply_report() {
    let report = apply_report();
    let rendered = without_version(json::report(&report));
    let value: Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(value["applied"], 1);
    assert_eq!(value["failed"], 3);
    assert_eq!(value["tenants"][1]["result"], "rolled_back");
    assert_eq!(value["tenants"][3]["result"], "unfinished");
    insta::assert_snapshot!(rendered);
}

#[test]
fn text_apply_report() {
    let report = apply_report();
    let mut output = String::new();
    for result in &report.tenants {
        output.push_str(&text::tenant_result(result, PLAIN));
    }
    output.push('\n');
    output.push_str(&text::report_summary(&report));
    output.push('\n');
    insta::assert_snapshot!(output);
}

#[test]
fn text_apply_summary_all_applied() {
    let report = ApplyReport {
        run_id: None,
        migrated: Vec::new(),
        not_started: 0,
        tenants: vec![TenantResult {
            tenant: "acme".into(),
            actions: vec![Action::Create],
            outcome: TenantOutcome::Applied,
            retries: 0,
        }],
        ..ApplyReport::default()
    };
    assert_eq!(
        text::report_summary(&report),
        "Apply complete: 1 tenant applied."
    );
}

#[test]
fn text_plan_migrations() {
    insta::assert_snapshot!(text::plan(&migration_plan(3), &plan_context(), PLAIN));
}

#[test]
fn json_plan_migrations() {
    let plan = migration_plan(2);
    let value: Value = serde_json::from_str(&json::plan(&plan)).unwrap();
    // Per tenant: the versions and checksums it runs.
    let first = &value["changes"][0];
    assert_eq!(first["tenant"], "tenant_0001");
    assert_eq!(first["migrations"][0]["version"], 2);
    assert_eq!(
        first["migrations"][1]["checksum"].as_str().unwrap().len(),
        64
    );
    // The no-transaction migration is marked; the others carry no flag.
    assert_eq!(first["migrations"][2]["online"], true);
    assert_eq!(first["migrations"][1].get("online"), None);
    insta::assert_snapshot!(json::plan(&plan));
}

#[test]
fn text_plan_credentials() {
    insta::assert_snapshot!(text::plan(&credentials_plan(), &plan_context(), PLAIN));
}

#[test]
fn json_plan_credentials() {
    let plan = credentials_plan();
    assert!(plan.generates_secrets());
    insta::assert_snapshot!(json::plan(&plan));
}

#[test]
fn text_plan_destructive_migration() {
    let output = text::plan(&destructive_plan(None), &plan_context(), Style::default());
    assert!(
        output.contains(
            "  ! destroys data             tenants/migrations/0002_forget_messages.sql:2 DROP COLUMN on conversations (3 tenants, 1,204 rows at risk)\n"
        ),
        "{output}"
    );
    insta::assert_snapshot!(output);
}
