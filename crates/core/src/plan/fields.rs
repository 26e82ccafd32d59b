//! The registry fields a plan compares and shows as `old -> new`.

use super::{FieldChange, RegistryRecord};
use crate::observed::{LiveStatus, RegistryRow};
use serde_json::Value;
use std::collections::BTreeMap;

/// The registry fields a plan compares, as dotted paths to JSON values in display order. Both
/// sides of a comparison (the desired record, the live row) go through here, so they cannot
/// drift apart.
struct RecordFields<'a> {
    name: &'a str,
    plan: &'a str,
    config: Value,
    protected: bool,
    retention_days: Option<i64>,
    status: LiveStatus,
    suspension_reason: Option<&'a str>,
}

impl RecordFields<'_> {
    fn paths(&self) -> Vec<(String, Value)> {
        let mut fields = vec![
            ("name".to_string(), Value::from(self.name)),
            ("plan".to_string(), Value::from(self.plan)),
        ];
        flatten("config", &self.config, &mut fields);
        fields.push(("protected".to_string(), Value::from(self.protected)));
        if let Some(days) = self.retention_days {
            fields.push(("retention_days".to_string(), Value::from(days)));
        }
        fields.push(("status".to_string(), Value::from(self.status.as_str())));
        if let Some(reason) = self.suspension_reason {
            fields.push(("suspension.reason".to_string(), Value::from(reason)));
        }
        fields
    }
}

pub(super) fn record_fields(record: &RegistryRecord) -> Vec<(String, Value)> {
    RecordFields {
        name: &record.name,
        plan: &record.plan,
        config: serde_json::to_value(&record.config).expect("config serializes"),
        protected: record.protected,
        retention_days: Some(i64::from(record.retention_days)),
        status: record.status,
        suspension_reason: record.suspension_reason.as_deref(),
    }
    .paths()
}

pub(super) fn row_fields(row: &RegistryRow) -> Vec<(String, Value)> {
    RecordFields {
        name: &row.name,
        plan: &row.plan,
        // Text that is not JSON (a row edited by hand) compares as a string, unequal to any
        // config.
        config: serde_json::from_str(&row.config)
            .unwrap_or_else(|_| Value::from(row.config.as_str())),
        protected: row.protected,
        retention_days: row.retention_days.map(i64::from),
        status: row.status,
        suspension_reason: row.suspend_reason.as_deref(),
    }
    .paths()
}

/// True when the value a create gives `path` repeats a default rather than something the tenant
/// file chose: `protected: false`, `status: active`, the default retention (no
/// `retention_days` in the file), or the billing plan's own configuration.
pub(super) fn inherited(
    path: &str,
    value: &Value,
    spec: &crate::spec::TenantSpec,
    plan_defaults: Option<&crate::spec::PartialConfig>,
) -> bool {
    let from_plan = |default: Option<Value>| default.is_some_and(|default| &default == value);
    match path {
        "protected" => value == &Value::Bool(false),
        "status" => value == &Value::from(LiveStatus::Active.as_str()),
        "retention_days" => spec.retention_days.is_none(),
        "config.model" => from_plan(plan_defaults.and_then(|d| d.model.clone()).map(Value::from)),
        "config.max_tokens" => from_plan(plan_defaults.and_then(|d| d.max_tokens).map(Value::from)),
        "config.rate_limit_per_minute" => from_plan(
            plan_defaults
                .and_then(|d| d.rate_limit_per_minute)
                .map(Value::from),
        ),
        _ => path.strip_prefix("config.features.").is_some_and(|flag| {
            from_plan(plan_defaults.and_then(|d| d.features.get(flag).copied().map(Value::from)))
        }),
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                flatten(&format!("{prefix}.{key}"), value, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Per-field differences between the registry row and the desired record, in display order.
pub(super) fn diff_fields(row: &RegistryRow, record: &RegistryRecord) -> Vec<FieldChange> {
    let old: BTreeMap<String, Value> = row_fields(row).into_iter().collect();
    let new = record_fields(record);
    // Keys present only in the old row (a feature flag removed from the plan) go right after
    // the last desired key of their group, so `config.features.*` lines stay together.
    let mut order: Vec<String> = new.iter().map(|(path, _)| path.clone()).collect();
    for path in old.keys() {
        if order.contains(path) {
            continue;
        }
        let group = path.rsplit_once('.').map(|(group, _)| format!("{group}."));
        let position = group
            .and_then(|group| order.iter().rposition(|other| other.starts_with(&group)))
            .map(|index| index + 1)
            .unwrap_or(order.len());
        order.insert(position, path.clone());
    }
    let new: BTreeMap<String, Value> = new.into_iter().collect();
    order
        .into_iter()
        .filter_map(|path| {
            let before = old.get(&path);
            let after = new.get(&path);
            (before != after).then(|| FieldChange {
                path,
                old: before.cloned(),
                new: after.cloned(),
                inherited: false,
            })
        })
        .collect()
}
