//! I/O at the edge: the PostgreSQL and Chroma clients and their half of the live state.
//! Everything above this module sees plain data.

pub mod chroma;
pub mod postgres;
pub mod tls;

use crate::observed::ObservedState;
use crate::plan::Naming;
use chroma::{ChromaClient, ChromaError};
use postgres::{Postgres, PostgresError};

/// At most the scheme and host of a URL that did not parse, as `scheme://host/…`, or `None`
/// when it is not `scheme://...` at all. A password may hold `@`, `/` or `:` unencoded, so the
/// host is what follows the last `@`, up to the first character a host name cannot hold; no
/// other part of the input is ever shown.
pub(crate) fn scheme_and_host(input: &str) -> Option<String> {
    let (scheme, rest) = input.split_once("://")?;
    let scheme = if !scheme.is_empty()
        && scheme.len() <= 16
        && scheme.chars().all(|c| c.is_ascii_alphanumeric())
    {
        scheme
    } else {
        "?"
    };
    let after_at = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host: String = after_at
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(253)
        .collect();
    Some(format!("{scheme}://{host}/…"))
}

/// A failure of either server.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Chroma(#[from] ChromaError),
}

/// Reads the live state of both servers: PostgreSQL catalogs and registry, every Chroma
/// collection of the configured database and whether that database exists. Both run
/// concurrently; the cost does not depend on the number of tenants beyond the size of the
/// result sets and the number of listing pages.
///
/// # Errors
/// Either server is unreachable or answers unexpectedly; nothing was changed.
pub async fn observe(
    postgres: &Postgres,
    chroma: &ChromaClient,
    naming: &Naming,
    app_role: Option<&str>,
) -> Result<ObservedState, BackendError> {
    let (state, collections, scope) = tokio::join!(
        postgres.observe(naming, app_role),
        chroma.list_collections(),
        chroma.scope()
    );
    let mut state = state?;
    state.collections = collections?;
    state.chroma_scope = scope?;
    Ok(state)
}
