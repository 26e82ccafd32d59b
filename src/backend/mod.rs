//! I/O at the edge: PostgreSQL and Chroma clients, live-state observation and the execution of
//! single steps. Everything above this module sees plain data.

pub mod chroma;
pub mod postgres;
pub mod tls;

use crate::observed::ObservedState;
use crate::plan::{Action, DataAtRisk, Naming, Plan};
use chroma::{ChromaClient, ChromaError};
use futures_util::{StreamExt, TryStreamExt};
use postgres::{Postgres, PostgresError};
use std::path::Path;

/// A failure of either backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Chroma(#[from] ChromaError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

/// Reads the whole live state: PostgreSQL catalogs and registry, then every Chroma collection
/// of the configured database. Both run concurrently; the cost does not depend on the number of
/// tenants beyond the size of the result sets and the number of listing pages.
///
/// # Errors
/// Either backend is unreachable or answers unexpectedly; nothing was changed.
pub async fn observe(
    postgres: &Postgres,
    chroma: &ChromaClient,
    naming: &Naming,
) -> Result<ObservedState, BackendError> {
    let (state, collections) = tokio::join!(postgres.observe(naming), chroma.list_collections());
    let mut state = state?;
    state.collections = collections?;
    Ok(state)
}

/// Measures what each delete and purge of `plan` puts at risk: exact rows in the tenant's
/// tables (one query for all of them), records in its collection (one request per collection
/// at risk) and, for purges, the backups on disk. Only destructive changes pay for this.
///
/// # Errors
/// A backend failed while counting; the plan itself is unchanged.
pub async fn measure_at_risk(
    plan: &mut Plan,
    observed: &ObservedState,
    postgres: &Postgres,
    chroma: &ChromaClient,
    naming: &Naming,
    backup_root: &Path,
) -> Result<(), BackendError> {
    let at_risk: Vec<usize> = plan
        .changes
        .iter()
        .enumerate()
        .filter(|(_, change)| {
            !change.blocked && change.actions.iter().any(|action| action.is_destructive())
        })
        .map(|(index, _)| index)
        .collect();
    if at_risk.is_empty() {
        return Ok(());
    }
    let mut tables = Vec::new();
    let mut owners = Vec::new();
    for &index in &at_risk {
        let schema = naming.schema(&plan.changes[index].tenant);
        if let Some(live) = observed.schemas.get(&schema) {
            for table in live.tables.keys() {
                tables.push((schema.clone(), table.clone()));
                owners.push(index);
            }
        }
    }
    let counts = postgres::count_rows(&postgres.client, &tables).await?;
    let mut rows: std::collections::HashMap<usize, u64> = Default::default();
    for (owner, count) in owners.iter().zip(&counts) {
        *rows.entry(*owner).or_default() += u64::try_from(*count).unwrap_or(0);
    }
    // Chroma has no batch count: one request per collection at risk, a few in flight at once.
    let collections: Vec<(usize, String)> = at_risk
        .iter()
        .filter_map(|&index| {
            observed
                .collections
                .get(&naming.collection(&plan.changes[index].tenant))
                .map(|collection| (index, collection.id.clone()))
        })
        .collect();
    let records: std::collections::HashMap<usize, u64> =
        futures_util::stream::iter(collections.into_iter().map(|(index, id)| async move {
            chroma.count_records(&id).await.map(|count| (index, count))
        }))
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for &index in &at_risk {
        let change = &plan.changes[index];
        let mut risk = DataAtRisk::default();
        if observed
            .schemas
            .contains_key(&naming.schema(&change.tenant))
        {
            risk.rows = Some(rows.get(&index).copied().unwrap_or(0));
        }
        risk.records = records.get(&index).copied();
        if change.actions.contains(&Action::Purge) {
            if let Some(uid) = change.uid {
                let usage = crate::backup::usage(backup_root, &change.tenant, uid)?;
                risk.backup_files = usage.files;
                risk.backup_bytes = usage.bytes;
            }
        }
        plan.changes[index].at_risk = Some(risk);
    }
    Ok(())
}
