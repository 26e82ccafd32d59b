//! The plan: what apply would do, as plain data.
//!
//! [`diff`] compares the desired state (`spec`) with the live state (`observed`) at the database
//! server's time and returns a [`Plan`]: one [`TenantChange`] per tenant, each with the actions it
//! carries, the field changes and drift a reviewer reads, and the concrete [`Step`]s `apply`
//! executes. Nothing in this module does I/O; renderers only read it.

mod credentials;
mod diff;
mod fields;
mod lifecycle;
mod migrations;
mod naming;
mod privileges;
mod resources;
mod step;
#[cfg(test)]
mod tests;

pub use credentials::start_of_day;
pub use diff::{diff, PlanOptions, CONTROL_SCHEMA_VERSION};
pub use migrations::fleet_refusals;
pub use naming::{
    collection_metadata, tenant_privileges, Naming, RolePrefixError, COLLECTION_MANAGED_BY,
    MANAGED_COMMENT, TABLE_PRIVILEGES,
};
pub use step::{GrantTarget, PasswordRecord, Step};

use crate::observed::LiveStatus;
use crate::spec::EffectiveConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the JSON plan format; bumped on any incompatible change of field names or meaning.
pub const FORMAT_VERSION: u32 = 1;

/// Everything a plan run decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Time of the database server when live state was read.
    pub server_time: DateTime<Utc>,
    /// Control schema migrations to run before any tenant change.
    pub control_schema: ControlSchemaChange,
    /// One entry per tenant file, sorted by tenant id (no-ops included, with no steps).
    pub changes: Vec<TenantChange>,
    /// Problems that block a tenant: apply leaves those tenants alone and fails.
    pub conflicts: Vec<Conflict>,
    /// Safety rules the plan breaks (a protected tenant deleted, too many deletes): apply
    /// refuses the whole run.
    pub refusals: Vec<Refusal>,
    /// Tenants and resources that exist live but are in no file; left alone unless pruned.
    pub orphans: Vec<Orphan>,
    /// Soft-deleted tenants whose purge is not due yet.
    pub scheduled_purges: Vec<ScheduledPurge>,
    /// Backup folders that belong to no soft-deleted tenant: partial ones (removed by apply)
    /// and complete ones no committed soft delete recorded (left for a human).
    #[serde(default)]
    pub backup_leftovers: Vec<BackupLeftover>,
    /// What a reviewer must read before anything else, e.g. a Chroma database that does not
    /// exist (a typo in `CHROMA_DATABASE` would otherwise plan every collection anew).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The tenant-schema migrations of the directory, SQL included: apply runs the ones a
    /// change names from here, so a saved plan pins their checksums.
    #[serde(default)]
    pub migrations: crate::spec::migrations::Migrations,
    /// The application's role for `tenantctl.authenticate`, when Settings names one and
    /// something changes about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<AppRoleChange>,
    /// Statements of migrations existing tenants will run that drop or rewrite data; each
    /// tenant's rows at risk are in its change's `at_risk`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destructive_migrations: Vec<DestructiveMigration>,
    /// Tenants whose migrations run first, as a canary: the rest of the fleet starts only when
    /// all of them succeeded. Declared ones (`canary: true`) first, then by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<String>,
}

/// A statement of a migration that existing tenants will run and that drops or rewrites data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestructiveMigration {
    pub version: u32,
    /// The migration's name, e.g. `0003_drop_body`.
    pub name: String,
    /// Its file, and the line of the statement.
    pub file: String,
    pub line: usize,
    /// `DROP TABLE`, `DROP COLUMN`, `ALTER COLUMN TYPE`, `TRUNCATE` or `DELETE without WHERE`.
    pub kind: String,
    /// The tables it drops or rewrites, as written (lower-cased).
    pub tables: Vec<String>,
    /// Existing tenants that will run it (new tenants run it on an empty schema).
    pub tenants: usize,
}

/// A backup folder no soft-deleted tenant accounts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLeftover {
    pub tenant: String,
    pub uid: Uuid,
    pub folder: String,
    /// `<tenant>/<uid>/<folder>`, relative to the backup root.
    pub path: String,
    /// An unfinished export.
    pub partial: bool,
    /// Apply removes it: a partial folder of an incarnation of this registry (under the apply
    /// lock nobody else writes there).
    pub removed_by_apply: bool,
    pub files: u64,
    pub bytes: u64,
    /// Why it is a leftover.
    pub reason: String,
}

impl Plan {
    /// True when apply would change nothing at all.
    pub fn is_empty(&self) -> bool {
        self.control_schema.pending.is_empty()
            && self.app_role.is_none()
            && self.changes.iter().all(|change| change.steps.is_empty())
            && !self
                .backup_leftovers
                .iter()
                .any(|leftover| leftover.removed_by_apply)
    }

    /// Counts for the summary line.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for change in &self.changes {
            if change.blocked {
                continue;
            }
            // Each tenant counts once, under its most significant action, so the counts add
            // up to the number of tenants.
            match change.primary() {
                None => summary.unchanged += 1,
                Some(action) => *summary.slot(action) += 1,
            }
        }
        summary.conflicts = self.conflicts.len();
        summary.orphans = self.orphans.len();
        summary
    }

    /// Number of tenants this plan soft-deletes or purges, for `--max-deletes`.
    pub fn deletes(&self) -> usize {
        self.changes
            .iter()
            .filter(|change| !change.blocked)
            .filter(|change| change.actions.iter().any(|action| action.is_destructive()))
            .count()
    }

    /// The changes that do something (blocked ones excluded).
    pub fn effective_changes(&self) -> impl Iterator<Item = &TenantChange> {
        self.changes
            .iter()
            .filter(|change| !change.blocked && !change.actions.is_empty())
    }
}

/// The control schema's migration state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlSchemaChange {
    /// Installed version, `None` when the control schema does not exist yet.
    pub current_version: Option<i32>,
    /// Versions apply will run, in order.
    pub pending: Vec<i32>,
}

/// Tenants per action kind, each tenant under its most significant action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    #[serde(default)]
    pub migrate: usize,
    pub repair: usize,
    pub suspend: usize,
    pub resume: usize,
    pub delete: usize,
    pub restore: usize,
    pub purge: usize,
    pub unchanged: usize,
    pub conflicts: usize,
    pub orphans: usize,
}

impl Summary {
    fn slot(&mut self, action: Action) -> &mut usize {
        match action {
            Action::Create => &mut self.create,
            Action::Update => &mut self.update,
            Action::Migrate => &mut self.migrate,
            Action::Repair => &mut self.repair,
            Action::Suspend => &mut self.suspend,
            Action::Resume => &mut self.resume,
            Action::Delete => &mut self.delete,
            Action::Restore => &mut self.restore,
            Action::Purge => &mut self.purge,
        }
    }

    /// Count of one action kind.
    pub fn count(&self, action: Action) -> usize {
        let mut copy = *self;
        *copy.slot(action)
    }
}

/// What happens to a tenant. A closed set: renderers match on it and never re-derive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Provision a tenant that has no registry row.
    Create,
    /// Change name, plan or effective configuration.
    Update,
    /// Put back a resource that should exist but is missing or wrong (drift).
    Repair,
    /// Disable access, keep data.
    Suspend,
    /// Re-enable access after a suspension.
    Resume,
    /// Soft delete: disable access, keep data, schedule the purge.
    Delete,
    /// Bring a soft-deleted tenant back before its purge.
    Restore,
    /// Destroy a soft-deleted tenant whose retention period has passed.
    Purge,
    /// Bring the tenant's schema to the latest migration.
    Migrate,
}

impl Action {
    /// All actions, in the order the summary line lists them.
    pub const ALL: [Action; 9] = [
        Action::Create,
        Action::Update,
        Action::Migrate,
        Action::Repair,
        Action::Suspend,
        Action::Resume,
        Action::Delete,
        Action::Restore,
        Action::Purge,
    ];

    /// Terraform-style symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create | Action::Restore => "+",
            Action::Update | Action::Migrate | Action::Repair | Action::Resume => "~",
            // Not `~`: a suspension cuts a customer off, it must not read as a routine update.
            Action::Suspend => "=",
            Action::Delete => "-",
            Action::Purge => "!",
        }
    }

    /// The verb shown next to the tenant.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Repair => "repair",
            Action::Suspend => "suspend",
            Action::Resume => "resume",
            Action::Delete => "delete",
            Action::Restore => "restore",
            Action::Purge => "purge",
            Action::Migrate => "migrate",
        }
    }

    /// True for actions that disable access or destroy data: reviewers see them first.
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Delete | Action::Purge)
    }
}

/// The plan for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantChange {
    pub tenant: String,
    /// The registry uid; `None` before creation.
    pub uid: Option<Uuid>,
    /// What happens, most significant first; empty for a no-op.
    pub actions: Vec<Action>,
    /// Registry status before the change (`None`: not provisioned).
    pub status_before: Option<LiveStatus>,
    /// Registry status after the change.
    pub status_after: Option<LiveStatus>,
    /// Per-field changes of the registry record, `old -> new`.
    pub fields: Vec<FieldChange>,
    /// Drift found in live resources (reasons for a repair).
    pub drift: Vec<Drift>,
    /// The desired registry record written by this change, if any.
    pub record: Option<RegistryRecord>,
    /// Where the tenant's file is (`None` for a pruned orphan).
    pub file: Option<String>,
    /// For a soft delete: when the purge will be due; for a purge: when it became due.
    pub purge_after: Option<DateTime<Utc>>,
    /// For a purge: when the tenant was soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// What a delete or purge puts at risk, measured live (filled after planning).
    pub at_risk: Option<DataAtRisk>,
    /// Why the change happens, recorded in its event (suspension reason, prune, retention).
    pub reason: Option<String>,
    /// A conflict keeps tenantctl away from this tenant: `actions` says what it would do, but
    /// `steps` is empty and the summary does not count it (see `Plan::conflicts`).
    pub blocked: bool,
    /// The migrations this change runs (a create runs them all), with their checksums.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<PendingMigration>,
    /// What happens to the tenant's credentials, for the reviewer (never a secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialChange>,
    /// The concrete steps, in execution order: PostgreSQL steps first, then Chroma steps.
    pub steps: Vec<Step>,
}

/// One change to a tenant's credentials, as a plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "credential", rename_all = "snake_case")]
pub enum CredentialChange {
    /// Whether the role may log in.
    Login { from: bool, to: bool },
    /// The role's `CONNECTION LIMIT` (`None`: none).
    ConnectionLimit { from: Option<i32>, to: Option<i32> },
    /// A password is generated and delivered to the secrets sink.
    Password { why: PasswordWhy },
    /// The password is removed (login disabled by the file).
    PasswordRemoved,
    /// A new API key, delivered to the secrets sink.
    ApiKeyCreated {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<chrono::NaiveDate>,
        /// It replaces a key of that name a rotation retires.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rotated: bool,
    },
    /// A rotation replaced the key: it keeps working until the end of the grace period.
    ApiKeyRetired {
        name: String,
        prefix: String,
        until: DateTime<Utc>,
    },
    /// The key stops working now.
    ApiKeyRevoked {
        name: String,
        prefix: String,
        why: String,
    },
    /// The key's expiry changes.
    ApiKeyExpiry {
        name: String,
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<chrono::NaiveDate>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<chrono::NaiveDate>,
    },
    /// Open sessions of the role are ended.
    SessionsEnded { sessions: u64 },
}

/// Why a password is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordWhy {
    /// The role gets its first password.
    New,
    /// `auth.rotate` changed.
    Rotation,
    /// The password was changed outside tenantctl.
    Drift,
}

/// The role the application verifies API keys as, and what apply does about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRoleChange {
    /// `Settings` `auth.app_role` (`None`: none is named, only revocations).
    pub role: Option<String>,
    /// The role lacks `EXECUTE` on `tenantctl.authenticate`: granted.
    pub grant: bool,
    /// Other roles that hold it: revoked.
    pub revoke: Vec<String>,
}

/// A migration a tenant change runs (or records as applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMigration {
    pub version: u32,
    pub name: String,
    pub checksum: String,
    /// Recorded as applied, not run: the tenant's schema already is what it defines.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// Marked `-- tenantctl: no-transaction`: on an existing tenant it runs after the tenant's
    /// transaction, statement by statement (indexes built concurrently).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub online: bool,
}

impl Plan {
    /// The tables `change` will drop or rewrite through destructive migrations: none for a
    /// create (its schema is new) or a blocked change.
    pub fn destructive_tables(&self, change: &TenantChange) -> Vec<String> {
        let mut tables: Vec<String> = self
            .destructive_migrations
            .iter()
            .filter(|statement| change.runs_migration(statement.version))
            .flat_map(|statement| statement.tables.iter().cloned())
            .collect();
        tables.sort();
        tables.dedup();
        tables
    }

    /// Existing tenants that will run a migration that drops or rewrites data.
    pub fn destructive_migration_tenants(&self) -> usize {
        self.changes
            .iter()
            .filter(|change| {
                self.destructive_migrations
                    .iter()
                    .any(|statement| change.runs_migration(statement.version))
            })
            .count()
    }

    /// Apply generates a password or an API key: it needs a secrets sink.
    pub fn generates_secrets(&self) -> bool {
        self.effective_changes().any(|change| {
            change
                .steps
                .iter()
                .any(|step| matches!(step, Step::SetPassword { .. } | Step::CreateApiKey { .. }))
        })
    }
}

impl TenantChange {
    /// This change runs migration `version` on the tenant's existing schema: a migrate that is
    /// not blocked, the migration not merely adopted (a create runs it on an empty schema).
    pub fn runs_migration(&self, version: u32) -> bool {
        !self.blocked
            && self.actions.contains(&Action::Migrate)
            && self
                .migrations
                .iter()
                .any(|pending| !pending.adopted && pending.version == version)
    }

    /// A change that does nothing yet.
    pub fn new(tenant: &str) -> Self {
        TenantChange {
            tenant: tenant.to_string(),
            uid: None,
            actions: Vec::new(),
            status_before: None,
            status_after: None,
            fields: Vec::new(),
            drift: Vec::new(),
            record: None,
            file: None,
            purge_after: None,
            deleted_at: None,
            at_risk: None,
            reason: None,
            blocked: false,
            migrations: Vec::new(),
            credentials: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The most significant action, if any.
    pub fn primary(&self) -> Option<Action> {
        self.actions.first().copied()
    }
}

/// Data a destructive change touches: rows in the tenant's tables, records in its collection,
/// its backups. `None` where it could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataAtRisk {
    pub rows: Option<u64>,
    pub records: Option<u64>,
    pub backup_files: u64,
    pub backup_bytes: u64,
}

/// A safety rule that stops the whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub tenant: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// Something live that no file describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub tenant: String,
    /// Registry status, or `None` for resources without a registry row.
    pub status: Option<LiveStatus>,
    /// Resources found, e.g. `schema tenant_x`, `collection tenant_x`.
    pub resources: Vec<String>,
    /// True when `--prune` turned it into a change of this plan.
    pub pruned: bool,
}

impl Orphan {
    /// What this plan does with it, as every renderer says it.
    pub fn disposition(&self) -> &'static str {
        if self.pruned {
            "pruned by this plan"
        } else if self.status.is_some() {
            "left alone (use `--prune`)"
        } else {
            "left alone (no registry row: clean up by hand)"
        }
    }
}

/// A soft-deleted tenant waiting for its purge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledPurge {
    pub tenant: String,
    pub deleted_at: Option<DateTime<Utc>>,
    pub purge_after: DateTime<Utc>,
}

/// The registry record a change writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryRecord {
    pub name: String,
    pub status: LiveStatus,
    pub plan: String,
    pub config: EffectiveConfig,
    pub protected: bool,
    /// Effective retention period: the tenant's own, else the `--retention-days` flag, else the
    /// Settings document, else 30 days.
    pub retention_days: u32,
    pub suspension_reason: Option<String>,
}

/// One field of the registry record changing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path, e.g. `config.max_tokens`.
    pub path: String,
    /// Old value; `None` when the field was absent.
    pub old: Option<serde_json::Value>,
    /// New value; `None` when the field goes away.
    pub new: Option<serde_json::Value>,
    /// Only on a create: the value repeats a default (the billing plan's configuration, the
    /// default retention, `protected: false`, `status: active`) rather than something the
    /// tenant file chose. The pull-request comment leaves those out of a create.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherited: bool,
}

/// A live resource that differs from what the tenant should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub resource: ResourceKind,
    /// Resource name, e.g. `tenant_acme` or `tenant_acme.conversations`.
    pub name: String,
    pub problem: DriftProblem,
    /// Human description of what is wrong.
    pub detail: String,
}

/// Missing resources are re-created; wrong ones are corrected in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftProblem {
    Missing,
    Wrong,
}

/// The kinds of resources a tenant owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Schema,
    Table,
    Column,
    Role,
    Grant,
    Collection,
    Registry,
}

impl ResourceKind {
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::Schema => "schema",
            ResourceKind::Table => "table",
            ResourceKind::Column => "column",
            ResourceKind::Role => "role",
            ResourceKind::Grant => "grant",
            ResourceKind::Collection => "collection",
            ResourceKind::Registry => "registry",
        }
    }
}

/// Something that stops tenantctl from touching a tenant, e.g. a role of the same name that it did
/// not create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub tenant: String,
    pub resource: ResourceKind,
    pub name: String,
    pub message: String,
    pub hint: Option<String>,
}
