//! Planning the tenant-schema migrations: the rules the whole fleet's history must keep, which
//! migrations each tenant runs (or is adopted as having run), and the grants on what they make.

use super::{PendingMigration, Refusal, Step};
use crate::observed::{MigrationHistory, ObjectKind, Reference, SchemaShape};
use crate::spec::migrations::{Migration, Migrations};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The rules on the fleet's history, each a refusal of the whole run naming the file and the
/// number of tenants concerned: an applied migration whose file changed or is gone, and a new
/// migration numbered below one already applied.
pub fn fleet_refusals(migrations: &Migrations, history: Option<&MigrationHistory>) -> Vec<Refusal> {
    let Some(history) = history else {
        return Vec::new();
    };
    let mut refusals = Vec::new();
    for (version, applied) in &history.applied {
        let tenants: u64 = applied.iter().map(|applied| applied.tenants).sum();
        let name = applied.first().map(|a| a.name.as_str()).unwrap_or_default();
        match migrations.get(*version) {
            None => refusals.push(Refusal {
                tenant: None,
                message: format!(
                    "migration `{name}` was applied to {} but its file is gone",
                    tenant_count(tenants)
                ),
                hint: Some(
                    "applied migrations are never removed: restore the file, and undo what it did with a new migration".to_string(),
                ),
            }),
            Some(file) => {
                let changed: u64 = applied
                    .iter()
                    .filter(|applied| applied.checksum != file.checksum)
                    .map(|applied| applied.tenants)
                    .sum();
                if changed > 0 {
                    refusals.push(Refusal {
                        tenant: None,
                        message: format!(
                            "`{}` was changed after it was applied to {}",
                            file.file,
                            tenant_count(changed)
                        ),
                        hint: Some(
                            "applied migrations are immutable: restore the file as it was applied, and put the change in a new migration".to_string(),
                        ),
                    });
                }
            }
        }
    }
    if let Some((&latest, applied)) = history.applied.iter().next_back() {
        let tenants: u64 = applied.iter().map(|applied| applied.tenants).sum();
        let latest_name = applied.first().map(|a| a.name.as_str()).unwrap_or_default();
        for migration in &migrations.list {
            if migration.version < latest && !history.applied.contains_key(&migration.version) {
                refusals.push(Refusal {
                    tenant: None,
                    message: format!(
                        "`{}` is new but numbered below `{latest_name}`, already applied to {}",
                        migration.file,
                        tenant_count(tenants)
                    ),
                    hint: Some(format!(
                        "number new migrations above {latest}: migrations run in order, and tenants past {latest} would never run this one"
                    )),
                });
            }
        }
    }
    refusals
}

fn tenant_count(tenants: u64) -> String {
    format!("{tenants} tenant{}", if tenants == 1 { "" } else { "s" })
}

/// What one existing tenant's schema needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TenantMigrations {
    /// To run, in order.
    pub run: Vec<u32>,
    /// To record as applied without running (adoption of a tenant made before migrations).
    pub adopt: Vec<u32>,
    /// Why tenantctl must leave the schema alone: it differs from what the migrations define.
    pub differs: Vec<String>,
}

/// The migrations of a tenant that has a registry row (`uid`) and the schema `live` (`None`
/// when it is missing and will be created anew).
pub(super) fn for_tenant(
    migrations: &Migrations,
    history: Option<&MigrationHistory>,
    reference: Option<&Reference>,
    uid: Uuid,
    live: Option<&SchemaShape>,
) -> TenantMigrations {
    let all: Vec<u32> = migrations.list.iter().map(|m| m.version).collect();
    let Some(live) = live else {
        // A schema created anew runs every migration.
        return TenantMigrations {
            run: all,
            ..TenantMigrations::default()
        };
    };
    let applied: BTreeSet<u32> = history
        .and_then(|history| history.by_tenant.get(&uid))
        .cloned()
        .unwrap_or_default();
    if applied.is_empty() {
        // Made by a release without migration history: adopted as having the first migration
        // applied when its schema is exactly what that migration makes, data untouched.
        let Some(reference) = reference else {
            return TenantMigrations::default();
        };
        let differs = live.differences(&reference.first);
        if !differs.is_empty() {
            let first = migrations
                .list
                .first()
                .map(|m| m.name.as_str())
                .unwrap_or("");
            return TenantMigrations {
                differs: std::iter::once(format!(
                    "the schema has no migration history and is not what `{first}` makes"
                ))
                .chain(differs)
                .collect(),
                ..TenantMigrations::default()
            };
        }
        return TenantMigrations {
            adopt: all.first().copied().into_iter().collect(),
            run: all.iter().skip(1).copied().collect(),
            ..TenantMigrations::default()
        };
    }
    let run: Vec<u32> = all
        .iter()
        .copied()
        .filter(|version| !applied.contains(version))
        .collect();
    let mut differs = Vec::new();
    if run.is_empty() {
        if let Some(reference) = reference {
            differs = live.differences(&reference.full);
        }
    }
    TenantMigrations {
        run,
        adopt: Vec::new(),
        differs,
    }
}

/// The migrations named by versions, as a change lists them.
pub(super) fn pending(
    migrations: &Migrations,
    versions: &[u32],
    adopted: bool,
) -> Vec<PendingMigration> {
    versions
        .iter()
        .filter_map(|version| migrations.get(*version))
        .map(|migration: &Migration| PendingMigration {
            version: migration.version,
            name: migration.name.clone(),
            checksum: migration.checksum.clone(),
            adopted,
            online: !adopted && migration.online(),
        })
        .collect()
}

/// Explicit grants to the tenant's role on every table, view and sequence the migrations make,
/// and on their functions; PUBLIC gets nothing. Explicit, not `ON ALL TABLES IN SCHEMA`, which
/// scans every relation of the database (see POSTGRES.md).
pub(super) fn grant_steps(shape: &SchemaShape, schema: &str, role: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = shape
        .tables
        .keys()
        .map(|table| Step::GrantTablePrivileges {
            schema: schema.to_string(),
            table: table.clone(),
            role: role.to_string(),
        })
        .collect();
    for (name, definition) in &shape.views {
        let kind = if definition.starts_with("materialized view") {
            ObjectKind::MaterializedView
        } else {
            ObjectKind::View
        };
        steps.push(Step::GrantObjectPrivileges {
            schema: schema.to_string(),
            name: name.clone(),
            object_kind: kind,
            role: role.to_string(),
        });
    }
    for name in &shape.sequences {
        steps.push(Step::GrantObjectPrivileges {
            schema: schema.to_string(),
            name: name.clone(),
            object_kind: ObjectKind::Sequence,
            role: role.to_string(),
        });
    }
    if !shape.functions.is_empty() {
        steps.push(Step::GrantFunctions {
            schema: schema.to_string(),
            role: role.to_string(),
        });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::AppliedMigration;
    use crate::spec::migrations::Migration;
    use std::collections::BTreeMap;

    fn migration(version: u32, name: &str, sql: &str) -> Migration {
        let mut migration = Migrations::builtin().list.remove(0);
        migration.version = version;
        migration.name = name.to_string();
        migration.file = format!("tenants/migrations/{name}.sql");
        migration.sql = sql.to_string();
        migration.checksum = format!("sum-of-{sql}");
        migration.builtin = false;
        migration
    }

    fn history(applied: &[(u32, &str, &str, u64)]) -> MigrationHistory {
        let mut history = MigrationHistory::default();
        for (version, name, checksum, tenants) in applied {
            history
                .applied
                .entry(*version)
                .or_default()
                .push(AppliedMigration {
                    name: name.to_string(),
                    checksum: checksum.to_string(),
                    tenants: *tenants,
                });
        }
        history
    }

    #[test]
    fn the_fleet_history_refuses_edits_removals_and_disorder() {
        let files = Migrations {
            list: vec![
                migration(1, "0001_a", "a"),
                migration(2, "0002_b", "b-edited"),
                migration(3, "0003_late", "late"),
            ],
        };
        let history = history(&[
            (1, "0001_a", "sum-of-a", 10),
            (2, "0002_b", "sum-of-b", 10),
            (4, "0004_gone", "sum-of-gone", 7),
        ]);
        let messages: Vec<String> = fleet_refusals(&files, Some(&history))
            .into_iter()
            .map(|refusal| refusal.message)
            .collect();
        assert_eq!(
            messages,
            vec![
                "`tenants/migrations/0002_b.sql` was changed after it was applied to 10 tenants",
                "migration `0004_gone` was applied to 7 tenants but its file is gone",
                "`tenants/migrations/0003_late.sql` is new but numbered below `0004_gone`, already applied to 7 tenants",
            ]
        );
        assert!(fleet_refusals(&files, None).is_empty());
    }

    #[test]
    fn a_tenant_runs_what_it_has_not_applied_and_is_compared_when_up_to_date() {
        let files = Migrations {
            list: vec![migration(1, "0001_a", "a"), migration(2, "0002_b", "b")],
        };
        let uid = Uuid::from_u128(1);
        let mut table = BTreeMap::new();
        table.insert("id".to_string(), "uuid NOT NULL".to_string());
        let first = SchemaShape {
            tables: BTreeMap::from([("a".to_string(), table.clone())]),
            ..SchemaShape::default()
        };
        let mut full = first.clone();
        full.tables.insert("b".to_string(), table);
        let reference = Reference {
            first: first.clone(),
            full: full.clone(),
            at: Default::default(),
        };
        let mut history = history(&[]);
        // Made before migrations, schema as the first migration makes it: adopted, then the
        // rest runs.
        let plan = for_tenant(&files, Some(&history), Some(&reference), uid, Some(&first));
        assert_eq!((plan.adopt, plan.run), (vec![1], vec![2]));
        // Made before migrations, schema changed by hand: left alone.
        let plan = for_tenant(&files, Some(&history), Some(&reference), uid, Some(&full));
        assert_eq!(plan.differs[1], "table `b` is not in the migrations");
        // Partly migrated.
        history.by_tenant.insert(uid, BTreeSet::from([1]));
        let plan = for_tenant(&files, Some(&history), Some(&reference), uid, Some(&first));
        assert_eq!(plan.run, vec![2]);
        // Up to date but different from the reference: every difference named.
        history.by_tenant.insert(uid, BTreeSet::from([1, 2]));
        let plan = for_tenant(&files, Some(&history), Some(&reference), uid, Some(&first));
        assert!(plan.run.is_empty());
        assert_eq!(plan.differs, vec!["table `b` is missing"]);
        // A schema dropped by hand: every migration runs again.
        let plan = for_tenant(&files, Some(&history), Some(&reference), uid, None);
        assert_eq!(plan.run, vec![1, 2]);
    }
}
