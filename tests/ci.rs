//! The CI workflow against the real servers: exit codes, saved plans, `show`, `--tenant`, and
//! concurrent applies.

mod common;

use common::TestEnv;

fn save(env: &TestEnv, name: &str) -> String {
    let path = env.backups.path().join(name);
    let path = path.to_str().unwrap().to_string();
    env.tenantctl(&["plan", "--out", &path]).expect_code(0);
    path
}

#[test]
fn detailed_exitcode_tells_no_changes_from_changes_from_errors() {
    let env = TestEnv::new("exitcodes");
    env.tenant("acme", "pro", "");
    let changes = env
        .tenantctl(&["plan", "--detailed-exitcode"])
        .expect_code(2);
    assert!(changes.stdout.contains("+ acme"), "{}", changes.stdout);
    // without the flag, a successful plan with changes exits 0
    env.tenantctl(&["plan"]).expect_code(0);
    env.apply();
    env.tenantctl(&["plan", "--detailed-exitcode"])
        .expect_code(0);
    env.tenant("acme", "pro", "config:\n  max_tokens: lots\n");
    let error = env
        .tenantctl(&["plan", "--detailed-exitcode"])
        .expect_code(1);
    assert!(error.stderr.contains("acme.yaml:7:15"), "{}", error.stderr);
    // a usage error is 1 as well, never 2
    let usage = env
        .tenantctl(&["plan", "--detailed-exitcode", "--no-such-flag"])
        .expect_code(1);
    assert!(usage.stderr.contains("--no-such-flag"), "{}", usage.stderr);
}

#[test]
fn a_saved_plan_applies_once_and_exactly() {
    let env = TestEnv::new("saved_once");
    env.tenant("acme", "pro", "");
    env.tenant("globex", "trial", "");
    // made against an empty database
    let file = save(&env, "first.plan");

    let shown = env.tenantctl(&["show", &file]).expect_code(0);
    assert!(
        shown.stdout.contains("Plan: 2 to create"),
        "{}",
        shown.stdout
    );
    let json = env
        .tenantctl(&["show", &file, "--format", "json"])
        .expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["summary"]["create"], 2);

    // the reviewed saved plan is the approval: no `--auto-approve` needed without a terminal
    let applied = env.tenantctl(&["apply", &file]).expect_code(0);
    assert!(
        applied.stdout.contains("Apply complete: 2 tenants applied"),
        "{}",
        applied.stdout
    );
    let recorded = env.query_one("SELECT count(*) FROM tenantctl.applied_plans", &[]);
    assert_eq!(recorded.get::<_, i64>(0), 1);

    // the same plan again: refused, nothing created twice
    let again = env
        .tenantctl(&["apply", "--auto-approve", &file])
        .expect_code(3);
    assert!(again.stderr.contains("already applied"), "{}", again.stderr);
    let events = env.query_one(
        "SELECT count(*) FROM tenantctl.events WHERE action <> 'create_started'",
        &[],
    );
    assert_eq!(events.get::<_, i64>(0), 2);
}

#[test]
fn a_saved_plan_is_refused_when_the_live_state_changed() {
    let env = TestEnv::new("saved_live");
    env.tenant("acme", "pro", "");
    env.apply();
    env.tenant("acme", "pro", "config:\n  max_tokens: 9000\n");
    let file = save(&env, "update.plan");
    // someone repairs or breaks something in between
    env.delete_collection("tenant_acme");
    let refused = env
        .tenantctl(&["apply", "--auto-approve", &file])
        .expect_code(3);
    assert!(
        refused
            .stderr
            .contains("the live state changed since the plan was made"),
        "{}",
        refused.stderr
    );
    let config = env.query_one(
        "SELECT config->>'max_tokens' FROM tenantctl.tenants WHERE id = 'acme'",
        &[],
    );
    assert_eq!(config.get::<_, String>(0), "4000", "nothing applied");
}

#[test]
fn a_saved_plan_is_refused_when_the_files_changed() {
    let env = TestEnv::new("saved_files");
    env.tenant("acme", "pro", "");
    let file = save(&env, "create.plan");
    env.tenant("globex", "pro", "");
    let refused = env
        .tenantctl(&["apply", "--auto-approve", &file])
        .expect_code(3);
    assert!(
        refused
            .stderr
            .contains("the tenant files or migrations changed since the plan was made"),
        "{}",
        refused.stderr
    );
    let control = env.query_one("SELECT to_regnamespace('tenant_acme') IS NULL", &[]);
    assert!(control.get::<_, bool>(0));
}

#[test]
fn a_saved_plan_holds_no_password() {
    let env = TestEnv::new("saved_secret");
    env.tenant("acme", "pro", "");
    // the test server trusts loopback connections, so any password is accepted and must not
    // end up in the file
    let url =
        env.database_url
            .replacen("postgres://postgres@", "postgres://postgres:hunter2-pw@", 1);
    let path = env.backups.path().join("secret.plan");
    let path = path.to_str().unwrap();
    env.tenantctl_with(&["plan", "--out", path], &[("DATABASE_URL", &url)])
        .expect_code(0);
    let saved = std::fs::read_to_string(path).unwrap();
    assert!(!saved.contains("hunter2"), "{saved}");
    assert!(saved.contains("(password hidden)"), "{saved}");
}

#[test]
fn options_of_a_saved_plan_cannot_be_overridden() {
    let env = TestEnv::new("saved_options");
    env.tenant("acme", "pro", "");
    let file = save(&env, "p.plan");
    // The applying side's options decide what a run may do; a plan made with others is
    // refused, not obeyed, and not silently overridden either.
    let refused = env.tenantctl(&["apply", &file, "--prune"]).expect_code(3);
    assert!(
        refused.stderr.contains(
            "the options of this apply differ from the plan's: `--prune` is true here but false in the plan; nothing was changed"
        ),
        "{}",
        refused.stderr
    );
    let refused = env
        .tenantctl(&["apply", &file, "--max-deletes", "0"])
        .expect_code(3);
    assert!(
        refused
            .stderr
            .contains("`--max-deletes` is 0 here but 10 in the plan"),
        "{}",
        refused.stderr
    );
    let refused = env
        .tenantctl_with(&["apply", &file], &[("TENANTCTL_RETENTION_DAYS", "1")])
        .expect_code(3);
    assert!(
        refused
            .stderr
            .contains("`--retention-days` is 1 here but unset in the plan"),
        "{}",
        refused.stderr
    );
    let schemas = env.query_one(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme'",
        &[],
    );
    assert_eq!(schemas.get::<_, i64>(0), 0, "nothing was applied");
    let empty = env
        .tenantctl_with(&["plan"], &[("DATABASE_URL", "")])
        .expect_code(1);
    assert!(
        empty
            .stderr
            .contains("`--database-url / DATABASE_URL` is empty"),
        "{}",
        empty.stderr
    );
}

#[test]
fn apply_reports_as_json_for_machines() {
    let env = TestEnv::new("apply_json");
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    let out = env
        .tenantctl(&["apply", "--auto-approve", "--format", "json"])
        .expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("only JSON on stdout");
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["applied"], 2);
    assert_eq!(report["failed"], 0);
    assert_eq!(
        report["migrated"],
        serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8])
    );
    let tenants: Vec<(&str, &str)> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tenant"].as_str().unwrap(), t["result"].as_str().unwrap()))
        .collect();
    assert_eq!(tenants, vec![("acme", "applied"), ("globex", "applied")]);
    let again = env
        .tenantctl(&["apply", "--auto-approve", "--format", "json"])
        .expect_code(0);
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["tenants"], serde_json::json!([]));
}

#[test]
fn tenant_filter_limits_plan_and_apply() {
    let env = TestEnv::new("targets");
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.tenant("initech", "pro", "");
    let planned = env
        .tenantctl(&["plan", "--tenant", "acme", "--tenant", "initech"])
        .expect_code(0);
    assert!(planned.stdout.contains("+ acme"), "{}", planned.stdout);
    assert!(planned.stdout.contains("+ initech"), "{}", planned.stdout);
    assert!(!planned.stdout.contains("globex"), "{}", planned.stdout);
    assert!(
        planned.stderr.contains(
            "`--tenant` limits this run to 2 of 3 tenants; the others were not looked at"
        ),
        "{}",
        planned.stderr
    );
    env.tenantctl(&["apply", "--auto-approve", "--tenant", "acme"])
        .expect_code(0);
    let ids: Vec<String> = env
        .query("SELECT id FROM tenantctl.tenants ORDER BY id", &[])
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, vec!["acme"]);
    let unknown = env
        .tenantctl(&["plan", "--tenant", "nobody"])
        .expect_code(1);
    assert!(
        unknown
            .stderr
            .contains("unknown tenant in `--tenant`: `nobody`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn apply_gives_up_on_a_held_lock_and_names_the_holder() {
    let env = TestEnv::new("lock_held");
    env.tenant("acme", "pro", "");
    // Another session holds the apply lock, as a running apply would.
    let holder_url = format!(
        "{}?application_name=tenantctl%20apply%20host%3Dci-runner-7%20pid%3D4242",
        env.database_url
    );
    let (holder, connection) = env
        .runtime
        .block_on(tokio_postgres::connect(&holder_url, tokio_postgres::NoTls))
        .unwrap();
    env.runtime.spawn(connection);
    env.runtime
        .block_on(holder.execute("SELECT pg_advisory_lock(1952804449)", &[]))
        .unwrap();

    let started = std::time::Instant::now();
    let blocked = env
        .tenantctl(&["apply", "--auto-approve", "--lock-timeout", "1s"])
        .expect_code(1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        blocked.stderr.contains("another apply is running"),
        "{}",
        blocked.stderr
    );
    assert!(
        blocked
            .stderr
            .contains("`tenantctl apply host=ci-runner-7 pid=4242`"),
        "{}",
        blocked.stderr
    );
    assert!(
        blocked.stderr.contains("connected since"),
        "{}",
        blocked.stderr
    );
    let control = env.query_one("SELECT to_regnamespace('tenant_acme') IS NULL", &[]);
    assert!(
        control.get::<_, bool>(0),
        "nothing applied without the lock"
    );

    env.runtime
        .block_on(holder.execute("SELECT pg_advisory_unlock(1952804449)", &[]))
        .unwrap();
    env.apply();
}

#[test]
fn two_concurrent_applies_serialize_and_the_final_state_is_right() {
    let env = TestEnv::new("concurrent");
    for n in 0..15 {
        env.tenant(&format!("t{n:02}"), "pro", "");
    }
    let run = || {
        let env = &env;
        move || env.tenantctl(&["apply", "--auto-approve", "--lock-timeout", "60s"])
    };
    let (first, second) = std::thread::scope(|scope| {
        let a = scope.spawn(run());
        let b = scope.spawn(run());
        (a.join().unwrap(), b.join().unwrap())
    });
    let first = first.expect_code(0);
    let second = second.expect_code(0);
    // one created everything; the other waited, re-planned under the lock and found nothing
    let outputs = [first.stdout.as_str(), second.stdout.as_str()];
    assert_eq!(
        outputs
            .iter()
            .filter(|out| out.contains("Apply complete: 15 tenants applied"))
            .count(),
        1,
        "{outputs:#?}"
    );
    assert_eq!(
        outputs
            .iter()
            .filter(|out| out.contains("No changes."))
            .count(),
        1,
        "{outputs:#?}"
    );
    let counts = env.query_one(
        "SELECT (SELECT count(*) FROM tenantctl.tenants), (SELECT count(*) FROM tenantctl.events WHERE action <> 'create_started')",
        &[],
    );
    assert_eq!(counts.get::<_, i64>(0), 15);
    assert_eq!(
        counts.get::<_, i64>(1),
        15,
        "each tenant created exactly once"
    );
}

#[test]
fn the_chroma_token_is_sent_but_never_shown() {
    use common::fault_proxy::FaultProxy;
    let env = TestEnv::new("token");
    env.tenant("acme", "pro", "");
    // The relay shows what goes over the wire to the real Chroma.
    let proxy = FaultProxy::start(&env.chroma_url, &["never sent by tenantctl"]);
    let token = "tok-7f3a9c-very-secret";
    let plan_file = env.backups.path().join("token.plan");
    let plan_file = plan_file.to_str().unwrap();
    let runs = [
        env.tenantctl_with(
            &["plan", "--out", plan_file, "--format", "json"],
            &[("CHROMA_URL", &proxy.url), ("CHROMA_TOKEN", token)],
        ),
        env.tenantctl_with(
            &["apply", "--auto-approve"],
            &[("CHROMA_URL", &proxy.url), ("CHROMA_TOKEN", token)],
        ),
    ];
    for run in &runs {
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(!run.stdout.contains(token) && !run.stderr.contains(token));
    }
    assert!(
        proxy.client_sent(&format!("authorization: Bearer {token}")),
        "the token was not sent to chroma"
    );
    let saved = std::fs::read_to_string(plan_file).unwrap();
    assert!(!saved.contains(token), "the saved plan holds the token");
    // and a watcher does not log it either
    let watcher = common::watcher::Watcher::start(
        &env,
        "w",
        &["--interval", "60s"],
        &[("CHROMA_URL", &proxy.url), ("CHROMA_TOKEN", token)],
    );
    assert!(watcher.wait_for("reconcile", std::time::Duration::from_secs(15)));
    assert!(!watcher.dump().contains(token));
}

#[test]
fn progress_goes_to_standard_error_and_quiet_silences_it() {
    let env = TestEnv::new("progress");
    for n in 0..12 {
        env.tenant(&format!("p{n:02}"), "pro", "");
    }
    // Without a terminal: a plain line every tenth of the work, on standard error only.
    let out = env
        .tenantctl(&["apply", "--auto-approve", "--format", "json"])
        .expect_code(0);
    let report: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("standard output is the JSON report alone");
    assert_eq!(report["applied"], 12);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("progress: "))
        .collect();
    assert!(!lines.is_empty(), "{}", out.stderr);
    assert!(
        lines[0].contains(" of 12 tenants (") && lines[0].contains("/s, about "),
        "{lines:?}"
    );
    // --quiet: none.
    for n in 0..12 {
        env.tenant(&format!("p{n:02}"), "trial", "");
    }
    let quiet = env
        .tenantctl(&["apply", "--auto-approve", "--quiet"])
        .expect_code(0);
    assert!(!quiet.stderr.contains("progress:"), "{}", quiet.stderr);
    assert!(
        quiet.stdout.contains("Apply complete: 12 tenants applied."),
        "{}",
        quiet.stdout
    );
}

/// The pull-request comment comes out whole: the workflow's marker first, its footer last,
/// within `--max-chars`, so nothing after tenantctl has to cut it; the same from a saved plan.
#[test]
fn the_markdown_comment_carries_the_marker_and_footer_within_the_budget() {
    let env = TestEnv::new("comment_budget");
    for index in 0..120 {
        env.tenant(&format!("customer_{index:03}"), "pro", "");
    }
    let footer = "---\nPlan of 1a2b3c4, [run 7](https://ci.example/run/7).";
    let args = |command: &'static str, extra: Vec<String>| {
        let mut args: Vec<String> = vec![command.to_string()];
        args.extend(extra);
        args.extend(
            [
                "--format",
                "markdown",
                "--comment-header",
                "<!-- tenantctl-plan -->",
                "--comment-footer",
                footer,
                "--max-chars",
                "5000",
            ]
            .map(str::to_string),
        );
        args
    };
    let saved = env.backups.path().join("comment.plan");
    let saved = saved.to_str().unwrap().to_string();
    for run in [
        args("plan", vec!["--out".to_string(), saved.clone()]),
        args("show", vec![saved.clone()]),
    ] {
        let run: Vec<&str> = run.iter().map(String::as_str).collect();
        let output = env.tenantctl(&run).expect_code(0);
        let comment = &output.stdout;
        assert!(comment.len() <= 5000, "{} bytes", comment.len());
        assert!(
            comment.starts_with("<!-- tenantctl-plan -->\n### tenantctl plan\n\nPlan: "),
            "{comment}"
        );
        assert!(comment.ends_with(&format!("\n{footer}\n")), "{comment}");
        assert!(
            comment.contains("<details><summary>120 new tenants</summary>"),
            "{comment}"
        );
        assert!(
            comment.contains("more new tenants, not listed here"),
            "{comment}"
        );
    }
    // With another format the options would do nothing: an error, not a silent no-op.
    let error = env
        .tenantctl(&["plan", "--comment-header", "x"])
        .expect_code(1);
    assert!(
        error.stderr.contains("add `--format markdown`"),
        "{}",
        error.stderr
    );
}
