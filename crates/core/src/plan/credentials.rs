//! Planning a tenant's credentials: whether its role logs in, its connection limit, its
//! password, its API keys and their rotation, and the sessions of a role whose access ends.
//!
//! Nothing here ever holds a secret: a step says "generate", the executor generates, and the
//! plan only shows names, prefixes and dates.

use super::{
    CredentialChange, Drift, DriftProblem, PasswordRecord, PasswordWhy, Refusal, ResourceKind, Step,
};
use crate::observed::{LiveStatus, ObservedApiKey, ObservedRole, ObservedState};
use crate::spec::AuthSpec;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a tenant change does to credentials.
#[derive(Debug, Default)]
pub(super) struct Credentials {
    pub steps: Vec<Step>,
    pub changes: Vec<CredentialChange>,
    /// Found outside tenantctl: a repair.
    pub drift: Vec<Drift>,
    pub refusals: Vec<Refusal>,
}

impl Credentials {
    /// A secret is generated, or a key the sink holds is revoked: the change ends by telling
    /// the secrets sink.
    pub fn delivers(&self) -> bool {
        self.steps.iter().any(|step| {
            matches!(
                step,
                Step::SetPassword { .. } | Step::CreateApiKey { .. } | Step::RevokeApiKey { .. }
            )
        })
    }
}

/// The facts one tenant's credentials are planned from.
pub(super) struct Inputs<'a> {
    pub tenant: &'a str,
    /// The file's `auth` (`None`: no credentials at all, the role never logs in).
    pub auth: Option<&'a AuthSpec>,
    /// The tenant's status after the change.
    pub status: LiveStatus,
    pub role: &'a str,
    /// The live role; `None` when this change creates it.
    pub live_role: Option<&'a ObservedRole>,
    /// The incarnation; `None` for a create.
    pub uid: Option<Uuid>,
    pub observed: &'a ObservedState,
    pub grace: std::time::Duration,
    /// This change suspends or soft-deletes the tenant.
    pub disabling: bool,
}

/// Plans the credentials of one tenant that exists after the change (not a purge).
pub(super) fn plan(inputs: &Inputs<'_>) -> Credentials {
    let mut out = Credentials::default();
    let role = inputs.role.to_string();
    let declared = inputs.auth.is_some();
    let auth = inputs.auth.cloned().unwrap_or_default();
    let active = inputs.status == LiveStatus::Active;

    // Login: only while the tenant is active and its file asks for it.
    let want_login = auth.login && active;
    let live_login = inputs.live_role.is_some_and(|live| live.can_login);
    if want_login != live_login {
        out.steps.push(Step::SetRoleLogin {
            role: role.clone(),
            login: want_login,
        });
        if live_login && !declared && !inputs.disabling {
            // Without `auth`, a role that logs in was changed by hand.
            out.drift.push(Drift {
                resource: ResourceKind::Role,
                name: role.clone(),
                problem: DriftProblem::Wrong,
                detail: "role can log in, should be NOLOGIN".to_string(),
            });
        } else {
            out.changes.push(CredentialChange::Login {
                from: live_login,
                to: want_login,
            });
        }
    }
    if inputs.disabling {
        let sessions = inputs.observed.role_sessions.get(inputs.role).copied();
        if live_login || sessions.is_some_and(|count| count > 0) {
            // Sessions opened between the plan and the commit are ended too.
            out.steps
                .push(Step::TerminateSessions { role: role.clone() });
        }
        if let Some(sessions) = sessions.filter(|count| *count > 0) {
            out.changes
                .push(CredentialChange::SessionsEnded { sessions });
        }
        // A soft delete or a suspension touches nothing else: keys stop working because
        // `authenticate` answers for active tenants only.
        return out;
    }
    if !want_login {
        if let Some(sessions) = inputs
            .observed
            .role_sessions
            .get(inputs.role)
            .copied()
            .filter(|count| *count > 0)
        {
            out.drift.push(Drift {
                resource: ResourceKind::Role,
                name: role.clone(),
                problem: DriftProblem::Wrong,
                detail: format!(
                    "{sessions} open session{} of a role that may not log in",
                    if sessions == 1 { "" } else { "s" }
                ),
            });
            out.steps
                .push(Step::TerminateSessions { role: role.clone() });
        }
    }

    // Connection limit (-1: none).
    let want_limit = auth.connection_limit.map_or(-1, |limit| limit as i32);
    let live_limit = inputs.live_role.map_or(-1, |live| live.connection_limit);
    if want_limit != live_limit {
        out.steps.push(Step::SetConnectionLimit {
            role: role.clone(),
            limit: want_limit,
        });
        let shown = |limit: i32| (limit >= 0).then_some(limit);
        out.changes.push(CredentialChange::ConnectionLimit {
            from: inputs.live_role.and_then(|_| shown(live_limit)),
            to: shown(want_limit),
        });
    }

    let recorded = inputs
        .uid
        .and_then(|uid| inputs.observed.credentials.get(&uid));
    // A rotation is a new `rotate` value for credentials already recorded; the first
    // credentials of a tenant are new, whatever `rotate` says.
    let rotating = recorded.is_some_and(|recorded| recorded.rotation != auth.rotate);

    // Password: exists exactly when the file says `login: true`.
    let stored = recorded.and_then(|recorded| recorded.password_fingerprint.as_ref());
    let live_password = inputs
        .observed
        .role_passwords
        .as_ref()
        .map(|passwords| passwords.get(inputs.role).cloned().flatten());
    let mut password = PasswordRecord::Unchanged;
    if auth.login {
        let why = if inputs.live_role.is_none() || stored.is_none() {
            Some(PasswordWhy::New)
        } else if rotating {
            Some(PasswordWhy::Rotation)
        } else {
            match &live_password {
                Some(live) if live.as_ref() != stored => {
                    out.drift.push(Drift {
                        resource: ResourceKind::Role,
                        name: role.clone(),
                        problem: DriftProblem::Wrong,
                        detail: "password changed outside tenantctl".to_string(),
                    });
                    Some(PasswordWhy::Drift)
                }
                _ => None,
            }
        };
        if let Some(why) = why {
            out.steps.push(Step::SetPassword { role: role.clone() });
            if why != PasswordWhy::Drift {
                out.changes.push(CredentialChange::Password { why });
            }
            password = PasswordRecord::Set;
        }
    } else if stored.is_some() || matches!(live_password, Some(Some(_))) {
        out.steps.push(Step::ClearPassword { role: role.clone() });
        out.changes.push(CredentialChange::PasswordRemoved);
        password = PasswordRecord::Cleared;
    }

    plan_api_keys(inputs, &auth, rotating, &mut out);

    let rotation_changes = recorded.map_or(declared, |recorded| recorded.rotation != auth.rotate);
    if password != PasswordRecord::Unchanged || rotation_changes {
        out.steps.push(Step::RecordCredentials {
            rotation: auth.rotate.clone(),
            password,
        });
    }
    out
}

fn plan_api_keys(inputs: &Inputs<'_>, auth: &AuthSpec, rotating: bool, out: &mut Credentials) {
    let now = inputs.observed.server_time;
    let live: &[ObservedApiKey] = inputs
        .uid
        .and_then(|uid| inputs.observed.api_keys.get(&uid))
        .map_or(&[], Vec::as_slice);
    // Keys a rotation replaced: revoked by the first run after their grace.
    for key in live {
        if let Some(until) = key.retire_after {
            if until <= now {
                out.steps.push(Step::RevokeApiKey {
                    prefix: key.prefix.clone(),
                    name: key.name.clone(),
                });
                out.changes.push(CredentialChange::ApiKeyRevoked {
                    name: key.name.clone(),
                    prefix: key.prefix.clone(),
                    why: "its rotation grace period ended".to_string(),
                });
            }
        }
    }
    let current: Vec<&ObservedApiKey> = live
        .iter()
        .filter(|key| key.retire_after.is_none())
        .collect();
    let grace = chrono::Duration::from_std(inputs.grace).unwrap_or(chrono::Duration::days(1));
    for wanted in &auth.api_keys {
        let expires_at = wanted.expires.map(start_of_day);
        let found: Vec<&&ObservedApiKey> = current
            .iter()
            .filter(|key| key.name == wanted.name)
            .collect();
        match found.first() {
            None => {
                if expires_at.is_some_and(|at| at <= now) {
                    out.refusals.push(Refusal {
                        tenant: Some(inputs.tenant.to_string()),
                        message: format!(
                            "{}: auth.api_keys `{}` expires on {}, which has passed: a new key would never work",
                            wanted.location,
                            wanted.name,
                            wanted.expires.map(|date| date.to_string()).unwrap_or_default()
                        ),
                        hint: Some("give it a date after today (the database server's), or leave `expires` out".to_string()),
                    });
                    continue;
                }
                out.steps.push(Step::CreateApiKey {
                    name: wanted.name.clone(),
                    expires: wanted.expires,
                });
                out.changes.push(CredentialChange::ApiKeyCreated {
                    name: wanted.name.clone(),
                    expires: wanted.expires,
                    rotated: false,
                });
            }
            Some(key) if rotating => {
                out.steps.push(Step::RetireApiKey {
                    prefix: key.prefix.clone(),
                    name: key.name.clone(),
                    grace_seconds: inputs.grace.as_secs(),
                });
                out.changes.push(CredentialChange::ApiKeyRetired {
                    name: key.name.clone(),
                    prefix: key.prefix.clone(),
                    until: now + grace,
                });
                out.steps.push(Step::CreateApiKey {
                    name: wanted.name.clone(),
                    expires: wanted.expires,
                });
                out.changes.push(CredentialChange::ApiKeyCreated {
                    name: wanted.name.clone(),
                    expires: wanted.expires,
                    rotated: true,
                });
            }
            Some(key) if key.expires_at != expires_at => {
                out.steps.push(Step::SetApiKeyExpiry {
                    prefix: key.prefix.clone(),
                    name: key.name.clone(),
                    expires: wanted.expires,
                });
                out.changes.push(CredentialChange::ApiKeyExpiry {
                    name: key.name.clone(),
                    prefix: key.prefix.clone(),
                    from: key.expires_at.map(|at| at.date_naive()),
                    to: wanted.expires,
                });
            }
            Some(_) => {}
        }
        // Two live keys of one name (an interrupted run): the extra ones go.
        for extra in found.iter().skip(1) {
            revoke(out, extra, "a second key of the same name");
        }
    }
    for key in &current {
        if !auth.api_keys.iter().any(|wanted| wanted.name == key.name) {
            revoke(out, key, "removed from the file");
        }
    }
}

fn revoke(out: &mut Credentials, key: &ObservedApiKey, why: &str) {
    out.steps.push(Step::RevokeApiKey {
        prefix: key.prefix.clone(),
        name: key.name.clone(),
    });
    out.changes.push(CredentialChange::ApiKeyRevoked {
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        why: why.to_string(),
    });
}

/// A key `expires` on a date: it stops working at the start of that day, UTC.
pub fn start_of_day(date: chrono::NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .map(|naive| naive.and_utc())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::ObservedCredentials;
    use crate::spec::{ApiKeySpec, Location};
    use crate::test_support::empty_observed;

    fn key(name: &str, expires: Option<&str>) -> ApiKeySpec {
        ApiKeySpec {
            name: name.to_string(),
            expires: expires.map(|date| date.parse().unwrap()),
            location: Location {
                file: "tenants/acme.yaml".into(),
                line: 9,
                column: 13,
            },
        }
    }

    fn role(login: bool, limit: i32) -> ObservedRole {
        ObservedRole {
            can_login: login,
            connection_limit: limit,
            ..ObservedRole::default()
        }
    }

    fn kinds(credentials: &Credentials) -> Vec<&'static str> {
        credentials.steps.iter().map(Step::kind).collect()
    }

    #[test]
    fn a_new_tenant_with_login_and_keys_gets_everything_generated() {
        let observed = empty_observed();
        let auth = AuthSpec {
            login: true,
            connection_limit: Some(10),
            api_keys: vec![key("web", None), key("batch", Some("2027-06-01"))],
            rotate: None,
        };
        let planned = plan(&Inputs {
            tenant: "acme",
            auth: Some(&auth),
            status: LiveStatus::Active,
            role: "tenant_acme",
            live_role: None,
            uid: None,
            observed: &observed,
            grace: std::time::Duration::from_secs(3600),
            disabling: false,
        });
        assert_eq!(
            kinds(&planned),
            [
                "set_role_login",
                "set_connection_limit",
                "set_password",
                "create_api_key",
                "create_api_key",
                "record_credentials"
            ]
        );
        assert!(planned.delivers());
        assert!(planned.drift.is_empty());
    }

    #[test]
    fn suspension_disables_login_and_ends_sessions_and_nothing_else() {
        let mut observed = empty_observed();
        observed.role_sessions.insert("tenant_acme".into(), 2);
        let auth = AuthSpec {
            login: true,
            ..AuthSpec::default()
        };
        let live = role(true, -1);
        let planned = plan(&Inputs {
            tenant: "acme",
            auth: Some(&auth),
            status: LiveStatus::Suspended,
            role: "tenant_acme",
            live_role: Some(&live),
            uid: Some(Uuid::from_u128(1)),
            observed: &observed,
            grace: std::time::Duration::from_secs(3600),
            disabling: true,
        });
        assert_eq!(kinds(&planned), ["set_role_login", "terminate_sessions"]);
        assert_eq!(
            planned.changes,
            [
                CredentialChange::Login {
                    from: true,
                    to: false
                },
                CredentialChange::SessionsEnded { sessions: 2 }
            ]
        );
    }

    #[test]
    fn rotation_replaces_password_and_keys_and_retires_the_old_keys() {
        let mut observed = empty_observed();
        let uid = Uuid::from_u128(1);
        observed.credentials.insert(
            uid,
            ObservedCredentials {
                rotation: None,
                password_fingerprint: Some("f1".into()),
            },
        );
        observed.role_passwords =
            Some([("tenant_acme".to_string(), Some("f1".to_string()))].into());
        let retired_long_ago = ObservedApiKey {
            prefix: "tct_000000000001".into(),
            name: "web".into(),
            expires_at: None,
            retire_after: Some(observed.server_time - chrono::Duration::hours(1)),
        };
        let current = ObservedApiKey {
            prefix: "tct_000000000002".into(),
            name: "web".into(),
            expires_at: None,
            retire_after: None,
        };
        let gone = ObservedApiKey {
            prefix: "tct_000000000003".into(),
            name: "old".into(),
            expires_at: None,
            retire_after: None,
        };
        observed
            .api_keys
            .insert(uid, vec![retired_long_ago, current, gone]);
        let auth = AuthSpec {
            login: true,
            api_keys: vec![key("web", None)],
            rotate: Some("2026-12-01".into()),
            ..AuthSpec::default()
        };
        let live = role(true, -1);
        let planned = plan(&Inputs {
            tenant: "acme",
            auth: Some(&auth),
            status: LiveStatus::Active,
            role: "tenant_acme",
            live_role: Some(&live),
            uid: Some(uid),
            observed: &observed,
            grace: std::time::Duration::from_secs(3600),
            disabling: false,
        });
        assert_eq!(
            kinds(&planned),
            [
                "set_password",
                "revoke_api_key",
                "retire_api_key",
                "create_api_key",
                "revoke_api_key",
                "record_credentials"
            ]
        );
        assert!(planned.changes.contains(&CredentialChange::Password {
            why: PasswordWhy::Rotation
        }));
    }

    #[test]
    fn a_password_changed_by_hand_is_drift_repaired_by_a_new_one() {
        let mut observed = empty_observed();
        let uid = Uuid::from_u128(1);
        observed.credentials.insert(
            uid,
            ObservedCredentials {
                rotation: None,
                password_fingerprint: Some("mine".into()),
            },
        );
        observed.role_passwords =
            Some([("tenant_acme".to_string(), Some("theirs".to_string()))].into());
        let auth = AuthSpec {
            login: true,
            ..AuthSpec::default()
        };
        let live = role(true, -1);
        let inputs = Inputs {
            tenant: "acme",
            auth: Some(&auth),
            status: LiveStatus::Active,
            role: "tenant_acme",
            live_role: Some(&live),
            uid: Some(uid),
            observed: &observed,
            grace: std::time::Duration::from_secs(3600),
            disabling: false,
        };
        let planned = plan(&inputs);
        assert_eq!(kinds(&planned), ["set_password", "record_credentials"]);
        assert_eq!(
            planned.drift[0].detail,
            "password changed outside tenantctl"
        );
        // Unreadable verifiers (not a superuser): nothing is claimed.
        let mut unreadable = observed.clone();
        unreadable.role_passwords = None;
        let planned = plan(&Inputs {
            observed: &unreadable,
            ..inputs
        });
        assert!(planned.steps.is_empty(), "{:?}", planned.steps);
    }

    #[test]
    fn a_new_key_that_already_expired_is_refused_with_its_position() {
        let observed = empty_observed();
        let auth = AuthSpec {
            api_keys: vec![key("web", Some("2020-01-01"))],
            ..AuthSpec::default()
        };
        let planned = plan(&Inputs {
            tenant: "acme",
            auth: Some(&auth),
            status: LiveStatus::Active,
            role: "tenant_acme",
            live_role: None,
            uid: None,
            observed: &observed,
            grace: std::time::Duration::from_secs(3600),
            disabling: false,
        });
        assert_eq!(
            planned.refusals[0].message,
            "tenants/acme.yaml:9:13: auth.api_keys `web` expires on 2020-01-01, which has passed: a new key would never work"
        );
        assert!(!planned.delivers());
    }
}
