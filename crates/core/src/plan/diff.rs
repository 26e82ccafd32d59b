//! The planner: `diff(desired, observed, options) -> Plan`.

use super::{
    collection_metadata, Action, BackupLeftover, Conflict, ControlSchemaChange, Drift,
    DriftProblem, FieldChange, GrantTarget, Naming, Orphan, Plan, Refusal, RegistryRecord,
    ResourceKind, ScheduledPurge, Step, TenantChange, COLLECTION_MANAGED_BY, CONVERSATIONS_TABLE,
    MANAGED_COMMENT, TABLE_PRIVILEGES,
};
use crate::observed::{LiveStatus, ObservedState, RegistryRow, PUBLIC};
use crate::spec::{DesiredState, DesiredStatus, TenantSpec, DEFAULT_RETENTION_DAYS};
use serde_json::Value;
use std::collections::BTreeMap;

/// Latest version of the control schema this release knows. The SQL of each version lives in
/// `backend::postgres`; the planner only needs the numbers.
pub const CONTROL_SCHEMA_VERSION: i32 = 3;

/// Knobs of a plan run that do not come from the files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanOptions {
    pub naming: Naming,
    /// Retention period from the command line, for tenants that do not set their own; it
    /// overrides the Settings document.
    pub retention_days: Option<u32>,
    /// Turn orphans (registry rows in no file) into soft deletes, and purge pruned tenants
    /// whose retention elapsed. Never purges an orphan that was not soft-deleted first.
    pub prune: bool,
    /// Refuse the run when it would soft-delete or purge more tenants than this.
    pub max_deletes: Option<usize>,
    /// Only these tenants (`--tenant`); empty means all.
    pub targets: std::collections::BTreeSet<String>,
}

impl PlanOptions {
    /// True when `tenant` is part of this run.
    pub fn targets(&self, tenant: &str) -> bool {
        self.targets.is_empty() || self.targets.contains(tenant)
    }
}

/// A column of the `conversations` table as tenantctl creates it: name, `format_type()`, the
/// default as `pg_get_expr()` prints it.
pub(crate) const CONVERSATIONS_COLUMNS: [(&str, &str, Option<&str>); 3] = [
    ("id", "uuid", None),
    ("created_at", "timestamp with time zone", Some("now()")),
    ("messages", "jsonb", Some("'[]'::jsonb")),
];

/// Compares desired and live state and returns what apply would do.
///
/// Pure and deterministic: changes come sorted by tenant id, steps in execution order.
pub fn diff(desired: &DesiredState, observed: &ObservedState, options: &PlanOptions) -> Plan {
    let current = observed.control_schema_version;
    let pending = (current.unwrap_or(0) + 1..=CONTROL_SCHEMA_VERSION).collect();
    let mut plan = Plan {
        server_time: observed.server_time,
        control_schema: ControlSchemaChange {
            current_version: current,
            pending,
        },
        changes: Vec::with_capacity(desired.tenants.len()),
        conflicts: Vec::new(),
        refusals: Vec::new(),
        orphans: Vec::new(),
        scheduled_purges: Vec::new(),
        backup_leftovers: backup_leftovers(observed),
        warnings: scope_warnings(observed),
    };
    let default_retention = options
        .retention_days
        .or(desired.settings.retention_days)
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    for spec in desired
        .tenants
        .values()
        .filter(|spec| options.targets(&spec.id))
    {
        let mut planner = TenantPlanner {
            spec,
            retention_days: spec.retention_days.unwrap_or(default_retention),
            observed,
            naming: &options.naming,
            conflicts: Vec::new(),
            drift: Vec::new(),
            refusals: Vec::new(),
        };
        let mut change = match observed.registry.get(&spec.id) {
            None => planner.plan_new(),
            Some(row) => planner.plan_existing(row),
        };
        change.file = Some(spec.location.file.display().to_string());
        if !planner.conflicts.is_empty() {
            change.blocked = true;
            change.steps.clear();
        }
        plan.conflicts.extend(planner.conflicts);
        plan.refusals.extend(planner.refusals);
        plan.changes.push(change);
    }
    plan_orphans(&mut plan, desired, observed, options, default_retention);
    for change in &plan.changes {
        if let (Some(LiveStatus::Deleted), Some(purge_after), true) = (
            change.status_after,
            change.purge_after,
            change.actions.is_empty() || !change.actions.contains(&Action::Purge),
        ) {
            if change.primary() != Some(Action::Delete) {
                plan.scheduled_purges.push(ScheduledPurge {
                    tenant: change.tenant.clone(),
                    deleted_at: change.deleted_at,
                    purge_after,
                });
            }
        }
    }
    if let Some(limit) = options.max_deletes {
        let deletes = plan.deletes();
        if deletes > limit {
            plan.refusals.push(Refusal {
                tenant: None,
                message: format!(
                    "this plan would soft-delete or purge {deletes} tenants, more than `--max-deletes {limit}` allows"
                ),
                hint: Some(
                    "if the directory lost files by accident, restore them; if the deletes are intended, raise `--max-deletes` for this run".to_string(),
                ),
            });
        }
    }
    plan.changes.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    plan
}

/// What the reviewer must read first about the live state itself.
fn scope_warnings(observed: &ObservedState) -> Vec<String> {
    let scope = observed.chroma_scope;
    if !scope.tenant_exists {
        vec!["the Chroma tenant does not exist: apply will create it and every collection in it (check `--chroma-tenant` / `CHROMA_TENANT` for a typo)".to_string()]
    } else if !scope.database_exists {
        vec!["the Chroma database does not exist: apply will create it and every collection in it (check `--chroma-database` / `CHROMA_DATABASE` for a typo)".to_string()]
    } else {
        Vec::new()
    }
}

/// Backup folders that belong to no soft-deleted tenant.
fn backup_leftovers(observed: &ObservedState) -> Vec<BackupLeftover> {
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
fn plan_orphans(
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
                    change.purge_after =
                        Some(observed.server_time + chrono::Duration::days(i64::from(retention)));
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

fn purge_due(row: &RegistryRow, observed: &ObservedState) -> bool {
    row.status == LiveStatus::Deleted
        && row
            .purge_after
            .is_some_and(|purge_after| purge_after <= observed.server_time)
}

fn retention_reason(row: &RegistryRow) -> String {
    match row.retention_days {
        Some(days) => format!("retention of {days} days elapsed"),
        None => "retention elapsed".to_string(),
    }
}

fn protected_refusal(id: &str, what: &str) -> Refusal {
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
fn soft_delete_steps(
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
                role: role_name,
            });
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
        uid: row.uid,
    });
    steps
}

/// The tenant's collection if it carries this incarnation's uid.
fn owned_collection<'a>(
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
fn purge_steps(
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

struct TenantPlanner<'a> {
    spec: &'a TenantSpec,
    retention_days: u32,
    observed: &'a ObservedState,
    naming: &'a Naming,
    conflicts: Vec<Conflict>,
    drift: Vec<Drift>,
    refusals: Vec<Refusal>,
}

/// Steps found while checking resources, kept apart so they can be ordered: PostgreSQL DDL,
/// then the registry write, then Chroma.
#[derive(Default)]
struct Steps {
    postgres: Vec<Step>,
    chroma: Vec<Step>,
}

impl TenantPlanner<'_> {
    fn conflict(&mut self, resource: ResourceKind, name: &str, message: String, hint: &str) {
        self.conflicts.push(Conflict {
            tenant: self.spec.id.clone(),
            resource,
            name: name.to_string(),
            message,
            hint: Some(hint.to_string()),
        });
    }

    fn drift(&mut self, resource: ResourceKind, name: &str, problem: DriftProblem, detail: &str) {
        self.drift.push(Drift {
            resource,
            name: name.to_string(),
            problem,
            detail: detail.to_string(),
        });
    }

    fn record(&self, status: LiveStatus) -> RegistryRecord {
        let spec = self.spec;
        RegistryRecord {
            name: spec.name.clone(),
            status,
            plan: spec.plan.clone(),
            config: spec.config.clone(),
            protected: spec.protected,
            retention_days: self.retention_days,
            suspension_reason: match status {
                LiveStatus::Suspended => spec.suspension_reason.clone(),
                _ => None,
            },
        }
    }

    /// A tenant with no registry row: provision it, unless its file says `deleted` (never
    /// provisioned or already purged: nothing to do).
    fn plan_new(&mut self) -> TenantChange {
        let id = self.spec.id.clone();
        let status = match self.spec.state {
            DesiredStatus::Deleted => return no_op(&id),
            DesiredStatus::Active => LiveStatus::Active,
            DesiredStatus::Suspended => LiveStatus::Suspended,
        };
        let schema = self.naming.schema(&id);
        let role = self.naming.role(&id);
        let collection = self.naming.collection(&id);

        // Anything that already carries the tenant's names without a registry row belongs to
        // someone else (or to another tenantctl registry sharing the cluster's roles): creating
        // over it would hand a stranger's data to this tenant.
        if self.observed.schemas.contains_key(&schema) {
            self.conflict(
                ResourceKind::Schema,
                &schema,
                format!("schema `{schema}` already exists but the registry has no tenant `{id}`"),
                "tenantctl creates a tenant's schema itself; rename or drop the existing schema by hand, or pick another tenant id",
            );
        }
        if let Some(existing) = self.observed.roles.get(&role) {
            let owner = if existing.comment == MANAGED_COMMENT {
                "it is marked as managed by tenantctl, probably by another registry on this cluster"
            } else {
                "tenantctl did not create it"
            };
            self.conflict(
                ResourceKind::Role,
                &role,
                format!("role `{role}` already exists ({owner})"),
                "roles are cluster-wide: give each database its own `--role-prefix`, or remove the role by hand",
            );
        }
        // A create that rolled back but could not reach Chroma to take its collection back
        // (or was killed) leaves a collection carrying its uid. It is adopted (new metadata, no
        // data touched) only when this registry's own events say that uid's create started and
        // never committed, and the collection is still empty: anything else, such as another
        // registry's tenant of the same id sharing this Chroma database, is a conflict.
        let mut adopt = None;
        if let Some(existing) = self.observed.collections.get(&collection) {
            let interrupted_here = existing
                .metadata_str("tenant_uid")
                .and_then(|uid| uid.parse::<uuid::Uuid>().ok())
                .and_then(|uid| self.observed.interrupted_creates.get(&uid))
                .is_some_and(|tenant| *tenant == id);
            let leftover = existing.metadata_str("managed_by") == Some(COLLECTION_MANAGED_BY)
                && existing.metadata_str("tenant_id") == Some(id.as_str())
                && interrupted_here
                && existing.records == Some(0);
            if leftover {
                adopt = Some(existing.id.clone());
            } else {
                let why = if existing.metadata_str("managed_by") != Some(COLLECTION_MANAGED_BY) {
                    "it was not created by tenantctl"
                } else if !interrupted_here {
                    "its uid is not an interrupted create of this registry (another registry sharing the Chroma database, or an older incarnation)"
                } else {
                    "it already holds records"
                };
                self.conflict(
                    ResourceKind::Collection,
                    &collection,
                    format!("collection `{collection}` already exists but the registry has no tenant `{id}`: {why}"),
                    "delete or rename the collection in Chroma by hand, or pick another tenant id",
                );
            }
        }

        let mut steps = vec![
            Step::CreateSchema {
                schema: schema.clone(),
            },
            Step::CreateTable {
                schema: schema.clone(),
                table: CONVERSATIONS_TABLE.to_string(),
            },
            Step::CreateRole { role: role.clone() },
        ];
        if status == LiveStatus::Active {
            steps.push(Step::GrantSchemaUsage {
                schema: schema.clone(),
                role: role.clone(),
            });
        }
        steps.push(Step::GrantTablePrivileges {
            schema,
            table: CONVERSATIONS_TABLE.to_string(),
            role,
        });
        let record = self.record(status);
        steps.push(Step::InsertRegistry {
            record: record.clone(),
        });
        let mut drift = Vec::new();
        match adopt {
            Some(collection_id) => {
                drift.push(Drift {
                    resource: ResourceKind::Collection,
                    name: collection.clone(),
                    problem: DriftProblem::Wrong,
                    detail: "left by an interrupted create; adopted with the new uid".to_string(),
                });
                steps.push(Step::UpdateCollectionMetadata {
                    collection,
                    id: collection_id,
                });
            }
            None => steps.push(Step::CreateCollection { collection }),
        }

        let mut change = TenantChange::new(&id);
        change.actions.push(Action::Create);
        change.status_after = Some(status);
        change.fields = record_fields(&record)
            .into_iter()
            .map(|(path, new)| FieldChange {
                path,
                old: None,
                new: Some(new),
            })
            .collect();
        change.drift = drift;
        change.reason = record.suspension_reason.clone();
        change.record = Some(record);
        change.steps = steps;
        change
    }

    fn plan_existing(&mut self, row: &RegistryRow) -> TenantChange {
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
            change.purge_after = Some(
                self.observed.server_time + chrono::Duration::days(i64::from(self.retention_days)),
            );
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
            change.fields = fields;
            change.record = Some(record);
            change.actions.sort_by_key(|action| precedence(*action));
            return change;
        }

        // A soft-deleted tenant that stays deleted keeps whatever is left until its purge:
        // re-creating a dropped schema for it would only make an empty copy.
        let mut steps = Steps::default();
        if desired_status != LiveStatus::Deleted {
            self.check_resources(row, desired_status, &mut steps);
        }
        if !self.drift.is_empty() {
            change.actions.push(Action::Repair);
        }
        change.actions.sort_by_key(|action| precedence(*action));

        let mut all_steps = steps.postgres;
        if !fields.is_empty() {
            all_steps.push(Step::UpdateRegistry {
                record: record.clone(),
            });
        }
        all_steps.extend(steps.chroma);
        if !fields.is_empty() {
            change.record = Some(record);
        }
        change.fields = fields;
        change.drift = std::mem::take(&mut self.drift);
        change.steps = all_steps;
        change
    }

    /// Compares the tenant's live resources with what it should have and records drift, steps
    /// that repair it, and conflicts that forbid touching it.
    fn check_resources(&mut self, row: &RegistryRow, desired: LiveStatus, steps: &mut Steps) {
        let id = self.spec.id.clone();
        let schema_name = self.naming.schema(&id);
        let role_name = self.naming.role(&id);
        let collection_name = self.naming.collection(&id);
        let table_label = format!("{schema_name}.{CONVERSATIONS_TABLE}");
        let observed = self.observed;

        // Schema and table.
        let schema = observed.schemas.get(&schema_name);
        let mut schema_new = false;
        let mut table_new = false;
        match schema {
            None => {
                self.drift(
                    ResourceKind::Schema,
                    &schema_name,
                    DriftProblem::Missing,
                    "schema is missing",
                );
                steps.postgres.push(Step::CreateSchema {
                    schema: schema_name.clone(),
                });
                steps.postgres.push(Step::CreateTable {
                    schema: schema_name.clone(),
                    table: CONVERSATIONS_TABLE.to_string(),
                });
                schema_new = true;
                table_new = true;
            }
            Some(schema) if schema.comment != MANAGED_COMMENT => {
                self.conflict(
                    ResourceKind::Schema,
                    &schema_name,
                    format!("schema `{schema_name}` is not marked as managed by tenantctl"),
                    "it may have been replaced by hand; restore its comment `managed by tenantctl` if it is the tenant's, or move it away",
                );
                return;
            }
            Some(schema) => {
                if schema.privileges.contains_key(PUBLIC) {
                    self.drift(
                        ResourceKind::Grant,
                        &schema_name,
                        DriftProblem::Wrong,
                        "PUBLIC has privileges on the schema",
                    );
                    steps.postgres.push(Step::RevokeSchemaFromPublic {
                        schema: schema_name.clone(),
                    });
                }
                match schema.tables.get(CONVERSATIONS_TABLE) {
                    None => {
                        self.drift(
                            ResourceKind::Table,
                            &table_label,
                            DriftProblem::Missing,
                            "table is missing",
                        );
                        steps.postgres.push(Step::CreateTable {
                            schema: schema_name.clone(),
                            table: CONVERSATIONS_TABLE.to_string(),
                        });
                        table_new = true;
                    }
                    Some(table) => {
                        for (column, data_type, _) in CONVERSATIONS_COLUMNS {
                            match table.columns.get(column) {
                                None => {
                                    self.drift(
                                        ResourceKind::Column,
                                        &format!("{table_label}.{column}"),
                                        DriftProblem::Missing,
                                        "column is missing",
                                    );
                                    steps.postgres.push(Step::AddColumn {
                                        schema: schema_name.clone(),
                                        table: CONVERSATIONS_TABLE.to_string(),
                                        column: column.to_string(),
                                    });
                                }
                                Some(live) if live.data_type != data_type => self.conflict(
                                    ResourceKind::Column,
                                    &format!("{table_label}.{column}"),
                                    format!(
                                        "column `{column}` of `{table_label}` is `{}`, expected `{data_type}`",
                                        live.data_type
                                    ),
                                    "tenantctl never rewrites tenant data; fix the column type by hand",
                                ),
                                Some(_) => {}
                            }
                        }
                        if table.privileges.contains_key(PUBLIC) {
                            self.drift(
                                ResourceKind::Grant,
                                &table_label,
                                DriftProblem::Wrong,
                                "PUBLIC has privileges on the table",
                            );
                            steps.postgres.push(Step::RevokeTableFromPublic {
                                schema: schema_name.clone(),
                                table: CONVERSATIONS_TABLE.to_string(),
                            });
                        }
                    }
                }
            }
        }

        // Role.
        let mut role_new = false;
        match observed.roles.get(&role_name) {
            None => {
                self.drift(
                    ResourceKind::Role,
                    &role_name,
                    DriftProblem::Missing,
                    "role is missing",
                );
                steps.postgres.push(Step::CreateRole {
                    role: role_name.clone(),
                });
                role_new = true;
            }
            Some(role) if role.comment != MANAGED_COMMENT => {
                self.conflict(
                    ResourceKind::Role,
                    &role_name,
                    format!("role `{role_name}` exists but was not created by tenantctl"),
                    "tenantctl never alters a role it did not create; rename that role or use another `--role-prefix`",
                );
                return;
            }
            Some(role) => {
                if role.can_login {
                    self.drift(
                        ResourceKind::Role,
                        &role_name,
                        DriftProblem::Wrong,
                        "role can log in, should be NOLOGIN",
                    );
                    steps.postgres.push(Step::DisableRoleLogin {
                        role: role_name.clone(),
                    });
                }
            }
        }

        // A role that owns something: ownership goes first, it rewrites the owner's grants.
        if let (Some(role), false) = (observed.roles.get(&role_name), role_new) {
            let found = super::privileges::ownership(&role_name, role);
            self.drift.extend(found.drift);
            steps.postgres.extend(found.steps);
        }

        // Grants. A freshly created schema, table or role has no grants; those are part of the
        // repair already reported, not separate drift.
        let schema_privileges = schema
            .filter(|_| !schema_new)
            .and_then(|schema| schema.privileges.get(&role_name))
            .cloned()
            .unwrap_or_default();
        let has_usage = !role_new && schema_privileges.contains("USAGE");
        let extra_schema_privileges = !role_new && schema_privileges.iter().any(|p| p != "USAGE");
        let registry_wants_usage = row.status == LiveStatus::Active;
        let desired_usage = desired == LiveStatus::Active;
        if !schema_new && !role_new {
            if has_usage != registry_wants_usage {
                let detail = if has_usage {
                    format!("role has access to the schema of a {} tenant", row.status)
                } else {
                    "role lacks USAGE on the schema".to_string()
                };
                let problem = if has_usage {
                    DriftProblem::Wrong
                } else {
                    DriftProblem::Missing
                };
                self.drift(ResourceKind::Grant, &schema_name, problem, &detail);
            }
            if extra_schema_privileges {
                self.drift(
                    ResourceKind::Grant,
                    &schema_name,
                    DriftProblem::Wrong,
                    "role holds privileges on the schema beyond USAGE",
                );
            }
        }
        if extra_schema_privileges || (has_usage && !desired_usage) {
            steps.postgres.push(Step::RevokeSchemaUsage {
                schema: schema_name.clone(),
                role: role_name.clone(),
            });
        }
        if desired_usage && (!has_usage || extra_schema_privileges) {
            steps.postgres.push(Step::GrantSchemaUsage {
                schema: schema_name.clone(),
                role: role_name.clone(),
            });
        }

        let table_privileges = schema
            .and_then(|schema| schema.tables.get(CONVERSATIONS_TABLE))
            .filter(|_| !table_new && !role_new)
            .and_then(|table| table.privileges.get(&role_name))
            .cloned()
            .unwrap_or_default();
        let missing_table_privileges = TABLE_PRIVILEGES
            .iter()
            .any(|privilege| !table_privileges.contains(*privilege));
        // TRUNCATE, REFERENCES, TRIGGER: more than a tenant's table privileges. Revoked, then
        // the four granted again.
        let extra_table_privileges = table_privileges
            .iter()
            .any(|privilege| !TABLE_PRIVILEGES.contains(&privilege.as_str()));
        if extra_table_privileges {
            self.drift(
                ResourceKind::Grant,
                &table_label,
                DriftProblem::Wrong,
                "role holds privileges on the table beyond SELECT, INSERT, UPDATE, DELETE",
            );
            steps.postgres.push(Step::RevokeGrant {
                on: GrantTarget::Relation {
                    schema: schema_name.clone(),
                    name: CONVERSATIONS_TABLE.to_string(),
                    kind: crate::observed::ObjectKind::Table,
                },
                grantee: role_name.clone(),
            });
        }
        if missing_table_privileges || extra_table_privileges {
            if !table_new && !role_new {
                self.drift(
                    ResourceKind::Grant,
                    &table_label,
                    DriftProblem::Missing,
                    "role lacks privileges on the table",
                );
            }
            steps.postgres.push(Step::GrantTablePrivileges {
                schema: schema_name.clone(),
                table: CONVERSATIONS_TABLE.to_string(),
                role: role_name.clone(),
            });
        }

        // Everything beyond what tenantctl grants (other grantees, role attributes,
        // memberships, ownership, SECURITY DEFINER functions).
        if let (Some(schema), Some(role), false, false) =
            (schema, observed.roles.get(&role_name), schema_new, role_new)
        {
            let found = super::privileges::check(
                &schema_name,
                schema,
                &role_name,
                role,
                &observed.current_user,
            );
            self.drift.extend(found.drift);
            steps.postgres.extend(found.steps);
        }

        // Collection.
        match observed.collections.get(&collection_name) {
            None => {
                self.drift(
                    ResourceKind::Collection,
                    &collection_name,
                    DriftProblem::Missing,
                    "collection is missing",
                );
                steps.chroma.push(Step::CreateCollection {
                    collection: collection_name,
                });
            }
            Some(collection) => {
                let expected = collection_metadata(&id, row.uid);
                if collection.metadata_str("managed_by") != Some(COLLECTION_MANAGED_BY) {
                    self.conflict(
                        ResourceKind::Collection,
                        &collection_name,
                        format!(
                            "collection `{collection_name}` exists but is not marked as managed by tenantctl"
                        ),
                        "tenantctl never touches a collection it did not create; rename or delete it in Chroma by hand",
                    );
                } else if collection.metadata_str("tenant_uid") != Some(&row.uid.to_string()) {
                    self.conflict(
                        ResourceKind::Collection,
                        &collection_name,
                        format!(
                            "collection `{collection_name}` belongs to another incarnation of tenant `{id}` (uid {})",
                            collection.metadata_str("tenant_uid").unwrap_or("unset")
                        ),
                        "a tenant purged and created again gets a new uid; delete the stale collection by hand once its data is no longer needed",
                    );
                } else if expected
                    .iter()
                    .any(|(key, value)| collection.metadata.get(key) != Some(value))
                {
                    self.drift(
                        ResourceKind::Collection,
                        &collection_name,
                        DriftProblem::Wrong,
                        "collection metadata differs",
                    );
                    steps.chroma.push(Step::UpdateCollectionMetadata {
                        collection: collection_name,
                        id: collection.id.clone(),
                    });
                }
            }
        }
    }
}

fn no_op(tenant: &str) -> TenantChange {
    TenantChange::new(tenant)
}

/// Most significant first: the verb a reviewer must not miss comes first.
fn precedence(action: Action) -> u8 {
    match action {
        Action::Purge => 0,
        Action::Delete => 1,
        Action::Create => 2,
        Action::Restore => 3,
        Action::Suspend => 4,
        Action::Resume => 5,
        Action::Update => 6,
        Action::Repair => 7,
    }
}

/// The registry fields a plan compares, as dotted paths to JSON values in display order. Both
/// sides of a comparison (the desired record, the live row) go through here, so they cannot
/// drift apart.
struct RecordFields<'a> {
    name: &'a str,
    plan: &'a str,
    config: Value,
    protected: bool,
    retention_days: Option<i64>,
    status: LiveStatus,
    suspension_reason: Option<&'a str>,
}

impl RecordFields<'_> {
    fn paths(&self) -> Vec<(String, Value)> {
        let mut fields = vec![
            ("name".to_string(), Value::from(self.name)),
            ("plan".to_string(), Value::from(self.plan)),
        ];
        flatten("config", &self.config, &mut fields);
        fields.push(("protected".to_string(), Value::from(self.protected)));
        if let Some(days) = self.retention_days {
            fields.push(("retention_days".to_string(), Value::from(days)));
        }
        fields.push(("status".to_string(), Value::from(self.status.as_str())));
        if let Some(reason) = self.suspension_reason {
            fields.push(("suspension.reason".to_string(), Value::from(reason)));
        }
        fields
    }
}

fn record_fields(record: &RegistryRecord) -> Vec<(String, Value)> {
    RecordFields {
        name: &record.name,
        plan: &record.plan,
        config: serde_json::to_value(&record.config).expect("config serializes"),
        protected: record.protected,
        retention_days: Some(i64::from(record.retention_days)),
        status: record.status,
        suspension_reason: record.suspension_reason.as_deref(),
    }
    .paths()
}

fn row_fields(row: &RegistryRow) -> Vec<(String, Value)> {
    RecordFields {
        name: &row.name,
        plan: &row.plan,
        config: row.config.clone(),
        protected: row.protected,
        retention_days: row.retention_days.map(i64::from),
        status: row.status,
        suspension_reason: row.suspend_reason.as_deref(),
    }
    .paths()
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                flatten(&format!("{prefix}.{key}"), value, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Per-field differences between the registry row and the desired record, in display order.
fn diff_fields(row: &RegistryRow, record: &RegistryRecord) -> Vec<FieldChange> {
    let old: BTreeMap<String, Value> = row_fields(row).into_iter().collect();
    let new = record_fields(record);
    // Keys present only in the old row (a feature flag removed from the plan) go right after
    // the last desired key of their group, so `config.features.*` lines stay together.
    let mut order: Vec<String> = new.iter().map(|(path, _)| path.clone()).collect();
    for path in old.keys() {
        if order.contains(path) {
            continue;
        }
        let group = path.rsplit_once('.').map(|(group, _)| format!("{group}."));
        let position = group
            .and_then(|group| order.iter().rposition(|other| other.starts_with(&group)))
            .map(|index| index + 1)
            .unwrap_or(order.len());
        order.insert(position, path.clone());
    }
    let new: BTreeMap<String, Value> = new.into_iter().collect();
    order
        .into_iter()
        .filter_map(|path| {
            let before = old.get(&path);
            let after = new.get(&path);
            (before != after).then(|| FieldChange {
                path,
                old: before.cloned(),
                new: after.cloned(),
            })
        })
        .collect()
}
