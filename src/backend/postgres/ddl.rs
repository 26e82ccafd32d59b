//! The SQL text of every DDL step. Identifiers are validated and quoted ([`quote_ident`] for
//! names tenantctl builds, [`quote_catalog_ident`] for grantees read from the catalogs); the
//! only literal is the fixed management marker, and the only number is a catalog oid.
//!
//! These functions only build text: [`crate::apply`] decides when it is sent (consecutive DDL
//! of a tenant goes to the server as one batch).

use super::{quote_catalog_ident, quote_ident, PostgresError};
use crate::observed::{ObjectKind, PUBLIC};
use crate::plan::{GrantTarget, MANAGED_COMMENT};

type Sql = Result<String, PostgresError>;

/// `schema.name` for a relation of a tenant schema: the schema is a name tenantctl builds, the
/// relation a name the migrations chose (read back from the catalog).
fn relation(schema: &str, name: &str) -> Sql {
    Ok(format!(
        "{}.{}",
        quote_ident(schema)?,
        quote_catalog_ident(name)?
    ))
}

/// A grantee: a role, or the keyword `PUBLIC`.
fn grantee(name: &str) -> Sql {
    if name == PUBLIC {
        Ok("PUBLIC".to_string())
    } else {
        quote_catalog_ident(name)
    }
}

pub fn create_schema(schema: &str) -> Sql {
    let schema = quote_ident(schema)?;
    Ok(format!(
        "CREATE SCHEMA {schema}; COMMENT ON SCHEMA {schema} IS '{MANAGED_COMMENT}'; REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;"
    ))
}

pub fn create_role(role: &str) -> Sql {
    let role = quote_ident(role)?;
    Ok(format!(
        "CREATE ROLE {role} NOLOGIN; COMMENT ON ROLE {role} IS '{MANAGED_COMMENT}';"
    ))
}

pub fn set_role_login(role: &str, login: bool) -> Sql {
    let attribute = if login { "LOGIN" } else { "NOLOGIN" };
    Ok(format!("ALTER ROLE {} {attribute};", quote_ident(role)?))
}

/// `limit` is an integer formatted here: no input reaches the statement as text.
pub fn set_connection_limit(role: &str, limit: i32) -> Sql {
    Ok(format!(
        "ALTER ROLE {} CONNECTION LIMIT {limit};",
        quote_ident(role)?
    ))
}

pub fn clear_password(role: &str) -> Sql {
    Ok(format!("ALTER ROLE {} PASSWORD NULL;", quote_ident(role)?))
}

/// Back to a plain role, whatever attributes were added by hand.
pub fn reset_role_attributes(role: &str) -> Sql {
    Ok(format!(
        "ALTER ROLE {} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS;",
        quote_ident(role)?
    ))
}

/// `REVOKE role FROM member`: one side is the tenant role, the other any role.
pub fn revoke_membership(role: &str, member: &str) -> Sql {
    Ok(format!(
        "REVOKE {} FROM {};",
        quote_catalog_ident(role)?,
        quote_catalog_ident(member)?
    ))
}

/// Whatever the tenant role owns in this database goes to the user tenantctl connects as.
pub fn reassign_owned(role: &str) -> Sql {
    Ok(format!(
        "REASSIGN OWNED BY {} TO CURRENT_USER;",
        quote_ident(role)?
    ))
}

pub fn revoke_schema_from_public(schema: &str) -> Sql {
    Ok(format!(
        "REVOKE ALL ON SCHEMA {} FROM PUBLIC;",
        quote_ident(schema)?
    ))
}

pub fn grant_schema_usage(schema: &str, role: &str) -> Sql {
    Ok(format!(
        "GRANT USAGE ON SCHEMA {} TO {};",
        quote_ident(schema)?,
        quote_ident(role)?
    ))
}

pub fn revoke_schema_usage(schema: &str, role: &str) -> Sql {
    Ok(format!(
        "REVOKE ALL ON SCHEMA {} FROM {};",
        quote_ident(schema)?,
        quote_ident(role)?
    ))
}

pub fn grant_table_privileges(schema: &str, table: &str, role: &str) -> Sql {
    Ok(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {} TO {};",
        relation(schema, table)?,
        quote_ident(role)?
    ))
}

/// The tenant privileges on a view or sequence (see `plan::tenant_privileges`).
pub fn grant_object_privileges(schema: &str, name: &str, kind: ObjectKind, role: &str) -> Sql {
    let (privileges, keyword) = match kind {
        ObjectKind::MaterializedView => ("SELECT", "TABLE"),
        ObjectKind::Sequence => ("USAGE, SELECT, UPDATE", "SEQUENCE"),
        ObjectKind::Function => return grant_functions(schema, role),
        ObjectKind::Table | ObjectKind::View | ObjectKind::ForeignTable => {
            ("SELECT, INSERT, UPDATE, DELETE", "TABLE")
        }
    };
    Ok(format!(
        "GRANT {privileges} ON {keyword} {} TO {};",
        relation(schema, name)?,
        quote_ident(role)?
    ))
}

/// `EXECUTE` on every function of the schema to the role, none to PUBLIC (which functions
/// grant by default). Schema-wide: a function is named by its argument types, and this way no
/// text of a signature is ever built into SQL.
pub fn grant_functions(schema: &str, role: &str) -> Sql {
    let schema = quote_ident(schema)?;
    Ok(format!(
        "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {}; REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC;",
        quote_ident(role)?
    ))
}

/// `REVOKE ALL` of one grantee on one object.
pub fn revoke_grant(target: &GrantTarget, from: &str) -> Sql {
    let from = grantee(from)?;
    Ok(match target {
        GrantTarget::Schema { schema } => {
            format!("REVOKE ALL ON SCHEMA {} FROM {from};", quote_catalog_ident(schema)?)
        }
        GrantTarget::Relation { schema, name, kind } => {
            let keyword = if *kind == ObjectKind::Sequence {
                "SEQUENCE"
            } else {
                "TABLE"
            };
            format!(
                "REVOKE ALL ON {keyword} {}.{} FROM {from};",
                quote_catalog_ident(schema)?,
                quote_catalog_ident(name)?
            )
        }
        // An overloaded function is named exactly by its oid; `regprocedure` prints it with
        // its argument types, quoted by the server. The oid is a number read from the catalog.
        GrantTarget::Function { oid, .. } => format!(
            "DO $tenantctl$ BEGIN EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', {oid}::oid::regprocedure, {}); END $tenantctl$;",
            quote_literal(&from)
        ),
    })
}

/// `ALTER FUNCTION ... SECURITY INVOKER`, by oid.
pub fn security_invoker(oid: u32) -> Sql {
    Ok(format!(
        "DO $tenantctl$ BEGIN EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER', {oid}::oid::regprocedure); END $tenantctl$;"
    ))
}

/// A string literal of text that is already a quoted identifier or `PUBLIC` (no backslashes:
/// `standard_conforming_strings` is on since PostgreSQL 9.1).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Purge only: the planner emits it for the managed schema of a soft-deleted tenant whose
/// retention elapsed by the server's clock.
pub fn drop_schema(schema: &str) -> Sql {
    Ok(format!("DROP SCHEMA {} CASCADE;", quote_ident(schema)?))
}

/// Purge only, and only a role marked as managed.
pub fn drop_role(role: &str) -> Sql {
    Ok(format!("DROP ROLE {};", quote_ident(role)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grantees_from_the_catalog_are_escaped() {
        let target = GrantTarget::Schema {
            schema: "tenant_acme".to_string(),
        };
        assert_eq!(
            revoke_grant(&target, "Odd \"name\"").unwrap(),
            "REVOKE ALL ON SCHEMA \"tenant_acme\" FROM \"Odd \"\"name\"\"\";"
        );
        assert_eq!(
            revoke_grant(&target, PUBLIC).unwrap(),
            "REVOKE ALL ON SCHEMA \"tenant_acme\" FROM PUBLIC;"
        );
        let function = GrantTarget::Function {
            schema: "tenant_acme".to_string(),
            signature: "tenant_acme.f(integer)".to_string(),
            oid: 16_423,
        };
        assert_eq!(
            revoke_grant(&function, "it's").unwrap(),
            "DO $tenantctl$ BEGIN EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %s', 16423::oid::regprocedure, '\"it''s\"'); END $tenantctl$;"
        );
    }

    #[test]
    fn names_are_plain_or_escaped() {
        assert!(create_schema("tenant_acme; DROP TABLE x").is_err());
        assert_eq!(
            grant_table_privileges("tenant_acme", "Odd\"Name", "tenant_acme").unwrap(),
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE \"tenant_acme\".\"Odd\"\"Name\" TO \"tenant_acme\";"
        );
        assert_eq!(
            grant_object_privileges("tenant_acme", "documents_id_seq", ObjectKind::Sequence, "r_acme").unwrap(),
            "GRANT USAGE, SELECT, UPDATE ON SEQUENCE \"tenant_acme\".\"documents_id_seq\" TO \"r_acme\";"
        );
    }
}
