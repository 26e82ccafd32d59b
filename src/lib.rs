//! tenantctl: declarative tenants for multi-tenant SaaS and LLM applications.
//!
//! YAML files describe the desired tenants; tenantctl reads the live state of PostgreSQL and
//! Chroma, plans the difference terraform-style and applies it tenant by tenant.
//!
//! # Map
//!
//! A pure core, I/O at the edges. Start with [`plan::diff`].
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`spec`] | the YAML model: loading a directory with file/line/column for every error, validation, config merging | reads files |
//! | [`observed`] | the live state as plain data (registry rows, schemas, grants, roles, collections) | none |
//! | [`plan`] | `diff(desired, observed, options) -> Plan`: actions, field changes, drift, conflicts, steps | none |
//! | [`render`] | text and JSON writers of plans and apply reports | none |
//! | [`backend`] | PostgreSQL (migrations, lock, batched introspection, step SQL) and Chroma (HTTP API v2) | network |
//! | [`apply`] | runs a plan: per-tenant transaction, Chroma steps in its window, compensation on failure, events | network |
//! | [`commands`] | one thin function per subcommand: flags in, one operation, output out | stdout/stderr |
//! | [`cli`] | clap definitions of commands, flags and environment variables | none |
//! | [`error`] | exit codes as data | none |
//!
//! Dependency rule: `spec`, `observed`, `plan` and `render` never import tokio, tokio-postgres,
//! reqwest or notify.

pub mod apply;
pub mod backend;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod error;
pub mod observed;
pub mod plan;
pub mod render;
pub mod saved;
pub mod spec;
#[cfg(test)]
mod test_support;
pub mod watch;
