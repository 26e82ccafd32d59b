//! Names of the resources a tenant owns, and the markers tenantctl leaves on them.

use serde_json::{Map, Value};
use uuid::Uuid;

/// `COMMENT` placed on every schema and role tenantctl creates. Roles are cluster-wide, so a
/// role without this marker belongs to someone else and is never altered or dropped.
pub const MANAGED_COMMENT: &str = "managed by tenantctl";

/// Value of the `managed_by` key in the metadata of collections tenantctl creates.
pub const COLLECTION_MANAGED_BY: &str = "tenantctl";

/// Privileges a tenant's role holds on its tables.
pub const TABLE_PRIVILEGES: [&str; 4] = ["DELETE", "INSERT", "SELECT", "UPDATE"];

/// Privileges a tenant's role holds on a relation (or the functions) of its schema, as the
/// catalogs name them.
pub fn tenant_privileges(kind: crate::observed::ObjectKind) -> &'static [&'static str] {
    use crate::observed::ObjectKind;
    match kind {
        ObjectKind::Table | ObjectKind::View | ObjectKind::ForeignTable => &TABLE_PRIVILEGES,
        ObjectKind::MaterializedView => &["SELECT"],
        ObjectKind::Sequence => &["SELECT", "UPDATE", "USAGE"],
        ObjectKind::Function => &["EXECUTE"],
    }
}

/// Prefixes that turn a tenant id into resource names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Schemas and collections: fixed, they live inside one database.
    pub schema_prefix: String,
    /// Roles are cluster-wide; several databases on one cluster need different prefixes.
    pub role_prefix: String,
}

impl Default for Naming {
    fn default() -> Self {
        Naming {
            schema_prefix: "tenant_".to_string(),
            role_prefix: "tenant_".to_string(),
        }
    }
}

impl Naming {
    /// Naming with a custom role prefix.
    pub fn with_role_prefix(role_prefix: &str) -> Self {
        Naming {
            role_prefix: role_prefix.to_string(),
            ..Naming::default()
        }
    }

    pub fn schema(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.schema_prefix)
    }

    pub fn role(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.role_prefix)
    }

    pub fn collection(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.schema_prefix)
    }

    /// Checks a role prefix: it must keep every role name a plain lowercase identifier of at
    /// most 63 bytes (PostgreSQL truncates longer names silently) for 40-character tenant ids.
    pub fn validate_role_prefix(prefix: &str) -> Result<(), RolePrefixError> {
        let valid_chars = prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let starts_ok = prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if prefix.is_empty() || !valid_chars || !starts_ok {
            return Err(RolePrefixError::Characters(prefix.to_string()));
        }
        if prefix.len() > 23 {
            return Err(RolePrefixError::TooLong(prefix.to_string()));
        }
        if prefix.starts_with("pg_") {
            return Err(RolePrefixError::Reserved(prefix.to_string()));
        }
        Ok(())
    }
}

/// Why a role prefix cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolePrefixError {
    #[error(
        "role prefix `{0}` must start with a lowercase letter or `_` and hold only `[a-z0-9_]`"
    )]
    Characters(String),
    #[error("role prefix `{0}` is longer than 23 characters (role names must fit in 63 bytes)")]
    TooLong(String),
    #[error("role prefix `{0}` starts with `pg_`, reserved by PostgreSQL")]
    Reserved(String),
}

/// The metadata a tenant's collection carries: who owns it, for which tenant and incarnation.
pub fn collection_metadata(tenant: &str, uid: Uuid) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("managed_by".into(), COLLECTION_MANAGED_BY.into());
    metadata.insert("tenant_id".into(), tenant.into());
    metadata.insert("tenant_uid".into(), uid.to_string().into());
    metadata
}
