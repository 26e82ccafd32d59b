//! What a tenant schema should look like: every migration run in a scratch schema, inside a
//! transaction that is always rolled back, and the result read from the catalogs. Built once
//! per plan, not per tenant. A migration that fails here would fail on every tenant, so it
//! fails the plan itself, naming the file and line.

use super::shape::{self, Schemas};
use super::{error_text, query_error, Postgres, PostgresError};
use crate::observed::Reference;
use crate::spec::migrations::{MigrationStatement, Migrations};
use tokio_postgres::error::ErrorPosition;

/// Why the reference could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("migration `{file}` fails on an empty schema at line {line}: {message}; nothing was changed")]
    Migration {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Postgres(#[from] PostgresError),
}

/// The line of a migration a server error in `statement`, sent as `sent`, points at.
pub fn error_line(
    statement: &MigrationStatement<'_>,
    sent: &str,
    error: &tokio_postgres::Error,
) -> usize {
    let position = match error.as_db_error().and_then(|db| db.position()) {
        Some(ErrorPosition::Original(position)) => usize::try_from(*position).ok(),
        _ => None,
    };
    statement.line_at(sent, position)
}

impl Postgres {
    /// Runs `migrations` in a scratch schema and reads its shape after the first and after the
    /// last, then rolls everything back.
    ///
    /// # Errors
    /// [`ReferenceError::Migration`] for a migration that fails (file, line and the server's
    /// message), or a catalog query that failed.
    pub async fn build_reference(
        &self,
        migrations: &Migrations,
    ) -> Result<Reference, ReferenceError> {
        // A name no tenant can have (tenant schemas start with the tenant prefix), unique so
        // that two plans at once do not wait for each other.
        let schema = format!("tenantctl_reference_{}", uuid::Uuid::new_v4().simple());
        let client = &self.client;
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '5min'; \
                 CREATE SCHEMA \"{schema}\"; SET LOCAL search_path TO \"{schema}\";"
            ))
            .await
            .map_err(query_error("begin building the reference schema"))?;
        let result = async {
            let mut first = None;
            let mut at = std::collections::BTreeMap::new();
            for (index, migration) in migrations.list.iter().enumerate() {
                for statement in migration.statements() {
                    // An index built concurrently on a tenant is built plainly here: the
                    // same index, in a schema no one else uses, inside the transaction.
                    let sent = statement.in_transaction();
                    if let Err(error) = client.batch_execute(&sent).await {
                        return Err(ReferenceError::Migration {
                            file: migration.file.clone(),
                            line: error_line(&statement, &sent, &error),
                            message: error_text(&error),
                        });
                    }
                }
                let last = index + 1 == migrations.list.len();
                // Where a tenant's migrations are cut into parts, each verified on its own.
                let ends_part = migration.online()
                    || migrations
                        .list
                        .get(index + 1)
                        .is_some_and(|next| next.online());
                if first.is_none() || (ends_part && !last) {
                    let shape = read_shape(client, &schema).await?;
                    if ends_part && !last {
                        at.insert(migration.version, shape.clone());
                    }
                    first.get_or_insert(shape);
                }
            }
            let full = read_shape(client, &schema).await?;
            Ok(Reference {
                first: first.unwrap_or_else(|| full.clone()),
                full,
                at,
            })
        }
        .await;
        // Always rolled back: nothing of the scratch schema ever commits.
        let rolled_back = client.batch_execute("ROLLBACK").await;
        let reference = result?;
        rolled_back.map_err(query_error("roll back the reference schema"))?;
        Ok(reference)
    }
}

async fn read_shape(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<crate::observed::SchemaShape, PostgresError> {
    let mut shapes = shape::read(client, Schemas::Exactly(schema), true).await?;
    Ok(shape::build(shapes.remove(schema).unwrap_or_default()))
}
