//! One thin file per subcommand: options in, one operation called, output out.

pub mod apply;
pub mod plan;
pub mod show;
pub mod validate;
pub mod watch;

use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{Postgres, PostgresError};
use crate::cli::{ConnectionArgs, PlanFormat, PlanningArgs, DEFAULT_DATABASE_URL};
use crate::error::{Exit, UserError};
use crate::observed::ObservedState;
use crate::plan::Plan;
use crate::plan::{Naming, PlanOptions};
use crate::render::{self, PlanContext, Style};
use crate::saved::SavedOptions;
use crate::spec::{self, DesiredState};
use anyhow::Result;
use std::path::Path;

/// Loads and validates the whole directory, printing every error to stderr.
pub fn load(dir: &Path) -> Result<DesiredState> {
    match spec::load_dir(dir) {
        Ok(desired) => Ok(desired),
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            let count = errors.0.len();
            Err(UserError::closing(format!(
                "{count} error{} in `{}`; nothing was changed",
                if count == 1 { "" } else { "s" },
                dir.display()
            ))
            .into())
        }
    }
}

/// Planner options from the flags.
pub fn plan_options(
    connection: &ConnectionArgs,
    planning: &PlanningArgs,
    targets: &[String],
) -> Result<PlanOptions> {
    if let Err(error) = Naming::validate_role_prefix(&connection.role_prefix) {
        return Err(UserError::new(format!("invalid `--role-prefix`: {error}")).into());
    }
    Ok(PlanOptions {
        naming: Naming::with_role_prefix(&connection.role_prefix),
        retention_days: planning.retention_days,
        prune: planning.prune,
        max_deletes: Some(planning.max_deletes),
        max_destructive_migrations: Some(planning.max_destructive_migrations),
        canary: planning.canary.map(|count| count as usize),
        targets: targets.iter().cloned().collect(),
    })
}

/// Where backups go (`--backup-dir`), checked before anything connects.
///
/// # Errors
/// An empty value, or an object-store URL that cannot be used.
pub fn backup_store(planning: &PlanningArgs) -> Result<crate::backup::BackupStore> {
    planning
        .backup_store()
        .map_err(|error| UserError::new(error.to_string()).into())
}

/// The options a saved plan records and an applying side compares.
pub fn saved_options(options: &PlanOptions, planning: &PlanningArgs) -> SavedOptions {
    SavedOptions {
        role_prefix: options.naming.role_prefix.clone(),
        retention_days: options.retention_days,
        prune: options.prune,
        max_deletes: options.max_deletes,
        max_destructive_migrations: options.max_destructive_migrations,
        canary: options.canary,
        tenants: options.targets.clone(),
        backup_dir: planning
            .backup_store()
            .map_or_else(|_| planning.backup_dir.clone(), |store| store.display()),
    }
}

/// The plan key from `TENANTCTL_PLAN_KEY`, if set. An empty value is an error: a CI secret
/// that is not configured must not silently turn signing off.
pub fn plan_key() -> Result<Option<Vec<u8>>> {
    match std::env::var_os("TENANTCTL_PLAN_KEY") {
        None => Ok(None),
        Some(value) if value.is_empty() => Err(UserError::new("`TENANTCTL_PLAN_KEY` is empty")
            .with_hint("set it to the plan-signing secret, or unset it to work without signatures")
            .into()),
        Some(value) => Ok(Some(value.into_encoded_bytes())),
    }
}

/// The Chroma bearer token from `CHROMA_TOKEN`, if set; empty is an error, as for every
/// variable.
fn chroma_token() -> Result<Option<String>> {
    match std::env::var("CHROMA_TOKEN") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(UserError::new("`CHROMA_TOKEN` is not valid UTF-8").into())
        }
        Ok(token) if token.trim().is_empty() => Err(UserError::new("`CHROMA_TOKEN` is empty")
            .with_hint(
                "set it to the Chroma token, or unset it for a server without authentication",
            )
            .into()),
        Ok(token) => Ok(Some(token)),
    }
}

/// Checks the connection flags without connecting (empty values are errors, not defaults) and
/// builds the Chroma client.
pub fn chroma_client(connection: &ConnectionArgs) -> Result<ChromaClient> {
    for (value, name) in [
        (&connection.database_url, "--database-url / DATABASE_URL"),
        (&connection.chroma_url, "--chroma-url / CHROMA_URL"),
        (&connection.chroma_tenant, "--chroma-tenant / CHROMA_TENANT"),
        (
            &connection.chroma_database,
            "--chroma-database / CHROMA_DATABASE",
        ),
    ] {
        if value.trim().is_empty() {
            return Err(UserError::new(format!("`{name}` is empty")).into());
        }
    }
    Ok(ChromaClient::new(
        &connection.chroma_url,
        &connection.chroma_tenant,
        &connection.chroma_database,
        chroma_token()?,
    )?
    .with_request_timeout(connection.chroma_timeout)?)
}

/// Connects to both servers.
pub async fn connect(
    connection: &ConnectionArgs,
    purpose: &str,
) -> Result<(Postgres, ChromaClient)> {
    let chroma = chroma_client(connection)?;
    let postgres = match Postgres::connect(&connection.database_url, purpose).await {
        Ok(postgres) => postgres,
        // The first thing a new user meets: say how to get a server.
        Err(error @ PostgresError::Connect { .. })
            if connection.database_url == DEFAULT_DATABASE_URL =>
        {
            return Err(UserError::new(error.to_string())
                .with_hint("start the local servers with `bash scripts/servers.sh start`, or point `DATABASE_URL` (or `--database-url`) at your PostgreSQL")
                .into());
        }
        Err(error) => return Err(error.into()),
    };
    Ok((postgres, chroma))
}

/// Header context of a plan.
pub fn context(dir: &Path, postgres: &Postgres, chroma: &ChromaClient) -> PlanContext {
    PlanContext {
        dir: dir.display().to_string(),
        database: postgres.url().to_string(),
        chroma: format!("{} ({})", chroma.url(), chroma.scope_name()),
    }
}

/// With `--tenant`: every id must be known (in a file or the registry), and stderr says that
/// the rest was not looked at.
pub fn check_targets(
    options: &PlanOptions,
    desired: &DesiredState,
    observed: &ObservedState,
) -> Result<()> {
    if options.targets.is_empty() {
        return Ok(());
    }
    let unknown: Vec<&str> = options
        .targets
        .iter()
        .filter(|id| !desired.tenants.contains_key(*id) && !observed.registry.contains_key(*id))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(UserError::new(format!(
            "unknown tenant{} in `--tenant`: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .with_hint("a tenant must have a file in the directory or a row in the registry")
        .into());
    }
    let total = desired
        .tenants
        .keys()
        .chain(observed.registry.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    eprintln!(
        "warning: `--tenant` limits this run to {} of {total} tenants; the others were not looked at",
        options.targets.len()
    );
    Ok(())
}

/// Exit code of a plan: failure on conflicts or refusals; with `--detailed-exitcode`, 2 when
/// there are changes.
pub fn plan_exit(plan: &Plan, detailed: bool) -> Exit {
    if !plan.refusals.is_empty() {
        eprintln!("error: the plan breaks a safety rule; apply would refuse it");
        return Exit::Failure;
    }
    if !plan.conflicts.is_empty() {
        eprintln!(
            "error: {} conflict{} found; apply would leave those tenants alone and fail",
            plan.conflicts.len(),
            if plan.conflicts.len() == 1 { "" } else { "s" }
        );
        return Exit::Failure;
    }
    if detailed && !plan.is_empty() {
        Exit::Changes
    } else {
        Exit::Success
    }
}

/// Prints a plan to stdout in the chosen format (colour only on a terminal).
pub fn print_plan(
    format: PlanFormat,
    plan: &Plan,
    context: &PlanContext,
    comment: &render::markdown::CommentOptions,
) {
    use std::io::IsTerminal;
    match format {
        PlanFormat::Text => {
            let style = Style::detect(std::io::stdout().is_terminal());
            print!("{}", render::text::plan(plan, context, style));
        }
        PlanFormat::Json => println!("{}", render::json::plan(plan)),
        PlanFormat::Markdown => print!("{}", render::markdown::comment(plan, context, comment)),
    }
}

/// Sets a flag on SIGINT or SIGTERM: the run then starts no further tenant, finishes or rolls
/// back the ones in progress, and ends (as `watch` does).
pub fn stop_on_signal() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let flag = stop.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        eprintln!(
            "\n{name}: stopping; the tenants in progress finish or roll back, no other starts"
        );
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    Ok(stop)
}
