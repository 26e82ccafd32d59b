//! Who runs tenantctl and where: recorded in every audit event and in the session's
//! `application_name` (so a blocked apply can name the holder of the lock). Reads CI
//! variables and the host name; nothing else.

/// Who is running tenantctl, for events: `TENANTCTL_ACTOR` if set, else the CI job
/// (`github:octocat run 123`, `gitlab:alice pipeline 456`), else `user@host`.
pub fn actor() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let Some(actor) = var("TENANTCTL_ACTOR") {
        return actor;
    }
    if let Some(user) = var("GITHUB_ACTOR") {
        let run = var("GITHUB_RUN_ID").unwrap_or_default();
        return format!("github:{user} run {run}").trim_end().to_string();
    }
    if let Some(user) = var("GITLAB_USER_LOGIN") {
        let pipeline = var("CI_PIPELINE_ID").unwrap_or_default();
        return format!("gitlab:{user} pipeline {pipeline}")
            .trim_end()
            .to_string();
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{}", hostname())
}

/// The machine's host name, best effort.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}
