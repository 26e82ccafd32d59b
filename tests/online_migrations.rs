//! Migrations marked `-- tenantctl: no-transaction` (indexes built concurrently), against the
//! real servers: run after each tenant's transaction, statement by statement, verified and
//! recorded; a build killed in the middle resumes at its statement and leaves no `INVALID`
//! index; a lock timeout retried in place; a new tenant gets the index in its create.

mod common;

use common::*;
use std::time::{Duration, Instant};

const CONVERSATIONS: &str = include_str!("../crates/core/src/spec/builtin/0001_conversations.sql");
const DOCUMENTS: &str = "\
CREATE TABLE documents (
    id bigserial PRIMARY KEY,
    title text NOT NULL
);
";
const INDEXES: &str = "\
-- tenantctl: no-transaction
-- Built online: tenants keep writing while their indexes build.
CREATE INDEX CONCURRENTLY documents_title ON documents (title);
CREATE INDEX CONCURRENTLY conversations_created_at
    ON conversations (created_at);
";

/// `(index, valid)` of every index of the tenant schemas that is not the index of a
/// constraint, sorted.
fn indexes(env: &TestEnv) -> Vec<(String, bool)> {
    env.query(
        "SELECT c.oid::regclass::text, i.indisvalid FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname LIKE 'tenant\\_%' \
           AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
         ORDER BY 1",
        &[],
    )
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

fn progress_rows(env: &TestEnv) -> i64 {
    env.query_one("SELECT count(*) FROM tenantctl.migration_statements", &[])
        .get(0)
}

fn setup(label: &str, tenants: &[&str]) -> TestEnv {
    let env = TestEnv::new(label);
    env.write("migrations/0001_conversations.sql", CONVERSATIONS);
    for id in tenants {
        env.tenant(id, "pro", "");
    }
    env.apply();
    env
}

#[test]
fn an_online_migration_reaches_every_tenant_after_its_transaction() {
    let env = setup("online_fleet", &["acme", "globex", "initech"]);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    env.write("migrations/0003_indexes.sql", INDEXES);
    // After the online migration, a transactional one that makes a table (and its sequence):
    // the tenant role's grants on them come with it, in its own transaction.
    env.write(
        "migrations/0004_tags.sql",
        "CREATE TABLE tags (id bigserial PRIMARY KEY, name text NOT NULL);\n",
    );
    let plan = env.plan();
    assert!(
        plan.stdout.contains(
            "Migrations: 3 pending (0002_documents, 0003_indexes (online), 0004_tags) for 3 tenants."
        ),
        "{}",
        plan.stdout
    );
    let json = env
        .tenantctl(&["plan", "--format", "json"])
        .expect_code(0)
        .json();
    let acme = entry(&json["changes"], "acme");
    let online: Vec<bool> = acme["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|migration| migration["online"] == true)
        .collect();
    assert_eq!(online, [false, true, false], "{acme:#}");

    let out = env
        .tenantctl(&["apply", "--auto-approve", "--parallelism", "2"])
        .expect_code(0);
    assert_eq!(
        out.stdout.matches("applied (migrate)").count(),
        3,
        "{}",
        out.stdout
    );
    for id in ["acme", "globex", "initech"] {
        assert_eq!(history(&env, id), [1, 2, 3, 4], "{id}");
    }
    let expected: Vec<(String, bool)> = ["acme", "globex", "initech"]
        .iter()
        .flat_map(|id| {
            [
                (format!("tenant_{id}.conversations_created_at"), true),
                (format!("tenant_{id}.documents_title"), true),
            ]
        })
        .collect();
    assert_eq!(indexes(&env), expected);
    assert_eq!(progress_rows(&env), 0);
    // Each tenant's event says which of its migrations ran after its commit.
    let after: Vec<String> = env
        .query(
            "SELECT changes->'after_commit'->>'migrations' FROM tenantctl.events \
             WHERE action = 'migrate' ORDER BY tenant_id",
            &[],
        )
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(after, ["[3, 4]", "[3, 4]", "[3, 4]"]);
    for id in ["acme", "globex", "initech"] {
        let role = env.role(id);
        let granted: bool = env
            .query_one(
                "SELECT has_table_privilege($1, $2, 'INSERT') \
                    AND has_sequence_privilege($1, $3, 'USAGE') \
                    AND has_table_privilege($1, $4, 'SELECT')",
                &[
                    &role,
                    &format!("tenant_{id}.tags"),
                    &format!("tenant_{id}.tags_id_seq"),
                    &format!("tenant_{id}.documents"),
                ],
            )
            .get(0);
        assert!(granted, "{id}");
    }
    // Each tenant's state in the run: applied once its last migration was recorded.
    let states: Vec<String> = env
        .query("SELECT DISTINCT status FROM tenantctl.migration_runs", &[])
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(states, ["applied"]);
    // Verified: one fingerprint per version, the same on every tenant.
    let fingerprints: i64 = env
        .query_one(
            "SELECT count(DISTINCT (version, schema_fingerprint)) FROM tenantctl.tenant_migrations",
            &[],
        )
        .get(0);
    assert_eq!(fingerprints, 4);

    // A new tenant builds the indexes in its create's transaction (no one uses its tables
    // yet), and ends the same.
    env.tenant("hooli", "pro", "");
    env.apply();
    assert_eq!(history(&env, "hooli"), [1, 2, 3, 4]);
    assert!(indexes(&env).contains(&("tenant_hooli.documents_title".to_string(), true)));
    // Its schema is the fleet's: the fingerprint recorded with the last migration is theirs.
    let fingerprints: i64 = env
        .query_one(
            "SELECT count(DISTINCT schema_fingerprint) FROM tenantctl.tenant_migrations \
             WHERE version = 4",
            &[],
        )
        .get(0);
    assert_eq!(fingerprints, 1);
    let plan = env.plan();
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);

    // An index dropped online, on every tenant.
    env.write(
        "migrations/0005_drop_title.sql",
        "-- tenantctl: no-transaction\nDROP INDEX CONCURRENTLY documents_title;\n",
    );
    env.apply();
    for id in ["acme", "globex", "initech", "hooli"] {
        assert_eq!(history(&env, id), [1, 2, 3, 4, 5], "{id}");
    }
    assert!(!indexes(&env)
        .iter()
        .any(|(name, _)| name.ends_with(".documents_title")));
    assert_eq!(indexes(&env).len(), 4, "{:?}", indexes(&env));

    // A concurrent build that failed by hand leaves an INVALID index: the plan names it.
    env.execute("INSERT INTO tenant_globex.documents (title) VALUES ('same'), ('same')");
    assert!(env
        .try_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY documents_unique ON tenant_globex.documents (title)"
        )
        .is_err());
    let plan = env.tenantctl(&["plan"]);
    assert!(
        plan.stdout.contains("index `documents_unique` is not in the migrations (INVALID: a concurrent build that did not finish)"),
        "{}{}",
        plan.stdout,
        plan.stderr
    );
}

#[test]
fn a_build_killed_in_the_middle_resumes_at_its_statement_and_leaves_no_invalid_index() {
    let env = setup("online_kill", &["acme", "globex"]);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    env.write("migrations/0003_indexes.sql", INDEXES);
    // An application writes to globex's conversations in a transaction it keeps open: the
    // build of its index (statement 2) waits for it, after statement 1 is done.
    let app = env.app_client();
    env.runtime
        .block_on(app.batch_execute(
            "BEGIN; INSERT INTO tenant_globex.conversations (id) VALUES (gen_random_uuid())",
        ))
        .unwrap();
    let mut child = env.spawn_tenantctl(&[
        "apply",
        "--auto-approve",
        "--parallelism",
        "1",
        "--migration-lock-timeout",
        "60s",
    ]);
    let waiting = "SELECT pid FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock' \
                     AND query LIKE 'CREATE INDEX CONCURRENTLY conversations_created_at%'";
    let started = Instant::now();
    while env.query(waiting, &[]).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started waiting"
        );
        assert!(child.try_wait().unwrap().is_none(), "tenantctl ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Mid-build: statement 1 recorded, the index of statement 2 there but INVALID.
    let done: Vec<i32> = env
        .query(
            "SELECT s.statement FROM tenantctl.migration_statements s \
             JOIN tenantctl.tenants t ON t.uid = s.tenant_uid WHERE t.id = 'globex'",
            &[],
        )
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(done, [1]);
    assert!(indexes(&env).contains(&("tenant_globex.conversations_created_at".to_string(), false)));
    child.kill().unwrap();
    child.wait().unwrap();
    // The server sees its client gone and stops the build (it does not hold its locks on).
    let started = Instant::now();
    while !env.query(waiting, &[]).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the build of a killed tenantctl kept running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    env.runtime.block_on(app.batch_execute("COMMIT")).unwrap();
    assert_eq!(history(&env, "acme"), [1, 2, 3]);
    assert_eq!(
        history(&env, "globex"),
        [1, 2],
        "0002 committed before the online part"
    );
    assert!(indexes(&env).contains(&("tenant_globex.conversations_created_at".to_string(), false)));
    let plan = env.plan();
    assert!(
        plan.stdout
            .contains("Migrations: 1 pending (0003_indexes (online)) for 1 tenant."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("a no-transaction migration stopped in the middle on 1 tenant: `globex` (`0003_indexes`, 1 of 2 statements done); apply resumes each at its next statement"),
        "{}",
        plan.stdout
    );
    let oid = |name: &str| -> u32 {
        env.query_one("SELECT $1::text::regclass::oid", &[&name])
            .get(0)
    };
    let title_index = oid("tenant_globex.documents_title");
    let invalid_index = oid("tenant_globex.conversations_created_at");

    // Resumed at statement 2: statement 1's index untouched, the invalid one rebuilt.
    env.apply();
    assert_eq!(history(&env, "globex"), [1, 2, 3]);
    assert_eq!(oid("tenant_globex.documents_title"), title_index);
    assert_ne!(oid("tenant_globex.conversations_created_at"), invalid_index);
    assert!(
        indexes(&env).iter().all(|(_, valid)| *valid),
        "{:?}",
        indexes(&env)
    );
    assert_eq!(indexes(&env).len(), 4);
    assert_eq!(progress_rows(&env), 0);
    let plan = env.plan();
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("stopped in the middle"),
        "{}",
        plan.stdout
    );
}

#[test]
fn a_lock_timeout_in_an_online_build_is_retried_in_place() {
    let env = setup("online_retry", &["acme", "globex"]);
    env.write(
        "migrations/0002_created_at.sql",
        "-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY conversations_created_at ON conversations (created_at);\n",
    );
    // An application's open write transaction on acme for 2.5 s: the build waits for it
    // past the 1 s lock timeout, fails (leaving an INVALID index), and is tried again.
    let holder = env.hold_in_transaction(
        "INSERT INTO tenant_acme.conversations (id) VALUES (gen_random_uuid())",
        std::time::Duration::from_millis(2500),
    );
    let out = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--migration-lock-timeout",
            "1s",
            "--migration-retries",
            "6",
            "--format",
            "json",
        ])
        .expect_code(0);
    holder.join().unwrap();
    let report = out.json();
    let tenant = |id: &str| entry(&report["tenants"], id).clone();
    assert_eq!(tenant("acme")["result"], "applied", "{report:#}");
    assert!(
        tenant("acme")["retries"].as_u64().unwrap_or(0) >= 1,
        "{report:#}"
    );
    assert!(tenant("globex").get("retries").is_none(), "{report:#}");
    assert_eq!(history(&env, "acme"), [1, 2]);
    assert_eq!(
        indexes(&env),
        [
            ("tenant_acme.conversations_created_at".to_string(), true),
            ("tenant_globex.conversations_created_at".to_string(), true)
        ]
    );

    // With no retries left, the tenant is reported unfinished (its transaction committed,
    // the index not built), and the next run builds it.
    env.write(
        "migrations/0003_messages.sql",
        "-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY conversations_messages ON conversations USING gin (messages);\n",
    );
    let app = env.app_client();
    env.runtime
        .block_on(app.batch_execute(
            "BEGIN; INSERT INTO tenant_acme.conversations (id) VALUES (gen_random_uuid())",
        ))
        .unwrap();
    let out = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--migration-lock-timeout",
            "200ms",
            "--migration-retries",
            "0",
        ])
        .expect_code(1);
    assert!(
        out.stdout
            .contains("committed (migrate), then stopped: migration `")
            && out.stdout.contains("0003_messages.sql` failed at line 2")
            && out.stdout.contains("the next apply resumes from there"),
        "{}",
        out.stdout
    );
    env.runtime.block_on(app.batch_execute("COMMIT")).unwrap();
    assert_eq!(history(&env, "acme"), [1, 2]);
    assert_eq!(history(&env, "globex"), [1, 2, 3]);
    let status: String = env
        .query_one(
            "SELECT status FROM tenantctl.migration_runs WHERE tenant_id = 'acme' \
             ORDER BY updated_at DESC LIMIT 1",
            &[],
        )
        .get(0);
    assert_eq!(status, "failed");
    env.apply();
    assert_eq!(history(&env, "acme"), [1, 2, 3]);
    assert!(
        indexes(&env).iter().all(|(_, valid)| *valid),
        "{:?}",
        indexes(&env)
    );
}

/// SIGTERM while an online build waits out its backoff: no further attempt starts, the run
/// ends promptly with the tenant unfinished, and the next apply builds the index.
#[test]
fn a_stop_signal_ends_the_backoff_of_an_online_build() {
    let env = setup("online_term", &["acme"]);
    env.write(
        "migrations/0002_created_at.sql",
        "-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY conversations_created_at ON conversations (created_at);\n",
    );
    // An application's write transaction on acme, held longer than the test: every attempt
    // of the build times out, and 10 retries would back off for over a minute.
    let app = env.app_client();
    env.runtime
        .block_on(app.batch_execute(
            "BEGIN; INSERT INTO tenant_acme.conversations (id) VALUES (gen_random_uuid())",
        ))
        .unwrap();
    let mut child = env.spawn_tenantctl(&[
        "apply",
        "--auto-approve",
        "--migration-lock-timeout",
        "300ms",
        "--migration-retries",
        "10",
    ]);
    // The first attempt has failed once its INVALID index is there.
    let started = Instant::now();
    while !indexes(&env).contains(&("tenant_acme.conversations_created_at".to_string(), false)) {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "tenantctl ended early:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(400));
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        signalled.elapsed() < Duration::from_secs(8),
        "the run went on for {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("committed (migrate), then stopped: stopped by a signal before statement 1 of `0002_created_at`")
            && stdout.contains("the next apply resumes from there"),
        "{stdout}"
    );
    assert_eq!(history(&env, "acme"), [1]);
    env.runtime.block_on(app.batch_execute("COMMIT")).unwrap();
    env.apply();
    assert_eq!(history(&env, "acme"), [1, 2]);
    assert_eq!(
        indexes(&env),
        [("tenant_acme.conversations_created_at".to_string(), true)]
    );
}
