//! Runs a [`Plan`]: one tenant at a time, each atomically.
//!
//! For every tenant with steps: open a PostgreSQL transaction, run its PostgreSQL steps, then its
//! Chroma steps while the transaction is still open, append the audit event, commit. If anything
//! fails, the transaction rolls back and each Chroma step already done is compensated in reverse
//! order, so a tenant ends either fully applied or as it was. Other tenants go on.

use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{self, Event, Postgres, PostgresError};
use crate::backend::BackendError;
use crate::observed::ObservedState;
use crate::plan::{collection_metadata, Plan, Step, TenantChange};
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Who runs the apply, recorded in every event.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: Uuid,
    pub actor: String,
}

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
}

/// The outcome of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantResult {
    pub tenant: String,
    pub actions: Vec<crate::plan::Action>,
    #[serde(flatten)]
    pub outcome: TenantOutcome,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ApplyReport {
    pub run_id: Option<Uuid>,
    /// Control schema versions migrated by this run.
    pub migrated: Vec<i32>,
    pub tenants: Vec<TenantResult>,
}

impl ApplyReport {
    /// True when any tenant failed or was blocked.
    pub fn failed(&self) -> bool {
        self.tenants
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

/// A Chroma step done inside a tenant's window, and how to take it back.
enum Compensation {
    /// Delete the collection, but only if it still carries this incarnation's uid: never
    /// someone else's collection of the same name.
    DeleteCreatedCollection { name: String, uid: Uuid },
    /// Put the previous metadata back.
    RestoreMetadata {
        name: String,
        id: String,
        previous: Map<String, Value>,
    },
}

impl Compensation {
    /// What was done, for the report.
    fn done(&self) -> String {
        match self {
            Compensation::DeleteCreatedCollection { name, .. } => {
                format!("collection `{name}` created by this run is gone")
            }
            Compensation::RestoreMetadata { name, .. } => {
                format!("metadata of collection `{name}` restored")
            }
        }
    }

    /// What was attempted, for a failure message.
    fn describe(&self) -> String {
        match self {
            Compensation::DeleteCreatedCollection { name, .. } => {
                format!("delete collection `{name}` if this run created it")
            }
            Compensation::RestoreMetadata { name, .. } => {
                format!("restore the metadata of collection `{name}`")
            }
        }
    }

    async fn run(&self, chroma: &ChromaClient) -> Result<(), BackendError> {
        match self {
            Compensation::DeleteCreatedCollection { name, uid } => {
                match chroma.get_collection(name).await? {
                    Some(collection)
                        if collection.metadata_str("tenant_uid") == Some(&uid.to_string()) =>
                    {
                        chroma.delete_collection(name).await?;
                    }
                    // Never created (the request failed before reaching the server), or not ours.
                    _ => {}
                }
                Ok(())
            }
            Compensation::RestoreMetadata { id, previous, .. } => {
                chroma.update_metadata(id, previous).await?;
                Ok(())
            }
        }
    }
}

/// Executes every tenant change of `plan` that has steps and no conflict.
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
    mut progress: impl FnMut(&TenantResult),
) -> ApplyReport {
    let mut report = ApplyReport {
        run_id: Some(context.run_id),
        ..ApplyReport::default()
    };
    for change in &plan.changes {
        let outcome = if change.blocked {
            let reasons: Vec<&str> = plan
                .conflicts
                .iter()
                .filter(|conflict| conflict.tenant == change.tenant)
                .map(|conflict| conflict.message.as_str())
                .collect();
            TenantOutcome::Blocked {
                reason: reasons.join("; "),
            }
        } else if change.steps.is_empty() {
            continue;
        } else {
            apply_change(postgres, chroma, change, observed, context).await
        };
        let result = TenantResult {
            tenant: change.tenant.clone(),
            actions: change.actions.clone(),
            outcome,
        };
        progress(&result);
        report.tenants.push(result);
    }
    report
}

/// One tenant, atomically.
async fn apply_change(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    change: &TenantChange,
    observed: &ObservedState,
    context: &RunContext,
) -> TenantOutcome {
    let mut compensations = Vec::new();
    let result = run_steps(
        postgres,
        chroma,
        change,
        observed,
        context,
        &mut compensations,
    )
    .await;
    match result {
        Ok(()) => TenantOutcome::Applied,
        Err(error) => {
            // The transaction was dropped inside run_steps, which rolls it back; now take back
            // what Chroma did, newest first.
            let mut undone = Vec::new();
            let mut undo_failed = Vec::new();
            for compensation in compensations.iter().rev() {
                match compensation.run(chroma).await {
                    Ok(()) => undone.push(compensation.done()),
                    Err(undo_error) => undo_failed.push(format!(
                        "could not {}: {undo_error}; the next plan shows what is left",
                        compensation.describe()
                    )),
                }
            }
            TenantOutcome::RolledBack {
                reason: error.to_string(),
                undone,
                undo_failed,
            }
        }
    }
}

async fn run_steps(
    postgres: &mut Postgres,
    chroma: &ChromaClient,
    change: &TenantChange,
    observed: &ObservedState,
    context: &RunContext,
    compensations: &mut Vec<Compensation>,
) -> Result<(), BackendError> {
    let tenant = change.tenant.as_str();
    let transaction =
        postgres
            .client
            .transaction()
            .await
            .map_err(|source| PostgresError::Query {
                operation: format!("begin the transaction of `{tenant}`"),
                source,
            })?;
    let mut uid = change.uid;
    for step in change.steps.iter().filter(|step| !step.is_chroma()) {
        match step {
            Step::InsertRegistry => {
                let record = change.record.as_ref().expect("insert carries a record");
                uid = Some(postgres::insert_registry(&transaction, tenant, record).await?);
            }
            Step::UpdateRegistry => {
                let record = change.record.as_ref().expect("update carries a record");
                postgres::update_registry(&transaction, tenant, record).await?;
            }
            other => {
                if let Some(sql) = postgres::step_sql(other)? {
                    transaction.batch_execute(&sql).await.map_err(|source| {
                        PostgresError::Query {
                            operation: format!("{} for `{tenant}`", step_label(other)),
                            source,
                        }
                    })?;
                }
            }
        }
    }
    let uid = uid.ok_or_else(|| {
        PostgresError::Unexpected(format!("tenant `{tenant}` has no uid after its steps"))
    })?;

    for step in change.steps.iter().filter(|step| step.is_chroma()) {
        match step {
            Step::CreateCollection { collection } => {
                // Registered before the call: if the answer is lost, the collection may exist
                // anyway, and the compensation checks the uid before deleting.
                compensations.push(Compensation::DeleteCreatedCollection {
                    name: collection.clone(),
                    uid,
                });
                chroma
                    .create_collection(collection, &collection_metadata(tenant, uid))
                    .await?;
            }
            Step::UpdateCollectionMetadata { collection, id } => {
                let previous = observed
                    .collections
                    .get(collection)
                    .map(|live| live.metadata.clone())
                    .unwrap_or_default();
                chroma
                    .update_metadata(id, &collection_metadata(tenant, uid))
                    .await?;
                if !previous.is_empty() {
                    compensations.push(Compensation::RestoreMetadata {
                        name: collection.clone(),
                        id: id.clone(),
                        previous,
                    });
                }
            }
            _ => unreachable!("only chroma steps here"),
        }
    }

    let changes = json!({
        "fields": change.fields,
        "drift": change.drift,
        "steps": change.steps,
    });
    let action = change
        .actions
        .iter()
        .map(|action| action.verb())
        .collect::<Vec<_>>()
        .join(",");
    postgres::insert_event(
        &transaction,
        &Event {
            run_id: context.run_id,
            actor: &context.actor,
            tenant,
            uid: Some(uid),
            action: &action,
            status_before: change.status_before,
            status_after: change.status_after,
            reason: change
                .record
                .as_ref()
                .and_then(|record| record.suspension_reason.as_deref()),
            changes,
        },
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(|source| PostgresError::Query {
            operation: format!("commit the transaction of `{tenant}`"),
            source,
        })?;
    Ok(())
}

/// Short description of a step for error messages.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::CreateSchema { schema } => format!("create schema `{schema}`"),
        Step::CreateTable { schema, table } => format!("create table `{schema}.{table}`"),
        Step::AddColumn {
            schema,
            table,
            column,
        } => format!("add column `{column}` to `{schema}.{table}`"),
        Step::CreateRole { role } => format!("create role `{role}`"),
        Step::DisableRoleLogin { role } => format!("disable login of role `{role}`"),
        Step::RevokeSchemaFromPublic { schema } => {
            format!("revoke PUBLIC privileges on schema `{schema}`")
        }
        Step::RevokeTableFromPublic { schema, table } => {
            format!("revoke PUBLIC privileges on table `{schema}.{table}`")
        }
        Step::GrantSchemaUsage { schema, role } => {
            format!("grant usage on schema `{schema}` to `{role}`")
        }
        Step::RevokeSchemaUsage { schema, role } => {
            format!("revoke access to schema `{schema}` from `{role}`")
        }
        Step::GrantTablePrivileges {
            schema,
            table,
            role,
        } => format!("grant table privileges on `{schema}.{table}` to `{role}`"),
        Step::InsertRegistry => "insert the registry row".to_string(),
        Step::UpdateRegistry => "update the registry row".to_string(),
        Step::CreateCollection { collection } => format!("create collection `{collection}`"),
        Step::UpdateCollectionMetadata { collection, .. } => {
            format!("update the metadata of collection `{collection}`")
        }
    }
}
