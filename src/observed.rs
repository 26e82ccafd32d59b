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
    /// clock of the machine running tenantctl.
    pub server_time: DateTime<Utc>,
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
    /// The effective configuration as stored (jsonb); kept untyped so that a row written by
    /// another release or edited by hand is still diffed instead of failing to load.
    pub config: serde_json::Value,
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
    pub privileges: BTreeMap<String, BTreeSet<String>>,
    pub tables: BTreeMap<String, ObservedTable>,
}

/// A table's columns and privileges.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ObservedTable {
    pub columns: BTreeMap<String, ObservedColumn>,
    /// Privileges on the table by grantee (role name, or [`PUBLIC`]).
    pub privileges: BTreeMap<String, BTreeSet<String>>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedRole {
    pub can_login: bool,
    /// `COMMENT ON ROLE`: tenantctl marks the roles it creates and touches no other.
    pub comment: String,
}

/// A Chroma collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedCollection {
    pub id: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ObservedCollection {
    /// A metadata value as a string, if it is one.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|value| value.as_str())
    }
}
