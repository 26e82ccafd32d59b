//! The control schema `tenantctl`: versioned migrations, one `.sql` file each, run in order
//! under the apply lock. Never edit a released file; add the next one.

use super::{query_error, Postgres, PostgresError};

/// Control schema migrations, in order. Each runs once, in its own transaction.
pub const MIGRATIONS: [(i32, &str); 8] = [
    (1, include_str!("sql/0001_registry_and_events.sql")),
    (2, include_str!("sql/0002_applied_plans.sql")),
    (3, include_str!("sql/0003_truncate_guard_and_uid_index.sql")),
    (4, include_str!("sql/0004_tenant_migrations.sql")),
    (5, include_str!("sql/0005_credentials.sql")),
    (6, include_str!("sql/0006_schema_fingerprints.sql")),
    (7, include_str!("sql/0007_migration_runs.sql")),
    (8, include_str!("sql/0008_migration_statements.sql")),
];

impl Postgres {
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_planner_knows_the_latest_version() {
        let versions: Vec<i32> = super::MIGRATIONS.iter().map(|(v, _)| *v).collect();
        let expected: Vec<i32> = (1..=crate::plan::CONTROL_SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }
}
