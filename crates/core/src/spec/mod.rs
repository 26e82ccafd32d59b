//! The desired state: the YAML files an operator keeps in git, loaded and validated.
//!
//! This module is pure apart from [`load_dir`], which only reads the directory and hands the
//! files to [`parse_sources`]. Validation covers the whole directory in one run: every error of
//! every file is collected, with file, line and column, before anything is returned, so an
//! operator fixes a pull request in one round instead of one error at a time.
//!
//! Layout:
//! - [`yaml`]: the YAML event stream turned into a tree that keeps line and column of every node;
//! - `limits`: how much a file and a directory may make the loader read, build and report;
//! - `validate`: one document to a typed tenant, plan or settings record, reporting every problem;
//! - `merge`: a plan's defaults deep-merged with a tenant's overrides;
//! - `walk`: the directory walk (the only I/O);
//! - this file: the public model and the cross-file rules (duplicates, plan references).

mod limits;
mod merge;
pub mod migrations;
pub mod sql;
mod validate;
mod walk;
pub mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use validate::{Document, Problems};

/// The only `apiVersion` this version of tenantctl reads.
pub const API_VERSION: &str = "tenantctl/v1";

/// Retention of a soft-deleted tenant when neither the tenant, the flag nor the settings say
/// otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Longest retention period accepted anywhere (files, flags, environment): ten years. It keeps
/// date arithmetic far from overflow and the registry's integer column in range.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// The lifecycle state a tenant file asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredStatus {
    /// Provisioned and usable.
    Active,
    /// Provisioned, access disabled; requires a suspension reason.
    Suspended,
    /// Soft-deleted: access disabled, data kept until the retention period has passed.
    Deleted,
}

impl DesiredStatus {
    /// Every state, in the order they are listed to users.
    pub const ALL: [DesiredStatus; 3] = [
        DesiredStatus::Active,
        DesiredStatus::Suspended,
        DesiredStatus::Deleted,
    ];

    /// The spelling used in files, JSON and the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Active => "active",
            DesiredStatus::Suspended => "suspended",
            DesiredStatus::Deleted => "deleted",
        }
    }
}

impl fmt::Display for DesiredStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The configuration the application reads for a tenant, after merging plan and overrides.
///
/// Serialized to JSON with exactly these field names and stored in the registry as `jsonb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveConfig {
    /// The LLM model name, e.g. `gpt-4o`.
    pub model: String,
    /// Maximum tokens per completion, 1 to 1,000,000.
    pub max_tokens: u32,
    /// Requests per minute, 0 to 1,000,000 (0 blocks all requests).
    pub rate_limit_per_minute: u32,
    /// Feature flags by name; a flag absent here is off.
    pub features: BTreeMap<String, bool>,
}

/// A position in a file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `dir.join(relative path)`, with `dir` as the user passed it.
    pub file: PathBuf,
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}:{}:{}",
            self.file.display(),
            self.line,
            self.column
        )
    }
}

/// One validated tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    /// Immutable key, valid per [`validate_tenant_id`]; the file is named after it.
    pub id: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Desired lifecycle state (`active` when the file does not say).
    pub state: DesiredStatus,
    /// The name of an existing [`PlanSpec`].
    pub plan: String,
    /// The plan's defaults deep-merged with the tenant's `config` overrides.
    pub config: EffectiveConfig,
    /// `suspension.reason`; `Some` exactly when `state` is `suspended`.
    pub suspension_reason: Option<String>,
    /// The tenant's own retention; see [`DesiredState::retention_days`] for the effective one.
    pub retention_days: Option<u32>,
    /// When set, the tenant is never soft-deleted or purged.
    pub protected: bool,
    /// Migrated first when the run has a canary (`canary: true` in the file).
    pub canary: bool,
    /// Credentials: the plan's `auth` defaults merged with the tenant's; `None` when neither
    /// declares any (the role cannot log in, there are no API keys).
    pub auth: Option<AuthSpec>,
    /// Start of the tenant's document.
    pub location: Location,
}

/// A tenant's credentials, as declared (plan defaults merged with the tenant's `auth`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSpec {
    /// The tenant role may log in, with a generated password, while the tenant is active.
    pub login: bool,
    /// `CONNECTION LIMIT` of the role; `None`: no limit.
    pub connection_limit: Option<u32>,
    /// API keys, by name, in file order.
    pub api_keys: Vec<ApiKeySpec>,
    /// Any new value rotates every credential of the tenant.
    pub rotate: Option<String>,
}

/// One API key a tenant file asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeySpec {
    /// Unique within the tenant: a lowercase letter, then lowercase letters, digits, `_` or `-`.
    pub name: String,
    /// The key stops authenticating at the start of this day (UTC).
    pub expires: Option<chrono::NaiveDate>,
    /// Where the key is declared, for messages.
    pub location: Location,
}

/// `auth` as a plan or a tenant file writes it: every key optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialAuth {
    pub login: Option<bool>,
    pub connection_limit: Option<u32>,
    pub api_keys: Option<Vec<ApiKeySpec>>,
    pub rotate: Option<String>,
}

impl PartialAuth {
    /// `self` (a tenant's) over `defaults` (its plan's): each key set by the tenant wins, the
    /// list of API keys as a whole. `None` when neither says anything.
    pub fn over(&self, defaults: Option<&PartialAuth>) -> AuthSpec {
        let defaults = defaults.cloned().unwrap_or_default();
        AuthSpec {
            login: self.login.or(defaults.login).unwrap_or(false),
            connection_limit: self.connection_limit.or(defaults.connection_limit),
            api_keys: self
                .api_keys
                .clone()
                .or(defaults.api_keys)
                .unwrap_or_default(),
            rotate: self.rotate.clone().or(defaults.rotate),
        }
    }
}

/// Directory-wide settings of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The role the application calls `tenantctl.authenticate` as: it gets `EXECUTE` on that
    /// function and nothing else of the control schema.
    pub app_role: Option<String>,
    /// How long the keys a rotation replaces keep working.
    pub rotation_grace: std::time::Duration,
}

/// Default of [`AuthSettings::rotation_grace`]: a day.
pub const DEFAULT_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            app_role: None,
            rotation_grace: DEFAULT_ROTATION_GRACE,
        }
    }
}

/// A configuration in which every key may be missing: a plan's defaults or a tenant's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialConfig {
    /// See [`EffectiveConfig::model`].
    pub model: Option<String>,
    /// See [`EffectiveConfig::max_tokens`].
    pub max_tokens: Option<u32>,
    /// See [`EffectiveConfig::rate_limit_per_minute`].
    pub rate_limit_per_minute: Option<u32>,
    /// Flags set here; merged key by key over the plan's.
    pub features: BTreeMap<String, bool>,
}

/// One validated plan: named defaults that tenants pick with `plan:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSpec {
    /// `[a-z][a-z0-9_-]{0,62}`.
    pub name: String,
    /// Free text for humans.
    pub description: Option<String>,
    /// The defaults.
    pub config: PartialConfig,
    /// Default credentials of its tenants.
    pub auth: Option<PartialAuth>,
    /// Start of the plan's document.
    pub location: Location,
}

/// Directory-wide settings (at most one `Settings` document).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Default retention for tenants that set none.
    pub retention_days: Option<u32>,
    /// Tenants migrated first, as a canary, when `--canary` is not given.
    pub canary: Option<usize>,
    /// Authentication settings.
    pub auth: AuthSettings,
    /// Where the settings document is, if there is one.
    pub location: Option<Location>,
}

/// Everything a directory declares, validated and merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredState {
    /// The directory as the user passed it.
    pub dir: PathBuf,
    /// Tenants by id.
    pub tenants: BTreeMap<String, TenantSpec>,
    /// Plans by name.
    pub plans: BTreeMap<String, PlanSpec>,
    /// The settings, or the defaults when there is no `Settings` document.
    pub settings: Settings,
    /// The tenant schema's migrations, in version order (the built-in one without a
    /// `migrations/` folder).
    pub migrations: migrations::Migrations,
    /// Hex SHA-256 over the sorted (relative path, bytes) of every file loaded, migrations
    /// included: it changes if and only if a loaded file changes, is added or is removed, so a
    /// watcher can skip no-op reconciles and a plan can name the exact input it was made from.
    pub fingerprint: String,
}

impl DesiredState {
    /// The retention that applies to `tenant`: its own, else the settings', else
    /// [`DEFAULT_RETENTION_DAYS`].
    pub fn retention_days(&self, tenant: &TenantSpec) -> u32 {
        tenant
            .retention_days
            .or(self.settings.retention_days)
            .unwrap_or(DEFAULT_RETENTION_DAYS)
    }
}

/// One problem in the desired state.
///
/// Displays as `tenants/acme.yaml:6:15: config.max_tokens: expected ..., found ...`, followed by
/// `  hint: ...` on its own line when there is a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file (or directory) concerned.
    pub file: PathBuf,
    /// 1-based line, when the problem is inside a file.
    pub line: Option<usize>,
    /// 1-based column, when the problem is inside a file.
    pub column: Option<usize>,
    /// Dotted path of the field concerned, e.g. `config.max_tokens`.
    pub field: Option<String>,
    /// What is wrong: lowercase, no trailing period.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(formatter, ":{line}")?;
            if let Some(column) = self.column {
                write!(formatter, ":{column}")?;
            }
        }
        write!(formatter, ": ")?;
        if let Some(field) = &self.field {
            write!(formatter, "{field}: ")?;
        }
        write!(formatter, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(formatter, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a directory, sorted by file, line and column.
///
/// Displays every error on its own line(s), then a summary line `N errors in <dir>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// The folder the summary line names: the deepest folder holding every error's file.
    ///
    /// This type carries no directory of its own, so it is derived from the errors: with the
    /// errors [`load_dir`] returns it is the loaded directory, or a subfolder of it when every
    /// error is in that subfolder (which is still true).
    fn folder(&self) -> Option<PathBuf> {
        let mut folders = self.0.iter().map(|error| {
            // An error without a line about a path that is not a YAML file concerns a directory
            // (missing directory, symlinked folder); otherwise the folder is the file's parent.
            if error.line.is_none() && !walk::is_yaml_name(&error.file) {
                error.file.clone()
            } else {
                error
                    .file
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            }
        });
        let first = folders.next()?;
        Some(folders.fold(first, |common, folder| {
            common
                .components()
                .zip(folder.components())
                .take_while(|(left, right)| left == right)
                .map(|(component, _)| component)
                .collect()
        }))
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(formatter, "{error}")?;
        }
        let count = self.0.len();
        let noun = if count == 1 { "error" } else { "errors" };
        match self.folder() {
            Some(folder) if !folder.as_os_str().is_empty() => {
                write!(formatter, "{count} {noun} in {}", folder.display())
            }
            _ => write!(formatter, "{count} {noun}"),
        }
    }
}

/// One file of the desired state, already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// `dir.join(relative)`: the path errors and locations name.
    pub path: PathBuf,
    /// The path inside the directory, used for the fingerprint and the file-name rule.
    pub relative: PathBuf,
    /// The file's content.
    pub text: String,
}

/// Reads every visible `.yaml`/`.yml` file under `dir` and validates the whole directory.
///
/// Hidden files and folders (a name starting with `.`) are skipped, which also skips the
/// `..data` folders of a Kubernetes ConfigMap mount while following its visible symlinks.
///
/// Files are read up to the byte limits of a file and of the directory (`limits`), so that a
/// huge or endless file costs no more than the limit.
///
/// # Errors
///
/// Every problem of the directory at once: unreadable or missing paths, symlinks leading outside
/// `dir`, files that are not UTF-8 or too large, and everything [`parse_sources`] reports. When
/// the directory is over its byte limit, only the problems of the walk are reported: checking
/// what could be read would report every plan in the files left unread as unknown.
pub fn load_dir(dir: &Path) -> Result<DesiredState, SpecErrors> {
    let (sources, mut errors, complete) = walk::read_sources(dir);
    if !complete {
        return Err(finish(errors));
    }
    let (migration_sources, migration_errors) = migrations::read(dir);
    errors.extend(migration_errors);
    let migrations = match &migration_sources {
        None => Ok(migrations::Migrations::builtin()),
        Some(sources) => migrations::parse(sources),
    };
    let migrations = match migrations {
        Ok(migrations) => Some(migrations),
        Err(more) => {
            errors.extend(more);
            None
        }
    };
    match parse_sources(dir, sources) {
        Ok(mut state) if errors.is_empty() => {
            if let (Some(migrations), Some(migration_sources)) = (migrations, migration_sources) {
                state.migrations = migrations;
                state.fingerprint = fingerprint_with(&state.fingerprint, &migration_sources);
            }
            Ok(state)
        }
        Ok(_) => Err(finish(errors)),
        Err(SpecErrors(more)) => {
            errors.extend(more);
            Err(finish(errors))
        }
    }
}

/// Parses, validates and merges already-read files. Pure.
///
/// # Errors
///
/// Every problem of every file: YAML syntax, NUL characters, unknown fields, wrong types and
/// ranges, invalid ids and names, file names that do not match the tenant id, duplicates,
/// unknown plans and configurations left incomplete by the merge; files and a directory over
/// the limits of `limits` (documents, nodes and text once aliases are expanded, errors).
pub fn parse_sources(dir: &Path, mut sources: Vec<SourceFile>) -> Result<DesiredState, SpecErrors> {
    sources.sort_by(|left, right| left.relative.cmp(&right.relative));
    let mut problems = Problems::default();

    let mut budget = yaml::Budget::default();
    let mut documents = Vec::new();
    for source in &sources {
        documents.extend(validate::file_documents(source, &mut problems, &mut budget));
        // Past a directory limit, the rest is the unbounded work the limit is there to avoid,
        // and the rules across files would only report what the unread files declare.
        if budget.is_spent() || problems.is_full() {
            return Err(finish(problems.into_errors()));
        }
    }

    let mut plans: BTreeMap<String, PlanSpec> = BTreeMap::new();
    // Plans whose document had errors: tenants on them are not checked for missing keys, which
    // would only repeat the plan's own errors.
    let mut broken_plans = Vec::new();
    let mut settings = Settings::default();
    let mut tenants = Vec::new();
    for document in documents {
        match document {
            Document::Plan { plan, clean } => {
                if let Some(first) = plans.get(&plan.name) {
                    problems.at(
                        &plan.location,
                        Some("name"),
                        format!(
                            "duplicate plan `{}`: it is also defined at {}",
                            plan.name, first.location
                        ),
                        Some("give each plan a unique name".to_string()),
                    );
                    continue;
                }
                if !clean {
                    broken_plans.push(plan.name.clone());
                }
                plans.insert(plan.name.clone(), plan);
            }
            Document::Settings(found) => match &settings.location {
                Some(first) => problems.at(
                    found
                        .location
                        .as_ref()
                        .expect("a settings document has a location"),
                    None,
                    format!("only one `Settings` document is allowed; the first is at {first}"),
                    Some("merge the two documents".to_string()),
                ),
                None => settings = found,
            },
            Document::Tenant(tenant) => tenants.push(tenant),
        }
    }

    let mut by_id: BTreeMap<String, TenantSpec> = BTreeMap::new();
    // Every declared id, valid document or not, so that a duplicate is reported even when the
    // first declaration has errors of its own.
    let mut declared: BTreeMap<String, PathBuf> = BTreeMap::new();
    for tenant in tenants {
        let Some(id) = tenant.id.clone() else {
            continue;
        };
        if let Some(first) = declared.get(&id) {
            problems.at(
                &tenant.id_location,
                Some("id"),
                format!(
                    "duplicate tenant id `{id}`: `{}` declares it too",
                    first.display()
                ),
                Some("a tenant id must be declared by exactly one file".to_string()),
            );
            continue;
        }
        declared.insert(id.clone(), tenant.location.file.clone());
        let Some(plan_name) = tenant.plan.clone() else {
            continue;
        };
        let Some(plan) = plans.get(&plan_name) else {
            // A few names are enough to see the spelling; every tenant on an unknown plan gets
            // this hint, so all of thousands of plans would make the errors huge.
            const LISTED: usize = 20;
            let mut known = plans
                .keys()
                .take(LISTED)
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>();
            if plans.len() > LISTED {
                known.push(format!("and {} more", plans.len() - LISTED));
            }
            let hint = if known.is_empty() {
                "no `Plan` document was found; declare one with `kind: Plan`".to_string()
            } else {
                let suggestion =
                    validate::did_you_mean(&plan_name, plans.keys().map(String::as_str))
                        .map(|name| format!("did you mean `{name}`? "))
                        .unwrap_or_default();
                format!("{suggestion}known plans: {}", known.join(", "))
            };
            let hint = if problems.incomplete {
                format!("{hint}; some documents could not be read and may declare it")
            } else {
                hint
            };
            problems.at(
                &tenant.plan_location,
                Some("plan"),
                format!("unknown plan `{}`", yaml::shorten(&plan_name)),
                Some(hint),
            );
            continue;
        };
        let config = match merge::effective_config(&plan.config, &tenant.config) {
            Ok(config) => config,
            Err(missing) => {
                if tenant.clean && !broken_plans.contains(&plan_name) {
                    let names = missing
                        .iter()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    problems.at(
                        &tenant.plan_location,
                        Some("plan"),
                        format!(
                            "the effective config has no {names}: neither plan `{plan_name}` nor this tenant's `config` sets it"
                        ),
                        Some(format!(
                            "set it in plan `{plan_name}` (at {}) or under this tenant's `config`",
                            plan.location
                        )),
                    );
                }
                continue;
            }
        };
        if !tenant.clean {
            continue;
        }
        let (Some(name), location) = (tenant.name, tenant.location) else {
            continue;
        };
        by_id.insert(
            id.clone(),
            TenantSpec {
                id,
                name,
                state: tenant.state,
                plan: plan_name,
                config,
                suspension_reason: tenant.suspension_reason,
                retention_days: tenant.retention_days,
                protected: tenant.protected,
                canary: tenant.canary,
                auth: (tenant.auth.is_some() || plan.auth.is_some()).then(|| {
                    tenant
                        .auth
                        .clone()
                        .unwrap_or_default()
                        .over(plan.auth.as_ref())
                }),
                location,
            },
        );
    }

    if !problems.is_empty() {
        return Err(finish(problems.into_errors()));
    }
    Ok(DesiredState {
        dir: dir.to_path_buf(),
        tenants: by_id,
        plans,
        settings,
        migrations: migrations::Migrations::builtin(),
        fingerprint: fingerprint(&sources),
    })
}

/// Tenant id rule: a lowercase letter, then `[a-z0-9_]`, 2 to 40 characters in all, not ending
/// with `_`.
///
/// The id becomes part of SQL identifiers (`tenant_<id>`, well under PostgreSQL's 63 bytes) and
/// Chroma collection names, so it is restricted to what is safe in both without quoting tricks.
///
/// # Errors
///
/// A lowercase message saying which part of the rule `id` breaks.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    const RULE: &str = "a lowercase letter, then lowercase letters, digits or `_`";
    let length = id.chars().count();
    if !(2..=40).contains(&length) {
        return Err(format!(
            "tenant id `{}` must be 2 to 40 characters long, not {length}",
            yaml::shorten(id)
        ));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "tenant id `{id}` must start with a lowercase letter ({RULE})"
        ));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "tenant id `{id}` contains {bad:?}; it may only hold {RULE}"
        ));
    }
    if id.ends_with('_') {
        return Err(format!("tenant id `{id}` must not end with `_`"));
    }
    Ok(())
}

/// Sorts and deduplicates (an aliased node can produce the same error twice).
fn finish(mut errors: Vec<SpecError>) -> SpecErrors {
    errors.sort_by(|left, right| {
        (
            &left.file,
            left.line,
            left.column,
            &left.field,
            &left.message,
        )
            .cmp(&(
                &right.file,
                right.line,
                right.column,
                &right.field,
                &right.message,
            ))
    });
    errors.dedup();
    SpecErrors(errors)
}

/// Hex SHA-256 over `(relative path, bytes)` of every file, sorted by relative path.
///
/// Both parts are length-prefixed so that no two different sets of files hash the same input.
/// Paths are hashed with `/` separators so the fingerprint does not depend on the platform.
/// The fingerprint of the YAML files extended with the migration files.
fn fingerprint_with(yaml: &str, migrations: &[SourceFile]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(yaml.as_bytes());
    hasher.update(fingerprint(migrations).as_bytes());
    hex::encode(hasher.finalize())
}

fn fingerprint(sources: &[SourceFile]) -> String {
    let mut entries: Vec<(String, &str)> = sources
        .iter()
        .map(|source| {
            let relative = source
                .relative
                .components()
                .map(|component| component.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            (relative, source.text.as_str())
        })
        .collect();
    entries.sort();
    let mut hasher = Sha256::new();
    for (relative, text) in entries {
        hasher.update((relative.len() as u64).to_le_bytes());
        hasher.update(relative.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hex::encode(hasher.finalize())
}
