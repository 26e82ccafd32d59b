//! Credentials in PostgreSQL: reading what a plan needs in a fixed number of queries, and the
//! statements the executor runs. Secrets never appear in SQL text: a password is set as its
//! SCRAM verifier (computed in `crate::secrets`), an API key is stored as a digest and bound
//! as a parameter.

use super::{query_error, quote_ident, PostgresError};
use crate::observed::{ObservedApiKey, ObservedCredentials};
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// What the plan reads of credentials.
#[derive(Debug, Default)]
pub struct CredentialState {
    pub credentials: BTreeMap<Uuid, ObservedCredentials>,
    pub api_keys: BTreeMap<Uuid, Vec<ObservedApiKey>>,
    pub role_passwords: Option<BTreeMap<String, Option<String>>>,
    pub role_sessions: BTreeMap<String, u64>,
    pub authenticate_grantees: BTreeSet<String>,
    pub app_role_exists: Option<bool>,
}

/// First control schema version with credentials.
const CREDENTIALS_VERSION: i32 = 5;

/// Reads the credentials of every tenant at once: recorded rows and keys, the verifiers of
/// the tenant roles (when tenantctl's user may read `pg_authid`), their open sessions, and who
/// may call `tenantctl.authenticate`.
///
/// # Errors
/// A query failed.
pub async fn observe(
    client: &impl GenericClient,
    role_prefix: &str,
    app_role: Option<&str>,
    version: Option<i32>,
) -> Result<CredentialState, PostgresError> {
    let installed = version.unwrap_or(0) >= CREDENTIALS_VERSION;
    let (recorded, keys, passwords, sessions, grantees, app_role_exists) = futures_util::try_join!(
        async {
            if !installed {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT tenant_uid, rotation, password_fingerprint FROM tenantctl.credentials",
                    &[],
                )
                .await
                .map_err(query_error("read the recorded credentials"))
        },
        async {
            if !installed {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT tenant_uid, prefix, name, expires_at, retire_after \
                     FROM tenantctl.api_keys WHERE revoked_at IS NULL ORDER BY created_at, prefix",
                    &[],
                )
                .await
                .map_err(query_error("read the API keys"))
        },
        async {
            // Only a superuser reads the verifiers; anyone else cannot tell a password changed
            // outside tenantctl, and says nothing about it.
            let readable: bool = client
                .query_one(
                    "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')",
                    &[],
                )
                .await
                .map_err(query_error("check access to role passwords"))?
                .get(0);
            if !readable {
                return Ok(None);
            }
            // Digests of the verifiers, computed by the server: verifiers never travel.
            client
                .query(
                    "SELECT rolname::text, \
                            CASE WHEN rolpassword IS NULL THEN NULL \
                                 ELSE encode(sha256(convert_to(rolpassword, 'UTF8')), 'hex') END \
                     FROM pg_catalog.pg_authid WHERE starts_with(rolname::text, $1)",
                    &[&role_prefix],
                )
                .await
                .map(Some)
                .map_err(query_error("read the role passwords"))
        },
        async {
            client
                .query(
                    "SELECT usename::text, count(*) FROM pg_stat_activity \
                     WHERE starts_with(usename::text, $1) GROUP BY 1",
                    &[&role_prefix],
                )
                .await
                .map_err(query_error("read the sessions of tenant roles"))
        },
        async {
            if !installed {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
                                 ELSE pg_get_userbyid(a.grantee)::text END \
                     FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a \
                     WHERE p.oid = 'tenantctl.authenticate(text)'::regprocedure \
                       AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'",
                    &[],
                )
                .await
                .map_err(query_error("read who may call tenantctl.authenticate"))
        },
        async {
            let Some(role) = app_role else {
                return Ok(None);
            };
            client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                    &[&role],
                )
                .await
                .map(|row| Some(row.get::<_, bool>(0)))
                .map_err(query_error("look up the application role"))
        },
    )?;
    let mut state = CredentialState {
        app_role_exists,
        ..CredentialState::default()
    };
    for row in recorded {
        state.credentials.insert(
            row.get(0),
            ObservedCredentials {
                rotation: row.get(1),
                password_fingerprint: row.get(2),
            },
        );
    }
    for row in keys {
        state
            .api_keys
            .entry(row.get(0))
            .or_default()
            .push(ObservedApiKey {
                prefix: row.get(1),
                name: row.get(2),
                expires_at: row.get(3),
                retire_after: row.get(4),
            });
    }
    state.role_passwords = passwords.map(|rows| {
        rows.into_iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, Option<String>>(1)))
            .collect()
    });
    for row in sessions {
        let count: i64 = row.get(1);
        state
            .role_sessions
            .insert(row.get(0), u64::try_from(count).unwrap_or(0));
    }
    state.authenticate_grantees = grantees.into_iter().map(|row| row.get(0)).collect();
    Ok(state)
}

/// `ALTER ROLE ... PASSWORD '<verifier>'`. The verifier is the only text built into the
/// statement: `SCRAM-SHA-256$<iterations>:<base64>$<base64>:<base64>`, checked character by
/// character (a role's password cannot be a bound parameter).
///
/// # Errors
/// A verifier of another shape (nothing is sent).
pub fn set_password(role: &str, verifier: &str) -> Result<String, PostgresError> {
    let shaped = verifier.starts_with("SCRAM-SHA-256$")
        && verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '$' | ':' | '+' | '/' | '=' | '-'));
    if !shaped {
        return Err(PostgresError::Unexpected(
            "refusing a password verifier that is not a SCRAM-SHA-256 verifier".to_string(),
        ));
    }
    Ok(format!(
        "ALTER ROLE {} PASSWORD '{verifier}';",
        quote_ident(role)?
    ))
}

/// Grants the application role `EXECUTE` on `tenantctl.authenticate` (with `USAGE` on the
/// control schema, without which the function cannot be named), and takes both from any other
/// role, in one transaction.
///
/// # Errors
/// A statement failed; nothing changed.
pub async fn apply_app_role(
    client: &mut tokio_postgres::Client,
    change: &tenantctl_core::plan::AppRoleChange,
) -> Result<(), PostgresError> {
    let mut sql = String::new();
    for role in &change.revoke {
        let grantee = if role == "PUBLIC" {
            "PUBLIC".to_string()
        } else {
            quote_ident(role)?
        };
        sql.push_str(&format!(
            "REVOKE ALL ON FUNCTION tenantctl.authenticate(text) FROM {grantee}; \
             REVOKE ALL ON SCHEMA tenantctl FROM {grantee};"
        ));
    }
    if let (Some(role), true) = (&change.role, change.grant) {
        let role = quote_ident(role)?;
        sql.push_str(&format!(
            "GRANT USAGE ON SCHEMA tenantctl TO {role}; \
             GRANT EXECUTE ON FUNCTION tenantctl.authenticate(text) TO {role};"
        ));
    }
    let transaction = client
        .transaction()
        .await
        .map_err(query_error("begin the grants of the application role"))?;
    transaction.batch_execute(&sql).await.map_err(query_error(
        "grant the application role EXECUTE on tenantctl.authenticate",
    ))?;
    transaction
        .commit()
        .await
        .map_err(query_error("commit the grants of the application role"))
}

/// The statements of the other credential steps, every value bound.
pub mod sql {
    pub const INSERT_KEY: &str = "INSERT INTO tenantctl.api_keys \
         (prefix, tenant_uid, name, digest, expires_at) VALUES ($1, $2, $3, $4, $5)";
    pub const RETIRE_KEY: &str = "UPDATE tenantctl.api_keys \
         SET retire_after = now() + make_interval(secs => $3) \
         WHERE prefix = $1 AND tenant_uid = $2 AND revoked_at IS NULL";
    pub const REVOKE_KEY: &str = "UPDATE tenantctl.api_keys SET revoked_at = now() \
         WHERE prefix = $1 AND tenant_uid = $2 AND revoked_at IS NULL";
    pub const SET_KEY_EXPIRY: &str = "UPDATE tenantctl.api_keys SET expires_at = $3 \
         WHERE prefix = $1 AND tenant_uid = $2 AND revoked_at IS NULL";
    /// `$3`: the digest of the new verifier; `$4`: keep the recorded one instead.
    pub const RECORD: &str = "INSERT INTO tenantctl.credentials \
             (tenant_uid, rotation, password_fingerprint) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_uid) DO UPDATE SET rotation = excluded.rotation, \
             password_fingerprint = CASE WHEN $4 THEN tenantctl.credentials.password_fingerprint \
                                         ELSE excluded.password_fingerprint END, \
             updated_at = now()";
    /// Ends the role's sessions except this one; how many it ended.
    pub const TERMINATE: &str = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
         FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_scram_verifier_reaches_the_statement() {
        let verifier = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";
        assert_eq!(
            set_password("tenant_acme", verifier).unwrap(),
            format!("ALTER ROLE \"tenant_acme\" PASSWORD '{verifier}';")
        );
        for bad in [
            "plaintext",
            "SCRAM-SHA-256$4096:x'; DROP ROLE admin; --",
            "md5abcdef",
        ] {
            assert!(set_password("tenant_acme", bad).is_err(), "{bad}");
        }
    }
}
