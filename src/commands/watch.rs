//! `tenantctl watch`: options in, the watcher loop out.

use crate::cli::{LogFormat, WatchArgs};
use crate::error::Exit;
use crate::render::Style;
use crate::watch::{self, WatchOptions};
use anyhow::Result;
use std::io::IsTerminal;

pub async fn run(args: &WatchArgs) -> Result<Exit> {
    init_logging(args.log_format);
    let options = super::plan_options(&args.connection, &args.planning, &[])?;
    // The same checks as the other commands (empty values, an empty CHROMA_TOKEN) before the
    // watcher starts retrying.
    let chroma = super::chroma_client(&args.connection)?;
    watch::run(WatchOptions {
        dir: args.dir.dir.clone(),
        database_url: args.connection.database_url.clone(),
        chroma,
        options,
        backups: super::backup_store(&args.planning)?,
        apply: args.apply,
        interval: args.interval,
        debounce: args.debounce,
        lock_timeout: args.lock_timeout,
        timeouts: args.bounds.timeouts(),
        migration_lock_timeout: args.bounds.migration_lock_timeout,
        migration_retries: args.bounds.migration_retries,
        stop_on_error: args.bounds.on_error == crate::cli::OnError::Stop,
        secrets: args.secrets.sink().map_err(crate::error::UserError::new)?,
        run_timeout: args.bounds.run_timeout,
        listen: args.listen,
        parallelism: usize::from(args.parallelism),
    })
    .await?;
    Ok(Exit::Success)
}

/// Logs go to stderr: human lines by default, JSON lines for collectors. `RUST_LOG` overrides
/// the level (default `info`). Colour only on a terminal and without `NO_COLOR`, as for plans:
/// a watcher usually writes to a pipe or a file (systemd, a container's log), where escape
/// codes are noise in every line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let color = Style::detect(std::io::stderr().is_terminal()).color;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
