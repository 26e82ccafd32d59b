//! Reading the live state costs a fixed number of statements and of Chroma requests, whatever
//! the number of tenants and with or without migrations: statements counted exactly with
//! `pg_stat_statements` on a PostgreSQL of the test's own, requests by a loopback relay in front
//! of the real Chroma. (Chroma's collection list comes in pages of 500: past 500 tenants one
//! request more per 500.)

mod common;

use common::fault_proxy::FaultProxy;
use common::scratch_postgres::ScratchPostgres;
use common::TestEnv;

/// What one no-change `tenantctl plan` costs the servers.
#[derive(Debug, PartialEq)]
struct Cost {
    statements: i64,
    chroma_requests: usize,
}

/// Statements a `tenantctl plan` sends, counted by the server, and its Chroma requests.
fn cost_of_a_plan(env: &TestEnv, url: &str, admin: &tokio_postgres::Client) -> Cost {
    env.runtime
        .block_on(admin.execute("SELECT pg_stat_statements_reset()", &[]))
        .unwrap();
    // A relay that never trips: it only counts.
    let chroma = FaultProxy::start(&env.chroma_url, &[]);
    let plan = env
        .tenantctl_with(
            &["plan"],
            &[("DATABASE_URL", url), ("CHROMA_URL", &chroma.url)],
        )
        .expect_code(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    let rows = env
        .runtime
        .block_on(admin.query(
            "SELECT calls, left(query, 200) FROM pg_stat_statements \
             WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC",
            &[],
        ))
        .unwrap();
    // The busiest statements, to find the one that grew with the tenants.
    for row in rows.iter().take(5) {
        eprintln!("  {:>5} {}", row.get::<_, i64>(0), row.get::<_, String>(1));
    }
    Cost {
        statements: rows.iter().map(|row| row.get::<_, i64>(0)).sum(),
        chroma_requests: chroma.requests(),
    }
}

/// Ten migrations of the kinds applications write: tables, columns, indexes, a view, a
/// function, a sequence.
fn ten_migrations(env: &TestEnv) {
    env.write(
        "migrations/0001_conversations.sql",
        include_str!("../crates/core/src/spec/builtin/0001_conversations.sql"),
    );
    let more = [
        "CREATE TABLE documents (id bigserial PRIMARY KEY, title text NOT NULL, body text NOT NULL DEFAULT '');",
        "CREATE INDEX documents_title ON documents (title);",
        "ALTER TABLE conversations ADD COLUMN title text;",
        "CREATE TABLE feedback (id bigserial PRIMARY KEY, conversation uuid REFERENCES conversations (id), score int CHECK (score BETWEEN 1 AND 5));",
        "CREATE VIEW recent_conversations AS SELECT id, created_at FROM conversations WHERE created_at > now() - interval '7 days';",
        "ALTER TABLE documents ADD COLUMN summary text;",
        "CREATE SEQUENCE invoice_numbers;",
        "CREATE FUNCTION document_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM documents $$;",
        "CREATE UNIQUE INDEX feedback_once ON feedback (conversation);",
    ];
    for (index, sql) in more.iter().enumerate() {
        env.write(
            &format!("migrations/{:04}_step{}.sql", index + 2, index + 2),
            sql,
        );
    }
}

/// Cost of a no-change plan after applying 5 tenants, then 60.
fn counts(migrations: bool) -> Vec<Cost> {
    let env = TestEnv::new("scale");
    if migrations {
        ten_migrations(&env);
    }
    // `track=top`: the statements tenantctl sends. Nested ones would count the server's own
    // catalog lookups, e.g. the one `pg_get_viewdef` makes per view it describes.
    let server = ScratchPostgres::start_with(
        |_| {},
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top",
    );
    let url = server.url();
    let (admin, connection) = env
        .runtime
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .unwrap();
    env.runtime.spawn(connection);
    env.runtime
        .block_on(admin.batch_execute("CREATE EXTENSION pg_stat_statements"))
        .unwrap();

    let mut counts = Vec::new();
    for (from, to) in [(0, 5), (5, 60)] {
        for n in from..to {
            env.tenant(&format!("t{n:03}"), "pro", "");
        }
        env.tenantctl_with(&["apply", "--auto-approve"], &[("DATABASE_URL", &url)])
            .expect_code(0);
        counts.push(cost_of_a_plan(&env, &url, &admin));
    }
    counts
}

#[test]
fn a_plan_sends_the_same_statements_and_chroma_requests_for_5_and_60_tenants() {
    let counts = counts(false);
    eprintln!("cost of a no-change plan: {counts:?}");
    assert!(
        counts[0].statements > 0 && counts[0].chroma_requests > 0,
        "nothing counted: {counts:?}"
    );
    assert_eq!(
        counts[0], counts[1],
        "a no-change plan at 5 and at 60 tenants costs differently: {counts:?}"
    );
}

#[test]
fn with_ten_migrations_a_plan_still_costs_the_same_for_5_and_60_tenants() {
    let counts = counts(true);
    eprintln!("cost of a no-change plan with 10 migrations: {counts:?}");
    assert!(
        counts[0].statements > 0 && counts[0].chroma_requests > 0,
        "nothing counted: {counts:?}"
    );
    assert_eq!(
        counts[0], counts[1],
        "a no-change plan at 5 and at 60 tenants costs differently: {counts:?}"
    );
}

/// Rows at risk are counted for any number of tables: 12,000 (a purge of thousands of tenants)
/// in one `UNION ALL` exceeded the server's stack depth; in statements of 500 the counts come
/// back complete and each in its table's place.
#[test]
fn rows_at_risk_are_counted_for_any_number_of_tables() {
    let env = TestEnv::new("count_rows");
    env.execute(
        "CREATE SCHEMA counted; \
         CREATE TABLE counted.none (x int); \
         CREATE TABLE counted.one (x int); INSERT INTO counted.one VALUES (1); \
         CREATE TABLE counted.three (x int); INSERT INTO counted.three VALUES (1), (2), (3);",
    );
    let names = ["none", "one", "three"];
    let tables: Vec<(String, String)> = (0..12_000)
        .map(|i| ("counted".to_string(), names[(i * 7 / 3) % 3].to_string()))
        .collect();
    let counts = env
        .runtime
        .block_on(tenantctl::backend::postgres::registry::count_rows(
            &env.client,
            &tables,
        ))
        .expect("the rows are counted");
    assert_eq!(counts.len(), tables.len());
    for ((_, table), count) in tables.iter().zip(&counts) {
        let expected = match table.as_str() {
            "none" => 0,
            "one" => 1,
            _ => 3,
        };
        assert_eq!(*count, expected, "{table}");
    }
}

/// A table an application holds `ACCESS EXCLUSIVE` makes the count fail with the lock timeout
/// (10 s), instead of stalling the plan; the session is usable again afterwards.
#[test]
fn counting_rows_under_a_held_lock_fails_instead_of_waiting() {
    let env = TestEnv::new("count_locked");
    env.execute("CREATE SCHEMA counted; CREATE TABLE counted.held (x int);");
    let app = env.app_client();
    env.runtime
        .block_on(app.batch_execute("BEGIN; LOCK TABLE counted.held IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    let tables = vec![("counted".to_string(), "held".to_string())];
    let count = |client| {
        env.runtime
            .block_on(tenantctl::backend::postgres::registry::count_rows(
                client, &tables,
            ))
    };
    let error = count(&env.client).expect_err("the count waits for the lock");
    assert!(
        error.to_string().contains("count the rows at risk")
            && format!("{error:?}").contains("lock timeout"),
        "{error:?}"
    );
    env.runtime.block_on(app.batch_execute("ROLLBACK")).unwrap();
    assert_eq!(
        count(&env.client).expect("counted once the lock is gone"),
        vec![0]
    );
}
