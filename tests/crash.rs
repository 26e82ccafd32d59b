//! Crash injection: every step boundary of every kind of change, killed there (`kill -9`
//! through the test build's failpoint), then applied again, must converge.
//!
//! For each lifecycle change the boundaries are read from the plan itself (before and after
//! each step kind, before and after the commit), so a new step kind joins the walk by itself.
//! After the second apply the state is checked with this test's own SQL and HTTP: every registry
//! row has its schema, role and collection, nothing managed exists without a registry row, no
//! backup exists but of a soft-deleted tenant (or, for a restored one, the backup its committed
//! soft delete recorded), no partial backup is left, and the next plan says there is nothing
//! to do.

mod common;

use common::*;
use std::collections::BTreeSet;

/// The tenant every scenario changes; `bystander` is there to prove nobody else is touched.
const TENANT: &str = "target";

/// One lifecycle change: how to reach the state before it, and the files that ask for it.
struct Scenario {
    name: &'static str,
    /// Files applied (in order) to reach the state before the change.
    before: &'static [&'static str],
    /// The file of the change itself.
    after: &'static str,
}

const ACTIVE: &str = "";
const UPDATED: &str = "config: { max_tokens: 7000 }\n";
const SUSPENDED: &str = "state: suspended\nsuspension: { reason: \"invoice overdue\" }\n";
const DELETED: &str = "state: deleted\n";
const DUE: &str = "state: deleted\nretention_days: 0\n";

fn write_target(env: &TestEnv, extra: &str) {
    env.tenant(TENANT, "pro", extra);
}

/// The boundaries of the target's change, as the plan lists its steps.
fn boundaries(env: &TestEnv) -> Vec<String> {
    let out = env.tenantctl(&["plan", "--format", "json"]).expect_code(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["tenant"] == TENANT)
        .expect("the target has a change");
    let mut kinds = Vec::new();
    for step in change["steps"].as_array().unwrap() {
        let kind = step["kind"].as_str().unwrap().to_string();
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    assert!(!kinds.is_empty(), "no steps to crash in");
    let mut points = Vec::new();
    for kind in kinds.iter().chain(std::iter::once(&"commit".to_string())) {
        points.push(format!("before:{kind}"));
        points.push(format!("after:{kind}"));
    }
    points
}

fn prepare(scenario: &Scenario, label: &str) -> TestEnv {
    let env = TestEnv::new(label);
    env.tenant("bystander", "pro", "");
    for files in scenario.before {
        write_target(&env, files);
        env.apply();
        if scenario.name != "create" {
            // Data in the tenant, so backups and purges have something to carry.
            env.execute(&format!(
                "INSERT INTO tenant_{TENANT}.conversations (id) SELECT gen_random_uuid() \
                 WHERE to_regclass('tenant_{TENANT}.conversations') IS NOT NULL \
                   AND (SELECT status FROM tenantctl.tenants WHERE id = '{TENANT}') <> 'deleted'"
            ));
        }
    }
    write_target(&env, scenario.after);
    env
}

/// The invariants of a converged state, read without tenantctl.
fn check_converged(env: &TestEnv, context: &str) {
    let prefix = env.role("");
    let rows = env.query(
        "SELECT id, uid::text, status FROM tenantctl.tenants ORDER BY id",
        &[],
    );
    let registry: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let ids: BTreeSet<String> = registry.iter().map(|(id, _, _)| id.clone()).collect();

    let schemas: BTreeSet<String> = env
        .query(
            "SELECT substr(nspname, 8) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'",
            &[],
        )
        .iter()
        .map(|row| row.get(0))
        .collect();
    let roles: BTreeSet<String> = env
        .query(
            "SELECT substr(rolname, length($1) + 1) FROM pg_roles WHERE starts_with(rolname, $1)",
            &[&prefix],
        )
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut collections = BTreeSet::new();
    for (id, uid, _) in &registry {
        let collection = env
            .collection(&format!("tenant_{id}"))
            .unwrap_or_else(|| panic!("{context}: registry row `{id}` has no collection"));
        assert_eq!(
            collection["metadata"]["tenant_uid"],
            serde_json::json!(uid),
            "{context}: collection of `{id}` carries another uid"
        );
        collections.insert(id.clone());
    }
    assert_eq!(schemas, ids, "{context}: schemas and registry rows differ");
    assert_eq!(roles, ids, "{context}: roles and registry rows differ");
    // Nothing in Chroma without a registry row.
    for name in env.collection_names() {
        let id = name.strip_prefix("tenant_").unwrap_or(&name).to_string();
        assert!(
            ids.contains(&id),
            "{context}: collection `{name}` without a registry row"
        );
    }

    // Backups: only of soft-deleted tenants, none partial.
    let deleted: BTreeSet<(String, String)> = registry
        .iter()
        .filter(|(_, _, status)| status == "deleted")
        .map(|(id, uid, _)| (id.clone(), uid.clone()))
        .collect();
    for tenant in std::fs::read_dir(env.backups.path()).unwrap() {
        let tenant = tenant.unwrap();
        let id = tenant.file_name().into_string().unwrap();
        for uid in std::fs::read_dir(tenant.path()).unwrap() {
            let uid = uid.unwrap();
            let uid_name = uid.file_name().into_string().unwrap();
            for backup in std::fs::read_dir(uid.path()).unwrap() {
                let name = backup.unwrap().file_name().into_string().unwrap();
                assert!(
                    !name.starts_with('.'),
                    "{context}: partial backup `{name}` left"
                );
                // A restored tenant keeps the backup its committed soft delete wrote (the
                // only copy of what a dropped table held); any other backup must be of a
                // soft-deleted tenant.
                let recorded: bool = env
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM tenantctl.events \
                         WHERE tenant_uid = $1::text::uuid AND changes->>'backup' = $2)",
                        &[&uid_name, &name],
                    )
                    .get(0);
                assert!(
                    deleted.contains(&(id.clone(), uid_name.clone())) || recorded,
                    "{context}: backup `{name}` of `{id}` ({uid_name}) belongs to no soft-deleted tenant and no committed soft delete"
                );
            }
        }
    }

    let plan = env.tenantctl(&["plan"]).expect_code(0);
    assert!(
        plan.stdout.contains("No changes."),
        "{context}: the next plan is not empty:\n{}",
        plan.stdout
    );
}

fn walk(scenario: Scenario) {
    let probe = prepare(&scenario, &format!("crash_{}_probe", scenario.name));
    let points = boundaries(&probe);
    drop(probe);
    for (n, point) in points.iter().enumerate() {
        let env = prepare(&scenario, &format!("crash_{}_{n}", scenario.name));
        let failpoint = format!("{TENANT}:{point}");
        let killed = env.tenantctl_with(
            &["apply", "--auto-approve"],
            &[("TENANTCTL_FAILPOINT", failpoint.as_str())],
        );
        assert_ne!(
            killed.code, 0,
            "{}: {point} was never reached:\n{}",
            scenario.name, killed.stdout
        );
        assert!(
            killed.stderr.contains("reached: kill -9"),
            "{}: {point}: {}",
            scenario.name,
            killed.stderr
        );
        env.apply();
        check_converged(&env, &format!("{} killed at {point}", scenario.name));
    }
}

#[test]
fn a_create_killed_at_any_step_converges() {
    walk(Scenario {
        name: "create",
        before: &[],
        after: ACTIVE,
    });
}

#[test]
fn an_update_killed_at_any_step_converges() {
    walk(Scenario {
        name: "update",
        before: &[ACTIVE],
        after: UPDATED,
    });
}

#[test]
fn a_suspend_killed_at_any_step_converges() {
    walk(Scenario {
        name: "suspend",
        before: &[ACTIVE],
        after: SUSPENDED,
    });
}

#[test]
fn a_resume_killed_at_any_step_converges() {
    walk(Scenario {
        name: "resume",
        before: &[ACTIVE, SUSPENDED],
        after: ACTIVE,
    });
}

#[test]
fn a_soft_delete_killed_at_any_step_converges() {
    walk(Scenario {
        name: "delete",
        before: &[ACTIVE],
        after: DELETED,
    });
}

#[test]
fn a_restore_killed_at_any_step_converges() {
    walk(Scenario {
        name: "restore",
        before: &[ACTIVE, DELETED],
        after: ACTIVE,
    });
}

#[test]
fn a_purge_killed_at_any_step_converges() {
    walk(Scenario {
        name: "purge",
        before: &[ACTIVE, DUE],
        after: DUE,
    });
}
