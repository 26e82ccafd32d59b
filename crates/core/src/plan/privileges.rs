//! A tenant role may use its schema and nothing else: everything beyond what tenantctl grants
//! is drift, planned as its repair.
//!
//! Checked here, from the catalog facts `observed` holds: the role's attributes, its
//! memberships in both directions, what it owns, its grants outside the tenant schemas, every
//! grant of anyone else on the tenant schema and on what is in it, and `SECURITY DEFINER`
//! functions there. The expected grants themselves (usage, table privileges, PUBLIC revoked on
//! the schema and its table) are checked with the schema and table.

use super::{Drift, DriftProblem, GrantTarget, ResourceKind, Step};
use crate::observed::{ObjectKind, ObservedRole, ObservedSchema, SchemaShape, PUBLIC};

/// Drift of one tenant's privileges, and the steps that repair it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct PrivilegeDrift {
    pub drift: Vec<Drift>,
    pub steps: Vec<Step>,
}

impl PrivilegeDrift {
    fn wrong(&mut self, resource: ResourceKind, name: &str, detail: String, step: Step) {
        self.drift.push(Drift {
            resource,
            name: name.to_string(),
            problem: DriftProblem::Wrong,
            detail,
        });
        self.steps.push(step);
    }
}

/// What the tenant role owns goes to tenantctl's user: planned before every other grant
/// repair, since a change of owner rewrites the owner's privileges on what it owned.
pub(super) fn ownership(role_name: &str, role: &ObservedRole) -> PrivilegeDrift {
    let mut found = PrivilegeDrift::default();
    if !role.owns.is_empty() {
        let listed: Vec<&str> = role.owns.iter().take(3).map(String::as_str).collect();
        let more = role.owns.len().saturating_sub(listed.len());
        found.wrong(
            ResourceKind::Role,
            role_name,
            format!(
                "role owns {}{}",
                listed.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            Step::ReassignOwned {
                role: role_name.to_string(),
            },
        );
    }
    found
}

/// Compares a tenant's schema and role (both managed by tenantctl) with what they should be,
/// ownership aside (see [`ownership`]).
pub(super) fn check(
    schema_name: &str,
    schema: &ObservedSchema,
    role_name: &str,
    role: &ObservedRole,
    current_user: &str,
    expected: Option<&SchemaShape>,
) -> PrivilegeDrift {
    let mut found = PrivilegeDrift::default();

    // The role itself.
    let elevated = role.elevated_attributes();
    if !elevated.is_empty() {
        found.wrong(
            ResourceKind::Role,
            role_name,
            format!("role has {}", elevated.join(", ")),
            Step::ResetRoleAttributes {
                role: role_name.to_string(),
                attributes: elevated.iter().map(|a| a.to_string()).collect(),
            },
        );
    }
    for granted in &role.member_of {
        found.wrong(
            ResourceKind::Role,
            role_name,
            format!("role is a member of `{granted}` and holds its rights"),
            Step::RevokeMembership {
                role: granted.clone(),
                member: role_name.to_string(),
            },
        );
    }
    for member in role.members.iter().filter(|member| *member != current_user) {
        found.wrong(
            ResourceKind::Role,
            role_name,
            format!("`{member}` is a member of the role and holds the tenant's rights"),
            Step::RevokeMembership {
                role: role_name.to_string(),
                member: member.clone(),
            },
        );
    }
    for grant in &role.foreign_grants {
        let target = match &grant.relation {
            None => GrantTarget::Schema {
                schema: grant.schema.clone(),
            },
            Some((name, kind)) => GrantTarget::Relation {
                schema: grant.schema.clone(),
                name: name.clone(),
                kind: *kind,
            },
        };
        let step = Step::RevokeGrant {
            on: target.clone(),
            grantee: role_name.to_string(),
        };
        // One revoke per object, whatever the number of privileges.
        if found.steps.contains(&step) {
            continue;
        }
        found.wrong(
            ResourceKind::Grant,
            role_name,
            format!(
                "role holds {} on {target}, outside its schema",
                grant.privilege
            ),
            step,
        );
    }

    // Others on the schema: only the owner, the tenant's role and (revoked elsewhere) PUBLIC
    // may appear.
    for grantee in schema.privileges.keys() {
        if *grantee == schema.owner
            || grantee == role_name
            || grantee == PUBLIC
            || grantee == current_user
        {
            continue;
        }
        found.wrong(
            ResourceKind::Grant,
            schema_name,
            format!("`{grantee}` holds privileges on the schema"),
            Step::RevokeGrant {
                on: GrantTarget::Schema {
                    schema: schema_name.to_string(),
                },
                grantee: grantee.clone(),
            },
        );
    }
    // Others on the tables, PUBLIC included; the tenant role's own privileges are checked
    // with the grants.
    for (table_name, table) in &schema.tables {
        for grantee in table.privileges.keys() {
            if *grantee == table.owner || grantee == role_name || grantee == current_user {
                continue;
            }
            found.wrong(
                ResourceKind::Grant,
                &format!("{schema_name}.{table_name}"),
                format!("`{grantee}` holds privileges on the table"),
                Step::RevokeGrant {
                    on: GrantTarget::Relation {
                        schema: schema_name.to_string(),
                        name: table_name.clone(),
                        kind: ObjectKind::Table,
                    },
                    grantee: grantee.clone(),
                },
            );
        }
    }
    // Views, sequences, functions: the tenant role holds privileges on those the migrations
    // make (checked with the grants); any other grantee, and the tenant role on anything else,
    // is drift (PUBLIC's default EXECUTE on a function included: through a function or a view
    // owned by another role, the tenant would act with that role's rights).
    for (name, object) in &schema.objects {
        let target = match (object.kind, object.oid) {
            (ObjectKind::Function, Some(oid)) => GrantTarget::Function {
                schema: schema_name.to_string(),
                signature: name.clone(),
                oid,
            },
            (ObjectKind::Function, None) => continue,
            (kind, _) => GrantTarget::Relation {
                schema: schema_name.to_string(),
                name: name.clone(),
                kind,
            },
        };
        let signature = name
            .strip_prefix(&format!("{schema_name}."))
            .unwrap_or(name);
        let migrated = expected.is_some_and(|shape| match object.kind {
            ObjectKind::Function => shape.functions.contains(signature),
            ObjectKind::Sequence => shape.sequences.contains(name),
            _ => shape.views.contains_key(name),
        });
        for grantee in object.privileges.keys() {
            if *grantee == object.owner
                || grantee == current_user
                || (grantee == role_name && migrated)
            {
                continue;
            }
            found.wrong(
                ResourceKind::Grant,
                &format!("{schema_name}.{name}"),
                format!(
                    "`{grantee}` holds privileges on the {}",
                    object.kind.label()
                ),
                Step::RevokeGrant {
                    on: target.clone(),
                    grantee: grantee.clone(),
                },
            );
        }
        if let (true, Some(oid)) = (object.security_definer, object.oid) {
            found.wrong(
                ResourceKind::Grant,
                &format!("{schema_name}.{name}"),
                format!(
                    "function runs as its owner `{}` (SECURITY DEFINER)",
                    object.owner
                ),
                Step::SecurityInvoker {
                    function: name.clone(),
                    oid,
                },
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{ForeignGrant, ObservedObject, ObservedTable, SmallMap};
    use std::collections::BTreeSet;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn grants(items: &[&str]) -> crate::observed::Privileges {
        items.iter().collect()
    }

    fn clean_schema() -> ObservedSchema {
        ObservedSchema {
            owner: "postgres".into(),
            comment: "managed by tenantctl".into(),
            privileges: SmallMap::from_iter([
                ("postgres".into(), grants(&["CREATE", "USAGE"])),
                ("tenant_aa".into(), grants(&["USAGE"])),
            ]),
            tables: SmallMap::from_iter([(
                "conversations".into(),
                ObservedTable {
                    owner: "postgres".into(),
                    privileges: SmallMap::from_iter([
                        ("postgres".into(), grants(&["SELECT", "TRUNCATE"])),
                        ("tenant_aa".into(), grants(&["SELECT"])),
                    ]),
                    ..ObservedTable::default()
                },
            )]),
            objects: SmallMap::new(),
            shape: Default::default(),
        }
    }

    #[test]
    fn a_clean_tenant_has_no_privilege_drift() {
        let found = check(
            "tenant_aa",
            &clean_schema(),
            "tenant_aa",
            &ObservedRole {
                // as PostgreSQL 16 records the role that created it
                members: set(&["postgres"]),
                ..ObservedRole::default()
            },
            "postgres",
            None,
        );
        assert_eq!(found, PrivilegeDrift::default());
    }

    #[test]
    fn every_way_to_widen_a_role_is_drift_with_its_repair() {
        let mut schema = clean_schema();
        schema
            .privileges
            .insert("tenant_bb".into(), grants(&["USAGE"]));
        schema
            .tables
            .get_mut("conversations")
            .unwrap()
            .privileges
            .insert("tenant_bb".into(), grants(&["SELECT"]));
        schema.objects.insert(
            "tenant_aa.f()".into(),
            ObservedObject {
                kind: ObjectKind::Function,
                owner: "postgres".into(),
                privileges: SmallMap::from_iter([(PUBLIC.into(), grants(&["EXECUTE"]))]),
                oid: Some(4242),
                security_definer: true,
            },
        );
        let role = ObservedRole {
            superuser: true,
            bypass_rls: true,
            member_of: set(&["pg_read_all_data"]),
            members: set(&["tenant_bb"]),
            owns: set(&["table tenant_aa.notes"]),
            foreign_grants: BTreeSet::from([ForeignGrant {
                schema: "public".into(),
                relation: Some(("invoices".into(), ObjectKind::Table)),
                privilege: "SELECT".into(),
            }]),
            ..ObservedRole::default()
        };
        let mut found = ownership("tenant_aa", &role);
        let rest = check("tenant_aa", &schema, "tenant_aa", &role, "postgres", None);
        found.drift.extend(rest.drift);
        found.steps.extend(rest.steps);
        let details: Vec<&str> = found.drift.iter().map(|d| d.detail.as_str()).collect();
        assert_eq!(
            details,
            vec![
                "role owns table tenant_aa.notes",
                "role has SUPERUSER, BYPASSRLS",
                "role is a member of `pg_read_all_data` and holds its rights",
                "`tenant_bb` is a member of the role and holds the tenant's rights",
                "role holds SELECT on table `public.invoices`, outside its schema",
                "`tenant_bb` holds privileges on the schema",
                "`tenant_bb` holds privileges on the table",
                "`PUBLIC` holds privileges on the function",
                "function runs as its owner `postgres` (SECURITY DEFINER)",
            ]
        );
        let kinds: Vec<&str> = found.steps.iter().map(Step::kind).collect();
        assert_eq!(
            kinds,
            vec![
                "reassign_owned",
                "reset_role_attributes",
                "revoke_membership",
                "revoke_membership",
                "revoke_grant",
                "revoke_grant",
                "revoke_grant",
                "revoke_grant",
                "security_invoker",
            ]
        );
    }
}
