//! Reading the live state costs a fixed number of statements, whatever the number of tenants:
//! counted exactly with `pg_stat_statements` on a PostgreSQL of the test's own.

mod common;

use common::scratch_postgres::ScratchPostgres;
use common::TestEnv;

/// Statements a `tenantctl plan` sends, counted by the server.
fn statements_of_a_plan(env: &TestEnv, url: &str, admin: &tokio_postgres::Client) -> i64 {
    env.runtime
        .block_on(admin.execute("SELECT pg_stat_statements_reset()", &[]))
        .unwrap();
    let plan = env
        .tenantctl_with(&["plan"], &[("DATABASE_URL", url)])
        .expect_code(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    let row = env
        .runtime
        .block_on(admin.query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE query NOT LIKE '%pg_stat_statements%'",
            &[],
        ))
        .unwrap();
    row.get(0)
}

#[test]
fn a_plan_sends_the_same_statements_for_5_and_60_tenants() {
    let env = TestEnv::new("scale");
    let server = ScratchPostgres::start_with(
        |_| {},
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
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
        counts.push(statements_of_a_plan(&env, &url, &admin));
    }
    eprintln!("statements per no-change plan: {counts:?}");
    assert!(counts[0] > 0, "nothing counted: {counts:?}");
    assert_eq!(
        counts[0], counts[1],
        "statements per no-change plan at 5 and at 60 tenants differ: {counts:?}"
    );
}
