//! One tenant, atomically: begin its transaction, run its steps ([`super::TenantWork`]),
//! record its events, commit; then the migrations left for after the commit
//! ([`super::online`]). If anything fails before the commit, the transaction rolls back and
//! what Chroma (and the backup) did is compensated, newest first.

use super::{bounded, failpoint, online, Generated, Statements, TenantWork};
use crate::apply::compensation::Compensation;
use crate::apply::{RunContext, RunError};
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{query_error, registry, Postgres};
use crate::observed::ObservedState;
use crate::plan::{Step, TenantChange};
use crate::report::TenantOutcome;
use crate::spec::migrations::Migrations;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Applies one tenant change: its PostgreSQL steps and event in one transaction, its Chroma
/// steps while that transaction is open, compensation of those if anything fails.
///
/// Returns the outcome, the error that caused a rollback (the caller decides from it whether
/// the run can go on), and the lock-timeout retries made in place (by migrations that run
/// after the tenant's transaction).
pub(in crate::apply) async fn apply_change(
    session: &mut Postgres,
    chroma: &ChromaClient,
    change: &TenantChange,
    migrations: &Migrations,
    observed: &ObservedState,
    context: &RunContext,
) -> (TenantOutcome, Option<RunError>, u32) {
    // A create gets its uid here, before anything runs: it names the Chroma collection's
    // incarnation and, recorded first in its own statement, lets a later plan recognize what
    // an interrupted create left behind.
    let uid = change.uid.unwrap_or_else(Uuid::new_v4);
    let mut compensations = Vec::new();
    let mut retries = 0;
    let result = run_steps(
        session,
        chroma,
        change,
        uid,
        Edges {
            migrations,
            observed,
            context,
        },
        &mut compensations,
        &mut retries,
    )
    .await;
    match result {
        Ok(()) => (TenantOutcome::Applied, None, retries),
        Err(error @ RunError::Online(_)) => {
            // The tenant's transaction committed: its Chroma steps stand, nothing is undone.
            if error.session_lost() {
                session.give_up();
            }
            (
                TenantOutcome::Unfinished {
                    reason: error.to_string(),
                },
                Some(error),
                retries,
            )
        }
        Err(error) => {
            if error.session_lost() {
                // Its transaction cannot be rolled back from here; the server does that when
                // it sees the connection closed.
                session.give_up();
            }
            // The transaction was dropped inside run_steps, which rolls it back; now take back
            // what Chroma (and the backup) did, newest first.
            let mut undone = Vec::new();
            let mut undo_failed = Vec::new();
            for compensation in compensations.iter().rev() {
                match compensation.run(chroma).await {
                    Ok(()) => undone.push(compensation.done()),
                    Err(undo_error) => undo_failed.push(format!(
                        "could not {}: {undo_error}; the next plan shows what is left",
                        compensation.attempt()
                    )),
                }
            }
            (
                TenantOutcome::RolledBack {
                    reason: error.to_string(),
                    undone,
                    undo_failed,
                },
                Some(error),
                retries,
            )
        }
    }
}

/// What a tenant's steps read besides the change: the migrations' SQL, the live state the plan
/// was made from, the run.
#[derive(Clone, Copy)]
pub(super) struct Edges<'a> {
    pub migrations: &'a Migrations,
    pub observed: &'a ObservedState,
    pub context: &'a RunContext,
}

async fn run_steps(
    session: &mut Postgres,
    chroma: &ChromaClient,
    change: &TenantChange,
    uid: Uuid,
    edges: Edges<'_>,
    compensations: &mut Vec<Compensation>,
    retries: &mut u32,
) -> Result<(), RunError> {
    let Edges {
        migrations,
        observed,
        context,
    } = edges;
    let tenant = change.tenant.as_str();
    let deadline = context.timeouts.client_deadline();
    // Prepared once per session (the first tenant pays for it): the statements every tenant
    // runs are then one round trip each, not two.
    let statements = bounded(
        deadline,
        "prepare the statements of the registry".to_string(),
        Statements::prepare(session),
    )
    .await?;
    let creates = change
        .steps
        .iter()
        .any(|step| matches!(step, Step::InsertRegistry { .. }));
    if creates {
        bounded(
            deadline,
            format!("record the start of the create of `{tenant}`"),
            registry::record_create_started(
                &session.client,
                &statements.create_started,
                &context.run_id,
                &context.actor,
                tenant,
                uid,
            ),
        )
        .await?;
    }
    // A soft delete exports several tables: REPEATABLE READ makes every COPY read the same
    // snapshot, so the backup is consistent across tables.
    let isolation = if change
        .steps
        .iter()
        .any(|step| matches!(step, Step::ExportBackup { .. }))
    {
        tokio_postgres::IsolationLevel::RepeatableRead
    } else {
        tokio_postgres::IsolationLevel::ReadCommitted
    };
    let urls = session.tenant_urls();
    let transaction = begin(
        &mut session.client,
        isolation,
        deadline,
        format!("begin the transaction of `{tenant}`"),
    )
    .await?;
    let mut work = TenantWork {
        transaction: &transaction,
        chroma,
        tenant,
        uid,
        migrations,
        observed,
        context,
        batch: Vec::new(),
        role_graph_locked: false,
        compensations,
        backup: None,
        statements: &statements,
        urls,
        generated: Generated::default(),
        credential_events: Vec::new(),
        created_schema: false,
        runs_migrations: change
            .steps
            .iter()
            .any(|step| matches!(step, Step::RunMigrations { .. })),
        online: None,
    };
    for step in &change.steps {
        failpoint::hit(tenant, "before", step.kind());
        work.run(step).await?;
        failpoint::hit(tenant, "after", step.kind());
    }
    let mut changes = json!({
        "fields": change.fields,
        "drift": change.drift,
        "steps": change.steps,
    });
    if !change.credentials.is_empty() {
        changes["credentials"] = json!(change.credentials);
    }
    if let Some(folder) = &work.backup {
        // Which backup folder this soft delete committed: a later plan tells it apart from
        // one an interrupted apply left.
        changes["backup"] = json!(folder);
    }
    if let Some(remaining) = &work.online {
        // The migrations this event's steps name that run after its commit: the history
        // (`tenant_migrations`) says which of them were applied.
        changes["after_commit"] = json!({ "migrations": remaining.versions });
    }
    let action = change
        .actions
        .iter()
        .map(|action| action.verb())
        .collect::<Vec<_>>()
        .join(",");
    let event = registry::Event {
        run_id: context.run_id,
        actor: &context.actor,
        tenant,
        uid: Some(uid),
        action: &action,
        status_before: change.status_before,
        status_after: change.status_after,
        reason: change.reason.as_deref(),
        changes,
    };
    // One event per credential change, with names and prefixes, never a secret.
    let credential_events: Vec<registry::Event<'_>> = work
        .credential_events
        .iter()
        .map(|(action, details)| registry::Event {
            run_id: context.run_id,
            actor: &context.actor,
            tenant,
            uid: Some(uid),
            action,
            status_before: None,
            status_after: None,
            reason: None,
            changes: details.clone(),
        })
        .collect();
    // The last DDL and the events go together (one round trip); should the DDL fail, its
    // error is the one reported, the events failing only because the transaction did.
    let (flushed, recorded, credentials_recorded) = futures_util::join!(
        work.flush(),
        bounded(
            deadline,
            format!("record the event of `{tenant}`"),
            registry::insert_event(&transaction, &statements.insert_event, &event),
        ),
        futures_util::future::join_all(credential_events.iter().map(|event| bounded(
            deadline,
            format!("record the credential events of `{tenant}`"),
            registry::insert_event(&transaction, &statements.insert_event, event),
        )))
    );
    flushed?;
    recorded?;
    for result in credentials_recorded {
        result?;
    }
    let remaining = work.online.take();
    drop(work);
    failpoint::hit(tenant, "before", "commit");
    commit(
        transaction,
        deadline,
        format!("commit the transaction of `{tenant}`"),
    )
    .await?;
    failpoint::hit(tenant, "after", "commit");
    if let Some(remaining) = remaining {
        let online_tenant = online::Tenant {
            name: tenant,
            uid,
            schema: &remaining.schema,
        };
        online::run(
            session,
            &statements,
            edges,
            &online_tenant,
            &remaining,
            retries,
        )
        .await
        .map_err(|error| RunError::Online(Box::new(error)))?;
    }
    Ok(())
}

/// Begins a transaction on `client`, bounded by `deadline`.
pub(super) async fn begin(
    client: &mut tokio_postgres::Client,
    isolation: tokio_postgres::IsolationLevel,
    deadline: Duration,
    operation: String,
) -> Result<tokio_postgres::Transaction<'_>, RunError> {
    bounded(deadline, operation.clone(), async {
        client
            .build_transaction()
            .isolation_level(isolation)
            .start()
            .await
            .map_err(query_error(operation))
    })
    .await
}

/// Commits `transaction`, bounded by `deadline`.
pub(super) async fn commit(
    transaction: tokio_postgres::Transaction<'_>,
    deadline: Duration,
    operation: String,
) -> Result<(), RunError> {
    bounded(deadline, operation.clone(), async {
        transaction.commit().await.map_err(query_error(operation))
    })
    .await
}
