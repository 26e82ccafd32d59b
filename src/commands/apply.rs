//! `tenantctl apply`: lock, re-read, re-plan, confirm, execute.

use crate::apply::{self, RunContext};
use crate::backend::{self, postgres};
use crate::cli::{ApplyArgs, Format};
use crate::error::{Exit, Reported};
use crate::plan;
use crate::render::{self, Style};
use anyhow::{Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use uuid::Uuid;

pub async fn run(args: &ApplyArgs) -> Result<Exit> {
    let desired = super::load(&args.dir.dir)?;
    let options = super::plan_options(&args.connection, &args.planning)?;
    let (mut postgres, chroma) = super::connect(&args.connection, "apply").await?;
    let style = Style::detect(std::io::stdout().is_terminal());
    let text = args.format == Format::Text;

    // Everything from here runs under the lock: the plan shown is the plan executed.
    postgres
        .lock(args.lock_timeout)
        .await
        .context("another apply is running")?;
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
    if text {
        let context = super::context(&args.dir.dir, &postgres, &chroma);
        print!("{}", render::text::plan(&plan, &context, style));
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
            println!("{}", render::json::report(&apply::ApplyReport::default()));
        }
        postgres.unlock().await?;
        return Ok(if plan.conflicts.is_empty() {
            Exit::Success
        } else {
            Exit::Failure
        });
    }

    if !args.auto_approve {
        confirm()?;
    }

    let mut report = apply::ApplyReport {
        migrated: postgres.migrate().await?,
        ..apply::ApplyReport::default()
    };
    chroma
        .ensure_scope()
        .await
        .context("cannot prepare the chroma tenant and database")?;
    let context = RunContext {
        run_id: Uuid::new_v4(),
        actor: postgres::actor(),
        backup_root: args.planning.backup_dir.clone(),
    };
    if text {
        println!();
    }
    let executed = apply::execute(
        &mut postgres,
        &chroma,
        &plan,
        &observed,
        &context,
        |result| {
            if text {
                print!("{}", render::text::tenant_result(result, style));
                let _ = std::io::stdout().flush();
            }
        },
    )
    .await;
    report.run_id = executed.run_id;
    report.tenants = executed.tenants;
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
