//! [`Step`]: one concrete operation of a tenant change, carrying every piece of data it needs.
//!
//! The executor (`apply::steps`) matches on it exhaustively and the description below is
//! another exhaustive match, so a new step kind does not compile until it is both executed and
//! described.

use crate::observed::ObjectKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RegistryRecord;

/// One concrete operation. PostgreSQL steps of a tenant run in one transaction; Chroma steps run
/// while that transaction is open and are compensated if it rolls back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// `CREATE SCHEMA`, marked as managed, PUBLIC revoked.
    CreateSchema { schema: String },
    /// Runs these migrations in the tenant's schema (its only search path, under the migration
    /// lock timeout), in order, and records them in the tenant's migration history.
    RunMigrations { schema: String, versions: Vec<u32> },
    /// Records these migrations as applied without running them: a tenant made by a release
    /// without migration history, whose schema is what they define.
    RecordMigrations { versions: Vec<u32> },
    /// `CREATE ROLE ... NOLOGIN`, marked as managed.
    CreateRole { role: String },
    /// `ALTER ROLE ... LOGIN` or `NOLOGIN`: a role logs in only while its tenant is active and
    /// its file says `auth.login: true`.
    SetRoleLogin { role: String, login: bool },
    /// `ALTER ROLE ... CONNECTION LIMIT n` (-1: none).
    SetConnectionLimit { role: String, limit: i32 },
    /// Generates a password and sets the role's password to its SCRAM verifier, computed here:
    /// the plaintext goes to the secrets sink only.
    SetPassword { role: String },
    /// `ALTER ROLE ... PASSWORD NULL`: the role no longer logs in with a password.
    ClearPassword { role: String },
    /// Generates an API key with this name and stores its prefix and hash.
    CreateApiKey {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<chrono::NaiveDate>,
    },
    /// A rotation replaced this key: it keeps working for the grace period, then the first
    /// run after it revokes it.
    RetireApiKey {
        prefix: String,
        name: String,
        grace_seconds: u64,
    },
    /// The key stops working now (removed from the file, its rotation grace over).
    RevokeApiKey { prefix: String, name: String },
    /// Changes when the key stops working.
    SetApiKeyExpiry {
        prefix: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<chrono::NaiveDate>,
    },
    /// Records the rotation applied and what was done to the password, for the next plans.
    RecordCredentials {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rotation: Option<String>,
        password: PasswordRecord,
    },
    /// Ends the role's open sessions (`pg_terminate_backend`): a tenant whose access was just
    /// disabled keeps no connection open.
    TerminateSessions { role: String },
    /// Hands the secrets generated for this tenant (its role's) to the secrets sink: the last
    /// step before the commit, so a sink that fails rolls the tenant back.
    DeliverSecrets { role: String },
    /// `ALTER ROLE ... NOSUPERUSER NOCREATEROLE ...`: attributes a tenant role must not have.
    ResetRoleAttributes {
        role: String,
        /// What was found, e.g. `SUPERUSER`, for the reviewer.
        attributes: Vec<String>,
    },
    /// `REVOKE role FROM member`: a membership into or out of a tenant role.
    RevokeMembership { role: String, member: String },
    /// `REASSIGN OWNED BY role TO CURRENT_USER`: a tenant role owns nothing.
    ReassignOwned { role: String },
    /// `REVOKE ALL ON SCHEMA ... FROM PUBLIC`.
    RevokeSchemaFromPublic { schema: String },
    /// `GRANT USAGE ON SCHEMA ... TO role`: what access means for an active tenant.
    GrantSchemaUsage { schema: String, role: String },
    /// `REVOKE ALL ON SCHEMA ... FROM role`: a suspended or deleted tenant's role loses access.
    RevokeSchemaUsage { schema: String, role: String },
    /// `GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE ... TO role`.
    GrantTablePrivileges {
        schema: String,
        table: String,
        role: String,
    },
    /// The tenant privileges on a view or sequence the migrations made (see
    /// [`crate::plan::tenant_privileges`]).
    GrantObjectPrivileges {
        schema: String,
        name: String,
        object_kind: ObjectKind,
        role: String,
    },
    /// `EXECUTE` on the schema's functions to the role, and from PUBLIC revoked.
    GrantFunctions { schema: String, role: String },
    /// `REVOKE ALL ON <object> FROM grantee`: a grant tenantctl did not make.
    RevokeGrant { on: GrantTarget, grantee: String },
    /// `ALTER FUNCTION ... SECURITY INVOKER` on a function of a tenant schema.
    SecurityInvoker { function: String, oid: u32 },
    /// Insert the registry row, with the uid apply chose for this incarnation.
    InsertRegistry { record: RegistryRecord },
    /// Update the registry row to this record.
    UpdateRegistry { record: RegistryRecord },
    /// Mark the registry row deleted without rewriting its other fields (a pruned orphan has
    /// no file to take them from).
    SoftDeleteRegistry { retention_days: u32 },
    /// Write the final backup of a tenant being soft-deleted (tables and collection records).
    ExportBackup {
        schema: String,
        tables: Vec<String>,
        /// The tenant's latest applied migration, recorded in the manifest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        migration_version: Option<u32>,
        /// The collection's name, and its id (records are read by id).
        collection: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collection_id: Option<String>,
        uid: Uuid,
    },
    /// `DROP SCHEMA ... CASCADE`: purge only.
    DropSchema { schema: String },
    /// `DROP ROLE`: purge only, and only a role marked as managed.
    DropRole { role: String },
    /// Remove the registry row of this incarnation (the purge event stays).
    DeleteRegistry { uid: Uuid },
    /// Create the collection with the tenant's metadata.
    CreateCollection { collection: String },
    /// Replace the collection's metadata with the tenant's.
    UpdateCollectionMetadata { collection: String, id: String },
    /// Delete the collection: purge only, and only one marked with the tenant's uid.
    DeleteCollection { collection: String },
    /// Delete this incarnation's backups: purge only, the last step before commit.
    DeleteBackups { uid: Uuid },
}

/// What [`Step::RecordCredentials`] records of the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordRecord {
    /// The fingerprint of the verifier a [`Step::SetPassword`] of this change set.
    Set,
    /// No password any more.
    Cleared,
    /// As it was.
    Unchanged,
}

/// The object of a [`Step::RevokeGrant`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "snake_case")]
pub enum GrantTarget {
    Schema {
        schema: String,
    },
    Relation {
        schema: String,
        name: String,
        kind: ObjectKind,
    },
    /// Named exactly by its oid (functions can be overloaded).
    Function {
        schema: String,
        signature: String,
        oid: u32,
    },
}

impl std::fmt::Display for GrantTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantTarget::Schema { schema } => write!(f, "schema `{schema}`"),
            GrantTarget::Relation { schema, name, kind } => {
                write!(f, "{} `{schema}.{name}`", kind.label())
            }
            GrantTarget::Function { signature, .. } => write!(f, "function `{signature}`"),
        }
    }
}

impl Step {
    /// The step's kind as it appears in JSON (`create_schema`); failpoints use it too.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::CreateSchema { .. } => "create_schema",
            Step::RunMigrations { .. } => "run_migrations",
            Step::RecordMigrations { .. } => "record_migrations",
            Step::CreateRole { .. } => "create_role",
            Step::SetRoleLogin { .. } => "set_role_login",
            Step::SetConnectionLimit { .. } => "set_connection_limit",
            Step::SetPassword { .. } => "set_password",
            Step::ClearPassword { .. } => "clear_password",
            Step::CreateApiKey { .. } => "create_api_key",
            Step::RetireApiKey { .. } => "retire_api_key",
            Step::RevokeApiKey { .. } => "revoke_api_key",
            Step::SetApiKeyExpiry { .. } => "set_api_key_expiry",
            Step::RecordCredentials { .. } => "record_credentials",
            Step::TerminateSessions { .. } => "terminate_sessions",
            Step::DeliverSecrets { .. } => "deliver_secrets",
            Step::ResetRoleAttributes { .. } => "reset_role_attributes",
            Step::RevokeMembership { .. } => "revoke_membership",
            Step::ReassignOwned { .. } => "reassign_owned",
            Step::RevokeSchemaFromPublic { .. } => "revoke_schema_from_public",
            Step::GrantSchemaUsage { .. } => "grant_schema_usage",
            Step::RevokeSchemaUsage { .. } => "revoke_schema_usage",
            Step::GrantTablePrivileges { .. } => "grant_table_privileges",
            Step::GrantObjectPrivileges { .. } => "grant_object_privileges",
            Step::GrantFunctions { .. } => "grant_functions",
            Step::RevokeGrant { .. } => "revoke_grant",
            Step::SecurityInvoker { .. } => "security_invoker",
            Step::InsertRegistry { .. } => "insert_registry",
            Step::UpdateRegistry { .. } => "update_registry",
            Step::SoftDeleteRegistry { .. } => "soft_delete_registry",
            Step::ExportBackup { .. } => "export_backup",
            Step::DropSchema { .. } => "drop_schema",
            Step::DropRole { .. } => "drop_role",
            Step::DeleteRegistry { .. } => "delete_registry",
            Step::CreateCollection { .. } => "create_collection",
            Step::UpdateCollectionMetadata { .. } => "update_collection_metadata",
            Step::DeleteCollection { .. } => "delete_collection",
            Step::DeleteBackups { .. } => "delete_backups",
        }
    }

    /// True for steps that talk to Chroma (they run after the PostgreSQL steps).
    pub fn is_chroma(&self) -> bool {
        matches!(
            self,
            Step::CreateCollection { .. }
                | Step::UpdateCollectionMetadata { .. }
                | Step::DeleteCollection { .. }
        )
    }
}

/// A short description of the step, for error messages and reports.
impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::CreateSchema { schema } => write!(f, "create schema `{schema}`"),
            Step::RunMigrations { schema, versions } => write!(
                f,
                "run migration{} {} in `{schema}`",
                if versions.len() == 1 { "" } else { "s" },
                versions
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::RecordMigrations { versions } => write!(
                f,
                "record migration{} {} as applied",
                if versions.len() == 1 { "" } else { "s" },
                versions
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::CreateRole { role } => write!(f, "create role `{role}`"),
            Step::SetRoleLogin { role, login: true } => write!(f, "allow role `{role}` to log in"),
            Step::SetRoleLogin { role, login: false } => {
                write!(f, "disable login of role `{role}`")
            }
            Step::SetConnectionLimit { role, limit } => {
                write!(f, "set the connection limit of role `{role}` to {limit}")
            }
            Step::SetPassword { role } => write!(f, "generate the password of role `{role}`"),
            Step::ClearPassword { role } => write!(f, "remove the password of role `{role}`"),
            Step::CreateApiKey { name, .. } => write!(f, "generate API key `{name}`"),
            Step::RetireApiKey { prefix, name, .. } => {
                write!(
                    f,
                    "retire API key `{name}` ({prefix}) after its grace period"
                )
            }
            Step::RevokeApiKey { prefix, name } => write!(f, "revoke API key `{name}` ({prefix})"),
            Step::SetApiKeyExpiry { prefix, name, .. } => {
                write!(f, "change the expiry of API key `{name}` ({prefix})")
            }
            Step::RecordCredentials { .. } => f.write_str("record the credentials"),
            Step::TerminateSessions { role } => {
                write!(f, "end the open sessions of role `{role}`")
            }
            Step::DeliverSecrets { .. } => f.write_str("deliver the secrets to the secrets sink"),
            Step::ResetRoleAttributes { role, attributes } => {
                write!(f, "remove {} from role `{role}`", attributes.join(", "))
            }
            Step::RevokeMembership { role, member } => {
                write!(f, "revoke membership of `{member}` in `{role}`")
            }
            Step::ReassignOwned { role } => {
                write!(f, "reassign what role `{role}` owns to tenantctl's user")
            }
            Step::RevokeSchemaFromPublic { schema } => {
                write!(f, "revoke PUBLIC privileges on schema `{schema}`")
            }
            Step::GrantSchemaUsage { schema, role } => {
                write!(f, "grant usage on schema `{schema}` to `{role}`")
            }
            Step::RevokeSchemaUsage { schema, role } => {
                write!(f, "revoke access to schema `{schema}` from `{role}`")
            }
            Step::GrantTablePrivileges {
                schema,
                table,
                role,
            } => write!(
                f,
                "grant table privileges on `{schema}.{table}` to `{role}`"
            ),
            Step::GrantObjectPrivileges {
                schema,
                name,
                object_kind,
                role,
            } => write!(
                f,
                "grant privileges on {} `{schema}.{name}` to `{role}`",
                object_kind.label()
            ),
            Step::GrantFunctions { schema, role } => {
                write!(
                    f,
                    "grant execute on the functions of `{schema}` to `{role}`"
                )
            }
            Step::RevokeGrant { on, grantee } => {
                write!(f, "revoke privileges of `{grantee}` on {on}")
            }
            Step::SecurityInvoker { function, .. } => {
                write!(f, "make function `{function}` SECURITY INVOKER")
            }
            Step::InsertRegistry { .. } => f.write_str("insert the registry row"),
            Step::UpdateRegistry { .. } => f.write_str("update the registry row"),
            Step::SoftDeleteRegistry { .. } => f.write_str("mark the registry row deleted"),
            Step::ExportBackup { .. } => f.write_str("write the final backup"),
            Step::DropSchema { schema } => write!(f, "drop schema `{schema}`"),
            Step::DropRole { role } => write!(f, "drop role `{role}`"),
            Step::DeleteRegistry { .. } => f.write_str("delete the registry row"),
            Step::CreateCollection { collection } => write!(f, "create collection `{collection}`"),
            Step::UpdateCollectionMetadata { collection, .. } => {
                write!(f, "update the metadata of collection `{collection}`")
            }
            Step::DeleteCollection { collection } => write!(f, "delete collection `{collection}`"),
            Step::DeleteBackups { .. } => f.write_str("delete the backups"),
        }
    }
}
