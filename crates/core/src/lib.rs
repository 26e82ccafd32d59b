//! The pure core of tenantctl: what the files ask for, what the servers hold, the plan between
//! them, and how plans and apply reports read. Data in, data out: no network, no clock of its
//! own (the planner uses the database server's), no terminal. The only I/O is reading the tenant
//! files in [`spec`].
//!
//! A crate of its own so that the compiler keeps the dependency rule: nothing here can import
//! tokio, tokio-postgres, reqwest or notify, nor the modules of `tenantctl` that do.
//!
//! | module | owns |
//! |---|---|
//! | [`spec`] | the YAML model: loading a directory with file/line/column for every error, limits on hostile input, validation, config merging, the directory fingerprint |
//! | [`observed`] | the live state as plain data |
//! | [`plan`] | `diff(desired, observed, options) -> Plan`, steps, drift, conflicts, refusals |
//! | [`render`] | text, JSON and Markdown writers of plans and apply reports |
//! | [`report`] | what an apply did |
//! | [`saved`] | saved plans: format, signature, comparison with a plan derived again |

pub mod observed;
pub mod plan;
pub mod render;
pub mod report;
pub mod saved;
pub mod spec;
#[cfg(test)]
mod test_support;
