//! Drift of a tenant's live resources, one resource at a time: schema and table, role, grants,
//! privileges beyond them, collection. Each check records drift, the steps that repair it, and
//! conflicts that keep tenantctl away from the tenant.

use super::diff::{Steps, TenantPlanner, CONVERSATIONS_COLUMNS};
use super::{
    collection_metadata, DriftProblem, GrantTarget, Naming, ResourceKind, Step,
    COLLECTION_MANAGED_BY, CONVERSATIONS_TABLE, MANAGED_COMMENT, TABLE_PRIVILEGES,
};
use crate::observed::{LiveStatus, RegistryRow, PUBLIC};

/// The names of a tenant's resources.
pub(super) struct Names {
    pub id: String,
    pub schema: String,
    pub role: String,
    pub collection: String,
    /// `schema.conversations`, for messages.
    pub table_label: String,
}

impl Names {
    pub(super) fn of(naming: &Naming, id: &str) -> Names {
        let schema = naming.schema(id);
        Names {
            id: id.to_string(),
            table_label: format!("{schema}.{CONVERSATIONS_TABLE}"),
            schema,
            role: naming.role(id),
            collection: naming.collection(id),
        }
    }
}

/// What this plan creates anew: it has no grants yet, so their absence is not drift.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fresh {
    schema: bool,
    table: bool,
}

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
        let Some(fresh) = self.check_schema_and_table(&names, steps) else {
            return;
        };
        let Some(role_new) = self.check_role(&names, steps) else {
            return;
        };
        self.check_grants(row, desired, &names, fresh, role_new, steps);
        self.check_privileges(&names, fresh, role_new, steps);
        self.check_collection(row, &names, steps);
    }

    /// The schema and its table: missing ones re-created, PUBLIC's grants revoked, missing
    /// columns added. `None` when the schema is not tenantctl's (a conflict: the tenant is
    /// left alone).
    fn check_schema_and_table(&mut self, names: &Names, steps: &mut Steps) -> Option<Fresh> {
        let schema_name = names.schema.clone();
        let table_label = names.table_label.clone();
        let observed = self.observed;
        let schema = observed.schemas.get(&schema_name);
        let mut schema_new = false;
        let mut table_new = false;
        match schema {
            None => {
                self.drift(
                    ResourceKind::Schema,
                    &schema_name,
                    DriftProblem::Missing,
                    "schema is missing",
                );
                steps.postgres.push(Step::CreateSchema {
                    schema: schema_name.clone(),
                });
                steps.postgres.push(Step::CreateTable {
                    schema: schema_name.clone(),
                    table: CONVERSATIONS_TABLE.to_string(),
                });
                schema_new = true;
                table_new = true;
            }
            Some(schema) if schema.comment != MANAGED_COMMENT => {
                self.conflict(
                    ResourceKind::Schema,
                    &schema_name,
                    format!("schema `{schema_name}` is not marked as managed by tenantctl"),
                    "it may have been replaced by hand; restore its comment `managed by tenantctl` if it is the tenant's, or move it away",
                );
                return None;
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
                        schema: schema_name.clone(),
                    });
                }
                match schema.tables.get(CONVERSATIONS_TABLE) {
                    None => {
                        self.drift(
                            ResourceKind::Table,
                            &table_label,
                            DriftProblem::Missing,
                            "table is missing",
                        );
                        steps.postgres.push(Step::CreateTable {
                            schema: schema_name.clone(),
                            table: CONVERSATIONS_TABLE.to_string(),
                        });
                        table_new = true;
                    }
                    Some(table) => {
                        for (column, data_type, _) in CONVERSATIONS_COLUMNS {
                            match table.columns.get(column) {
                                None => {
                                    self.drift(
                                        ResourceKind::Column,
                                        &format!("{table_label}.{column}"),
                                        DriftProblem::Missing,
                                        "column is missing",
                                    );
                                    steps.postgres.push(Step::AddColumn {
                                        schema: schema_name.clone(),
                                        table: CONVERSATIONS_TABLE.to_string(),
                                        column: column.to_string(),
                                    });
                                }
                                Some(live) if live.data_type != data_type => self.conflict(
                                    ResourceKind::Column,
                                    &format!("{table_label}.{column}"),
                                    format!(
                                        "column `{column}` of `{table_label}` is `{}`, expected `{data_type}`",
                                        live.data_type
                                    ),
                                    "tenantctl never rewrites tenant data; fix the column type by hand",
                                ),
                                Some(_) => {}
                            }
                        }
                        if table.privileges.contains_key(PUBLIC) {
                            self.drift(
                                ResourceKind::Grant,
                                &table_label,
                                DriftProblem::Wrong,
                                "PUBLIC has privileges on the table",
                            );
                            steps.postgres.push(Step::RevokeTableFromPublic {
                                schema: schema_name.clone(),
                                table: CONVERSATIONS_TABLE.to_string(),
                            });
                        }
                    }
                }
            }
        }

        Some(Fresh {
            schema: schema_new,
            table: table_new,
        })
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
            Some(role) => {
                if role.can_login {
                    self.drift(
                        ResourceKind::Role,
                        &role_name,
                        DriftProblem::Wrong,
                        "role can log in, should be NOLOGIN",
                    );
                    steps.postgres.push(Step::DisableRoleLogin {
                        role: role_name.clone(),
                    });
                }
            }
        }

        // A role that owns something: ownership goes first, it rewrites the owner's grants.
        if let (Some(role), false) = (observed.roles.get(&role_name), role_new) {
            let found = super::privileges::ownership(&role_name, role);
            self.drift.extend(found.drift);
            steps.postgres.extend(found.steps);
        }

        Some(role_new)
    }

    /// What tenantctl grants: `USAGE` on the schema while active, the four table privileges,
    /// nothing more to the role on them.
    fn check_grants(
        &mut self,
        row: &RegistryRow,
        desired: LiveStatus,
        names: &Names,
        fresh: Fresh,
        role_new: bool,
        steps: &mut Steps,
    ) {
        let (schema_new, table_new) = (fresh.schema, fresh.table);
        let schema_name = names.schema.clone();
        let role_name = names.role.clone();
        let table_label = names.table_label.clone();
        let observed = self.observed;
        let schema = observed.schemas.get(&schema_name);
        // Grants. A freshly created schema, table or role has no grants; those are part of the
        // repair already reported, not separate drift.
        let schema_privileges = schema
            .filter(|_| !schema_new)
            .and_then(|schema| schema.privileges.get(&role_name))
            .cloned()
            .unwrap_or_default();
        let has_usage = !role_new && schema_privileges.contains("USAGE");
        let extra_schema_privileges = !role_new && schema_privileges.iter().any(|p| p != "USAGE");
        let registry_wants_usage = row.status == LiveStatus::Active;
        let desired_usage = desired == LiveStatus::Active;
        if !schema_new && !role_new {
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

        let table_privileges = schema
            .and_then(|schema| schema.tables.get(CONVERSATIONS_TABLE))
            .filter(|_| !table_new && !role_new)
            .and_then(|table| table.privileges.get(&role_name))
            .cloned()
            .unwrap_or_default();
        let missing_table_privileges = TABLE_PRIVILEGES
            .iter()
            .any(|privilege| !table_privileges.contains(*privilege));
        // TRUNCATE, REFERENCES, TRIGGER: more than a tenant's table privileges. Revoked, then
        // the four granted again.
        let extra_table_privileges = table_privileges
            .iter()
            .any(|privilege| !TABLE_PRIVILEGES.contains(&privilege.as_str()));
        if extra_table_privileges {
            self.drift(
                ResourceKind::Grant,
                &table_label,
                DriftProblem::Wrong,
                "role holds privileges on the table beyond SELECT, INSERT, UPDATE, DELETE",
            );
            steps.postgres.push(Step::RevokeGrant {
                on: GrantTarget::Relation {
                    schema: schema_name.clone(),
                    name: CONVERSATIONS_TABLE.to_string(),
                    kind: crate::observed::ObjectKind::Table,
                },
                grantee: role_name.clone(),
            });
        }
        if missing_table_privileges || extra_table_privileges {
            if !table_new && !role_new {
                self.drift(
                    ResourceKind::Grant,
                    &table_label,
                    DriftProblem::Missing,
                    "role lacks privileges on the table",
                );
            }
            steps.postgres.push(Step::GrantTablePrivileges {
                schema: schema_name.clone(),
                table: CONVERSATIONS_TABLE.to_string(),
                role: role_name.clone(),
            });
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
