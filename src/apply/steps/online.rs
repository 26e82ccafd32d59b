//! The migrations of an existing tenant that run after its transaction committed: a
//! `-- tenantctl: no-transaction` migration, statement by statement outside any transaction,
//! and the migrations after it (each run of transactional ones in a transaction of its own).
//!
//! A concurrent index build cannot run in a transaction, so it cannot roll back either: what a
//! failure or a killed run leaves is made safe to resume instead.
//! - Each statement's completion is recorded (`tenantctl.migration_statements`): the next run
//!   resumes at the first statement not recorded.
//! - Before a build, the index is looked up by name: one that is valid was built (by a run
//!   killed before it could record it), one that is `INVALID` was left by a build that failed
//!   or was cut off, and is dropped concurrently and built again.
//! - The session checks that its client is still there (`client_connection_check_interval`):
//!   a build whose tenantctl was killed stops instead of holding its locks.
//! - The migration is recorded in the history only when every statement is done and the
//!   schema is verified against the reference, with its fingerprint.
//!
//! A lock timeout is retried in place (the worker waits the backoff), since the tenant's
//! transaction has already committed and cannot be run again as a whole.

use super::migrate::{self, Part};
use super::{bounded, failpoint, Edges, Statements};
use crate::apply::RunError;
use crate::backend::postgres::{
    ddl, query_error, quote_ident, registry, shape, Postgres, PostgresError,
};
use crate::observed::SchemaShape;
use crate::plan::Step;
use crate::spec::migrations::Migration;
use uuid::Uuid;

/// Migrations left for after the tenant's transaction.
#[derive(Debug)]
pub(super) struct Remaining {
    pub schema: String,
    pub versions: Vec<u32>,
    /// The schema as the tenant's transaction leaves it.
    pub cut: SchemaShape,
    /// Grants of the change on what the remaining migrations make: run in the transaction of
    /// the part that makes their object (`GrantFunctions` in every such part).
    pub grants: Vec<Step>,
}

impl Remaining {
    /// Whether the tenant's transaction runs `step` now: not a grant on an object that only
    /// the remaining migrations make (kept in `grants` instead). A grant on every function of
    /// the schema runs now and again after each later part, which may add functions.
    pub fn runs_now(&mut self, step: &Step) -> bool {
        match made_in(step, &self.cut) {
            Some(false) => {
                self.grants.push(step.clone());
                false
            }
            Some(true) if matches!(step, Step::GrantFunctions { .. }) => {
                self.grants.push(step.clone());
                true
            }
            _ => true,
        }
    }
}

/// For a grant on what migrations make, whether its object is in `shape`; `None` for any
/// other step.
fn made_in(step: &Step, shape: &SchemaShape) -> Option<bool> {
    match step {
        Step::GrantTablePrivileges { table, .. } => Some(shape.tables.contains_key(table)),
        Step::GrantObjectPrivileges { name, .. } => {
            Some(shape.views.contains_key(name) || shape.sequences.contains(name))
        }
        Step::GrantFunctions { .. } => Some(true),
        _ => None,
    }
}

/// The SQL of a grant step.
fn grant_sql(step: &Step) -> Result<String, PostgresError> {
    match step {
        Step::GrantTablePrivileges {
            schema,
            table,
            role,
        } => ddl::grant_table_privileges(schema, table, role),
        Step::GrantObjectPrivileges {
            schema,
            name,
            object_kind,
            role,
        } => ddl::grant_object_privileges(schema, name, *object_kind, role),
        Step::GrantFunctions { schema, role } => ddl::grant_functions(schema, role),
        other => Err(PostgresError::Unexpected(format!(
            "`{other}` is not a grant on what migrations make"
        ))),
    }
}

/// One tenant's remaining migrations.
pub(super) struct Tenant<'a> {
    pub name: &'a str,
    pub uid: Uuid,
    pub schema: &'a str,
}

/// Runs `remaining` on `session`, in order: a no-transaction migration statement by statement,
/// each run of transactional migrations in a transaction. Counts lock-timeout retries into
/// `retries`.
pub(super) async fn run(
    session: &mut Postgres,
    statements: &Statements,
    edges: Edges<'_>,
    tenant: &Tenant<'_>,
    remaining: &Remaining,
    retries: &mut u32,
) -> Result<(), RunError> {
    let migrations = migrate::named(edges.migrations, &remaining.versions)?;
    let mut grants = remaining.grants.clone();
    let mut start = 0;
    while start < migrations.len() {
        if let Some(reason) = edges.context.interrupted() {
            return Err(RunError::Stopped {
                reason,
                what: format!("`{}` started", migrations[start].name),
            });
        }
        let end = if migrations[start].online() {
            start + 1
        } else {
            migrations[start..]
                .iter()
                .position(|migration| migration.online())
                .map_or(migrations.len(), |offset| start + offset)
        };
        let part = &migrations[start..end];
        let last = end == migrations.len();
        let latest = part[part.len() - 1].version;
        let expected = migrate::expected_after(edges.migrations, edges.observed, latest)?;
        if part[0].online() {
            online_migration(
                session, statements, edges, tenant, part[0], expected, last, retries,
            )
            .await?;
        } else {
            let part = Part {
                tenant: tenant.name,
                uid: tenant.uid,
                schema: tenant.schema,
                migrations: part,
                expected,
                last,
            };
            // The grants on what this part makes go in its transaction.
            let (now, later): (Vec<Step>, Vec<Step>) = grants
                .into_iter()
                .partition(|grant| made_in(grant, expected) == Some(true));
            grants = later;
            grants.extend(
                now.iter()
                    .filter(|grant| matches!(grant, Step::GrantFunctions { .. }))
                    .cloned(),
            );
            let grant_sql = now.iter().map(grant_sql).collect::<Result<String, _>>()?;
            transactional(session, statements, edges, &part, &grant_sql, retries).await?;
        }
        start = end;
    }
    Ok(())
}

/// Transactional migrations after a no-transaction one: their own transaction, with the
/// grants on what they make (`grant_sql`), retried in place after a lock timeout.
async fn transactional(
    session: &mut Postgres,
    statements: &Statements,
    edges: Edges<'_>,
    part: &Part<'_>,
    grant_sql: &str,
    retries: &mut u32,
) -> Result<(), RunError> {
    let context = edges.context;
    let deadline = context.timeouts.client_deadline();
    let tenant = part.tenant;
    let mut attempt = 0;
    loop {
        let transaction = super::transaction::begin(
            &mut session.client,
            tokio_postgres::IsolationLevel::ReadCommitted,
            deadline,
            format!("begin a transaction of `{tenant}`"),
        )
        .await?;
        let ran = async {
            migrate::migrate_in_transaction(&transaction, statements, context, part).await?;
            if grant_sql.is_empty() {
                return Ok(());
            }
            bounded(
                deadline,
                format!("grant the tenant role what the migrations of `{tenant}` made"),
                async {
                    transaction
                        .batch_execute(grant_sql)
                        .await
                        .map_err(query_error(format!(
                            "grant the tenant role what the migrations of `{tenant}` made"
                        )))
                },
            )
            .await
        }
        .await;
        match ran {
            Ok(()) => {
                return super::transaction::commit(
                    transaction,
                    deadline,
                    format!("commit the migrations of `{tenant}`"),
                )
                .await;
            }
            Err(error) if error.retryable() && attempt < context.migration_retries => {
                drop(transaction);
                attempt += 1;
                *retries += 1;
                // A stop (signal, deadline) during the backoff ends it: no new attempt starts.
                context
                    .pause(crate::apply::backoff(attempt))
                    .await
                    .map_err(|reason| RunError::Stopped {
                        reason,
                        what: format!("the migrations of `{tenant}` were tried again"),
                    })?;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A `-- tenantctl: no-transaction` migration: its statements one by one in the tenant's
/// schema, each recorded when done; then the schema verified and the migration recorded.
#[allow(clippy::too_many_arguments)]
async fn online_migration(
    session: &mut Postgres,
    statements: &Statements,
    edges: Edges<'_>,
    tenant: &Tenant<'_>,
    migration: &Migration,
    expected: &SchemaShape,
    last: bool,
    retries: &mut u32,
) -> Result<(), RunError> {
    let context = edges.context;
    let deadline = context.timeouts.client_deadline();
    let client = &session.client;
    let name = tenant.name;
    // The statements a run left done, as the plan read them under this lock (one query for
    // the fleet, not one per tenant); progress made by another text of the file is not this
    // one's.
    let done: Vec<usize> = edges
        .observed
        .online_progress
        .iter()
        .filter(|progress| {
            progress.tenant_uid == tenant.uid
                && progress.version == migration.version
                && progress.checksum == migration.checksum
        })
        .flat_map(|progress| progress.statements.iter())
        .filter_map(|statement| usize::try_from(*statement).ok())
        .collect();
    // Session settings (a statement that runs outside a transaction cannot have `SET LOCAL`),
    // put back below whatever happens: the session goes on to other tenants. Numbers and a
    // quoted, validated identifier: no input in this text.
    let schema = quote_ident(tenant.schema)?;
    let enter = format!(
        "SET search_path TO {schema}; SET lock_timeout = '{}ms'; \
         SET client_connection_check_interval = '1s';",
        context.migration_lock_timeout.as_millis().max(1)
    );
    let leave = format!(
        "SET search_path TO DEFAULT; SET lock_timeout = '{}ms'; \
         RESET client_connection_check_interval;",
        context.timeouts.lock.as_millis().max(1)
    );
    let batch = |sql: String, operation: String| {
        bounded(deadline, operation.clone(), async move {
            client
                .batch_execute(&sql)
                .await
                .map_err(query_error(operation))
        })
    };
    batch(enter, format!("enter the schema of `{name}`")).await?;
    let ran = async {
        for (position, statement) in migration.statements().iter().enumerate() {
            let number = position + 1;
            if done.contains(&number) {
                continue;
            }
            let Some(index) = &statement.online else {
                return Err(PostgresError::Unexpected(format!(
                    "statement {number} of `{}` is not an index built or dropped concurrently",
                    migration.file
                ))
                .into());
            };
            // Once the run must stop, no further statement starts (the one running is
            // cancelled by the watchdog after its grace): the next apply resumes here.
            if let Some(reason) = context.interrupted() {
                return Err(RunError::Stopped {
                    reason,
                    what: format!("statement {number} of `{}` started", migration.name),
                });
            }
            failpoint::hit(name, "before", &format!("online_statement_{number}"));
            let mut attempt = 0;
            loop {
                let valid = bounded(
                    deadline,
                    format!("look up index `{}` of `{name}`", index.name),
                    index_validity(client, tenant.schema, &index.name),
                )
                .await?;
                let failed = match (index.create, valid) {
                    // Built by a run that did not live to record it; the verification below
                    // checks that it is the index the migration defines.
                    (true, Some(true)) | (false, None) => break,
                    (true, Some(false)) => {
                        // Left by a build that failed or was cut off: it is not used, yet
                        // every write maintains it. Dropped the same way, then built again.
                        let drop = format!(
                            "DROP INDEX CONCURRENTLY IF EXISTS {schema}.{}",
                            quote_ident(&index.name)?
                        );
                        match execute(client, &drop, deadline, name).await? {
                            Ok(()) => execute(client, statement.text, deadline, name).await?,
                            Err(error) => Err(error),
                        }
                    }
                    (true, None) | (false, Some(_)) => {
                        execute(client, statement.text, deadline, name).await?
                    }
                };
                match failed {
                    Ok(()) => break,
                    Err(error) => {
                        let error =
                            migrate::migration_error(migration, statement, statement.text, &error);
                        if error.retryable() && attempt < context.migration_retries {
                            attempt += 1;
                            *retries += 1;
                            context
                                .pause(crate::apply::backoff(attempt))
                                .await
                                .map_err(|reason| RunError::Stopped {
                                    reason,
                                    what: format!(
                                        "statement {number} of `{}` was tried again",
                                        migration.name
                                    ),
                                })?;
                            continue;
                        }
                        return Err(error);
                    }
                }
            }
            bounded(
                deadline,
                format!("record the progress of `{}` on `{name}`", migration.name),
                registry::record_online_statement(
                    client,
                    tenant.uid,
                    migration.version,
                    &migration.checksum,
                    number,
                    context.run_id,
                ),
            )
            .await?;
            failpoint::hit(name, "after", &format!("online_statement_{number}"));
        }
        Ok(())
    }
    .await;
    if !client.is_closed() {
        let left = batch(leave, format!("leave the schema of `{name}`")).await;
        if ran.is_ok() {
            left?;
        }
    }
    ran?;
    let mut read = bounded(
        deadline,
        format!("read the schema of `{name}`"),
        shape::read_with(client, tenant.schema, statements.shape.each_ref(), true),
    )
    .await?;
    let live = shape::build(read.remove(tenant.schema).unwrap_or_default());
    let differences = live.differences(expected);
    if !differences.is_empty() {
        return Err(RunError::OnlineUnverified {
            migration: migration.name.clone(),
            schema: tenant.schema.to_string(),
            differences,
        });
    }
    let fingerprint = live.fingerprint();
    // One statement: the history row, the progress rows gone, the run's state.
    bounded(
        deadline,
        format!("record the migrations of `{name}`"),
        registry::record_migrations(
            client,
            &statements.record_migrations,
            tenant.uid,
            &[migration],
            context.run_id,
            &fingerprint,
            last,
        ),
    )
    .await
}

/// Sends one statement outside a transaction: `Ok(Err(_))` is the server's refusal (the
/// migration's failure), `Err(_)` a session lost or a wait past the deadline.
async fn execute(
    client: &tokio_postgres::Client,
    sql: &str,
    deadline: std::time::Duration,
    tenant: &str,
) -> Result<Result<(), tokio_postgres::Error>, RunError> {
    let operation = || format!("build or drop an index of `{tenant}`");
    match tokio::time::timeout(deadline, client.batch_execute(sql)).await {
        Err(_) => Err(PostgresError::Timeout {
            operation: operation(),
            waited: deadline,
        }
        .into()),
        Ok(Err(error)) if error.is_closed() => Err(PostgresError::Query {
            operation: operation(),
            error,
        }
        .into()),
        Ok(result) => Ok(result),
    }
}

/// Whether index `name` of `schema` is valid; `None` when there is no such index.
async fn index_validity(
    client: &tokio_postgres::Client,
    schema: &str,
    name: &str,
) -> Result<Option<bool>, PostgresError> {
    let row = client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i \
             WHERE i.indexrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))",
            &[&schema, &name],
        )
        .await
        .map_err(query_error(format!("look up index `{name}`")))?;
    Ok(row.map(|row| row.get(0)))
}
