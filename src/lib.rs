//! tenantctl: declarative tenants for multi-tenant SaaS and LLM applications.
//!
//! YAML files describe the desired tenants; tenantctl reads the live state of PostgreSQL and
//! Chroma, plans the difference terraform-style and applies it tenant by tenant, atomically.
//!
//! # Map
//!
//! One way through: `spec` (desired) and `observed` (live) go into [`plan::diff`], whose
//! [`plan::Plan`] is rendered ([`render`]) or carried out ([`apply`]). Start with
//! [`plan::diff`]; then [`reconcile::locked_apply`] for the one operation `apply` and `watch`
//! share, and [`apply::run`] for how a plan is carried out.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`spec`] | the YAML model: loading a directory with file/line/column for every error, limits on hostile input, validation, config merging, the directory fingerprint; the tenant-schema migrations (`spec::migrations`) and the SQL lexer that splits them, refuses what escapes a transaction and checks the index builds of a no-transaction migration (`spec::sql`) | reads files |
//! | [`observed`] | the live state as plain data (registry, schemas and every grant in them, their shapes, the migration history, the reference shape the migrations make, roles with attributes, memberships and ownership, collections, backup folders) | none |
//! | [`plan`] | `diff(desired, observed, options) -> Plan`: actions, field changes, drift (privileges in `plan::privileges`), pending migrations, the history rules, migrations that drop or rewrite data and the canary (`plan::migrations`, `plan::diff`), credentials (`plan::credentials`: login, connection limit, passwords, API keys, rotation), conflicts, refusals, orphans, backup leftovers, and [`plan::Step`], each carrying the data it needs | none |
//! | [`render`] | text (terraform style), JSON (versioned) and Markdown (a pull-request comment laid out risk first to fit a size, the caller's marker and footer included) writers of plans and apply reports | none |
//! | [`report`] | what an apply did, as plain data | none |
//! | [`saved`] | saved plans: format, signature, comparison with the plan derived again at apply time | none |
//! | [`backend`] | PostgreSQL (connection and its display, the session pool (deadpool) every worker and reader takes from, locks, control-schema migrations, batched introspection, schema shapes (`shape`), the reference built in a rolled-back transaction (`reference`), DDL text, registry rows and migration history, credentials and `tenantctl.authenticate` (`credentials`), ACL items (`acl`)) and Chroma (HTTP API v2, collections listed in pages decoded as they arrive) | network |
//! | [`secrets`] | generated passwords (with their SCRAM verifiers) and API keys, a [`secrets::Secret`] that never prints, and the one sink they go to (`--secrets-dir` or `--secrets-command`) | files, processes |
//! | [`backup`] | final backups at soft delete (streamed, read back and checked, manifest last), their inventory, deletion at purge; one [`backup::BackupStore`] over a local folder or an object store (`backup::object`: S3, GCS, Azure through `object_store`) | files, network |
//! | [`reconcile`] | the whole live state, the plan with what is at risk, and lock -> plan -> check -> apply -> unlock | network, files |
//! | [`apply`] | runs a plan: the one step executor (`apply::steps`; one tenant's transaction from begin to commit in `apply::steps::transaction`; migrations statement by statement, verified against the reference before commit; a `-- tenantctl: no-transaction` migration and what follows it after the commit, statement by statement, resumable (`apply::steps::online`)), per-tenant transaction, compensation, the worker queue (canary first, lock-timeout retries with backoff, `--on-error`), the run's per-tenant state, stop rules and bounds, crash failpoints in test builds | network, files |
//! | [`watch`] | the reconciler loop: debounced file events, interval, leader lock, backoff, signals, metrics endpoint | files, network |
//! | [`progress`] | what a person watches while apply and watch work: a bar on a terminal, a line every 5 s or 10 % without one, on standard error, never with `--quiet` | stderr |
//! | [`commands`] | one thin function per subcommand: flags in, one operation, output out | stdout/stderr |
//! | [`cli`] | clap definitions of commands, flags and environment variables | none |
//! | [`actor`] | who runs tenantctl (CI variables, user and host), for events and lock holders | environment |
//! | [`error`] | exit codes and the error a user reads | none |
//!
//! Dependency rule: `spec`, `observed`, `plan`, `render`, `report` and `saved` never import
//! tokio, tokio-postgres, reqwest or notify, nor any module of the table below them. They are
//! the crate `tenantctl-core` (`crates/core`), re-exported here under their names, so the
//! compiler keeps the rule: the core cannot name what it does not depend on.

pub mod actor;
pub mod apply;
pub mod backend;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod error;
pub mod progress;
pub mod reconcile;
pub mod secrets;
pub mod watch;

// The pure core lives in the `tenantctl-core` crate; its modules appear here under their
// usual names.
pub use tenantctl_core::{observed, plan, render, report, saved, spec};
