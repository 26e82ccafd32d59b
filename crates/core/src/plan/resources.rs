//! Drift of a tenant's live resources, one resource at a time: schema and its migrations, role,
//! grants, privileges beyond them, collection. Each check records drift, the steps that repair
//! it, and conflicts that keep tenantctl away from the tenant.

use super::diff::{Steps, TenantPlanner};
use super::migrations::{for_tenant, grant_steps, pending};
use super::{
    collection_metadata, tenant_privileges, DriftProblem, GrantTarget, Naming, ResourceKind, Step,
    COLLECTION_MANAGED_BY, MANAGED_COMMENT,
};
use crate::observed::{LiveStatus, ObjectKind, RegistryRow, SchemaShape, PUBLIC};

/// The names of a tenant's resources.
pub(super) struct Names {
    pub id: String,
    pub schema: String,
    pub role: String,
    pub collection: String,
}

impl Names {
    pub(super) fn of(naming: &Naming, id: &str) -> Names {
        Names {
            id: id.to_string(),
            schema: naming.schema(id),
            role: naming.role(id),
            collection: naming.collection(id),
        }
    }
}

/// What this plan makes anew: it has no grants yet, so their absence is not drift, and every
/// grant is planned.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fresh {
    /// The schema is created by this plan.
    schema: bool,
    /// Migrations run in it: the objects they make get their grants after them.
    migrated: bool,
}

/// Differences listed in a conflict before the rest is counted.
const DIFFERENCES_SHOWN: usize = 5;

impl TenantPlanner<'_> {
    /// Compares the tenant's live resources with what it should have and records drift, steps
    /// that repair it, and conflicts that forbid touching it, one resource after the other.
    pub(super) fn check_resources(
        &mut self,
        row: &RegistryRow,
        desired: LiveStatus,
        steps: &mut Steps,
    ) {
        let names = Names::of(self.naming, &self.spec.id);
        let Some(schema_new) = self.check_schema(&names, steps) else {
            return;
        };
        let Some(migrated) = self.check_migrations(row, &names, schema_new, steps) else {
            return;
        };
        let Some(role_new) = self.check_role(&names, steps) else {
            return;
        };
        let fresh = Fresh {
            schema: schema_new,
            migrated,
        };
        self.check_grants(row, desired, &names, fresh, role_new, steps);
        self.check_privileges(&names, fresh, role_new, steps);
        self.check_collection(row, &names, steps);
    }

    /// The schema: re-created when missing (its migrations then run again), PUBLIC's grants
    /// revoked. Returns whether it is created by this plan; `None` when the schema is not
    /// tenantctl's (a conflict: the tenant is left alone).
    fn check_schema(&mut self, names: &Names, steps: &mut Steps) -> Option<bool> {
        let schema_name = names.schema.clone();
        match self.observed.schemas.get(&schema_name) {
            None => {
                self.drift(
                    ResourceKind::Schema,
                    &schema_name,
                    DriftProblem::Missing,
                    "schema is missing",
                );
                steps.postgres.push(Step::CreateSchema {
                    schema: schema_name,
                });
                Some(true)
            }
            Some(schema) if schema.comment != MANAGED_COMMENT => {
                self.conflict(
                    ResourceKind::Schema,
                    &schema_name,
                    format!("schema `{schema_name}` is not marked as managed by tenantctl"),
                    "it may have been replaced by hand; restore its comment `managed by tenantctl` if it is the tenant's, or move it away",
                );
                None
            }
            Some(schema) => {
                if schema.privileges.contains_key(PUBLIC) {
                    self.drift(
                        ResourceKind::Grant,
                        &schema_name,
                        DriftProblem::Wrong,
                        "PUBLIC has privileges on the schema",
                    );
                    steps.postgres.push(Step::RevokeSchemaFromPublic {
                        schema: schema_name,
                    });
                }
                Some(false)
            }
        }
    }

    /// The tenant's migrations: those it has not applied run (all of them in a schema created
    /// anew); a tenant made before migration history existed is adopted as having the first
    /// applied when its schema is exactly what that makes; a tenant up to date is compared with
    /// the reference, and one that differs is left alone, every difference named (tenantctl
    /// does not invent DDL). Returns whether migrations run; `None` for a conflict.
    fn check_migrations(
        &mut self,
        row: &RegistryRow,
        names: &Names,
        schema_new: bool,
        steps: &mut Steps,
    ) -> Option<bool> {
        let observed = self.observed;
        let live = if schema_new {
            None
        } else {
            observed
                .schemas
                .get(&names.schema)
                .map(|schema| &*schema.shape)
        };
        let found = for_tenant(
            self.migrations,
            observed.history.as_ref(),
            observed.reference.as_ref(),
            row.uid,
            live,
        );
        if !found.differs.is_empty() {
            let mut shown: Vec<String> = found
                .differs
                .iter()
                .take(DIFFERENCES_SHOWN)
                .cloned()
                .collect();
            if found.differs.len() > DIFFERENCES_SHOWN {
                shown.push(format!(
                    "and {} more",
                    found.differs.len() - DIFFERENCES_SHOWN
                ));
            }
            self.conflict(
                ResourceKind::Schema,
                &names.schema,
                format!(
                    "schema `{}` is not what the migrations define: {}",
                    names.schema,
                    shown.join("; ")
                ),
                "tenantctl does not invent DDL: bring the schema back by hand, or write a migration for the change",
            );
            return None;
        }
        if !found.adopt.is_empty() {
            self.migrations_pending
                .extend(pending(self.migrations, &found.adopt, true));
            steps.postgres.push(Step::RecordMigrations {
                versions: found.adopt,
            });
        }
        if found.run.is_empty() {
            return Some(false);
        }
        self.migrations_pending
            .extend(pending(self.migrations, &found.run, false));
        steps.postgres.push(Step::RunMigrations {
            schema: names.schema.clone(),
            versions: found.run,
        });
        Some(true)
    }

    /// The role: re-created when missing, `NOLOGIN`, owning nothing. Returns whether it is
    /// created by this plan; `None` when it is not tenantctl's (a conflict).
    fn check_role(&mut self, names: &Names, steps: &mut Steps) -> Option<bool> {
        let role_name = names.role.clone();
        let observed = self.observed;
        let mut role_new = false;
        match observed.roles.get(&role_name) {
            None => {
                self.drift(
                    ResourceKind::Role,
                    &role_name,
                    DriftProblem::Missing,
                    "role is missing",
                );
                steps.postgres.push(Step::CreateRole {
                    role: role_name.clone(),
                });
                role_new = true;
            }
            Some(role) if role.comment != MANAGED_COMMENT => {
                self.conflict(
                    ResourceKind::Role,
                    &role_name,
                    format!("role `{role_name}` exists but was not created by tenantctl"),
                    "tenantctl never alters a role it did not create; rename that role or use another `--role-prefix`",
                );
                return None;
            }
            // Whether it logs in is the business of its credentials (`plan::credentials`).
            Some(_) => {}
        }

        // A role that owns something: ownership goes first, it rewrites the owner's grants.
        if let (Some(role), false) = (observed.roles.get(&role_name), role_new) {
            let found = super::privileges::ownership(&role_name, role);
            self.drift.extend(found.drift);
            steps.postgres.extend(found.steps);
        }

        Some(role_new)
    }

    /// What tenantctl grants: `USAGE` on the schema while active, the tenant privileges on
    /// every relation the migrations make and on their functions, nothing more to the role.
    fn check_grants(
        &mut self,
        row: &RegistryRow,
        desired: LiveStatus,
        names: &Names,
        fresh: Fresh,
        role_new: bool,
        steps: &mut Steps,
    ) {
        let schema_name = names.schema.clone();
        let role_name = names.role.clone();
        let observed = self.observed;
        let schema = observed.schemas.get(&schema_name);
        // Grants. A freshly created schema or role has no grants; those are part of the repair
        // already reported, not separate drift.
        let schema_privileges = schema
            .filter(|_| !fresh.schema)
            .and_then(|schema| schema.privileges.get(&role_name))
            .cloned()
            .unwrap_or_default();
        let has_usage = !role_new && schema_privileges.contains("USAGE");
        let extra_schema_privileges = !role_new && schema_privileges.iter().any(|p| p != "USAGE");
        let registry_wants_usage = row.status == LiveStatus::Active;
        let desired_usage = desired == LiveStatus::Active;
        if !fresh.schema && !role_new {
            if has_usage != registry_wants_usage {
                let detail = if has_usage {
                    format!("role has access to the schema of a {} tenant", row.status)
                } else {
                    "role lacks USAGE on the schema".to_string()
                };
                let problem = if has_usage {
                    DriftProblem::Wrong
                } else {
                    DriftProblem::Missing
                };
                self.drift(ResourceKind::Grant, &schema_name, problem, &detail);
            }
            if extra_schema_privileges {
                self.drift(
                    ResourceKind::Grant,
                    &schema_name,
                    DriftProblem::Wrong,
                    "role holds privileges on the schema beyond USAGE",
                );
            }
        }
        if extra_schema_privileges || (has_usage && !desired_usage) {
            steps.postgres.push(Step::RevokeSchemaUsage {
                schema: schema_name.clone(),
                role: role_name.clone(),
            });
        }
        if desired_usage && (!has_usage || extra_schema_privileges) {
            steps.postgres.push(Step::GrantSchemaUsage {
                schema: schema_name.clone(),
                role: role_name.clone(),
            });
        }

        let Some(reference) = observed.reference.as_ref() else {
            return;
        };
        let expected = &reference.full;
        // Everything the migrations made is new to the role: grant it all.
        if fresh.schema || fresh.migrated || role_new {
            steps
                .postgres
                .extend(grant_steps(expected, &schema_name, &role_name));
            return;
        }
        let Some(schema) = schema else {
            return;
        };
        for table in expected.tables.keys() {
            let held = schema
                .tables
                .get(table)
                .and_then(|live| live.privileges.get(&role_name))
                .cloned()
                .unwrap_or_default();
            let grant = Step::GrantTablePrivileges {
                schema: schema_name.clone(),
                table: table.clone(),
                role: role_name.clone(),
            };
            self.expect_privileges(
                &schema_name,
                table,
                ObjectKind::Table,
                &held,
                &role_name,
                grant,
                steps,
            );
        }
        for (name, kind) in relations(expected) {
            let held = schema
                .objects
                .get(&name)
                .and_then(|live| live.privileges.get(&role_name))
                .cloned()
                .unwrap_or_default();
            let grant = Step::GrantObjectPrivileges {
                schema: schema_name.clone(),
                name: name.clone(),
                object_kind: kind,
                role: role_name.clone(),
            };
            self.expect_privileges(&schema_name, &name, kind, &held, &role_name, grant, steps);
        }
        let lacks_execute = schema.objects.values().any(|object| {
            object.kind == ObjectKind::Function
                && !object
                    .privileges
                    .get(&role_name)
                    .is_some_and(|held| held.contains("EXECUTE"))
        });
        if !expected.functions.is_empty() && lacks_execute {
            self.drift(
                ResourceKind::Grant,
                &schema_name,
                DriftProblem::Missing,
                "role lacks EXECUTE on the schema's functions",
            );
            steps.postgres.push(Step::GrantFunctions {
                schema: schema_name.clone(),
                role: role_name.clone(),
            });
        }
    }

    /// The role must hold exactly the tenant privileges on one relation: a missing one is
    /// granted; more (TRUNCATE, REFERENCES, TRIGGER) is revoked and the right ones granted
    /// again.
    #[allow(clippy::too_many_arguments)] // one relation's names, what is held, and the repair
    fn expect_privileges(
        &mut self,
        schema: &str,
        name: &str,
        kind: ObjectKind,
        held: &crate::observed::Privileges,
        role: &str,
        grant: Step,
        steps: &mut Steps,
    ) {
        let wanted = tenant_privileges(kind);
        let label = format!("{schema}.{name}");
        let missing = wanted.iter().any(|privilege| !held.contains(privilege));
        let extra = held.iter().any(|privilege| !wanted.contains(&privilege));
        if extra {
            self.drift(
                ResourceKind::Grant,
                &label,
                DriftProblem::Wrong,
                &format!(
                    "role holds privileges on the {} beyond {}",
                    kind.label(),
                    wanted.join(", ")
                ),
            );
            steps.postgres.push(Step::RevokeGrant {
                on: GrantTarget::Relation {
                    schema: schema.to_string(),
                    name: name.to_string(),
                    kind,
                },
                grantee: role.to_string(),
            });
        } else if missing {
            self.drift(
                ResourceKind::Grant,
                &label,
                DriftProblem::Missing,
                &format!("role lacks privileges on the {}", kind.label()),
            );
        }
        if missing || extra {
            steps.postgres.push(grant);
        }
    }

    /// Everything beyond what tenantctl grants: see `plan::privileges`.
    fn check_privileges(&mut self, names: &Names, fresh: Fresh, role_new: bool, steps: &mut Steps) {
        let schema_new = fresh.schema;
        let schema_name = names.schema.clone();
        let role_name = names.role.clone();
        let observed = self.observed;
        let schema = observed.schemas.get(&schema_name);
        // Everything beyond what tenantctl grants (other grantees, role attributes,
        // memberships, ownership, SECURITY DEFINER functions).
        if let (Some(schema), Some(role), false, false) =
            (schema, observed.roles.get(&role_name), schema_new, role_new)
        {
            let found = super::privileges::check(
                &schema_name,
                schema,
                &role_name,
                role,
                &observed.current_user,
                observed.reference.as_ref().map(|reference| &reference.full),
            );
            self.drift.extend(found.drift);
            steps.postgres.extend(found.steps);
        }
    }

    /// The collection: re-created when missing, its metadata corrected; another's is a conflict.
    fn check_collection(&mut self, row: &RegistryRow, names: &Names, steps: &mut Steps) {
        let id = names.id.clone();
        let collection_name = names.collection.clone();
        let observed = self.observed;
        match observed.collections.get(&collection_name) {
            None => {
                self.drift(
                    ResourceKind::Collection,
                    &collection_name,
                    DriftProblem::Missing,
                    "collection is missing",
                );
                steps.chroma.push(Step::CreateCollection {
                    collection: collection_name,
                });
            }
            Some(collection) => {
                let expected = collection_metadata(&id, row.uid);
                if collection.metadata_str("managed_by") != Some(COLLECTION_MANAGED_BY) {
                    self.conflict(
                        ResourceKind::Collection,
                        &collection_name,
                        format!(
                            "collection `{collection_name}` exists but is not marked as managed by tenantctl"
                        ),
                        "tenantctl never touches a collection it did not create; rename or delete it in Chroma by hand",
                    );
                } else if collection.metadata_str("tenant_uid") != Some(&row.uid.to_string()) {
                    self.conflict(
                        ResourceKind::Collection,
                        &collection_name,
                        format!(
                            "collection `{collection_name}` belongs to another incarnation of tenant `{id}` (uid {})",
                            collection.metadata_str("tenant_uid").unwrap_or("unset")
                        ),
                        "a tenant purged and created again gets a new uid; delete the stale collection by hand once its data is no longer needed",
                    );
                } else if expected
                    .iter()
                    .any(|(key, value)| collection.metadata.get(key) != Some(value))
                {
                    self.drift(
                        ResourceKind::Collection,
                        &collection_name,
                        DriftProblem::Wrong,
                        "collection metadata differs",
                    );
                    steps.chroma.push(Step::UpdateCollectionMetadata {
                        collection: collection_name,
                        id: collection.id.clone(),
                    });
                }
            }
        }
    }
}

/// The views and sequences of a shape, with their kinds.
fn relations(shape: &SchemaShape) -> Vec<(String, ObjectKind)> {
    let mut found: Vec<(String, ObjectKind)> = shape
        .views
        .iter()
        .map(|(name, definition)| {
            let kind = if definition.starts_with("materialized view") {
                ObjectKind::MaterializedView
            } else {
                ObjectKind::View
            };
            (name.clone(), kind)
        })
        .collect();
    found.extend(
        shape
            .sequences
            .iter()
            .map(|name| (name.clone(), ObjectKind::Sequence)),
    );
    found
}
