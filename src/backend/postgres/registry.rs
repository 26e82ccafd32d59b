//! Rows of the control schema: the registry, audit events, applied saved plans, and the row
//! counts a destructive change puts at risk. Every value is a bound parameter.

use super::{query_error, quote_ident, PostgresError};
use crate::observed::LiveStatus;
use crate::plan::RegistryRecord;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::{Client, GenericClient, Statement, ToStatement};
use uuid::Uuid;

/// Inserts a registry row with the uid apply chose for this incarnation (chosen before the
/// transaction, so that an interrupted create can be recognized by it).
/// The statement of [`insert_registry`] (prepare it once per session, or pass it as text).
pub const INSERT_REGISTRY: &str = "INSERT INTO tenantctl.tenants \
     (id, uid, name, status, plan, config, protected, retention_days, suspend_reason, activated_at, suspended_at) \
     VALUES ($1, $9, $2, $3, $4, $5, $6, $7, $8, \
             CASE WHEN $3 = 'active' THEN now() END, CASE WHEN $3 = 'suspended' THEN now() END)";

pub async fn insert_registry<S>(
    client: &impl GenericClient,
    statement: &S,
    tenant: &str,
    uid: Uuid,
    record: &RegistryRecord,
) -> Result<(), PostgresError>
where
    S: ?Sized + ToStatement + Sync + Send,
{
    let config = serde_json::to_value(&record.config).expect("config serializes");
    let retention = retention(record.retention_days)?;
    client
        .execute(
            statement,
            &[
                &tenant,
                &record.name,
                &record.status.as_str(),
                &record.plan,
                &config,
                &record.protected,
                &retention,
                &record.suspension_reason,
                &uid,
            ],
        )
        .await
        .map_err(query_error(format!(
            "insert the registry row of `{tenant}`"
        )))?;
    Ok(())
}

/// Retention as the registry stores it; validation bounds it to 0-3650 days, this keeps an
/// out-of-range value (a hand-edited plan, say) from wrapping.
fn retention(days: u32) -> Result<i32, PostgresError> {
    i32::try_from(days)
        .ok()
        .filter(|_| days <= crate::spec::MAX_RETENTION_DAYS)
        .ok_or_else(|| {
            PostgresError::Unexpected(format!("retention of {days} days is out of range"))
        })
}

/// Updates a registry row to `record`, stamping the transition times of a status change with
/// the server's clock; `purge_after` is `deleted_at` plus the record's retention period.
/// The statement of [`update_registry`].
pub const UPDATE_REGISTRY: &str = "UPDATE tenantctl.tenants SET \
     name = $2, status = $3, plan = $4, config = $5, protected = $6, \
     retention_days = $7, suspend_reason = $8, updated_at = now(), \
     activated_at = CASE WHEN $3 = 'active' AND status <> 'active' THEN now() ELSE activated_at END, \
     suspended_at = CASE WHEN $3 = 'suspended' AND status <> 'suspended' THEN now() \
                         WHEN $3 = 'suspended' THEN suspended_at END, \
     deleted_at = CASE WHEN $3 = 'deleted' AND status <> 'deleted' THEN now() \
                       WHEN $3 = 'deleted' THEN deleted_at END, \
     purge_after = CASE WHEN $3 = 'deleted' THEN \
                       coalesce(CASE WHEN status = 'deleted' THEN deleted_at END, now()) \
                       + make_interval(days => $7) END \
     WHERE id = $1";

pub async fn update_registry<S>(
    client: &impl GenericClient,
    statement: &S,
    tenant: &str,
    record: &RegistryRecord,
) -> Result<(), PostgresError>
where
    S: ?Sized + ToStatement + Sync + Send,
{
    let config = serde_json::to_value(&record.config).expect("config serializes");
    let retention = retention(record.retention_days)?;
    let updated = client
        .execute(
            statement,
            &[
                &tenant,
                &record.name,
                &record.status.as_str(),
                &record.plan,
                &config,
                &record.protected,
                &retention,
                &record.suspension_reason,
            ],
        )
        .await
        .map_err(query_error(format!(
            "update the registry row of `{tenant}`"
        )))?;
    if updated != 1 {
        return Err(PostgresError::Unexpected(format!(
            "the registry row of `{tenant}` disappeared during the apply"
        )));
    }
    Ok(())
}

/// Marks a registry row soft-deleted, keeping its other fields; `purge_after` is the server's
/// `now()` plus `retention_days`.
pub async fn soft_delete_registry(
    client: &impl GenericClient,
    tenant: &str,
    retention_days: u32,
) -> Result<(), PostgresError> {
    let retention = retention(retention_days)?;
    let updated = client
        .execute(
            "UPDATE tenantctl.tenants SET status = 'deleted', suspend_reason = NULL, \
                 retention_days = $2, updated_at = now(), deleted_at = now(), \
                 purge_after = now() + make_interval(days => $2) \
             WHERE id = $1 AND status <> 'deleted'",
            &[&tenant, &retention],
        )
        .await
        .map_err(query_error(format!(
            "soft-delete the registry row of `{tenant}`"
        )))?;
    if updated != 1 {
        return Err(PostgresError::Unexpected(format!(
            "the registry row of `{tenant}` changed during the apply"
        )));
    }
    Ok(())
}

/// Removes a purged tenant's registry row. Checks the purge is due by the server's clock once
/// more, inside the transaction: a row whose `purge_after` moved is never deleted.
pub async fn delete_registry(
    client: &impl GenericClient,
    tenant: &str,
    uid: Uuid,
) -> Result<(), PostgresError> {
    let deleted = client
        .execute(
            "DELETE FROM tenantctl.tenants \
             WHERE id = $1 AND uid = $2 AND status = 'deleted' AND purge_after <= now()",
            &[&tenant, &uid],
        )
        .await
        .map_err(query_error(format!(
            "delete the registry row of `{tenant}`"
        )))?;
    if deleted != 1 {
        return Err(PostgresError::Unexpected(format!(
            "the registry row of `{tenant}` is no longer due for purge"
        )));
    }
    Ok(())
}

/// Tables counted by one statement of [`count_rows`]. A `UNION ALL` of 10,000 branches
/// exceeds the server's `max_stack_depth` (2 MB by default) while it is parsed; 500 stays far
/// below it and still amortises the round trip.
const COUNT_CHUNK: usize = 500;

/// How long counting the rows at risk may wait for a table an application holds locked, and
/// run in all: an `ACCESS EXCLUSIVE` lock on one tenant table must fail the plan with an
/// error, not stall it.
const COUNT_LOCK_TIMEOUT: &str = "10s";
const COUNT_STATEMENT_TIMEOUT: &str = "5min";

/// Exact row counts of tenant tables (`(schema, table)`), in the order given: one statement
/// per [`COUNT_CHUNK`] tables, all sent at once (pipelined on the one session), in a read-only
/// transaction bounded by [`COUNT_LOCK_TIMEOUT`] and [`COUNT_STATEMENT_TIMEOUT`]; the client
/// waits at most the statement bound and 5 s more (a stopped backend enforces nothing).
pub async fn count_rows(
    client: &Client,
    tables: &[(String, String)],
) -> Result<Vec<i64>, PostgresError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut statements = Vec::new();
    for chunk in tables.chunks(COUNT_CHUNK) {
        let mut parts = Vec::with_capacity(chunk.len());
        for (index, (schema, table)) in chunk.iter().enumerate() {
            parts.push(format!(
                "SELECT {index} AS i, count(*) AS n FROM {}.{}",
                quote_ident(schema)?,
                quote_ident(table)?
            ));
        }
        statements.push(format!("{} ORDER BY i", parts.join(" UNION ALL ")));
    }
    let counted = async {
        client
            .batch_execute(&format!(
                "BEGIN READ ONLY; SET LOCAL lock_timeout = '{COUNT_LOCK_TIMEOUT}'; \
                 SET LOCAL statement_timeout = '{COUNT_STATEMENT_TIMEOUT}'"
            ))
            .await?;
        let answers = futures_util::future::try_join_all(
            statements.iter().map(|sql| client.query(sql.as_str(), &[])),
        )
        .await;
        // Ends the transaction whatever the answers were.
        let ended = client
            .batch_execute(if answers.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            })
            .await;
        let answers = answers?;
        ended?;
        Ok(answers)
    };
    let waited = Duration::from_secs(5 * 60 + 5);
    let answers = match tokio::time::timeout(waited, counted).await {
        Ok(answers) => answers.map_err(query_error("count the rows at risk"))?,
        Err(_) => {
            return Err(PostgresError::Timeout {
                operation: "count the rows at risk".to_string(),
                waited,
            })
        }
    };
    Ok(answers
        .iter()
        .flatten()
        .map(|row| row.get::<_, i64>(1))
        .collect())
}

/// When a saved plan was applied, if it was.
pub async fn plan_applied(
    client: &impl GenericClient,
    plan_id: Uuid,
) -> Result<Option<DateTime<Utc>>, PostgresError> {
    let exists = client
        .query_one(
            "SELECT to_regclass('tenantctl.applied_plans') IS NOT NULL",
            &[],
        )
        .await
        .map_err(query_error("look for applied plans"))?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT applied_at FROM tenantctl.applied_plans WHERE plan_id = $1",
            &[&plan_id],
        )
        .await
        .map_err(query_error("look for applied plans"))?;
    Ok(row.map(|row| row.get(0)))
}

/// Records that a saved plan is being applied. Fails if it already was (primary key).
pub async fn record_plan(
    client: &impl GenericClient,
    plan_id: Uuid,
    run_id: Uuid,
    actor: &str,
) -> Result<(), PostgresError> {
    client
        .execute(
            "INSERT INTO tenantctl.applied_plans (plan_id, run_id, actor) VALUES ($1, $2, $3)",
            &[&plan_id, &run_id, &actor],
        )
        .await
        .map_err(query_error("record the saved plan as applied"))?;
    Ok(())
}

/// One audit event.
pub struct Event<'a> {
    pub run_id: Uuid,
    pub actor: &'a str,
    pub tenant: &'a str,
    pub uid: Option<Uuid>,
    pub action: &'a str,
    pub status_before: Option<LiveStatus>,
    pub status_after: Option<LiveStatus>,
    pub reason: Option<&'a str>,
    pub changes: serde_json::Value,
}

/// The statement of [`insert_event`], prepared once per session.
pub const INSERT_EVENT: &str = "INSERT INTO tenantctl.events \
     (run_id, actor, tenant_id, tenant_uid, action, status_before, status_after, reason, changes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Appends an event; inside the tenant's transaction, so it exists iff the change committed.
pub async fn insert_event(
    client: &impl GenericClient,
    statement: &Statement,
    event: &Event<'_>,
) -> Result<(), PostgresError> {
    client
        .execute(
            statement,
            &[
                &event.run_id,
                &event.actor,
                &event.tenant,
                &event.uid,
                &event.action,
                &event.status_before.map(LiveStatus::as_str),
                &event.status_after.map(LiveStatus::as_str),
                &event.reason,
                &event.changes,
            ],
        )
        .await
        .map_err(query_error(format!(
            "record the event of `{}`",
            event.tenant
        )))?;
    Ok(())
}

/// Event action of [`record_create_started`].
pub const CREATE_STARTED: &str = "create_started";

/// Records, in its own statement and before the tenant's transaction begins, that a create of
/// `tenant` with `uid` is starting. If the create never commits (rolled back with a Chroma
/// compensation that failed, or the process killed), this event is how a later plan knows
/// that a collection carrying this uid was left by this registry, and may be adopted.
/// The statement of [`record_create_started`].
pub const RECORD_CREATE_STARTED: &str =
    "INSERT INTO tenantctl.events (run_id, actor, tenant_id, tenant_uid, action) \
     VALUES ($1, $2, $3, $4, $5)";

pub async fn record_create_started<S>(
    client: &impl GenericClient,
    statement: &S,
    run_id: &Uuid,
    actor: &str,
    tenant: &str,
    uid: Uuid,
) -> Result<(), PostgresError>
where
    S: ?Sized + ToStatement + Sync + Send,
{
    client
        .execute(statement, &[run_id, &actor, &tenant, &uid, &CREATE_STARTED])
        .await
        .map_err(query_error(format!(
            "record the start of the create of `{tenant}`"
        )))?;
    Ok(())
}

/// Of `uids`, those recorded as [`CREATE_STARTED`] whose create never committed (no other
/// event carries the uid): what an interrupted create of this registry left.
pub async fn interrupted_creates(
    client: &impl GenericClient,
    uids: &[Uuid],
) -> Result<Vec<(String, Uuid)>, PostgresError> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT DISTINCT s.tenant_id, s.tenant_uid FROM tenantctl.events s \
             WHERE s.action = $2 AND s.tenant_uid = ANY($1) \
               AND NOT EXISTS (SELECT 1 FROM tenantctl.events e \
                               WHERE e.tenant_uid = s.tenant_uid AND e.action <> $2)",
            &[&uids, &CREATE_STARTED],
        )
        .await
        .map_err(query_error("look for interrupted creates"))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The backup folders that committed soft deletes of these incarnations recorded: `(uid,
/// folder name)`.
pub async fn recorded_backups(
    client: &impl GenericClient,
    uids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, PostgresError> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT tenant_uid, changes->>'backup' FROM tenantctl.events \
             WHERE tenant_uid = ANY($1) AND changes ? 'backup'",
            &[&uids],
        )
        .await
        .map_err(query_error("read the backups recorded by soft deletes"))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The statement of [`record_migrations`], prepared once per session. In the same statement,
/// and so in the same transaction: the progress of the no-transaction migrations recorded goes
/// (`migration_statements`), and, when these are the tenant's last migrations of the run
/// (`$7`), the tenant is marked `applied` in the run's state (`migration_runs`): the mark
/// commits with the migrations.
pub const RECORD_MIGRATIONS: &str = "WITH recorded AS ( \
         INSERT INTO tenantctl.tenant_migrations \
             (tenant_uid, version, name, checksum, run_id, schema_fingerprint) \
         SELECT $1, version, name, checksum, $5, $6 \
         FROM unnest($2::integer[], $3::text[], $4::text[]) AS m (version, name, checksum) \
         ON CONFLICT (tenant_uid, version) DO UPDATE \
         SET name = excluded.name, checksum = excluded.checksum, \
             applied_at = now(), run_id = excluded.run_id, \
             schema_fingerprint = excluded.schema_fingerprint \
     ), progress AS ( \
         DELETE FROM tenantctl.migration_statements \
         WHERE tenant_uid = $1 AND version = ANY($2::integer[]) \
     ) \
     UPDATE tenantctl.migration_runs SET status = 'applied', updated_at = now() \
     WHERE run_id = $5 AND tenant_uid = $1 AND $7::boolean";

/// Days the state of a migrating run is kept in `tenantctl.migration_runs` (the audit trail of
/// what each run did stays in `tenantctl.events`).
pub const MIGRATION_RUNS_KEPT_DAYS: i32 = 30;

/// Opens the state of a run for the existing tenants it migrates: `pending` each; prunes the
/// state of runs older than [`MIGRATION_RUNS_KEPT_DAYS`].
///
/// # Errors
/// The statement failed.
pub async fn start_migration_run(
    client: &impl GenericClient,
    run_id: Uuid,
    tenants: &[(Uuid, String)],
) -> Result<(), PostgresError> {
    if tenants.is_empty() {
        return Ok(());
    }
    let uids: Vec<Uuid> = tenants.iter().map(|(uid, _)| *uid).collect();
    let ids: Vec<&str> = tenants.iter().map(|(_, id)| id.as_str()).collect();
    // In the same statement, the state of runs older than the retention goes (the last run
    // stays, whatever its age: the next plan reports it if it did not finish). Without it,
    // a daily migrating run over 10,000 tenants would add 3.65 million rows a year.
    client
        .execute(
            "WITH pruned AS ( \
                 DELETE FROM tenantctl.migration_runs \
                 WHERE updated_at < now() - make_interval(days => $4) \
                   AND run_id <> (SELECT run_id FROM tenantctl.migration_runs \
                                  ORDER BY updated_at DESC LIMIT 1) \
             ) \
             INSERT INTO tenantctl.migration_runs (run_id, tenant_uid, tenant_id, status) \
             SELECT $1, uid, id, 'pending' FROM unnest($2::uuid[], $3::text[]) AS t (uid, id) \
             ON CONFLICT (run_id, tenant_uid) DO NOTHING",
            &[&run_id, &uids, &ids, &MIGRATION_RUNS_KEPT_DAYS],
        )
        .await
        .map_err(query_error("record the tenants this run migrates"))?;
    Ok(())
}

/// Marks a tenant of a run `failed` or `retried` (after its transaction rolled back).
///
/// # Errors
/// The statement failed.
pub async fn mark_migration_run(
    client: &impl GenericClient,
    run_id: Uuid,
    uid: Uuid,
    status: &str,
    retries: u32,
    error: &str,
) -> Result<(), PostgresError> {
    let retries = i32::try_from(retries).unwrap_or(i32::MAX);
    client
        .execute(
            "UPDATE tenantctl.migration_runs \
             SET status = $3, retries = $4, error = $5, updated_at = now() \
             WHERE run_id = $1 AND tenant_uid = $2",
            &[&run_id, &uid, &status, &retries, &error],
        )
        .await
        .map_err(query_error("record the state of a tenant in this run"))?;
    Ok(())
}

/// The last run that migrated tenants, if its state is recorded: its id, when it last moved,
/// how many tenants are in each state, and the first tenants still `pending`.
///
/// # Errors
/// The query failed.
pub async fn last_migration_run(
    client: &impl GenericClient,
) -> Result<Option<crate::observed::MigrationRun>, PostgresError> {
    let rows = client
        .query(
            "WITH last AS ( \
                 SELECT run_id FROM tenantctl.migration_runs ORDER BY updated_at DESC LIMIT 1 \
             ) \
             SELECT r.run_id, max(r.updated_at), \
                    count(*) FILTER (WHERE r.status = 'pending'), \
                    count(*) FILTER (WHERE r.status = 'applied'), \
                    count(*) FILTER (WHERE r.status IN ('failed', 'retried')), \
                    (array_agg(r.tenant_id ORDER BY r.tenant_id) \
                        FILTER (WHERE r.status = 'pending'))[1:20] \
             FROM tenantctl.migration_runs r JOIN last USING (run_id) GROUP BY r.run_id",
            &[],
        )
        .await
        .map_err(query_error("read the state of the last migration run"))?;
    Ok(rows.first().map(|row| crate::observed::MigrationRun {
        run_id: row.get(0),
        updated_at: row.get(1),
        pending: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
        applied: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        failed: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
        pending_tenants: row.get::<_, Option<Vec<String>>>(5).unwrap_or_default(),
    }))
}

/// Records migrations as applied to one tenant incarnation (run just now, or adopted). A
/// schema created anew runs its migrations again: the rows of its earlier run are replaced.
pub async fn record_migrations(
    client: &impl GenericClient,
    statement: &Statement,
    uid: Uuid,
    migrations: &[&crate::spec::migrations::Migration],
    run_id: Uuid,
    schema_fingerprint: &str,
    last: bool,
) -> Result<(), PostgresError> {
    let versions: Vec<i32> = migrations
        .iter()
        .map(|migration| i32::try_from(migration.version))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            PostgresError::Unexpected("a migration version is out of range".to_string())
        })?;
    let names: Vec<&str> = migrations.iter().map(|m| m.name.as_str()).collect();
    let checksums: Vec<&str> = migrations.iter().map(|m| m.checksum.as_str()).collect();
    client
        .execute(
            statement,
            &[
                &uid,
                &versions,
                &names,
                &checksums,
                &run_id,
                &schema_fingerprint,
                &last,
            ],
        )
        .await
        .map_err(query_error("record the migrations applied"))?;
    Ok(())
}

/// Every no-transaction migration left in the middle: per tenant incarnation and version, the
/// statements finished (the table holds rows only until the migration is recorded).
///
/// # Errors
/// The query failed.
pub async fn online_progress_all(
    client: &impl GenericClient,
) -> Result<Vec<crate::observed::OnlineProgress>, PostgresError> {
    let rows = client
        .query(
            "SELECT tenant_uid, version, checksum, array_agg(statement ORDER BY statement) \
             FROM tenantctl.migration_statements \
             GROUP BY tenant_uid, version, checksum ORDER BY tenant_uid, version",
            &[],
        )
        .await
        .map_err(query_error(
            "read the no-transaction migrations left in the middle",
        ))?;
    Ok(rows
        .iter()
        .map(|row| crate::observed::OnlineProgress {
            tenant_uid: row.get(0),
            version: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
            checksum: row.get(2),
            statements: row
                .get::<_, Vec<i32>>(3)
                .into_iter()
                .filter_map(|statement| u32::try_from(statement).ok())
                .collect(),
        })
        .collect())
}

/// Records that statement `statement` (1-based) of migration `version` finished on a tenant.
///
/// # Errors
/// The statement failed.
pub async fn record_online_statement(
    client: &impl GenericClient,
    uid: Uuid,
    version: u32,
    checksum: &str,
    statement: usize,
    run_id: Uuid,
) -> Result<(), PostgresError> {
    let (Ok(version), Ok(statement)) = (i32::try_from(version), i32::try_from(statement)) else {
        return Err(PostgresError::Unexpected(
            "a migration version or statement number is out of range".into(),
        ));
    };
    client
        .execute(
            "INSERT INTO tenantctl.migration_statements \
                 (tenant_uid, version, checksum, statement, run_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_uid, version, statement) DO UPDATE \
             SET checksum = excluded.checksum, run_id = excluded.run_id, finished_at = now()",
            &[&uid, &version, &checksum, &statement, &run_id],
        )
        .await
        .map_err(query_error(
            "record the progress of a no-transaction migration",
        ))?;
    Ok(())
}
