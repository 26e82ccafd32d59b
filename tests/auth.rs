//! Authentication against real servers: a PostgreSQL cluster of the test's own that demands
//! `scram-sha-256` from every role but tenantctl's (`pg_hba.conf`), and logs every statement,
//! so that the tests can look for the generated secrets in everything tenantctl and the server
//! wrote.

mod common;

use common::scratch_postgres::ScratchPostgres;
use common::{Output, TestEnv};
use std::path::{Path, PathBuf};

/// A cluster whose `pg_hba.conf` lets tenantctl's `postgres` in and asks every other role for
/// its password, logging every statement.
fn scram_cluster() -> ScratchPostgres {
    ScratchPostgres::start_with(
        |data| {
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 host all postgres 127.0.0.1/32 trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();
        },
        "-c log_statement=all -c log_connections=on",
    )
}

struct Auth {
    env: TestEnv,
    server: ScratchPostgres,
    url: String,
    secrets: tempfile::TempDir,
    /// Everything tenantctl printed, to look for secrets in.
    printed: std::cell::RefCell<String>,
}

impl Auth {
    fn new(label: &str) -> Self {
        let env = TestEnv::new(label);
        let server = scram_cluster();
        let url = server.url();
        Auth {
            env,
            server,
            url,
            secrets: tempfile::tempdir().unwrap(),
            printed: Default::default(),
        }
    }

    fn secrets_dir(&self) -> PathBuf {
        self.secrets.path().join("delivered")
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut envs = vec![("DATABASE_URL", self.url.as_str())];
        envs.extend_from_slice(extra);
        let out = self.env.tenantctl_with(args, &envs);
        self.printed
            .borrow_mut()
            .push_str(&format!("{}\n{}\n", out.stdout, out.stderr));
        out
    }

    /// `apply --auto-approve` with the folder sink, expected to succeed.
    fn apply(&self) -> Output {
        let dir = self.secrets_dir();
        self.run(
            &[
                "apply",
                "--auto-approve",
                "--secrets-dir",
                dir.to_str().unwrap(),
            ],
            &[],
        )
        .expect_code(0)
    }

    fn delivered(&self, tenant: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.secrets_dir().join(format!("{tenant}.json")))
            .unwrap_or_else(|error| panic!("no secrets file for {tenant}: {error}"));
        serde_json::from_str(&text).unwrap()
    }

    fn admin(&self) -> tokio_postgres::Client {
        connect(&self.env, &self.url).expect("connect as tenantctl's user")
    }

    fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        let admin = self.admin();
        self.env
            .runtime
            .block_on(admin.query_one(sql, &[]))
            .unwrap()
            .get(0)
    }

    fn key(&self, tenant: &str, name: &str) -> String {
        self.delivered(tenant)["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["name"] == name)
            .unwrap_or_else(|| panic!("no key {name} for {tenant}"))["key"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn server_log(&self) -> String {
        self.server.log()
    }
}

fn connect(env: &TestEnv, url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    env.runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    })
}

fn tenant_with_auth(id: &str, auth: &str, extra: &str) -> String {
    format!(
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: {id}\nname: {id} corp\nplan: pro\n{extra}auth:\n{auth}"
    )
}

/// Every file under `root`, as text.
fn all_text(root: &Path) -> String {
    let mut text = String::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    text
}

#[test]
fn a_tenant_logs_in_with_its_password_until_suspended_and_rotation_replaces_it() {
    let auth = Auth::new("auth_login");
    let env = &auth.env;
    env.tenant("globex", "pro", "");
    env.write(
        "acme.yaml",
        &tenant_with_auth("acme", "  login: true\n  connection_limit: 5\n", ""),
    );

    // Without a sink, nothing happens at all.
    let refused = auth.run(&["apply", "--auto-approve"], &[]).expect_code(1);
    assert!(
        refused.stderr.contains("there is no secrets sink"),
        "{}",
        refused.stderr
    );
    assert!(!auth.scalar::<bool>("SELECT to_regnamespace('tenant_acme') IS NOT NULL"));

    let plan = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        plan.stdout
            .contains("+ password              generated (to the secrets sink)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+ connection limit      5"),
        "{}",
        plan.stdout
    );
    let saved = auth.secrets.path().join("create.plan");
    auth.run(&["plan", "--out", saved.to_str().unwrap()], &[])
        .expect_code(0);
    auth.apply();

    // The files are the sink's and nobody else's.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&auth.secrets_dir()), 0o700);
    assert_eq!(mode(&auth.secrets_dir().join("acme.json")), 0o600);
    assert!(
        !auth.secrets_dir().join("globex.json").exists(),
        "no auth, no secrets"
    );

    let first = auth.delivered("acme");
    let url = first["database_url"].as_str().unwrap().to_string();
    let password = first["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 22, "at least 128 bits");
    let acme = connect(env, &url).expect("acme logs in with its delivered password");
    let who: String = env
        .runtime
        .block_on(acme.query_one("SELECT current_user::text", &[]))
        .unwrap()
        .get(0);
    assert_eq!(who, env.role("acme"));
    // Its schema, and nothing else.
    env.runtime
        .block_on(
            acme.batch_execute(
                "INSERT INTO tenant_acme.conversations (id) VALUES (gen_random_uuid())",
            ),
        )
        .unwrap();
    for other in [
        "SELECT * FROM tenant_globex.conversations",
        "SELECT * FROM tenantctl.tenants",
        "SELECT * FROM tenantctl.api_keys",
    ] {
        let denied = env.runtime.block_on(acme.batch_execute(other));
        assert!(
            format!("{denied:?}").contains("permission denied"),
            "{other}: {denied:?}"
        );
    }
    let limit: i32 = auth.scalar(&format!(
        "SELECT rolconnlimit FROM pg_roles WHERE rolname = '{}'",
        env.role("acme")
    ));
    assert_eq!(limit, 5);

    // Suspended: the open session is gone, a new one is refused.
    env.write(
        "acme.yaml",
        &tenant_with_auth(
            "acme",
            "  login: true\n  connection_limit: 5\n",
            "state: suspended\nsuspension: { reason: \"invoice overdue\" }\n",
        ),
    );
    let suspended = auth.apply();
    assert!(
        suspended.stdout.contains("applied (suspend)"),
        "{}",
        suspended.stdout
    );
    let gone = env.runtime.block_on(acme.batch_execute("SELECT 1"));
    assert!(gone.is_err(), "the open session survived the suspension");
    assert!(connect(env, &url).is_err(), "a suspended tenant logged in");

    // Resumed: the same password works again.
    env.write(
        "acme.yaml",
        &tenant_with_auth("acme", "  login: true\n  connection_limit: 5\n", ""),
    );
    auth.apply();
    connect(env, &url).expect("login after resume");

    // Rotated: the old password fails, the new one works.
    env.write(
        "acme.yaml",
        &tenant_with_auth(
            "acme",
            "  login: true\n  connection_limit: 5\n  rotate: \"2026-12-01\"\n",
            "",
        ),
    );
    let plan = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        plan.stdout.contains("~ password              rotated"),
        "{}",
        plan.stdout
    );
    auth.apply();
    let second = auth.delivered("acme");
    let rotated_url = second["database_url"].as_str().unwrap().to_string();
    assert_ne!(rotated_url, url);
    assert!(connect(env, &url).is_err(), "the old password still works");
    connect(env, &rotated_url).expect("login with the rotated password");

    // Changed by hand: drift, repaired by a new password.
    auth.admin();
    env.runtime
        .block_on(auth.admin().batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; ALTER ROLE \"{}\" PASSWORD 'chosen-by-hand'",
            env.role("acme")
        )))
        .unwrap();
    let drift = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        drift.stdout.contains("password changed outside tenantctl"),
        "{}",
        drift.stdout
    );
    auth.apply();
    let third = auth.delivered("acme");
    connect(env, third["database_url"].as_str().unwrap()).expect("repaired password");
    assert!(auth
        .run(&["plan"], &[])
        .expect_code(0)
        .stdout
        .contains("No changes."));

    // Soft delete: login gone; the final backup, the events, the saved plan, every output and
    // the server's log hold none of the secrets.
    env.write(
        "acme.yaml",
        &tenant_with_auth(
            "acme",
            "  login: true\n  connection_limit: 5\n  rotate: \"2026-12-01\"\n",
            "state: deleted\n",
        ),
    );
    auth.apply();
    assert!(connect(env, third["database_url"].as_str().unwrap()).is_err());
    let events: String = auth.scalar(
        "SELECT string_agg(coalesce(changes::text, '') || coalesce(reason, ''), ' ') FROM tenantctl.events",
    );
    assert!(events.contains("password_generated") || events.contains("set_password"));
    let everywhere = format!(
        "{}\n{}\n{}\n{}\n{}",
        auth.printed.borrow(),
        events,
        std::fs::read_to_string(&saved).unwrap(),
        all_text(env.backups.path()),
        auth.server_log()
    );
    for delivered in [&first, &second, &third] {
        let password = delivered["password"].as_str().unwrap();
        assert!(
            !everywhere.contains(password),
            "a generated password was written somewhere"
        );
    }
}

#[test]
fn api_keys_authenticate_while_valid_and_the_app_role_can_do_nothing_else() {
    let auth = Auth::new("auth_keys");
    let env = &auth.env;
    let app = format!("{}app", env.role_prefix);
    env.runtime
        .block_on(auth.admin().batch_execute(&format!(
            "CREATE ROLE \"{app}\" LOGIN PASSWORD 'app-password'; \
             ALTER ROLE \"{app}\" SET log_statement = 'none'"
        )))
        .unwrap();
    env.write(
        "settings.yaml",
        &format!(
            "apiVersion: tenantctl/v1\nkind: Settings\nauth:\n  app_role: {app}\n  rotation_grace: 3s\n"
        ),
    );
    let keys = "  api_keys:\n    - name: web\n    - name: batch\n      expires: 2099-01-01\n";
    env.write("acme.yaml", &tenant_with_auth("acme", keys, ""));
    env.write(
        "globex.yaml",
        &tenant_with_auth("globex", "  api_keys:\n    - name: web\n", ""),
    );
    let plan = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        plan.stdout.contains(
            "+ api key batch         generated (to the secrets sink, expires 2099-01-01)"
        ),
        "{}",
        plan.stdout
    );
    auth.apply();
    let web = auth.key("acme", "web");
    let batch = auth.key("acme", "batch");
    let globex_web = auth.key("globex", "web");
    assert!(web.starts_with("tct_") && web.len() > 50);

    let app_url = format!(
        "postgres://{app}:app-password@127.0.0.1:{}/postgres",
        auth.server.port
    );
    // The application's own calls are not logged (they carry keys): the log holds what
    // tenantctl sent.
    let app_client = connect(env, &app_url).expect("the app role logs in");
    let who = |key: &str| -> Option<(String, String, serde_json::Value)> {
        env.runtime
            .block_on(app_client.query_opt("SELECT * FROM tenantctl.authenticate($1)", &[&key]))
            .unwrap()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
    };
    let (tenant, status, config) = who(&web).expect("a valid key");
    assert_eq!((tenant.as_str(), status.as_str()), ("acme", "active"));
    assert_eq!(config["max_tokens"], 4000);
    assert_eq!(who(&globex_web).unwrap().0, "globex");
    for unknown in [
        "tct_000000000000_nothing",
        "",
        "x",
        &format!("{}x", &web[..web.len() - 1]),
    ] {
        assert!(who(unknown).is_none(), "{unknown} authenticated");
    }
    // The app role can call the function and read nothing.
    for table in [
        "tenantctl.tenants",
        "tenantctl.api_keys",
        "tenantctl.events",
    ] {
        let denied = env
            .runtime
            .block_on(app_client.batch_execute(&format!("SELECT * FROM {table}")));
        assert!(
            format!("{denied:?}").contains("permission denied"),
            "{table}: {denied:?}"
        );
    }

    // Expired (the clock moved on): refused; the next apply puts the file's date back.
    env.runtime
        .block_on(auth.admin().batch_execute(
            "UPDATE tenantctl.api_keys SET expires_at = now() - interval '1 second' WHERE name = 'batch'",
        ))
        .unwrap();
    assert!(who(&batch).is_none(), "an expired key authenticated");
    let plan = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        plan.stdout.contains("expires 2099-01-01"),
        "{}",
        plan.stdout
    );
    auth.apply();
    assert!(who(&batch).is_some());

    // Removed from the file: revoked.
    env.write(
        "acme.yaml",
        &tenant_with_auth("acme", "  api_keys:\n    - name: web\n", ""),
    );
    let plan = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        plan.stdout.contains("revoked: removed from the file"),
        "{}",
        plan.stdout
    );
    auth.apply();
    assert!(who(&batch).is_none(), "a revoked key authenticated");
    let delivered = auth.delivered("acme");
    assert!(
        !delivered.to_string().contains(&batch),
        "the revoked key stays in the secrets file"
    );

    // Rotated: the old key works for the grace period, the new one at once; then the old one
    // stops, and the next run revokes it.
    env.write(
        "acme.yaml",
        &tenant_with_auth("acme", "  api_keys:\n    - name: web\n  rotate: r1\n", ""),
    );
    auth.apply();
    let new_web = auth.key("acme", "web");
    assert_ne!(new_web, web);
    assert!(
        who(&web).is_some(),
        "the old key stopped before its grace ended"
    );
    assert!(who(&new_web).is_some());
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(who(&web).is_none(), "the old key outlived its grace");
    let plan = auth.run(&["plan"], &[]).expect_code(0);
    assert!(
        plan.stdout
            .contains("revoked: its rotation grace period ended"),
        "{}",
        plan.stdout
    );
    auth.apply();
    let revoked: i64 = auth.scalar(
        "SELECT count(*) FROM tenantctl.api_keys WHERE revoked_at IS NOT NULL AND name = 'web'",
    );
    assert_eq!(revoked, 1);

    // A suspended tenant's keys answer nothing; resumed, they do again.
    env.write(
        "acme.yaml",
        &tenant_with_auth(
            "acme",
            "  api_keys:\n    - name: web\n  rotate: r1\n",
            "state: suspended\nsuspension: { reason: audit }\n",
        ),
    );
    auth.apply();
    assert!(
        who(&new_web).is_none(),
        "a suspended tenant's key authenticated"
    );
    env.write(
        "acme.yaml",
        &tenant_with_auth("acme", "  api_keys:\n    - name: web\n  rotate: r1\n", ""),
    );
    auth.apply();
    assert!(who(&new_web).is_some());

    // Every credential change is an event with its prefix and name, never the key.
    let admin = auth.admin();
    let events: Vec<(String, String)> = env.runtime.block_on(async {
        admin
            .query(
                "SELECT action, coalesce(changes::text, '') FROM tenantctl.events \
                 WHERE tenant_id = 'acme' ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    });
    let actions: Vec<&str> = events.iter().map(|(action, _)| action.as_str()).collect();
    for expected in [
        "api_key_created",
        "api_key_revoked",
        "api_key_retired",
        "api_key_expiry_changed",
        "secrets_delivered",
    ] {
        assert!(actions.contains(&expected), "{expected}: {actions:?}");
    }
    let all_events: String = events.iter().map(|(_, changes)| changes.as_str()).collect();
    assert!(all_events.contains(&web[..16]), "the prefix is recorded");
    let everywhere = format!(
        "{}\n{}\n{}",
        auth.printed.borrow(),
        all_events,
        auth.server_log()
    );
    for key in [&web, &batch, &new_web, &globex_web] {
        assert!(
            !everywhere.contains(key.as_str()),
            "a key was written somewhere"
        );
    }
}

#[test]
fn a_failing_secrets_command_leaves_nothing_of_the_tenant() {
    let auth = Auth::new("auth_sink");
    let env = &auth.env;
    env.write(
        "wayne.yaml",
        &tenant_with_auth("wayne", "  login: true\n  api_keys:\n    - name: web\n", ""),
    );
    let out = auth
        .run(
            &[
                "apply",
                "--auto-approve",
                "--secrets-command",
                "cat >/dev/null; echo 'vault is sealed' >&2; exit 7",
            ],
            &[],
        )
        .expect_code(1);
    assert!(
        out.stdout.contains("secrets command") && out.stdout.contains("exited 7: vault is sealed"),
        "{}",
        out.stdout
    );
    // The command's text is not repeated (it may hold a token of the secret store).
    assert!(!out.stdout.contains("cat >/dev/null"), "{}", out.stdout);
    let admin = auth.admin();
    let left: (bool, bool, i64) = env.runtime.block_on(async {
        let row = admin
            .query_one(
                "SELECT to_regnamespace('tenant_wayne') IS NOT NULL, \
                        EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), \
                        (SELECT count(*) FROM tenantctl.api_keys)",
                &[&env.role("wayne")],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    });
    assert_eq!(
        left,
        (false, false, 0),
        "something of wayne was left behind"
    );
    assert!(
        env.collection("tenant_wayne").is_none(),
        "its collection was left"
    );

    // A command that takes the secrets: applied, and the command got the keys.
    let received = auth.secrets.path().join("received.json");
    let command = format!("cat > {}", received.display());
    auth.run(
        &["apply", "--auto-approve", "--secrets-command", &command],
        &[],
    )
    .expect_code(0);
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&received).unwrap()).unwrap();
    assert_eq!(got["tenant"], "wayne");
    assert!(got["password"].as_str().unwrap().len() >= 22);
    assert!(got["api_keys"][0]["key"]
        .as_str()
        .unwrap()
        .starts_with("tct_"));
}

#[test]
fn bad_auth_input_is_a_clear_error_and_changes_nothing() {
    let auth = Auth::new("auth_bad");
    let env = &auth.env;
    let dir = auth.secrets_dir();
    let dir = dir.to_str().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "acme.yaml",
            tenant_with_auth("acme", "  logins: true\n", ""),
            "auth.logins: unknown field `logins`",
        ),
        (
            "acme.yaml",
            tenant_with_auth("acme", "  connection_limit: -5\n", ""),
            "auth.connection_limit: expected a non-negative integer, found -5",
        ),
        (
            "acme.yaml",
            tenant_with_auth("acme", "  api_keys:\n    - name: web\n    - name: web\n", ""),
            "duplicate API key name `web`",
        ),
        (
            "acme.yaml",
            tenant_with_auth(
                "acme",
                "  api_keys:\n    - name: web\n      expires: 2020-01-01\n",
                "",
            ),
            "auth.api_keys `web` expires on 2020-01-01, which has passed",
        ),
        (
            "settings.yaml",
            "apiVersion: tenantctl/v1\nkind: Settings\nauth:\n  app_role: \"app; DROP ROLE postgres\"\n"
                .to_string(),
            "auth.app_role: invalid role name",
        ),
        (
            "settings.yaml",
            "apiVersion: tenantctl/v1\nkind: Settings\nauth:\n  app_role: nobody_here\n"
                .to_string(),
            "the application role `nobody_here` (Settings `auth.app_role`) does not exist",
        ),
    ];
    for (file, text, expected) in cases {
        env.tenant("acme", "pro", "");
        let _ = std::fs::remove_file(env.path("settings.yaml"));
        env.write(file, &text);
        let out = auth
            .run(&["apply", "--auto-approve", "--secrets-dir", dir], &[])
            .expect_code(1);
        assert!(
            out.stderr.contains(expected) || out.stdout.contains(expected),
            "{expected}:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(
            !auth.scalar::<bool>("SELECT to_regnamespace('tenant_acme') IS NOT NULL"),
            "{expected}: something was applied"
        );
    }
}
