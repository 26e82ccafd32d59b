//! The live state of PostgreSQL and Chroma as plain data.
//!
//! `backend` fills these structs from a handful of batched catalog queries and paginated
//! collection listings; `plan` diffs them against the desired state. Nothing here does I/O, so
//! planner tests build an `ObservedState` by hand.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Grantee name used for privileges granted to PUBLIC (PostgreSQL's grantee oid 0).
pub const PUBLIC: &str = "PUBLIC";

/// Everything tenantctl can see of the live systems at one moment.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ObservedState {
    /// `now()` of the database server: retention and purge decisions use this clock, never the
    /// clock of the machine running tenantctl. Not part of the live fingerprint.
    #[serde(skip)]
    pub server_time: DateTime<Utc>,
    /// The role tenantctl connects as (it creates the tenant roles; on PostgreSQL 16 and later
    /// that makes it a member of each, which is expected).
    pub current_user: String,
    /// Highest applied migration of the control schema; `None` when it was never installed.
    pub control_schema_version: Option<i32>,
    /// Registry rows by tenant id.
    pub registry: BTreeMap<String, RegistryRow>,
    /// Schemas whose name starts with the tenant schema prefix, by name.
    pub schemas: BTreeMap<String, ObservedSchema>,
    /// Roles whose name starts with the role prefix, by name.
    pub roles: BTreeMap<String, ObservedRole>,
    /// Every collection of the Chroma database, by name.
    pub collections: BTreeMap<String, ObservedCollection>,
    /// Whether the configured Chroma tenant and database exist (apply creates them).
    pub chroma_scope: ChromaScope,
    /// Incarnations whose create started (an event recorded it) but never committed, among
    /// the uids of collections no registry row holds: `uid -> tenant id`.
    pub interrupted_creates: BTreeMap<Uuid, String>,
    /// Backup folders under the backup root, complete and partial.
    pub backups: Vec<ObservedBackup>,
    /// The tenant-schema migrations applied so far; `None` before the control schema has the
    /// history table (a registry made by an earlier release, or none yet).
    pub history: Option<MigrationHistory>,
    /// The state of the last run that migrated tenants, when one is recorded; not part of the
    /// live fingerprint (it says how the state came about, not what it is).
    #[serde(skip)]
    pub last_migration_run: Option<MigrationRun>,
    /// No-transaction migrations a run left in the middle, from
    /// `tenantctl.migration_statements`, read once for the fleet (the executor resumes each
    /// from here); like the run's state, not part of the fingerprint.
    #[serde(skip)]
    pub online_progress: Vec<OnlineProgress>,
    /// What a tenant schema should look like, built from the migrations in a scratch schema
    /// whose transaction is always rolled back.
    pub reference: Option<Reference>,
    /// What tenantctl recorded of each tenant incarnation's credentials, by uid.
    pub credentials: BTreeMap<Uuid, ObservedCredentials>,
    /// API keys not revoked, by tenant uid.
    pub api_keys: BTreeMap<Uuid, Vec<ObservedApiKey>>,
    /// SHA-256 (hex) of each tenant role's password verifier (`None`: no password); `None` as
    /// a whole when tenantctl's user may not read `pg_authid` (not a superuser).
    pub role_passwords: Option<BTreeMap<String, Option<String>>>,
    /// Open sessions of each tenant role that has any. Not part of the live fingerprint: they
    /// come and go between a plan and its apply.
    #[serde(skip)]
    pub role_sessions: BTreeMap<String, u64>,
    /// Roles that hold `EXECUTE` on `tenantctl.authenticate` (its owner aside).
    pub authenticate_grantees: BTreeSet<String>,
    /// Whether the role Settings names as `auth.app_role` exists (`None`: none named).
    pub app_role_exists: Option<bool>,
}

/// What tenantctl recorded of a tenant's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ObservedCredentials {
    /// The `auth.rotate` value last applied.
    pub rotation: Option<String>,
    /// SHA-256 (hex) of the password verifier tenantctl last set; `None`: no password.
    pub password_fingerprint: Option<String>,
}

/// An API key that is not revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedApiKey {
    /// The public part, e.g. `tct_3f9a2c1b7d3e`.
    pub prefix: String,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// Replaced by a rotation: works until then.
    pub retire_after: Option<DateTime<Utc>>,
}

/// The migrations applied to the tenants, read in two batched queries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MigrationHistory {
    /// Versions applied, per tenant incarnation (uid).
    pub by_tenant: BTreeMap<Uuid, BTreeSet<u32>>,
    /// Fleet-wide, per version: the names and checksums it was applied with, and to how many
    /// tenants.
    pub applied: BTreeMap<u32, Vec<AppliedMigration>>,
}

/// One version as applied somewhere in the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedMigration {
    pub name: String,
    pub checksum: String,
    pub tenants: u64,
}

/// What an index's definition in a [`SchemaShape`] ends with when the index is `INVALID`: the
/// leftover of a concurrent build that failed or was cut off. Never in a reference.
pub const INVALID_INDEX: &str = "(INVALID: a concurrent build that did not finish)";

/// The shape every tenant schema should have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// After the first migration: what a tenant made by a release without migration history
    /// must match to be adopted as having it applied.
    pub first: SchemaShape,
    /// After every migration.
    pub full: SchemaShape,
    /// After each version where a `-- tenantctl: no-transaction` migration begins or ends:
    /// on an existing tenant, the migrations run in parts (the transactional ones before it
    /// in one transaction, it statement by statement, the ones after it in another), each
    /// part verified against the shape it should leave.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub at: BTreeMap<u32, SchemaShape>,
}

impl Reference {
    /// The shape after migration `version`, when the reference holds it: the latest one
    /// always, others where a part ends.
    pub fn after(&self, version: u32, latest: u32) -> Option<&SchemaShape> {
        if version == latest {
            Some(&self.full)
        } else {
            self.at.get(&version)
        }
    }
}

/// A small map kept in one sorted vector: a tenant schema has a handful of tables, columns and
/// grantees, and a `BTreeMap` reserves room for eleven entries per map, times thousands of
/// tenants.
pub type SmallMap<K, V> = litemap::LiteMap<K, V>;

/// `map` without the room its vector reserved while it grew (a one-entry map reserves four).
pub fn compact<K, V>(map: SmallMap<K, V>) -> SmallMap<K, V> {
    let mut entries = map.into_tuple_vec();
    entries.shrink_to_fit();
    // Still sorted and unique: it was a map.
    SmallMap::from_sorted_store_unchecked(entries)
}

impl ObservedSchema {
    /// Gives back the room its small maps reserved while they grew.
    pub fn compact(&mut self) {
        self.privileges = compact(std::mem::take(&mut self.privileges));
        let mut tables = compact(std::mem::take(&mut self.tables));
        for (_, table) in tables.iter_mut() {
            table.columns = compact(std::mem::take(&mut table.columns));
            table.privileges = compact(std::mem::take(&mut table.privileges));
        }
        self.tables = tables;
        let mut objects = compact(std::mem::take(&mut self.objects));
        for (_, object) in objects.iter_mut() {
            object.privileges = compact(std::mem::take(&mut object.privileges));
        }
        self.objects = objects;
    }
}

/// The privileges of one grantee on one object, by the names `aclexplode` gives them; a name
/// this release does not know counts as [`Privileges::OTHER`] (more than any tenant holds).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Privileges(u32);

impl Privileges {
    /// Every privilege name, in the order of their bits.
    pub const NAMES: [&'static str; 15] = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "TRUNCATE",
        "REFERENCES",
        "TRIGGER",
        "EXECUTE",
        "USAGE",
        "CREATE",
        "TEMPORARY",
        "CONNECT",
        "SET",
        "ALTER SYSTEM",
        "MAINTAIN",
    ];
    /// What an unknown name is shown as.
    pub const OTHER: &'static str = "OTHER";

    fn bit(name: &str) -> u32 {
        Self::NAMES
            .iter()
            .position(|known| *known == name)
            .map_or(1 << Self::NAMES.len(), |index| 1 << index)
    }

    /// Adds `name`; true when it was not there.
    pub fn insert(&mut self, name: &str) -> bool {
        let bit = Self::bit(name);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0 & Self::bit(name) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// The names held, in bit order.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        Self::NAMES
            .iter()
            .copied()
            .chain(std::iter::once(Self::OTHER))
            .enumerate()
            .filter(|(index, _)| self.0 & (1 << index) != 0)
            .map(|(_, name)| name)
    }
}

impl<S: AsRef<str>> FromIterator<S> for Privileges {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> Self {
        let mut privileges = Privileges::default();
        privileges.extend(names);
        privileges
    }
}

impl<S: AsRef<str>> Extend<S> for Privileges {
    fn extend<I: IntoIterator<Item = S>>(&mut self, names: I) {
        for name in names {
            self.insert(name.as_ref());
        }
    }
}

impl std::fmt::Debug for Privileges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Privileges {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// The objects of a schema as the catalogs describe them, with the schema's own name taken out
/// of every definition so that two schemas compare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct SchemaShape {
    /// Tables, by name: column -> `type [NOT NULL] [DEFAULT expression]`.
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
    /// Indexes, by name: `pg_get_indexdef`.
    pub indexes: BTreeMap<String, String>,
    /// Constraints, by `table.name`: `pg_get_constraintdef`.
    pub constraints: BTreeMap<String, String>,
    /// Views and materialized views, by name: their kind and `pg_get_viewdef`.
    pub views: BTreeMap<String, String>,
    /// Sequences, by name.
    pub sequences: BTreeSet<String>,
    /// Functions, by signature, e.g. `f(integer)`.
    pub functions: BTreeSet<String>,
}

impl SchemaShape {
    /// The sha256 (hex) of the shape: equal for equal schemas, stored with the migration
    /// history of the schema it was read from.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        // BTreeMaps and sets: the JSON is in one order only.
        let json = serde_json::to_vec(self).expect("a shape serializes");
        hex::encode(Sha256::digest(json))
    }

    /// Every difference of `self` (a tenant's schema) from `expected`, in words naming the
    /// object, sorted.
    pub fn differences(&self, expected: &SchemaShape) -> Vec<String> {
        let mut found = Vec::new();
        for (table, columns) in &expected.tables {
            match self.tables.get(table) {
                None => found.push(format!("table `{table}` is missing")),
                Some(live) => {
                    for (column, definition) in columns {
                        match live.get(column) {
                            None => found.push(format!("column `{table}.{column}` is missing")),
                            Some(other) if other != definition => found.push(format!(
                                "column `{table}.{column}` is `{other}`, expected `{definition}`"
                            )),
                            Some(_) => {}
                        }
                    }
                    for column in live.keys().filter(|column| !columns.contains_key(*column)) {
                        found.push(format!(
                            "column `{table}.{column}` is not in the migrations"
                        ));
                    }
                }
            }
        }
        for table in self
            .tables
            .keys()
            .filter(|table| !expected.tables.contains_key(*table))
        {
            found.push(format!("table `{table}` is not in the migrations"));
        }
        let mut compare = |kind: &str,
                           live: &BTreeMap<String, String>,
                           want: &BTreeMap<String, String>| {
            for (name, definition) in want {
                match live.get(name) {
                    None => found.push(format!("{kind} `{name}` is missing")),
                    Some(other) if other != definition => found.push(format!(
                        "{kind} `{name}` differs: `{other}`, expected `{definition}`"
                    )),
                    Some(_) => {}
                }
            }
            for (name, definition) in live.iter().filter(|(name, _)| !want.contains_key(*name)) {
                // An index left by a concurrent build that failed says so.
                let invalid =
                    if definition.ends_with("(INVALID: a concurrent build that did not finish)") {
                        " (INVALID: a concurrent build that did not finish)"
                    } else {
                        ""
                    };
                found.push(format!("{kind} `{name}` is not in the migrations{invalid}"));
            }
        };
        compare("index", &self.indexes, &expected.indexes);
        compare("constraint", &self.constraints, &expected.constraints);
        compare("view", &self.views, &expected.views);
        let mut sets = |kind: &str, live: &BTreeSet<String>, want: &BTreeSet<String>| {
            for name in want.difference(live) {
                found.push(format!("{kind} `{name}` is missing"));
            }
            for name in live.difference(want) {
                found.push(format!("{kind} `{name}` is not in the migrations"));
            }
        };
        sets("sequence", &self.sequences, &expected.sequences);
        sets("function", &self.functions, &expected.functions);
        found
    }
}

/// A no-transaction migration left in the middle on one tenant incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineProgress {
    pub tenant_uid: Uuid,
    pub version: u32,
    /// The file's checksum when the statements ran.
    pub checksum: String,
    /// The statements finished (1-based), in order.
    pub statements: Vec<u32>,
}

/// The state of a run that migrated tenants, from `tenantctl.migration_runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRun {
    pub run_id: uuid::Uuid,
    /// When a tenant of it last changed state.
    pub updated_at: DateTime<Utc>,
    /// Never finished: not started, or in progress when the run was killed (rolled back).
    pub pending: u64,
    pub applied: u64,
    /// Failed (lock timeouts included).
    pub failed: u64,
    /// The first pending tenants, by id (at most 20).
    pub pending_tenants: Vec<String>,
}

/// Existence of the Chroma tenant and database tenantctl works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChromaScope {
    pub tenant_exists: bool,
    pub database_exists: bool,
}

impl Default for ChromaScope {
    fn default() -> Self {
        ChromaScope {
            tenant_exists: true,
            database_exists: true,
        }
    }
}

/// One backup folder: `<root>/<tenant>/<uid>/<folder>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedBackup {
    pub tenant: String,
    pub uid: Uuid,
    /// The timestamp, or `.<timestamp>.partial-<random>` for an unfinished export.
    pub folder: String,
    /// Unfinished: an export was interrupted before it renamed the folder into place.
    pub partial: bool,
    pub files: u64,
    pub bytes: u64,
    /// A committed soft delete recorded this folder in its event.
    pub recorded: bool,
}

/// The lifecycle status recorded in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveStatus {
    Active,
    Suspended,
    Deleted,
}

impl LiveStatus {
    /// The value stored in the registry's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    /// Parses the registry's `status` column.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

impl std::fmt::Display for LiveStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `tenantctl.tenants`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegistryRow {
    pub id: String,
    /// Assigned at creation; a tenant re-created after a purge gets a new one, which keeps the
    /// resources of two incarnations of the same id apart.
    pub uid: Uuid,
    pub name: String,
    pub status: LiveStatus,
    pub plan: String,
    /// The effective configuration as stored, as the text of its jsonb: kept untyped so that
    /// a row written by another release or edited by hand is still diffed instead of failing
    /// to load, and as text because a parsed tree costs ten times the memory (10,000 tenants)
    /// and is needed one row at a time, when compared.
    pub config: String,
    pub protected: bool,
    pub retention_days: Option<i32>,
    pub suspend_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub purge_after: Option<DateTime<Utc>>,
}

/// A schema, its comment, privileges and tables.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ObservedSchema {
    pub owner: String,
    /// `COMMENT ON SCHEMA`: tenantctl marks the schemas it creates.
    pub comment: String,
    /// Privileges on the schema by grantee (role name, or [`PUBLIC`]).
    pub privileges: SmallMap<String, Privileges>,
    pub tables: SmallMap<String, ObservedTable>,
    /// Everything else in the schema that can carry a grant (views, sequences, functions), by
    /// name (functions by signature, e.g. `tenant_acme.f(integer)`). Only objects with a grant
    /// are listed, and every function.
    pub objects: SmallMap<String, ObservedObject>,
    /// Its objects as migrations define them, for comparison with the reference. Shared by
    /// every schema of the same shape (thousands of tenants, a handful of shapes).
    pub shape: std::sync::Arc<SchemaShape>,
}

/// A table's columns and privileges.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ObservedTable {
    pub columns: SmallMap<String, ObservedColumn>,
    /// Privileges on the table by grantee (role name, or [`PUBLIC`]).
    pub privileges: SmallMap<String, Privileges>,
    pub owner: String,
}

/// A view, sequence, foreign table or function of a tenant schema.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ObservedObject {
    pub kind: ObjectKind,
    pub owner: String,
    /// Privileges by grantee (role name, or [`PUBLIC`]).
    pub privileges: SmallMap<String, Privileges>,
    /// Functions: the catalog oid, which names an overloaded function exactly.
    pub oid: Option<u32>,
    /// Functions: `SECURITY DEFINER` (runs with its owner's rights).
    pub security_definer: bool,
}

/// A privilege a tenant role holds outside the tenant schemas.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ForeignGrant {
    pub schema: String,
    /// The relation; `None` for a privilege on the schema itself.
    pub relation: Option<(String, ObjectKind)>,
    pub privilege: String,
}

/// Kinds of [`ObservedObject`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    #[default]
    Table,
    View,
    MaterializedView,
    Sequence,
    ForeignTable,
    Function,
}

impl ObjectKind {
    /// From `pg_class.relkind`.
    pub fn from_relkind(relkind: &str) -> Self {
        match relkind {
            "v" => ObjectKind::View,
            "m" => ObjectKind::MaterializedView,
            "S" => ObjectKind::Sequence,
            "f" => ObjectKind::ForeignTable,
            _ => ObjectKind::Table,
        }
    }

    /// The word for it in messages and in `GRANT`/`REVOKE ... ON <word>`.
    pub fn label(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sequence => "sequence",
            ObjectKind::ForeignTable => "foreign table",
            ObjectKind::Function => "function",
        }
    }
}

/// A column as the catalogs describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedColumn {
    /// `format_type()` output, e.g. `uuid`, `timestamp with time zone`.
    pub data_type: String,
    pub not_null: bool,
    /// `pg_get_expr()` of the default, e.g. `now()`.
    pub default: Option<String>,
    pub primary_key: bool,
}

/// A cluster-wide role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ObservedRole {
    pub can_login: bool,
    /// `COMMENT ON ROLE`: tenantctl marks the roles it creates and touches no other.
    pub comment: String,
    pub superuser: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub replication: bool,
    pub bypass_rls: bool,
    /// `CONNECTION LIMIT` (-1: none).
    pub connection_limit: i32,
    /// Roles this role is a member of (it inherits their rights).
    pub member_of: BTreeSet<String>,
    /// Roles that are members of this role (they inherit its rights).
    pub members: BTreeSet<String>,
    /// Grants to this role on schemas and relations outside the tenant schemas, e.g.
    /// `SELECT` on `public.invoices`.
    pub foreign_grants: BTreeSet<ForeignGrant>,
    /// Objects of this database the role owns, e.g. `table tenant_acme.notes`.
    pub owns: BTreeSet<String>,
}

impl ObservedRole {
    /// Role attributes beyond a plain role, as `ALTER ROLE` spells them.
    pub fn elevated_attributes(&self) -> Vec<&'static str> {
        [
            (self.superuser, "SUPERUSER"),
            (self.create_role, "CREATEROLE"),
            (self.create_db, "CREATEDB"),
            (self.replication, "REPLICATION"),
            (self.bypass_rls, "BYPASSRLS"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// A Chroma collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedCollection {
    pub id: String,
    /// A handful of keys: one small map per collection, not a tree.
    pub metadata: SmallMap<String, serde_json::Value>,
    /// Records in it, counted only where a decision needs it (a collection that might be
    /// adopted).
    pub records: Option<u64>,
}

impl ObservedCollection {
    /// A metadata value as a string, if it is one.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|value| value.as_str())
    }
}
