//! PostgreSQL: connection, control schema migrations, the apply lock, batched introspection and
//! the SQL of every PostgreSQL step.
//!
//! Identifiers reach SQL only through [`quote_ident`], which refuses anything but plain lowercase
//! identifiers and double-quotes them; values are always bound parameters.

use crate::observed::{
    LiveStatus, ObservedColumn, ObservedRole, ObservedSchema, ObservedState, RegistryRow,
};
use crate::plan::{Naming, RegistryRecord, Step, CONVERSATIONS_TABLE, MANAGED_COMMENT};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

/// Advisory lock key that serializes applies on one database ("tena" in ASCII). Advisory locks
/// are scoped to the current database, so registries in separate databases do not contend.
pub const APPLY_LOCK_KEY: i64 = 0x7465_6e61;

/// Advisory lock key held for its whole life by the `watch --apply` process that leads ("tenb").
/// It is session-level: it goes away with the leader's connection, and a standby takes it.
pub const LEADER_LOCK_KEY: i64 = 0x7465_6e62;

/// Control schema migrations, in order. Each runs once, in its own transaction, under the apply
/// lock; never edit a released one, add the next.
const MIGRATIONS: [(i32, &str); 2] = [
    (
        1,
        r#"
CREATE SCHEMA IF NOT EXISTS tenantctl;
COMMENT ON SCHEMA tenantctl IS 'tenantctl control schema: tenant registry and audit events';
CREATE TABLE tenantctl.schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    tool_version text NOT NULL
);
CREATE TABLE tenantctl.tenants (
    id text PRIMARY KEY,
    uid uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    plan text NOT NULL,
    config jsonb NOT NULL,
    protected boolean NOT NULL DEFAULT false,
    retention_days integer CHECK (retention_days >= 0),
    suspend_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    suspended_at timestamptz,
    deleted_at timestamptz,
    purge_after timestamptz
);
CREATE TABLE tenantctl.events (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    run_id uuid NOT NULL,
    actor text NOT NULL,
    tenant_id text NOT NULL,
    tenant_uid uuid,
    action text NOT NULL,
    status_before text,
    status_after text,
    reason text,
    changes jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_tenant_at ON tenantctl.events (tenant_id, at);
-- The audit trail is append-only, for every role including the owner.
CREATE FUNCTION tenantctl.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tenantctl.events is append-only';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON tenantctl.events
    FOR EACH STATEMENT EXECUTE FUNCTION tenantctl.events_append_only();
"#,
    ),
    (
        2,
        r#"
-- Saved plans applied with `apply FILE`: a plan id is recorded before its first change, so the
-- same saved plan never applies twice.
CREATE TABLE tenantctl.applied_plans (
    plan_id uuid PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now(),
    run_id uuid NOT NULL,
    actor text NOT NULL
);
"#,
    ),
];

/// Errors of PostgreSQL calls, with what was being done. They never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    // The messages below already hold the whole chain of the client error, so it is not also
    // exposed as `source` (which `{:#}` would print a second time).
    #[error("cannot connect to postgres at `{url}`: {}", describe(.error))]
    Connect {
        url: String,
        error: tokio_postgres::Error,
    },
    #[error("invalid database url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("postgres failed to {operation}: {}", describe(.error))]
    Query {
        operation: String,
        error: tokio_postgres::Error,
    },
    #[error("{0}")]
    Unexpected(String),
    #[error("refusing to use `{0}` as an SQL identifier")]
    Identifier(String),
    #[error("control schema version {found} is newer than this tenantctl knows ({known}); upgrade tenantctl")]
    TooNew { found: i32, known: i32 },
    #[error("could not take the apply lock within {waited:?}: held by {holder}")]
    LockTimeout { waited: Duration, holder: String },
}

/// The message of a server error (with its detail), or the client error with its causes, each
/// said once (tokio-postgres repeats its kind in the cause chain).
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        };
    }
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = current {
        let text = cause.to_string();
        // Display of an outer error often ends with its cause: keep only the new part.
        let own = match cause.source().map(|inner| inner.to_string()) {
            Some(inner) if text.ends_with(&inner) && text.len() > inner.len() => text
                [..text.len() - inner.len()]
                .trim_end_matches(": ")
                .to_string(),
            _ => text,
        };
        if parts.last() != Some(&own) && !own.is_empty() {
            parts.push(own);
        }
        current = cause.source();
    }
    parts.join(": ")
}

fn query_error(
    operation: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> PostgresError {
    let operation = operation.into();
    move |error| PostgresError::Query { operation, error }
}

/// Hides the password of a connection string, for every message and plan header.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        let had_password = parsed.password().is_some();
        if had_password {
            let _ = parsed.set_password(None);
        }
        let query: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(key, _)| key != "password")
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        let had_query_password = query.len() != parsed.query_pairs().count();
        if had_query_password {
            if query.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(query);
            }
        }
        let mut shown = parsed.to_string();
        if had_password || had_query_password {
            shown.push_str(" (password hidden)");
        }
        return shown;
    }
    // key=value form: drop the password pair whatever its quoting.
    let mut shown = Vec::new();
    let mut hidden = false;
    for pair in url.split_whitespace() {
        if pair.starts_with("password=") {
            hidden = true;
        } else {
            shown.push(pair);
        }
    }
    let mut shown = shown.join(" ");
    if hidden {
        shown.push_str(" (password hidden)");
    }
    shown
}

/// Double-quotes an identifier after checking it is a plain lowercase identifier of at most 63
/// bytes. Every name that tenantctl builds passes; anything else is refused, never escaped.
pub fn quote_ident(name: &str) -> Result<String, PostgresError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(format!("\"{name}\""))
    } else {
        Err(PostgresError::Identifier(name.to_string()))
    }
}

/// A connection to the database that holds the registry.
pub struct Postgres {
    pub client: Client,
    /// For display: the password removed.
    url: String,
    /// As given, password included, to open more sessions; never displayed (no `Debug`).
    connection_string: String,
}

impl Postgres {
    /// Connects; `purpose` ends up in `application_name`, so a blocked apply can name the holder
    /// of the lock.
    ///
    /// # Errors
    /// Invalid URL or connection failure (the message shows the URL without its password).
    pub async fn connect(url: &str, purpose: &str) -> Result<Self, PostgresError> {
        let shown = redact_url(url);
        let invalid = |reason: String| PostgresError::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        // sslmode/sslrootcert are handled here, with libpq's meanings (see `tls`).
        let tls = super::tls::split(url).map_err(invalid)?;
        let mut config: tokio_postgres::Config = tls
            .rest
            .parse()
            .map_err(|error: tokio_postgres::Error| invalid(error.to_string()))?;
        config.ssl_mode(super::tls::transport_mode(tls.mode));
        let connector = super::tls::connector(&tls).map_err(invalid)?;
        if config.get_application_name().is_none() {
            config.application_name(format!(
                "tenantctl {purpose} host={} pid={}",
                hostname(),
                std::process::id()
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let (client, connection) =
            config
                .connect(connector)
                .await
                .map_err(|error| PostgresError::Connect {
                    url: shown.clone(),
                    error,
                })?;
        tokio::spawn(async move {
            // The error surfaces on the next query of the client; nothing to do here.
            let _ = connection.await;
        });
        Ok(Postgres {
            client,
            url: shown,
            connection_string: url.to_string(),
        })
    }

    /// The connection string with the password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens another session to the same database (for parallel workers).
    pub async fn another(&self, purpose: &str) -> Result<Postgres, PostgresError> {
        Postgres::connect(&self.connection_string, purpose).await
    }

    /// Takes the session-level apply lock, polling until `timeout`.
    ///
    /// # Errors
    /// [`PostgresError::LockTimeout`] naming the session that holds it.
    pub async fn lock(&self, timeout: Duration) -> Result<(), PostgresError> {
        let started = std::time::Instant::now();
        loop {
            let row = self
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&APPLY_LOCK_KEY])
                .await
                .map_err(query_error("take the apply lock"))?;
            if row.get::<_, bool>(0) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let holder = self.lock_holder().await?;
                return Err(PostgresError::LockTimeout {
                    waited: timeout,
                    holder,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Tries once to take the session-level advisory lock `key`.
    pub async fn try_lock_key(&self, key: i64) -> Result<bool, PostgresError> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(query_error("take an advisory lock"))?;
        Ok(row.get(0))
    }

    /// True when the connection to the server is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Registry rows by status (empty before the first apply).
    pub async fn count_by_status(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, PostgresError> {
        if self.control_schema_version().await?.is_none() {
            return Ok(Default::default());
        }
        let rows = self
            .client
            .query(
                "SELECT status, count(*) FROM tenantctl.tenants GROUP BY status",
                &[],
            )
            .await
            .map_err(query_error("count tenants by status"))?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    /// Releases the apply lock (also released when the session ends).
    pub async fn unlock(&self) -> Result<(), PostgresError> {
        self.client
            .execute("SELECT pg_advisory_unlock($1)", &[&APPLY_LOCK_KEY])
            .await
            .map_err(query_error("release the apply lock"))?;
        Ok(())
    }

    /// Describes the session holding the apply lock: its application name (host and pid),
    /// address and start time.
    pub async fn lock_holder(&self) -> Result<String, PostgresError> {
        let rows = self
            .client
            .query(
                "SELECT a.application_name, coalesce(host(a.client_addr), 'local socket'), a.pid, a.backend_start \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295) AND l.objsubid = 1",
                &[&APPLY_LOCK_KEY],
            )
            .await
            .map_err(query_error("find the holder of the apply lock"))?;
        Ok(match rows.first() {
            Some(row) => {
                let application: String = row.get(0);
                let address: String = row.get(1);
                let pid: i32 = row.get(2);
                let started: DateTime<Utc> = row.get(3);
                format!(
                    "`{application}` (server pid {pid}, from {address}, connected since {})",
                    started.format("%Y-%m-%d %H:%M:%S UTC")
                )
            }
            None => "a session that has since released it".to_string(),
        })
    }

    /// Installed control schema version (`None` before the first apply).
    pub async fn control_schema_version(&self) -> Result<Option<i32>, PostgresError> {
        let row = self
            .client
            .query_one(
                "SELECT to_regclass('tenantctl.schema_migrations') IS NOT NULL",
                &[],
            )
            .await
            .map_err(query_error("look for the control schema"))?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        let row = self
            .client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM tenantctl.schema_migrations",
                &[],
            )
            .await
            .map_err(query_error("read the control schema version"))?;
        Ok(Some(row.get(0)))
    }

    /// Runs the pending control schema migrations, each in its own transaction. Call under the
    /// apply lock.
    ///
    /// # Errors
    /// A migration failed (it is rolled back) or the database is newer than this release.
    pub async fn migrate(&mut self) -> Result<Vec<i32>, PostgresError> {
        let current = self.control_schema_version().await?.unwrap_or(0);
        let known = MIGRATIONS.last().map(|(version, _)| *version).unwrap_or(0);
        if current > known {
            return Err(PostgresError::TooNew {
                found: current,
                known,
            });
        }
        let mut applied = Vec::new();
        for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > current) {
            let transaction = self
                .client
                .transaction()
                .await
                .map_err(query_error("begin a migration"))?;
            transaction
                .batch_execute(sql)
                .await
                .map_err(query_error(format!(
                    "migrate the control schema to version {version}"
                )))?;
            transaction
                .execute(
                    "INSERT INTO tenantctl.schema_migrations (version, tool_version) VALUES ($1, $2)",
                    &[version, &env!("CARGO_PKG_VERSION")],
                )
                .await
                .map_err(query_error("record a migration"))?;
            transaction
                .commit()
                .await
                .map_err(query_error("commit a migration"))?;
            applied.push(*version);
        }
        Ok(applied)
    }

    /// Reads the PostgreSQL half of the live state with a fixed number of queries, sent
    /// pipelined on one connection, whatever the number of tenants. Catalog queries are flat
    /// (one row per schema x table x column or grantee) and aggregated here: aggregating in SQL
    /// with `aclexplode` fell into nested loops on stale catalog statistics.
    pub async fn observe(&self, naming: &Naming) -> Result<ObservedState, PostgresError> {
        let client = &self.client;
        let schema_prefix = naming.schema_prefix.as_str();
        let role_prefix = naming.role_prefix.as_str();
        let version = self.control_schema_version().await?;
        let registry_query = async {
            if version.is_none() {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT id, uid, name, status, plan, config, protected, retention_days, suspend_reason, \
                            created_at, updated_at, suspended_at, deleted_at, purge_after \
                     FROM tenantctl.tenants",
                    &[],
                )
                .await
                .map_err(query_error("read the tenant registry"))
        };
        let (now, registry, schemas, schema_acl, columns, table_acl, roles) = futures_util::try_join!(
            async {
                client
                    .query_one("SELECT now()", &[])
                    .await
                    .map_err(query_error("read the server clock"))
            },
            registry_query,
            async {
                client
                    .query(
                        "SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text, \
                                coalesce(obj_description(n.oid, 'pg_namespace'), '') \
                         FROM pg_namespace n WHERE starts_with(n.nspname::text, $1)",
                        &[&schema_prefix],
                    )
                    .await
                    .map_err(query_error("list tenant schemas"))
            },
            async {
                client
                    .query(
                        "SELECT n.nspname::text, \
                                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, \
                                a.privilege_type \
                         FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a \
                         WHERE starts_with(n.nspname::text, $1)",
                        &[&schema_prefix],
                    )
                    .await
                    .map_err(query_error("read schema privileges"))
            },
            async {
                client
                    .query(
                        "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                                format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                                pg_get_expr(d.adbin, d.adrelid), \
                                coalesce(a.attnum = ANY (i.indkey), false) \
                         FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
                         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                         WHERE starts_with(n.nspname::text, $1) AND c.relkind IN ('r', 'p')",
                        &[&schema_prefix],
                    )
                    .await
                    .map_err(query_error("read tenant tables"))
            },
            async {
                client
                    .query(
                        "SELECT n.nspname::text, c.relname::text, \
                                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, \
                                a.privilege_type \
                         FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         CROSS JOIN LATERAL aclexplode(c.relacl) a \
                         WHERE starts_with(n.nspname::text, $1) AND c.relkind IN ('r', 'p')",
                        &[&schema_prefix],
                    )
                    .await
                    .map_err(query_error("read table privileges"))
            },
            async {
                client
                    .query(
                        "SELECT r.rolname::text, r.rolcanlogin, \
                                coalesce(shobj_description(r.oid, 'pg_authid'), '') \
                         FROM pg_roles r WHERE starts_with(r.rolname::text, $1)",
                        &[&role_prefix],
                    )
                    .await
                    .map_err(query_error("list tenant roles"))
            },
        )?;

        let mut state = ObservedState {
            server_time: now.get(0),
            control_schema_version: version,
            ..ObservedState::default()
        };
        for row in registry {
            let status: String = row.get(3);
            let id: String = row.get(0);
            let status = LiveStatus::parse(&status).ok_or_else(|| {
                PostgresError::Unexpected(format!(
                    "registry row `{id}` has unknown status `{status}`"
                ))
            })?;
            state.registry.insert(
                id.clone(),
                RegistryRow {
                    id,
                    uid: row.get(1),
                    name: row.get(2),
                    status,
                    plan: row.get(4),
                    config: row.get(5),
                    protected: row.get(6),
                    retention_days: row.get(7),
                    suspend_reason: row.get(8),
                    created_at: row.get(9),
                    updated_at: row.get(10),
                    suspended_at: row.get(11),
                    deleted_at: row.get(12),
                    purge_after: row.get(13),
                },
            );
        }
        for row in schemas {
            state.schemas.insert(
                row.get(0),
                ObservedSchema {
                    owner: row.get(1),
                    comment: row.get(2),
                    ..ObservedSchema::default()
                },
            );
        }
        for row in schema_acl {
            let schema: String = row.get(0);
            if let Some(entry) = state.schemas.get_mut(&schema) {
                entry
                    .privileges
                    .entry(row.get(1))
                    .or_default()
                    .insert(row.get(2));
            }
        }
        for row in columns {
            let schema: String = row.get(0);
            if let Some(entry) = state.schemas.get_mut(&schema) {
                entry.tables.entry(row.get(1)).or_default().columns.insert(
                    row.get(2),
                    ObservedColumn {
                        data_type: row.get(3),
                        not_null: row.get(4),
                        default: row.get(5),
                        primary_key: row.get(6),
                    },
                );
            }
        }
        for row in table_acl {
            let schema: String = row.get(0);
            let table: String = row.get(1);
            if let Some(entry) = state
                .schemas
                .get_mut(&schema)
                .and_then(|schema| schema.tables.get_mut(&table))
            {
                entry
                    .privileges
                    .entry(row.get(2))
                    .or_default()
                    .insert(row.get(3));
            }
        }
        for row in roles {
            state.roles.insert(
                row.get(0),
                ObservedRole {
                    can_login: row.get(1),
                    comment: row.get(2),
                },
            );
        }
        Ok(state)
    }
}

/// The SQL of one PostgreSQL step. Identifiers are validated and quoted; the only literal is the
/// fixed management marker.
pub fn step_sql(step: &Step) -> Result<Option<String>, PostgresError> {
    let table_name = |schema: &str, table: &str| -> Result<String, PostgresError> {
        if table != CONVERSATIONS_TABLE {
            return Err(PostgresError::Identifier(table.to_string()));
        }
        Ok(format!("{}.{}", quote_ident(schema)?, quote_ident(table)?))
    };
    let marker = MANAGED_COMMENT;
    Ok(Some(match step {
        Step::CreateSchema { schema } => {
            let schema = quote_ident(schema)?;
            format!(
                "CREATE SCHEMA {schema}; COMMENT ON SCHEMA {schema} IS '{marker}'; REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;"
            )
        }
        Step::CreateTable { schema, table } => {
            let table = table_name(schema, table)?;
            format!(
                "CREATE TABLE {table} (id uuid PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), messages jsonb NOT NULL DEFAULT '[]'::jsonb); REVOKE ALL ON TABLE {table} FROM PUBLIC;"
            )
        }
        Step::AddColumn {
            schema,
            table,
            column,
        } => {
            let table = table_name(schema, table)?;
            let definition = match column.as_str() {
                // Existing rows need a value, hence the default on a re-added key column.
                "id" => "id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY",
                "created_at" => "created_at timestamptz NOT NULL DEFAULT now()",
                "messages" => "messages jsonb NOT NULL DEFAULT '[]'::jsonb",
                other => return Err(PostgresError::Identifier(other.to_string())),
            };
            format!("ALTER TABLE {table} ADD COLUMN {definition};")
        }
        Step::CreateRole { role } => {
            let role = quote_ident(role)?;
            format!("CREATE ROLE {role} NOLOGIN; COMMENT ON ROLE {role} IS '{marker}';")
        }
        Step::DisableRoleLogin { role } => format!("ALTER ROLE {} NOLOGIN;", quote_ident(role)?),
        Step::RevokeSchemaFromPublic { schema } => {
            format!("REVOKE ALL ON SCHEMA {} FROM PUBLIC;", quote_ident(schema)?)
        }
        Step::RevokeTableFromPublic { schema, table } => {
            format!(
                "REVOKE ALL ON TABLE {} FROM PUBLIC;",
                table_name(schema, table)?
            )
        }
        Step::GrantSchemaUsage { schema, role } => format!(
            "GRANT USAGE ON SCHEMA {} TO {};",
            quote_ident(schema)?,
            quote_ident(role)?
        ),
        Step::RevokeSchemaUsage { schema, role } => format!(
            "REVOKE ALL ON SCHEMA {} FROM {};",
            quote_ident(schema)?,
            quote_ident(role)?
        ),
        Step::GrantTablePrivileges {
            schema,
            table,
            role,
        } => format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {} TO {};",
            table_name(schema, table)?,
            quote_ident(role)?
        ),
        // Purge only: the planner emits these for managed resources of a soft-deleted tenant
        // whose retention elapsed by the server's clock.
        Step::DropSchema { schema } => format!("DROP SCHEMA {} CASCADE;", quote_ident(schema)?),
        Step::DropRole { role } => format!("DROP ROLE {};", quote_ident(role)?),
        Step::InsertRegistry
        | Step::UpdateRegistry
        | Step::SoftDeleteRegistry { .. }
        | Step::DeleteRegistry
        | Step::ExportBackup { .. }
        | Step::DeleteBackups
        | Step::CreateCollection { .. }
        | Step::UpdateCollectionMetadata { .. }
        | Step::DeleteCollection { .. } => return Ok(None),
    }))
}

/// Inserts a registry row; returns the uid the database assigned.
pub async fn insert_registry(
    client: &impl GenericClient,
    tenant: &str,
    record: &RegistryRecord,
) -> Result<Uuid, PostgresError> {
    let config = serde_json::to_value(&record.config).expect("config serializes");
    let retention = record.retention_days as i32;
    let row = client
        .query_one(
            "INSERT INTO tenantctl.tenants \
                 (id, name, status, plan, config, protected, retention_days, suspend_reason, activated_at, suspended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     CASE WHEN $3 = 'active' THEN now() END, CASE WHEN $3 = 'suspended' THEN now() END) \
             RETURNING uid",
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
        .map_err(query_error(format!("insert the registry row of `{tenant}`")))?;
    Ok(row.get(0))
}

/// Updates a registry row to `record`, stamping the transition times of a status change with
/// the server's clock; `purge_after` is `deleted_at` plus the record's retention period.
pub async fn update_registry(
    client: &impl GenericClient,
    tenant: &str,
    record: &RegistryRecord,
) -> Result<(), PostgresError> {
    let config = serde_json::to_value(&record.config).expect("config serializes");
    let retention = record.retention_days as i32;
    let updated = client
        .execute(
            "UPDATE tenantctl.tenants SET \
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
             WHERE id = $1",
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
        .map_err(query_error(format!("update the registry row of `{tenant}`")))?;
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
    let retention = retention_days as i32;
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

/// Exact row counts of tenant tables, in one round trip: `(schema, table) -> rows`.
pub async fn count_rows(
    client: &impl GenericClient,
    tables: &[(String, String)],
) -> Result<Vec<i64>, PostgresError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::with_capacity(tables.len());
    for (index, (schema, table)) in tables.iter().enumerate() {
        parts.push(format!(
            "SELECT {index} AS i, count(*) AS n FROM {}.{}",
            quote_ident(schema)?,
            quote_ident(table)?
        ));
    }
    let sql = format!("{} ORDER BY i", parts.join(" UNION ALL "));
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(query_error("count the rows at risk"))?;
    Ok(rows.iter().map(|row| row.get::<_, i64>(1)).collect())
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

/// Appends an event; inside the tenant's transaction, so it exists iff the change committed.
pub async fn insert_event(
    client: &impl GenericClient,
    event: &Event<'_>,
) -> Result<(), PostgresError> {
    client
        .execute(
            "INSERT INTO tenantctl.events \
                 (run_id, actor, tenant_id, tenant_uid, action, status_before, status_after, reason, changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .map_err(query_error(format!("record the event of `{}`", event.tenant)))?;
    Ok(())
}

/// Who is running tenantctl, for events: `TENANTCTL_ACTOR` if set, else the CI job
/// (`github:octocat run 123`, `gitlab:alice pipeline 456`), else `user@host`.
pub fn actor() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let Some(actor) = var("TENANTCTL_ACTOR") {
        return actor;
    }
    if let Some(user) = var("GITHUB_ACTOR") {
        let run = var("GITHUB_RUN_ID").unwrap_or_default();
        return format!("github:{user} run {run}").trim_end().to_string();
    }
    if let Some(user) = var("GITLAB_USER_LOGIN") {
        let pipeline = var("CI_PIPELINE_ID").unwrap_or_default();
        return format!("gitlab:{user} pipeline {pipeline}")
            .trim_end()
            .to_string();
    }
    local_actor()
}

fn local_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{}", hostname())
}

/// The machine's host name, best effort.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}
