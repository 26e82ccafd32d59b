//! Runs a [`Plan`]: tenant by tenant (several at once with `--parallelism`), each atomically.
//!
//! For every tenant with steps: open a PostgreSQL transaction, run its steps ([`steps`], the
//! one executor), append the audit event, commit. If anything fails, the transaction rolls
//! back and each Chroma step already done is compensated in reverse order, so a tenant ends
//! either fully applied or as it was. Other tenants go on, unless the run must stop: a stop
//! signal, the run's deadline, a PostgreSQL session gone, or the same server failing several
//! tenants in a row. Then no further tenant starts, and after a grace period the statements
//! still running are cancelled, so their tenants roll back.

mod compensation;
mod failpoint;
mod steps;

use crate::backend::chroma::{ChromaClient, ChromaError};
use crate::backend::postgres::{Postgres, PostgresError, Timeouts};
use crate::backup::BackupError;
use crate::observed::ObservedState;
use crate::plan::Plan;
use crate::report::{ApplyReport, TenantOutcome, TenantResult};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Tenants in a row that one server may fail before the run stops: a server that is down or
/// hung would otherwise cost every remaining tenant its timeouts.
pub const MAX_CONSECUTIVE_FAILURES: usize = 3;

/// How long the tenants in progress may take to finish after a stop, before their running
/// statements are cancelled (they then roll back).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A failure of a server or of the backup store during a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Chroma(#[from] ChromaError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Reference(#[from] crate::backend::postgres::reference::ReferenceError),
    /// A migration failed in a tenant's schema: its file and line, and the server's words.
    #[error("migration `{file}` failed at line {line}: {message}")]
    Migration {
        file: String,
        line: usize,
        message: String,
        /// It waited longer than the migration lock timeout for a lock an application held:
        /// worth trying again in a moment.
        lock_timeout: bool,
    },
    /// The migrations ran, but the schema they left is not the one they make (it was altered
    /// by hand before): the tenant rolls back.
    #[error(
        "the migrations ran, but schema `{schema}` is not what they make, so nothing was kept: {}",
        differences.join("; ")
    )]
    Unverified {
        schema: String,
        differences: Vec<String>,
    },
    /// A no-transaction migration ran, but the schema it left is not the one the migrations
    /// make: it is not recorded, and the next apply tries again.
    #[error(
        "migration `{migration}` ran outside a transaction, but schema `{schema}` is not what the migrations make, so it is not recorded as applied: {}",
        differences.join("; ")
    )]
    OnlineUnverified {
        migration: String,
        schema: String,
        differences: Vec<String>,
    },
    /// The tenant's transaction committed; then a migration that runs after it (a
    /// no-transaction one, or one after that) failed. What committed stays.
    #[error("{0}; what ran before it is kept, and the next apply resumes from there")]
    Online(Box<RunError>),
    /// The run had to stop (signal or deadline) before this work began.
    #[error("{reason} before {what}")]
    Stopped { reason: &'static str, what: String },
    /// A secret could not be generated or delivered: the tenant rolls back.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// A change generates secrets and the run has nowhere to put them (refused before any
    /// change; this guards the executor all the same).
    #[error("`{tenant}` needs a secrets sink (`--secrets-dir` or `--secrets-command`) for what it generates")]
    NoSecretsSink { tenant: String },
}

impl From<crate::backend::BackendError> for RunError {
    fn from(error: crate::backend::BackendError) -> Self {
        match error {
            crate::backend::BackendError::Postgres(error) => RunError::Postgres(error),
            crate::backend::BackendError::Chroma(error) => RunError::Chroma(error),
        }
    }
}

/// Which server an error came from, for the run's stop rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Postgres,
    Chroma,
}

impl RunError {
    fn server(&self) -> Option<Server> {
        match self {
            RunError::Online(error) => error.server(),
            RunError::Postgres(_) | RunError::Backup(BackupError::Postgres(_)) => {
                Some(Server::Postgres)
            }
            RunError::Chroma(_) | RunError::Backup(BackupError::Chroma(_)) => Some(Server::Chroma),
            RunError::Backup(_)
            | RunError::Reference(_)
            | RunError::Unverified { .. }
            | RunError::OnlineUnverified { .. }
            | RunError::Stopped { .. }
            // A migration that fails is the migration's fault (or a busy table), not an
            // outage: it does not count towards stopping the run.
            | RunError::Migration { .. }
            | RunError::Secrets(_)
            | RunError::NoSecretsSink { .. } => None,
        }
    }

    /// A tenant's migrations hit the lock timeout: tried again within the run.
    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self,
            RunError::Migration {
                lock_timeout: true,
                ..
            }
        )
    }

    /// The PostgreSQL session cannot be used any more.
    pub(crate) fn session_lost(&self) -> bool {
        match self {
            RunError::Online(error) => error.session_lost(),
            RunError::Postgres(error) | RunError::Backup(BackupError::Postgres(error)) => {
                error.connection_lost()
            }
            _ => false,
        }
    }
}

/// Who runs the apply, and the bounds of the run.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: Uuid,
    pub actor: String,
    /// Where the final backups are written at soft delete and deleted at purge.
    pub backups: crate::backup::BackupStore,
    /// Set by a signal handler: the tenants in progress finish (or are cancelled after
    /// [`STOP_GRACE`]), no further tenant starts.
    pub stop: Arc<AtomicBool>,
    /// Tenants applied at once, each on its own PostgreSQL session.
    pub parallelism: usize,
    /// `statement_timeout` and `lock_timeout` of tenant work.
    pub timeouts: Timeouts,
    /// `lock_timeout` of a tenant's migrations: one busy tenant fails instead of stalling the
    /// fleet, and is tried again later in the run (up to `migration_retries` times), then by
    /// the next run.
    pub migration_lock_timeout: std::time::Duration,
    /// How many times a tenant whose migrations hit the lock timeout is tried again in the run.
    pub migration_retries: u32,
    /// `--on-error stop`: the first tenant that fails stops the run (no new tenant starts).
    pub stop_on_error: bool,
    /// The whole run ends by then, as after a stop signal.
    pub deadline: Option<tokio::time::Instant>,
    /// Where generated passwords and API keys go; a plan that generates any is refused
    /// without one.
    pub secrets: Option<crate::secrets::SecretsSink>,
}

impl RunContext {
    /// Why the run must stop now, if it must: a stop signal, or its deadline.
    pub(crate) fn interrupted(&self) -> Option<&'static str> {
        if self.stop.load(Ordering::SeqCst) {
            Some("stopped by a signal")
        } else if self
            .deadline
            .is_some_and(|deadline| tokio::time::Instant::now() >= deadline)
        {
            Some("stopped: the run timeout was reached")
        } else {
            None
        }
    }

    /// Waits `wait`, in slices, unless the run must stop first: then says why.
    pub(crate) async fn pause(&self, wait: Duration) -> Result<(), &'static str> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            if let Some(why) = self.interrupted() {
                return Err(why);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
        }
    }

    /// A new run by the current user.
    pub fn new(backups: crate::backup::BackupStore) -> Self {
        RunContext {
            run_id: Uuid::new_v4(),
            actor: crate::actor::actor(),
            backups,
            stop: Default::default(),
            parallelism: 1,
            timeouts: Timeouts::default(),
            migration_lock_timeout: std::time::Duration::from_secs(5),
            migration_retries: 2,
            stop_on_error: false,
            deadline: None,
            secrets: None,
        }
    }
}

/// What a run tells its caller as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Update<'a> {
    /// A tenant's change begins.
    Started(&'a str),
    /// A tenant's change ended.
    Finished(&'a TenantResult),
}

/// A worker's news, in the order it happens.
enum Message {
    Started(usize),
    /// The tenant's outcome, and how many times it was retried before it.
    Finished(usize, TenantOutcome, u32),
}

/// A tenant to try again after its migrations hit the lock timeout.
struct Retry {
    index: usize,
    /// Retries so far, this one included.
    retries: u32,
    not_before: tokio::time::Instant,
    /// What the last try ended with: reported if the run stops before the retry.
    last: TenantOutcome,
}

/// How long to wait before retry number `retries` (1, 2, …): 500 ms doubling, at most 8 s,
/// jittered by ±50 % so that tenants that timed out together do not come back together.
pub(crate) fn backoff(retries: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << retries.saturating_sub(1).min(4));
    let base = base.min(Duration::from_secs(8));
    let jitter = (Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0 + 0.5;
    base.mul_f64(jitter)
}

/// Executes every tenant change of `plan` that has steps and no conflict.
///
/// Up to `context.parallelism` tenants run at once, each on its own PostgreSQL session (the
/// first is `postgres`, which holds the apply lock); tenants are independent, and each one is
/// still atomic. The report lists tenants in plan order; `progress` sees them as they finish.
///
/// The caller holds the apply lock, has migrated the control schema and made sure the Chroma
/// database exists. `observed` is the state `plan` was made from (for the metadata a
/// compensation restores).
pub async fn execute(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    plan: &Plan,
    observed: &ObservedState,
    context: &RunContext,
    mut progress: impl FnMut(Update<'_>),
) -> ApplyReport {
    let mut report = ApplyReport {
        run_id: Some(context.run_id),
        ..ApplyReport::default()
    };
    let mut finished: Vec<(usize, TenantResult)> = Vec::new();
    let mut queue = Vec::new();
    for (index, change) in plan.changes.iter().enumerate() {
        if change.blocked {
            let reasons: Vec<&str> = plan
                .conflicts
                .iter()
                .filter(|conflict| conflict.tenant == change.tenant)
                .map(|conflict| conflict.message.as_str())
                .collect();
            let result = TenantResult {
                tenant: change.tenant.clone(),
                actions: change.actions.clone(),
                outcome: TenantOutcome::Blocked {
                    reason: reasons.join("; "),
                },
                retries: 0,
            };
            progress(Update::Finished(&result));
            finished.push((index, result));
        } else if !change.steps.is_empty() {
            queue.push(index);
        }
    }
    // The canary goes first; the rest waits for it (see `Shared::next`).
    queue.sort_by_key(|&index| !plan.canary.contains(&plan.changes[index].tenant));
    let canary = queue
        .iter()
        .take_while(|&&index| plan.canary.contains(&plan.changes[index].tenant))
        .count();
    report.canary = queue[..canary]
        .iter()
        .map(|&index| plan.changes[index].tenant.clone())
        .collect();

    // The other workers' sessions. One that cannot be opened (max_connections, say) is said in
    // the report; the run goes on with fewer.
    let mut sessions = Vec::new();
    let workers = context.parallelism.clamp(1, queue.len().max(1));
    let mut refused = Vec::new();
    for _ in 1..workers {
        match postgres.another().await {
            Ok(session) => sessions.push(session),
            Err(error) => refused.push(error.to_string()),
        }
    }
    if let Some(reason) = refused.first() {
        report.warnings.push(format!(
            "{} of {workers} parallel sessions could not be opened ({reason}); applied with {}",
            refused.len(),
            workers - refused.len()
        ));
    }
    let mut all: Vec<&mut Postgres> = std::iter::once(postgres)
        .chain(sessions.iter_mut().map(|session| &mut **session))
        .collect();
    for session in &all {
        if let Err(error) = session.set_timeouts(context.timeouts).await {
            report.stopped = Some(format!("stopped before any tenant: {error}"));
            report.not_started = queue.len();
            report.tenants = finished.into_iter().map(|(_, result)| result).collect();
            return report;
        }
    }
    let cancellers: Vec<_> = all.iter().map(|session| session.canceller()).collect();

    // The run's state of every existing tenant it migrates: `pending` now, `applied` with each
    // tenant's commit, `failed` or `retried` after a rollback. What a killed run leaves is
    // reported by the next plan.
    let migrating: Vec<(Uuid, String)> = queue
        .iter()
        .map(|&index| &plan.changes[index])
        .filter(|change| change.actions.contains(&crate::plan::Action::Migrate))
        .filter_map(|change| Some((change.uid?, change.tenant.clone())))
        .collect();
    // Bounded like any statement of the run: a server that stopped answering ends it here.
    let started = tokio::time::timeout(
        context.timeouts.client_deadline(),
        crate::backend::postgres::registry::start_migration_run(
            &all[0].client,
            context.run_id,
            &migrating,
        ),
    )
    .await
    .unwrap_or_else(|_| {
        Err(crate::backend::postgres::PostgresError::Timeout {
            operation: "record the tenants this run migrates".to_string(),
            waited: context.timeouts.client_deadline(),
        })
    });
    if let Err(error) = started {
        report.stopped = Some(format!("stopped before any tenant: {error}"));
        report.not_started = queue.len();
        report.tenants = finished.into_iter().map(|(_, result)| result).collect();
        return report;
    }

    let shared = Shared {
        chroma,
        plan,
        observed,
        context,
        queue: &queue,
        next: AtomicUsize::new(0),
        started: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        retries: Mutex::new(Vec::new()),
        canary,
        canary_pending: AtomicUsize::new(canary),
        stopped: Mutex::new(None),
        streak: Mutex::new(None),
        done: AtomicBool::new(false),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let worker_futures: Vec<_> = all
        .iter_mut()
        .map(|session| worker(session, &shared, sender.clone()))
        .collect();
    drop(sender);
    let all_workers = async {
        futures_util::future::join_all(worker_futures).await;
        shared.done.store(true, Ordering::SeqCst);
    };
    let collect = async {
        while let Some(message) = receiver.recv().await {
            let (index, outcome, retries) = match message {
                Message::Started(index) => {
                    progress(Update::Started(&plan.changes[index].tenant));
                    continue;
                }
                Message::Finished(index, outcome, retries) => (index, outcome, retries),
            };
            let change = &plan.changes[index];
            report.retries += retries;
            let result = TenantResult {
                tenant: change.tenant.clone(),
                actions: change.actions.clone(),
                outcome,
                retries,
            };
            progress(Update::Finished(&result));
            finished.push((index, result));
        }
    };
    tokio::join!(all_workers, collect, watchdog(&shared, &cancellers));

    // Retries the run stopped before: their last try is their outcome.
    for retry in shared
        .retries
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
    {
        let change = &plan.changes[retry.index];
        let retries = retry.retries - 1;
        report.retries += retries;
        let result = TenantResult {
            tenant: change.tenant.clone(),
            actions: change.actions.clone(),
            outcome: retry.last,
            retries,
        };
        progress(Update::Finished(&result));
        finished.push((retry.index, result));
    }
    finished.sort_by_key(|(index, _)| *index);
    report.tenants = finished.into_iter().map(|(_, result)| result).collect();
    let started = shared.started.load(Ordering::SeqCst);
    report.not_started = queue.len() - started;
    report.not_started_tenants = queue[started.min(queue.len())..]
        .iter()
        .map(|&index| plan.changes[index].tenant.clone())
        .collect();
    report.stopped = shared
        .stopped
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    report
}

/// What the workers of one `execute` share.
struct Shared<'a> {
    chroma: &'a ChromaClient,
    plan: &'a Plan,
    observed: &'a ObservedState,
    context: &'a RunContext,
    /// Indexes into `plan.changes` of the tenants to apply, in plan order.
    queue: &'a [usize],
    /// Next position in `queue` to take.
    next: AtomicUsize,
    /// Tenants taken so far (the rest is reported as not started after a stop).
    started: AtomicUsize,
    /// Tenants being applied right now (one may come back as a retry).
    in_flight: AtomicUsize,
    /// Tenants to try again, each not before its time.
    retries: Mutex<Vec<Retry>>,
    /// The first `canary` tenants of `queue` are the canary: no other starts before all of
    /// them are done.
    canary: usize,
    /// Canary tenants not done yet.
    canary_pending: AtomicUsize,
    /// Why the run stopped early, once it has.
    stopped: Mutex<Option<String>>,
    /// The server that failed the last tenants, and how many in a row.
    streak: Mutex<Option<(Server, usize, String)>>,
    /// Every worker has returned.
    done: AtomicBool,
}

impl Shared<'_> {
    fn stop(&self, reason: String) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if stopped.is_none() {
            *stopped = Some(reason);
        }
    }

    fn stopping(&self) -> bool {
        if let Some(why) = self.context.interrupted() {
            self.stop(why.to_string());
            return true;
        }
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The canary and `--on-error stop` rules, once a tenant's final outcome is known.
    fn settle(&self, index: usize, error: Option<&RunError>) {
        let tenant = &self.plan.changes[index].tenant;
        if self.plan.canary.contains(tenant) {
            if let Some(error) = error {
                self.stop(format!(
                    "stopped: canary tenant `{tenant}` failed ({error}); the rest of the fleet was not started"
                ));
            }
            self.canary_pending.fetch_sub(1, Ordering::SeqCst);
        } else if let (Some(error), true) = (error, self.context.stop_on_error) {
            self.stop(format!(
                "stopped after the first failure (`--on-error stop`): `{tenant}` failed ({error})"
            ));
        }
    }

    /// Applies the stop rules to one tenant's outcome.
    fn account(&self, error: Option<&RunError>) {
        let mut streak = self.streak.lock().unwrap_or_else(|e| e.into_inner());
        let Some(error) = error else {
            *streak = None;
            return;
        };
        if error.session_lost() {
            self.stop(format!(
                "stopped: the PostgreSQL session was lost ({error}); the remaining tenants were not started"
            ));
            return;
        }
        let Some(server) = error.server() else {
            *streak = None;
            return;
        };
        let count = match streak.as_ref() {
            Some((last, count, _)) if *last == server => count + 1,
            _ => 1,
        };
        *streak = Some((server, count, error.to_string()));
        if count >= MAX_CONSECUTIVE_FAILURES {
            let name = match server {
                Server::Postgres => "PostgreSQL",
                Server::Chroma => "Chroma",
            };
            self.stop(format!(
                "stopped: {name} failed {count} tenants in a row (last: {error}); the remaining tenants were not started"
            ));
        }
    }
}

/// What a worker does next.
enum Next {
    /// Apply this tenant, retried this many times before.
    Apply(usize, u32),
    /// Nothing is due yet: a retry is waiting, or a tenant in progress may come back as one.
    Wait(Duration),
    /// Nothing is left.
    Done,
}

impl Shared<'_> {
    /// A retry whose time has come, else the next tenant of the queue, else how long to wait.
    fn next(&self) -> Next {
        let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        if let Some(position) = retries.iter().position(|retry| retry.not_before <= now) {
            let retry = retries.swap_remove(position);
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            return Next::Apply(retry.index, retry.retries);
        }
        let position = self.next.fetch_add(1, Ordering::SeqCst);
        if position >= self.canary && self.canary_pending.load(Ordering::SeqCst) > 0 {
            // The fleet waits for the canary.
            self.next.fetch_sub(1, Ordering::SeqCst);
            return Next::Wait(Duration::from_millis(50));
        }
        if let Some(&index) = self.queue.get(position) {
            self.started.fetch_add(1, Ordering::SeqCst);
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            return Next::Apply(index, 0);
        }
        // Keep the counter from running past the end while workers wait.
        self.next.fetch_sub(1, Ordering::SeqCst);
        if let Some(soonest) = retries.iter().map(|retry| retry.not_before).min() {
            return Next::Wait(soonest.saturating_duration_since(now));
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Next::Wait(Duration::from_millis(50));
        }
        Next::Done
    }
}

/// Takes tenants from the queue (and retries whose time has come) and applies them on
/// `session` until nothing is left, the run stops, or the session is lost. A tenant whose
/// migrations hit the lock timeout goes back as a retry, after a jittered backoff, up to
/// `migration_retries` times.
async fn worker(
    session: &mut Postgres,
    shared: &Shared<'_>,
    sender: tokio::sync::mpsc::UnboundedSender<Message>,
) {
    loop {
        if shared.stopping() {
            break;
        }
        let (index, retries) = match shared.next() {
            Next::Apply(index, retries) => (index, retries),
            Next::Wait(wait) => {
                tokio::time::sleep(
                    wait.clamp(Duration::from_millis(10), Duration::from_millis(100)),
                )
                .await;
                continue;
            }
            Next::Done => break,
        };
        let _ = sender.send(Message::Started(index));
        let (outcome, error, retried_in_place) = steps::apply_change(
            session,
            shared.chroma,
            &shared.plan.changes[index],
            &shared.plan.migrations,
            shared.observed,
            shared.context,
        )
        .await;
        let again = error.as_ref().is_some_and(RunError::retryable)
            && retries < shared.context.migration_retries;
        // The run's state of a migrating tenant that rolled back: `applied` was not committed.
        let change = &shared.plan.changes[index];
        if let (Some(error), Some(uid), true) = (
            error.as_ref(),
            change.uid,
            change.actions.contains(&crate::plan::Action::Migrate),
        ) {
            if !session.is_closed() {
                let status = if again { "retried" } else { "failed" };
                let retries = if again { retries + 1 } else { retries };
                // Best effort, bounded: the outcome is in the report either way.
                let _ = tokio::time::timeout(
                    shared.context.timeouts.client_deadline(),
                    crate::backend::postgres::registry::mark_migration_run(
                        &session.client,
                        shared.context.run_id,
                        uid,
                        status,
                        retries,
                        &error.to_string(),
                    ),
                )
                .await;
            }
        }
        if again {
            shared
                .retries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Retry {
                    index,
                    retries: retries + 1,
                    not_before: tokio::time::Instant::now() + backoff(retries + 1),
                    last: outcome,
                });
        } else {
            shared.account(error.as_ref());
            shared.settle(index, error.as_ref());
            let _ = sender.send(Message::Finished(
                index,
                outcome,
                retries + retried_in_place,
            ));
        }
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if session.is_closed() || error.as_ref().is_some_and(RunError::session_lost) {
            break;
        }
    }
}

/// Once the run must stop (signal or deadline), waits [`STOP_GRACE`] for the tenants in
/// progress, then cancels whatever statement is still running on every session: a `DROP
/// SCHEMA` queued behind an application's lock must not hold the run (and its lock) forever.
async fn watchdog(shared: &Shared<'_>, cancellers: &[crate::backend::postgres::Canceller]) {
    let tick = Duration::from_millis(100);
    loop {
        if shared.done.load(Ordering::SeqCst) {
            return;
        }
        if shared.stopping() {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    let grace = tokio::time::Instant::now() + STOP_GRACE;
    while tokio::time::Instant::now() < grace {
        if shared.done.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(tick).await;
    }
    for canceller in cancellers {
        canceller.cancel().await;
    }
}

/// Carries out an approved plan: migrates the control schema, records a saved plan's id,
/// prepares the Chroma database, removes partial backups left by interrupted runs, then
/// executes tenant by tenant. The caller holds the apply lock and has checked that the plan
/// has no refusals.
///
/// # Errors
/// The migration, the plan record or the Chroma set-up failed: no tenant was touched.
/// Failures of single tenants are in the report, not errors.
pub async fn run(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    plan: &Plan,
    observed: &ObservedState,
    context: &RunContext,
    saved_plan: Option<Uuid>,
    progress: impl FnMut(Update<'_>),
) -> Result<ApplyReport, RunError> {
    let migrated = postgres.migrate().await?;
    if let Some(id) = saved_plan {
        crate::backend::postgres::registry::record_plan(
            &postgres.client,
            id,
            context.run_id,
            &context.actor,
        )
        .await?;
    }
    if let Some(change) = &plan.app_role {
        crate::backend::postgres::credentials::apply_app_role(&mut postgres.client, change).await?;
    }
    chroma.ensure_scope().await?;
    // Under the apply lock nobody else writes backups of this registry's tenants: a partial
    // folder is what an interrupted run left.
    let mut cleaned = Vec::new();
    for leftover in plan
        .backup_leftovers
        .iter()
        .filter(|leftover| leftover.partial)
    {
        context.backups.remove_partial(leftover).await?;
        cleaned.push(leftover.path.clone());
    }
    let mut report = execute(postgres, chroma, plan, observed, context, progress).await;
    report.migrated = migrated;
    report.cleaned = cleaned;
    Ok(report)
}
