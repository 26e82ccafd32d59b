//! tenantctl: declarative tenants for multi-tenant SaaS and LLM applications.
//!
//! YAML files describe the desired tenants; tenantctl reads the live state of PostgreSQL and
//! Chroma, plans the difference terraform-style and applies it tenant by tenant, atomically.
//!
//! # Map
//!
//! A pure core, I/O at the edges. Start with [`plan::diff`]; then [`apply::run`] for how a plan
//! is carried out, and [`watch`] for the long-running loop around both.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`spec`] | the YAML model: loading a directory with file/line/column for every error, validation, config merging, the directory fingerprint | reads files |
//! | [`observed`] | the live state as plain data (registry rows, schemas, grants, roles, collections) | none |
//! | [`plan`] | `diff(desired, observed, options) -> Plan`: actions (create ... purge), field changes, drift, conflicts, refusals (protected, `--max-deletes`), orphans, concrete steps | none |
//! | [`render`] | text (terraform style), JSON (versioned) and Markdown (pull-request comment) writers of plans and apply reports | none |
//! | [`saved`] | saved plans: format, fingerprints of files and live state, staleness | none |
//! | [`backend`] | PostgreSQL (migrations, locks, batched introspection, step SQL) and Chroma (HTTP API v2); measuring data at risk | network |
//! | [`backup`] | final backups at soft delete (CSV per table, JSON lines of records, manifest) and their deletion at purge | files, network |
//! | [`apply`] | runs a plan: per-tenant transaction, Chroma steps in its window, compensation on failure, events | network |
//! | [`watch`] | the reconciler loop: debounced file events, interval, leader lock, backoff, signals, metrics endpoint | files, network |
//! | [`commands`] | one thin function per subcommand: flags in, one operation, output out | stdout/stderr |
//! | [`cli`] | clap definitions of commands, flags and environment variables | none |
//! | [`error`] | exit codes as data | none |
//!
//! Dependency rule: `spec`, `observed`, `plan`, `render` and `saved` never import tokio,
//! tokio-postgres, reqwest or notify.

pub mod actor;
pub mod apply;
pub mod backend;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod error;
pub mod observed;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod saved;
pub mod spec;
#[cfg(test)]
mod test_support;
pub mod watch;
