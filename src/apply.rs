//! Runs a [`Plan`]: one tenant at a time, each atomically.
//!
//! For every tenant with steps: open a PostgreSQL transaction, run its PostgreSQL steps, then its
//! Chroma steps while the transaction is still open, append the audit event, commit. If anything
//! fails, the transaction rolls back and each Chroma step already done is compensated in reverse
//! order, so a tenant ends either fully applied or as it was. Other tenants go on.

use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{self, Event, Postgres, PostgresError};
use crate::backend::BackendError;
use crate::observed::ObservedState;
use crate::plan::{collection_metadata, Plan, Step, TenantChange};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Who runs the apply, recorded in every event.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: Uuid,
    pub actor: String,
    /// Root of the final backups written at soft delete and deleted at purge.
    pub backup_root: std::path::PathBuf,
    /// Set by a signal handler: the tenants in progress finish, no further tenant starts.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Tenants applied at once, each on its own PostgreSQL session.
    pub parallelism: usize,
}

impl RunContext {
    /// A new run by the current user.
    pub fn new(backup_root: std::path::PathBuf) -> Self {
        RunContext {
            run_id: Uuid::new_v4(),
            actor: postgres::actor(),
            backup_root,
            stop: Default::default(),
            parallelism: 1,
        }
    }
}

/// How one tenant ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TenantOutcome {
    /// Every step committed.
    Applied,
    /// A step failed; the transaction rolled back and Chroma steps were undone.
    RolledBack {
        reason: String,
        /// Chroma steps that were undone.
        undone: Vec<String>,
        /// Chroma steps whose undo failed: what an operator must clean up by hand.
        undo_failed: Vec<String>,
    },
    /// A conflict in the plan kept tenantctl away from this tenant.
    Blocked { reason: String },
}

/// The outcome of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantResult {
    pub tenant: String,
    pub actions: Vec<crate::plan::Action>,
    #[serde(flatten)]
    pub outcome: TenantOutcome,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ApplyReport {
    pub run_id: Option<Uuid>,
    /// Control schema versions migrated by this run.
    pub migrated: Vec<i32>,
    pub tenants: Vec<TenantResult>,
    /// Tenants not started because the run was asked to stop.
    pub not_started: usize,
}

impl ApplyReport {
    /// True when any tenant failed or was blocked.
    pub fn failed(&self) -> bool {
        self.tenants
            .iter()
            .any(|tenant| tenant.outcome != TenantOutcome::Applied)
    }

    pub fn applied(&self) -> usize {
        self.tenants
            .iter()
            .filter(|tenant| tenant.outcome == TenantOutcome::Applied)
            .count()
    }
}

/// A Chroma step done inside a tenant's window, and how to take it back.
enum Compensation {
    /// Delete the collection, but only if it still carries this incarnation's uid: never
    /// someone else's collection of the same name.
    DeleteCreatedCollection { name: String, uid: Uuid },
    /// Put the previous metadata back.
    RestoreMetadata {
        name: String,
        id: String,
        previous: Map<String, Value>,
    },
    /// Remove a backup written by this run (its soft delete rolled back).
    RemoveBackup { dir: std::path::PathBuf },
}

impl Compensation {
    /// What was done, for the report.
    fn done(&self) -> String {
        match self {
            Compensation::DeleteCreatedCollection { name, .. } => {
                format!("collection `{name}` created by this run is gone")
            }
            Compensation::RestoreMetadata { name, .. } => {
                format!("metadata of collection `{name}` restored")
            }
            Compensation::RemoveBackup { dir } => {
                format!("backup `{}` written by this run removed", dir.display())
            }
        }
    }

    /// What was attempted, for a failure message.
    fn describe(&self) -> String {
        match self {
            Compensation::DeleteCreatedCollection { name, .. } => {
                format!("delete collection `{name}` if this run created it")
            }
            Compensation::RestoreMetadata { name, .. } => {
                format!("restore the metadata of collection `{name}`")
            }
            Compensation::RemoveBackup { dir } => {
                format!("remove backup `{}` written by this run", dir.display())
            }
        }
    }

    async fn run(&self, chroma: &ChromaClient) -> Result<(), BackendError> {
        match self {
            Compensation::DeleteCreatedCollection { name, uid } => {
                match chroma.get_collection(name).await? {
                    Some(collection)
                        if collection.metadata_str("tenant_uid") == Some(&uid.to_string()) =>
                    {
                        chroma.delete_collection(name).await?;
                    }
                    // Never created (the request failed before reaching the server), or not ours.
                    _ => {}
                }
                Ok(())
            }
            Compensation::RestoreMetadata { id, previous, .. } => {
                chroma.update_metadata(id, previous).await?;
                Ok(())
            }
            Compensation::RemoveBackup { dir } => {
                crate::backup::remove(dir)?;
                Ok(())
            }
        }
    }
}

/// Executes every tenant change of `plan` that has steps and no conflict.
///
/// Up to `context.parallelism` tenants run at once, each on its own PostgreSQL session (the
/// first is `postgres`, which holds the apply lock); tenants are independent, and each one is
/// still atomic. The report lists tenants in plan order; `progress` sees them as they finish.
///
/// The caller holds the apply lock, has migrated the control schema and made sure the Chroma
/// database exists. `observed` is the state `plan` was made from (for the metadata a
/// compensation restores).
pub async fn execute(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    plan: &Plan,
    observed: &ObservedState,
    context: &RunContext,
    mut progress: impl FnMut(&TenantResult),
) -> ApplyReport {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut finished: Vec<(usize, TenantResult)> = Vec::new();
    let mut queue = Vec::new();
    for (index, change) in plan.changes.iter().enumerate() {
        if change.blocked {
            let reasons: Vec<&str> = plan
                .conflicts
                .iter()
                .filter(|conflict| conflict.tenant == change.tenant)
                .map(|conflict| conflict.message.as_str())
                .collect();
            let result = TenantResult {
                tenant: change.tenant.clone(),
                actions: change.actions.clone(),
                outcome: TenantOutcome::Blocked {
                    reason: reasons.join("; "),
                },
            };
            progress(&result);
            finished.push((index, result));
        } else if !change.steps.is_empty() {
            queue.push(index);
        }
    }

    // Extra sessions for the other workers; if one cannot be opened, fewer workers run.
    let mut extra = Vec::new();
    let workers = context.parallelism.clamp(1, queue.len().max(1));
    for _ in 1..workers {
        match postgres.another("apply").await {
            Ok(session) => extra.push(session),
            Err(_) => break,
        }
    }

    let shared = Shared {
        chroma,
        plan,
        observed,
        context,
        queue: &queue,
        next: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(usize, TenantOutcome)>();
    let all_workers = futures_util::future::join_all(
        std::iter::once(postgres)
            .chain(extra.iter_mut())
            .map(|session| worker(session, &shared, sender.clone())),
    );
    drop(sender);
    let collect = async {
        while let Some((index, outcome)) = receiver.recv().await {
            let change = &plan.changes[index];
            let result = TenantResult {
                tenant: change.tenant.clone(),
                actions: change.actions.clone(),
                outcome,
            };
            progress(&result);
            finished.push((index, result));
        }
    };
    tokio::join!(all_workers, collect);

    finished.sort_by_key(|(index, _)| *index);
    ApplyReport {
        run_id: Some(context.run_id),
        migrated: Vec::new(),
        tenants: finished.into_iter().map(|(_, result)| result).collect(),
        not_started: queue.len() - shared.started.load(Ordering::SeqCst),
    }
}

/// What the workers of one `execute` share.
struct Shared<'a> {
    chroma: &'a ChromaClient,
    plan: &'a Plan,
    observed: &'a ObservedState,
    context: &'a RunContext,
    /// Indexes into `plan.changes` of the tenants to apply, in plan order.
    queue: &'a [usize],
    /// Next position in `queue` to take.
    next: std::sync::atomic::AtomicUsize,
    /// Tenants taken so far (the rest is reported as not started after a stop).
    started: std::sync::atomic::AtomicUsize,
}

/// Takes tenants from the queue and applies them on `session` until the queue is empty or the
/// run is asked to stop.
async fn worker(
    session: &mut Postgres,
    shared: &Shared<'_>,
    sender: tokio::sync::mpsc::UnboundedSender<(usize, TenantOutcome)>,
) {
    use std::sync::atomic::Ordering;
    loop {
        if shared.context.stop.load(Ordering::SeqCst) {
            break;
        }
        let position = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some(&index) = shared.queue.get(position) else {
            break;
        };
        shared.started.fetch_add(1, Ordering::SeqCst);
        let outcome = apply_change(
            session,
            shared.chroma,
            &shared.plan.changes[index],
            shared.observed,
            shared.context,
        )
        .await;
        let _ = sender.send((index, outcome));
    }
}

/// Reads the live state and plans against it, measuring what destructive changes put at risk.
///
/// # Errors
/// A backend failed; nothing was changed.
pub async fn observe_and_plan(
    postgres: &Postgres,
    chroma: &ChromaClient,
    desired: &crate::spec::DesiredState,
    options: &crate::plan::PlanOptions,
    backup_root: &std::path::Path,
) -> Result<(ObservedState, Plan), BackendError> {
    let observed = crate::backend::observe(postgres, chroma, &options.naming).await?;
    let mut plan = crate::plan::diff(desired, &observed, options);
    crate::backend::measure_at_risk(
        &mut plan,
        &observed,
        postgres,
        chroma,
        &options.naming,
        backup_root,
    )
    .await?;
    Ok((observed, plan))
}

/// Carries out an approved plan: migrates the control schema, records a saved plan's id,
/// prepares the Chroma database, then executes tenant by tenant. The caller holds the apply
/// lock and has checked that the plan has no refusals.
///
/// # Errors
/// The migration, the plan record or the Chroma set-up failed: no tenant was touched.
/// Failures of single tenants are in the report, not errors.
pub async fn run(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    plan: &Plan,
    observed: &ObservedState,
    context: &RunContext,
    saved_plan: Option<Uuid>,
    progress: impl FnMut(&TenantResult),
) -> Result<ApplyReport, BackendError> {
    let migrated = postgres.migrate().await?;
    if let Some(id) = saved_plan {
        postgres::record_plan(&postgres.client, id, context.run_id, &context.actor).await?;
    }
    chroma.ensure_scope().await?;
    let mut report = execute(postgres, chroma, plan, observed, context, progress).await;
    report.migrated = migrated;
    Ok(report)
}

/// One tenant, atomically.
async fn apply_change(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    change: &TenantChange,
    observed: &ObservedState,
    context: &RunContext,
) -> TenantOutcome {
    let mut compensations = Vec::new();
    let result = run_steps(
        postgres,
        chroma,
        change,
        observed,
        context,
        &mut compensations,
    )
    .await;
    match result {
        Ok(()) => TenantOutcome::Applied,
        Err(error) => {
            // The transaction was dropped inside run_steps, which rolls it back; now take back
            // what Chroma did, newest first.
            let mut undone = Vec::new();
            let mut undo_failed = Vec::new();
            for compensation in compensations.iter().rev() {
                match compensation.run(chroma).await {
                    Ok(()) => undone.push(compensation.done()),
                    Err(undo_error) => undo_failed.push(format!(
                        "could not {}: {undo_error}; the next plan shows what is left",
                        compensation.describe()
                    )),
                }
            }
            TenantOutcome::RolledBack {
                reason: error.to_string(),
                undone,
                undo_failed,
            }
        }
    }
}

async fn run_steps(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    change: &TenantChange,
    observed: &ObservedState,
    context: &RunContext,
    compensations: &mut Vec<Compensation>,
) -> Result<(), BackendError> {
    let tenant = change.tenant.as_str();
    // A soft delete exports several tables: REPEATABLE READ makes every COPY read the same
    // snapshot, so the backup is consistent across tables.
    let isolation = if change
        .steps
        .iter()
        .any(|step| matches!(step, Step::ExportBackup { .. }))
    {
        tokio_postgres::IsolationLevel::RepeatableRead
    } else {
        tokio_postgres::IsolationLevel::ReadCommitted
    };
    let transaction = postgres
        .client
        .build_transaction()
        .isolation_level(isolation)
        .start()
        .await
        .map_err(|error| PostgresError::Query {
            operation: format!("begin the transaction of `{tenant}`"),
            error,
        })?;
    let mut uid = change.uid;
    // Steps run in plan order: PostgreSQL statements, the registry write and the backup inside
    // the transaction, then Chroma, then (purge only) the backups, then commit.
    // Consecutive DDL steps go to the server as one batch: one round trip instead of one per
    // statement. The batch is sent before any step that is not plain SQL.
    let mut batch: Vec<(String, &Step)> = Vec::new();
    for step in &change.steps {
        if let Some(sql) = postgres::step_sql(step)? {
            batch.push((sql, step));
            continue;
        }
        flush_ddl(&transaction, tenant, &mut batch).await?;
        match step {
            Step::InsertRegistry => {
                let record = change.record.as_ref().expect("insert carries a record");
                uid = Some(postgres::insert_registry(&transaction, tenant, record).await?);
            }
            Step::UpdateRegistry => {
                let record = change.record.as_ref().expect("update carries a record");
                postgres::update_registry(&transaction, tenant, record).await?;
            }
            Step::SoftDeleteRegistry { retention_days } => {
                postgres::soft_delete_registry(&transaction, tenant, *retention_days).await?;
            }
            Step::DeleteRegistry => {
                let uid = uid.expect("a purged tenant has a uid");
                postgres::delete_registry(&transaction, tenant, uid).await?;
            }
            Step::ExportBackup {
                schema,
                tables,
                collection,
            } => {
                let uid = uid.expect("a deleted tenant has a uid");
                let collection = collection.as_ref().and_then(|name| {
                    observed
                        .collections
                        .get(name)
                        .map(|live| (name.as_str(), live.id.as_str()))
                });
                let written = crate::backup::export(
                    &transaction,
                    chroma,
                    &crate::backup::ExportRequest {
                        root: &context.backup_root,
                        tenant,
                        uid,
                        schema,
                        tables,
                        collection,
                        taken_at: observed.server_time,
                    },
                )
                .await?;
                compensations.push(Compensation::RemoveBackup { dir: written.dir });
            }
            Step::DeleteBackups => {
                let uid = uid.expect("a purged tenant has a uid");
                crate::backup::delete_all(&context.backup_root, tenant, uid)?;
            }
            Step::CreateCollection { collection } => {
                let uid = uid.ok_or_else(|| {
                    PostgresError::Unexpected(format!("tenant `{tenant}` has no uid yet"))
                })?;
                // Registered before the call: if the answer is lost, the collection may exist
                // anyway, and the compensation checks the uid before deleting.
                compensations.push(Compensation::DeleteCreatedCollection {
                    name: collection.clone(),
                    uid,
                });
                chroma
                    .create_collection(collection, &collection_metadata(tenant, uid))
                    .await?;
            }
            Step::UpdateCollectionMetadata { collection, id } => {
                let uid = uid.ok_or_else(|| {
                    PostgresError::Unexpected(format!("tenant `{tenant}` has no uid yet"))
                })?;
                let previous = observed
                    .collections
                    .get(collection)
                    .map(|live| live.metadata.clone())
                    .unwrap_or_default();
                chroma
                    .update_metadata(id, &collection_metadata(tenant, uid))
                    .await?;
                if !previous.is_empty() {
                    compensations.push(Compensation::RestoreMetadata {
                        name: collection.clone(),
                        id: id.clone(),
                        previous,
                    });
                }
            }
            Step::DeleteCollection { collection } => {
                // Not undoable: the planner puts it after every step that can fail and roll
                // back, so a failure before it leaves the tenant soft-deleted and intact.
                chroma.delete_collection(collection).await?;
            }
            _ => unreachable!("SQL steps are batched above"),
        }
    }
    flush_ddl(&transaction, tenant, &mut batch).await?;

    let changes = json!({
        "fields": change.fields,
        "drift": change.drift,
        "steps": change.steps,
    });
    let action = change
        .actions
        .iter()
        .map(|action| action.verb())
        .collect::<Vec<_>>()
        .join(",");
    postgres::insert_event(
        &transaction,
        &Event {
            run_id: context.run_id,
            actor: &context.actor,
            tenant,
            uid,
            action: &action,
            status_before: change.status_before,
            status_after: change.status_after,
            reason: change.reason.as_deref(),
            changes,
        },
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|error| PostgresError::Query {
            operation: format!("commit the transaction of `{tenant}`"),
            error,
        })?;
    Ok(())
}

/// Sends the batched DDL steps in one round trip; an error names every step of the batch.
async fn flush_ddl(
    transaction: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    batch: &mut Vec<(String, &Step)>,
) -> Result<(), BackendError> {
    if batch.is_empty() {
        return Ok(());
    }
    let sql: String = batch.iter().map(|(sql, _)| sql.as_str()).collect();
    let labels: Vec<String> = batch.iter().map(|(_, step)| step_label(step)).collect();
    batch.clear();
    transaction
        .batch_execute(&sql)
        .await
        .map_err(|error| PostgresError::Query {
            operation: format!("{} for `{tenant}`", labels.join(", ")),
            error,
        })?;
    Ok(())
}

/// Short description of a step for error messages.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::CreateSchema { schema } => format!("create schema `{schema}`"),
        Step::CreateTable { schema, table } => format!("create table `{schema}.{table}`"),
        Step::AddColumn {
            schema,
            table,
            column,
        } => format!("add column `{column}` to `{schema}.{table}`"),
        Step::CreateRole { role } => format!("create role `{role}`"),
        Step::DisableRoleLogin { role } => format!("disable login of role `{role}`"),
        Step::RevokeSchemaFromPublic { schema } => {
            format!("revoke PUBLIC privileges on schema `{schema}`")
        }
        Step::RevokeTableFromPublic { schema, table } => {
            format!("revoke PUBLIC privileges on table `{schema}.{table}`")
        }
        Step::GrantSchemaUsage { schema, role } => {
            format!("grant usage on schema `{schema}` to `{role}`")
        }
        Step::RevokeSchemaUsage { schema, role } => {
            format!("revoke access to schema `{schema}` from `{role}`")
        }
        Step::GrantTablePrivileges {
            schema,
            table,
            role,
        } => format!("grant table privileges on `{schema}.{table}` to `{role}`"),
        Step::InsertRegistry => "insert the registry row".to_string(),
        Step::UpdateRegistry => "update the registry row".to_string(),
        Step::CreateCollection { collection } => format!("create collection `{collection}`"),
        Step::UpdateCollectionMetadata { collection, .. } => {
            format!("update the metadata of collection `{collection}`")
        }
        Step::SoftDeleteRegistry { .. } => "mark the registry row deleted".to_string(),
        Step::DeleteRegistry => "delete the registry row".to_string(),
        Step::ExportBackup { .. } => "write the final backup".to_string(),
        Step::DeleteBackups => "delete the backups".to_string(),
        Step::DropSchema { schema } => format!("drop schema `{schema}`"),
        Step::DropRole { role } => format!("drop role `{role}`"),
        Step::DeleteCollection { collection } => format!("delete collection `{collection}`"),
    }
}
