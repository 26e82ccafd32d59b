//! One thin file per subcommand: options in, one operation called, output out.

pub mod apply;
pub mod plan;
pub mod validate;

use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::Postgres;
use crate::cli::{ConnectionArgs, PlanningArgs};
use crate::error::Reported;
use crate::plan::{Naming, PlanOptions};
use crate::render::PlanContext;
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
    })
}

/// Connects to both servers.
pub async fn connect(
    connection: &ConnectionArgs,
    purpose: &str,
) -> Result<(Postgres, ChromaClient)> {
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
