//! Builders of desired and observed states shared by the planner and renderer tests.

use crate::observed::{
    LiveStatus, ObservedCollection, ObservedColumn, ObservedRole, ObservedSchema, ObservedState,
    ObservedTable, Privileges, RegistryRow, SmallMap, PUBLIC,
};
use crate::plan::{collection_metadata, diff, DataAtRisk, Plan, PlanOptions, MANAGED_COMMENT};
use crate::render::PlanContext;
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
        canary: false,
        auth: None,
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
        migrations: crate::spec::migrations::Migrations::builtin(),
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
        history: Some(crate::observed::MigrationHistory::default()),
        reference: Some(crate::observed::Reference {
            first: conversations_shape(),
            full: conversations_shape(),
            at: Default::default(),
        }),
        ..ObservedState::default()
    }
}

/// What the built-in `0001_conversations.sql` makes, as PostgreSQL describes it.
pub fn conversations_shape() -> crate::observed::SchemaShape {
    crate::observed::SchemaShape {
        tables: BTreeMap::from([(
            "conversations".to_string(),
            BTreeMap::from([
                ("id".to_string(), "uuid NOT NULL".to_string()),
                (
                    "created_at".to_string(),
                    "timestamp with time zone NOT NULL DEFAULT now()".to_string(),
                ),
                (
                    "messages".to_string(),
                    "jsonb NOT NULL DEFAULT '[]'::jsonb".to_string(),
                ),
            ]),
        )]),
        indexes: BTreeMap::from([(
            "conversations_pkey".to_string(),
            "the index of constraint `conversations_pkey`".to_string(),
        )]),
        constraints: BTreeMap::from([(
            "conversations.conversations_pkey".to_string(),
            "PRIMARY KEY (id)".to_string(),
        )]),
        ..crate::observed::SchemaShape::default()
    }
}

pub fn privileges(pairs: &[(&str, &[&str])]) -> SmallMap<String, Privileges> {
    pairs
        .iter()
        .map(|(grantee, privileges)| (grantee.to_string(), privileges.iter().collect()))
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
            config: serde_json::to_string(&spec.config).unwrap(),
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
            tables: SmallMap::from_iter([(
                "conversations".to_string(),
                ObservedTable {
                    columns: SmallMap::from_iter([
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
                    owner: "postgres".into(),
                },
            )]),
            objects: SmallMap::new(),
            shape: std::sync::Arc::new(conversations_shape()),
        },
    );
    // Migrated to the built-in `0001_conversations.sql`, as apply leaves a new tenant.
    if let Some(history) = observed.history.as_mut() {
        history.by_tenant.insert(uid(n), BTreeSet::from([1]));
        let applied = history.applied.entry(1).or_default();
        match applied.first_mut() {
            Some(first) => first.tenants += 1,
            None => applied.push(crate::observed::AppliedMigration {
                name: "0001_conversations".to_string(),
                checksum: crate::spec::migrations::Migrations::builtin().list[0]
                    .checksum
                    .clone(),
                tenants: 1,
            }),
        }
    }
    observed.roles.insert(
        schema.clone(),
        ObservedRole {
            can_login: false,
            comment: MANAGED_COMMENT.into(),
            connection_limit: -1,
            ..ObservedRole::default()
        },
    );
    observed.collections.insert(
        schema,
        ObservedCollection {
            id: format!("c-{n}"),
            metadata: collection_metadata(id, uid(n)).into_iter().collect(),
            records: None,
        },
    );
}

/// Marks a provisioned tenant soft-deleted 30 days ago, its purge due in `purge_in_days`
/// (negative: overdue), with its role's access revoked as a soft delete leaves it.
pub fn mark_deleted(observed: &mut ObservedState, id: &str, purge_in_days: i64) {
    let now = observed.server_time;
    let row = observed.registry.get_mut(id).unwrap();
    row.status = LiveStatus::Deleted;
    row.deleted_at = Some(now - chrono::Duration::days(30));
    row.purge_after = Some(now + chrono::Duration::days(purge_in_days));
    observed
        .schemas
        .get_mut(&format!("tenant_{id}"))
        .unwrap()
        .privileges
        .remove(&format!("tenant_{id}"));
}

/// `(tenant, actions)` of every change, for asserting what a plan does at a glance.
pub fn actions_by_tenant(plan: &Plan) -> Vec<(&str, &[crate::plan::Action])> {
    plan.changes
        .iter()
        .map(|change| (change.tenant.as_str(), change.actions.as_slice()))
        .collect()
}

// Plans shared by the renderer tests: the real planner on hand-built states.

pub fn plan_context() -> PlanContext {
    PlanContext {
        dir: "tenants".into(),
        database: "postgres://tenantctl@db.internal:5432/app".into(),
        chroma: "http://chroma.internal:8000 (default_tenant/default_database)".into(),
    }
}

/// Every kind of routine change, plus one conflict and one unchanged tenant.
pub fn mixed_plan() -> Plan {
    let mut observed = empty_observed();

    // Update: plan, max_tokens, a feature added and one removed.
    let globex_live = tenant("globex");
    provision(&mut observed, &globex_live, LiveStatus::Active, 1);
    let mut globex = tenant("globex");
    globex.plan = "enterprise".into();
    globex.config.max_tokens = 8000;
    globex.config.features.remove("rag");
    globex.config.features.insert("tools".into(), true);

    // Repair: schema dropped by hand, collection deleted.
    let initech = tenant("initech");
    provision(&mut observed, &initech, LiveStatus::Active, 2);
    observed.schemas.remove("tenant_initech");
    observed.collections.remove("tenant_initech");

    // Repair: PUBLIC given access to the schema, role given LOGIN.
    let umbrella = tenant("umbrella");
    provision(&mut observed, &umbrella, LiveStatus::Active, 3);
    observed
        .schemas
        .get_mut("tenant_umbrella")
        .unwrap()
        .privileges
        .insert(PUBLIC.into(), ["USAGE"].into_iter().collect());
    observed.roles.get_mut("tenant_umbrella").unwrap().can_login = true;

    // Suspend with a reason.
    provision(&mut observed, &tenant("hooli"), LiveStatus::Active, 4);
    let mut hooli = tenant("hooli");
    hooli.state = DesiredStatus::Suspended;
    hooli.suspension_reason = Some("invoice overdue".into());

    // Resume a tenant suspended with a reason.
    let mut massive_live = tenant("massive");
    massive_live.state = DesiredStatus::Suspended;
    massive_live.suspension_reason = Some("abuse report #4411".into());
    provision(&mut observed, &massive_live, LiveStatus::Suspended, 5);
    let massive = tenant("massive");

    // Create.
    let acme = tenant("acme");

    // Conflict: a new tenant whose role exists and was not created by tenantctl.
    observed.roles.insert(
        "tenant_stark".into(),
        ObservedRole {
            can_login: true,
            comment: String::new(),
            ..ObservedRole::default()
        },
    );
    let stark = tenant("stark");

    // Unchanged.
    let wayne = tenant("wayne");
    provision(&mut observed, &wayne, LiveStatus::Active, 6);

    diff(
        &desired(vec![
            acme, globex, initech, umbrella, hooli, massive, stark, wayne,
        ]),
        &observed,
        &PlanOptions::default(),
    )
}

/// Soft delete, due purge (with measured data at risk), restore, a scheduled purge, orphans
/// (one pruned, one with no registry row) and a protected tenant refused.
pub fn lifecycle_plan() -> Plan {
    let mut observed = empty_observed();
    let mut specs = Vec::new();

    let hooli = tenant("hooli");
    provision(&mut observed, &hooli, LiveStatus::Active, 1);
    let mut hooli = hooli.clone();
    hooli.state = DesiredStatus::Deleted;
    specs.push(hooli);

    let piedpiper = tenant("piedpiper");
    provision(&mut observed, &piedpiper, LiveStatus::Active, 2);
    mark_deleted(&mut observed, "piedpiper", -1);
    let mut piedpiper = piedpiper.clone();
    piedpiper.state = DesiredStatus::Deleted;
    specs.push(piedpiper);

    let aviato = tenant("aviato");
    provision(&mut observed, &aviato, LiveStatus::Active, 3);
    mark_deleted(&mut observed, "aviato", 12);
    specs.push(aviato); // restored

    let raviga = tenant("raviga");
    provision(&mut observed, &raviga, LiveStatus::Active, 4);
    mark_deleted(&mut observed, "raviga", 5);
    let mut raviga = raviga.clone();
    raviga.state = DesiredStatus::Deleted;
    specs.push(raviga); // scheduled

    let mut umbrella = tenant("umbrella");
    umbrella.protected = true;
    provision(&mut observed, &umbrella, LiveStatus::Active, 5);
    umbrella.state = DesiredStatus::Deleted;
    specs.push(umbrella); // refused

    provision(&mut observed, &tenant("soylent"), LiveStatus::Active, 6); // pruned orphan
    provision(&mut observed, &tenant("ghost"), LiveStatus::Active, 7);
    observed.registry.remove("ghost"); // resources without registry row

    let mut plan = diff(
        &desired(specs),
        &observed,
        &PlanOptions {
            prune: true,
            max_deletes: Some(10),
            ..PlanOptions::default()
        },
    );
    for change in &mut plan.changes {
        match change.tenant.as_str() {
            "hooli" => {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(1204),
                    records: Some(3400),
                    ..DataAtRisk::default()
                })
            }
            "piedpiper" => {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(987_654),
                    records: Some(12),
                    backup_files: 3,
                    backup_bytes: 18_200_000,
                })
            }
            _ => {}
        }
    }
    plan
}

/// The suspension reason a billing system writes: Markdown, HTML, a table pipe, an issue
/// reference.
pub const AWKWARD_REASON: &str = "invoice #4411 overdue > 60 days | see <billing> ticket_*urgent*";

/// A large onboarding pull request that also changes existing customers: `creates` new tenants
/// (with the billing plan `pro` declared, so their blocks leave its defaults out), and one each
/// of purge (`hooli`, measured), soft delete (`initech`), suspension (`massive`, with
/// [`AWKWARD_REASON`]) and update (`globex`: plan and `max_tokens`).
pub fn onboarding_plan(creates: usize) -> Plan {
    let mut observed = empty_observed();
    let mut specs = Vec::new();
    for index in 1..=creates {
        let mut spec = tenant(&format!("customer_{index:04}"));
        if index % 7 == 0 {
            spec.config.model = "claude-sonnet".into();
            spec.config.max_tokens = 16_000;
        }
        specs.push(spec);
    }

    let hooli = tenant("hooli");
    provision(&mut observed, &hooli, LiveStatus::Active, 1);
    mark_deleted(&mut observed, "hooli", -1);
    let mut hooli = hooli.clone();
    hooli.state = DesiredStatus::Deleted;
    specs.push(hooli);

    let initech = tenant("initech");
    provision(&mut observed, &initech, LiveStatus::Active, 2);
    let mut initech = initech.clone();
    initech.state = DesiredStatus::Deleted;
    specs.push(initech);

    let massive = tenant("massive");
    provision(&mut observed, &massive, LiveStatus::Active, 3);
    let mut massive = massive.clone();
    massive.state = DesiredStatus::Suspended;
    massive.suspension_reason = Some(AWKWARD_REASON.into());
    specs.push(massive);

    let globex = tenant("globex");
    provision(&mut observed, &globex, LiveStatus::Active, 4);
    let mut globex = globex.clone();
    globex.plan = "enterprise".into();
    globex.config.max_tokens = 8000;
    specs.push(globex);

    let mut desired = desired(specs);
    desired.plans.insert(
        "pro".into(),
        crate::spec::PlanSpec {
            name: "pro".into(),
            description: None,
            config: crate::spec::PartialConfig {
                model: Some("gpt-4o".into()),
                max_tokens: Some(4000),
                rate_limit_per_minute: Some(600),
                features: BTreeMap::from([("basic_chat".into(), true), ("rag".into(), true)]),
            },
            auth: None,
            location: Location {
                file: "tenants/plans.yaml".into(),
                line: 1,
                column: 1,
            },
        },
    );
    let mut plan = diff(&desired, &observed, &PlanOptions::default());
    for change in &mut plan.changes {
        match change.tenant.as_str() {
            "hooli" => {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(57),
                    records: Some(1_204),
                    backup_files: 3,
                    backup_bytes: 18_200_000,
                })
            }
            "initech" => {
                change.at_risk = Some(DataAtRisk {
                    rows: Some(12_345),
                    ..DataAtRisk::default()
                })
            }
            _ => {}
        }
    }
    plan
}

pub fn no_change_plan() -> Plan {
    let mut observed = empty_observed();
    let acme = tenant("acme");
    let globex = tenant("globex");
    provision(&mut observed, &acme, LiveStatus::Active, 1);
    provision(&mut observed, &globex, LiveStatus::Active, 2);
    diff(
        &desired(vec![acme, globex]),
        &observed,
        &PlanOptions::default(),
    )
}

/// A migration read from `tenants/migrations/{name}.sql`.
pub fn migration(version: u32, name: &str, sql: &str) -> crate::spec::migrations::Migration {
    use sha2::{Digest, Sha256};
    crate::spec::migrations::Migration {
        version,
        name: name.to_string(),
        file: format!("tenants/migrations/{name}.sql"),
        checksum: hex::encode(Sha256::digest(sql.as_bytes())),
        builtin: false,
        sql: sql.to_string(),
    }
}

/// `0002_documents.sql` of the migration plans.
pub const DOCUMENTS_SQL: &str = "-- The documents each tenant's assistant answers from.
CREATE TABLE documents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title text NOT NULL,
    body text NOT NULL
);
CREATE INDEX documents_title ON documents (title);
";

/// `0003_summary.sql` of the migration plans.
pub const SUMMARY_SQL: &str = "ALTER TABLE documents ADD COLUMN summary text;\n";

/// `0004_summary_index.sql` of the migration plans: an index built online.
pub const SUMMARY_INDEX_SQL: &str = "-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY documents_summary ON documents (summary);\n";

/// `tenants` tenants (`tenant_0001`, ...) created at `0001_conversations`, the files now at
/// `0004_summary_index` (a no-transaction migration); and one new tenant, `zeta_new`, which runs
/// all four as part of its create.
pub fn migration_plan(tenants: usize) -> Plan {
    let mut observed = empty_observed();
    let mut specs = Vec::new();
    for index in 1..=tenants {
        let spec = tenant(&format!("tenant_{index:04}"));
        provision(&mut observed, &spec, LiveStatus::Active, index as u128);
        specs.push(spec);
    }
    specs.push(tenant("zeta_new"));
    let mut full = conversations_shape();
    full.tables.insert(
        "documents".to_string(),
        BTreeMap::from([
            (
                "id".to_string(),
                "uuid NOT NULL DEFAULT gen_random_uuid()".to_string(),
            ),
            ("title".to_string(), "text NOT NULL".to_string()),
            ("body".to_string(), "text NOT NULL".to_string()),
            ("summary".to_string(), "text".to_string()),
        ]),
    );
    observed.reference = Some(crate::observed::Reference {
        first: conversations_shape(),
        full,
        at: Default::default(),
    });
    let mut desired = desired(specs);
    desired
        .migrations
        .list
        .push(migration(2, "0002_documents", DOCUMENTS_SQL));
    desired
        .migrations
        .list
        .push(migration(3, "0003_summary", SUMMARY_SQL));
    desired
        .migrations
        .list
        .push(migration(4, "0004_summary_index", SUMMARY_INDEX_SQL));
    diff(&desired, &observed, &PlanOptions::default())
}

/// Existing tenants and a new one, and a migration that drops a column and empties a table:
/// `destructive_plan(Some(limit))` with `--max-destructive-migrations limit`. Rows at risk are
/// set as `measure_at_risk` would: 1,204 in `acme`, none in `globex`.
pub fn destructive_plan(limit: Option<usize>) -> Plan {
    let mut observed = empty_observed();
    let mut specs = Vec::new();
    for (index, id) in ["acme", "globex", "initech"].iter().enumerate() {
        let spec = tenant(id);
        provision(&mut observed, &spec, LiveStatus::Active, index as u128 + 1);
        specs.push(spec);
    }
    specs.push(tenant("zeta_new"));
    let mut full = conversations_shape();
    full.tables
        .get_mut("conversations")
        .unwrap()
        .remove("messages");
    observed.reference = Some(crate::observed::Reference {
        first: conversations_shape(),
        full,
        at: Default::default(),
    });
    let mut desired = desired(specs);
    desired.migrations.list.push(migration(
        2,
        "0002_forget_messages",
        "-- Messages move to the archive service.\nALTER TABLE conversations DROP COLUMN messages;\nDELETE FROM conversations;\n",
    ));
    let mut plan = diff(
        &desired,
        &observed,
        &PlanOptions {
            max_destructive_migrations: limit,
            ..PlanOptions::default()
        },
    );
    for change in &mut plan.changes {
        let rows = match change.tenant.as_str() {
            "acme" => 1_204,
            "globex" => 0,
            _ => continue,
        };
        change.at_risk = Some(DataAtRisk {
            rows: Some(rows),
            ..DataAtRisk::default()
        });
    }
    plan
}

/// Credentials: a new tenant with a login and keys, one whose `rotate` changed (a key past its
/// rotation grace, one removed from the file), and one suspended with sessions open.
pub fn credentials_plan() -> Plan {
    use crate::observed::{ObservedApiKey, ObservedCredentials};
    use crate::spec::{ApiKeySpec, AuthSpec};
    let key = |name: &str, expires: Option<&str>| ApiKeySpec {
        name: name.into(),
        expires: expires.map(|date| date.parse().unwrap()),
        location: Location {
            file: "tenants/x.yaml".into(),
            line: 1,
            column: 1,
        },
    };
    let mut observed = empty_observed();
    let now = observed.server_time;
    observed.role_passwords = Some(BTreeMap::new());

    let mut acme = tenant("acme");
    acme.auth = Some(AuthSpec {
        login: true,
        connection_limit: Some(10),
        api_keys: vec![key("web", None), key("batch", Some("2027-06-01"))],
        rotate: None,
    });

    let mut globex = tenant("globex");
    provision(&mut observed, &globex, LiveStatus::Active, 2);
    observed.roles.get_mut("tenant_globex").unwrap().can_login = true;
    observed.credentials.insert(
        uid(2),
        ObservedCredentials {
            rotation: Some("2026-06-01".into()),
            password_fingerprint: Some("f".into()),
        },
    );
    observed
        .role_passwords
        .as_mut()
        .unwrap()
        .insert("tenant_globex".into(), Some("f".into()));
    observed.api_keys.insert(
        uid(2),
        vec![
            ObservedApiKey {
                prefix: "tct_0123456789ab".into(),
                name: "web".into(),
                expires_at: None,
                retire_after: None,
            },
            ObservedApiKey {
                prefix: "tct_00000000beef".into(),
                name: "web".into(),
                expires_at: None,
                retire_after: Some(now - chrono::Duration::hours(2)),
            },
            ObservedApiKey {
                prefix: "tct_0000000000aa".into(),
                name: "legacy".into(),
                expires_at: None,
                retire_after: None,
            },
        ],
    );
    globex.auth = Some(AuthSpec {
        login: true,
        connection_limit: None,
        api_keys: vec![key("web", None)],
        rotate: Some("2026-12-01".into()),
    });

    let mut initech = tenant("initech");
    provision(&mut observed, &initech, LiveStatus::Active, 3);
    observed.roles.get_mut("tenant_initech").unwrap().can_login = true;
    observed.role_sessions.insert("tenant_initech".into(), 3);
    observed.credentials.insert(
        uid(3),
        ObservedCredentials {
            rotation: None,
            password_fingerprint: Some("g".into()),
        },
    );
    initech.auth = Some(AuthSpec {
        login: true,
        ..AuthSpec::default()
    });
    initech.state = DesiredStatus::Suspended;
    initech.suspension_reason = Some("invoice overdue".into());

    // The application role changes: the new one may call `authenticate`, the old one no more.
    observed.app_role_exists = Some(true);
    observed.authenticate_grantees.insert("old_app".into());
    let mut desired = desired(vec![acme, globex, initech]);
    desired.settings.auth.rotation_grace = std::time::Duration::from_secs(24 * 3600);
    desired.settings.auth.app_role = Some("app_api".into());
    diff(&desired, &observed, &PlanOptions::default())
}
