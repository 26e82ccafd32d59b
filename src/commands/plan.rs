//! `tenantctl plan`: read-only; shows what apply would do.

use crate::backend;
use crate::cli::{Format, PlanArgs};
use crate::error::Exit;
use crate::plan;
use crate::render::{self, Style};
use anyhow::Result;
use std::io::IsTerminal;

pub async fn run(args: &PlanArgs) -> Result<Exit> {
    // Validation comes first: an invalid directory never reaches a server.
    let desired = super::load(&args.dir.dir)?;
    let options = super::plan_options(&args.connection, &args.planning)?;
    let (postgres, chroma) = super::connect(&args.connection, "plan").await?;
    let observed = backend::observe(&postgres, &chroma, &options.naming).await?;
    let mut plan = plan::diff(&desired, &observed, &options);
    backend::measure_at_risk(
        &mut plan,
        &observed,
        &postgres,
        &chroma,
        &options.naming,
        &args.planning.backup_dir,
    )
    .await?;
    match args.format {
        Format::Text => {
            let style = Style::detect(std::io::stdout().is_terminal());
            let context = super::context(&args.dir.dir, &postgres, &chroma);
            print!("{}", render::text::plan(&plan, &context, style));
        }
        Format::Json => println!("{}", render::json::plan(&plan)),
    }
    if !plan.refusals.is_empty() {
        eprintln!("error: the plan breaks a safety rule; apply would refuse it");
        return Ok(Exit::Failure);
    }
    if plan.conflicts.is_empty() {
        Ok(Exit::Success)
    } else {
        eprintln!(
            "error: {} conflict{} found; apply would leave those tenants alone and fail",
            plan.conflicts.len(),
            if plan.conflicts.len() == 1 { "" } else { "s" }
        );
        Ok(Exit::Failure)
    }
}
