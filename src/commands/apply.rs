//! `tenantctl apply [PLANFILE]`: lock, plan under the lock (and compare with the saved plan),
//! confirm, execute, report. The operation itself is [`reconcile::locked_apply`], shared with
//! `watch`.

use crate::apply::RunContext;
use crate::cli::{ApplyArgs, ReportFormat};
use crate::error::{Exit, UserError};
use crate::progress::{self, Progress};
use crate::reconcile::{self, Applied, LockedApply};
use crate::render::{self, Style};
use crate::report::ApplyReport;
use crate::saved::{self, SavedPlan, StaleReason};
use anyhow::{Context, Result};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;

pub async fn run(args: &ApplyArgs) -> Result<Exit> {
    // A saved plan is read (and its signature checked) before anything else.
    let saved = match &args.plan_file {
        Some(file) => Some(read_saved(file)?),
        None => None,
    };
    let desired = super::load(&args.dir.dir)?;
    let options = super::plan_options(&args.connection, &args.planning, &args.targets.tenants)?;
    let my_options = super::saved_options(&options, &args.planning);
    let backups = super::backup_store(&args.planning)?;
    let (mut postgres, chroma) = super::connect(&args.connection, "apply").await?;
    let plan_context = super::context(&args.dir.dir, &postgres, &chroma);

    let mut context = RunContext::new(backups.clone());
    context.parallelism = usize::from(args.parallelism);
    context.timeouts = args.bounds.timeouts();
    context.migration_lock_timeout = args.bounds.migration_lock_timeout;
    context.migration_retries = args.bounds.migration_retries;
    context.stop_on_error = args.bounds.on_error == crate::cli::OnError::Stop;
    context.deadline = Some(tokio::time::Instant::now() + args.bounds.run_timeout);
    context.stop = super::stop_on_signal()?;
    context.secrets = args.secrets.sink().map_err(UserError::new)?;

    let style = Style::detect(std::io::stdout().is_terminal());
    let text = args.format == ReportFormat::Text;
    let fingerprint = desired.fingerprint.clone();
    let check = |observed: &crate::observed::ObservedState, plan: &crate::plan::Plan| {
        super::check_targets(&options, &desired, observed)?;
        if let Some(saved) = &saved {
            saved.check_fresh(&fingerprint, observed, &my_options, plan)?;
        }
        Ok(())
    };
    let auto_approve = args.auto_approve || saved.is_some();
    let review = |plan: &crate::plan::Plan| {
        if text {
            print!("{}", render::text::plan(plan, &plan_context, style));
        }
        // A saved plan was reviewed when it was made (as with terraform's saved plans); a
        // fresh plan needs a `yes` or `--auto-approve`.
        if plan.refusals.is_empty() && !plan.is_empty() && !auto_approve {
            confirm()?;
        }
        if text && plan.refusals.is_empty() && !plan.is_empty() {
            println!();
        }
        Ok(())
    };
    // Created once the plan says how many tenants will be applied.
    let meter: std::cell::RefCell<Option<Progress>> = std::cell::RefCell::new(None);
    let mode = progress::Mode::detect(args.quiet, std::io::stderr().is_terminal());
    let review = |plan: &crate::plan::Plan| {
        let total = plan
            .changes
            .iter()
            .filter(|change| change.blocked || !change.steps.is_empty())
            .count();
        *meter.borrow_mut() = Some(Progress::new(mode, total, std::time::Duration::ZERO));
        review(plan)
    };
    let progress = |update: crate::apply::Update<'_>| {
        let mut meter = meter.borrow_mut();
        let Some(meter) = meter.as_mut() else {
            return;
        };
        match update {
            crate::apply::Update::Started(tenant) => {
                meter.record(progress::Event::Started { tenant });
            }
            crate::apply::Update::Finished(result) => {
                if text {
                    meter.suspend(|| {
                        print!("{}", render::text::tenant_result(result, style));
                        let _ = std::io::stdout().flush();
                    });
                }
                meter.record(progress::Event::Finished {
                    tenant: &result.tenant,
                    failed: result.outcome != crate::report::TenantOutcome::Applied,
                });
            }
        }
    };
    let applied = reconcile::locked_apply(
        &mut postgres,
        &chroma,
        LockedApply {
            desired: &desired,
            options: &options,
            backups: &backups,
            lock_timeout: args.lock_timeout,
            context: &context,
            saved_id: saved.as_ref().map(|saved| saved.id),
        },
        check,
        review,
        progress,
    )
    .await
    .map_err(|error| match error {
        crate::apply::RunError::Postgres(
            error @ crate::backend::postgres::PostgresError::LockTimeout { .. },
        ) => anyhow::Error::new(error).context("another apply is running"),
        other => other.into(),
    });
    if let Some(meter) = meter.borrow_mut().as_mut() {
        meter.finish();
    }
    let applied = applied?;

    match applied {
        Applied::Declined { error } => {
            if let Some(reason) = error.downcast_ref::<StaleReason>() {
                let file = args.plan_file.as_deref().unwrap_or(Path::new("the plan"));
                eprintln!(
                    "{}",
                    UserError::new(format!(
                        "refusing to apply `{}`: {reason}; nothing was changed",
                        file.display()
                    ))
                    .with_hint("make a new plan with `tenantctl plan --out FILE` and review it")
                );
                return Ok(Exit::Stale);
            }
            Err(error)
        }
        Applied::Refused { plan } => {
            let mut message = String::new();
            for refusal in &plan.refusals {
                message.push_str(&format!("error: {}\n", refusal.message));
                if let Some(hint) = &refusal.hint {
                    message.push_str(&format!("  hint: {hint}\n"));
                }
            }
            message.push_str("apply refused: the plan breaks a safety rule; nothing was changed");
            Err(UserError::closing(message).into())
        }
        Applied::NothingToDo { plan } => {
            if !text {
                println!("{}", render::json::report(&ApplyReport::default()));
            }
            Ok(if plan.conflicts.is_empty() {
                Exit::Success
            } else {
                Exit::Failure
            })
        }
        Applied::Done { report, .. } => {
            if text {
                println!();
                println!("{}", render::text::report_summary(&report));
            } else {
                println!("{}", render::json::report(&report));
            }
            if let Some(stopped) = &report.stopped {
                eprintln!("error: {stopped}");
            }
            Ok(if report.failed() {
                Exit::Failure
            } else {
                Exit::Success
            })
        }
    }
}

/// Reads and checks a saved plan file: a regular file of sane size, a saved plan of this
/// format, signed when a plan key is configured.
fn read_saved(file: &Path) -> Result<SavedPlan> {
    let metadata = std::fs::metadata(file)
        .with_context(|| format!("cannot read the saved plan `{}`", file.display()))?;
    if metadata.is_dir() {
        return Err(UserError::new(format!(
            "`{}` is a directory, not a saved plan",
            file.display()
        ))
        .with_hint(format!(
            "to apply the tenant files in it, use `tenantctl apply --dir {}`",
            file.display()
        ))
        .into());
    }
    if metadata.len() > saved::MAX_BYTES {
        return Err(UserError::new(format!(
            "`{}` is {} bytes, larger than any saved plan",
            file.display(),
            metadata.len()
        ))
        .into());
    }
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|handle| handle.take(saved::MAX_BYTES).read_to_string(&mut text))
        .with_context(|| format!("cannot read the saved plan `{}`", file.display()))?;
    let key = super::plan_key()?;
    SavedPlan::parse(&file.display().to_string(), &text, key.as_deref())
        .map_err(|error| UserError::new(error.to_string()).into())
}

/// Asks for `yes` on a terminal; refuses without one.
fn confirm() -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(
            UserError::new("apply needs confirmation but stdin is not a terminal")
                .with_hint("review the plan, then run again with `--auto-approve`")
                .into(),
        );
    }
    print!("\nDo you want to apply these changes? Only `yes` is accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(UserError::closing("apply cancelled; nothing was changed").into())
    }
}
