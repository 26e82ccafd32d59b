//! Saved plans: `plan --out FILE` writes one, `apply FILE` applies exactly it, `show FILE`
//! renders it.
//!
//! A saved plan carries two fingerprints: one of the tenant files it was made from and one of
//! the live state it was made against. `apply FILE` recomputes both under the apply lock and
//! refuses on any difference, and records the plan's id so the same plan never applies twice,
//! even against a state that happens to look the same again (a plan made against an empty
//! database, say). Pure: reading and writing the file is the command's job.

use crate::observed::ObservedState;
use crate::plan::Plan;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Marks a file as a tenantctl saved plan.
pub const KIND: &str = "tenantctl-saved-plan";
/// Version of the saved-plan format.
pub const FORMAT_VERSION: u32 = 1;

/// Everything `apply FILE` needs, and nothing secret: URLs are stored with passwords removed
/// and tokens are never part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// The planning options in force, so `apply FILE` uses the same ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedOptions {
    pub role_prefix: String,
    pub retention_days: Option<u32>,
    pub prune: bool,
    pub max_deletes: Option<usize>,
    /// `--tenant` filter; empty for all.
    pub tenants: BTreeSet<String>,
    pub backup_dir: String,
}

/// Why a saved plan cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleReason {
    #[error("`{0}` is not a tenantctl saved plan")]
    NotAPlan(String),
    #[error(
        "the saved plan has format version {found}; this tenantctl reads version {FORMAT_VERSION}"
    )]
    Version { found: u32 },
    #[error("the tenant files changed since the plan was made")]
    DesiredChanged,
    #[error("the live state changed since the plan was made (another apply ran, or someone changed the database or Chroma)")]
    LiveChanged,
    #[error("this plan was already applied (at {0})")]
    AlreadyApplied(String),
}

/// Fingerprint of the live state: a hash of everything observed except the server clock.
/// Maps are ordered, so equal states give equal fingerprints.
pub fn live_fingerprint(observed: &ObservedState) -> String {
    #[derive(Serialize)]
    struct View<'a> {
        control_schema_version: Option<i32>,
        registry: &'a std::collections::BTreeMap<String, crate::observed::RegistryRow>,
        schemas: &'a std::collections::BTreeMap<String, crate::observed::ObservedSchema>,
        roles: &'a std::collections::BTreeMap<String, crate::observed::ObservedRole>,
        collections: &'a std::collections::BTreeMap<String, crate::observed::ObservedCollection>,
    }
    let view = View {
        control_schema_version: observed.control_schema_version,
        registry: &observed.registry,
        schemas: &observed.schemas,
        roles: &observed.roles,
        collections: &observed.collections,
    };
    let bytes = serde_json::to_vec(&view).expect("observed state serializes");
    hex::encode(Sha256::digest(&bytes))
}

impl SavedPlan {
    /// Parses a saved plan file.
    ///
    /// # Errors
    /// Not JSON, not a saved plan, or another format version.
    pub fn parse(name: &str, text: &str) -> Result<SavedPlan, StaleReason> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| StaleReason::NotAPlan(name.to_string()))?;
        if value.get("kind").and_then(|kind| kind.as_str()) != Some(KIND) {
            return Err(StaleReason::NotAPlan(name.to_string()));
        }
        let found = value
            .get("format_version")
            .and_then(|version| version.as_u64())
            .unwrap_or(0) as u32;
        if found != FORMAT_VERSION {
            return Err(StaleReason::Version { found });
        }
        serde_json::from_value(value).map_err(|_| StaleReason::NotAPlan(name.to_string()))
    }

    /// Checks the saved plan against the files and live state of now.
    ///
    /// # Errors
    /// The first difference found.
    pub fn check_fresh(
        &self,
        desired_fingerprint: &str,
        observed: &ObservedState,
    ) -> Result<(), StaleReason> {
        if self.desired_fingerprint != desired_fingerprint {
            return Err(StaleReason::DesiredChanged);
        }
        if self.live_fingerprint != live_fingerprint(observed) {
            return Err(StaleReason::LiveChanged);
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
    use crate::plan::{diff, PlanOptions};
    use crate::test_support::*;

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
            options: SavedOptions {
                role_prefix: "tenant_".to_string(),
                retention_days: None,
                prune: false,
                max_deletes: Some(10),
                tenants: BTreeSet::new(),
                backup_dir: "backups".to_string(),
            },
            plan: diff(&desired, observed, &PlanOptions::default()),
        }
    }

    #[test]
    fn round_trips_through_json() {
        let observed = empty_observed();
        let plan = saved(&observed);
        let parsed = SavedPlan::parse("p.json", &plan.to_json()).unwrap();
        assert_eq!(parsed, plan);
    }

    #[test]
    fn fresh_only_while_files_and_live_state_are_unchanged() {
        let mut observed = empty_observed();
        let plan = saved(&observed);
        assert_eq!(plan.check_fresh("files-1", &observed), Ok(()));
        assert_eq!(
            plan.check_fresh("files-2", &observed),
            Err(StaleReason::DesiredChanged)
        );
        // the server clock moving is not a change
        observed.server_time += chrono::Duration::hours(1);
        assert_eq!(plan.check_fresh("files-1", &observed), Ok(()));
        // a tenant appearing is
        provision(
            &mut observed,
            &tenant("acme"),
            crate::observed::LiveStatus::Active,
            1,
        );
        assert_eq!(
            plan.check_fresh("files-1", &observed),
            Err(StaleReason::LiveChanged)
        );
    }

    #[test]
    fn other_files_are_not_plans() {
        assert_eq!(
            SavedPlan::parse("x", "{\"kind\": \"something\"}"),
            Err(StaleReason::NotAPlan("x".to_string()))
        );
        assert_eq!(
            SavedPlan::parse("x", "not json"),
            Err(StaleReason::NotAPlan("x".to_string()))
        );
        let mut value = serde_json::to_value(saved(&empty_observed())).unwrap();
        value["format_version"] = 99.into();
        assert_eq!(
            SavedPlan::parse("x", &value.to_string()),
            Err(StaleReason::Version { found: 99 })
        );
    }
}
