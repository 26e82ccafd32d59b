//! Migrations inside a tenant's transaction: every statement pipelined in one round trip,
//! a failure named by file and line, the result verified against the reference schema before
//! it is recorded.

use super::{bounded, TenantWork};
use crate::apply::RunError;
use crate::backend::postgres::{registry, shape, PostgresError};
use crate::spec::migrations::{Migration, MigrationStatement};

impl TenantWork<'_, '_> {
    /// The migrations of these versions, from the plan.
    pub(super) fn named_migrations(&self, versions: &[u32]) -> Result<Vec<&Migration>, RunError> {
        versions
            .iter()
            .map(|version| {
                self.migrations.get(*version).ok_or_else(|| {
                    PostgresError::Unexpected(format!(
                        "the plan names migration {version}, which it does not hold"
                    ))
                    .into()
                })
            })
            .collect()
    }

    /// The schema the migrations make, built by the plan under the lock.
    pub(super) fn reference(&self) -> Result<&crate::observed::Reference, RunError> {
        self.observed.reference.as_ref().ok_or_else(|| {
            PostgresError::Unexpected(
                "the plan holds no reference schema to verify migrations against".to_string(),
            )
            .into()
        })
    }

    /// Runs migrations in the tenant's schema, inside its transaction: the schema as the only
    /// search path (unqualified names land there), the migration lock timeout (a tenant whose
    /// tables an application holds fails fast and is retried next run), each file as it is,
    /// a failure named by file and line. Then reads the schema back from the catalogs (by its
    /// OID) and compares it with the reference the plan built from the migrations: a schema
    /// that differs (the migrations "succeeded" on something altered by hand) fails the tenant,
    /// which rolls back, with the differences named. Only a verified schema is recorded, with
    /// its fingerprint.
    pub(super) async fn run_migrations(
        &mut self,
        schema: &str,
        versions: &[u32],
    ) -> Result<(), RunError> {
        let deadline = self.context.timeouts.client_deadline();
        let tenant = self.tenant;
        let migrations = self.named_migrations(versions)?;
        let reference = self.reference()?;
        // Numbers of milliseconds and a validated identifier: no input in this statement.
        let enter = format!(
            "SET LOCAL search_path TO {}; SET LOCAL lock_timeout = '{}ms';",
            crate::backend::postgres::quote_ident(schema)?,
            self.context.migration_lock_timeout.as_millis().max(1)
        );
        let leave = format!(
            "SET LOCAL search_path TO DEFAULT; SET LOCAL lock_timeout = '{}ms';",
            self.context.timeouts.lock.as_millis().max(1)
        );
        let statements: Vec<(&Migration, MigrationStatement<'_>)> = migrations
            .iter()
            .flat_map(|migration| {
                migration
                    .statements()
                    .into_iter()
                    .map(move |statement| (*migration, statement))
            })
            .collect();
        // Everything is sent at once and the server runs it in order (one round trip instead
        // of one per statement), the catalog reads of the verification included; the answers
        // are then read in order, and the first failure is the one reported: after it, the
        // transaction refuses everything anyway.
        let transaction = self.transaction;
        let pipeline = async {
            futures_util::join!(
                transaction.batch_execute(&enter),
                futures_util::future::join_all(
                    statements
                        .iter()
                        .map(|(_, statement)| transaction.batch_execute(statement.text)),
                ),
                transaction.batch_execute(&leave),
                shape::read_with(transaction, schema, self.statements.shape.each_ref(), true,),
            )
        };
        // Each statement has the client deadline, as if sent one by one.
        let waited =
            deadline.saturating_mul(u32::try_from(statements.len() + 8).unwrap_or(u32::MAX));
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
        for ((migration, statement), result) in statements.iter().zip(ran) {
            match result {
                Ok(()) => {}
                Err(error) if error.is_closed() => {
                    return Err(PostgresError::Query {
                        operation: format!("run `{}` for `{tenant}`", migration.name),
                        error,
                    }
                    .into())
                }
                Err(error) => {
                    return Err(RunError::Migration {
                        file: migration.file.clone(),
                        line: crate::backend::postgres::reference::error_line(statement, &error),
                        message: crate::backend::postgres::error_text(&error),
                        lock_timeout: error.code()
                            == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
                    })
                }
            }
        }
        left.map_err(crate::backend::postgres::query_error(format!(
            "leave the schema of `{tenant}`"
        )))?;
        let live = shape::build(read?.remove(schema).unwrap_or_default());
        let differences = live.differences(&reference.full);
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
                &self.statements.record_migrations,
                self.uid,
                &migrations,
                self.context.run_id,
                &fingerprint,
            ),
        )
        .await?;
        Ok(())
    }
}
