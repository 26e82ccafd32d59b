//! Suspend, resume, soft delete, restore, purge, protection, orphans and blast radius against the
//! real PostgreSQL and Chroma.

mod common;

use common::fault_proxy::FaultProxy;
use common::TestEnv;
use serde_json::Value;
use sha2::Digest;

/// Runs `SELECT count(*)` on a tenant table as the tenant's role: `Ok(rows)` or the SQLSTATE.
fn read_as(env: &TestEnv, role: &str, schema: &str) -> Result<i64, String> {
    let result = env.runtime.block_on(async {
        env.client
            .batch_execute(&format!("SET ROLE \"{role}\""))
            .await
            .unwrap();
        let result = env
            .client
            .query_one(&format!("SELECT count(*) FROM {schema}.conversations"), &[])
            .await;
        env.client.batch_execute("RESET ROLE").await.unwrap();
        result
    });
    result.map(|row| row.get::<_, i64>(0)).map_err(|error| {
        error
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_default()
    })
}

fn backup_dir(env: &TestEnv) -> std::path::PathBuf {
    env.backups.path().to_path_buf()
}

fn run(env: &TestEnv, args: &[&str]) -> common::Output {
    env.tenantctl(args)
}

fn apply(env: &TestEnv) -> common::Output {
    run(env, &["apply", "--auto-approve"]).expect_code(0)
}

fn plan(env: &TestEnv) -> common::Output {
    run(env, &["plan"]).expect_code(0)
}

/// `(action, status_before, status_after, reason)` of an event.
type EventRow = (String, Option<String>, Option<String>, Option<String>);

/// The events of applied changes (the `create_started` marks a create writes before its
/// transaction are left out).
fn events(env: &TestEnv, tenant: &str) -> Vec<EventRow> {
    env.query(
        "SELECT action, status_before, status_after, reason FROM tenantctl.events \
         WHERE tenant_id = $1 AND action <> 'create_started' ORDER BY id",
        &[&tenant],
    )
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
    .collect()
}

fn seed_data(env: &TestEnv, id: &str, rows: usize, records: usize) {
    env.execute(&format!(
        "INSERT INTO tenant_{id}.conversations (id, messages) \
         SELECT gen_random_uuid(), jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'line one\nline \"two\", ok')) \
         FROM generate_series(1, {rows})"
    ));
    env.add_records(&format!("tenant_{id}"), records);
}

#[test]
fn suspend_revokes_access_and_resume_restores_it() {
    let env = TestEnv::new("suspend");
    env.tenant("initech", "pro", "");
    apply(&env);
    let role = env.role("initech");
    assert_eq!(read_as(&env, &role, "tenant_initech"), Ok(0));

    env.tenant(
        "initech",
        "pro",
        "state: suspended\nsuspension:\n  reason: invoice overdue\n",
    );
    let planned = plan(&env);
    assert!(
        planned
            .stdout
            .contains("= initech                   suspend  (reason: \"invoice overdue\")"),
        "{}",
        planned.stdout
    );
    assert!(planned
        .stdout
        .contains("~ access                granted -> revoked"));
    assert!(
        planned.stdout.contains("Plan: 1 to suspend."),
        "{}",
        planned.stdout
    );
    apply(&env);

    let row = env.query_one(
        "SELECT status, suspend_reason, suspended_at IS NOT NULL FROM tenantctl.tenants WHERE id = 'initech'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "suspended");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("invoice overdue")
    );
    assert!(row.get::<_, bool>(2));
    assert_eq!(
        read_as(&env, &role, "tenant_initech"),
        Err("42501".to_string()),
        "a suspended tenant's role is denied its own schema"
    );
    assert!(plan(&env).stdout.contains("No changes."));

    env.tenant("initech", "pro", "");
    let planned = plan(&env);
    assert!(planned.stdout.contains("resume"), "{}", planned.stdout);
    apply(&env);
    assert_eq!(read_as(&env, &role, "tenant_initech"), Ok(0));
    let row = env.query_one(
        "SELECT status, suspend_reason, suspended_at FROM tenantctl.tenants WHERE id = 'initech'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "active");
    assert_eq!(row.get::<_, Option<String>>(1), None);

    let log = events(&env, "initech");
    assert_eq!(
        log[1],
        (
            "suspend".into(),
            Some("active".into()),
            Some("suspended".into()),
            Some("invoice overdue".into())
        )
    );
    assert_eq!(
        (log[2].0.as_str(), log[2].1.as_deref(), log[2].2.as_deref()),
        ("resume", Some("suspended"), Some("active"))
    );
}

#[test]
fn soft_delete_keeps_data_writes_a_backup_and_restore_brings_it_back() {
    soft_delete_and_restore(TestEnv::new("soft_delete"));
}

#[test]
fn soft_delete_and_restore_with_backups_in_the_object_store() {
    soft_delete_and_restore(TestEnv::with_bucket("soft_delete_s3"));
}

fn soft_delete_and_restore(env: TestEnv) {
    env.tenant("hooli", "pro", "retention_days: 5\n");
    apply(&env);
    seed_data(&env, "hooli", 2, 3);

    env.tenant("hooli", "pro", "retention_days: 5\nstate: deleted\n");
    let planned = plan(&env);
    assert!(
        planned
            .stdout
            .contains("- hooli                     delete (soft)  data kept, purge after "),
        "{}",
        planned.stdout
    );
    // Rows are counted by the plan; records only by the backup (a soft delete keeps them, and
    // counting every collection costs Chroma one request each).
    assert!(
        planned
            .stdout
            .contains("final export of tables and collection (2 rows)\n"),
        "{}",
        planned.stdout
    );
    assert!(
        planned.stdout.contains("Plan: 1 to delete."),
        "{}",
        planned.stdout
    );
    apply(&env);

    let row = env.query_one(
        "SELECT status, purge_after - deleted_at = interval '5 days', deleted_at IS NOT NULL \
         FROM tenantctl.tenants WHERE id = 'hooli'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "deleted");
    assert!(
        row.get::<_, bool>(1),
        "purge_after = deleted_at + retention"
    );
    assert_eq!(
        read_as(&env, &env.role("hooli"), "tenant_hooli"),
        Err("42501".into())
    );
    let rows = env.query_one("SELECT count(*) FROM tenant_hooli.conversations", &[]);
    assert_eq!(rows.get::<_, i64>(0), 2, "data kept");
    assert!(env.collection("tenant_hooli").is_some(), "collection kept");

    // the final backup: a manifest whose counts match, files next to it
    let files = env.backup_files();
    let manifests: Vec<_> = files
        .iter()
        .filter(|(path, _)| path.ends_with("/manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{:?}", files.keys());
    let manifest: Value = serde_json::from_slice(manifests[0].1).unwrap();
    assert_eq!(manifest["tenant"], "hooli");
    // Every file the manifest names is there, with its size and sha256.
    let folder = manifests[0].0.trim_end_matches("manifest.json");
    let described: Vec<&Value> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .chain(std::iter::once(&manifest["chroma"]))
        .collect();
    assert_eq!(files.len(), described.len() + 1, "{:?}", files.keys());
    for file in described {
        let content = &files[&format!("{folder}{}", file["file"].as_str().unwrap())];
        assert_eq!(file["bytes"], content.len());
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(content))
        );
    }
    assert_eq!(manifest["tables"][0]["rows"], 2);
    assert_eq!(manifest["chroma"]["records"], 3);
    let event = events(&env, "hooli").pop().unwrap();
    assert_eq!(event.0, "delete");
    assert_eq!(event.2.as_deref(), Some("deleted"));

    // a scheduled purge is shown, not planned
    let planned = plan(&env);
    assert!(
        planned.stdout.contains("Scheduled purges"),
        "{}",
        planned.stdout
    );
    assert!(planned.stdout.contains("No changes."), "{}", planned.stdout);

    // restore before the purge: data and access back
    env.tenant("hooli", "pro", "retention_days: 5\n");
    let planned = plan(&env);
    assert!(
        planned
            .stdout
            .contains("+ hooli                     restore"),
        "{}",
        planned.stdout
    );
    apply(&env);
    assert_eq!(read_as(&env, &env.role("hooli"), "tenant_hooli"), Ok(2));
    let row = env.query_one(
        "SELECT status, deleted_at, purge_after FROM tenantctl.tenants WHERE id = 'hooli'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "active");
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(1)
        .is_none());
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(2)
        .is_none());
    assert_eq!(events(&env, "hooli").pop().unwrap().0, "restore");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn retention_zero_purges_everything_at_the_next_apply_and_leaves_an_event() {
    purge_at_retention_zero(TestEnv::new("purge"));
}

#[test]
fn a_purge_deletes_the_backups_in_the_object_store() {
    purge_at_retention_zero(TestEnv::with_bucket("purge_s3"));
}

fn purge_at_retention_zero(env: TestEnv) {
    env.tenant("piedpiper", "pro", "retention_days: 0\n");
    apply(&env);
    seed_data(&env, "piedpiper", 4, 2);
    env.tenant("piedpiper", "pro", "retention_days: 0\nstate: deleted\n");
    let first = apply(&env);
    assert!(
        first.stdout.contains("applied (delete)"),
        "{}",
        first.stdout
    );
    let files = env.backup_files();
    assert_eq!(files.len(), 3, "{:?}", files.keys());
    let bytes: usize = files.values().map(Vec::len).sum();

    let planned = plan(&env);
    let text = &planned.stdout;
    assert!(text.contains("! piedpiper"), "{text}");
    assert!(text.contains("purge  deleted "), "{text}");
    assert!(
        text.contains("- schema                tenant_piedpiper (4 rows)"),
        "{text}"
    );
    assert!(
        text.contains("- collection            tenant_piedpiper (2 records)"),
        "{text}"
    );
    // Measured where the backups are: the local folder, or the object store's listing.
    let shown = if bytes < 1000 {
        format!("{bytes} B")
    } else {
        format!("{:.1} kB", bytes as f64 / 1000.0)
    };
    assert!(
        text.contains(&format!("- backups               3 files, {shown}")),
        "{text}"
    );
    assert!(text.contains("Plan: 1 to purge."), "{text}");
    apply(&env);

    let row = env.query_one(
        "SELECT to_regnamespace('tenant_piedpiper') IS NULL, \
                NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), \
                NOT EXISTS (SELECT 1 FROM tenantctl.tenants WHERE id = 'piedpiper')",
        &[&env.role("piedpiper")],
    );
    for index in 0..3 {
        assert!(
            row.get::<_, bool>(index),
            "resource #{index} survived the purge"
        );
    }
    assert!(env.collection("tenant_piedpiper").is_none());
    assert!(env.backup_files().is_empty(), "backups deleted");
    let log = events(&env, "piedpiper");
    assert_eq!(log.last().unwrap().0, "purge");
    assert_eq!(log.last().unwrap().1.as_deref(), Some("deleted"));
    // a purged tenant whose file still says deleted is a no-op
    assert!(plan(&env).stdout.contains("No changes."));
}

#[test]
fn purge_waits_for_purge_after_by_the_database_clock() {
    let env = TestEnv::new("purge_time");
    env.tenant("globex", "pro", "state: deleted\n");
    env.tenant("globex", "pro", "");
    apply(&env);
    env.tenant("globex", "pro", "state: deleted\n");
    apply(&env);
    env.execute("UPDATE tenantctl.tenants SET purge_after = now() + interval '1 hour'");
    let planned = plan(&env);
    assert!(!planned.stdout.contains("purge  "), "{}", planned.stdout);
    assert!(
        planned.stdout.contains("Scheduled purges"),
        "{}",
        planned.stdout
    );
    apply(&env);
    assert!(env
        .query_one("SELECT to_regnamespace('tenant_globex') IS NOT NULL", &[])
        .get::<_, bool>(0));

    env.execute("UPDATE tenantctl.tenants SET purge_after = now() - interval '1 second'");
    assert!(plan(&env).stdout.contains("Plan: 1 to purge."));
    apply(&env);
    assert!(env
        .query_one("SELECT to_regnamespace('tenant_globex') IS NULL", &[])
        .get::<_, bool>(0));
}

#[test]
fn protected_tenant_is_refused_and_nothing_is_applied() {
    let env = TestEnv::new("protected");
    env.tenant("umbrella", "pro", "protected: true\n");
    env.tenant("acme", "pro", "");
    apply(&env);
    env.tenant("umbrella", "pro", "protected: true\nstate: deleted\n");
    env.tenant("acme", "trial", ""); // another change that must not be applied either
    let planned = run(&env, &["plan"]).expect_code(1);
    assert!(
        planned
            .stdout
            .contains("tenant `umbrella` is protected; refusing to soft-delete it"),
        "{}",
        planned.stdout
    );
    let refused = run(&env, &["apply", "--auto-approve"]).expect_code(1);
    assert!(
        refused.stderr.contains("apply refused"),
        "{}",
        refused.stderr
    );
    let rows = env.query(
        "SELECT id, status, plan FROM tenantctl.tenants ORDER BY id",
        &[],
    );
    let rows: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("acme".into(), "active".into(), "pro".into()),
            ("umbrella".into(), "active".into(), "pro".into())
        ]
    );
    // dropping the flag in the same change is not enough: the registry still says protected
    env.tenant("umbrella", "pro", "state: deleted\n");
    run(&env, &["plan"]).expect_code(1);
    // first a reviewed change removing the flag, then the delete
    env.tenant("umbrella", "pro", "");
    apply(&env);
    env.tenant("umbrella", "pro", "state: deleted\n");
    apply(&env);
}

#[test]
fn orphan_is_reported_then_soft_deleted_with_prune() {
    let env = TestEnv::new("orphan");
    env.tenant("soylent", "pro", "");
    env.tenant("acme", "pro", "");
    apply(&env);
    env.remove("soylent.yaml");

    let planned = plan(&env);
    assert!(
        planned.stdout.contains(
            "? soylent                   orphan: registry row (active), in no file; left alone (use `--prune`)"
        ),
        "{}",
        planned.stdout
    );
    assert!(
        planned.stdout.contains(
            "No changes. Live state matches the desired state (1 tenant). 1 orphan left alone."
        ),
        "{}",
        planned.stdout
    );
    apply(&env);
    let status = env.query_one(
        "SELECT status FROM tenantctl.tenants WHERE id = 'soylent'",
        &[],
    );
    assert_eq!(
        status.get::<_, String>(0),
        "active",
        "left alone without --prune"
    );

    let pruned = run(&env, &["apply", "--auto-approve", "--prune"]).expect_code(0);
    assert!(pruned.stdout.contains("- soylent"), "{}", pruned.stdout);
    let status = env.query_one(
        "SELECT status FROM tenantctl.tenants WHERE id = 'soylent'",
        &[],
    );
    assert_eq!(status.get::<_, String>(0), "deleted");
    // soft, never a purge: data and schema stay
    assert!(env
        .query_one("SELECT to_regnamespace('tenant_soylent') IS NOT NULL", &[])
        .get::<_, bool>(0));
    let event = events(&env, "soylent").pop().unwrap();
    assert_eq!(event.0, "delete");
    assert_eq!(event.3.as_deref(), Some("pruned: the tenant is in no file"));
}

#[test]
fn max_deletes_refuses_a_run_that_would_take_the_fleet_down() {
    let env = TestEnv::new("blast");
    for id in ["t1", "t2", "t3"] {
        env.tenant(id, "pro", "");
    }
    apply(&env);
    for id in ["t1", "t2", "t3"] {
        env.remove(&format!("{id}.yaml"));
    }
    env.tenant("t4", "pro", "");
    let refused = run(
        &env,
        &["apply", "--auto-approve", "--prune", "--max-deletes", "2"],
    )
    .expect_code(1);
    assert!(
        refused
            .stderr
            .contains("would soft-delete or purge 3 tenants, more than `--max-deletes 2`"),
        "{}",
        refused.stderr
    );
    let rows = env.query(
        "SELECT id FROM tenantctl.tenants WHERE status = 'active' ORDER BY id",
        &[],
    );
    assert_eq!(rows.len(), 3, "nothing applied, not even the create of t4");
    run(
        &env,
        &["apply", "--auto-approve", "--prune", "--max-deletes", "3"],
    )
    .expect_code(0);
    let rows = env.query(
        "SELECT id FROM tenantctl.tenants WHERE status = 'deleted'",
        &[],
    );
    assert_eq!(rows.len(), 3);
}

#[test]
fn a_purge_interrupted_by_chroma_stays_soft_deleted_and_finishes_next_time() {
    let env = TestEnv::new("purge_fault");
    env.tenant("vandelay", "pro", "retention_days: 0\n");
    apply(&env);
    env.tenant("vandelay", "pro", "retention_days: 0\nstate: deleted\n");
    apply(&env);

    let proxy = FaultProxy::start(&env.chroma_url, &["DELETE /api/v2/tenants/"]);
    let backups = backup_dir(&env);
    let failed = env
        .tenantctl_with(&["apply", "--auto-approve"], &[("CHROMA_URL", &proxy.url)])
        .expect_code(1);
    assert!(proxy.tripped(), "the fault was never injected");
    assert!(failed.stdout.contains("vandelay"), "{}", failed.stdout);
    assert!(failed.stdout.contains("rolled back"), "{}", failed.stdout);
    let row = env.query_one(
        "SELECT status, to_regnamespace('tenant_vandelay') IS NOT NULL FROM tenantctl.tenants WHERE id = 'vandelay'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "deleted", "still soft-deleted");
    assert!(row.get::<_, bool>(1), "schema still there");
    assert!(env.collection("tenant_vandelay").is_some());
    assert!(!walk(&backups).is_empty(), "backups still there");

    // the next plan shows exactly the remaining work, and the next apply finishes it
    assert!(plan(&env).stdout.contains("Plan: 1 to purge."));
    apply(&env);
    assert!(env.collection("tenant_vandelay").is_none());
    assert!(walk(&backups).is_empty());
    let gone = env.query_one("SELECT count(*) FROM tenantctl.tenants", &[]);
    assert_eq!(gone.get::<_, i64>(0), 0);
}

#[test]
fn parallel_apply_creates_deletes_and_purges_every_tenant_once() {
    let env = TestEnv::new("parallel");
    let ids: Vec<String> = (0..12).map(|n| format!("p{n:02}")).collect();
    for id in &ids {
        env.tenant(id, "pro", "retention_days: 0\n");
    }
    let created = run(&env, &["apply", "--auto-approve", "--parallelism", "4"]).expect_code(0);
    assert!(
        created
            .stdout
            .contains("Apply complete: 12 tenants applied"),
        "{}",
        created.stdout
    );
    for id in &ids {
        assert!(env.collection(&format!("tenant_{id}")).is_some(), "{id}");
        seed_data(&env, id, 1, 1);
    }
    assert!(plan(&env).stdout.contains("No changes."));

    for id in &ids {
        env.tenant(id, "pro", "retention_days: 0\nstate: deleted\n");
    }
    let parallel_delete = [
        "apply",
        "--auto-approve",
        "--parallelism",
        "4",
        "--max-deletes",
        "12",
    ];
    run(&env, &parallel_delete).expect_code(0);
    let manifests = walk(&backup_dir(&env))
        .into_iter()
        .filter(|path| path.ends_with("manifest.json"))
        .count();
    assert_eq!(manifests, 12, "one final backup per tenant");
    run(&env, &parallel_delete).expect_code(0);

    let left = env.query_one(
        "SELECT (SELECT count(*) FROM tenantctl.tenants), \
                (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_p%'), \
                (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1))",
        &[&env.role("")],
    );
    assert_eq!(
        (
            left.get::<_, i64>(0),
            left.get::<_, i64>(1),
            left.get::<_, i64>(2)
        ),
        (0, 0, 0)
    );
    for id in &ids {
        assert!(env.collection(&format!("tenant_{id}")).is_none(), "{id}");
        let actions: Vec<String> = events(&env, id).into_iter().map(|event| event.0).collect();
        assert_eq!(actions, vec!["create", "delete", "purge"], "{id}");
    }
    assert!(walk(&backup_dir(&env)).is_empty());
}

#[test]
fn the_default_backup_folder_is_relative_to_the_working_directory() {
    let env = TestEnv::new("relative_backups");
    let cwd = tempfile::tempdir().unwrap();
    env.tenant("hooli", "pro", "retention_days: 0\n");
    env.tenantctl_in(cwd.path(), &["apply", "--auto-approve"])
        .expect_code(0);
    env.tenant("hooli", "pro", "retention_days: 0\nstate: deleted\n");
    let deleted = env
        .tenantctl_in(cwd.path(), &["apply", "--auto-approve"])
        .expect_code(0);
    assert!(
        deleted.stdout.contains("applied (delete)"),
        "{}",
        deleted.stdout
    );
    let manifests: Vec<_> = walk(&cwd.path().join("backups"))
        .into_iter()
        .filter(|path| path.ends_with("manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    env.tenantctl_in(cwd.path(), &["apply", "--auto-approve"])
        .expect_code(0);
    assert!(
        walk(&cwd.path().join("backups")).is_empty(),
        "purged with the tenant"
    );
}

/// Purges run in parallel (a role without memberships is dropped without waiting for other
/// tenants), but a purged role that another tenant's repair also touches still waits: here
/// `bb` was made a member of `aa` by hand, so dropping `aa` and revoking the membership from
/// `bb` delete the same catalog row, and both must succeed in one parallel run.
#[test]
fn a_purge_and_a_repair_of_the_same_membership_run_in_parallel() {
    let env = TestEnv::new("purge_membership");
    for id in ["aa", "bb", "cc", "dd"] {
        env.tenant(id, "pro", "retention_days: 0\n");
    }
    apply(&env);
    for id in ["aa", "cc", "dd"] {
        env.tenant(id, "pro", "retention_days: 0\nstate: deleted\n");
    }
    run(&env, &["apply", "--auto-approve", "--max-deletes", "3"]).expect_code(0);
    let (aa, bb) = (env.role("aa"), env.role("bb"));
    env.execute(&format!("GRANT \"{aa}\" TO \"{bb}\""));

    let purged = run(
        &env,
        &[
            "apply",
            "--auto-approve",
            "--parallelism",
            "4",
            "--max-deletes",
            "3",
        ],
    )
    .expect_code(0);
    for line in ["✓ aa", "✓ bb", "✓ cc", "✓ dd"] {
        assert!(purged.stdout.contains(line), "{}", purged.stdout);
    }
    let left = env.query_one(
        "SELECT (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)), \
                (SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
                 WHERE r.rolname = $2)",
        &[&env.role(""), &bb],
    );
    assert_eq!(
        (left.get::<_, i64>(0), left.get::<_, i64>(1)),
        (1, 0),
        "only bb's role is left, a member of nothing"
    );
    assert!(plan(&env).stdout.contains("No changes."));
}
