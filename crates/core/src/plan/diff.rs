//! The planner: `diff(desired, observed, options) -> Plan`.

use super::fields::{inherited, record_fields};
use super::lifecycle::{backup_leftovers, plan_orphans};
use super::migrations::{fleet_refusals, grant_steps, pending};
use super::{
    Action, Conflict, ControlSchemaChange, Drift, DriftProblem, FieldChange, Naming,
    PendingMigration, Plan, Refusal, RegistryRecord, ResourceKind, ScheduledPurge, Step,
    TenantChange, COLLECTION_MANAGED_BY, MANAGED_COMMENT,
};
use crate::observed::{LiveStatus, ObservedState};
use crate::spec::migrations::Migrations;
use crate::spec::{DesiredState, DesiredStatus, TenantSpec, DEFAULT_RETENTION_DAYS};

/// Latest version of the control schema this release knows. The SQL of each version lives in
/// `backend::postgres`; the planner only needs the numbers.
pub const CONTROL_SCHEMA_VERSION: i32 = 8;

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
    /// Refuse the run when more existing tenants than this would run a migration that drops
    /// or rewrites data.
    pub max_destructive_migrations: Option<usize>,
    /// `--canary N`: migrate this many tenants first (overrides the Settings document).
    pub canary: Option<usize>,
    /// Only these tenants (`--tenant`); empty means all.
    pub targets: std::collections::BTreeSet<String>,
}

impl PlanOptions {
    /// True when `tenant` is part of this run.
    pub fn targets(&self, tenant: &str) -> bool {
        self.targets.is_empty() || self.targets.contains(tenant)
    }
}

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
        warnings: scope_warnings(observed)
            .into_iter()
            .chain(interrupted_run(observed))
            .chain(unfinished_online(desired, observed))
            .collect(),
        migrations: desired.migrations.clone(),
        app_role: None,
        destructive_migrations: Vec::new(),
        canary: Vec::new(),
    };
    plan_app_role(&mut plan, desired, observed);
    plan.refusals.extend(fleet_refusals(
        &desired.migrations,
        observed.history.as_ref(),
    ));
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
            plan_defaults: desired.plans.get(&spec.plan).map(|plan| &plan.config),
            retention_days: spec.retention_days.unwrap_or(default_retention),
            observed,
            naming: &options.naming,
            migrations: &desired.migrations,
            rotation_grace: desired.settings.auth.rotation_grace,
            conflicts: Vec::new(),
            drift: Vec::new(),
            refusals: Vec::new(),
            migrations_pending: Vec::new(),
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
    plan.destructive_migrations = destructive_migrations(&desired.migrations, &plan.changes);
    if let Some(limit) = options.max_destructive_migrations {
        let tenants = plan.destructive_migration_tenants();
        if tenants > limit {
            let names: std::collections::BTreeSet<&str> = plan
                .destructive_migrations
                .iter()
                .map(|statement| statement.name.as_str())
                .collect();
            plan.refusals.push(Refusal {
                tenant: None,
                message: format!(
                    "this plan would run migrations that drop or rewrite data ({}) on {tenants} tenants, more than `--max-destructive-migrations {limit}` allows",
                    names.into_iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
                ),
                hint: Some(
                    "read the rows at risk in the plan; if the change is intended, raise `--max-destructive-migrations` for this run".to_string(),
                ),
            });
        }
    }
    plan.changes.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    let size = options.canary.or(desired.settings.canary).unwrap_or(0);
    plan.canary = canary(&plan.changes, desired, size);
    plan
}

/// The canary of a run: `size` of the existing tenants that migrate, those whose file says
/// `canary: true` first, then by id.
fn canary(changes: &[TenantChange], desired: &DesiredState, size: usize) -> Vec<String> {
    if size == 0 {
        return Vec::new();
    }
    let mut migrating: Vec<(bool, &str)> = changes
        .iter()
        .filter(|change| !change.blocked && change.actions.contains(&Action::Migrate))
        .map(|change| {
            let declared = desired
                .tenants
                .get(&change.tenant)
                .is_some_and(|spec| spec.canary);
            (!declared, change.tenant.as_str())
        })
        .collect();
    migrating.sort();
    migrating
        .into_iter()
        .take(size)
        .map(|(_, tenant)| tenant.to_string())
        .collect()
}

/// Every statement that drops or rewrites data in a migration some existing tenant will run,
/// with how many will run it.
fn destructive_migrations(
    migrations: &Migrations,
    changes: &[TenantChange],
) -> Vec<crate::plan::DestructiveMigration> {
    let mut tenants: std::collections::BTreeMap<u32, usize> = Default::default();
    for change in changes
        .iter()
        .filter(|change| !change.blocked && change.actions.contains(&Action::Migrate))
    {
        for pending in change.migrations.iter().filter(|pending| !pending.adopted) {
            *tenants.entry(pending.version).or_default() += 1;
        }
    }
    let mut found = Vec::new();
    for (version, count) in tenants {
        let Some(migration) = migrations.get(version) else {
            continue;
        };
        for (line, kind, tables) in migrations.destructive(version) {
            found.push(crate::plan::DestructiveMigration {
                version,
                name: migration.name.clone(),
                file: migration.file.clone(),
                line,
                kind: kind.to_string(),
                tables,
                tenants: count,
            });
        }
    }
    found
}

/// The last run that migrated tenants, when it did not finish (killed, or stopped by a failed
/// canary or `--on-error stop`): what it did, and that this apply resumes the rest.
fn interrupted_run(observed: &ObservedState) -> Option<String> {
    let run = observed.last_migration_run.as_ref()?;
    if run.pending == 0 {
        return None;
    }
    let mut named = run
        .pending_tenants
        .iter()
        .map(|tenant| format!("`{tenant}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if run.pending > run.pending_tenants.len() as u64 {
        named.push_str(", …");
    }
    Some(format!(
        "the migration run {} (last active {}) did not finish: {} applied, {} failed, {} never finished ({named}); their migrations are still pending, and apply resumes them",
        run.run_id,
        run.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        run.applied,
        run.failed,
        run.pending
    ))
}

/// No-transaction migrations a run left in the middle (it failed, or was killed): which
/// tenants, how far each got, and that apply resumes them.
fn unfinished_online(desired: &DesiredState, observed: &ObservedState) -> Option<String> {
    if observed.online_progress.is_empty() {
        return None;
    }
    let ids: std::collections::BTreeMap<uuid::Uuid, &str> = observed
        .registry
        .iter()
        .map(|(id, row)| (row.uid, id.as_str()))
        .collect();
    const NAMED: usize = 10;
    let mut named = Vec::new();
    for progress in observed.online_progress.iter().take(NAMED) {
        let tenant = ids.get(&progress.tenant_uid).copied().unwrap_or("(purged)");
        let detail = match desired.migrations.get(progress.version) {
            Some(migration) if migration.checksum == progress.checksum => format!(
                "`{}`, {} of {} statements done",
                migration.name,
                progress.statements.len(),
                migration.statements().len()
            ),
            Some(migration) => format!(
                "`{}`, changed since {} of its statements ran: started over",
                migration.name,
                progress.statements.len()
            ),
            None => format!("migration {}, whose file is gone", progress.version),
        };
        named.push(format!("`{tenant}` ({detail})"));
    }
    let count = observed.online_progress.len();
    if count > NAMED {
        named.push(format!("{} more", count - NAMED));
    }
    Some(format!(
        "a no-transaction migration stopped in the middle on {} tenant{}: {}; apply resumes each at its next statement, and rebuilds an index a cut-off build left INVALID",
        count,
        if count == 1 { "" } else { "s" },
        named.join(", ")
    ))
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

/// Plans one tenant file against the live state.
pub(super) struct TenantPlanner<'a> {
    pub(super) spec: &'a TenantSpec,
    /// The configuration of the tenant's billing plan, which a create does not repeat.
    pub(super) plan_defaults: Option<&'a crate::spec::PartialConfig>,
    pub(super) retention_days: u32,
    pub(super) observed: &'a ObservedState,
    pub(super) naming: &'a Naming,
    pub(super) migrations: &'a Migrations,
    /// How long keys a rotation replaces keep working.
    pub(super) rotation_grace: std::time::Duration,
    pub(super) conflicts: Vec<Conflict>,
    pub(super) drift: Vec<Drift>,
    pub(super) refusals: Vec<Refusal>,
    /// The migrations the tenant's change runs or records.
    pub(super) migrations_pending: Vec<PendingMigration>,
}

/// Steps found while checking resources, kept apart so they can be ordered: PostgreSQL DDL,
/// then the registry write, then Chroma.
#[derive(Default)]
pub(super) struct Steps {
    pub(super) postgres: Vec<Step>,
    pub(super) chroma: Vec<Step>,
}

impl TenantPlanner<'_> {
    pub(super) fn conflict(
        &mut self,
        resource: ResourceKind,
        name: &str,
        message: String,
        hint: &str,
    ) {
        self.conflicts.push(Conflict {
            tenant: self.spec.id.clone(),
            resource,
            name: name.to_string(),
            message,
            hint: Some(hint.to_string()),
        });
    }

    pub(super) fn drift(
        &mut self,
        resource: ResourceKind,
        name: &str,
        problem: DriftProblem,
        detail: &str,
    ) {
        self.drift.push(Drift {
            resource,
            name: name.to_string(),
            problem,
            detail: detail.to_string(),
        });
    }

    pub(super) fn record(&self, status: LiveStatus) -> RegistryRecord {
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

        // The schema, every migration in it, the role, and its grants on what they made.
        let versions: Vec<u32> = self.migrations.list.iter().map(|m| m.version).collect();
        let mut steps = vec![
            Step::CreateSchema {
                schema: schema.clone(),
            },
            Step::RunMigrations {
                schema: schema.clone(),
                versions: versions.clone(),
            },
            Step::CreateRole { role: role.clone() },
        ];
        if status == LiveStatus::Active {
            steps.push(Step::GrantSchemaUsage {
                schema: schema.clone(),
                role: role.clone(),
            });
        }
        if let Some(reference) = &self.observed.reference {
            steps.extend(grant_steps(&reference.full, &schema, &role));
        }
        let credentials = super::credentials::plan(&super::credentials::Inputs {
            tenant: &id,
            auth: self.spec.auth.as_ref(),
            status,
            role: &role,
            live_role: None,
            uid: None,
            observed: self.observed,
            grace: self.rotation_grace,
            disabling: false,
        });
        let generates = credentials.delivers();
        steps.extend(credentials.steps);
        self.refusals.extend(credentials.refusals);
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
        change.migrations = pending(self.migrations, &versions, false);
        change.fields = record_fields(&record)
            .into_iter()
            .map(|(path, new)| FieldChange {
                inherited: inherited(&path, &new, self.spec, self.plan_defaults),
                path,
                old: None,
                new: Some(new),
            })
            .collect();
        change.drift = drift;
        change.reason = record.suspension_reason.clone();
        change.record = Some(record);
        change.credentials = credentials.changes;
        if generates {
            steps.push(Step::DeliverSecrets { role });
        }
        change.steps = steps;
        change
    }
}

/// The role Settings names for `tenantctl.authenticate` gets `EXECUTE` on it; no other role
/// keeps it.
fn plan_app_role(plan: &mut Plan, desired: &DesiredState, observed: &ObservedState) {
    let wanted = desired.settings.auth.app_role.as_deref();
    if let (Some(role), Some(false)) = (wanted, observed.app_role_exists) {
        plan.refusals.push(Refusal {
            tenant: None,
            message: format!(
                "the application role `{role}` (Settings `auth.app_role`) does not exist"
            ),
            hint: Some(format!(
                "create it first, e.g. `CREATE ROLE {role} LOGIN PASSWORD '...'`; tenantctl grants it EXECUTE on tenantctl.authenticate and nothing else"
            )),
        });
        return;
    }
    let grant = wanted.is_some_and(|role| !observed.authenticate_grantees.contains(role));
    let revoke: Vec<String> = observed
        .authenticate_grantees
        .iter()
        .filter(|grantee| Some(grantee.as_str()) != wanted)
        .cloned()
        .collect();
    if grant || !revoke.is_empty() {
        plan.app_role = Some(super::AppRoleChange {
            role: wanted.map(str::to_string),
            grant,
            revoke,
        });
    }
}

fn no_op(tenant: &str) -> TenantChange {
    TenantChange::new(tenant)
}
