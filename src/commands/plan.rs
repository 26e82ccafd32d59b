//! `tenantctl plan`: read-only; shows what apply would do, optionally saves it.

use crate::apply;
use crate::cli::PlanArgs;
use crate::error::Exit;
use crate::saved::{self, SavedOptions, SavedPlan};
use anyhow::{Context, Result};

pub async fn run(args: &PlanArgs) -> Result<Exit> {
    // Validation comes first: an invalid directory never reaches a server.
    let desired = super::load(&args.dir.dir)?;
    let options = super::plan_options(&args.connection, &args.planning)?;
    let (postgres, chroma) = super::connect(&args.connection, "plan").await?;
    let (observed, plan) = apply::observe_and_plan(
        &postgres,
        &chroma,
        &desired,
        &options,
        &args.planning.backup_dir,
    )
    .await?;
    super::check_targets(&options, &desired, &observed)?;
    let context = super::context(&args.dir.dir, &postgres, &chroma);

    if let Some(out) = &args.out {
        let saved = SavedPlan {
            kind: saved::KIND.to_string(),
            format_version: saved::FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            id: uuid::Uuid::new_v4(),
            created_at: observed.server_time,
            dir: args.dir.dir.display().to_string(),
            desired_fingerprint: desired.fingerprint.clone(),
            live_fingerprint: saved::live_fingerprint(&observed),
            database: context.database.clone(),
            chroma: context.chroma.clone(),
            options: SavedOptions {
                role_prefix: options.naming.role_prefix.clone(),
                retention_days: options.retention_days,
                prune: options.prune,
                max_deletes: options.max_deletes,
                tenants: options.targets.clone(),
                backup_dir: args.planning.backup_dir.display().to_string(),
            },
            plan: plan.clone(),
        };
        std::fs::write(out, saved.to_json())
            .with_context(|| format!("cannot write the saved plan to `{}`", out.display()))?;
        eprintln!(
            "saved the plan to `{}`; apply exactly it with `tenantctl apply {}`",
            out.display(),
            out.display()
        );
    }

    super::print_plan(args.format, &plan, &context);
    Ok(super::plan_exit(&plan, args.detailed_exitcode))
}
