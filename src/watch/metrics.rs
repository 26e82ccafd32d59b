//! What the watcher exposes on `/metrics`, `/healthz` and `/readyz`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Planned (and applied, if leader) without a failure.
    Success,
    /// A tenant failed, a safety rule refused the plan, or a backend failed.
    Failure,
    /// The directory did not validate; nothing was planned.
    Invalid,
    /// Another watcher leads; this one only waits.
    Standby,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Invalid => "invalid",
            Outcome::Standby => "standby",
        }
    }
}

/// Counters and gauges of one watcher process.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    reconciles: BTreeMap<Outcome, u64>,
    duration_sum: f64,
    duration_count: u64,
    last_duration: f64,
    changes_applied: u64,
    tenants: BTreeMap<String, u64>,
    pending_purges: u64,
    last_success: Option<f64>,
    leader: bool,
    /// A reconcile succeeded and the last one did.
    reconciled: bool,
    /// The last read of the watched directory failed (missing, or it did not validate). A timer
    /// reconcile may still succeed on the last good desired state (drift repair), but a watcher
    /// that no longer sees its source of truth is not ready.
    directory_broken: bool,
}

impl Metrics {
    /// Records the end of a reconcile.
    pub fn record(&mut self, outcome: Outcome, seconds: f64, now_unix: f64) {
        *self.reconciles.entry(outcome).or_default() += 1;
        self.duration_sum += seconds;
        self.duration_count += 1;
        self.last_duration = seconds;
        match outcome {
            Outcome::Success | Outcome::Standby => {
                self.last_success = Some(now_unix);
                self.reconciled = true;
            }
            Outcome::Failure | Outcome::Invalid => self.reconciled = false,
        }
    }

    /// Records whether the watched directory was read and validated, on every read.
    pub fn set_directory_valid(&mut self, valid: bool) {
        self.directory_broken = !valid;
    }

    pub fn add_applied(&mut self, changes: u64) {
        self.changes_applied += changes;
    }

    /// Registry counts by status, as last read.
    pub fn set_tenants(&mut self, by_status: BTreeMap<String, u64>) {
        self.tenants = by_status;
    }

    pub fn set_pending_purges(&mut self, count: u64) {
        self.pending_purges = count;
    }

    pub fn set_leader(&mut self, leader: bool) {
        self.leader = leader;
    }

    /// Readiness: the last reconcile succeeded, and on what the directory says now.
    pub fn ready(&self) -> bool {
        self.reconciled && !self.directory_broken
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tenantctl_reconciles_total Reconciles by result.\n# TYPE tenantctl_reconciles_total counter"
        );
        for outcome in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Invalid,
            Outcome::Standby,
        ] {
            let _ = writeln!(
                out,
                "tenantctl_reconciles_total{{result=\"{}\"}} {}",
                outcome.label(),
                self.reconciles.get(&outcome).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tenantctl_reconcile_duration_seconds Time spent reconciling.\n# TYPE tenantctl_reconcile_duration_seconds summary\ntenantctl_reconcile_duration_seconds_sum {}\ntenantctl_reconcile_duration_seconds_count {}",
            self.duration_sum, self.duration_count
        );
        let _ = writeln!(
            out,
            "# HELP tenantctl_last_reconcile_duration_seconds Duration of the last reconcile.\n# TYPE tenantctl_last_reconcile_duration_seconds gauge\ntenantctl_last_reconcile_duration_seconds {}",
            self.last_duration
        );
        let _ = writeln!(
            out,
            "# HELP tenantctl_changes_applied_total Tenant changes applied by this process.\n# TYPE tenantctl_changes_applied_total counter\ntenantctl_changes_applied_total {}",
            self.changes_applied
        );
        let _ = writeln!(
            out,
            "# HELP tenantctl_tenants Tenants in the registry by status.\n# TYPE tenantctl_tenants gauge"
        );
        for status in ["active", "suspended", "deleted"] {
            let _ = writeln!(
                out,
                "tenantctl_tenants{{status=\"{status}\"}} {}",
                self.tenants.get(status).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tenantctl_pending_purges Soft-deleted tenants waiting for their purge.\n# TYPE tenantctl_pending_purges gauge\ntenantctl_pending_purges {}",
            self.pending_purges
        );
        let _ = writeln!(
            out,
            "# HELP tenantctl_last_success_timestamp_seconds Unix time of the last successful reconcile.\n# TYPE tenantctl_last_success_timestamp_seconds gauge\ntenantctl_last_success_timestamp_seconds {}",
            self.last_success.unwrap_or(0.0)
        );
        let _ = writeln!(
            out,
            "# HELP tenantctl_leader 1 while this watcher holds the leader lock.\n# TYPE tenantctl_leader gauge\ntenantctl_leader {}",
            u8::from(self.leader)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_last_reconcile() {
        let mut metrics = Metrics::default();
        assert!(!metrics.ready());
        metrics.record(Outcome::Success, 0.1, 1.0);
        assert!(metrics.ready());
        metrics.record(Outcome::Invalid, 0.1, 2.0);
        assert!(!metrics.ready());
        metrics.record(Outcome::Success, 0.1, 3.0);
        assert!(metrics.ready());
    }

    #[test]
    fn a_missing_or_invalid_directory_is_not_ready_even_when_the_reconcile_succeeds() {
        let mut metrics = Metrics::default();
        metrics.set_directory_valid(true);
        metrics.record(Outcome::Success, 0.1, 1.0);
        assert!(metrics.ready());
        // a timer reconcile of the last good state, the directory gone
        metrics.set_directory_valid(false);
        metrics.record(Outcome::Success, 0.1, 2.0);
        assert!(!metrics.ready());
        metrics.set_directory_valid(true);
        metrics.record(Outcome::Success, 0.1, 3.0);
        assert!(metrics.ready());
    }

    #[test]
    fn renders_every_family_with_its_type() {
        let mut metrics = Metrics::default();
        metrics.record(Outcome::Success, 0.25, 1_700_000_000.0);
        metrics.record(Outcome::Failure, 0.5, 1_700_000_060.0);
        metrics.add_applied(3);
        metrics.set_tenants(BTreeMap::from([("active".to_string(), 5)]));
        metrics.set_pending_purges(2);
        metrics.set_leader(true);
        let text = metrics.render();
        for line in [
            "tenantctl_reconciles_total{result=\"success\"} 1",
            "tenantctl_reconciles_total{result=\"failure\"} 1",
            "tenantctl_reconcile_duration_seconds_sum 0.75",
            "tenantctl_reconcile_duration_seconds_count 2",
            "tenantctl_changes_applied_total 3",
            "tenantctl_tenants{status=\"active\"} 5",
            "tenantctl_tenants{status=\"deleted\"} 0",
            "tenantctl_pending_purges 2",
            "tenantctl_last_success_timestamp_seconds 1700000000",
            "tenantctl_leader 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        // every sample belongs to a family declared with # TYPE
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_sum").trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "no TYPE for {name}"
            );
        }
    }
}
