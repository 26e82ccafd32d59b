//! Migrations inside a tenant's transaction: every statement pipelined in one round trip,
//! a failure named by file and line, the result verified against the reference schema before
//! it is recorded.
//!
//! On an existing tenant, a `-- tenantctl: no-transaction` migration cuts its pending
//! migrations in parts: the ones before it run here, in the tenant's transaction; it and
//! everything after it run once that transaction has committed (see [`super::online`]). A
//! schema this change creates runs them all here, its concurrent index builds built plainly:
//! no one uses it yet, and the create stays one transaction.

use super::{bounded, Statements, TenantWork};
use crate::apply::{RunContext, RunError};
use crate::backend::postgres::{registry, shape, PostgresError};
use crate::observed::SchemaShape;
use crate::spec::migrations::{Migration, MigrationStatement};
use uuid::Uuid;

impl TenantWork<'_, '_> {
    /// The migrations of these versions, from the plan.
    pub(super) fn named_migrations(&self, versions: &[u32]) -> Result<Vec<&Migration>, RunError> {
        named(self.migrations, versions)
    }

    /// The schema the migrations make, built by the plan under the lock.
    pub(super) fn reference(&self) -> Result<&crate::observed::Reference, RunError> {
        reference(self.observed)
    }

    /// Runs the migrations of `versions` that belong in the tenant's transaction (all of them
    /// on a schema this change created; else those before the first no-transaction one), and
    /// leaves the rest for after the commit.
    pub(super) async fn run_migrations(
        &mut self,
        schema: &str,
        versions: &[u32],
    ) -> Result<(), RunError> {
        let migrations = self.named_migrations(versions)?;
        let cut = if self.created_schema {
            migrations.len()
        } else {
            migrations
                .iter()
                .position(|migration| migration.online())
                .unwrap_or(migrations.len())
        };
        let (now, later) = migrations.split_at(cut);
        if let Some(last) = now.last() {
            let expected = expected_after(self.migrations, self.observed, last.version)?;
            let part = Part {
                tenant: self.tenant,
                uid: self.uid,
                schema,
                migrations: now,
                expected,
                last: later.is_empty(),
            };
            migrate_in_transaction(self.transaction, self.statements, self.context, &part).await?;
        }
        if let Some(first_later) = later.first() {
            // The schema as this transaction leaves it: after the migration before the
            // no-transaction one (the reference holds the shape there).
            let before = self
                .migrations
                .list
                .iter()
                .take_while(|migration| migration.version < first_later.version)
                .last()
                .map(|migration| migration.version);
            let cut = match before {
                Some(version) => expected_after(self.migrations, self.observed, version)?.clone(),
                None => SchemaShape::default(),
            };
            self.online = Some(super::online::Remaining {
                schema: schema.to_string(),
                versions: later.iter().map(|migration| migration.version).collect(),
                cut,
                grants: Vec::new(),
            });
        }
        Ok(())
    }
}

/// The migrations of these versions.
pub(super) fn named<'m>(
    migrations: &'m crate::spec::migrations::Migrations,
    versions: &[u32],
) -> Result<Vec<&'m Migration>, RunError> {
    versions
        .iter()
        .map(|version| {
            migrations.get(*version).ok_or_else(|| {
                PostgresError::Unexpected(format!(
                    "the plan names migration {version}, which it does not hold"
                ))
                .into()
            })
        })
        .collect()
}

/// The reference the plan built under the lock.
pub(super) fn reference(
    observed: &crate::observed::ObservedState,
) -> Result<&crate::observed::Reference, RunError> {
    observed.reference.as_ref().ok_or_else(|| {
        PostgresError::Unexpected(
            "the plan holds no reference schema to verify migrations against".to_string(),
        )
        .into()
    })
}

/// The shape a tenant's schema has after migration `version`.
pub(super) fn expected_after<'o>(
    migrations: &crate::spec::migrations::Migrations,
    observed: &'o crate::observed::ObservedState,
    version: u32,
) -> Result<&'o SchemaShape, RunError> {
    let latest = migrations.latest().unwrap_or(version);
    reference(observed)?.after(version, latest).ok_or_else(|| {
        PostgresError::Unexpected(format!(
            "the reference schema holds no shape after migration {version}"
        ))
        .into()
    })
}

/// Migrations run together in one transaction, and what they must leave.
pub(super) struct Part<'a> {
    pub tenant: &'a str,
    pub uid: Uuid,
    pub schema: &'a str,
    pub migrations: &'a [&'a Migration],
    /// The reference's shape after the last of them.
    pub expected: &'a SchemaShape,
    /// The tenant's last migrations of the run: recording them marks it `applied`.
    pub last: bool,
}

/// Runs `part` in `transaction`, in the tenant's schema (its only search path, unqualified
/// names land there), under the migration lock timeout (a tenant whose tables an application
/// holds fails fast and is retried), each file as it is, a failure named by file and line.
/// Then reads the schema back from the catalogs (by its OID) and compares it with the
/// reference: a schema that differs (the migrations "succeeded" on something altered by hand)
/// fails the tenant, which rolls back, with the differences named. Only a verified schema is
/// recorded, with its fingerprint.
pub(super) async fn migrate_in_transaction(
    transaction: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    context: &RunContext,
    part: &Part<'_>,
) -> Result<(), RunError> {
    let deadline = context.timeouts.client_deadline();
    let tenant = part.tenant;
    let schema = part.schema;
    // Numbers of milliseconds and a validated identifier: no input in this statement.
    let enter = format!(
        "SET LOCAL search_path TO {}; SET LOCAL lock_timeout = '{}ms';",
        crate::backend::postgres::quote_ident(schema)?,
        context.migration_lock_timeout.as_millis().max(1)
    );
    let leave = format!(
        "SET LOCAL search_path TO DEFAULT; SET LOCAL lock_timeout = '{}ms';",
        context.timeouts.lock.as_millis().max(1)
    );
    let statements_sent: Vec<(
        &Migration,
        MigrationStatement<'_>,
        std::borrow::Cow<'_, str>,
    )> = part
        .migrations
        .iter()
        .flat_map(|migration| {
            migration.statements().into_iter().map(move |statement| {
                let sent = statement.in_transaction();
                (*migration, statement, sent)
            })
        })
        .collect();
    // Everything is sent at once and the server runs it in order (one round trip instead
    // of one per statement), the catalog reads of the verification included; the answers
    // are then read in order, and the first failure is the one reported: after it, the
    // transaction refuses everything anyway.
    let pipeline = async {
        futures_util::join!(
            transaction.batch_execute(&enter),
            futures_util::future::join_all(
                statements_sent
                    .iter()
                    .map(|(_, _, sent)| transaction.batch_execute(sent)),
            ),
            transaction.batch_execute(&leave),
            shape::read_with(transaction, schema, statements.shape.each_ref(), true),
        )
    };
    // Each statement has the client deadline, as if sent one by one.
    let waited =
        deadline.saturating_mul(u32::try_from(statements_sent.len() + 8).unwrap_or(u32::MAX));
    let Ok((entered, ran, left, read)) = tokio::time::timeout(waited, pipeline).await else {
        return Err(PostgresError::Timeout {
            operation: format!("run the migrations of `{tenant}`"),
            waited,
        }
        .into());
    };
    entered.map_err(crate::backend::postgres::query_error(format!(
        "enter the schema of `{tenant}`"
    )))?;
    for ((migration, statement, sent), result) in statements_sent.iter().zip(ran) {
        match result {
            Ok(()) => {}
            Err(error) if error.is_closed() => {
                return Err(PostgresError::Query {
                    operation: format!("run `{}` for `{tenant}`", migration.name),
                    error,
                }
                .into())
            }
            Err(error) => return Err(migration_error(migration, statement, sent, &error)),
        }
    }
    left.map_err(crate::backend::postgres::query_error(format!(
        "leave the schema of `{tenant}`"
    )))?;
    let live = shape::build(read?.remove(schema).unwrap_or_default());
    let differences = live.differences(part.expected);
    if !differences.is_empty() {
        return Err(RunError::Unverified {
            schema: schema.to_string(),
            differences,
        });
    }
    let fingerprint = live.fingerprint();
    bounded(
        deadline,
        format!("record the migrations of `{tenant}`"),
        registry::record_migrations(
            transaction,
            &statements.record_migrations,
            part.uid,
            part.migrations,
            context.run_id,
            &fingerprint,
            part.last,
        ),
    )
    .await?;
    Ok(())
}

/// A statement of `migration` failed on the server: its file and line, and the server's words.
pub(super) fn migration_error(
    migration: &Migration,
    statement: &MigrationStatement<'_>,
    sent: &str,
    error: &tokio_postgres::Error,
) -> RunError {
    RunError::Migration {
        file: migration.file.clone(),
        line: crate::backend::postgres::reference::error_line(statement, sent, error),
        message: crate::backend::postgres::error_text(error),
        lock_timeout: error.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
    }
}
