//! Saved plans: `plan --out FILE` writes one, `apply FILE` applies it, `show FILE` renders it.
//!
//! A saved plan is a proposal for review, never a program. `apply FILE` re-derives the plan
//! under the apply lock from the files and the live state, with the options of the applying
//! side, and refuses (nothing changed) unless the result equals the saved plan; what it then
//! executes is the plan it derived itself, so nothing in the file is ever run. The file also
//! carries two fingerprints (files and live state) and an id recorded when applied, so the same
//! plan never applies twice. Where a plan key is configured (`TENANTCTL_PLAN_KEY`), the file
//! carries an HMAC-SHA256 of its content and `apply` refuses a file without a valid one: a
//! plan made by a job without the key (a fork's pull request) cannot be applied.
//!
//! Pure: reading and writing the file is the command's job.

use crate::observed::ObservedState;
use crate::plan::{Action, Plan};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Marks a file as a tenantctl saved plan.
pub const KIND: &str = "tenantctl-saved-plan";
/// Version of the saved-plan format.
pub const FORMAT_VERSION: u32 = 1;
/// A saved plan larger than this is refused before parsing (10,000 tenants take a few MB).
pub const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Everything `apply FILE` checks, and nothing secret: URLs are stored with passwords removed
/// and tokens are never part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: u32,
    pub tool_version: String,
    /// Unique id, recorded in the control schema when applied.
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The directory as given to `plan`.
    pub dir: String,
    /// Fingerprint of every tenant file loaded.
    pub desired_fingerprint: String,
    /// Fingerprint of the live state the plan was made against.
    pub live_fingerprint: String,
    /// Database URL without password, for display.
    pub database: String,
    /// Chroma URL and scope, for display.
    pub chroma: String,
    pub options: SavedOptions,
    pub plan: Plan,
    /// Hex HMAC-SHA256 with the plan key over the file's content without this field; absent
    /// when the plan was made without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The planning options in force when the plan was made. `apply FILE` takes its options from
/// its own flags and environment and refuses when they differ: a file cannot widen what a run
/// may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedOptions {
    pub role_prefix: String,
    pub retention_days: Option<u32>,
    pub prune: bool,
    pub max_deletes: Option<usize>,
    /// `--max-destructive-migrations`.
    #[serde(default)]
    pub max_destructive_migrations: Option<usize>,
    /// `--canary`.
    #[serde(default)]
    pub canary: Option<usize>,
    /// `--tenant` filter; empty for all.
    pub tenants: BTreeSet<String>,
    pub backup_dir: String,
}

impl SavedOptions {
    /// The options that differ from `other`, named as flags.
    pub fn differences(&self, other: &SavedOptions) -> Vec<String> {
        let mut differ = Vec::new();
        let mut check = |name: &str, same: bool, saved: String, now: String| {
            if !same {
                differ.push(format!("`{name}` is {now} here but {saved} in the plan"));
            }
        };
        check(
            "--role-prefix",
            self.role_prefix == other.role_prefix,
            format!("`{}`", self.role_prefix),
            format!("`{}`", other.role_prefix),
        );
        let days = |days: Option<u32>| days.map_or("unset".to_string(), |d| d.to_string());
        check(
            "--retention-days",
            self.retention_days == other.retention_days,
            days(self.retention_days),
            days(other.retention_days),
        );
        check(
            "--prune",
            self.prune == other.prune,
            self.prune.to_string(),
            other.prune.to_string(),
        );
        let limit = |limit: Option<usize>| limit.map_or("unset".to_string(), |l| l.to_string());
        check(
            "--max-deletes",
            self.max_deletes == other.max_deletes,
            limit(self.max_deletes),
            limit(other.max_deletes),
        );
        check(
            "--max-destructive-migrations",
            self.max_destructive_migrations == other.max_destructive_migrations,
            limit(self.max_destructive_migrations),
            limit(other.max_destructive_migrations),
        );
        check(
            "--canary",
            self.canary == other.canary,
            limit(self.canary),
            limit(other.canary),
        );
        let tenants = |set: &BTreeSet<String>| {
            if set.is_empty() {
                "all tenants".to_string()
            } else {
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        check(
            "--tenant",
            self.tenants == other.tenants,
            tenants(&self.tenants),
            tenants(&other.tenants),
        );
        check(
            "--backup-dir",
            self.backup_dir == other.backup_dir,
            format!("`{}`", self.backup_dir),
            format!("`{}`", other.backup_dir),
        );
        differ
    }
}

/// A file that cannot be used as a saved plan at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    #[error("`{0}` is not a tenantctl saved plan")]
    NotAPlan(String),
    #[error(
        "`{name}` has saved-plan format version {found}; this tenantctl reads version {FORMAT_VERSION}"
    )]
    Version { name: String, found: u64 },
    #[error("`{name}` is not a valid saved plan: {reason}")]
    Invalid { name: String, reason: String },
    #[error("`{0}` is not signed, and `TENANTCTL_PLAN_KEY` is set: only plans made with the key are applied")]
    Unsigned(String),
    #[error("`{0}` carries a signature that does not match `TENANTCTL_PLAN_KEY`: it was made with another key or changed after it was signed")]
    BadSignature(String),
}

/// Why a valid saved plan is not applied now (exit 3: make a new plan).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleReason {
    #[error("the tenant files or migrations changed since the plan was made")]
    DesiredChanged,
    #[error("the live state changed since the plan was made (another apply ran, or someone changed the database or Chroma)")]
    LiveChanged,
    #[error("planning again now gives a different plan ({0})")]
    PlanDiffers(String),
    #[error("the options of this apply differ from the plan's: {}", .0.join("; "))]
    OptionsDiffer(Vec<String>),
    #[error("this plan was already applied (at {0})")]
    AlreadyApplied(String),
}

/// Fingerprint of the live state: a hash of everything observed except the server clock.
/// Maps are ordered, so equal states give equal fingerprints.
pub fn live_fingerprint(observed: &ObservedState) -> String {
    // Streamed into the hash: neither a copy of the state nor its JSON is held (tens of MB at
    // 10,000 tenants). The server clock and open sessions are not serialized.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    serde_json::to_writer(&mut hashing, observed).expect("observed state serializes");
    hex::encode(hashing.0.finalize())
}

/// The plan as compared between saving and applying: what is measured or dated at the moment
/// of planning (the server clock, rows and records at risk, the purge date a soft delete
/// computes from the clock) is left out; every action, step, record and refusal stays.
fn comparable(plan: &Plan) -> Plan {
    let mut plan = plan.clone();
    plan.server_time = DateTime::<Utc>::default();
    for change in &mut plan.changes {
        change.at_risk = None;
        if change.actions.contains(&Action::Delete) {
            change.purge_after = None;
        }
    }
    plan
}

/// Where two plans first differ, for the refusal message.
fn first_difference(saved: &Plan, now: &Plan) -> String {
    let tenants = |plan: &Plan| -> BTreeSet<String> {
        plan.changes.iter().map(|c| c.tenant.clone()).collect()
    };
    for change in &now.changes {
        match saved.changes.iter().find(|c| c.tenant == change.tenant) {
            None => return format!("tenant `{}` is not in the saved plan", change.tenant),
            Some(old) if old != change => {
                return format!("tenant `{}` differs", change.tenant);
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = tenants(saved).difference(&tenants(now)).next() {
        return format!("tenant `{extra}` is in the saved plan only");
    }
    "the plan-wide parts differ (refusals, orphans, purges or control schema)".to_string()
}

impl SavedPlan {
    /// Parses a saved plan file and, when a plan key is given, checks its signature.
    ///
    /// # Errors
    /// Not JSON, not a saved plan, another format version, a field that does not belong, a
    /// missing or wrong signature.
    pub fn parse(name: &str, text: &str, key: Option<&[u8]>) -> Result<SavedPlan, SavedPlanError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| SavedPlanError::NotAPlan(name.to_string()))?;
        if value.get("kind").and_then(|kind| kind.as_str()) != Some(KIND) {
            return Err(SavedPlanError::NotAPlan(name.to_string()));
        }
        let found = value
            .get("format_version")
            .and_then(|version| version.as_u64())
            .unwrap_or(0);
        if found != u64::from(FORMAT_VERSION) {
            return Err(SavedPlanError::Version {
                name: name.to_string(),
                found,
            });
        }
        let saved: SavedPlan =
            serde_json::from_value(value).map_err(|error| SavedPlanError::Invalid {
                name: name.to_string(),
                reason: error.to_string(),
            })?;
        if let Some(key) = key {
            let Some(signature) = &saved.signature else {
                return Err(SavedPlanError::Unsigned(name.to_string()));
            };
            let expected = hex::decode(signature)
                .map_err(|_| SavedPlanError::BadSignature(name.to_string()))?;
            let mut mac = saved.mac(key);
            mac.update(&saved.signed_bytes());
            mac.verify_slice(&expected)
                .map_err(|_| SavedPlanError::BadSignature(name.to_string()))?;
        }
        Ok(saved)
    }

    fn mac(&self, key: &[u8]) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
    }

    /// The bytes the signature covers: the file's content without the signature, as this
    /// struct serializes it (so what is verified is exactly what was parsed).
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        serde_json::to_vec(&unsigned).expect("saved plan serializes")
    }

    /// Signs the plan with `key`.
    pub fn sign(&mut self, key: &[u8]) {
        self.signature = None;
        let mut mac = self.mac(key);
        mac.update(&self.signed_bytes());
        self.signature = Some(hex::encode(mac.finalize().into_bytes()));
    }

    /// Checks the saved plan against what this apply derived under the lock: the same files,
    /// the same live state, the same options, and the same plan.
    ///
    /// # Errors
    /// The first difference found.
    pub fn check_fresh(
        &self,
        desired_fingerprint: &str,
        observed: &ObservedState,
        options: &SavedOptions,
        plan: &Plan,
    ) -> Result<(), StaleReason> {
        let differ = self.options.differences(options);
        if !differ.is_empty() {
            return Err(StaleReason::OptionsDiffer(differ));
        }
        if self.desired_fingerprint != desired_fingerprint {
            return Err(StaleReason::DesiredChanged);
        }
        if self.live_fingerprint != live_fingerprint(observed) {
            return Err(StaleReason::LiveChanged);
        }
        let (saved, now) = (comparable(&self.plan), comparable(plan));
        if saved != now {
            return Err(StaleReason::PlanDiffers(first_difference(&saved, &now)));
        }
        Ok(())
    }

    /// Pretty JSON for the file.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("saved plan serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{diff, PlanOptions, Step};
    use crate::test_support::*;

    fn options() -> SavedOptions {
        SavedOptions {
            role_prefix: "tenant_".to_string(),
            retention_days: None,
            prune: false,
            max_deletes: Some(10),
            max_destructive_migrations: Some(10),
            canary: None,
            tenants: BTreeSet::new(),
            backup_dir: "backups".to_string(),
        }
    }

    fn saved(observed: &ObservedState) -> SavedPlan {
        let desired = desired(vec![tenant("acme")]);
        SavedPlan {
            kind: KIND.to_string(),
            format_version: FORMAT_VERSION,
            tool_version: "test".to_string(),
            id: Uuid::from_u128(7),
            created_at: observed.server_time,
            dir: "tenants".to_string(),
            desired_fingerprint: "files-1".to_string(),
            live_fingerprint: live_fingerprint(observed),
            database: "postgres://app@db/saas".to_string(),
            chroma: "http://chroma:8000".to_string(),
            options: options(),
            plan: diff(&desired, observed, &PlanOptions::default()),
            signature: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let observed = empty_observed();
        let plan = saved(&observed);
        let parsed = SavedPlan::parse("p.json", &plan.to_json(), None).unwrap();
        assert_eq!(parsed, plan);
    }

    #[test]
    fn fresh_only_while_files_live_state_options_and_plan_are_unchanged() {
        let mut observed = empty_observed();
        let saved = saved(&observed);
        let plan = saved.plan.clone();
        assert_eq!(
            saved.check_fresh("files-1", &observed, &options(), &plan),
            Ok(())
        );
        assert_eq!(
            saved.check_fresh("files-2", &observed, &options(), &plan),
            Err(StaleReason::DesiredChanged)
        );
        // the server clock moving is not a change
        observed.server_time += chrono::Duration::hours(1);
        let mut later = plan.clone();
        later.server_time = observed.server_time;
        assert_eq!(
            saved.check_fresh("files-1", &observed, &options(), &later),
            Ok(())
        );
        // an option that widens the run is
        let mut wider = options();
        wider.max_deletes = Some(100);
        let error = saved
            .check_fresh("files-1", &observed, &wider, &plan)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the options of this apply differ from the plan's: `--max-deletes` is 100 here but 10 in the plan"
        );
        // a tenant appearing is
        provision(
            &mut observed,
            &tenant("acme"),
            crate::observed::LiveStatus::Active,
            1,
        );
        assert_eq!(
            saved.check_fresh("files-1", &observed, &options(), &plan),
            Err(StaleReason::LiveChanged)
        );
    }

    #[test]
    fn a_plan_edited_by_hand_is_refused() {
        let observed = empty_observed();
        let mut forged = saved(&observed);
        let honest = forged.plan.clone();
        forged.plan.changes[0].steps.push(Step::DropSchema {
            schema: "tenant_other".to_string(),
        });
        let error = forged
            .check_fresh("files-1", &observed, &options(), &honest)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "planning again now gives a different plan (tenant `acme` differs)"
        );
    }

    #[test]
    fn a_signed_plan_verifies_only_with_its_key_and_unchanged() {
        let observed = empty_observed();
        let mut plan = saved(&observed);
        plan.sign(b"key-1");
        let text = plan.to_json();
        assert!(SavedPlan::parse("p.json", &text, Some(b"key-1")).is_ok());
        assert_eq!(
            SavedPlan::parse("p.json", &text, Some(b"key-2")),
            Err(SavedPlanError::BadSignature("p.json".to_string()))
        );
        let tampered = text.replace("\"prune\": false", "\"prune\": true");
        assert_ne!(tampered, text);
        assert_eq!(
            SavedPlan::parse("p.json", &tampered, Some(b"key-1")),
            Err(SavedPlanError::BadSignature("p.json".to_string()))
        );
        let mut unsigned = saved(&observed);
        unsigned.signature = None;
        assert_eq!(
            SavedPlan::parse("p.json", &unsigned.to_json(), Some(b"key-1")),
            Err(SavedPlanError::Unsigned("p.json".to_string()))
        );
        // without a key configured, a signature is not required (nor checked)
        assert!(SavedPlan::parse("p.json", &unsigned.to_json(), None).is_ok());
    }

    #[test]
    fn other_files_are_not_plans() {
        assert_eq!(
            SavedPlan::parse("x", "{\"kind\": \"something\"}", None),
            Err(SavedPlanError::NotAPlan("x".to_string()))
        );
        assert_eq!(
            SavedPlan::parse("x", "not json", None),
            Err(SavedPlanError::NotAPlan("x".to_string()))
        );
        let mut value = serde_json::to_value(saved(&empty_observed())).unwrap();
        value["format_version"] = 99.into();
        assert_eq!(
            SavedPlan::parse("x", &value.to_string(), None),
            Err(SavedPlanError::Version {
                name: "x".to_string(),
                found: 99
            })
        );
        // a malformed step is a clear error, not a panic later
        let mut value = serde_json::to_value(saved(&empty_observed())).unwrap();
        value["plan"]["changes"][0]["steps"][5]["record"] = serde_json::Value::Null;
        let error = SavedPlan::parse("x", &value.to_string(), None).unwrap_err();
        assert!(matches!(error, SavedPlanError::Invalid { .. }), "{error}");
    }
}
