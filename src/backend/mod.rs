//! I/O at the edge: PostgreSQL and Chroma clients, live-state observation and the execution of
//! single steps. Everything above this module sees plain data.

pub mod chroma;
pub mod postgres;

use crate::observed::ObservedState;
use crate::plan::Naming;
use chroma::{ChromaClient, ChromaError};
use postgres::{Postgres, PostgresError};

/// A failure of either backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Chroma(#[from] ChromaError),
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
