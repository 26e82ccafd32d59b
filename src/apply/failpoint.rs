//! Crash injection for tests: `TENANTCTL_FAILPOINT=<tenant>:<before|after>:<boundary>` kills
//! the process with `kill -9` (no destructor runs, no rollback is sent, no core is written)
//! when that tenant reaches the boundary, where a boundary is a step kind (`create_collection`)
//! or `commit`.
//!
//! Compiled into debug builds only (the test suite's binary); a release binary has no trigger.

/// Aborts the process if the failpoint variable names this boundary of this tenant.
#[cfg(debug_assertions)]
pub(super) fn hit(tenant: &str, when: &str, boundary: &str) {
    use std::sync::OnceLock;
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var("TENANTCTL_FAILPOINT").ok());
    if let Some(point) = point {
        if *point == format!("{tenant}:{when}:{boundary}") {
            eprintln!("failpoint `{point}` reached: kill -9");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            // Not reached once the signal arrived; a process that cannot be killed stops here.
            std::process::abort();
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub(super) fn hit(_tenant: &str, _when: &str, _boundary: &str) {}
