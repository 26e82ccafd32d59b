//! `tenantctl show FILE`: renders a saved plan; no server is contacted.

use crate::cli::ShowArgs;
use crate::error::{Exit, UserError};
use crate::render::PlanContext;
use crate::saved::SavedPlan;
use anyhow::{Context, Result};

pub fn run(args: &ShowArgs) -> Result<Exit> {
    let comment = args.comment.options(args.format).map_err(UserError::new)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    // Showing needs no key: what is shown is what the file says, and apply checks it again.
    let saved = SavedPlan::parse(&args.file.display().to_string(), &text, None)
        .map_err(|error| UserError::new(error.to_string()))?;
    let context = PlanContext {
        dir: saved.dir.clone(),
        database: saved.database.clone(),
        chroma: saved.chroma.clone(),
    };
    super::print_plan(args.format, &saved.plan, &context, &comment);
    Ok(Exit::Success)
}
