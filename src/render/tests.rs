//! Snapshot tests of the renderers, without any server: plans come from the real planner run on
//! hand-built desired and observed states, apply reports are built by hand.
//!
//! Update snapshots with `INSTA_UPDATE=always cargo test --lib render`, then read every changed
//! `.snap` file before committing it.

use super::{json, text, PlanContext, Style};
use crate::apply::{ApplyReport, TenantOutcome, TenantResult};
use crate::observed::{LiveStatus, ObservedRole, PUBLIC};
use crate::plan::{diff, Action, DataAtRisk, Plan, PlanOptions, FORMAT_VERSION};
use crate::spec::DesiredStatus;
use crate::test_support::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn context() -> PlanContext {
    PlanContext {
        dir: "tenants".into(),
        database: "postgres://tenantctl@db.internal:5432/app".into(),
        chroma: "http://chroma.internal:8000 (default_tenant/default_database)".into(),
    }
}

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

/// Every kind of change a routine run shows, plus one conflict and one unchanged tenant.
fn mixed_plan() -> Plan {
    let mut observed = empty_observed();

    // Update: plan, max_tokens, a feature added and one removed.
    let globex_live = tenant("globex");
    provision(&mut observed, &globex_live, LiveStatus::Active, 1);
    let mut globex = tenant("globex");
    globex.plan = "enterprise".into();
    globex.config.max_tokens = 8000;
    globex.config.features.remove("rag");
    globex.config.features.insert("tools".into(), true);

    // Repair: schema dropped by hand, collection deleted.
    let initech = tenant("initech");
    provision(&mut observed, &initech, LiveStatus::Active, 2);
    observed.schemas.remove("tenant_initech");
    observed.collections.remove("tenant_initech");

    // Repair: PUBLIC given access to the schema, role given LOGIN.
    let umbrella = tenant("umbrella");
    provision(&mut observed, &umbrella, LiveStatus::Active, 3);
    observed
        .schemas
        .get_mut("tenant_umbrella")
        .unwrap()
        .privileges
        .insert(PUBLIC.into(), BTreeSet::from(["USAGE".to_string()]));
    observed.roles.get_mut("tenant_umbrella").unwrap().can_login = true;

    // Suspend with a reason.
    provision(&mut observed, &tenant("hooli"), LiveStatus::Active, 4);
    let mut hooli = tenant("hooli");
    hooli.state = DesiredStatus::Suspended;
    hooli.suspension_reason = Some("invoice overdue".into());

    // Resume a tenant suspended with a reason.
    let mut massive_live = tenant("massive");
    massive_live.state = DesiredStatus::Suspended;
    massive_live.suspension_reason = Some("abuse report #4411".into());
    provision(&mut observed, &massive_live, LiveStatus::Suspended, 5);
    let massive = tenant("massive");

    // Conflict: a new tenant whose role exists and was not created by tenantctl.
    observed.roles.insert(
        "tenant_stark".into(),
        ObservedRole {
            can_login: true,
            comment: String::new(),
        },
    );
    let stark = tenant("stark");

    // Unchanged.
    let wayne = tenant("wayne");
    provision(&mut observed, &wayne, LiveStatus::Active, 6);

    diff(
        &desired(vec![
            globex, initech, umbrella, hooli, massive, stark, wayne,
        ]),
        &observed,
        &PlanOptions::default(),
    )
}

/// Soft delete, due purge (with measured data at risk), restore, a scheduled purge, orphans
/// (one pruned, one with no registry row) and a protected tenant refused.
fn lifecycle_plan() -> Plan {
    let mut observed = empty_observed();
    let now = observed.server_time;
    let mark_deleted = |observed: &mut crate::observed::ObservedState, id: &str, days: i64| {
        let row = observed.registry.get_mut(id).unwrap();
        row.status = LiveStatus::Deleted;
        row.deleted_at = Some(now - chrono::Duration::days(30));
        row.purge_after = Some(now + chrono::Duration::days(days));
        observed
            .schemas
            .get_mut(&format!("tenant_{id}"))
            .unwrap()
            .privileges
            .remove(&format!("tenant_{id}"));
    };
    let mut specs = Vec::new();

    let hooli = tenant("hooli");
    provision(&mut observed, &hooli, LiveStatus::Active, 1);
    let mut hooli = hooli.clone();
    hooli.state = DesiredStatus::Deleted;
    specs.push(hooli);

    let piedpiper = tenant("piedpiper");
    provision(&mut observed, &piedpiper, LiveStatus::Active, 2);
    mark_deleted(&mut observed, "piedpiper", -1);
    let mut piedpiper = piedpiper.clone();
    piedpiper.state = DesiredStatus::Deleted;
    specs.push(piedpiper);

    let aviato = tenant("aviato");
    provision(&mut observed, &aviato, LiveStatus::Active, 3);
    mark_deleted(&mut observed, "aviato", 12);
    specs.push(aviato); // restored

    let raviga = tenant("raviga");
    provision(&mut observed, &raviga, LiveStatus::Active, 4);
    mark_deleted(&mut observed, "raviga", 5);
    let mut raviga = raviga.clone();
    raviga.state = DesiredStatus::Deleted;
    specs.push(raviga); // scheduled

    let mut umbrella = tenant("umbrella");
    umbrella.protected = true;
    provision(&mut observed, &umbrella, LiveStatus::Active, 5);
    umbrella.state = DesiredStatus::Deleted;
    specs.push(umbrella); // refused

    provision(&mut observed, &tenant("soylent"), LiveStatus::Active, 6); // pruned orphan
    provision(&mut observed, &tenant("ghost"), LiveStatus::Active, 7);
    observed.registry.remove("ghost"); // resources without registry row

    let mut plan = diff(
        &desired(specs),
        &observed,
        &PlanOptions {
            prune: true,
            max_deletes: Some(10),
            ..PlanOptions::default()
        },
    );
    for change in &mut plan.changes {
        match change.tenant.as_str() {
            "hooli" => {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(1204),
                    records: Some(3400),
                    ..DataAtRisk::default()
                })
            }
            "piedpiper" => {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(987_654),
                    records: Some(12),
                    backup_files: 3,
                    backup_bytes: 18_200_000,
                })
            }
            _ => {}
        }
    }
    plan
}

fn no_change_plan() -> Plan {
    let mut observed = empty_observed();
    let acme = tenant("acme");
    let globex = tenant("globex");
    provision(&mut observed, &acme, LiveStatus::Active, 1);
    provision(&mut observed, &globex, LiveStatus::Active, 2);
    diff(
        &desired(vec![acme, globex]),
        &observed,
        &PlanOptions::default(),
    )
}

fn apply_report() -> ApplyReport {
    ApplyReport {
        run_id: Some(uid(99)),
        migrated: vec![1],
        not_started: 2,
        tenants: vec![
            TenantResult {
                tenant: "acme".into(),
                actions: vec![Action::Create],
                outcome: TenantOutcome::Applied,
            },
            TenantResult {
                tenant: "globex".into(),
                actions: vec![Action::Update, Action::Repair],
                outcome: TenantOutcome::RolledBack {
                    reason: "postgres: permission denied for schema tenant_globex".into(),
                    undone: vec!["deleted collection `tenant_globex` created by this run".into()],
                    undo_failed: vec![
                        "could not undo (restored the metadata of collection `tenant_globex_docs`): chroma: 503 Service Unavailable".into(),
                    ],
                },
            },
            TenantResult {
                tenant: "stark".into(),
                actions: vec![Action::Create],
                outcome: TenantOutcome::Blocked {
                    reason: "role `tenant_stark` already exists (tenantctl did not create it)"
                        .into(),
                },
            },
        ],
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
    insta::assert_snapshot!(text::plan(&plan, &context(), PLAIN));
}

#[test]
fn text_plan_lifecycle() {
    let plan = lifecycle_plan();
    let actions: Vec<(&str, &[Action])> = plan
        .changes
        .iter()
        .map(|change| (change.tenant.as_str(), change.actions.as_slice()))
        .collect();
    assert_eq!(
        actions,
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
    insta::assert_snapshot!(text::plan(&plan, &context(), PLAIN));
}

#[test]
fn json_plan_lifecycle() {
    insta::assert_snapshot!(json_plan_without_version(&lifecycle_plan()));
}

#[test]
fn text_plan_mixed() {
    let plan = mixed_plan();
    let actions: Vec<(&str, &[Action])> = plan
        .changes
        .iter()
        .map(|change| (change.tenant.as_str(), change.actions.as_slice()))
        .collect();
    assert_eq!(
        actions,
        vec![
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
    insta::assert_snapshot!(text::plan(&plan, &context(), PLAIN));
}

#[test]
fn text_plan_no_changes() {
    let plan = no_change_plan();
    assert!(plan.is_empty());
    let output = text::plan(&plan, &context(), PLAIN);
    assert!(output.contains("No changes."));
    insta::assert_snapshot!(output);
}

#[test]
fn text_plan_mixed_in_color() {
    let output = text::plan(&mixed_plan(), &context(), Style { color: true });
    assert!(output.contains("\u{1b}["));
    insta::assert_snapshot!(visible_escapes(&output));
}

#[test]
fn plain_style_has_no_escape_codes() {
    for plan in [fresh_plan(), mixed_plan(), no_change_plan()] {
        assert!(!text::plan(&plan, &context(), PLAIN).contains('\u{1b}'));
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

/// The JSON plan with the tool version replaced, so a version bump does not break snapshots.
fn json_plan_without_version(plan: &Plan) -> String {
    let output = json::plan(plan);
    let version = format!("\"tool_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(output.matches(&version).count(), 1, "{output}");
    output.replace(&version, "\"tool_version\": \"[version]\"")
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
        }],
    };
    assert_eq!(
        text::report_summary(&report),
        "Apply complete: 1 tenant applied."
    );
}
