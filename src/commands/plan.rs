//! `tenantctl plan`: read-only; shows what apply would do, optionally saves it.

use crate::cli::PlanArgs;
use crate::error::Exit;
use crate::reconcile;
use crate::saved::{self, SavedPlan};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

pub async fn run(args: &PlanArgs) -> Result<Exit> {
    // Validation comes first: an invalid directory never reaches a server.
    let comment = args
        .comment
        .options(args.format)
        .map_err(crate::error::UserError::new)?;
    let desired = super::load(&args.dir.dir)?;
    let options = super::plan_options(&args.connection, &args.planning, &args.targets.tenants)?;
    let backups = super::backup_store(&args.planning)?;
    let key = super::plan_key()?;
    let (postgres, chroma) = super::connect(&args.connection, "plan").await?;
    let (observed, plan) =
        reconcile::observe_and_plan(&postgres, &chroma, &desired, &options, &backups).await?;
    super::check_targets(&options, &desired, &observed)?;
    let context = super::context(&args.dir.dir, &postgres, &chroma);

    if let Some(out) = &args.out {
        let mut saved = SavedPlan {
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
            options: super::saved_options(&options, &args.planning),
            plan: plan.clone(),
            signature: None,
        };
        if let Some(key) = &key {
            saved.sign(key);
        }
        write_private(out, saved.to_json().as_bytes())
            .with_context(|| format!("cannot write the saved plan to `{}`", out.display()))?;
        eprintln!(
            "saved the plan to `{}`{}; apply exactly it with `tenantctl apply {}`",
            out.display(),
            if key.is_some() {
                " (signed with TENANTCTL_PLAN_KEY)"
            } else {
                ""
            },
            out.display()
        );
    }

    super::print_plan(args.format, &plan, &context, &comment);
    Ok(super::plan_exit(&plan, args.detailed_exitcode))
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file in the same folder renamed
/// into place: a reader never sees half a plan, and nobody else can read it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".to_string());
    let temporary = folder.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}
