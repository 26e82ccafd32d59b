//! Planner cases, without any server: hand-built desired and observed states.

use super::*;
use crate::observed::{LiveStatus, ObservedCollection, ObservedRole, PUBLIC};
use crate::plan::{Action, DriftProblem, ResourceKind, Step};
use crate::spec::{DesiredStatus, TenantSpec};
use crate::test_support::*;

fn single(plan: &Plan) -> &TenantChange {
    assert_eq!(plan.changes.len(), 1, "{plan:#?}");
    &plan.changes[0]
}

#[test]
fn new_tenant_is_created_with_every_resource_in_order() {
    let plan = diff(
        &desired(vec![tenant("acme")]),
        &empty_observed(),
        &PlanOptions::default(),
    );
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Create]);
    assert_eq!(
        change.steps,
        vec![
            Step::CreateSchema {
                schema: "tenant_acme".into()
            },
            Step::RunMigrations {
                schema: "tenant_acme".into(),
                versions: vec![1]
            },
            Step::CreateRole {
                role: "tenant_acme".into()
            },
            Step::GrantSchemaUsage {
                schema: "tenant_acme".into(),
                role: "tenant_acme".into()
            },
            Step::GrantTablePrivileges {
                schema: "tenant_acme".into(),
                table: "conversations".into(),
                role: "tenant_acme".into()
            },
            Step::InsertRegistry {
                record: change.record.clone().unwrap()
            },
            Step::CreateCollection {
                collection: "tenant_acme".into()
            },
        ]
    );
    let record = change.record.as_ref().unwrap();
    assert_eq!(record.status, LiveStatus::Active);
    assert_eq!(record.retention_days, 30);
    assert!(plan.conflicts.is_empty());
    assert!(!plan.is_empty());
    assert_eq!(plan.summary().create, 1);
}

#[test]
fn missing_control_schema_is_a_pending_migration() {
    let mut observed = empty_observed();
    observed.control_schema_version = None;
    let plan = diff(&desired(vec![]), &observed, &PlanOptions::default());
    assert_eq!(plan.control_schema.pending, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(!plan.is_empty());
    let mut observed = empty_observed();
    observed.control_schema_version = Some(CONTROL_SCHEMA_VERSION);
    let plan = diff(&desired(vec![]), &observed, &PlanOptions::default());
    assert!(plan.control_schema.pending.is_empty());
    assert!(plan.is_empty());
}

#[test]
fn role_prefix_names_the_role_only() {
    let options = PlanOptions {
        naming: Naming::with_role_prefix("t42_"),
        ..PlanOptions::default()
    };
    let plan = diff(&desired(vec![tenant("acme")]), &empty_observed(), &options);
    let steps = &single(&plan).steps;
    assert!(steps.contains(&Step::CreateRole {
        role: "t42_acme".into()
    }));
    assert!(steps.contains(&Step::CreateSchema {
        schema: "tenant_acme".into()
    }));
}

#[test]
fn suspended_new_tenant_gets_no_schema_usage() {
    let mut spec = tenant("acme");
    spec.state = DesiredStatus::Suspended;
    spec.suspension_reason = Some("invoice overdue".into());
    let plan = diff(
        &desired(vec![spec]),
        &empty_observed(),
        &PlanOptions::default(),
    );
    let change = single(&plan);
    assert!(!change
        .steps
        .iter()
        .any(|step| matches!(step, Step::GrantSchemaUsage { .. })));
    let record = change.record.as_ref().unwrap();
    assert_eq!(record.status, LiveStatus::Suspended);
    assert_eq!(record.suspension_reason.as_deref(), Some("invoice overdue"));
}

#[test]
fn deleted_tenant_never_provisioned_is_a_no_op() {
    let mut spec = tenant("gone");
    spec.state = DesiredStatus::Deleted;
    let plan = diff(
        &desired(vec![spec]),
        &empty_observed(),
        &PlanOptions::default(),
    );
    assert!(single(&plan).actions.is_empty());
    assert!(plan.is_empty());
}

#[test]
fn provisioned_tenant_in_sync_is_a_no_op() {
    let spec = tenant("acme");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![], "{change:#?}");
    assert!(change.steps.is_empty());
    assert!(plan.is_empty());
    assert_eq!(plan.summary().unchanged, 1);
}

#[test]
fn config_change_is_an_update_with_old_and_new_values() {
    let spec = tenant("globex");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let mut changed = spec.clone();
    changed.config.max_tokens = 8000;
    changed.config.features.insert("rag".into(), false);
    changed.config.features.insert("streaming".into(), true);
    changed.plan = "enterprise".into();
    let plan = diff(&desired(vec![changed]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Update]);
    let fields: Vec<(String, Option<serde_json::Value>, Option<serde_json::Value>)> = change
        .fields
        .iter()
        .map(|f| (f.path.clone(), f.old.clone(), f.new.clone()))
        .collect();
    use serde_json::json;
    assert_eq!(
        fields,
        vec![
            ("plan".into(), Some(json!("pro")), Some(json!("enterprise"))),
            (
                "config.features.rag".into(),
                Some(json!(true)),
                Some(json!(false))
            ),
            ("config.features.streaming".into(), None, Some(json!(true))),
            (
                "config.max_tokens".into(),
                Some(json!(4000)),
                Some(json!(8000))
            ),
        ]
    );
    assert_eq!(
        change.steps,
        vec![Step::UpdateRegistry {
            record: change.record.clone().unwrap()
        }]
    );
}

#[test]
fn removed_feature_shows_as_removed_field() {
    let spec = tenant("globex");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let mut changed = spec.clone();
    changed.config.features.remove("rag");
    let plan = diff(&desired(vec![changed]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.fields.len(), 1);
    assert_eq!(change.fields[0].path, "config.features.rag");
    assert_eq!(change.fields[0].new, None);
}

#[test]
fn dropped_schema_is_repaired_with_table_and_grants() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    observed.schemas.remove("tenant_initech");
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    // A schema created anew runs every migration again, as part of the repair.
    assert_eq!(change.actions, vec![Action::Repair]);
    assert_eq!(change.drift.len(), 1, "{:#?}", change.drift);
    assert_eq!(change.drift[0].resource, ResourceKind::Schema);
    assert_eq!(change.drift[0].problem, DriftProblem::Missing);
    assert_eq!(
        change.steps,
        vec![
            Step::CreateSchema {
                schema: "tenant_initech".into()
            },
            Step::RunMigrations {
                schema: "tenant_initech".into(),
                versions: vec![1]
            },
            Step::GrantSchemaUsage {
                schema: "tenant_initech".into(),
                role: "tenant_initech".into()
            },
            Step::GrantTablePrivileges {
                schema: "tenant_initech".into(),
                table: "conversations".into(),
                role: "tenant_initech".into()
            },
        ]
    );
}

#[test]
fn dropped_collection_is_repaired() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    observed.collections.clear();
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Repair]);
    assert_eq!(
        change.steps,
        vec![Step::CreateCollection {
            collection: "tenant_initech".into()
        }]
    );
}

#[test]
fn dropped_role_is_recreated_and_granted() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    observed.roles.clear();
    // Dropping a role removes its grants too.
    for schema in observed.schemas.values_mut() {
        schema.privileges.remove("tenant_initech");
        for (_, table) in schema.tables.iter_mut() {
            table.privileges.remove("tenant_initech");
        }
    }
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Repair]);
    assert_eq!(change.drift.len(), 1, "{:#?}", change.drift);
    assert_eq!(
        change.steps,
        vec![
            Step::CreateRole {
                role: "tenant_initech".into()
            },
            Step::GrantSchemaUsage {
                schema: "tenant_initech".into(),
                role: "tenant_initech".into()
            },
            Step::GrantTablePrivileges {
                schema: "tenant_initech".into(),
                table: "conversations".into(),
                role: "tenant_initech".into()
            },
        ]
    );
}

#[test]
fn revoked_grant_public_access_and_login_are_repaired() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let schema = observed.schemas.get_mut("tenant_initech").unwrap();
    schema.privileges.remove("tenant_initech");
    schema
        .privileges
        .insert(PUBLIC.into(), ["USAGE"].into_iter().collect());
    let table = schema.tables.get_mut("conversations").unwrap();
    table
        .privileges
        .insert(PUBLIC.into(), ["SELECT"].into_iter().collect());
    observed.roles.get_mut("tenant_initech").unwrap().can_login = true;
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Repair]);
    assert!(plan.conflicts.is_empty());
    assert_eq!(
        change.steps,
        vec![
            Step::RevokeSchemaFromPublic {
                schema: "tenant_initech".into()
            },
            Step::GrantSchemaUsage {
                schema: "tenant_initech".into(),
                role: "tenant_initech".into()
            },
            Step::RevokeGrant {
                on: crate::plan::GrantTarget::Relation {
                    schema: "tenant_initech".into(),
                    name: "conversations".into(),
                    kind: crate::observed::ObjectKind::Table,
                },
                grantee: PUBLIC.into()
            },
            // Login is the business of the credentials, planned after the resources.
            Step::SetRoleLogin {
                role: "tenant_initech".into(),
                login: false
            },
        ]
    );
    assert_eq!(change.drift.len(), 4, "{:#?}", change.drift);
}

#[test]
fn a_dropped_column_is_a_conflict_naming_it_not_a_guess() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let schema = observed.schemas.get_mut("tenant_initech").unwrap();
    let shape = std::sync::Arc::make_mut(&mut schema.shape);
    shape
        .tables
        .get_mut("conversations")
        .unwrap()
        .remove("messages");
    shape.indexes.insert(
        "by_time".into(),
        "CREATE INDEX by_time ON conversations USING btree (created_at)".into(),
    );
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert!(change.blocked);
    assert!(change.steps.is_empty());
    assert_eq!(
        plan.conflicts[0].message,
        "schema `tenant_initech` is not what the migrations define: column `conversations.messages` is missing; index `by_time` is not in the migrations"
    );
}

#[test]
fn wrong_collection_metadata_is_repaired_in_place() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let collection = observed.collections.get_mut("tenant_initech").unwrap();
    collection.metadata.remove("tenant_id");
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    assert_eq!(
        single(&plan).steps,
        vec![Step::UpdateCollectionMetadata {
            collection: "tenant_initech".into(),
            id: "c-1".into()
        }]
    );
}

#[test]
fn foreign_resources_with_a_tenants_name_are_conflicts_not_changes() {
    let mut observed = empty_observed();
    observed.roles.insert(
        "tenant_acme".into(),
        ObservedRole {
            can_login: true,
            comment: String::new(),
            ..ObservedRole::default()
        },
    );
    observed.collections.insert(
        "tenant_acme".into(),
        ObservedCollection {
            id: "x".into(),
            metadata: Default::default(),
            records: None,
        },
    );
    let plan = diff(
        &desired(vec![tenant("acme")]),
        &observed,
        &PlanOptions::default(),
    );
    let kinds: Vec<ResourceKind> = plan.conflicts.iter().map(|c| c.resource).collect();
    assert_eq!(kinds, vec![ResourceKind::Role, ResourceKind::Collection]);
    assert!(plan.conflicts.iter().all(|c| c.tenant == "acme"));
}

#[test]
fn unmanaged_role_of_a_provisioned_tenant_is_a_conflict() {
    let spec = tenant("acme");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    observed.roles.get_mut("tenant_acme").unwrap().comment = "someone else's".into();
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    assert_eq!(plan.conflicts.len(), 1);
    assert_eq!(plan.conflicts[0].resource, ResourceKind::Role);
    // Nothing is planned against the role.
    assert!(!single(&plan)
        .steps
        .iter()
        .any(|step| matches!(step, Step::SetRoleLogin { .. })));
}

#[test]
fn collection_of_another_incarnation_is_a_conflict() {
    let spec = tenant("acme");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    observed
        .collections
        .get_mut("tenant_acme")
        .unwrap()
        .metadata = collection_metadata("acme", uid(99)).into_iter().collect();
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    assert_eq!(plan.conflicts.len(), 1);
    assert!(plan.conflicts[0].message.contains("another incarnation"));
}

#[test]
fn suspend_revokes_usage_and_records_the_reason() {
    let spec = tenant("initech");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let mut suspended = spec.clone();
    suspended.state = DesiredStatus::Suspended;
    suspended.suspension_reason = Some("invoice overdue".into());
    let plan = diff(
        &desired(vec![suspended]),
        &observed,
        &PlanOptions::default(),
    );
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Suspend]);
    assert!(change.drift.is_empty(), "{:#?}", change.drift);
    assert_eq!(
        change.steps,
        vec![
            Step::RevokeSchemaUsage {
                schema: "tenant_initech".into(),
                role: "tenant_initech".into()
            },
            Step::UpdateRegistry {
                record: change.record.clone().unwrap()
            },
        ]
    );
}

#[test]
fn resume_grants_usage_back() {
    let mut spec = tenant("initech");
    spec.state = DesiredStatus::Suspended;
    spec.suspension_reason = Some("invoice overdue".into());
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Suspended, 1);
    let mut active = spec.clone();
    active.state = DesiredStatus::Active;
    active.suspension_reason = None;
    let plan = diff(&desired(vec![active]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Resume]);
    assert_eq!(
        change.steps,
        vec![
            Step::GrantSchemaUsage {
                schema: "tenant_initech".into(),
                role: "tenant_initech".into()
            },
            Step::UpdateRegistry {
                record: change.record.clone().unwrap()
            },
        ]
    );
}

#[test]
fn usage_left_on_a_suspended_tenant_is_drift() {
    let mut spec = tenant("initech");
    spec.state = DesiredStatus::Suspended;
    spec.suspension_reason = Some("abuse".into());
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Suspended, 1);
    observed
        .schemas
        .get_mut("tenant_initech")
        .unwrap()
        .privileges
        .insert("tenant_initech".into(), ["USAGE"].into_iter().collect());
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Repair]);
    assert_eq!(change.drift[0].problem, DriftProblem::Wrong);
    assert_eq!(
        change.steps,
        vec![Step::RevokeSchemaUsage {
            schema: "tenant_initech".into(),
            role: "tenant_initech".into()
        }]
    );
}

#[test]
fn retention_comes_from_tenant_then_flag_then_settings_then_default() {
    let mut with_own = tenant("a_own");
    with_own.retention_days = Some(7);
    let plain = tenant("b_plain");
    let mut state = desired(vec![with_own, plain]);
    let retention =
        |plan: &Plan, index: usize| plan.changes[index].record.as_ref().unwrap().retention_days;
    let plan = diff(&state, &empty_observed(), &PlanOptions::default());
    assert_eq!((retention(&plan, 0), retention(&plan, 1)), (7, 30));
    state.settings.retention_days = Some(14);
    let plan = diff(&state, &empty_observed(), &PlanOptions::default());
    assert_eq!((retention(&plan, 0), retention(&plan, 1)), (7, 14));
    let options = PlanOptions {
        retention_days: Some(3),
        ..PlanOptions::default()
    };
    let plan = diff(&state, &empty_observed(), &options);
    assert_eq!((retention(&plan, 0), retention(&plan, 1)), (7, 3));
}

#[test]
fn changes_are_sorted_by_tenant_id_whatever_the_input_order() {
    let plan = diff(
        &desired(vec![tenant("zeta"), tenant("alpha"), tenant("mid")]),
        &empty_observed(),
        &PlanOptions::default(),
    );
    let ids: Vec<&str> = plan.changes.iter().map(|c| c.tenant.as_str()).collect();
    assert_eq!(ids, vec!["alpha", "mid", "zeta"]);
}

fn with_state(mut spec: TenantSpec, state: DesiredStatus) -> TenantSpec {
    spec.state = state;
    spec
}

#[test]
fn soft_delete_revokes_access_and_writes_a_backup() {
    let spec = tenant("hooli");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    let plan = diff(
        &desired(vec![with_state(spec, DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Delete]);
    assert_eq!(
        change.steps,
        vec![
            Step::RevokeSchemaUsage {
                schema: "tenant_hooli".into(),
                role: "tenant_hooli".into()
            },
            Step::UpdateRegistry {
                record: change.record.clone().unwrap()
            },
            Step::ExportBackup {
                schema: "tenant_hooli".into(),
                tables: vec!["conversations".into()],
                collection: Some("tenant_hooli".into()),
                collection_id: Some(observed.collections["tenant_hooli"].id.clone()),
                migration_version: Some(1),
                uid: change.uid.unwrap(),
            },
        ]
    );
    assert_eq!(
        change.purge_after,
        Some(observed.server_time + chrono::Duration::days(30))
    );
    assert_eq!(change.record.as_ref().unwrap().status, LiveStatus::Deleted);
    assert!(plan.refusals.is_empty());
    assert_eq!(plan.deletes(), 1);
}

#[test]
fn protected_tenant_is_never_deleted_or_purged() {
    // protected in the file
    let mut spec = tenant("umbrella");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    spec.protected = true;
    let plan = diff(
        &desired(vec![with_state(spec.clone(), DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    assert_eq!(plan.refusals.len(), 1);
    assert!(plan.refusals[0].message.contains("protected"));

    // protected in the registry, flag dropped in the same change: still refused
    spec.protected = false;
    observed.registry.get_mut("umbrella").unwrap().protected = true;
    let plan = diff(
        &desired(vec![with_state(spec.clone(), DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    assert_eq!(plan.refusals.len(), 1);

    // and no purge either
    mark_deleted(&mut observed, "umbrella", -1);
    let plan = diff(
        &desired(vec![with_state(spec, DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    assert_eq!(plan.refusals.len(), 1);
    assert!(plan.refusals[0].message.contains("purge"));
}

#[test]
fn due_purge_drops_everything_in_a_retryable_order() {
    let spec = tenant("piedpiper");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    mark_deleted(&mut observed, "piedpiper", 0);
    let plan = diff(
        &desired(vec![with_state(spec, DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Purge]);
    assert_eq!(change.status_after, None);
    assert_eq!(
        change.steps,
        vec![
            Step::DropSchema {
                schema: "tenant_piedpiper".into()
            },
            Step::DropRole {
                role: "tenant_piedpiper".into()
            },
            Step::DeleteRegistry {
                uid: change.uid.unwrap()
            },
            Step::DeleteCollection {
                collection: "tenant_piedpiper".into()
            },
            Step::DeleteBackups {
                uid: change.uid.unwrap()
            },
        ]
    );
    assert!(plan.scheduled_purges.is_empty());
}

#[test]
fn purge_not_yet_due_is_scheduled_not_planned() {
    let spec = tenant("piedpiper");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    mark_deleted(&mut observed, "piedpiper", 3);
    let plan = diff(
        &desired(vec![with_state(spec, DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    assert!(single(&plan).actions.is_empty());
    assert!(plan.is_empty());
    assert_eq!(plan.scheduled_purges.len(), 1);
    assert_eq!(
        plan.scheduled_purges[0].purge_after,
        observed.server_time + chrono::Duration::days(3)
    );
}

#[test]
fn purge_leaves_resources_tenantctl_did_not_create() {
    let spec = tenant("piedpiper");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    mark_deleted(&mut observed, "piedpiper", -1);
    observed.roles.get_mut("tenant_piedpiper").unwrap().comment = String::new();
    observed
        .collections
        .get_mut("tenant_piedpiper")
        .unwrap()
        .metadata = collection_metadata("piedpiper", uid(77))
        .into_iter()
        .collect();
    let plan = diff(
        &desired(vec![with_state(spec, DesiredStatus::Deleted)]),
        &observed,
        &PlanOptions::default(),
    );
    let change = single(&plan);
    assert!(!change
        .steps
        .iter()
        .any(|step| matches!(step, Step::DropRole { .. } | Step::DeleteCollection { .. })));
    assert_eq!(change.drift.len(), 2);
}

#[test]
fn restore_brings_access_back_and_repairs_what_is_missing() {
    let spec = tenant("hooli");
    let mut observed = empty_observed();
    provision(&mut observed, &spec, LiveStatus::Active, 1);
    mark_deleted(&mut observed, "hooli", 10);
    observed.collections.clear();
    let plan = diff(&desired(vec![spec]), &observed, &PlanOptions::default());
    let change = single(&plan);
    assert_eq!(change.actions, vec![Action::Restore, Action::Repair]);
    assert_eq!(
        change.steps,
        vec![
            Step::GrantSchemaUsage {
                schema: "tenant_hooli".into(),
                role: "tenant_hooli".into()
            },
            Step::UpdateRegistry {
                record: change.record.clone().unwrap()
            },
            Step::CreateCollection {
                collection: "tenant_hooli".into()
            },
        ]
    );
    assert_eq!(change.record.as_ref().unwrap().status, LiveStatus::Active);
}

#[test]
fn orphans_are_reported_and_only_pruned_on_request() {
    let mut observed = empty_observed();
    provision(&mut observed, &tenant("soylent"), LiveStatus::Active, 1);
    provision(&mut observed, &tenant("oldco"), LiveStatus::Active, 2);
    mark_deleted(&mut observed, "oldco", -1);
    // resources without a registry row: reported, never touched
    provision(&mut observed, &tenant("ghost"), LiveStatus::Active, 3);
    observed.registry.remove("ghost");
    // a schema named like a tenant's but not created by tenantctl: not ours, not an orphan
    observed.schemas.insert(
        "tenant_reports".into(),
        crate::observed::ObservedSchema::default(),
    );

    let plan = diff(&desired(vec![]), &observed, &PlanOptions::default());
    let orphans: Vec<(&str, bool)> = plan
        .orphans
        .iter()
        .map(|orphan| (orphan.tenant.as_str(), orphan.pruned))
        .collect();
    assert_eq!(
        orphans,
        vec![("ghost", false), ("oldco", false), ("soylent", false)]
    );
    assert!(plan.is_empty(), "{plan:#?}");

    let options = PlanOptions {
        prune: true,
        ..PlanOptions::default()
    };
    let plan = diff(&desired(vec![]), &observed, &options);
    assert_eq!(
        actions_by_tenant(&plan),
        vec![
            ("oldco", &[Action::Purge][..]),
            ("soylent", &[Action::Delete][..])
        ]
    );
    let soylent = &plan.changes[1];
    assert!(soylent
        .steps
        .contains(&Step::SoftDeleteRegistry { retention_days: 30 }));
    assert!(!soylent
        .steps
        .iter()
        .any(|step| matches!(step, Step::DropSchema { .. })));
    assert!(plan
        .orphans
        .iter()
        .all(|o| o.pruned == (o.tenant != "ghost")));
}

#[test]
fn max_deletes_refuses_a_run_that_deletes_too_much() {
    let mut observed = empty_observed();
    let mut specs = Vec::new();
    for (n, id) in ["a1", "b2", "c3"].iter().enumerate() {
        let spec = tenant(id);
        provision(&mut observed, &spec, LiveStatus::Active, n as u128 + 1);
        specs.push(with_state(spec, DesiredStatus::Deleted));
    }
    let limited = |limit| PlanOptions {
        max_deletes: Some(limit),
        ..PlanOptions::default()
    };
    let plan = diff(&desired(specs.clone()), &observed, &limited(2));
    assert_eq!(plan.refusals.len(), 1);
    assert!(plan.refusals[0].message.contains("3 tenants"));
    let plan = diff(&desired(specs), &observed, &limited(3));
    assert!(plan.refusals.is_empty());
}

#[test]
fn migrations_that_drop_or_rewrite_data_are_flagged_and_limited() {
    let plan = destructive_plan(None);
    let found: Vec<(u32, usize, &str, Vec<String>, usize)> = plan
        .destructive_migrations
        .iter()
        .map(|statement| {
            (
                statement.version,
                statement.line,
                statement.kind.as_str(),
                statement.tables.clone(),
                statement.tenants,
            )
        })
        .collect();
    // The three existing tenants run it; the new one runs it on an empty schema.
    assert_eq!(
        found,
        vec![
            (2, 2, "DROP COLUMN", vec!["conversations".to_string()], 3),
            (
                2,
                3,
                "DELETE without WHERE",
                vec!["conversations".to_string()],
                3
            ),
        ]
    );
    assert_eq!(plan.destructive_migration_tenants(), 3);
    let new = plan
        .changes
        .iter()
        .find(|c| c.tenant == "zeta_new")
        .unwrap();
    assert!(plan.destructive_tables(new).is_empty());
    let acme = plan.changes.iter().find(|c| c.tenant == "acme").unwrap();
    assert_eq!(
        plan.destructive_tables(acme),
        vec!["conversations".to_string()]
    );
    assert!(plan.refusals.is_empty());
    assert!(destructive_plan(Some(3)).refusals.is_empty());
    let refused = destructive_plan(Some(2));
    assert_eq!(refused.refusals.len(), 1);
    assert!(
        refused.refusals[0].message.contains(
            "migrations that drop or rewrite data (`0002_forget_messages`) on 3 tenants, more than `--max-destructive-migrations 2`"
        ),
        "{:?}",
        refused.refusals
    );
}

#[test]
fn the_canary_is_declared_tenants_first_then_by_id_and_only_existing_ones() {
    let plan_with = |canary: Option<usize>, settings: Option<usize>, declared: &[&str]| {
        let mut observed = empty_observed();
        let mut specs = Vec::new();
        for index in 1..=5 {
            let mut spec = tenant(&format!("tenant_{index:04}"));
            provision(&mut observed, &spec, LiveStatus::Active, index);
            spec.canary = declared.contains(&spec.id.as_str());
            specs.push(spec);
        }
        specs.push(tenant("aaa_new"));
        let mut desired = desired(specs);
        desired.settings.canary = settings;
        desired
            .migrations
            .list
            .push(migration(2, "0002_documents", DOCUMENTS_SQL));
        let options = PlanOptions {
            canary,
            ..PlanOptions::default()
        };
        diff(&desired, &observed, &options).canary
    };
    assert!(
        plan_with(None, None, &["tenant_0004"]).is_empty(),
        "no size, no canary"
    );
    assert_eq!(
        plan_with(Some(2), None, &["tenant_0004"]),
        ["tenant_0004", "tenant_0001"]
    );
    assert_eq!(
        plan_with(None, Some(1), &[]),
        ["tenant_0001"],
        "the Settings default"
    );
    assert_eq!(
        plan_with(Some(3), Some(1), &[]),
        ["tenant_0001", "tenant_0002", "tenant_0003"],
        "the flag wins"
    );
    assert_eq!(
        plan_with(Some(100), None, &[]).len(),
        5,
        "new tenants are no canary"
    );
}
