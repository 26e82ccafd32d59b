//! Builders of desired and observed states shared by the planner and renderer tests.

use crate::observed::{
    LiveStatus, ObservedCollection, ObservedColumn, ObservedRole, ObservedSchema, ObservedState,
    ObservedTable, RegistryRow,
};
use crate::plan::{collection_metadata, MANAGED_COMMENT};
use crate::spec::{DesiredState, DesiredStatus, EffectiveConfig, Location, Settings, TenantSpec};
use chrono::{TimeZone, Utc};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

pub fn config() -> EffectiveConfig {
    EffectiveConfig {
        model: "gpt-4o".into(),
        max_tokens: 4000,
        rate_limit_per_minute: 600,
        features: BTreeMap::from([("basic_chat".into(), true), ("rag".into(), true)]),
    }
}

pub fn tenant(id: &str) -> TenantSpec {
    TenantSpec {
        id: id.into(),
        name: format!("{id} inc"),
        state: DesiredStatus::Active,
        plan: "pro".into(),
        config: config(),
        suspension_reason: None,
        retention_days: None,
        protected: false,
        location: Location {
            file: format!("tenants/{id}.yaml").into(),
            line: 1,
            column: 1,
        },
    }
}

pub fn desired(tenants: Vec<TenantSpec>) -> DesiredState {
    DesiredState {
        dir: "tenants".into(),
        tenants: tenants.into_iter().map(|t| (t.id.clone(), t)).collect(),
        plans: BTreeMap::new(),
        settings: Settings::default(),
        fingerprint: String::new(),
    }
}

pub fn uid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn empty_observed() -> ObservedState {
    ObservedState {
        server_time: Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap(),
        control_schema_version: Some(crate::plan::CONTROL_SCHEMA_VERSION),
        ..ObservedState::default()
    }
}

pub fn privileges(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs
        .iter()
        .map(|(grantee, privileges)| {
            (
                grantee.to_string(),
                privileges.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect()
}

/// Adds a fully provisioned tenant to the observed state, exactly as apply leaves it.
pub fn provision(observed: &mut ObservedState, spec: &TenantSpec, status: LiveStatus, n: u128) {
    let id = &spec.id;
    let schema = format!("tenant_{id}");
    observed.registry.insert(
        id.clone(),
        RegistryRow {
            id: id.clone(),
            uid: uid(n),
            name: spec.name.clone(),
            status,
            plan: spec.plan.clone(),
            config: serde_json::to_value(&spec.config).unwrap(),
            protected: spec.protected,
            retention_days: Some(30),
            suspend_reason: spec.suspension_reason.clone(),
            created_at: observed.server_time,
            updated_at: observed.server_time,
            suspended_at: None,
            deleted_at: None,
            purge_after: None,
        },
    );
    let column = |data_type: &str, default: Option<&str>, primary_key| ObservedColumn {
        data_type: data_type.into(),
        not_null: true,
        default: default.map(str::to_string),
        primary_key,
    };
    let usage: &[&str] = if status == LiveStatus::Active {
        &["USAGE"]
    } else {
        &[]
    };
    let mut schema_privileges = privileges(&[("postgres", &["USAGE", "CREATE"])]);
    if !usage.is_empty() {
        schema_privileges.extend(privileges(&[(schema.as_str(), usage)]));
    }
    observed.schemas.insert(
        schema.clone(),
        ObservedSchema {
            owner: "postgres".into(),
            comment: MANAGED_COMMENT.into(),
            privileges: schema_privileges,
            tables: BTreeMap::from([(
                "conversations".to_string(),
                ObservedTable {
                    columns: BTreeMap::from([
                        ("id".to_string(), column("uuid", None, true)),
                        (
                            "created_at".to_string(),
                            column("timestamp with time zone", Some("now()"), false),
                        ),
                        (
                            "messages".to_string(),
                            column("jsonb", Some("'[]'::jsonb"), false),
                        ),
                    ]),
                    privileges: privileges(&[
                        ("postgres", &["SELECT", "INSERT", "UPDATE", "DELETE"]),
                        (schema.as_str(), &["SELECT", "INSERT", "UPDATE", "DELETE"]),
                    ]),
                },
            )]),
        },
    );
    observed.roles.insert(
        schema.clone(),
        ObservedRole {
            can_login: false,
            comment: MANAGED_COMMENT.into(),
        },
    );
    observed.collections.insert(
        schema,
        ObservedCollection {
            id: format!("c-{n}"),
            metadata: collection_metadata(id, uid(n)),
        },
    );
}
