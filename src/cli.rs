//! The command line (clap derive): commands, flags and their environment variables.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Reaches the PostgreSQL that `scripts/servers.sh` starts.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tenantctl";
/// Reaches the Chroma that `scripts/servers.sh` starts.
pub const DEFAULT_CHROMA_URL: &str = "http://127.0.0.1:8000";

#[derive(Debug, Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "Declarative tenants for multi-tenant SaaS and LLM applications",
    long_about = "Declarative tenants for multi-tenant SaaS and LLM applications.\n\n\
        YAML files (one per tenant, kept in git) describe the desired tenants; tenantctl \
        validates them, reads the live state of PostgreSQL and Chroma, prints a terraform-style \
        plan and applies it with per-tenant rollback.",
    after_help = "Exit codes: 0 success; 1 error (usage, invalid files, unreachable server, conflict, refused or failed apply); 2 changes present (plan --detailed-exitcode only); 3 saved plan stale or already applied (apply PLANFILE; nothing changed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the tenant files offline; no server is contacted
    Validate(ValidateArgs),
    /// Show what apply would change, without changing anything
    Plan(PlanArgs),
    /// Plan again under the apply lock and carry the plan out, or apply a saved plan exactly
    Apply(ApplyArgs),
    /// Render a saved plan (from `plan --out`) in any format
    Show(ShowArgs),
    /// Reconcile continuously: on every change of the directory and on a timer
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct DirArgs {
    /// Directory of tenant, plan and settings YAML files
    #[arg(
        long,
        env = "TENANTCTL_DIR",
        default_value = "tenants",
        hide_env_values = true
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// PostgreSQL connection URL (the password is never printed)
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Chroma server URL (credentials in it are never printed); a bearer token is read from
    /// CHROMA_TOKEN if set
    #[arg(long, env = "CHROMA_URL", default_value = DEFAULT_CHROMA_URL, hide_env_values = true)]
    pub chroma_url: String,

    /// Chroma tenant holding the collections (created by apply if missing)
    #[arg(
        long,
        env = "CHROMA_TENANT",
        default_value = "default_tenant",
        hide_env_values = true
    )]
    pub chroma_tenant: String,

    /// Chroma database holding the collections (created by apply if missing)
    #[arg(
        long,
        env = "CHROMA_DATABASE",
        default_value = "default_database",
        hide_env_values = true
    )]
    pub chroma_database: String,

    /// Longest one Chroma request may take; a hung server costs each tenant this, and the run
    /// stops after three tenants in a row failed on it
    #[arg(long, env = "TENANTCTL_CHROMA_TIMEOUT", default_value = "30s", value_parser = parse_duration, hide_env_values = true)]
    pub chroma_timeout: Duration,

    /// Prefix of tenant role names; roles are cluster-wide, so give each database its own
    #[arg(
        long,
        env = "TENANTCTL_ROLE_PREFIX",
        default_value = "tenant_",
        hide_env_values = true
    )]
    pub role_prefix: String,
}

#[derive(Debug, Args)]
pub struct PlanningArgs {
    /// Retention period in days (0-3650) for soft-deleted tenants that set none (overrides a
    /// Settings document)
    #[arg(
        long,
        env = "TENANTCTL_RETENTION_DAYS",
        hide_env_values = true,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::spec::MAX_RETENTION_DAYS))
    )]
    pub retention_days: Option<u32>,

    /// Soft-delete tenants that are in the registry but in no file (never purges them directly)
    #[arg(long)]
    pub prune: bool,

    /// Refuse a run that would soft-delete or purge more tenants than this
    #[arg(
        long,
        env = "TENANTCTL_MAX_DELETES",
        default_value_t = 10,
        hide_env_values = true
    )]
    pub max_deletes: usize,

    /// Refuse a run in which more existing tenants than this would run a migration that drops
    /// or rewrites data (DROP TABLE or COLUMN, ALTER COLUMN ... TYPE, TRUNCATE, DELETE without
    /// WHERE)
    #[arg(
        long,
        env = "TENANTCTL_MAX_DESTRUCTIVE_MIGRATIONS",
        default_value_t = 10,
        hide_env_values = true
    )]
    pub max_destructive_migrations: usize,

    /// Migrate this many tenants first, as a canary (those whose file says `canary: true`
    /// first, then by id): the rest of the fleet starts only when all of them succeeded
    /// (default: the Settings document's `canary`, else none)
    #[arg(long, value_name = "N", env = "TENANTCTL_CANARY", hide_env_values = true, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub canary: Option<u32>,

    /// Where final backups of soft-deleted tenants are written (and deleted at purge): a local
    /// folder, or an object-store URL (s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix) with credentials from the provider's usual environment variables
    #[arg(
        long,
        env = "TENANTCTL_BACKUP_DIR",
        default_value = "backups",
        value_name = "DIR|URL",
        hide_env_values = true
    )]
    pub backup_dir: String,

    /// Longest one object-store request of a backup may take (a part of a few MiB, a listing,
    /// a delete), e.g. 60s; each is retried twice
    #[arg(long, env = "TENANTCTL_BACKUP_TIMEOUT", default_value = "60s", value_parser = parse_duration, hide_env_values = true)]
    pub backup_timeout: Duration,
}

impl PlanningArgs {
    /// Where backups go.
    ///
    /// # Errors
    /// An empty value, or an object-store URL that cannot be used.
    pub fn backup_store(&self) -> Result<crate::backup::BackupStore, crate::backup::BackupError> {
        crate::backup::BackupStore::open(&self.backup_dir, self.backup_timeout)
    }
}

/// `--tenant`: plan and apply only (a watcher reconciles the whole directory).
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Limit the run to this tenant (repeatable); the others are not looked at
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,
}

/// Where generated credentials go (`apply`, `watch --apply`): exactly one sink.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// Folder for generated passwords and API keys: one JSON file per tenant (0600, in a 0700
    /// folder), written before the tenant's changes commit
    #[arg(
        long,
        env = "TENANTCTL_SECRETS_DIR",
        value_name = "DIR",
        conflicts_with = "secrets_command",
        hide_env_values = true
    )]
    pub secrets_dir: Option<PathBuf>,
    /// Command that receives each tenant's generated secrets as JSON on standard input (run
    /// with `sh -c`, `TENANTCTL_TENANT` set); a failure rolls that tenant back
    #[arg(
        long,
        env = "TENANTCTL_SECRETS_COMMAND",
        value_name = "CMD",
        hide_env_values = true
    )]
    pub secrets_command: Option<String>,
    /// Longest a secrets command may run, e.g. 30s
    #[arg(long, env = "TENANTCTL_SECRETS_TIMEOUT", default_value = "30s", value_parser = parse_duration, hide_env_values = true)]
    pub secrets_timeout: Duration,
}

impl SecretsArgs {
    /// The sink asked for, if any.
    ///
    /// # Errors
    /// An empty folder or command (an unset CI variable is not a choice of sink).
    pub fn sink(&self) -> Result<Option<crate::secrets::SecretsSink>, String> {
        match (&self.secrets_dir, &self.secrets_command) {
            (Some(dir), _) if dir.as_os_str().is_empty() => {
                Err("`--secrets-dir` (`TENANTCTL_SECRETS_DIR`) is empty".to_string())
            }
            (Some(dir), _) => Ok(Some(crate::secrets::SecretsSink::Dir(dir.clone()))),
            (None, Some(command)) if command.trim().is_empty() => {
                Err("`--secrets-command` (`TENANTCTL_SECRETS_COMMAND`) is empty".to_string())
            }
            (None, Some(command)) => Ok(Some(crate::secrets::SecretsSink::Command {
                command: command.clone(),
                timeout: self.secrets_timeout,
            })),
            (None, None) => Ok(None),
        }
    }
}

/// Bounds on the work of `apply` and `watch --apply`.
#[derive(Debug, Args)]
pub struct BoundsArgs {
    /// Longest one statement of tenant work may run (PostgreSQL statement_timeout); the
    /// tenant rolls back and is retried by the next run
    #[arg(long, env = "TENANTCTL_STATEMENT_TIMEOUT", default_value = "5m", value_parser = parse_duration, hide_env_values = true)]
    pub statement_timeout: Duration,

    /// Longest a statement of tenant work waits for a lock an application holds
    /// (PostgreSQL lock_timeout), so a busy tenant cannot stall the run or its application
    #[arg(long, env = "TENANTCTL_TENANT_LOCK_TIMEOUT", default_value = "10s", value_parser = parse_duration, hide_env_values = true)]
    pub tenant_lock_timeout: Duration,

    /// Longest a tenant's migrations wait for a lock an application holds: the tenant rolls
    /// back instead of stalling the fleet, and is tried again later in the run
    /// (--migration-retries), then by the next run
    #[arg(long, env = "TENANTCTL_MIGRATION_LOCK_TIMEOUT", default_value = "5s", value_parser = parse_duration, hide_env_values = true)]
    pub migration_lock_timeout: Duration,

    /// How many times a tenant whose migrations hit the lock timeout is tried again within the
    /// run, after a jittered backoff (0.5 s doubling, at most 8 s)
    #[arg(long, env = "TENANTCTL_MIGRATION_RETRIES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10), hide_env_values = true)]
    pub migration_retries: u32,

    /// After a tenant fails: `continue` with the others (the default), or `stop` starting new
    /// ones (those in progress finish)
    #[arg(long, value_enum, env = "TENANTCTL_ON_ERROR", default_value_t = OnError::Continue, hide_env_values = true)]
    pub on_error: OnError,

    /// Longest a whole apply may run: then no tenant starts and running statements are
    /// cancelled (their tenants roll back)
    #[arg(long, env = "TENANTCTL_RUN_TIMEOUT", default_value = "2h", value_parser = parse_duration, hide_env_values = true)]
    pub run_timeout: Duration,
}

impl BoundsArgs {
    pub fn timeouts(&self) -> crate::backend::postgres::Timeouts {
        crate::backend::postgres::Timeouts {
            statement: self.statement_timeout,
            lock: self.tenant_lock_timeout,
        }
    }
}

/// What apply does after a tenant fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnError {
    /// Go on with the other tenants.
    Continue,
    /// Start no further tenant.
    Stop,
}

/// Formats of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Terraform-style text for terminals and logs
    Text,
    /// Stable, versioned JSON for machines
    Json,
    /// A pull-request comment (at most 65,536 characters)
    Markdown,
}

/// Formats of an apply result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub dir: DirArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan to FILE (mode 0600), for `apply FILE`; it contains no secrets, and
    /// is signed when TENANTCTL_PLAN_KEY is set
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub comment: CommentArgs,
}

/// The pull-request comment `--format markdown` writes: what a workflow puts around it and the
/// size it must fit, so the workflow never has to cut it.
#[derive(Debug, Args)]
pub struct CommentArgs {
    /// With --format markdown: first line(s) of the comment, e.g. the marker a workflow finds
    /// its comment by (`<!-- tenantctl-plan -->`)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub comment_header: Option<String>,
    /// With --format markdown: last line(s) of the comment, e.g. which commit and run made the
    /// plan (it may start with `---`, a Markdown rule)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub comment_footer: Option<String>,
    /// With --format markdown: characters the whole comment may take, header and footer
    /// included (GitHub's limit by default); the plan is laid out to fit, riskiest first
    #[arg(long, value_name = "N", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(4_096..=1_048_576))]
    pub max_chars: u32,
}

impl CommentArgs {
    /// The options of the Markdown renderer.
    ///
    /// # Errors
    /// One of the options with another format than Markdown: it would do nothing.
    pub fn options(
        &self,
        format: PlanFormat,
    ) -> Result<crate::render::markdown::CommentOptions<'_>, String> {
        let given = self.comment_header.is_some()
            || self.comment_footer.is_some()
            || self.max_chars != 65_536;
        if given && format != PlanFormat::Markdown {
            return Err(
                "`--comment-header`, `--comment-footer` and `--max-chars` shape the Markdown comment: add `--format markdown`"
                    .to_string(),
            );
        }
        Ok(crate::render::markdown::CommentOptions {
            header: self.comment_header.as_deref().unwrap_or_default(),
            footer: self.comment_footer.as_deref().unwrap_or_default(),
            max_chars: self.max_chars as usize,
        })
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub bounds: BoundsArgs,
    /// Apply without asking for confirmation (required without a terminal; a saved plan
    /// needs no confirmation)
    #[arg(long)]
    pub auto_approve: bool,
    /// No progress bar or progress lines (on standard error) while tenants are applied
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// How long to wait for another apply's lock, e.g. 30s, 5m
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    #[command(flatten)]
    pub secrets: SecretsArgs,
    /// Tenants applied at once, each on its own PostgreSQL session (each tenant stays atomic;
    /// 4 was the fastest for 1,000 creates on 2 cores, 8 no faster)
    #[arg(
        long,
        env = "TENANTCTL_PARALLELISM",
        hide_env_values = true,
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=32)
    )]
    pub parallelism: u16,
    /// Output format of the result
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// A plan saved with `plan --out`: apply it only if planning again now (with this apply's
    /// options) gives the same plan; with TENANTCTL_PLAN_KEY set, only a plan signed with it
    #[arg(value_name = "PLANFILE")]
    pub plan_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved with `plan --out`
    #[arg(value_name = "PLANFILE")]
    pub file: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    #[command(flatten)]
    pub comment: CommentArgs,
}

/// Parses a duration with its unit (`500ms`, `30s`, `5m`, `1h`, `1h 30m`); a bare number is
/// refused, since `5` could mean seconds or minutes.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit: write e.g. `{text}s` or `{text}m`"
        ));
    }
    humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration ({error}); e.g. 30s, 5m, 1h"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `--help` never shows what the environment holds: a variable may carry a password, and
    /// help text ends up in CI logs and issue reports.
    #[test]
    fn help_never_shows_an_environment_value() {
        fn walk(command: &clap::Command, checked: &mut usize) {
            for arg in command.get_arguments() {
                if arg.get_env().is_some() {
                    *checked += 1;
                    assert!(
                        arg.is_hide_env_values_set(),
                        "`{} --{}` shows its environment value in --help",
                        command.get_name(),
                        arg.get_id()
                    );
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, checked);
            }
        }
        let mut checked = 0;
        walk(&Cli::command(), &mut checked);
        assert!(checked > 20, "only {checked} options read the environment");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("5"),
            Err("`5` has no unit: write e.g. `5s` or `5m`".to_string())
        );
        assert!(parse_duration("soon").is_err());
        // far past any real timeout, but no overflow
        assert!(parse_duration("99999999999999999999h").is_err());
    }
}

/// Log formats of `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event
    Human,
    /// One JSON object per line, for log collectors
    Json,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Apply changes (leader only); without it the watcher only logs its plans
    #[arg(long)]
    pub apply: bool,
    /// Reconcile at least this often even without file changes (repairs drift, runs due purges)
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Quiet period after a file change before reconciling: a burst of saves makes one reconcile
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// How long one reconcile waits for the apply lock held by a CLI apply
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    #[command(flatten)]
    pub secrets: SecretsArgs,
    #[command(flatten)]
    pub bounds: BoundsArgs,
    /// Tenants applied at once, each on its own PostgreSQL session (each tenant stays atomic;
    /// 4 was the fastest for 1,000 creates on 2 cores, 8 no faster)
    #[arg(
        long,
        env = "TENANTCTL_PARALLELISM",
        hide_env_values = true,
        default_value_t = 4,
        value_parser = clap::value_parser!(u16).range(1..=32)
    )]
    pub parallelism: u16,
    /// Serve /healthz, /readyz and /metrics on this address, e.g. 127.0.0.1:9187
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Log format
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}
