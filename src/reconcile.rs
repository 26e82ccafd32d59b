//! Orchestration above the back ends and the backup store: the whole live state, the plan
//! made from it with what destructive changes put at risk, and the one lock -> plan ->
//! refusals -> apply -> unlock operation that `apply` and `watch` share.

use crate::apply::{self, RunContext, RunError};
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{registry, Postgres};
use crate::observed::{LiveStatus, ObservedState};
use crate::plan::{Action, DataAtRisk, Naming, Plan, PlanOptions};
use crate::report::ApplyReport;
use crate::spec::DesiredState;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeSet, HashMap};
use uuid::Uuid;

/// Reads everything the planner compares: both servers ([`crate::backend::observe`]), the
/// backup folders, and the few facts only needed for some tenants (interrupted creates behind
/// a collection no registry row holds, backups a soft delete recorded, records in a collection
/// that might be adopted), each in one more query or a handful of requests at most.
///
/// # Errors
/// A server or the backup folder failed; nothing was changed.
pub async fn observe(
    postgres: &Postgres,
    chroma: &ChromaClient,
    naming: &Naming,
    backups: &crate::backup::BackupStore,
    desired: &DesiredState,
) -> Result<ObservedState, RunError> {
    let migrations = &desired.migrations;
    let app_role = desired.settings.auth.app_role.as_deref();
    // The reference is built in a transaction of a session of its own, while the live state
    // is read; without a second session (max_connections reached), on this one afterwards.
    let (observed, built) = tokio::join!(
        crate::backend::observe(postgres, chroma, naming, app_role),
        async {
            let builder = postgres.another().await.ok()?;
            Some(builder.build_reference(migrations).await)
        }
    );
    let mut observed = observed?;
    // Not when the files break the history already applied: the plan refuses that anyway, and
    // "this file was changed after it was applied" says more than the error its new text may
    // meet on an empty schema.
    if crate::plan::fleet_refusals(migrations, observed.history.as_ref()).is_empty() {
        let reference = match built {
            Some(built) => built?,
            None => postgres.build_reference(migrations).await?,
        };
        observed.reference = Some(reference);
    }
    observed.backups = backups.inventory().await?;
    if observed.control_schema_version.unwrap_or(0) >= 7 {
        observed.last_migration_run = registry::last_migration_run(&postgres.client).await?;
    }
    if observed.control_schema_version.unwrap_or(0) >= 8 {
        observed.online_progress = registry::online_progress_all(&postgres.client).await?;
    }

    // Collections marked as a tenant's whose uid no registry row holds: left by an
    // interrupted create of this registry, or someone else's.
    let registry_uids: BTreeSet<String> = observed
        .registry
        .values()
        .map(|row| row.uid.to_string())
        .collect();
    let candidates: Vec<(String, Uuid)> = observed
        .collections
        .iter()
        .filter(|(name, collection)| {
            collection
                .metadata_str("tenant_id")
                .is_some_and(|id| **name == naming.collection(id))
                && collection
                    .metadata_str("tenant_uid")
                    .is_some_and(|uid| !registry_uids.contains(uid))
        })
        .filter_map(|(name, collection)| {
            let uid = collection.metadata_str("tenant_uid")?.parse().ok()?;
            Some((name.clone(), uid))
        })
        .collect();
    if observed.control_schema_version.unwrap_or(0) >= 1 {
        let uids: Vec<Uuid> = candidates.iter().map(|(_, uid)| *uid).collect();
        for (tenant, uid) in registry::interrupted_creates(&postgres.client, &uids).await? {
            observed.interrupted_creates.insert(uid, tenant);
        }
        let backed_up: Vec<Uuid> = observed
            .backups
            .iter()
            .filter(|backup| !backup.partial)
            .filter(|backup| {
                observed
                    .registry
                    .get(&backup.tenant)
                    .is_some_and(|row| row.uid == backup.uid && row.status != LiveStatus::Deleted)
            })
            .map(|backup| backup.uid)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let recorded: BTreeSet<(Uuid, String)> =
            registry::recorded_backups(&postgres.client, &backed_up)
                .await?
                .into_iter()
                .collect();
        for backup in &mut observed.backups {
            backup.recorded = recorded.contains(&(backup.uid, backup.folder.clone()));
        }
    }
    // Only a collection that might be adopted is counted: one request each, a few at once.
    let to_count: Vec<(String, String)> = candidates
        .iter()
        .filter(|(_, uid)| observed.interrupted_creates.contains_key(uid))
        .filter_map(|(name, _)| {
            observed
                .collections
                .get(name)
                .map(|collection| (name.clone(), collection.id.clone()))
        })
        .collect();
    let counts: Vec<(String, u64)> =
        futures_util::stream::iter(to_count.into_iter().map(|(name, id)| async move {
            chroma.count_records(&id).await.map(|count| (name, count))
        }))
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (name, count) in counts {
        if let Some(collection) = observed.collections.get_mut(&name) {
            collection.records = Some(count);
        }
    }
    Ok(observed)
}

/// Reads the live state and plans against it, measuring what destructive changes put at risk.
///
/// # Errors
/// A server or the backup folder failed; nothing was changed.
pub async fn observe_and_plan(
    postgres: &Postgres,
    chroma: &ChromaClient,
    desired: &DesiredState,
    options: &PlanOptions,
    backups: &crate::backup::BackupStore,
) -> Result<(ObservedState, Plan), RunError> {
    let observed = observe(postgres, chroma, &options.naming, backups, desired).await?;
    let mut plan = crate::plan::diff(desired, &observed, options);
    measure_at_risk(
        &mut plan,
        &observed,
        postgres,
        chroma,
        &options.naming,
        backups,
    )
    .await?;
    Ok((observed, plan))
}

/// Measures what each delete and purge of `plan` puts at risk: exact rows in the tenant's
/// tables (one query per 500 tables) and, for purges, the records in its collection (one
/// request per collection, while PostgreSQL counts) and the backups on disk. Only destructive
/// changes pay for this.
///
/// # Errors
/// A server failed while counting; the plan itself is unchanged.
pub async fn measure_at_risk(
    plan: &mut Plan,
    observed: &ObservedState,
    postgres: &Postgres,
    chroma: &ChromaClient,
    naming: &Naming,
    backups: &crate::backup::BackupStore,
) -> Result<(), RunError> {
    // Soft deletes and purges put every table at risk; a migration that drops or rewrites
    // data, the tables it names.
    let at_risk: Vec<(usize, Option<Vec<String>>)> = plan
        .changes
        .iter()
        .enumerate()
        .filter_map(|(index, change)| {
            if change.blocked {
                return None;
            }
            if change.actions.iter().any(|action| action.is_destructive()) {
                return Some((index, None));
            }
            let tables = plan.destructive_tables(change);
            (!tables.is_empty()).then_some((index, Some(tables)))
        })
        .collect();
    if at_risk.is_empty() {
        return Ok(());
    }
    let mut tables = Vec::new();
    let mut owners = Vec::new();
    for (index, only) in &at_risk {
        let schema = naming.schema(&plan.changes[*index].tenant);
        if let Some(live) = observed.schemas.get(&schema) {
            for table in live.tables.keys() {
                if only.as_ref().is_none_or(|only| only.contains(table)) {
                    tables.push((schema.clone(), table.clone()));
                    owners.push(*index);
                }
            }
        }
    }
    // Chroma has no batch count: one request per collection, a few in flight at once, each
    // several milliseconds of the server's time, which it spends one after the other (about
    // 30 ms in a database of 10,000 collections). So only purges, which destroy the records,
    // count them; a soft delete keeps them in its backup, which counts what it wrote.
    let collections: Vec<(usize, String)> = at_risk
        .iter()
        .map(|(index, _)| *index)
        .filter(|&index| plan.changes[index].actions.contains(&Action::Purge))
        .filter_map(|index| {
            observed
                .collections
                .get(&naming.collection(&plan.changes[index].tenant))
                .map(|collection| (index, collection.id.clone()))
        })
        .collect();
    let records =
        futures_util::stream::iter(collections.into_iter().map(|(index, id)| async move {
            chroma.count_records(&id).await.map(|count| (index, count))
        }))
        .buffer_unordered(8)
        .try_collect::<HashMap<usize, u64>>();
    // The two servers count at the same time.
    let (counts, records) =
        futures_util::join!(registry::count_rows(&postgres.client, &tables), records);
    let (counts, records) = (counts?, records?);
    let mut rows: HashMap<usize, u64> = HashMap::new();
    for (owner, count) in owners.iter().zip(&counts) {
        *rows.entry(*owner).or_default() += u64::try_from(*count).unwrap_or(0);
    }
    // What each purge deletes of the backups: one listing per tenant in an object store, so
    // a few at once, like the record counts.
    let usages = futures_util::stream::iter(
        at_risk
            .iter()
            .map(|&(index, _)| &plan.changes[index])
            .filter(|change| change.actions.contains(&Action::Purge))
            .filter_map(|change| Some((change.tenant.clone(), change.uid?)))
            .map(|(tenant, uid)| async move {
                backups
                    .usage(&tenant, uid)
                    .await
                    .map(|usage| (tenant, usage))
            }),
    )
    .buffer_unordered(8)
    .try_collect::<HashMap<String, crate::backup::BackupUsage>>()
    .await?;
    for &(index, _) in &at_risk {
        let change = &plan.changes[index];
        let mut risk = DataAtRisk::default();
        if observed
            .schemas
            .contains_key(&naming.schema(&change.tenant))
        {
            risk.rows = Some(rows.get(&index).copied().unwrap_or(0));
        }
        risk.records = records.get(&index).copied();
        if let Some(usage) = usages.get(&change.tenant) {
            risk.backup_files = usage.files;
            risk.backup_bytes = usage.bytes;
        }
        plan.changes[index].at_risk = Some(risk);
    }
    Ok(())
}

/// How a [`locked_apply`] ended.
pub enum Applied {
    /// A safety rule refused the plan: nothing was changed.
    Refused { plan: Plan },
    /// The plan has nothing to do (conflicts aside).
    NothingToDo { plan: Plan },
    /// The plan was carried out (perhaps partly: see the report).
    Done { plan: Plan, report: ApplyReport },
    /// The check or the review said no (a stale saved plan is a
    /// [`crate::saved::StaleReason`]): nothing was changed.
    Declined { error: anyhow::Error },
}

/// What [`locked_apply`] needs besides the servers and the callbacks.
pub struct LockedApply<'a> {
    pub desired: &'a DesiredState,
    pub options: &'a PlanOptions,
    pub backups: &'a crate::backup::BackupStore,
    pub lock_timeout: std::time::Duration,
    pub context: &'a RunContext,
    /// Id of a saved plan being applied: refused if it was applied before, recorded before the
    /// first change.
    pub saved_id: Option<Uuid>,
}

/// The one lock -> plan -> check -> review -> refusals -> apply -> unlock operation of `apply`
/// and `watch --apply`. Everything between taking and releasing the lock happens in one inner
/// block whose result is kept, so the lock is released on every path exactly once (a session
/// that is gone released it already).
///
/// `check` sees the fresh plan under the lock (a saved plan compares itself with it, `--tenant`
/// checks its ids); `review` sees every plan that passed it (it prints the plan, and asks for
/// approval when the plan has work and no refusal); `progress` sees each tenant's result.
///
/// # Errors
/// The lock could not be taken, or a server failed before any tenant was touched.
pub async fn locked_apply(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    request: LockedApply<'_>,
    check: impl FnOnce(&ObservedState, &Plan) -> anyhow::Result<()>,
    review: impl FnOnce(&Plan) -> anyhow::Result<()>,
    progress: impl FnMut(apply::Update<'_>),
) -> Result<Applied, RunError> {
    postgres.lock(request.lock_timeout).await?;
    let result = async {
        if let Some(id) = request.saved_id {
            if let Some(at) = registry::plan_applied(&postgres.client, id).await? {
                return Ok(Applied::Declined {
                    error: crate::saved::StaleReason::AlreadyApplied(
                        at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                    )
                    .into(),
                });
            }
        }
        let (observed, plan) = observe_and_plan(
            postgres,
            chroma,
            request.desired,
            request.options,
            request.backups,
        )
        .await?;
        if let Err(error) = check(&observed, &plan) {
            return Ok(Applied::Declined { error });
        }
        if plan.generates_secrets() && request.context.secrets.is_none() {
            return Ok(Applied::Declined {
                error: anyhow::anyhow!(
                    "this plan generates passwords or API keys and there is no secrets sink to deliver them to; nothing was changed\n  hint: pass `--secrets-dir DIR` (a 0700 folder of one JSON file per tenant) or `--secrets-command CMD` (gets each tenant's secrets as JSON on standard input)"
                ),
            });
        }
        if let Err(error) = review(&plan) {
            return Ok(Applied::Declined { error });
        }
        if !plan.refusals.is_empty() {
            return Ok(Applied::Refused { plan });
        }
        if plan.is_empty() {
            return Ok(Applied::NothingToDo { plan });
        }
        let report = apply::run(
            postgres,
            chroma,
            &plan,
            &observed,
            request.context,
            request.saved_id,
            progress,
        )
        .await?;
        Ok::<_, RunError>(Applied::Done { plan, report })
    }
    .await;
    let unlocked = postgres.unlock().await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}
