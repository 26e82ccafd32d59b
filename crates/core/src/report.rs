//! What an apply did, as plain data: the renderers write it, `apply` fills it.

use crate::plan::Action;
use serde::Serialize;
use uuid::Uuid;

/// How one tenant ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum TenantOutcome {
    /// Every step committed.
    Applied,
    /// A step failed; the transaction rolled back and Chroma steps were undone.
    RolledBack {
        reason: String,
        /// Chroma steps that were undone.
        undone: Vec<String>,
        /// Chroma steps whose undo failed: what an operator must clean up by hand.
        undo_failed: Vec<String>,
    },
    /// A conflict in the plan kept tenantctl away from this tenant.
    Blocked { reason: String },
    /// The tenant's transaction committed, then a migration that runs outside it (a
    /// `-- tenantctl: no-transaction` one, or one after that) failed: what committed stays,
    /// and the next apply resumes the migrations where they stopped.
    Unfinished { reason: String },
}

/// The outcome of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantResult {
    pub tenant: String,
    pub actions: Vec<Action>,
    #[serde(flatten)]
    pub outcome: TenantOutcome,
    /// Times the tenant was tried again in this run after its migrations hit the lock timeout
    /// (an application held one of its tables).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ApplyReport {
    pub run_id: Option<Uuid>,
    /// Control schema versions migrated by this run.
    pub migrated: Vec<i32>,
    pub tenants: Vec<TenantResult>,
    /// Tenants not started because the run stopped early.
    pub not_started: usize,
    /// Which ones, in plan order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_started_tenants: Vec<String>,
    /// Why the run stopped before the end (a signal, a server gone, repeated failures of one
    /// server, the run timeout), in one line; `None` when it ran to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Problems that did not stop the run, e.g. fewer parallel sessions than asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Leftover partial backups removed before the tenants were applied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleaned: Vec<String>,
    /// Retries of tenants whose migrations hit the lock timeout, in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// The canary: tenants applied first, before any other started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<String>,
}

impl ApplyReport {
    /// True when any tenant failed or was blocked, or the run stopped early.
    pub fn failed(&self) -> bool {
        self.stopped.is_some()
            || self
                .tenants
                .iter()
                .any(|tenant| tenant.outcome != TenantOutcome::Applied)
    }

    pub fn applied(&self) -> usize {
        self.tenants
            .iter()
            .filter(|tenant| tenant.outcome == TenantOutcome::Applied)
            .count()
    }
}
