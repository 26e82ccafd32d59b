//! `tenantctl watch`: a long-running reconciler on a config directory.
//!
//! One loop, driven by triggers: a debounced file change (`notify`), the interval timer, a
//! retry after a failure, or a shutdown signal. Each reconcile loads and validates the whole
//! directory (an invalid directory applies nothing; the last good desired state is kept for
//! timer reconciles), then plans and, for the leader of `watch --apply`, applies under the same
//! lock, refusals and `--max-deletes`/`--prune` rules as `apply`.
//!
//! Leadership: every `watch --apply` process tries to take a session-level advisory lock
//! ([`LEADER_LOCK_KEY`]) on its own connection. The holder applies; the others stay on standby
//! and try again every interval, so when the leader dies or loses its connection (the server
//! releases its lock with the session) one of them takes over within one interval.

pub mod http;
pub mod metrics;

use crate::apply::{RunContext, RunError};
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{Postgres, Timeouts, LEADER_LOCK_KEY};
use crate::plan::{Action, PlanOptions};
use crate::reconcile::{self, Applied, LockedApply};
use crate::report::TenantOutcome;
use crate::spec::{self, DesiredState};
use metrics::{Metrics, Outcome};
use notify::RecursiveMode;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Everything the watcher needs, resolved from the command line.
pub struct WatchOptions {
    pub dir: PathBuf,
    pub database_url: String,
    /// The Chroma client, with its scope, token and timeout.
    pub chroma: ChromaClient,
    pub options: PlanOptions,
    pub backups: crate::backup::BackupStore,
    pub apply: bool,
    pub interval: Duration,
    pub debounce: Duration,
    pub lock_timeout: Duration,
    /// Statement and lock timeouts of tenant work.
    pub timeouts: Timeouts,
    /// Lock timeout of a tenant's migrations.
    pub migration_lock_timeout: Duration,
    /// Retries within a reconcile of a tenant whose migrations hit the lock timeout.
    pub migration_retries: u32,
    /// `--on-error stop` for each reconcile.
    pub stop_on_error: bool,
    /// Longest one reconcile's apply may run.
    pub run_timeout: Duration,
    pub listen: Option<std::net::SocketAddr>,
    /// Tenants applied at once.
    pub parallelism: usize,
    /// Where generated credentials go.
    pub secrets: Option<crate::secrets::SecretsSink>,
}

/// Why a reconcile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Startup,
    FileChange,
    Interval,
    Retry,
    Shutdown,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::FileChange => "file-change",
            Trigger::Interval => "interval",
            Trigger::Retry => "retry",
            Trigger::Shutdown => "shutdown",
        }
    }
}

/// Capped exponential backoff for unreachable servers: 1 s, 2 s, 4 s, ... up to the interval
/// (and never more than a minute), reset by a success.
struct Backoff {
    failures: u32,
    cap: Duration,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let delay = Duration::from_secs(1u64 << self.failures.min(6)).min(self.cap);
        self.failures += 1;
        delay
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Live connections of the watcher.
struct Connection {
    postgres: Postgres,
    chroma: ChromaClient,
    leader: bool,
}

/// Runs until SIGINT or SIGTERM; returns after the tenant in progress finished and the locks
/// were released.
///
/// # Errors
/// Only set-up failures (directory cannot be watched, address cannot be bound); everything
/// that happens while running is logged and retried.
pub async fn run(options: WatchOptions) -> anyhow::Result<()> {
    let (trigger_tx, mut triggers) = mpsc::unbounded_channel::<Trigger>();

    // Debounced file events: a burst of saves, a `git checkout` or a ConfigMap's atomic
    // `..data` swap arrive as one batch after `debounce` of quiet.
    let file_tx = trigger_tx.clone();
    // Two stages: this per-path debouncer only folds the event storm of one save (create,
    // modify, rename) within 50 ms, checking every 50 ms (its own default would check four
    // times as often: 80 idle wakeups a second); the loop below then waits for `debounce` of
    // quiet across all paths. A save reaches a reconcile after `debounce` + 50 to 100 ms.
    let file_window = Duration::from_millis(50).min(options.debounce);
    let mut debouncer = notify_debouncer_full::new_debouncer(
        file_window,
        Some(file_window),
        move |result: notify_debouncer_full::DebounceEventResult| match result {
            // Reading the files is an event too (inotify reports opens and closes): only
            // changes of content, names or metadata trigger a reconcile.
            Ok(events)
                if events
                    .iter()
                    .any(|event| !matches!(event.kind, notify::EventKind::Access(_))) =>
            {
                let _ = file_tx.send(Trigger::FileChange);
            }
            Ok(_) => {}
            Err(errors) => {
                for error in errors {
                    warn!(%error, "file watcher error");
                }
            }
        },
    )?;
    debouncer
        .watch(&options.dir, RecursiveMode::Recursive)
        .map_err(|error| anyhow::anyhow!("cannot watch `{}`: {error}", options.dir.display()))?;

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(stop.clone(), trigger_tx.clone())?;

    let metrics = Arc::new(Mutex::new(Metrics::default()));
    if let Some(address) = options.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))?;
        info!(%address, "serving /healthz, /readyz and /metrics");
        tokio::spawn(http::serve(listener, metrics.clone()));
    }

    info!(
        dir = %options.dir.display(),
        mode = if options.apply { "apply" } else { "dry-run" },
        interval_s = options.interval.as_secs_f64(),
        "watching"
    );

    let mut watcher = Watcher {
        options,
        metrics,
        stop,
        last_good: None,
        connection: None,
        backoff: Backoff {
            failures: 0,
            cap: Duration::from_secs(60),
        },
    };
    watcher.backoff.cap = watcher.options.interval.min(Duration::from_secs(60));
    let mut trigger = Trigger::Startup;
    loop {
        if trigger == Trigger::Shutdown || watcher.stop.load(Ordering::SeqCst) {
            break;
        }
        let retry = watcher.reconcile(trigger).await;
        let wait = match retry {
            Some(delay) => delay,
            None => watcher.options.interval,
        };
        trigger = tokio::select! {
            received = triggers.recv() => received.unwrap_or(Trigger::Shutdown),
            _ = tokio::time::sleep(wait) => {
                if retry.is_some() { Trigger::Retry } else { Trigger::Interval }
            }
        };
        if trigger == Trigger::FileChange {
            // The file debouncer settles each path on its own; a burst over many files (a
            // `git checkout`) becomes one reconcile by waiting for a quiet period across all
            // of them. A shutdown cuts the wait short.
            let quiet = watcher.options.debounce;
            loop {
                tokio::select! {
                    more = triggers.recv() => {
                        if matches!(more, None | Some(Trigger::Shutdown)) {
                            trigger = Trigger::Shutdown;
                            break;
                        }
                    }
                    _ = tokio::time::sleep(quiet) => break,
                }
            }
        }
    }

    if let Some(connection) = watcher.connection.take() {
        // Closing the session releases the leader and apply locks.
        if connection.leader {
            let _ = connection
                .postgres
                .client
                .execute("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK_KEY])
                .await;
        }
        drop(connection);
    }
    info!("stopped");
    Ok(())
}

fn spawn_signal_handler(
    stop: Arc<AtomicBool>,
    triggers: mpsc::UnboundedSender<Trigger>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!(signal = name, "stopping: finishing the tenant in progress");
        stop.store(true, Ordering::SeqCst);
        let _ = triggers.send(Trigger::Shutdown);
    });
    Ok(())
}

struct Watcher {
    options: WatchOptions,
    metrics: Arc<Mutex<Metrics>>,
    stop: Arc<AtomicBool>,
    /// The last desired state that validated.
    last_good: Option<DesiredState>,
    connection: Option<Connection>,
    backoff: Backoff,
}

/// What a reconcile did, for the summary line.
struct ReconcileSummary {
    outcome: Outcome,
    changes: usize,
    applied: usize,
    failed: usize,
    detail: String,
}

impl ReconcileSummary {
    /// A reconcile that applied nothing.
    fn nothing_applied(outcome: Outcome, changes: usize, detail: impl Into<String>) -> Self {
        ReconcileSummary {
            outcome,
            changes,
            applied: 0,
            failed: 0,
            detail: detail.into(),
        }
    }
}

impl Watcher {
    /// One reconcile. Returns `Some(delay)` when it should be retried sooner than the interval.
    async fn reconcile(&mut self, trigger: Trigger) -> Option<Duration> {
        let started = Instant::now();
        let (summary, retry) = self.reconcile_inner(trigger).await;
        if let Some(connection) = &self.connection {
            // Workers of a reconcile stay open for the next; a burst of parallelism does not.
            connection.postgres.close_idle(Duration::from_secs(300));
        }
        let seconds = started.elapsed().as_secs_f64();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        {
            let mut metrics = self.metrics.lock().expect("metrics lock");
            metrics.record(summary.outcome, seconds, now_unix);
            metrics.add_applied(summary.applied as u64);
            metrics.set_leader(self.connection.as_ref().is_some_and(|c| c.leader));
        }
        let duration_ms = (seconds * 1000.0).round() as u64;
        // tracing needs the level at compile time: one event per level, same fields.
        macro_rules! summary_line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    trigger = trigger.label(),
                    result = summary.outcome.label(),
                    changes = summary.changes,
                    applied = summary.applied,
                    failed = summary.failed,
                    duration_ms,
                    "reconcile: {}",
                    summary.detail
                )
            };
        }
        match summary.outcome {
            Outcome::Success | Outcome::Standby => summary_line!(tracing::Level::INFO),
            Outcome::Failure | Outcome::Invalid => summary_line!(tracing::Level::ERROR),
        }
        retry
    }

    async fn reconcile_inner(&mut self, trigger: Trigger) -> (ReconcileSummary, Option<Duration>) {
        let fail = |outcome, detail: String| ReconcileSummary::nothing_applied(outcome, 0, detail);

        // 1. The files: re-read on every reconcile; timer reconciles of an invalid directory
        // fall back to the last good state.
        let loaded = spec::load_dir(&self.options.dir);
        // Readiness follows the directory whatever the rest of this reconcile does: repairing
        // drift from the last good state is useful, but it is not the state the files ask for.
        self.metrics
            .lock()
            .expect("metrics lock")
            .set_directory_valid(loaded.is_ok());
        match loaded {
            Ok(desired) => self.last_good = Some(desired),
            Err(errors) => {
                // A deleted directory (an unmounted volume, a checkout gone) is one problem,
                // said once below, not a file error.
                let missing = std::fs::metadata(&self.options.dir)
                    .is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound);
                let problem = if missing {
                    format!(
                        "the watched directory `{}` does not exist",
                        self.options.dir.display()
                    )
                } else {
                    for error in &errors.0 {
                        error!(
                            file = %error.file.display(),
                            line = error.line.unwrap_or(0),
                            column = error.column.unwrap_or(0),
                            field = error.field.as_deref().unwrap_or(""),
                            "invalid tenant file: {error}"
                        );
                    }
                    format!("{} error(s) in the directory", errors.0.len())
                };
                if trigger == Trigger::FileChange || self.last_good.is_none() {
                    return (
                        fail(
                            Outcome::Invalid,
                            format!("{problem}; nothing applied, keeping the last good state"),
                        ),
                        None,
                    );
                }
                warn!("{problem}; reconciling the last good desired state; not ready until the directory validates");
            }
        }
        let Some(desired) = self.last_good.clone() else {
            return (
                fail(Outcome::Invalid, "no valid desired state yet".into()),
                None,
            );
        };

        // 2. The servers.
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.postgres.is_closed())
        {
            warn!("lost the connection to postgres; reconnecting");
            self.connection = None;
        }
        if self.connection.is_none() {
            match self.connect().await {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => {
                    let delay = self.backoff.next();
                    return (
                        fail(
                            Outcome::Failure,
                            format!("{error:#}; retrying in {}s", delay.as_secs()),
                        ),
                        Some(delay),
                    );
                }
            }
        }
        let connection = self.connection.as_mut().expect("connected above");

        // 3. Leadership, for an applying watcher.
        if self.options.apply && !connection.leader {
            match connection.postgres.try_lock_key(LEADER_LOCK_KEY).await {
                Ok(true) => {
                    info!("became the leader: this watcher applies");
                    connection.leader = true;
                }
                Ok(false) => {
                    self.backoff.reset();
                    return (
                        fail(
                            Outcome::Standby,
                            "standby: another watcher leads; trying again next interval".into(),
                        ),
                        None,
                    );
                }
                Err(error) => return self.backend_failed(error.into()),
            }
        }

        // 4. Plan, and apply when leading.
        let result = if self.options.apply {
            self.plan_and_apply(&desired).await
        } else {
            self.plan_only(&desired).await
        };
        match result {
            Ok(summary) => {
                if summary.outcome == Outcome::Success {
                    self.backoff.reset();
                }
                (summary, None)
            }
            Err(error) => self.backend_failed(error),
        }
    }

    fn backend_failed(&mut self, error: RunError) -> (ReconcileSummary, Option<Duration>) {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.postgres.is_closed())
        {
            self.connection = None;
        }
        let delay = self.backoff.next();
        (
            ReconcileSummary::nothing_applied(
                Outcome::Failure,
                0,
                format!("{error}; retrying in {}s", delay.as_secs()),
            ),
            Some(delay),
        )
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        let chroma = self.options.chroma.clone();
        chroma.heartbeat().await?;
        let postgres = Postgres::connect(&self.options.database_url, "watch").await?;
        info!(database = %postgres.url(), chroma = %chroma.url(), "connected");
        Ok(Connection {
            postgres,
            chroma,
            leader: false,
        })
    }

    async fn plan_only(&mut self, desired: &DesiredState) -> Result<ReconcileSummary, RunError> {
        let connection = self.connection.as_mut().expect("connected");
        let (_, plan) = reconcile::observe_and_plan(
            &connection.postgres,
            &connection.chroma,
            desired,
            &self.options.options,
            &self.options.backups,
        )
        .await?;
        self.update_gauges(&plan).await;
        let changes = plan.effective_changes().count();
        for change in plan.effective_changes() {
            let actions: Vec<&str> = change.actions.iter().map(|a| a.verb()).collect();
            info!(tenant = %change.tenant, actions = %actions.join(","), "would apply (dry run)");
        }
        Ok(ReconcileSummary {
            outcome: Outcome::Success,
            changes,
            applied: 0,
            failed: 0,
            detail: if changes == 0 {
                "no changes".to_string()
            } else {
                format!("dry run: {changes} change(s) planned, none applied")
            },
        })
    }

    async fn plan_and_apply(
        &mut self,
        desired: &DesiredState,
    ) -> Result<ReconcileSummary, RunError> {
        let connection = self.connection.as_mut().expect("connected");
        let mut context = RunContext::new(self.options.backups.clone());
        context.stop = self.stop.clone();
        context.parallelism = self.options.parallelism;
        context.timeouts = self.options.timeouts;
        context.migration_lock_timeout = self.options.migration_lock_timeout;
        context.migration_retries = self.options.migration_retries;
        context.stop_on_error = self.options.stop_on_error;
        context.secrets = self.options.secrets.clone();
        context.deadline = Some(tokio::time::Instant::now() + self.options.run_timeout);
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mode = if terminal {
            crate::progress::Mode::Bar
        } else {
            // Without a terminal the log already says every tenant.
            crate::progress::Mode::Off
        };
        let meter = std::cell::RefCell::new(crate::progress::Progress::new(
            mode,
            0,
            Duration::from_secs(1),
        ));
        let applied = reconcile::locked_apply(
            &mut connection.postgres,
            &connection.chroma,
            LockedApply {
                desired,
                options: &self.options.options,
                backups: &self.options.backups,
                lock_timeout: self.options.lock_timeout,
                context: &context,
                saved_id: None,
            },
            |_, _| Ok(()),
            |plan| {
                let total = plan
                    .changes
                    .iter()
                    .filter(|change| change.blocked || !change.steps.is_empty())
                    .count();
                meter.borrow_mut().set_total(total);
                Ok(())
            },
            |update| {
                let mut meter = meter.borrow_mut();
                // A bar only on a terminal, and only once the reconcile has lasted a second.
                let result = match update {
                    crate::apply::Update::Started(tenant) => {
                        meter.record(crate::progress::Event::Started { tenant });
                        return;
                    }
                    crate::apply::Update::Finished(result) => result,
                };
                let actions: Vec<&str> = result.actions.iter().map(|a| a.verb()).collect();
                meter.suspend(|| match &result.outcome {
                    TenantOutcome::Applied => {
                        info!(tenant = %result.tenant, actions = %actions.join(","), "applied")
                    }
                    TenantOutcome::RolledBack { reason, .. } => {
                        error!(tenant = %result.tenant, actions = %actions.join(","), "rolled back: {reason}")
                    }
                    TenantOutcome::Blocked { reason } => {
                        error!(tenant = %result.tenant, "not applied (conflict): {reason}")
                    }
                    TenantOutcome::Unfinished { reason } => {
                        error!(tenant = %result.tenant, actions = %actions.join(","), "committed, then stopped: {reason}")
                    }
                });
                meter.record(crate::progress::Event::Finished {
                    tenant: &result.tenant,
                    failed: result.outcome != TenantOutcome::Applied,
                });
            },
        )
        .await;
        meter.borrow_mut().finish();
        let applied = applied?;
        let (summary, plan) = match applied {
            Applied::Refused { plan } => {
                for refusal in &plan.refusals {
                    error!(
                        tenant = refusal.tenant.as_deref().unwrap_or(""),
                        "refused: {}", refusal.message
                    );
                }
                (
                    ReconcileSummary::nothing_applied(
                        Outcome::Failure,
                        plan.effective_changes().count(),
                        "the plan breaks a safety rule; nothing applied",
                    ),
                    plan,
                )
            }
            Applied::NothingToDo { plan } => {
                let (outcome, detail) = if plan.conflicts.is_empty() {
                    (Outcome::Success, "no changes".to_string())
                } else {
                    (
                        Outcome::Failure,
                        format!("{} conflict(s); nothing to apply", plan.conflicts.len()),
                    )
                };
                (ReconcileSummary::nothing_applied(outcome, 0, detail), plan)
            }
            Applied::Done { plan, report } => {
                let applied = report.applied();
                let failed = report.tenants.len() - applied;
                let mut detail = format!("{applied} applied, {failed} failed");
                if report.not_started > 0 {
                    detail.push_str(&format!(", {} not started", report.not_started));
                }
                if let Some(stopped) = &report.stopped {
                    detail.push_str(&format!(" ({stopped})"));
                }
                for warning in &report.warnings {
                    warn!("{warning}");
                }
                let stopped_by_signal = self.stop.load(Ordering::SeqCst);
                (
                    ReconcileSummary {
                        outcome: if failed == 0 && (report.stopped.is_none() || stopped_by_signal) {
                            Outcome::Success
                        } else {
                            Outcome::Failure
                        },
                        changes: plan.effective_changes().count(),
                        applied,
                        failed,
                        detail,
                    },
                    plan,
                )
            }
            // Neither check nor review declines in a watcher.
            Applied::Declined { error } => {
                return Ok(ReconcileSummary::nothing_applied(
                    Outcome::Failure,
                    0,
                    format!("{error:#}"),
                ))
            }
        };
        self.update_gauges(&plan).await;
        Ok(summary)
    }

    async fn update_gauges(&self, plan: &crate::plan::Plan) {
        let Some(connection) = &self.connection else {
            return;
        };
        let pending = plan.scheduled_purges.len()
            + plan
                .changes
                .iter()
                .filter(|change| change.blocked && change.actions.contains(&Action::Purge))
                .count();
        let by_status = connection.postgres.count_by_status().await.ok();
        let mut metrics = self.metrics.lock().expect("metrics lock");
        metrics.set_pending_purges(pending as u64);
        if let Some(by_status) = by_status {
            metrics.set_tenants(by_status);
        }
    }
}
