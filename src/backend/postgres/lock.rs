//! The advisory locks: the apply lock serializes applies (command line and watchers) on one
//! database; the leader lock picks the one `watch --apply` process that applies.

use super::{query_error, Postgres, PostgresError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Advisory lock key that serializes applies on one database ("tena" in ASCII). Advisory locks
/// are scoped to the current database, so registries in separate databases do not contend.
pub const APPLY_LOCK_KEY: i64 = 0x7465_6e61;

/// Advisory lock key held for its whole life by the `watch --apply` process that leads ("tenb").
/// It is session-level: it goes away with the leader's connection, and a standby takes it.
pub const LEADER_LOCK_KEY: i64 = 0x7465_6e62;

impl Postgres {
    /// Takes the session-level apply lock, polling until `timeout`.
    ///
    /// # Errors
    /// [`PostgresError::LockTimeout`] naming the session that holds it.
    pub async fn lock(&self, timeout: Duration) -> Result<(), PostgresError> {
        let started = std::time::Instant::now();
        loop {
            if self.try_lock_key(APPLY_LOCK_KEY).await? {
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

    /// Releases the apply lock. A session that is gone released it already: that is not an
    /// error worth reporting over whatever closed it.
    pub async fn unlock(&self) -> Result<(), PostgresError> {
        if self.is_closed() {
            return Ok(());
        }
        let unlock = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&APPLY_LOCK_KEY]);
        // Bounded like everything else: a server that stopped answering keeps the lock only
        // as long as it keeps the connection.
        match tokio::time::timeout(Duration::from_secs(10), unlock).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.is_closed() => Ok(()),
            Ok(Err(error)) => Err(query_error("release the apply lock")(error)),
            Err(_) => {
                self.give_up();
                Ok(())
            }
        }
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
}
