//! `tenantctl watch` as a real process, on real files, against the real servers.

mod common;

use common::scratch_postgres::ScratchPostgres;
use common::watcher::{free_port, wait_until, Watcher};
use common::TestEnv;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(15);

fn schema_exists(env: &TestEnv, id: &str) -> bool {
    env.query_one(
        "SELECT to_regnamespace($1) IS NOT NULL",
        &[&format!("tenant_{id}")],
    )
    .get(0)
}

fn max_tokens(env: &TestEnv, id: &str) -> Option<String> {
    if !env
        .query_one("SELECT to_regclass('tenantctl.tenants') IS NOT NULL", &[])
        .get::<_, bool>(0)
    {
        return None;
    }
    env.query(
        "SELECT config->>'max_tokens' FROM tenantctl.tenants WHERE id = $1",
        &[&id],
    )
    .first()
    .map(|row| row.get(0))
}

#[test]
fn file_changes_are_applied_and_an_invalid_file_changes_nothing() {
    let env = TestEnv::new("watch_files");
    let watcher = Watcher::start(&env, "w", &["--apply", "--interval", "60s"], &[]);
    assert!(
        watcher.wait_for("reconcile", SOON),
        "no first reconcile:\n{}",
        watcher.dump()
    );

    env.tenant("acme", "pro", "");
    assert!(
        wait_until(SOON, || schema_exists(&env, "acme")
            && env.collection("tenant_acme").is_some()),
        "tenant not provisioned:\n{}",
        watcher.dump()
    );

    env.tenant("acme", "pro", "config:\n  max_tokens: 7000\n");
    assert!(
        wait_until(SOON, || max_tokens(&env, "acme").as_deref() == Some("7000")),
        "update not applied:\n{}",
        watcher.dump()
    );

    // An invalid file: logged with file and line, nothing applied, the watcher stays up.
    env.tenant("acme", "pro", "config:\n  max_tokens: 9000\n");
    env.tenant("broken", "no_such_plan", "");
    assert!(
        wait_until(SOON, || watcher.logs().iter().any(|line| {
            line["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("broken.yaml"))
                && line["line"] == 5
                && line["field"] == "plan"
        })),
        "invalid file not logged with file and line:\n{}",
        watcher.dump()
    );
    assert!(watcher.wait_for("reconcile: 1 error(s)", SOON));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        max_tokens(&env, "acme").as_deref(),
        Some("7000"),
        "nothing applied"
    );
    assert!(!schema_exists(&env, "broken"));
    let mut watcher = watcher;
    assert!(watcher.is_running());

    // Fixed: the pending change lands.
    env.tenant("broken", "pro", "");
    assert!(
        wait_until(SOON, || schema_exists(&env, "broken")
            && max_tokens(&env, "acme").as_deref() == Some("9000")),
        "fix not applied:\n{}",
        watcher.dump()
    );
}

#[test]
fn a_burst_of_saves_makes_one_reconcile() {
    let env = TestEnv::new("watch_burst");
    let watcher = Watcher::start(
        &env,
        "w",
        &["--apply", "--interval", "60s", "--debounce", "700ms"],
        &[],
    );
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());
    let before = watcher.count("reconcile");
    // 20 tenants written in one burst, as a `git checkout` would
    for n in 0..20 {
        env.tenant(&format!("t{n:02}"), "pro", "");
    }
    assert!(
        wait_until(SOON, || (0..20)
            .all(|n| schema_exists(&env, &format!("t{n:02}")))),
        "{}",
        watcher.dump()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let reconciles = watcher.count("reconcile") - before;
    assert_eq!(
        reconciles,
        1,
        "{reconciles} reconciles for one burst:\n{}",
        watcher.dump()
    );
}

#[test]
fn drift_is_repaired_within_one_interval_without_file_changes() {
    let env = TestEnv::new("watch_drift");
    env.tenant("initech", "pro", "");
    let watcher = Watcher::start(&env, "w", &["--apply", "--interval", "2s"], &[]);
    assert!(
        wait_until(SOON, || env.collection("tenant_initech").is_some()),
        "{}",
        watcher.dump()
    );
    env.delete_collection("tenant_initech");
    assert!(env.collection("tenant_initech").is_none());
    assert!(
        wait_until(Duration::from_secs(8), || env
            .collection("tenant_initech")
            .is_some()),
        "collection not repaired:\n{}",
        watcher.dump()
    );
    // The summary line follows the commit by a few milliseconds.
    assert!(
        wait_until(SOON, || watcher
            .logs()
            .iter()
            .any(|line| line["trigger"] == "interval" && line["applied"] == 1)),
        "{}",
        watcher.dump()
    );
}

/// The server processes of the watcher's sessions to this test's database, by pid.
fn watcher_sessions(env: &TestEnv) -> Vec<i32> {
    env.query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name LIKE 'tenantctl watch%' \
         ORDER BY pid",
        &[],
    )
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[test]
fn reconciles_reuse_the_same_sessions() {
    let env = TestEnv::new("watch_pool");
    env.tenant("initech", "pro", "");
    env.tenant("globex", "pro", "");
    let watcher = Watcher::start(&env, "w", &["--apply", "--interval", "1s"], &[]);
    let interval_reconciles = || {
        watcher
            .logs()
            .iter()
            .filter(|line| line["trigger"] == "interval")
            .count()
    };
    assert!(
        wait_until(SOON, || interval_reconciles() >= 2),
        "{}",
        watcher.dump()
    );
    let before = watcher_sessions(&env);
    let seen = interval_reconciles();
    assert!(
        wait_until(SOON, || interval_reconciles() >= seen + 3),
        "{}",
        watcher.dump()
    );
    let after = watcher_sessions(&env);
    // Its own session, the plan's reader and the reference builder: opened once, not per
    // reconcile.
    assert!(
        (2..=3).contains(&before.len()),
        "sessions: {before:?}\n{}",
        watcher.dump()
    );
    assert_eq!(before, after, "three reconciles opened new sessions");
}

#[test]
fn the_watcher_recovers_when_postgres_restarts() {
    let env = TestEnv::new("watch_restart");
    let server = ScratchPostgres::start();
    env.tenant("acme", "pro", "");
    let watcher = Watcher::start(
        &env,
        "w",
        &["--apply", "--interval", "2s"],
        &[("DATABASE_URL", &server.url())],
    );
    let registered = |id: &str| {
        let url = server.url();
        env.runtime.block_on(async {
            let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                return false;
            };
            tokio::spawn(connection);
            client
                .query_opt("SELECT 1 FROM tenantctl.tenants WHERE id = $1", &[&id])
                .await
                .ok()
                .flatten()
                .is_some()
        })
    };
    assert!(
        wait_until(SOON, || registered("acme")),
        "{}",
        watcher.dump()
    );

    server.stop();
    env.tenant("globex", "pro", "");
    assert!(
        wait_until(SOON, || watcher
            .logs()
            .iter()
            .any(|line| line["result"] == "failure")),
        "no failure logged while postgres is down:\n{}",
        watcher.dump()
    );
    server.start_again();
    assert!(
        wait_until(Duration::from_secs(30), || registered("globex")),
        "no recovery after the restart:\n{}",
        watcher.dump()
    );
    let mut watcher = watcher;
    assert!(watcher.is_running());
}

#[test]
fn only_the_leader_applies_and_a_standby_takes_over() {
    let env = TestEnv::new("watch_leader");
    let args = ["--apply", "--interval", "1s"];
    let mut first = Watcher::start(&env, "first", &args, &[]);
    assert!(
        first.wait_for("became the leader", SOON),
        "{}",
        first.dump()
    );
    let second = Watcher::start(&env, "second", &args, &[]);
    assert!(
        second.wait_for("reconcile: standby", SOON),
        "{}",
        second.dump()
    );

    env.tenant("acme", "pro", "");
    assert!(wait_until(SOON, || schema_exists(&env, "acme")));
    assert_eq!(first.count("applied"), 1, "{}", first.dump());
    assert_eq!(second.count("applied"), 0, "{}", second.dump());
    assert_eq!(second.count("became the leader"), 0);

    // The leader dies without a goodbye: its session ends, the standby takes the lock.
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    assert!(
        second.wait_for("became the leader", Duration::from_secs(10)),
        "standby never took over:\n{}",
        second.dump()
    );
    env.tenant("globex", "pro", "");
    assert!(wait_until(SOON, || schema_exists(&env, "globex")));
    assert_eq!(second.count("applied"), 1, "{}", second.dump());
}

#[test]
fn sigterm_stops_the_watcher_cleanly_within_five_seconds() {
    let env = TestEnv::new("watch_sigterm");
    env.tenant("acme", "pro", "");
    let mut watcher = Watcher::start(&env, "w", &["--apply", "--interval", "60s"], &[]);
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());
    watcher.signal("TERM");
    let code = watcher.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", watcher.dump());
    assert!(watcher.count("stopped") == 1, "{}", watcher.dump());
    // the leader lock went with it
    let held = env.query_one(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 1952804450 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    );
    assert_eq!(held.get::<_, i64>(0), 0);
}

/// `name{labels} value` lines of the Prometheus text format, by series.
fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut series = std::collections::BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE has a name");
            let kind = parts.next().expect("TYPE has a kind");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = key.split('{').next().unwrap();
        if let Some(labels) = key.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (label, quoted) = pair.split_once('=').expect("label=value");
                    assert!(label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                }
            }
        }
        let family = name.trim_end_matches("_sum").trim_end_matches("_count");
        assert!(
            typed.contains(family) || typed.contains(name),
            "no TYPE for {name}"
        );
        series.insert(key.to_string(), value);
    }
    series
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[test]
fn metrics_parse_as_prometheus_text_and_move() {
    let env = TestEnv::new("watch_metrics");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let watcher = Watcher::start(
        &env,
        "w",
        &["--apply", "--interval", "60s", "--listen", &listen],
        &[],
    );
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert!(wait_until(SOON, || http_get(port, "/readyz").0 == 200));
    let before = parse_prometheus(&http_get(port, "/metrics").1);
    let successes = before["tenantctl_reconciles_total{result=\"success\"}"];
    assert!(successes >= 1.0);
    assert_eq!(before["tenantctl_leader"], 1.0);

    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    assert!(wait_until(SOON, || schema_exists(&env, "acme")
        && schema_exists(&env, "globex")));
    assert!(wait_until(SOON, || {
        let after = parse_prometheus(&http_get(port, "/metrics").1);
        after["tenantctl_changes_applied_total"] >= 2.0
            && after["tenantctl_tenants{status=\"active\"}"] == 2.0
            && after["tenantctl_reconciles_total{result=\"success\"}"] > successes
            && after["tenantctl_last_success_timestamp_seconds"]
                >= before["tenantctl_last_success_timestamp_seconds"]
    }));

    // an invalid directory makes the watcher unready until it is fixed
    env.tenant("broken", "no_such_plan", "");
    assert!(wait_until(SOON, || http_get(port, "/readyz").0 == 503));
    let invalid = parse_prometheus(&http_get(port, "/metrics").1);
    assert!(invalid["tenantctl_reconciles_total{result=\"invalid\"}"] >= 1.0);
    env.remove("broken.yaml");
    assert!(wait_until(SOON, || http_get(port, "/readyz").0 == 200));
    assert_eq!(http_get(port, "/nope").0, 404);
}

#[test]
fn a_configmap_style_swap_of_the_data_link_makes_one_reconcile() {
    use std::os::unix::fs::symlink;
    let env = TestEnv::new("watch_configmap");
    // Kubernetes mounts a ConfigMap as `..<timestamp>/` folders, a `..data` link to the current
    // one, and visible links `name -> ..data/name`; an update writes a new folder and renames a
    // new `..data` link over the old one in one atomic step.
    let dir = env.dir_path();
    std::fs::remove_file(dir.join("plans.yaml")).unwrap();
    let version = |name: &str, max_tokens: u32| {
        let folder = dir.join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("plans.yaml"), common::PLANS).unwrap();
        std::fs::write(
            folder.join("acme.yaml"),
            common::tenant_yaml(
                "acme",
                "pro",
                &format!("config:\n  max_tokens: {max_tokens}\n"),
            ),
        )
        .unwrap();
    };
    version("..2026_11_27_10_00_00.000000001", 5000);
    symlink("..2026_11_27_10_00_00.000000001", dir.join("..data")).unwrap();
    symlink("..data/plans.yaml", dir.join("plans.yaml")).unwrap();
    symlink("..data/acme.yaml", dir.join("acme.yaml")).unwrap();

    let watcher = Watcher::start(&env, "w", &["--apply", "--interval", "60s"], &[]);
    assert!(
        wait_until(SOON, || max_tokens(&env, "acme").as_deref() == Some("5000")
            && watcher.count("reconcile") >= 1),
        "{}",
        watcher.dump()
    );
    let before = watcher.count("reconcile");

    version("..2026_11_27_10_05_00.000000002", 6000);
    symlink("..2026_11_27_10_05_00.000000002", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_27_10_00_00.000000001")).unwrap();

    assert!(
        wait_until(SOON, || max_tokens(&env, "acme").as_deref() == Some("6000")),
        "the swap was not applied:\n{}",
        watcher.dump()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        watcher.count("reconcile") - before,
        1,
        "one swap, one reconcile:\n{}",
        watcher.dump()
    );
    assert_eq!(
        watcher.count("invalid tenant file"),
        0,
        "{}",
        watcher.dump()
    );
}

#[test]
fn sigterm_during_an_apply_finishes_the_tenant_in_progress_and_exits_zero() {
    let env = TestEnv::new("watch_sigterm_busy");
    let mut watcher = Watcher::start(&env, "w", &["--apply", "--interval", "60s"], &[]);
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());
    for n in 0..150 {
        env.tenant(&format!("t{n:03}"), "pro", "");
    }
    assert!(
        watcher.wait_for("applied", SOON),
        "apply never started:\n{}",
        watcher.dump()
    );
    watcher.signal("TERM");
    let code = watcher.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", watcher.dump());
    assert!(watcher.count("stopped") == 1, "{}", watcher.dump());

    // Every tenant in the registry is whole; the others were not started at all.
    let registered: Vec<String> = env
        .query("SELECT id FROM tenantctl.tenants ORDER BY id", &[])
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        !registered.is_empty() && registered.len() < 150,
        "stopped after {} of 150 tenants:\n{}",
        registered.len(),
        watcher.dump()
    );
    for id in &registered {
        assert!(schema_exists(&env, id), "{id} half applied");
        assert!(
            env.collection(&format!("tenant_{id}")).is_some(),
            "{id} half applied"
        );
    }
    let schemas = env.query_one(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_t%'",
        &[],
    );
    assert_eq!(schemas.get::<_, i64>(0) as usize, registered.len());
    assert!(
        watcher.logs().iter().any(|line| line["message"]
            .as_str()
            .is_some_and(|m| m.contains("not started"))),
        "{}",
        watcher.dump()
    );

    // A new watcher finishes the work.
    let next = Watcher::start(&env, "next", &["--apply", "--interval", "60s"], &[]);
    assert!(
        wait_until(SOON, || env
            .query_one("SELECT count(*) FROM tenantctl.tenants", &[])
            .get::<_, i64>(0)
            == 150),
        "{}",
        next.dump()
    );
}

#[test]
fn the_watcher_recovers_when_chroma_goes_away_and_comes_back() {
    use common::fault_proxy::FaultProxy;
    let env = TestEnv::new("watch_chroma_down");
    // A trigger that never appears: the network is cut and healed by hand.
    let proxy = FaultProxy::start(&env.chroma_url, &["never sent by tenantctl"]);
    let watcher = Watcher::start(
        &env,
        "w",
        &["--apply", "--interval", "2s"],
        &[("CHROMA_URL", &proxy.url)],
    );
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());

    proxy.cut();
    env.tenant("acme", "pro", "");
    assert!(
        wait_until(SOON, || watcher.logs().iter().any(|line| {
            line["result"] == "failure"
                && line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("chroma"))
        })),
        "no failure naming chroma while it is away:\n{}",
        watcher.dump()
    );
    assert!(
        !schema_exists(&env, "acme"),
        "nothing half-created while chroma is away"
    );

    proxy.heal();
    assert!(
        wait_until(Duration::from_secs(30), || schema_exists(&env, "acme")
            && env.collection("tenant_acme").is_some()),
        "no recovery after chroma came back:\n{}",
        watcher.dump()
    );
}

#[test]
fn without_apply_the_watcher_only_logs_its_plans() {
    let env = TestEnv::new("watch_dry_run");
    let watcher = Watcher::start(&env, "w", &["--interval", "60s"], &[]);
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());
    env.tenant("acme", "pro", "");
    assert!(
        wait_until(SOON, || watcher.logs().iter().any(|line| {
            line["message"] == "would apply (dry run)" && line["tenant"] == "acme"
        })),
        "{}",
        watcher.dump()
    );
    assert!(watcher.wait_for(
        "reconcile: dry run: 1 change(s) planned, none applied",
        SOON
    ));
    assert!(!schema_exists(&env, "acme"));
    let control = env.query_one("SELECT to_regnamespace('tenantctl') IS NULL", &[]);
    assert!(
        control.get::<_, bool>(0),
        "a dry-run watcher changes nothing"
    );
    assert_eq!(watcher.count("became the leader"), 0);
}

/// `GET path` on a fresh connection that must answer within `limit`: (status, body).
fn http_get_within(port: u16, path: &str, limit: Duration) -> (u16, String) {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, limit)
        .unwrap_or_else(|error| panic!("connect for {path}: {error}"));
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.set_write_timeout(Some(limit)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|error| panic!("no complete answer to {path} within {limit:?}: {error}"));
    let response = String::from_utf8(response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Whether the server closed a non-blocking connection: end of file or a reset. Any bytes it
/// sent before closing are read and ignored.
fn closed_by_server(mut stream: &std::net::TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            // A server that closes a socket with unread bytes sends a reset instead of FIN.
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_clients_neither_starve_the_metrics_endpoint_nor_stop_the_reconciles() {
    use std::io::Write;
    const SLOW_CLIENTS: usize = 200;
    let env = TestEnv::new("watch_slow_clients");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let watcher = Watcher::start(
        &env,
        "w",
        &["--apply", "--interval", "60s", "--listen", &listen],
        &[],
    );
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());

    // Slowloris: each client sends the start of a request head and never finishes it.
    let slow: Vec<std::net::TcpStream> = (0..SLOW_CLIENTS)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            // The server may already have closed it (the connection cap): not an error here.
            let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ");
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();

    // Fresh clients are still served, promptly.
    let limit = Duration::from_secs(5);
    assert_eq!(
        http_get_within(port, "/healthz", limit),
        (200, "ok\n".to_string())
    );
    let (status, body) = http_get_within(port, "/metrics", limit);
    assert_eq!(status, 200);
    assert!(
        parse_prometheus(&body).contains_key("tenantctl_leader"),
        "{body}"
    );
    let still_open = slow.iter().filter(|s| !closed_by_server(s)).count();
    assert!(
        still_open > 0,
        "every slow client was closed at once: the probes above were not served alongside them"
    );

    // The watcher still reconciles while they hang on.
    env.tenant("acme", "pro", "");
    assert!(
        wait_until(SOON, || schema_exists(&env, "acme")),
        "file change not applied with {SLOW_CLIENTS} slow clients connected:\n{}",
        watcher.dump()
    );

    // Trickling a byte a second does not keep a connection: the server closes every one of
    // them (header timeout, connection deadline or eviction by the cap) within a generous bound.
    let mut open: Vec<usize> = (0..SLOW_CLIENTS).collect();
    let all_closed = wait_until(Duration::from_secs(30), || {
        open.retain(|&index| {
            let _ = (&slow[index]).write(b"x");
            !closed_by_server(&slow[index])
        });
        open.is_empty()
    });
    assert!(
        all_closed,
        "{} of {SLOW_CLIENTS} slow clients still connected after 30 s",
        open.len()
    );
    drop(slow);

    assert_eq!(http_get_within(port, "/healthz", limit).0, 200);
    env.tenant("globex", "pro", "");
    assert!(
        wait_until(SOON, || schema_exists(&env, "globex")),
        "{}",
        watcher.dump()
    );
}

#[test]
fn the_log_has_no_color_codes_when_stderr_is_not_a_terminal() {
    let env = TestEnv::new("watch_no_color");
    // The harness reads stderr through a pipe, and clears NO_COLOR: only the terminal check
    // can turn colour off here.
    for format in ["human", "json"] {
        let watcher =
            Watcher::start_with_log_format(&env, format, format, &["--interval", "60s"], &[]);
        assert!(
            wait_until(SOON, || String::from_utf8_lossy(&watcher.stderr_bytes())
                .contains("reconcile")),
            "{}",
            watcher.dump()
        );
        let stderr = watcher.stderr_bytes();
        assert!(
            !stderr.contains(&0x1b),
            "escape codes in the {format} log:\n{}",
            String::from_utf8_lossy(&stderr)
        );
    }
}

#[test]
fn readyz_turns_503_when_the_watched_directory_is_removed_and_200_when_it_is_back() {
    let env = TestEnv::new("watch_dir_removed");
    env.tenant("acme", "pro", "");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let watcher = Watcher::start(
        &env,
        "w",
        &["--apply", "--interval", "1s", "--listen", &listen],
        &[],
    );
    // The address is bound before the first reconcile.
    assert!(watcher.wait_for("reconcile", SOON), "{}", watcher.dump());
    let limit = Duration::from_secs(5);
    assert!(
        wait_until(SOON, || http_get_within(port, "/readyz", limit).0 == 200),
        "{}",
        watcher.dump()
    );
    let timer_reconciles = || {
        watcher
            .logs()
            .iter()
            .filter(|line| line["trigger"] == "interval")
            .count()
    };
    let logged = |needle: &str| {
        watcher.logs().iter().any(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.contains(needle))
        })
    };

    // Removed: timer reconciles go on (drift repair from the last good state), not ready.
    std::fs::remove_dir_all(env.dir_path()).unwrap();
    let before = timer_reconciles();
    assert!(
        wait_until(SOON, || timer_reconciles() >= before + 2),
        "{}",
        watcher.dump()
    );
    assert_eq!(
        http_get_within(port, "/readyz", limit).0,
        503,
        "ready without its directory:\n{}",
        watcher.dump()
    );
    assert!(
        logged("does not exist; reconciling the last good desired state"),
        "{}",
        watcher.dump()
    );

    // Back, but invalid: still not ready, and the log says why.
    env.write("plans.yaml", common::PLANS);
    env.tenant("acme", "pro", "");
    env.tenant("broken", "no_such_plan", "");
    let before = timer_reconciles();
    assert!(
        wait_until(SOON, || timer_reconciles() >= before + 2),
        "{}",
        watcher.dump()
    );
    assert_eq!(
        http_get_within(port, "/readyz", limit).0,
        503,
        "{}",
        watcher.dump()
    );
    assert!(
        logged("1 error(s) in the directory; reconciling the last good desired state"),
        "{}",
        watcher.dump()
    );

    // Valid again: ready again.
    env.remove("broken.yaml");
    assert!(
        wait_until(SOON, || http_get_within(port, "/readyz", limit).0 == 200),
        "{}",
        watcher.dump()
    );
    assert!(schema_exists(&env, "acme"));
}
