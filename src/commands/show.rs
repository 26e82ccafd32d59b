//! `tenantctl show FILE`: renders a saved plan; no server is contacted.

use crate::cli::{PlanFormat, ShowArgs};
use crate::error::Exit;
use crate::render::{self, PlanContext, Style};
use crate::saved::SavedPlan;
use anyhow::{Context, Result};
use std::io::IsTerminal;

pub fn run(args: &ShowArgs) -> Result<Exit> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let saved = SavedPlan::parse(&args.file.display().to_string(), &text)?;
    let context = PlanContext {
        dir: saved.dir.clone(),
        database: saved.database.clone(),
        chroma: saved.chroma.clone(),
    };
    match args.format {
        PlanFormat::Text => {
            let style = Style::detect(std::io::stdout().is_terminal());
            print!("{}", render::text::plan(&saved.plan, &context, style));
        }
        PlanFormat::Json => println!("{}", render::json::plan(&saved.plan)),
        PlanFormat::Markdown => print!("{}", render::markdown::plan(&saved.plan, &context)),
    }
    Ok(Exit::Success)
}
