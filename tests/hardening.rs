//! Regression tests for what an adversarial review found: forged saved plans, leaked passwords,
//! unbounded waits, privilege drift nobody saw, crash leftovers, and the first steps of a new
//! user. Each test runs the real binary against the real servers.

mod common;

use common::fault_proxy::FaultProxy;
use common::scratch_postgres::ScratchPostgres;
use common::watcher::wait_until;
use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn save(env: &TestEnv, name: &str, extra: &[(&str, &str)]) -> String {
    let file = env.path(name).display().to_string();
    env.tenantctl_with(&["plan", "--out", &file], extra)
        .expect_code(0);
    file
}

fn schema_exists(env: &TestEnv, schema: &str) -> bool {
    env.query_one("SELECT to_regnamespace($1::text) IS NOT NULL", &[&schema])
        .get(0)
}

// ---------------------------------------------------------------------------------------------
// 1. A saved plan is a proposal, never a program.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_hand_edited_saved_plan_is_refused_and_changes_nothing() {
    let env = TestEnv::new("forged_plan");
    env.tenant("acme", "pro", "protected: true\n");
    env.tenant("globex", "pro", "");
    env.apply();
    env.tenant("globex", "pro", "config: { max_tokens: 5000 }\n");
    let file = save(&env, "p.json", &[]);
    let honest = std::fs::read_to_string(&file).unwrap();

    // What `show` displays stays one harmless update; the steps say something else.
    let mut forged: serde_json::Value = serde_json::from_str(&honest).unwrap();
    let globex = forged["plan"]["changes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|change| change["tenant"] == "globex")
        .unwrap();
    let steps = globex["steps"].as_array_mut().unwrap();
    steps.push(json!({ "kind": "drop_schema", "schema": "tenant_acme" }));
    steps.push(
        json!({ "kind": "grant_schema_usage", "schema": "tenant_acme",
                       "role": env.role("globex") }),
    );
    std::fs::write(&file, forged.to_string()).unwrap();
    let shown = env.tenantctl(&["show", &file]).expect_code(0);
    assert!(shown.stdout.contains("~ globex"), "{}", shown.stdout);

    let refused = env.tenantctl(&["apply", &file]).expect_code(3);
    assert!(
        refused.stderr.contains(
            "planning again now gives a different plan (tenant `globex` differs); nothing was changed"
        ),
        "{}",
        refused.stderr
    );
    assert!(schema_exists(&env, "tenant_acme"), "the forged drop ran");
    let usage = env.query_one(
        "SELECT has_schema_privilege($1, 'tenant_acme', 'USAGE')",
        &[&env.role("globex")],
    );
    assert!(!usage.get::<_, bool>(0), "the forged grant ran");
    let tokens = env.query_one(
        "SELECT config->>'max_tokens' FROM tenantctl.tenants WHERE id = 'globex'",
        &[],
    );
    assert_eq!(tokens.get::<_, String>(0), "4000");

    // A malformed step is an error before anything, not a panic after the plan was recorded.
    let mut broken: serde_json::Value = serde_json::from_str(&honest).unwrap();
    for change in broken["plan"]["changes"].as_array_mut().unwrap() {
        for step in change["steps"].as_array_mut().unwrap() {
            if step["kind"] == "update_registry" {
                step["record"] = serde_json::Value::Null;
            }
        }
    }
    std::fs::write(&file, broken.to_string()).unwrap();
    let refused = env.tenantctl(&["apply", &file]).expect_code(1);
    assert!(
        refused.stderr.contains("is not a valid saved plan"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("panicked"), "{}", refused.stderr);
    let recorded = env.query_one("SELECT count(*) FROM tenantctl.applied_plans", &[]);
    assert_eq!(recorded.get::<_, i64>(0), 0);

    // The honest plan still applies.
    std::fs::write(&file, &honest).unwrap();
    env.tenantctl(&["apply", &file]).expect_code(0);
}

#[test]
fn saved_plans_are_private_and_signed_when_a_key_is_set() {
    let env = TestEnv::new("signed_plan");
    env.tenant("acme", "pro", "");
    let key = [("TENANTCTL_PLAN_KEY", "k1-secret")];
    let signed = save(&env, "signed.json", &key);
    let mode = std::fs::metadata(&signed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "saved plans are readable by their owner only");
    let text = std::fs::read_to_string(&signed).unwrap();
    assert!(!text.contains("k1-secret"));
    assert!(text.contains("\"signature\""));

    // A plan made without the key (a fork's job has no secrets) is refused where a key is set.
    let unsigned = save(&env, "unsigned.json", &[]);
    let refused = env
        .tenantctl_with(&["apply", &unsigned], &key)
        .expect_code(1);
    assert!(
        refused
            .stderr
            .contains("is not signed, and `TENANTCTL_PLAN_KEY` is set"),
        "{}",
        refused.stderr
    );
    // Another key, or a changed file: refused.
    let refused = env
        .tenantctl_with(&["apply", &signed], &[("TENANTCTL_PLAN_KEY", "k2")])
        .expect_code(1);
    assert!(
        refused
            .stderr
            .contains("carries a signature that does not match"),
        "{}",
        refused.stderr
    );
    let tampered = env.path("tampered.json");
    std::fs::write(
        &tampered,
        text.replace("\"max_deletes\": 10", "\"max_deletes\": 11"),
    )
    .unwrap();
    let refused = env
        .tenantctl_with(&["apply", &tampered.display().to_string()], &key)
        .expect_code(1);
    assert!(
        refused.stderr.contains("does not match"),
        "{}",
        refused.stderr
    );
    assert!(!schema_exists(&env, "tenant_acme"));
    let empty = env
        .tenantctl_with(&["apply", &signed], &[("TENANTCTL_PLAN_KEY", "")])
        .expect_code(1);
    assert!(
        empty.stderr.contains("`TENANTCTL_PLAN_KEY` is empty"),
        "{}",
        empty.stderr
    );

    env.tenantctl_with(&["apply", &signed], &key).expect_code(0);
    assert!(schema_exists(&env, "tenant_acme"));
}

// ---------------------------------------------------------------------------------------------
// 2. Passwords in any form a user may write a connection string.
// ---------------------------------------------------------------------------------------------

#[test]
fn passwords_in_any_form_never_reach_the_output() {
    let env = TestEnv::new("secrets");
    env.tenant("acme", "pro", "");
    let url = url::Url::parse(&env.database_url).unwrap();
    let (host, port) = (url.host_str().unwrap(), url.port().unwrap_or(5432));
    let database = env.database.clone();
    let secret = "s3cret-Pw";
    let chroma = url::Url::parse(&env.chroma_url).unwrap();
    let chroma_with_credentials = format!(
        "http://reader:{secret}@{}:{}",
        chroma.host_str().unwrap(),
        chroma.port().unwrap()
    );

    // Forms that connect (the test server trusts loopback, so any password is accepted).
    for connection in [
        format!("host={host} port={port} dbname={database} user=postgres password = {secret}"),
        format!(
            "host={host} port={port} dbname={database} user=postgres password='{secret} and more'"
        ),
        format!("postgres://postgres:{secret}@{host}:{port}/{database}?sslmode=disable"),
    ] {
        let environment = [
            ("DATABASE_URL", connection.as_str()),
            ("CHROMA_URL", chroma_with_credentials.as_str()),
        ];
        for format in ["text", "markdown", "json"] {
            let out = env
                .tenantctl_with(&["plan", "--format", format], &environment)
                .expect_code(0);
            assert!(!out.stdout.contains(secret), "{connection}: {}", out.stdout);
            assert!(!out.stderr.contains(secret), "{}", out.stderr);
        }
        let text = env.tenantctl_with(&["plan"], &environment).expect_code(0);
        assert!(
            text.stdout
                .contains(&format!("postgres://postgres@{host}:{port}/{database}"))
                && text.stdout.contains("(password hidden)"),
            "{}",
            text.stdout
        );
        assert!(
            text.stdout.contains("(credentials hidden)"),
            "{}",
            text.stdout
        );
        let file = env.path("p.json").display().to_string();
        env.tenantctl_with(&["plan", "--out", &file], &environment)
            .expect_code(0);
        let saved = std::fs::read_to_string(&file).unwrap();
        assert!(!saved.contains(secret), "{saved}");
    }

    // Forms that fail: the error names what is wrong and shows no part of the secret.
    for (connection, shown) in [
        (
            format!("postgres://postgres:{secret}@{host}:54x2/{database}"),
            format!("`postgres://{host}/…`"),
        ),
        (
            format!("host={host} PASSWORD={secret}"),
            "(a key=value connection string, not shown)".to_string(),
        ),
        (
            format!("postgres://postgres:{secret}@127.0.0.1:1,127.0.0.1:2/{database}"),
            "postgres://postgres@127.0.0.1:1,127.0.0.1:2/".to_string(),
        ),
        (
            format!("not a url {secret}"),
            "expected `postgres://user:password@host:port/database`".to_string(),
        ),
    ] {
        let out = env
            .tenantctl_with(&["plan"], &[("DATABASE_URL", connection.as_str())])
            .expect_code(1);
        assert!(!out.stderr.contains(secret), "{connection}: {}", out.stderr);
        assert!(
            !out.stderr.contains("s3cret"),
            "{connection}: {}",
            out.stderr
        );
        assert!(out.stderr.contains(&shown), "{connection}: {}", out.stderr);
    }
    let unreachable = format!("http://reader:{secret}@127.0.0.1:1");
    let out = env
        .tenantctl_with(&["plan"], &[("CHROMA_URL", unreachable.as_str())])
        .expect_code(1);
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("http://127.0.0.1:1 (credentials hidden)"),
        "{}",
        out.stderr
    );

    // `--help` shows no environment value.
    for command in ["plan", "apply", "watch"] {
        let help = env.tenantctl_with(
            &[command, "--help"],
            &[
                ("DATABASE_URL", "postgres://u:s3cret-Pw@db/x"),
                ("CHROMA_URL", chroma_with_credentials.as_str()),
            ],
        );
        assert_eq!(help.code, 0);
        assert!(!help.stdout.contains(secret), "{}", help.stdout);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Every wait is bounded.
// ---------------------------------------------------------------------------------------------

/// A tenant soft-deleted with retention 0: its purge is due at once.
fn due_purge(env: &TestEnv, id: &str) {
    env.tenant(id, "pro", "");
    env.apply();
    env.tenant(id, "pro", "state: deleted\nretention_days: 0\n");
    env.apply();
}

/// An application's open transaction holding a lock on the tenant's table, as a long report
/// query would.
fn hold_lock(env: &TestEnv, table: &str) -> tokio_postgres::Client {
    let app = env.app_client();
    env.runtime
        .block_on(app.batch_execute(&format!("BEGIN; LOCK TABLE {table} IN ACCESS SHARE MODE")))
        .unwrap();
    app
}

#[test]
fn a_purge_behind_an_application_lock_gives_up_after_the_lock_timeout() {
    let env = TestEnv::new("lock_timeout");
    due_purge(&env, "hooli");
    let app = hold_lock(&env, "tenant_hooli.conversations");
    let started = Instant::now();
    let out = env
        .tenantctl(&["apply", "--auto-approve", "--tenant-lock-timeout", "1s"])
        .expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        out.stdout.contains("rolled back") && out.stdout.contains("lock timeout"),
        "{}",
        out.stdout
    );
    assert!(schema_exists(&env, "tenant_hooli"), "rolled back whole");
    env.runtime.block_on(app.batch_execute("COMMIT")).unwrap();
    env.apply();
    assert!(!schema_exists(&env, "tenant_hooli"));
}

/// The server pid of tenantctl's session that waits for a lock, once there is one.
fn waiting_backend(env: &TestEnv) -> Option<i32> {
    let rows = env.query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'tenantctl apply%' \
           AND wait_event_type = 'Lock'",
        &[],
    );
    rows.first().map(|row| row.get(0))
}

#[test]
fn sigterm_cancels_a_statement_stuck_behind_a_lock() {
    let env = TestEnv::new("sigterm_cancel");
    due_purge(&env, "hooli");
    let app = hold_lock(&env, "tenant_hooli.conversations");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command
        .args(["apply", "--auto-approve", "--tenant-lock-timeout", "10m"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    env.configure(&mut command);
    let child = command.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || waiting_backend(&env).is_some()),
        "tenantctl never waited for the lock"
    );
    let stopped_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    // STOP_GRACE (10 s) for the tenant to finish, then its statement is cancelled.
    assert!(
        stopped_at.elapsed() < Duration::from_secs(25),
        "took {:?}",
        stopped_at.elapsed()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("rolled back"), "{stdout}");
    assert!(stdout.contains("Stopped by a signal"), "{stdout}");
    assert!(schema_exists(&env, "tenant_hooli"));
    // The lock was released with the session: another apply runs at once.
    env.runtime.block_on(app.batch_execute("COMMIT")).unwrap();
    env.apply();
}

#[test]
fn a_stopped_backend_does_not_stall_the_run() {
    // A server of its own: a stopped backend must not hold up other tests.
    let server = ScratchPostgres::start();
    let env = TestEnv::new("stopped_backend");
    let url = server.url();
    let run = |args: &[&str]| env.tenantctl_with(args, &[("DATABASE_URL", url.as_str())]);
    env.tenant("hooli", "pro", "");
    run(&["apply", "--auto-approve"]).expect_code(0);
    env.tenant("hooli", "pro", "state: deleted\nretention_days: 0\n");
    run(&["apply", "--auto-approve"]).expect_code(0);
    let client = |sql: &str| -> Vec<tokio_postgres::Row> {
        env.runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.query(sql, &[]).await.unwrap()
        })
    };
    let app = env.runtime.block_on(async {
        let (app, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        app.batch_execute("BEGIN; LOCK TABLE tenant_hooli.conversations IN ACCESS SHARE MODE")
            .await
            .unwrap();
        app
    });

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command
        .args([
            "apply",
            "--auto-approve",
            "--tenant-lock-timeout",
            "10m",
            "--statement-timeout",
            "2s",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    env.configure(&mut command);
    command.env("DATABASE_URL", &url);
    let child = command.spawn().unwrap();
    let mut pid = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            pid = client(
                "SELECT pid FROM pg_stat_activity \
                 WHERE application_name LIKE 'tenantctl apply%' AND wait_event_type = 'Lock'",
            )
            .first()
            .map(|row| row.get::<_, i32>(0));
            pid.is_some()
        }),
        "tenantctl never waited for the lock"
    );
    let pid = pid.unwrap().to_string();
    // A stopped backend cannot enforce its own statement_timeout.
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    drop(app);
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("postgres did not answer within 7s"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("error: stopped: the PostgreSQL session was lost"),
        "{stderr}"
    );
    assert!(!stderr.contains("release the apply lock"), "{stderr}");
}

#[test]
fn a_hung_chroma_stops_the_run_after_three_tenants() {
    let env = TestEnv::new("hung_chroma");
    let ids: Vec<String> = (0..8).map(|n| format!("h{n}")).collect();
    for id in &ids {
        env.tenant(id, "pro", "");
    }
    // Reads pass; the first collection create hangs, and so does everything after it.
    let proxy = FaultProxy::start_hanging(
        &env.chroma_url,
        &["POST /api/v2/tenants/", "/collections HTTP"],
    );
    let started = Instant::now();
    let out = env
        .tenantctl_with(
            // One worker, so the count of tenants tried before the stop is exact.
            &[
                "apply",
                "--auto-approve",
                "--chroma-timeout",
                "1s",
                "--parallelism",
                "1",
            ],
            &[("CHROMA_URL", &proxy.url)],
        )
        .expect_code(1);
    // Three tenants at a request and a compensation each, not eight.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(proxy.tripped());
    assert!(
        out.stdout.contains("3 failed, 5 not started"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("error: stopped: Chroma failed 3 tenants in a row"),
        "{}",
        out.stderr
    );
    let left = env.query_one("SELECT count(*) FROM tenantctl.tenants", &[]);
    assert_eq!(left.get::<_, i64>(0), 0, "the failed tenants rolled back");
}

#[test]
fn a_dead_postgres_stops_the_run_in_one_line() {
    let env = TestEnv::new("dead_postgres");
    let ids: Vec<String> = (0..12).map(|n| format!("d{n:02}")).collect();
    for id in &ids {
        env.tenant(id, "pro", "");
    }
    let url = url::Url::parse(&env.database_url).unwrap();
    let upstream = format!(
        "http://{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    );
    // The connection drops when the sixth tenant's schema is created, as a server that dies.
    let proxy = FaultProxy::start(&upstream, &["CREATE SCHEMA \"tenant_d05\""]);
    let through_proxy = format!(
        "postgres://postgres@{}/{}",
        proxy.url.trim_start_matches("http://"),
        env.database
    );
    let out = env
        .tenantctl_with(
            // One worker, so the tenants before the lost one are exactly the five committed.
            &["apply", "--auto-approve", "--parallelism", "1"],
            &[("DATABASE_URL", through_proxy.as_str())],
        )
        .expect_code(1);
    assert!(proxy.tripped());
    assert!(
        out.stdout
            .contains("5 tenants applied, 1 failed, 6 not started"),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stderr.matches("error:").count(),
        1,
        "one clear line: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("error: stopped: the PostgreSQL session was lost"),
        "{}",
        out.stderr
    );
    // Straight to the server again: the five committed, the rest is planned.
    let plan = env.plan();
    assert!(plan.stdout.contains("Plan: 7 to create"), "{}", plan.stdout);
}

// ---------------------------------------------------------------------------------------------
// 6. A tenant role may use its schema and nothing else.
// ---------------------------------------------------------------------------------------------

#[test]
fn privilege_drift_is_planned_and_repaired() {
    let env = TestEnv::new("privileges");
    // A view, a sequence and a function in every tenant schema, made by a migration.
    env.write(
        "migrations/0001_conversations.sql",
        include_str!("../crates/core/src/spec/builtin/0001_conversations.sql"),
    );
    env.write(
        "migrations/0002_reporting.sql",
        "CREATE VIEW everything AS SELECT id FROM conversations;\n\
         CREATE SEQUENCE ticket_numbers;\n\
         CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS 'SELECT 42';\n",
    );
    env.tenant("aa", "pro", "");
    env.tenant("bb", "pro", "");
    env.apply();
    let (aa, bb) = (env.role("aa"), env.role("bb"));
    let granted = env.query_one(
        "SELECT has_table_privilege($1, 'tenant_aa.everything', 'SELECT'),
                has_sequence_privilege($1, 'tenant_aa.ticket_numbers', 'USAGE'),
                has_function_privilege($1, 'tenant_aa.answer()', 'EXECUTE'),
                has_function_privilege($2, 'tenant_aa.answer()', 'EXECUTE')",
        &[&aa, &bb],
    );
    assert!(granted.get::<_, bool>(0) && granted.get::<_, bool>(1) && granted.get::<_, bool>(2));
    assert!(
        !granted.get::<_, bool>(3),
        "PUBLIC executes a tenant's function"
    );

    env.execute(&format!(
        "GRANT USAGE ON SCHEMA tenant_aa TO \"{bb}\";
         GRANT SELECT ON tenant_aa.conversations TO \"{bb}\";
         GRANT \"{aa}\" TO \"{bb}\";
         ALTER ROLE \"{aa}\" CREATEDB BYPASSRLS;
         GRANT pg_read_all_data TO \"{aa}\";
         GRANT TRUNCATE ON tenant_aa.conversations TO \"{aa}\";
         ALTER TABLE tenant_aa.conversations OWNER TO \"{aa}\";
         GRANT SELECT ON tenant_aa.everything TO PUBLIC;
         GRANT EXECUTE ON FUNCTION tenant_aa.answer() TO PUBLIC;
         ALTER FUNCTION tenant_aa.answer() SECURITY DEFINER;"
    ));
    // A grantee whose name PostgreSQL quotes in an ACL (a space, `=`, a quote).
    let odd = format!("{}odd = \"reporter\"", env.role_prefix);
    let odd_quoted = format!("\"{}\"", odd.replace('"', "\"\""));
    env.execute(&format!(
        "CREATE ROLE {odd_quoted} NOLOGIN; GRANT SELECT ON tenant_bb.conversations TO {odd_quoted};"
    ));
    let plan = env
        .tenantctl(&["plan", "--detailed-exitcode"])
        .expect_code(2);
    for expected in [
        format!("`{bb}` holds privileges on the schema"),
        format!("`{bb}` holds privileges on the table"),
        format!("`{bb}` is a member of the role"),
        "role has CREATEDB, BYPASSRLS".to_string(),
        "role is a member of `pg_read_all_data`".to_string(),
        "role owns table tenant_aa.conversations".to_string(),
        "`PUBLIC` holds privileges on the view".to_string(),
        "`PUBLIC` holds privileges on the function".to_string(),
        "(SECURITY DEFINER)".to_string(),
        format!("`{odd}` holds privileges on the table"),
    ] {
        assert!(
            plan.stdout.contains(&expected),
            "{expected}:\n{}",
            plan.stdout
        );
    }
    env.apply();
    let row = env.query_one(
        "SELECT has_schema_privilege($2, 'tenant_aa', 'USAGE'),
                has_table_privilege($2, 'tenant_aa.conversations', 'SELECT'),
                (SELECT count(*) FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.member
                   OR r.oid = am.roleid WHERE r.rolname = $1),
                (SELECT rolcreatedb OR rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = $1),
                (SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'tenant_aa.conversations'::regclass),
                has_table_privilege('public', 'tenant_aa.everything', 'SELECT'),
                (SELECT prosecdef FROM pg_proc WHERE oid = 'tenant_aa.answer()'::regprocedure),
                has_function_privilege($2, 'tenant_aa.answer()', 'EXECUTE'),
                has_table_privilege($1, 'tenant_aa.conversations', 'TRUNCATE'),
                has_table_privilege($1, 'tenant_aa.conversations', 'SELECT'),
                has_function_privilege($1, 'tenant_aa.answer()', 'EXECUTE')",
        &[&aa, &bb],
    );
    assert!(!row.get::<_, bool>(0), "bb still uses aa's schema");
    assert!(!row.get::<_, bool>(1), "bb still reads aa's table");
    assert_eq!(row.get::<_, i64>(2), 0, "memberships left");
    assert!(!row.get::<_, bool>(3), "attributes left");
    assert_ne!(row.get::<_, String>(4), aa, "aa still owns its table");
    assert!(!row.get::<_, bool>(5), "PUBLIC still reads the view");
    assert!(!row.get::<_, bool>(6), "still SECURITY DEFINER");
    assert!(!row.get::<_, bool>(7), "bb still executes the function");
    assert!(!row.get::<_, bool>(8), "aa can still truncate");
    assert!(row.get::<_, bool>(9), "aa lost its own table");
    assert!(row.get::<_, bool>(10), "aa lost its own function");
    let odd_reads = env.query_one(
        "SELECT has_table_privilege($1, 'tenant_bb.conversations', 'SELECT')",
        &[&odd],
    );
    assert!(
        !odd_reads.get::<_, bool>(0),
        "the oddly named role still reads bb's table"
    );
    let again = env.plan();
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    env.execute(&format!("DROP ROLE {odd_quoted}"));
}

// ---------------------------------------------------------------------------------------------
// 7. Crash leftovers in the backup folder.
// ---------------------------------------------------------------------------------------------

#[test]
fn backup_leftovers_are_reported_and_partial_ones_removed() {
    let env = TestEnv::new("backup_leftovers");
    // A local partial export is a hidden folder never renamed into place.
    backup_leftovers(env, ".20261130T010203Z.partial-0123abcd");
}

#[test]
fn object_store_leftovers_are_reported_and_partial_ones_removed() {
    let env = TestEnv::with_bucket("backup_leftovers_s3");
    // In an object store a partial export is a folder without a manifest.
    backup_leftovers(env, "20261130T010203Z");
}

/// A kill between the backup and the commit, and a partial export left beside it: the plan
/// reports both, apply removes only the partial one.
fn backup_leftovers(env: TestEnv, partial: &str) {
    env.tenant("hooli", "pro", "");
    env.apply();
    let uid: String = env
        .query_one(
            "SELECT uid::text FROM tenantctl.tenants WHERE id = 'hooli'",
            &[],
        )
        .get(0);
    // Killed between the backup's rename and the commit.
    env.tenant("hooli", "pro", "state: deleted\n");
    let killed = env.tenantctl_with(
        &["apply", "--auto-approve"],
        &[("TENANTCTL_FAILPOINT", "hooli:after:export_backup")],
    );
    assert_ne!(killed.code, 0);
    // And a partial export, as a kill during the export leaves it.
    env.put_backup_file(
        &format!("hooli/{uid}/{partial}/postgres/conversations.csv"),
        b"id\n",
    );
    let complete: Vec<String> = env.backup_files().into_keys().collect();
    assert_eq!(complete.len(), 4, "{complete:?}");

    env.tenant("hooli", "pro", "");
    let plan = env.plan();
    assert!(
        plan.stdout.contains(&format!(
            "hooli/{uid}/{partial} (1 file, 3 B): an export that was interrupted before it completed; removed by apply"
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("a complete backup no committed soft delete recorded"),
        "{}",
        plan.stdout
    );
    let applied = env.apply();
    assert!(
        applied.stdout.contains("Removed the partial backup"),
        "{}",
        applied.stdout
    );
    let left: Vec<String> = env.backup_files().into_keys().collect();
    assert_eq!(
        left,
        complete
            .into_iter()
            .filter(|path| !path.contains(partial))
            .collect::<Vec<_>>(),
        "the partial one is removed, the complete one is left for a human"
    );
    assert_eq!(left.len(), 3, "{left:?}");

    // Soft-deleted for real: every backup belongs to a soft-deleted tenant now.
    env.tenant("hooli", "pro", "state: deleted\n");
    env.apply();
    let plan = env.plan();
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("Backups no soft-deleted"),
        "{}",
        plan.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Small ones.
// ---------------------------------------------------------------------------------------------

#[test]
fn out_of_range_retention_is_a_clear_error() {
    let env = TestEnv::new("retention_range");
    env.tenant("acme", "pro", "");
    for out in [
        env.tenantctl(&["plan", "--retention-days", "4294967295"]),
        env.tenantctl_with(&["plan"], &[("TENANTCTL_RETENTION_DAYS", "4294967295")]),
        env.tenantctl(&["plan", "--retention-days", "3651"]),
    ] {
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains("not in 0..=3650"), "{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
}

#[test]
fn the_audit_trail_refuses_truncate() {
    let env = TestEnv::new("truncate_events");
    env.tenant("acme", "pro", "");
    env.apply();
    let error = env
        .try_execute("TRUNCATE tenantctl.events")
        .expect_err("TRUNCATE went through");
    assert!(
        error.to_string().contains("append-only") || format!("{error:?}").contains("append-only"),
        "{error:?}"
    );
    let events = env.query_one("SELECT count(*) FROM tenantctl.events", &[]);
    assert!(events.get::<_, i64>(0) > 0);
}

// ---------------------------------------------------------------------------------------------
// 9. What a new user tripped on.
// ---------------------------------------------------------------------------------------------

#[test]
fn first_steps_get_clear_answers() {
    let env = TestEnv::new("first_steps");
    env.tenant("acme", "pro", "");

    let help = env.tenantctl(&["watch", "--help"]);
    assert!(!help.stdout.contains("--tenant "), "{}", help.stdout);
    let help = env.tenantctl(&["apply", "--help"]);
    assert!(help.stdout.contains("--tenant <ID>"), "{}", help.stdout);

    let empty = env
        .tenantctl_with(&["plan"], &[("CHROMA_TOKEN", "")])
        .expect_code(1);
    assert!(
        empty.stderr.contains("error: `CHROMA_TOKEN` is empty"),
        "{}",
        empty.stderr
    );

    let typo = env
        .tenantctl_with(&["plan"], &[("CHROMA_DATABASE", "defualt_database")])
        .expect_code(0);
    let warning = typo.stdout.lines().nth(2).unwrap_or_default();
    assert!(
        warning.contains("warning: the Chroma database does not exist"),
        "{}",
        typo.stdout
    );
    let tenant_typo = env
        .tenantctl_with(&["plan"], &[("CHROMA_TENANT", "defualt_tenant")])
        .expect_code(0);
    assert!(
        tenant_typo
            .stdout
            .contains("warning: the Chroma tenant does not exist"),
        "{}",
        tenant_typo.stdout
    );

    let unitless = env
        .tenantctl(&["apply", "--lock-timeout", "5"])
        .expect_code(1);
    assert!(
        unitless
            .stderr
            .contains("`5` has no unit: write e.g. `5s` or `5m`"),
        "{}",
        unitless.stderr
    );

    let bad_chroma = env
        .tenantctl_with(&["plan"], &[("CHROMA_URL", "chroma:8000")])
        .expect_code(1);
    assert!(
        bad_chroma
            .stderr
            .contains("expected an http(s) URL such as `http://127.0.0.1:8000`"),
        "{}",
        bad_chroma.stderr
    );
    assert!(
        !bad_chroma.stderr.contains("relative URL"),
        "{}",
        bad_chroma.stderr
    );

    let dir = env.dir_path().display().to_string();
    let not_a_plan = env.tenantctl(&["apply", &dir]).expect_code(1);
    assert!(
        not_a_plan.stderr.contains(&format!(
            "hint: to apply the tenant files in it, use `tenantctl apply --dir {dir}`"
        )),
        "{}",
        not_a_plan.stderr
    );
}

#[test]
fn a_soft_delete_with_retention_zero_is_one_delete() {
    let env = TestEnv::new("retention_zero");
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.apply();
    env.tenant("acme", "pro", "state: deleted\nretention_days: 0\n");
    let plan = env.plan();
    assert!(plan.stdout.contains("delete (soft)"), "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("delete (soft), update"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("Plan: 1 to delete. 1 unchanged."),
        "{}",
        plan.stdout
    );
}
