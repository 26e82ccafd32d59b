//! `tenantctl apply [PLANFILE]`: lock, re-read, (re-)plan or check the saved plan, confirm,
//! execute.

use crate::apply::{self, ApplyReport, RunContext};
use crate::backend;
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::{self, Postgres};
use crate::cli::{ApplyArgs, ReportFormat};
use crate::error::{Exit, Reported};
use crate::observed::ObservedState;
use crate::plan::{Naming, Plan, PlanOptions};
use crate::render::{self, Style};
use crate::saved::{SavedPlan, StaleReason};
use anyhow::{Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub async fn run(args: &ApplyArgs) -> Result<Exit> {
    match &args.plan_file {
        Some(file) => apply_saved(args, file).await,
        None => apply_fresh(args).await,
    }
}

/// Plans under the lock and applies that plan.
async fn apply_fresh(args: &ApplyArgs) -> Result<Exit> {
    let desired = super::load(&args.dir.dir)?;
    let options = super::plan_options(&args.connection, &args.planning)?;
    let (mut postgres, chroma) = super::connect(&args.connection, "apply").await?;

    // Everything from here runs under the lock: the plan shown is the plan executed.
    postgres
        .lock(args.lock_timeout)
        .await
        .context("another apply is running")?;
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
    let run = Run {
        args,
        plan: &plan,
        observed: &observed,
        backup_root: args.planning.backup_dir.clone(),
        saved_id: None,
        context,
    };
    run.execute(&mut postgres, &chroma).await
}

/// Applies a saved plan exactly, after checking that neither the files nor the live state
/// changed and that it was never applied.
async fn apply_saved(args: &ApplyArgs, file: &Path) -> Result<Exit> {
    // The saved plan carries its own options; a flag that would change them is a mistake.
    if !args.planning.tenants.is_empty()
        || args.planning.prune
        || args.planning.retention_days.is_some()
    {
        return Err(Reported(
            "error: `--tenant`, `--prune` and `--retention-days` cannot be combined with a saved plan: it applies with the options it was made with".to_string(),
        )
        .into());
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the saved plan `{}`", file.display()))?;
    let saved = SavedPlan::parse(&file.display().to_string(), &text)?;
    // The files the plan was made from must still be the same; validate them as usual.
    let desired = super::load(Path::new(&saved.dir))?;
    let options = PlanOptions {
        naming: Naming::with_role_prefix(&saved.options.role_prefix),
        retention_days: saved.options.retention_days,
        prune: saved.options.prune,
        max_deletes: saved.options.max_deletes,
        targets: saved.options.tenants.clone(),
    };
    let (mut postgres, chroma) = super::connect(&args.connection, "apply").await?;
    postgres
        .lock(args.lock_timeout)
        .await
        .context("another apply is running")?;
    let observed = backend::observe(&postgres, &chroma, &options.naming).await?;
    let stale = match postgres::plan_applied(&postgres.client, saved.id).await? {
        Some(at) => Err(StaleReason::AlreadyApplied(
            at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )),
        None => saved.check_fresh(&desired.fingerprint, &observed),
    };
    if let Err(reason) = stale {
        postgres.unlock().await?;
        eprintln!(
            "error: refusing to apply `{}`: {reason}; nothing was changed\n  hint: make a new plan with `tenantctl plan --out FILE` and review it",
            file.display()
        );
        return Ok(Exit::Stale);
    }
    let context = render::PlanContext {
        dir: saved.dir.clone(),
        database: postgres.url().to_string(),
        chroma: format!("{} ({})", chroma.url(), chroma.scope()),
    };
    let run = Run {
        args,
        plan: &saved.plan,
        observed: &observed,
        backup_root: PathBuf::from(&saved.options.backup_dir),
        saved_id: Some(saved.id),
        context,
    };
    run.execute(&mut postgres, &chroma).await
}

/// One apply, from showing the plan to the report.
struct Run<'a> {
    args: &'a ApplyArgs,
    plan: &'a Plan,
    observed: &'a ObservedState,
    backup_root: PathBuf,
    /// Id of the saved plan being applied, recorded before the first change.
    saved_id: Option<Uuid>,
    context: render::PlanContext,
}

impl Run<'_> {
    async fn execute(self, postgres: &mut Postgres, chroma: &ChromaClient) -> Result<Exit> {
        let style = Style::detect(std::io::stdout().is_terminal());
        let text = self.args.format == ReportFormat::Text;
        let plan = self.plan;
        if text {
            print!("{}", render::text::plan(plan, &self.context, style));
        }
        if !plan.refusals.is_empty() {
            postgres.unlock().await?;
            let reasons: Vec<String> = plan
                .refusals
                .iter()
                .map(|refusal| format!("error: {}", refusal.message))
                .collect();
            return Err(Reported(format!(
                "{}\napply refused: the plan breaks a safety rule; nothing was changed",
                reasons.join("\n")
            ))
            .into());
        }
        if plan.is_empty() {
            if !text {
                println!("{}", render::json::report(&ApplyReport::default()));
            }
            postgres.unlock().await?;
            return Ok(if plan.conflicts.is_empty() {
                Exit::Success
            } else {
                Exit::Failure
            });
        }
        // A saved plan was reviewed when it was made (as with terraform's saved plans); a
        // fresh plan needs a `yes` or `--auto-approve`.
        if !self.args.auto_approve && self.saved_id.is_none() {
            if let Err(error) = confirm() {
                postgres.unlock().await?;
                return Err(error);
            }
        }

        let mut context = RunContext::new(self.backup_root.clone());
        context.parallelism = usize::from(self.args.parallelism);
        if text {
            println!();
        }
        let report = apply::run(
            postgres,
            chroma,
            plan,
            self.observed,
            &context,
            self.saved_id,
            |result| {
                if text {
                    print!("{}", render::text::tenant_result(result, style));
                    let _ = std::io::stdout().flush();
                }
            },
        )
        .await?;
        postgres.unlock().await?;

        if text {
            println!();
            println!("{}", render::text::report_summary(&report));
        } else {
            println!("{}", render::json::report(&report));
        }
        Ok(if report.failed() {
            Exit::Failure
        } else {
            Exit::Success
        })
    }
}

/// Asks for `yes` on a terminal; refuses without one.
fn confirm() -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Reported(
            "error: apply needs confirmation but stdin is not a terminal\n  hint: review the plan, then run again with `--auto-approve`"
                .to_string(),
        )
        .into());
    }
    print!("\nDo you want to apply these changes? Only `yes` is accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Reported("apply cancelled; nothing was changed".to_string()).into())
    }
}
