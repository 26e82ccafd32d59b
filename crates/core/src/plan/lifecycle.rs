//! The lifecycle of a tenant that exists: transitions (suspend, resume, soft delete, restore,
//! purge), the steps of a soft delete and of a purge, orphans and `--prune`, backup folders
//! that no soft-deleted tenant accounts for.

use super::diff::{PlanOptions, Steps, TenantPlanner};
use super::fields::diff_fields;
use super::{
    Action, BackupLeftover, Drift, DriftProblem, FieldChange, Naming, Orphan, Plan, Refusal,
    ResourceKind, Step, TenantChange, COLLECTION_MANAGED_BY, MANAGED_COMMENT,
};
use crate::observed::{LiveStatus, ObservedState, RegistryRow};
use crate::spec::{DesiredState, DesiredStatus};
use serde_json::Value;
use std::collections::BTreeMap;

impl TenantPlanner<'_> {
    pub(super) fn plan_existing(&mut self, row: &RegistryRow) -> TenantChange {
        let id = self.spec.id.clone();
        let desired_status = match self.spec.state {
            DesiredStatus::Active => LiveStatus::Active,
            DesiredStatus::Suspended => LiveStatus::Suspended,
            DesiredStatus::Deleted => LiveStatus::Deleted,
        };
        let mut change = TenantChange::new(&id);
        change.uid = Some(row.uid);
        change.status_before = Some(row.status);
        change.status_after = Some(desired_status);
        change.deleted_at = row.deleted_at;
        change.purge_after = row.purge_after;

        // A due purge wins over everything else the file says about a deleted tenant.
        if desired_status == LiveStatus::Deleted && purge_due(row, self.observed) {
            if self.spec.protected || row.protected {
                self.refusals.push(protected_refusal(&id, "purge"));
            }
            change.actions.push(Action::Purge);
            change.status_after = None;
            change.reason = Some(retention_reason(row));
            let mut drift = Vec::new();
            change.steps = purge_steps(&id, self.observed, self.naming, row, &mut drift);
            change.drift = drift;
            return change;
        }

        match (row.status, desired_status) {
            (LiveStatus::Active, LiveStatus::Suspended) => change.actions.push(Action::Suspend),
            (LiveStatus::Suspended, LiveStatus::Active) => change.actions.push(Action::Resume),
            (LiveStatus::Active | LiveStatus::Suspended, LiveStatus::Deleted) => {
                change.actions.push(Action::Delete)
            }
            (LiveStatus::Deleted, LiveStatus::Active | LiveStatus::Suspended) => {
                change.actions.push(Action::Restore)
            }
            _ => {}
        }

        let record = self.record(desired_status);
        let fields = diff_fields(row, &record);
        // Status and suspension reason belong to a transition; on their own (a new reason for
        // a tenant that stays suspended) they are an update.
        let transition = !change.actions.is_empty();
        // A soft delete writes the whole record: what else changed with it (a retention
        // period, say) is part of the delete, not an update of its own.
        let deleting = change.actions.contains(&Action::Delete);
        if !deleting
            && fields.iter().any(|field| {
                field.path != "status" && !(transition && field.path == "suspension.reason")
            })
        {
            change.actions.push(Action::Update);
        }
        change.reason = record.suspension_reason.clone();

        if change.actions.contains(&Action::Delete) {
            if self.spec.protected || row.protected {
                self.refusals.push(protected_refusal(&id, "soft-delete"));
            }
            // Nothing is repaired on a tenant being deleted: its access goes, its data is
            // exported as it is.
            change.purge_after = purge_date(self.observed, self.retention_days);
            change.reason = Some(format!(
                "`state: deleted` in {}",
                self.spec.location.file.display()
            ));
            change.steps = soft_delete_steps(
                &id,
                self.observed,
                self.naming,
                row,
                Step::UpdateRegistry {
                    record: record.clone(),
                },
            );
            change.credentials = access_ended(self.observed, &self.naming.role(&id));
            change.fields = fields;
            change.record = Some(record);
            change.actions.sort_by_key(|action| precedence(*action));
            return change;
        }

        // A soft-deleted tenant that stays deleted keeps whatever is left until its purge:
        // re-creating a dropped schema for it would only make an empty copy.
        let mut steps = Steps::default();
        let mut generates = false;
        if desired_status != LiveStatus::Deleted {
            self.check_resources(row, desired_status, &mut steps);
            let role = self.naming.role(&id);
            let role_created = steps
                .postgres
                .iter()
                .any(|step| matches!(step, Step::CreateRole { .. }));
            let managed = self
                .observed
                .roles
                .get(&role)
                .is_none_or(|live| live.comment == super::MANAGED_COMMENT);
            if managed {
                let credentials = super::credentials::plan(&super::credentials::Inputs {
                    tenant: &id,
                    auth: self.spec.auth.as_ref(),
                    status: desired_status,
                    role: &role,
                    live_role: self.observed.roles.get(&role).filter(|_| !role_created),
                    uid: Some(row.uid),
                    observed: self.observed,
                    grace: self.rotation_grace,
                    disabling: change.actions.contains(&Action::Suspend),
                });
                generates = credentials.delivers();
                steps.postgres.extend(credentials.steps);
                self.drift.extend(credentials.drift);
                self.refusals.extend(credentials.refusals);
                if !credentials.changes.is_empty() && change.actions.is_empty() {
                    change.actions.push(Action::Update);
                }
                change.credentials = credentials.changes;
            }
        }
        if !self.drift.is_empty() {
            change.actions.push(Action::Repair);
        }
        if !self.migrations_pending.is_empty() {
            // Migrations that run again in a schema re-created by a repair are part of that
            // repair, as they are part of a create.
            let recreated = steps
                .postgres
                .iter()
                .any(|step| matches!(step, Step::CreateSchema { .. }));
            if !recreated {
                change.actions.push(Action::Migrate);
            }
            change.migrations = std::mem::take(&mut self.migrations_pending);
        }
        change.actions.sort_by_key(|action| precedence(*action));

        let mut all_steps = steps.postgres;
        if !fields.is_empty() {
            all_steps.push(Step::UpdateRegistry {
                record: record.clone(),
            });
        }
        all_steps.extend(steps.chroma);
        if generates {
            all_steps.push(Step::DeliverSecrets {
                role: self.naming.role(&id),
            });
        }
        if !fields.is_empty() {
            change.record = Some(record);
        }
        change.fields = fields;
        change.drift = std::mem::take(&mut self.drift);
        change.steps = all_steps;
        change
    }
}

/// Backup folders that belong to no soft-deleted tenant.
pub(super) fn backup_leftovers(observed: &ObservedState) -> Vec<BackupLeftover> {
    let by_uid: BTreeMap<uuid::Uuid, &RegistryRow> = observed
        .registry
        .values()
        .map(|row| (row.uid, row))
        .collect();
    let mut leftovers = Vec::new();
    for backup in &observed.backups {
        let row = by_uid
            .get(&backup.uid)
            .filter(|row| row.id == backup.tenant);
        let reason = match (row, backup.partial) {
            (Some(_), true) => "an export that was interrupted before it completed",
            (None, true) => "an unfinished export of a tenant this registry does not know",
            (Some(row), false) if row.status == LiveStatus::Deleted || backup.recorded => continue,
            (Some(_), false) => {
                "a complete backup no committed soft delete recorded (an apply interrupted before its commit); the tenant's data is still live"
            }
            (None, false) => "a backup of a tenant this registry does not know (another registry, or a purge interrupted by hand)",
        };
        leftovers.push(BackupLeftover {
            tenant: backup.tenant.clone(),
            uid: backup.uid,
            folder: backup.folder.clone(),
            path: format!("{}/{}/{}", backup.tenant, backup.uid, backup.folder),
            partial: backup.partial,
            removed_by_apply: backup.partial && row.is_some(),
            files: backup.files,
            bytes: backup.bytes,
            reason: reason.to_string(),
        });
    }
    leftovers
}

/// Registry rows and managed resources that no file describes.
pub(super) fn plan_orphans(
    plan: &mut Plan,
    desired: &DesiredState,
    observed: &ObservedState,
    options: &PlanOptions,
    default_retention: u32,
) {
    let naming = &options.naming;
    let mut resources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let known = |id: &str| {
        desired.tenants.contains_key(id)
            || observed.registry.contains_key(id)
            || !options.targets(id)
    };
    for (name, schema) in &observed.schemas {
        if let Some(id) = name.strip_prefix(&naming.schema_prefix) {
            if schema.comment == MANAGED_COMMENT && !known(id) {
                resources
                    .entry(id.to_string())
                    .or_default()
                    .push(format!("schema {name}"));
            }
        }
    }
    for (name, role) in &observed.roles {
        if let Some(id) = name.strip_prefix(&naming.role_prefix) {
            if role.comment == MANAGED_COMMENT && !known(id) {
                resources
                    .entry(id.to_string())
                    .or_default()
                    .push(format!("role {name}"));
            }
        }
    }
    for (name, collection) in &observed.collections {
        let Some(id) = collection.metadata_str("tenant_id") else {
            continue;
        };
        if collection.metadata_str("managed_by") == Some(COLLECTION_MANAGED_BY)
            && name == &naming.collection(id)
            && !known(id)
        {
            resources
                .entry(id.to_string())
                .or_default()
                .push(format!("collection {name}"));
        }
    }
    // Resources without a registry row are never touched, even with --prune: without the
    // registry there is no uid to prove they belong to a tenant tenantctl created.
    for (tenant, resources) in resources {
        plan.orphans.push(Orphan {
            tenant,
            status: None,
            resources,
            pruned: false,
        });
    }

    for (id, row) in &observed.registry {
        if desired.tenants.contains_key(id) || !options.targets(id) {
            continue;
        }
        let mut orphan = Orphan {
            tenant: id.clone(),
            status: Some(row.status),
            resources: vec![format!("registry row ({})", row.status)],
            pruned: false,
        };
        let mut change = TenantChange::new(id);
        change.uid = Some(row.uid);
        change.status_before = Some(row.status);
        change.status_after = Some(row.status);
        change.deleted_at = row.deleted_at;
        change.purge_after = row.purge_after;
        if options.prune {
            let mut drift = Vec::new();
            match row.status {
                LiveStatus::Active | LiveStatus::Suspended => {
                    if row.protected {
                        plan.refusals
                            .push(protected_refusal(id, "soft-delete (prune)"));
                    }
                    let retention = row
                        .retention_days
                        .and_then(|days| u32::try_from(days).ok())
                        .unwrap_or(default_retention);
                    change.actions.push(Action::Delete);
                    change.status_after = Some(LiveStatus::Deleted);
                    change.purge_after = purge_date(observed, retention);
                    change.reason = Some("pruned: the tenant is in no file".to_string());
                    change.steps = soft_delete_steps(
                        id,
                        observed,
                        naming,
                        row,
                        Step::SoftDeleteRegistry {
                            retention_days: retention,
                        },
                    );
                    change.fields.push(FieldChange {
                        path: "status".to_string(),
                        old: Some(Value::from(row.status.as_str())),
                        new: Some(Value::from("deleted")),
                        inherited: false,
                    });
                    orphan.pruned = true;
                }
                LiveStatus::Deleted if purge_due(row, observed) => {
                    if row.protected {
                        plan.refusals.push(protected_refusal(id, "purge"));
                    }
                    change.actions.push(Action::Purge);
                    change.status_after = None;
                    change.reason = Some(retention_reason(row));
                    change.steps = purge_steps(id, observed, naming, row, &mut drift);
                    change.drift = drift;
                    orphan.pruned = true;
                }
                LiveStatus::Deleted => {}
            }
        }
        plan.orphans.push(orphan);
        if !change.actions.is_empty() {
            plan.changes.push(change);
        }
    }
    plan.orphans.sort_by(|a, b| a.tenant.cmp(&b.tenant));
}

pub(super) fn purge_due(row: &RegistryRow, observed: &ObservedState) -> bool {
    row.status == LiveStatus::Deleted
        && row
            .purge_after
            .is_some_and(|purge_after| purge_after <= observed.server_time)
}

pub(super) fn retention_reason(row: &RegistryRow) -> String {
    match row.retention_days {
        Some(days) => format!("retention of {days} days elapsed"),
        None => "retention elapsed".to_string(),
    }
}

pub(super) fn protected_refusal(id: &str, what: &str) -> Refusal {
    Refusal {
        tenant: Some(id.to_string()),
        message: format!("tenant `{id}` is protected; refusing to {what} it"),
        hint: Some(
            "remove `protected: true` from its file and apply that reviewed change first"
                .to_string(),
        ),
    }
}

/// Steps of a soft delete: access revoked, the registry written (`registry`), final backup
/// written last, so that its folder is renamed into place just before the commit.
pub(super) fn soft_delete_steps(
    id: &str,
    observed: &ObservedState,
    naming: &Naming,
    row: &RegistryRow,
    registry: Step,
) -> Vec<Step> {
    let schema_name = naming.schema(id);
    let role_name = naming.role(id);
    let mut steps = Vec::new();
    let schema = observed
        .schemas
        .get(&schema_name)
        .filter(|schema| schema.comment == MANAGED_COMMENT);
    let role_managed = observed
        .roles
        .get(&role_name)
        .is_some_and(|role| role.comment == MANAGED_COMMENT);
    if let Some(schema) = schema {
        if role_managed && schema.privileges.contains_key(&role_name) {
            steps.push(Step::RevokeSchemaUsage {
                schema: schema_name.clone(),
                role: role_name.clone(),
            });
        }
    }
    // The role no longer logs in, and what it has open is ended.
    if let Some(role) = observed
        .roles
        .get(&role_name)
        .filter(|role| role.comment == MANAGED_COMMENT)
    {
        if role.can_login {
            steps.push(Step::SetRoleLogin {
                role: role_name.clone(),
                login: false,
            });
        }
        if role.can_login
            || observed
                .role_sessions
                .get(&role_name)
                .is_some_and(|n| *n > 0)
        {
            steps.push(Step::TerminateSessions { role: role_name });
        }
    }
    steps.push(registry);
    let collection = owned_collection(id, observed, naming, row);
    steps.push(Step::ExportBackup {
        schema: schema_name.clone(),
        tables: schema
            .map(|schema| schema.tables.keys().cloned().collect())
            .unwrap_or_default(),
        collection: collection.map(|_| naming.collection(id)),
        collection_id: collection.map(|collection| collection.id.clone()),
        migration_version: observed
            .history
            .as_ref()
            .and_then(|history| history.by_tenant.get(&row.uid))
            .and_then(|versions| versions.last().copied()),
        uid: row.uid,
    });
    steps
}

/// What a soft delete shows of the credentials it disables.
pub(super) fn access_ended(observed: &ObservedState, role: &str) -> Vec<super::CredentialChange> {
    let mut changes = Vec::new();
    if observed
        .roles
        .get(role)
        .is_some_and(|live| live.comment == MANAGED_COMMENT && live.can_login)
    {
        changes.push(super::CredentialChange::Login {
            from: true,
            to: false,
        });
    }
    if let Some(sessions) = observed.role_sessions.get(role).copied().filter(|n| *n > 0) {
        changes.push(super::CredentialChange::SessionsEnded { sessions });
    }
    changes
}

/// The tenant's collection if it carries this incarnation's uid.
pub(super) fn owned_collection<'a>(
    id: &str,
    observed: &'a ObservedState,
    naming: &Naming,
    row: &RegistryRow,
) -> Option<&'a crate::observed::ObservedCollection> {
    observed
        .collections
        .get(&naming.collection(id))
        .filter(|collection| {
            collection.metadata_str("managed_by") == Some(COLLECTION_MANAGED_BY)
                && collection.metadata_str("tenant_uid") == Some(row.uid.to_string().as_str())
        })
}

/// Steps of a purge, in the order that keeps a failure retryable: PostgreSQL drops (rolled back
/// on failure), then the collection, then the backups, then commit. Resources tenantctl did not
/// create are left alone and noted as drift.
pub(super) fn purge_steps(
    id: &str,
    observed: &ObservedState,
    naming: &Naming,
    row: &RegistryRow,
    drift: &mut Vec<Drift>,
) -> Vec<Step> {
    let schema_name = naming.schema(id);
    let role_name = naming.role(id);
    let mut steps = Vec::new();
    match observed.schemas.get(&schema_name) {
        Some(schema) if schema.comment == MANAGED_COMMENT => steps.push(Step::DropSchema {
            schema: schema_name,
        }),
        Some(_) => drift.push(Drift {
            resource: ResourceKind::Schema,
            name: schema_name,
            problem: DriftProblem::Wrong,
            detail: "not created by tenantctl; left alone".to_string(),
        }),
        None => {}
    }
    match observed.roles.get(&role_name) {
        Some(role) if role.comment == MANAGED_COMMENT => {
            steps.push(Step::DropRole { role: role_name })
        }
        Some(_) => drift.push(Drift {
            resource: ResourceKind::Role,
            name: role_name,
            problem: DriftProblem::Wrong,
            detail: "not created by tenantctl; left alone".to_string(),
        }),
        None => {}
    }
    steps.push(Step::DeleteRegistry { uid: row.uid });
    if owned_collection(id, observed, naming, row).is_some() {
        steps.push(Step::DeleteCollection {
            collection: naming.collection(id),
        });
    } else if observed.collections.contains_key(&naming.collection(id)) {
        drift.push(Drift {
            resource: ResourceKind::Collection,
            name: naming.collection(id),
            problem: DriftProblem::Wrong,
            detail: "not this tenant's (no matching uid); left alone".to_string(),
        });
    }
    steps.push(Step::DeleteBackups { uid: row.uid });
    steps
}

/// Most significant first: the verb a reviewer must not miss comes first.
pub(super) fn precedence(action: Action) -> u8 {
    match action {
        Action::Purge => 0,
        Action::Delete => 1,
        Action::Create => 2,
        Action::Restore => 3,
        Action::Suspend => 4,
        Action::Resume => 5,
        Action::Update => 6,
        Action::Migrate => 7,
        Action::Repair => 8,
    }
}

/// When a purge becomes due if the soft delete happens at the server's time now; `None` only
/// past the calendar (retention is bounded to ten years, so never in practice).
fn purge_date(
    observed: &ObservedState,
    retention_days: u32,
) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::Duration::try_days(i64::from(retention_days))
        .and_then(|retention| observed.server_time.checked_add_signed(retention))
}
