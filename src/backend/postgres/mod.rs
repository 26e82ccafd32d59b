//! PostgreSQL: the connection and its display, and one file per concern:
//!
//! | file | owns |
//! |---|---|
//! | [`lock`] | the advisory locks: apply lock (one apply at a time) and leader lock (`watch`) |
//! | [`migrations`] | the control schema, versioned `.sql` files run in order under the apply lock |
//! | [`observe`] | the PostgreSQL half of the live state, in a fixed number of flat catalog queries |
//! | [`shape`] | the objects of schemas as migrations define them, for comparison |
//! | [`reference`] | the expected shape of a tenant schema, built from the migrations and rolled back |
//! | [`ddl`] | the SQL text of every DDL step (identifiers validated and quoted, nothing bound) |
//! | [`registry`] | rows of the control schema: registry, events, applied plans, rows at risk |
//!
//! Identifiers reach SQL only through [`quote_ident`] (names tenantctl builds: refused unless
//! plain) or [`quote_catalog_ident`] (names read back from the catalogs: escaped); values are
//! always bound parameters.

pub mod acl;
pub mod credentials;
pub mod ddl;
pub mod lock;
pub mod migrations;
pub mod observe;
pub mod reference;
pub mod registry;
pub mod shape;
mod target;

pub use lock::{APPLY_LOCK_KEY, LEADER_LOCK_KEY};
pub use target::{redact_url, tenant_url, Target, TenantUrls};

use std::time::Duration;
use tokio_postgres::Client;

/// Errors of PostgreSQL calls, with what was being done. They never contain the password.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    // The messages below already hold the whole chain of the client error, so it is not also
    // exposed as `source` (which `{:#}` would print a second time).
    #[error("cannot connect to postgres at `{url}`: {}", error_text(.error))]
    Connect {
        url: String,
        error: tokio_postgres::Error,
    },
    #[error("invalid database url {shown}: {reason}")]
    InvalidUrl { shown: String, reason: String },
    #[error("postgres failed to {operation}: {}", error_text(.error))]
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
    #[error("could not take the apply lock within {}: held by {holder}", humantime::format_duration(*.waited))]
    LockTimeout { waited: Duration, holder: String },
    #[error("postgres did not answer within {} while trying to {operation}; the session was given up", humantime::format_duration(*.waited))]
    Timeout { operation: String, waited: Duration },
}

impl PostgresError {
    /// True when the session is gone (server down, connection cut): nothing more can run on it.
    pub fn connection_lost(&self) -> bool {
        match self {
            PostgresError::Connect { .. } | PostgresError::Timeout { .. } => true,
            PostgresError::Query { error, .. } => error.is_closed() || is_fatal(error),
            _ => false,
        }
    }

    /// True when the server cancelled the statement: `statement_timeout`, `lock_timeout` or a
    /// cancel request (a stop signal).
    pub fn cancelled(&self) -> bool {
        match self {
            PostgresError::Query { error, .. } => error.code().is_some_and(|code| {
                *code == tokio_postgres::error::SqlState::QUERY_CANCELED
                    || *code == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE
            }),
            _ => false,
        }
    }
}

/// A server error that ends the session (administrator shutdown, crash of another backend).
fn is_fatal(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        matches!(db.severity(), "FATAL" | "PANIC") || db.code().code().starts_with("57P")
    })
}

/// The message of a server error (with its detail), or the client error with its causes, each
/// said once (tokio-postgres repeats its kind in the cause chain).
pub fn error_text(error: &tokio_postgres::Error) -> String {
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

pub(crate) fn query_error(
    operation: impl Into<String>,
) -> impl FnOnce(tokio_postgres::Error) -> PostgresError {
    let operation = operation.into();
    move |error| PostgresError::Query { operation, error }
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

/// Double-quotes a name read back from the catalogs (a grantee another administrator created,
/// say `"Reporting"`), doubling inner quotes as PostgreSQL's own `quote_ident` does. Names
/// tenantctl builds go through [`quote_ident`] instead.
pub fn quote_catalog_ident(name: &str) -> Result<String, PostgresError> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(PostgresError::Identifier(name.to_string()));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Bounds on a session's work, applied with `SET` when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `statement_timeout`: the longest one statement of tenant work may run.
    pub statement: Duration,
    /// `lock_timeout`: the longest a statement waits for a lock an application holds.
    pub lock: Duration,
}

impl Timeouts {
    /// What the client waits for any answer before it gives the session up: the server's own
    /// timeout plus a margin, so that a stopped or unreachable backend (which cannot enforce
    /// its own timeout) cannot stall the run.
    pub fn client_deadline(&self) -> Duration {
        self.statement + Duration::from_secs(5)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            statement: Duration::from_secs(300),
            lock: Duration::from_secs(10),
        }
    }
}

/// A connection to the database that holds the registry.
pub struct Postgres {
    pub client: Client,
    /// For display: the password removed.
    url: String,
    /// As given, password included, to open more sessions; never displayed (no `Debug`).
    connection_string: String,
    /// Cancels the running statement from another task (a stop signal).
    cancel: tokio_postgres::CancelToken,
    tls: super::tls::TlsSettings,
    /// Set when an answer did not come in time: the server may be stopped with our statement
    /// half-run, so the session is never used again (its locks go with the socket).
    given_up: std::sync::atomic::AtomicBool,
    /// Statements prepared on this session, by their text.
    prepared: std::sync::Mutex<std::collections::HashMap<&'static str, tokio_postgres::Statement>>,
    /// The other sessions of this process (workers, the plan's reader): `None` in a session
    /// that is itself one of them.
    sessions: Option<deadpool::managed::Pool<SessionManager>>,
}

/// A session taken from the pool; back to the pool when dropped (closed ones are discarded).
pub type Session = deadpool::managed::Object<SessionManager>;

/// Most sessions a process opens besides its own: `--parallelism` (at most 32) and the plan's
/// reader and reference builder.
const POOL_SIZE: usize = 34;

/// Opens the pooled sessions: same database, same credentials, same `application_name` as the
/// session that owns the pool, so a lock holder is named the same whichever session holds it.
/// No `Debug`: the connection string carries the password.
pub struct SessionManager {
    connection_string: String,
    purpose: String,
}

impl deadpool::managed::Manager for SessionManager {
    type Type = Postgres;
    type Error = PostgresError;

    async fn create(&self) -> Result<Postgres, PostgresError> {
        Postgres::open(&self.connection_string, &self.purpose).await
    }

    async fn recycle(
        &self,
        session: &mut Postgres,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<PostgresError> {
        // A session that lost its server, or was given up with a statement half-run, is never
        // handed out again. Anything else is as a transaction left it: tokio-postgres rolls
        // back a transaction dropped unfinished before the next statement runs.
        if session.is_closed() {
            return Err(deadpool::managed::RecycleError::message("session closed"));
        }
        Ok(())
    }
}

impl Postgres {
    /// Connects; `purpose` ends up in `application_name`, so a blocked apply can name the holder
    /// of the lock.
    ///
    /// # Errors
    /// Invalid URL or connection failure (the message shows the URL without its password).
    pub async fn connect(url: &str, purpose: &str) -> Result<Self, PostgresError> {
        let mut session = Postgres::open(url, purpose).await?;
        let manager = SessionManager {
            connection_string: url.to_string(),
            purpose: purpose.to_string(),
        };
        // Waits are bounded: opening a session by the connect timeout (10 s) below, waiting
        // for a free one by the pool's wait timeout.
        let pool = deadpool::managed::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(60)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| PostgresError::Unexpected(format!("session pool: {error}")))?;
        session.sessions = Some(pool);
        Ok(session)
    }

    /// Opens one session, without a pool of its own.
    async fn open(url: &str, purpose: &str) -> Result<Self, PostgresError> {
        let target = Target::parse(url)?;
        let Target {
            mut config,
            tls,
            shown,
        } = target;
        config.ssl_mode(super::tls::transport_mode(tls.mode));
        let connector = super::tls::connector(&tls).map_err(|error| PostgresError::InvalidUrl {
            shown: format!("`{shown}`"),
            reason: error.to_string(),
        })?;
        if config.get_application_name().is_none() {
            config.application_name(format!(
                "tenantctl {purpose} host={} pid={}",
                crate::actor::hostname(),
                std::process::id()
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A server that vanishes without closing the connection (a cut network, a frozen
        // host) is noticed by the kernel within a minute instead of hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
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
        let cancel = client.cancel_token();
        Ok(Postgres {
            client,
            url: shown,
            connection_string: url.to_string(),
            cancel,
            tls,
            given_up: Default::default(),
            prepared: Default::default(),
            sessions: None,
        })
    }

    /// The connection string with the password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What builds the URL a tenant role connects with (see [`tenant_url`]).
    pub fn tenant_urls(&self) -> TenantUrls {
        TenantUrls {
            connection_string: crate::secrets::Secret::from(self.connection_string.clone()),
        }
    }

    /// Another session to the same database (a parallel worker, the plan's reader), from this
    /// session's pool: opened the first time, reused afterwards (a `watch` reconciles every
    /// minute without reconnecting its workers, and their prepared statements stay).
    ///
    /// # Errors
    /// The session could not be opened, or none was free within a minute.
    pub async fn another(&self) -> Result<Session, PostgresError> {
        let Some(pool) = &self.sessions else {
            return Err(PostgresError::Unexpected(
                "a pooled session has no pool of its own".into(),
            ));
        };
        pool.get().await.map_err(|error| match error {
            deadpool::managed::PoolError::Backend(error) => error,
            deadpool::managed::PoolError::Timeout(_) => PostgresError::Unexpected(format!(
                "no PostgreSQL session came free within a minute (at most {POOL_SIZE} are open)"
            )),
            other => PostgresError::Unexpected(format!("session pool: {other}")),
        })
    }

    /// Closes the pooled sessions idle for longer than `idle`; a long-running `watch` keeps
    /// only what its reconciles use.
    pub fn close_idle(&self, idle: Duration) {
        if let Some(pool) = &self.sessions {
            pool.retain(|_, metrics| metrics.last_used() < idle);
        }
    }

    /// `sql` prepared once for this session: what a run writes for every tenant is parsed once,
    /// not once per tenant (a round trip each). Prepared statements outlive transactions.
    ///
    /// # Errors
    /// The server refused to prepare it.
    pub async fn prepared(
        &self,
        sql: &'static str,
    ) -> Result<tokio_postgres::Statement, PostgresError> {
        let cached = self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(sql)
            .cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self
            .client
            .prepare(sql)
            .await
            .map_err(query_error("prepare a statement"))?;
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sql, statement.clone());
        Ok(statement)
    }

    /// Something that cancels this session's running statement from another task.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            token: self.cancel.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Sets `statement_timeout` and `lock_timeout` for the rest of the session.
    ///
    /// # Errors
    /// The session is gone.
    pub async fn set_timeouts(&self, timeouts: Timeouts) -> Result<(), PostgresError> {
        // Integers of milliseconds, formatted by us: there is no input in this statement.
        let sql = format!(
            "SET statement_timeout = {}; SET lock_timeout = {};",
            timeouts.statement.as_millis().max(1),
            timeouts.lock.as_millis().max(1)
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(query_error("set the statement and lock timeouts"))
    }

    /// True when the connection to the server is gone, or was given up.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed() || self.given_up.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops using this session: an answer did not come in time.
    pub fn give_up(&self) {
        self.given_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
            .map(|row| {
                (
                    row.get::<_, String>(0),
                    u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                )
            })
            .collect())
    }

    /// Installed control schema version (`None` before the first apply).
    pub async fn control_schema_version(&self) -> Result<Option<i32>, PostgresError> {
        // Two statements: a query naming a missing table fails at parse time, whatever a
        // CASE around it says.
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
}

/// Cancels the statement running on one session (PostgreSQL's cancel request, sent on a
/// connection of its own).
#[derive(Clone)]
pub struct Canceller {
    token: tokio_postgres::CancelToken,
    tls: super::tls::TlsSettings,
}

impl Canceller {
    /// Sends the cancel request; best effort (the statement may have ended meanwhile).
    pub async fn cancel(&self) {
        if let Ok(connector) = super::tls::connector(&self.tls) {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), self.token.cancel_query(connector))
                    .await;
        }
    }
}

/// Runs `sql` and folds each row into `into` as it arrives (see [`mapped`]).
pub(crate) async fn fold<A>(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    operation: &str,
    mut into: A,
    mut step: impl FnMut(&mut A, &tokio_postgres::Row),
) -> Result<A, PostgresError> {
    use futures_util::TryStreamExt;
    let stream = client
        .query_raw(sql, params.iter().copied())
        .await
        .map_err(query_error(operation.to_string()))?;
    futures_util::pin_mut!(stream);
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(query_error(operation.to_string()))?
    {
        step(&mut into, &row);
    }
    Ok(into)
}

/// Runs `sql` and maps each row as it arrives: the rows themselves are never all held (at
/// 10,000 tenants they would be tens of MB), only what `map` keeps of them.
pub(crate) async fn mapped<T, S>(
    client: &impl tokio_postgres::GenericClient,
    sql: &S,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    operation: &str,
    mut map: impl FnMut(&tokio_postgres::Row) -> T,
) -> Result<Vec<T>, PostgresError>
where
    S: ?Sized + tokio_postgres::ToStatement + Sync + Send,
{
    use futures_util::TryStreamExt;
    let stream = client
        .query_raw(sql, params.iter().copied())
        .await
        .map_err(query_error(operation.to_string()))?;
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(query_error(operation.to_string()))?
    {
        out.push(map(&row));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_any_form() {
        for (input, shown) in [
            (
                "postgres://app:s3cret@db.internal:5432/saas",
                "postgres://app@db.internal:5432/saas (password hidden)",
            ),
            (
                "host=db user=app password = s3cret dbname=saas",
                "postgres://app@db:5432/saas (password hidden)",
            ),
            (
                "host=db user=app password='s3cret and more' dbname=saas",
                "postgres://app@db:5432/saas (password hidden)",
            ),
            (
                "postgres://app:s3cret@h1:5432,h2:5433/saas",
                "postgres://app@h1:5432,h2:5433/saas (password hidden)",
            ),
            (
                "postgres://app@db/saas?password=s3cret&sslmode=require",
                "postgres://app@db:5432/saas?sslmode=require (password hidden)",
            ),
            ("postgres://app@db/saas", "postgres://app@db:5432/saas"),
        ] {
            assert_eq!(redact_url(input), shown, "{input}");
        }
    }

    #[test]
    fn unparsable_strings_show_at_most_scheme_and_host() {
        for (input, shown) in [
            ("postgres://app:s3cret@db:54x2/saas", "`postgres://db/…`"),
            (
                "postgres://app:s3/cr@t@db:5432/saas?x=1",
                "`postgres://db/…`",
            ),
            (
                "postgres://app:s3cret@db/saas?sslmode=sometimes",
                "`postgres://db/…`",
            ),
            (
                "host=db PASSWORD=s3cret",
                "(a key=value connection string, not shown)",
            ),
            (
                "host=db password='s3cret",
                "(a key=value connection string, not shown)",
            ),
        ] {
            let error = Target::parse(input).err().expect(input).to_string();
            assert!(
                !error.contains("s3cret") && !error.contains("s3/cr"),
                "{error}"
            );
            assert!(error.contains(shown), "{input}: {error}");
            assert!(error.contains("expected `postgres://"), "{error}");
        }
    }

    #[test]
    fn catalog_names_are_escaped_not_refused() {
        assert_eq!(quote_catalog_ident("Reporting").unwrap(), "\"Reporting\"");
        assert_eq!(quote_catalog_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_catalog_ident("").is_err());
        assert!(quote_ident("Reporting").is_err());
    }
}
