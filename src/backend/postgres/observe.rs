//! The PostgreSQL half of the live state, in a fixed number of queries whatever the number of
//! tenants, sent pipelined on one connection.
//!
//! Catalog queries are flat (one row per schema x object x grantee) and aggregated here:
//! aggregating in SQL with `aclexplode` fell into nested loops on stale catalog statistics.

use super::{query_error, Postgres, PostgresError};
use crate::observed::{
    AppliedMigration, ForeignGrant, LiveStatus, MigrationHistory, ObjectKind, ObservedColumn,
    ObservedObject, ObservedRole, ObservedSchema, ObservedState, RegistryRow, SmallMap,
};
use crate::plan::Naming;

/// Grantee of a privilege, with PUBLIC (oid 0) spelled out (a macro: `concat!` takes literals).
macro_rules! grantee {
    () => {
        "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END"
    };
}

/// Grants on each tenant schema, by grantee.
type SchemaGrants =
    std::collections::BTreeMap<String, SmallMap<String, crate::observed::Privileges>>;
/// One grantee's privileges on one relation, as read.
struct RelationGrant {
    name: String,
    kind: String,
    owner: String,
    grantee: String,
    privileges: crate::observed::Privileges,
}

/// Grants on relations: of tenant schemas, by schema; to tenant roles elsewhere.
#[derive(Default)]
struct RelationGrants {
    tenants: std::collections::BTreeMap<String, Vec<RelationGrant>>,
    foreign: Vec<(String, RelationGrant)>,
    unreadable: Option<String>,
}

/// The tables of each tenant schema.
type SchemaTables =
    std::collections::BTreeMap<String, SmallMap<String, crate::observed::ObservedTable>>;

impl Postgres {
    /// Reads the registry and every catalog fact the planner compares: tenant schemas (owner,
    /// comment, privileges), their tables and columns, every grant on an object in them, every
    /// grant to a tenant role elsewhere, their functions, tenant roles (attributes,
    /// memberships in both directions) and whatever those roles own.
    pub async fn observe(
        &self,
        naming: &Naming,
        app_role: Option<&str>,
    ) -> Result<ObservedState, PostgresError> {
        let client = &self.client;
        let schema_prefix = naming.schema_prefix.as_str();
        let role_prefix = naming.role_prefix.as_str();
        // The session that reads the shapes (below) opens while this one asks its first
        // question.
        let (version, reader) = tokio::join!(self.control_schema_version(), self.another());
        let version = version?;
        let registry_query = async {
            if version.is_none() {
                return Ok((std::collections::BTreeMap::new(), None));
            }
            super::fold(
                client,
                "SELECT id, uid, name, status, plan, config::text, protected, retention_days, suspend_reason, \
                        created_at, updated_at, suspended_at, deleted_at, purge_after \
                 FROM tenantctl.tenants",
                &[],
                "read the tenant registry",
                (std::collections::BTreeMap::new(), None),
                |(rows, unknown): &mut (std::collections::BTreeMap<String, RegistryRow>, Option<String>), row| {
                    let id: String = row.get(0);
                    let status: String = row.get(3);
                    let Some(status) = LiveStatus::parse(&status) else {
                        unknown.get_or_insert(format!(
                            "registry row `{id}` has unknown status `{status}`"
                        ));
                        return;
                    };
                    rows.insert(
                        id.clone(),
                        RegistryRow {
                            id,
                            uid: row.get(1),
                            name: row.get(2),
                            status,
                            plan: row.get(4),
                            config: row.get(5),
                            protected: row.get(6),
                            retention_days: row.get(7),
                            suspend_reason: row.get(8),
                            created_at: row.get(9),
                            updated_at: row.get(10),
                            suspended_at: row.get(11),
                            deleted_at: row.get(12),
                            purge_after: row.get(13),
                        },
                    );
                },
            )
            .await
        };
        let history_query = async {
            if version.unwrap_or(0) < 4 {
                return Ok(None);
            }
            // One query: each tenant's versions, then each version's name, checksum and
            // tenant count over the fleet.
            let rows = client
                .query(
                    "(SELECT tenant_uid, array_agg(version ORDER BY version), NULL::integer, \
                             NULL::text, NULL::text, NULL::bigint \
                      FROM tenantctl.tenant_migrations GROUP BY tenant_uid) \
                     UNION ALL \
                     (SELECT NULL::uuid, NULL::integer[], version, name, checksum, count(*) \
                      FROM tenantctl.tenant_migrations \
                      GROUP BY version, name, checksum ORDER BY version, name, checksum)",
                    &[],
                )
                .await
                .map_err(query_error("read the migration history"))?;
            let (per_tenant, fleet): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|row| row.get::<_, Option<uuid::Uuid>>(0).is_some());
            Ok(Some((per_tenant, fleet)))
        };
        // The shapes of the tenant schemas (indexes, constraints, views, described by the
        // server one by one) cost as much server time as everything else together: read on a
        // session of their own, the server works on both at once. Without a second session
        // (max_connections reached), they wait their turn on this one.
        let reader = reader.ok();
        let shapes_client = reader.as_ref().map_or(client, |reader| &reader.client);
        let shapes_query = super::shape::read(
            shapes_client,
            super::shape::Schemas::Prefix(schema_prefix),
            false,
        );
        let prefixes: &[&(dyn tokio_postgres::types::ToSql + Sync)] =
            &[&schema_prefix, &role_prefix];
        let credentials_query = super::credentials::observe(client, role_prefix, app_role, version);
        let (now, registry, schemas, schema_acl, columns, relation_acl, functions, roles, members, owned, shapes, history, credentials) = futures_util::try_join!(
            async {
                client
                    .query_one("SELECT now(), current_user::text", &[])
                    .await
                    .map_err(query_error("read the server clock"))
            },
            registry_query,
            super::mapped(
                client,
                "SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text, \
                        coalesce(obj_description(n.oid, 'pg_namespace'), '') \
                 FROM pg_namespace n WHERE starts_with(n.nspname::text, $1) AND $2::text IS NOT NULL",
                prefixes,
                "list tenant schemas",
                |row| (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)),
            ),
            // Grants on tenant schemas, and grants to tenant roles on any other schema.
            super::fold(
                client,
                concat!(
                    "SELECT n.nspname::text, ", grantee!(), ", a.privilege_type \
                     FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a \
                     WHERE starts_with(n.nspname::text, $1) \
                        OR (a.grantee <> 0 AND starts_with(pg_get_userbyid(a.grantee)::text, $2))"
                ),
                prefixes,
                "read schema privileges",
                (SchemaGrants::new(), Vec::new()),
                |(tenants, foreign), row| {
                    let schema: String = row.get(0);
                    let grantee: String = row.get(1);
                    let privilege: String = row.get(2);
                    if schema.starts_with(schema_prefix) {
                        tenants
                            .entry(schema)
                            .or_default()
                            .entry(grantee)
                            .or_default()
                            .insert(&privilege);
                    } else {
                        foreign.push((schema, grantee, privilege));
                    }
                },
            ),
            // A default holds no column (a generated column's expression does): described
            // without its table's context, it costs the server half as much.
            super::fold(
                client,
                "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                        format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                        CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, 0) \
                             ELSE pg_get_expr(d.adbin, d.adrelid) END, \
                        coalesce(a.attnum = ANY (i.indkey), false), \
                        pg_get_userbyid(c.relowner)::text \
                 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
                 LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
                 WHERE starts_with(n.nspname::text, $1) AND c.relkind IN ('r', 'p') AND $2::text IS NOT NULL",
                prefixes,
                "read tenant tables",
                SchemaTables::new(),
                |tables, row| {
                    let table = tables
                        .entry(row.get::<_, String>(0))
                        .or_default()
                        .entry(row.get::<_, String>(1))
                        .or_default();
                    table.owner = row.get(7);
                    table.columns.insert(
                        row.get(2),
                        ObservedColumn {
                            data_type: row.get(3),
                            not_null: row.get(4),
                            default: row.get(5),
                            primary_key: row.get(6),
                        },
                    );
                },
            ),
            // Grants on every relation of a tenant schema, and grants to tenant roles on
            // relations anywhere else in the database: one row per grantee, its privileges
            // read from the item's text (one row per privilege would be five times as many).
            super::fold(
                client,
                "SELECT n.nspname::text, c.relname::text, c.relkind::text, \
                        pg_get_userbyid(c.relowner)::text, a::text \
                 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 CROSS JOIN LATERAL unnest(c.relacl) a \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
                   AND (starts_with(n.nspname::text, $1) \
                        OR EXISTS (SELECT 1 FROM aclexplode(ARRAY[a]) e \
                                   WHERE e.grantee <> 0 \
                                     AND starts_with(pg_get_userbyid(e.grantee)::text, $2)))",
                prefixes,
                "read table privileges",
                RelationGrants::default(),
                |grants, row| {
                    let schema: String = row.get(0);
                    let (grantee, privileges) = match super::acl::parse_item(row.get(4)) {
                        Ok(parsed) => parsed,
                        Err(problem) => {
                            grants.unreadable.get_or_insert(problem);
                            return;
                        }
                    };
                    let grant = RelationGrant {
                        name: row.get(1),
                        kind: row.get(2),
                        owner: row.get(3),
                        grantee,
                        privileges: privileges.into_iter().collect(),
                    };
                    if schema.starts_with(schema_prefix) {
                        grants.tenants.entry(schema).or_default().push(grant);
                    } else {
                        grants.foreign.push((schema, grant));
                    }
                },
            ),
            // Functions of tenant schemas; a NULL ACL means the default, which lets PUBLIC
            // execute.
            super::mapped(
                client,
                concat!(
                    "SELECT n.nspname::text, p.oid::regprocedure::text, p.oid::bigint, \
                            pg_get_userbyid(p.proowner)::text, p.prosecdef, ", grantee!(), ", a.privilege_type \
                     FROM pg_proc p \
                     JOIN pg_namespace n ON n.oid = p.pronamespace \
                     LEFT JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a ON true \
                     WHERE starts_with(n.nspname::text, $1) AND $2::text IS NOT NULL"
                ),
                prefixes,
                "read tenant functions",
                |row| (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, i64>(2), row.get::<_, String>(3), row.get::<_, bool>(4), row.get::<_, Option<String>>(5), row.get::<_, Option<String>>(6)),
            ),
            super::fold(
                client,
                "SELECT r.rolname::text, r.rolcanlogin, \
                        coalesce(shobj_description(r.oid, 'pg_authid'), ''), \
                        r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls, \
                        r.rolconnlimit \
                 FROM pg_roles r WHERE starts_with(r.rolname::text, $2) AND $1::text IS NOT NULL",
                prefixes,
                "list tenant roles",
                std::collections::BTreeMap::new(),
                |roles: &mut std::collections::BTreeMap<String, ObservedRole>, row| {
                    roles.insert(
                        row.get(0),
                        ObservedRole {
                            can_login: row.get(1),
                            comment: row.get(2),
                            superuser: row.get(3),
                            create_role: row.get(4),
                            create_db: row.get(5),
                            replication: row.get(6),
                            bypass_rls: row.get(7),
                            connection_limit: row.get(8),
                            ..ObservedRole::default()
                        },
                    );
                },
            ),
            super::mapped(
                client,
                "SELECT g.rolname::text, m.rolname::text \
                 FROM pg_auth_members am \
                 JOIN pg_roles g ON g.oid = am.roleid \
                 JOIN pg_roles m ON m.oid = am.member \
                 WHERE (starts_with(g.rolname::text, $2) OR starts_with(m.rolname::text, $2)) \
                   AND $1::text IS NOT NULL",
                prefixes,
                "read role memberships",
                |row| (row.get::<_, String>(0), row.get::<_, String>(1)),
            ),
            // What tenant roles own in this database: they should own nothing.
            // Each part filtered by owner before it describes anything: describing every
            // function of the database first costs ten times more.
            super::mapped(
                client,
                "WITH tenant_roles AS ( \
                     SELECT oid, rolname FROM pg_roles \
                     WHERE starts_with(rolname::text, $2) AND $1::text IS NOT NULL) \
                 SELECT r.rolname::text, o.description FROM ( \
                     SELECT c.relowner AS owner, format('%s %s.%s', CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' WHEN 'c' THEN 'type' ELSE 'table' END, n.nspname, c.relname) AS description \
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                       WHERE c.relkind NOT IN ('t', 'i') AND c.relowner IN (SELECT oid FROM tenant_roles) \
                     UNION ALL \
                     SELECT p.proowner, format('function %s', p.oid::regprocedure) FROM pg_proc p \
                       WHERE p.proowner IN (SELECT oid FROM tenant_roles) \
                     UNION ALL \
                     SELECT n.nspowner, format('schema %s', n.nspname) FROM pg_namespace n \
                       WHERE n.nspowner IN (SELECT oid FROM tenant_roles) \
                 ) o JOIN tenant_roles r ON r.oid = o.owner",
                prefixes,
                "read what tenant roles own",
                |row| (row.get::<_, String>(0), row.get::<_, String>(1)),
            ),
            shapes_query,
            history_query,
            credentials_query,
        )?;

        let mut state = ObservedState {
            server_time: now.get(0),
            current_user: now.get(1),
            control_schema_version: version,
            credentials: credentials.credentials,
            api_keys: credentials.api_keys,
            role_passwords: credentials.role_passwords,
            role_sessions: credentials.role_sessions,
            authenticate_grantees: credentials.authenticate_grantees,
            app_role_exists: credentials.app_role_exists,
            ..ObservedState::default()
        };
        let (registry, unknown_status) = registry;
        if let Some(message) = unknown_status {
            return Err(PostgresError::Unexpected(message));
        }
        state.registry = registry;
        for (name, owner, comment) in schemas {
            state.schemas.insert(
                name,
                ObservedSchema {
                    owner,
                    comment,
                    ..ObservedSchema::default()
                },
            );
        }
        state.roles = roles;
        let (schema_grants, foreign_schema_grants) = schema_acl;
        for (schema, grants) in schema_grants {
            if let Some(entry) = state.schemas.get_mut(&schema) {
                entry.privileges = grants;
            }
        }
        for (schema, grantee, privilege) in foreign_schema_grants {
            if let Some(role) = state.roles.get_mut(&grantee) {
                role.foreign_grants.insert(ForeignGrant {
                    schema,
                    relation: None,
                    privilege,
                });
            }
        }
        for (schema, tables) in columns {
            if let Some(entry) = state.schemas.get_mut(&schema) {
                entry.tables = tables;
            }
        }
        if let Some(problem) = relation_acl.unreadable {
            return Err(PostgresError::Unexpected(problem));
        }
        for (schema, grant) in relation_acl.foreign {
            // A grant to a tenant role on something outside the tenant schemas.
            if let Some(role) = state.roles.get_mut(&grant.grantee) {
                for privilege in grant.privileges.iter() {
                    role.foreign_grants.insert(ForeignGrant {
                        schema: schema.clone(),
                        relation: Some((grant.name.clone(), ObjectKind::from_relkind(&grant.kind))),
                        privilege: privilege.to_string(),
                    });
                }
            }
        }
        for (schema, grants) in relation_acl.tenants {
            let Some(entry) = state.schemas.get_mut(&schema) else {
                continue;
            };
            for grant in grants {
                if matches!(grant.kind.as_str(), "r" | "p") {
                    if let Some(table) = entry.tables.get_mut(&grant.name) {
                        // One item per grantor: a grantee may have several.
                        table
                            .privileges
                            .entry(grant.grantee)
                            .or_default()
                            .extend(grant.privileges.iter());
                        continue;
                    }
                }
                let object = entry
                    .objects
                    .entry(grant.name)
                    .or_insert_with(|| ObservedObject {
                        kind: ObjectKind::from_relkind(&grant.kind),
                        owner: grant.owner,
                        ..ObservedObject::default()
                    });
                object
                    .privileges
                    .entry(grant.grantee)
                    .or_default()
                    .extend(grant.privileges.iter());
            }
        }
        for (schema, signature, oid, owner, security_definer, grantee, privilege) in functions {
            let Some(entry) = state.schemas.get_mut(&schema) else {
                continue;
            };
            let object = entry
                .objects
                .entry(signature)
                .or_insert_with(|| ObservedObject {
                    kind: ObjectKind::Function,
                    owner,
                    oid: u32::try_from(oid).ok(),
                    security_definer,
                    ..ObservedObject::default()
                });
            if let (Some(grantee), Some(privilege)) = (grantee, privilege) {
                object
                    .privileges
                    .entry(grantee)
                    .or_default()
                    .insert(&privilege);
            }
        }
        for (granted, member) in members {
            if let Some(role) = state.roles.get_mut(&member) {
                role.member_of.insert(granted.clone());
            }
            if let Some(role) = state.roles.get_mut(&granted) {
                role.members.insert(member);
            }
        }
        for (role, what) in owned {
            if let Some(entry) = state.roles.get_mut(&role) {
                entry.owns.insert(what);
            }
        }
        let mut shapes = shapes;
        let mut distinct: std::collections::HashSet<std::sync::Arc<crate::observed::SchemaShape>> =
            std::collections::HashSet::new();
        for (name, schema) in &mut state.schemas {
            schema.compact();
            // Built, completed and shared one schema at a time: only distinct shapes stay.
            let mut shape = super::shape::build(shapes.remove(name).unwrap_or_default());
            for (table, observed) in &schema.tables {
                shape.tables.insert(
                    table.clone(),
                    observed
                        .columns
                        .iter()
                        .map(|(column, definition)| {
                            (
                                column.clone(),
                                super::shape::unqualified(
                                    &super::shape::column_definition(definition),
                                    name,
                                ),
                            )
                        })
                        .collect(),
                );
            }
            schema.shape = match distinct.get(&shape) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = std::sync::Arc::new(shape);
                    distinct.insert(shared.clone());
                    shared
                }
            };
        }
        if let Some((per_tenant, fleet)) = history {
            let mut history = MigrationHistory::default();
            for row in per_tenant {
                let versions: Vec<i32> = row.get(1);
                history.by_tenant.insert(
                    row.get(0),
                    versions
                        .into_iter()
                        .filter_map(|version| u32::try_from(version).ok())
                        .collect(),
                );
            }
            for row in fleet {
                let Ok(version) = u32::try_from(row.get::<_, i32>(2)) else {
                    continue;
                };
                history
                    .applied
                    .entry(version)
                    .or_default()
                    .push(AppliedMigration {
                        name: row.get(3),
                        checksum: row.get(4),
                        tenants: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
                    });
            }
            state.history = Some(history);
        }
        Ok(state)
    }
}
