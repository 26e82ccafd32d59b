//! One tenant, atomically: the step executor.
//!
//! - [`transaction`]: one tenant's transaction, from begin to commit, and compensation.
//! - [`TenantWork::run`] (here): the steps inside it.
//! - [`migrate`], [`credentials_run`]: the migration and credential steps' helpers.
//! - [`online`]: the migrations that run after the commit.
//!
//! [`TenantWork::run`] is the one exhaustive `match` from a [`Step`] to what runs: DDL arms
//! queue SQL text (consecutive DDL goes to the server as one batch, one round trip), the
//! others flush the queue first and then call the registry, backup or Chroma function they
//! need. A new step kind does not compile until it has an arm here and a description in
//! `Display for Step`.

use super::compensation::Compensation;
use super::{failpoint, RunContext, RunError};
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{credentials, ddl, registry, Postgres, PostgresError};
use crate::observed::ObservedState;
use crate::plan::{collection_metadata, PasswordRecord, Step};
use crate::spec::migrations::Migrations;
use serde_json::json;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

// Split by concern: `migrate` and `credentials_run` hold methods of the same `TenantWork`.
mod credentials_run;
mod migrate;
mod online;
mod transaction;

pub(super) use transaction::apply_change;
use transaction::Edges;

/// Waits for a PostgreSQL call at most `deadline`: the server enforces its own
/// `statement_timeout`, but a stopped or unreachable backend cannot, and must not stall the run.
async fn bounded<T>(
    deadline: Duration,
    operation: String,
    call: impl Future<Output = Result<T, PostgresError>>,
) -> Result<T, RunError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(PostgresError::Timeout {
            operation,
            waited: deadline,
        }
        .into()),
    }
}

/// Advisory lock key (transaction-scoped) taken before a change to memberships between roles
/// ("tenc" in ASCII, next to the apply and leader locks).
const ROLE_GRAPH_LOCK_KEY: i64 = 0x7465_6e63;

/// The state of one tenant's steps inside its transaction.
struct TenantWork<'a, 't> {
    transaction: &'a tokio_postgres::Transaction<'t>,
    chroma: &'a ChromaClient,
    tenant: &'a str,
    /// This incarnation's uid (new for a create).
    uid: Uuid,
    migrations: &'a Migrations,
    observed: &'a ObservedState,
    context: &'a RunContext,
    /// DDL not sent yet: (SQL, step description).
    batch: Vec<(String, String)>,
    /// Whether this transaction holds [`ROLE_GRAPH_LOCK_KEY`].
    role_graph_locked: bool,
    compensations: &'a mut Vec<Compensation>,
    /// Folder name of the backup written by this change.
    backup: Option<String>,
    /// The statements every tenant runs, prepared on this session.
    statements: &'a Statements,
    /// Builds the URL a tenant role connects with.
    urls: crate::backend::postgres::TenantUrls,
    /// What this change generated, for the secrets sink.
    generated: Generated,
    /// Events of credentials created, rotated, revoked or delivered: `(action, details)`.
    credential_events: Vec<(&'static str, serde_json::Value)>,
    /// This change created the tenant's schema: its migrations all run in the transaction.
    created_schema: bool,
    /// The change runs migrations (an adoption before them does not end the tenant's run).
    runs_migrations: bool,
    /// Migrations left for after the commit (from a no-transaction one on).
    online: Option<online::Remaining>,
}

/// The registry statements of tenant changes, prepared on a session.
struct Statements {
    insert_event: tokio_postgres::Statement,
    record_migrations: tokio_postgres::Statement,
    insert_registry: tokio_postgres::Statement,
    update_registry: tokio_postgres::Statement,
    create_started: tokio_postgres::Statement,
    /// The catalog reads that verify a tenant's schema after its migrations.
    shape: [tokio_postgres::Statement; 5],
}

impl Statements {
    async fn prepare(session: &Postgres) -> Result<Statements, PostgresError> {
        let [columns, indexes, constraints, relations, functions] =
            crate::backend::postgres::shape::one_schema_queries();
        let (insert_event, record_migrations, insert_registry, update_registry, create_started) = futures_util::try_join!(
            session.prepared(registry::INSERT_EVENT),
            session.prepared(registry::RECORD_MIGRATIONS),
            session.prepared(registry::INSERT_REGISTRY),
            session.prepared(registry::UPDATE_REGISTRY),
            session.prepared(registry::RECORD_CREATE_STARTED),
        )?;
        let shape = futures_util::try_join!(
            session.prepared(columns),
            session.prepared(indexes),
            session.prepared(constraints),
            session.prepared(relations),
            session.prepared(functions),
        )?;
        Ok(Statements {
            insert_event,
            record_migrations,
            insert_registry,
            update_registry,
            create_started,
            shape: [shape.0, shape.1, shape.2, shape.3, shape.4],
        })
    }
}

/// Secrets generated by one tenant change, until they are delivered.
#[derive(Default)]
struct Generated {
    password: Option<crate::secrets::Password>,
    api_keys: Vec<crate::secrets::ApiKey>,
    revoked: Vec<String>,
}

impl TenantWork<'_, '_> {
    /// Queues, once per transaction, the lock that serializes changes to memberships between
    /// roles. Two tenants' changes can touch the same membership (`bb` in `aa` is repaired
    /// from both sides, and dropping a role removes its memberships): run at once, the second
    /// fails with "tuple concurrently deleted". The lock is transaction-scoped, so it goes with
    /// the commit or rollback, and the session's `lock_timeout` bounds the wait for it.
    fn lock_role_graph(&mut self) {
        if !self.role_graph_locked {
            self.role_graph_locked = true;
            self.batch.push((
                format!("SELECT pg_advisory_xact_lock({ROLE_GRAPH_LOCK_KEY});"),
                "wait for other changes to role memberships".to_string(),
            ));
        }
    }

    /// Queues the SQL of a DDL step.
    fn ddl(&mut self, step: &Step, sql: Result<String, PostgresError>) -> Result<(), RunError> {
        self.batch.push((sql?, step.to_string()));
        Ok(())
    }

    /// Sends the queued DDL in one round trip; an error names every step of the batch.
    async fn flush(&mut self) -> Result<(), RunError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let sql: String = self.batch.iter().map(|(sql, _)| sql.as_str()).collect();
        let labels: Vec<String> = self.batch.drain(..).map(|(_, label)| label).collect();
        let operation = format!("{} for `{}`", labels.join(", "), self.tenant);
        bounded(
            self.context.timeouts.client_deadline(),
            operation.clone(),
            async {
                self.transaction
                    .batch_execute(&sql)
                    .await
                    .map_err(crate::backend::postgres::query_error(operation.clone()))
            },
        )
        .await
    }

    /// Runs (or queues) one step. The one place a step becomes work.
    async fn run(&mut self, step: &Step) -> Result<(), RunError> {
        let deadline = self.context.timeouts.client_deadline();
        let tenant = self.tenant;
        // After a cut for a no-transaction migration, a grant on what only the migrations
        // after the cut make waits for the part that makes it.
        if let Some(remaining) = self.online.as_mut() {
            if !remaining.runs_now(step) {
                return Ok(());
            }
        }
        match step {
            Step::CreateSchema { schema } => {
                self.created_schema = true;
                self.ddl(step, ddl::create_schema(schema))
            }
            Step::RunMigrations { schema, versions } => {
                self.flush().await?;
                self.run_migrations(schema, versions).await
            }
            Step::RecordMigrations { versions } => {
                self.flush().await?;
                let adopted = self.named_migrations(versions)?;
                // Adopted: the plan found the schema to be exactly what the first migration
                // makes, so that is the shape recorded.
                let fingerprint = self.reference()?.first.fingerprint();
                bounded(
                    deadline,
                    format!("record the migrations of `{tenant}`"),
                    registry::record_migrations(
                        self.transaction,
                        &self.statements.record_migrations,
                        self.uid,
                        &adopted,
                        self.context.run_id,
                        &fingerprint,
                        !self.runs_migrations,
                    ),
                )
                .await
            }
            Step::CreateRole { role } => self.ddl(step, ddl::create_role(role)),
            Step::SetRoleLogin { role, login } => self.ddl(step, ddl::set_role_login(role, *login)),
            Step::SetConnectionLimit { role, limit } => {
                self.ddl(step, ddl::set_connection_limit(role, *limit))
            }
            Step::SetPassword { role } => {
                let password = crate::secrets::generate_password()?;
                let sql = credentials::set_password(role, &password.verifier);
                self.generated.password = Some(password);
                self.credential_events
                    .push(("password_generated", json!({ "role": role })));
                self.ddl(step, sql)
            }
            Step::ClearPassword { role } => {
                self.credential_events
                    .push(("password_removed", json!({ "role": role })));
                self.ddl(step, ddl::clear_password(role))
            }
            Step::CreateApiKey { name, expires } => {
                self.flush().await?;
                let key = crate::secrets::generate_api_key(name, *expires)?;
                let expires_at = expires.map(tenantctl_core::plan::start_of_day);
                let digest = key.digest.to_vec();
                self.credential_statement(
                    format!("store API key `{name}` of `{tenant}`"),
                    credentials::sql::INSERT_KEY,
                    &[&key.prefix, &self.uid, name, &digest, &expires_at],
                )
                .await?;
                self.credential_events.push((
                    "api_key_created",
                    json!({ "name": name, "prefix": key.prefix, "expires": expires }),
                ));
                self.generated.api_keys.push(key);
                Ok(())
            }
            Step::RetireApiKey {
                prefix,
                name,
                grace_seconds,
            } => {
                self.flush().await?;
                // Seconds of the grace as a float: `make_interval(secs => ...)` takes one.
                let seconds = *grace_seconds as f64;
                self.credential_statement(
                    format!("retire API key `{name}` of `{tenant}`"),
                    credentials::sql::RETIRE_KEY,
                    &[prefix, &self.uid, &seconds],
                )
                .await?;
                self.credential_events.push((
                    "api_key_retired",
                    json!({ "name": name, "prefix": prefix, "grace_seconds": grace_seconds }),
                ));
                Ok(())
            }
            Step::RevokeApiKey { prefix, name } => {
                self.flush().await?;
                self.credential_statement(
                    format!("revoke API key `{name}` of `{tenant}`"),
                    credentials::sql::REVOKE_KEY,
                    &[prefix, &self.uid],
                )
                .await?;
                self.credential_events
                    .push(("api_key_revoked", json!({ "name": name, "prefix": prefix })));
                self.generated.revoked.push(prefix.clone());
                Ok(())
            }
            Step::SetApiKeyExpiry {
                prefix,
                name,
                expires,
            } => {
                self.flush().await?;
                let expires_at = expires.map(tenantctl_core::plan::start_of_day);
                self.credential_statement(
                    format!("change the expiry of API key `{name}` of `{tenant}`"),
                    credentials::sql::SET_KEY_EXPIRY,
                    &[prefix, &self.uid, &expires_at],
                )
                .await?;
                self.credential_events.push((
                    "api_key_expiry_changed",
                    json!({ "name": name, "prefix": prefix, "expires": expires }),
                ));
                Ok(())
            }
            Step::RecordCredentials { rotation, password } => {
                self.flush().await?;
                let fingerprint = match password {
                    PasswordRecord::Set => self
                        .generated
                        .password
                        .as_ref()
                        .map(|generated| generated.fingerprint.clone()),
                    PasswordRecord::Cleared | PasswordRecord::Unchanged => None,
                };
                let keep = *password == PasswordRecord::Unchanged;
                self.credential_statement(
                    format!("record the credentials of `{tenant}`"),
                    credentials::sql::RECORD,
                    &[&self.uid, rotation, &fingerprint, &keep],
                )
                .await
            }
            Step::TerminateSessions { role } => {
                self.flush().await?;
                let ended: i64 =
                    bounded(deadline, format!("end the sessions of `{role}`"), async {
                        self.transaction
                            .query_one(credentials::sql::TERMINATE, &[role])
                            .await
                            .map(|row| row.get(0))
                            .map_err(crate::backend::postgres::query_error(format!(
                                "end the sessions of `{role}`"
                            )))
                    })
                    .await?;
                if ended > 0 {
                    self.credential_events
                        .push(("sessions_ended", json!({ "role": role, "sessions": ended })));
                }
                Ok(())
            }
            Step::DeliverSecrets { role } => {
                self.flush().await?;
                self.deliver(role).await
            }
            Step::ResetRoleAttributes { role, .. } => {
                self.ddl(step, ddl::reset_role_attributes(role))
            }
            Step::RevokeMembership { role, member } => {
                self.lock_role_graph();
                // Under the lock, a purge of this run may have dropped one of the two roles,
                // and the membership with it: then nothing is left to revoke (REVOKE would
                // fail on the missing role).
                self.flush().await?;
                let names = [
                    crate::backend::postgres::quote_ident(role)?,
                    crate::backend::postgres::quote_ident(member)?,
                ];
                let transaction = self.transaction;
                let both = bounded(
                    deadline,
                    format!("look up the roles `{role}` and `{member}`"),
                    async {
                        transaction
                            .query_one(
                                "SELECT to_regrole($1) IS NOT NULL AND to_regrole($2) IS NOT NULL",
                                &[&names[0], &names[1]],
                            )
                            .await
                            .map_err(crate::backend::postgres::query_error(format!(
                                "look up the roles `{role}` and `{member}`"
                            )))
                    },
                )
                .await?;
                if both.get::<_, bool>(0) {
                    self.ddl(step, ddl::revoke_membership(role, member))
                } else {
                    Ok(())
                }
            }
            Step::ReassignOwned { role } => self.ddl(step, ddl::reassign_owned(role)),
            Step::RevokeSchemaFromPublic { schema } => {
                self.ddl(step, ddl::revoke_schema_from_public(schema))
            }
            Step::GrantSchemaUsage { schema, role } => {
                self.ddl(step, ddl::grant_schema_usage(schema, role))
            }
            Step::RevokeSchemaUsage { schema, role } => {
                self.ddl(step, ddl::revoke_schema_usage(schema, role))
            }
            Step::GrantTablePrivileges {
                schema,
                table,
                role,
            } => self.ddl(step, ddl::grant_table_privileges(schema, table, role)),
            Step::GrantObjectPrivileges {
                schema,
                name,
                object_kind,
                role,
            } => self.ddl(
                step,
                ddl::grant_object_privileges(schema, name, *object_kind, role),
            ),
            Step::GrantFunctions { schema, role } => {
                self.ddl(step, ddl::grant_functions(schema, role))
            }
            Step::RevokeGrant { on, grantee } => self.ddl(step, ddl::revoke_grant(on, grantee)),
            Step::SecurityInvoker { oid, .. } => self.ddl(step, ddl::security_invoker(*oid)),
            Step::DropSchema { schema } => self.ddl(step, ddl::drop_schema(schema)),
            Step::DropRole { role } => {
                // Dropping a role deletes its memberships, which another tenant's change may
                // be deleting too; a role with no membership (the rule: tenantctl never grants
                // one) has nothing to collide on, and purges then run in parallel.
                let current_user = self.observed.current_user.as_str();
                if self.observed.roles.get(role).is_none_or(|live| {
                    !live.member_of.is_empty()
                        || live.members.iter().any(|member| member != current_user)
                }) {
                    self.lock_role_graph();
                }
                self.ddl(step, ddl::drop_role(role))
            }
            Step::InsertRegistry { record } => {
                self.flush().await?;
                bounded(
                    deadline,
                    format!("insert the registry row of `{tenant}`"),
                    registry::insert_registry(
                        self.transaction,
                        &self.statements.insert_registry,
                        tenant,
                        self.uid,
                        record,
                    ),
                )
                .await
            }
            Step::UpdateRegistry { record } => {
                self.flush().await?;
                bounded(
                    deadline,
                    format!("update the registry row of `{tenant}`"),
                    registry::update_registry(
                        self.transaction,
                        &self.statements.update_registry,
                        tenant,
                        record,
                    ),
                )
                .await
            }
            Step::SoftDeleteRegistry { retention_days } => {
                self.flush().await?;
                bounded(
                    deadline,
                    format!("soft-delete the registry row of `{tenant}`"),
                    registry::soft_delete_registry(self.transaction, tenant, *retention_days),
                )
                .await
            }
            Step::DeleteRegistry { uid } => {
                self.flush().await?;
                bounded(
                    deadline,
                    format!("delete the registry row of `{tenant}`"),
                    registry::delete_registry(self.transaction, tenant, *uid),
                )
                .await
            }
            Step::ExportBackup {
                schema,
                tables,
                collection,
                collection_id,
                migration_version,
                uid,
            } => {
                self.flush().await?;
                // One bound for the whole export: each table's COPY is one statement, and the
                // Chroma requests have their own timeout.
                let bound = deadline * u32::try_from(tables.len() + 2).unwrap_or(u32::MAX);
                let request = crate::backup::ExportRequest {
                    tenant,
                    uid: *uid,
                    schema,
                    tables,
                    collection: collection.as_deref().zip(collection_id.as_deref()),
                    migration_version: *migration_version,
                    taken_at: self.observed.server_time,
                };
                let export = self
                    .context
                    .backups
                    .export(self.transaction, self.chroma, &request);
                let written = match tokio::time::timeout(bound, export).await {
                    Ok(written) => written?,
                    Err(_) => {
                        return Err(PostgresError::Timeout {
                            operation: format!("write the final backup of `{tenant}`"),
                            waited: bound,
                        }
                        .into())
                    }
                };
                self.backup = Some(written.folder);
                self.compensations.push(Compensation::RemoveBackup {
                    store: self.context.backups.clone(),
                    location: written.location,
                });
                Ok(())
            }
            Step::DeleteBackups { uid } => {
                self.flush().await?;
                self.context.backups.delete_all(tenant, *uid).await?;
                Ok(())
            }
            Step::CreateCollection { collection } => {
                self.flush().await?;
                // Registered before the call: if the answer is lost, the collection may exist
                // anyway, and the compensation checks the uid before deleting.
                self.compensations
                    .push(Compensation::DeleteCreatedCollection {
                        name: collection.clone(),
                        uid: self.uid,
                    });
                self.chroma
                    .create_collection(collection, &collection_metadata(tenant, self.uid))
                    .await?;
                Ok(())
            }
            Step::UpdateCollectionMetadata { collection, id } => {
                self.flush().await?;
                let previous = self
                    .observed
                    .collections
                    .get(collection)
                    .map(|live| {
                        live.metadata
                            .iter()
                            .map(|(key, value)| (key.clone(), value.clone()))
                            .collect::<serde_json::Map<_, _>>()
                    })
                    .unwrap_or_default();
                self.chroma
                    .update_metadata(id, &collection_metadata(tenant, self.uid))
                    .await?;
                if !previous.is_empty() {
                    self.compensations.push(Compensation::RestoreMetadata {
                        name: collection.clone(),
                        id: id.clone(),
                        previous,
                    });
                }
                Ok(())
            }
            Step::DeleteCollection { collection } => {
                self.flush().await?;
                // Not undoable: the planner puts it after every step that can fail and roll
                // back, so a failure before it leaves the tenant soft-deleted and intact.
                self.chroma.delete_collection(collection).await?;
                Ok(())
            }
        }
    }
}
