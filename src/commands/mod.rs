//! One thin file per subcommand: options in, one operation called, output out.

pub mod apply;
pub mod plan;
pub mod show;
pub mod validate;
pub mod watch;

use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::Postgres;
use crate::cli::{ConnectionArgs, PlanFormat, PlanningArgs};
use crate::error::{Exit, Reported};
use crate::observed::ObservedState;
use crate::plan::Plan;
use crate::plan::{Naming, PlanOptions};
use crate::render::{self, PlanContext, Style};
use crate::spec::{self, DesiredState};
use anyhow::{Context, Result};
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
            Err(Reported(format!(
                "{count} error{} in `{}`; nothing was changed",
                if count == 1 { "" } else { "s" },
                dir.display()
            ))
            .into())
        }
    }
}

/// Planner options from the flags.
pub fn plan_options(connection: &ConnectionArgs, planning: &PlanningArgs) -> Result<PlanOptions> {
    Naming::validate_role_prefix(&connection.role_prefix)
        .map_err(anyhow::Error::msg)
        .context("invalid `--role-prefix`")?;
    Ok(PlanOptions {
        naming: Naming::with_role_prefix(&connection.role_prefix),
        retention_days: planning.retention_days,
        prune: planning.prune,
        max_deletes: Some(planning.max_deletes),
        targets: planning.tenants.iter().cloned().collect(),
    })
}

/// Connects to both servers.
pub async fn connect(
    connection: &ConnectionArgs,
    purpose: &str,
) -> Result<(Postgres, ChromaClient)> {
    // An empty variable (a CI secret that is not set) must not fall through to some default.
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
            return Err(Reported(format!("error: `{name}` is empty")).into());
        }
    }
    let token = std::env::var("CHROMA_TOKEN").ok();
    let chroma = ChromaClient::new(
        &connection.chroma_url,
        &connection.chroma_tenant,
        &connection.chroma_database,
        token,
    )?;
    let postgres = Postgres::connect(&connection.database_url, purpose).await?;
    Ok((postgres, chroma))
}

/// Header context of a plan.
pub fn context(dir: &Path, postgres: &Postgres, chroma: &ChromaClient) -> PlanContext {
    PlanContext {
        dir: dir.display().to_string(),
        database: postgres.url().to_string(),
        chroma: format!("{} ({})", chroma.url(), chroma.scope()),
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
        return Err(Reported(format!(
            "error: unknown tenant{} in `--tenant`: {}\n  hint: a tenant must have a file in the directory or a row in the registry",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
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
pub fn print_plan(format: PlanFormat, plan: &Plan, context: &PlanContext) {
    use std::io::IsTerminal;
    match format {
        PlanFormat::Text => {
            let style = Style::detect(std::io::stdout().is_terminal());
            print!("{}", render::text::plan(plan, context, style));
        }
        PlanFormat::Json => println!("{}", render::json::plan(plan)),
        PlanFormat::Markdown => print!("{}", render::markdown::plan(plan, context)),
    }
}
