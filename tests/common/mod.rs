//! Test harness for tests against the real PostgreSQL and Chroma that `scripts/test.sh` starts.
//!
//! Every test gets its own PostgreSQL database, its own Chroma database and its own role prefix
//! (roles are cluster-wide), so tests run in parallel without seeing each other. The servers are
//! required: a test fails, never skips, when `TENANTCTL_TEST_DATABASE_URL` or
//! `TENANTCTL_TEST_CHROMA_URL` is missing or unreachable.

#![allow(dead_code)] // each test binary uses a different subset of the harness

pub mod bucket;
pub mod fault_proxy;
pub mod scratch_postgres;
pub mod watcher;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::{types::ToSql, Client, NoTls, Row};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two plans used by most tests (the fixture the unit tests of `spec` use too).
pub const PLANS: &str = include_str!("../../crates/core/src/spec/fixtures/plans.yaml");

/// A tenant document.
pub fn tenant_yaml(id: &str, plan: &str, extra: &str) -> String {
    format!(
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: {id}\nname: {id} corp\nplan: {plan}\n{extra}"
    )
}

/// What a run of the binary printed and returned.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Standard output parsed as JSON (`--format json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}):\n{}", self.stdout))
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("run tenantctl");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The migration versions recorded for tenant `id`, in order.
pub fn history(env: &TestEnv, tenant: &str) -> Vec<i32> {
    env.query(
        "SELECT m.version FROM tenantctl.tenant_migrations m \
         JOIN tenantctl.tenants t ON t.uid = m.tenant_uid WHERE t.id = $1 ORDER BY m.version",
        &[&tenant],
    )
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// The entry of `id` in a JSON plan's `changes` or an apply report's `tenants`.
pub fn entry<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list.as_array()
        .and_then(|entries| entries.iter().find(|entry| entry["tenant"] == id))
        .unwrap_or_else(|| panic!("no entry for `{id}` in {list:#}"))
}

/// One isolated environment on the shared test servers.
pub struct TestEnv {
    pub runtime: tokio::runtime::Runtime,
    pub database: String,
    pub database_url: String,
    admin_url: String,
    pub chroma_url: String,
    pub chroma_database: String,
    pub role_prefix: String,
    pub dir: tempfile::TempDir,
    /// Where this test's final backups go (`TENANTCTL_BACKUP_DIR`), unless `bucket` is set;
    /// also a scratch folder for saved plans.
    pub backups: tempfile::TempDir,
    /// With [`TestEnv::with_bucket`]: backups go to this prefix of the test bucket instead.
    pub bucket: Option<bucket::TestBucket>,
    pub client: Client,
    http: reqwest::Client,
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real servers; run them with `bash scripts/test.sh`"
        )
    })
}

/// Replaces the database name of a postgres URL.
fn with_database(url: &str, database: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("TENANTCTL_TEST_DATABASE_URL is a URL");
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot reach the test PostgreSQL at {url}: {error}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl TestEnv {
    /// Creates a fresh database, Chroma database name and role prefix for `label`.
    pub fn new(label: &str) -> Self {
        let admin_url = required_env("TENANTCTL_TEST_DATABASE_URL");
        let chroma_url = required_env("TENANTCTL_TEST_CHROMA_URL");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let database = format!("tct_{label}_{pid}_{n}");
        let role_prefix = format!("r{pid}x{n}_");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let database_url = with_database(&admin_url, &database);
        let client = runtime.block_on(async {
            let admin = connect(&admin_url).await;
            admin
                .batch_execute(&format!("CREATE DATABASE \"{database}\""))
                .await
                .expect("create the test database");
            connect(&database_url).await
        });
        let http = reqwest::Client::new();
        let env = TestEnv {
            runtime,
            database: database.clone(),
            database_url,
            admin_url,
            chroma_url,
            chroma_database: database,
            role_prefix,
            dir: tempfile::tempdir().unwrap(),
            backups: tempfile::tempdir().unwrap(),
            bucket: None,
            client,
            http,
        };
        env.write("plans.yaml", PLANS);
        env
    }

    /// Like [`TestEnv::new`], with the final backups in a prefix of its own of the test bucket
    /// on the S3-compatible server.
    pub fn with_bucket(label: &str) -> Self {
        let mut env = Self::new(label);
        env.bucket = Some(bucket::TestBucket::new(&env.database));
        env
    }

    /// Every backup file with its content, by path relative to the backup root (local folder
    /// or bucket prefix), whichever this environment uses.
    pub fn backup_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        match &self.bucket {
            Some(bucket) => bucket
                .objects(&self.runtime)
                .into_keys()
                .map(|key| {
                    let content = bucket.read(&self.runtime, &key);
                    (key, content)
                })
                .collect(),
            None => {
                fn walk(
                    root: &Path,
                    dir: &Path,
                    found: &mut std::collections::BTreeMap<String, Vec<u8>>,
                ) {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        return;
                    };
                    for entry in entries.flatten() {
                        let path = entry.path();
                        if entry.file_type().unwrap().is_dir() {
                            walk(root, &path, found);
                        } else {
                            let relative = path.strip_prefix(root).unwrap().display().to_string();
                            found.insert(relative, std::fs::read(&path).unwrap());
                        }
                    }
                }
                let mut found = std::collections::BTreeMap::new();
                walk(self.backups.path(), self.backups.path(), &mut found);
                found
            }
        }
    }

    /// Writes a file where backups go (as an interrupted run would leave one).
    pub fn put_backup_file(&self, relative: &str, content: &[u8]) {
        match &self.bucket {
            Some(bucket) => bucket.put(&self.runtime, relative, content),
            None => {
                let path = self.backups.path().join(relative);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes a file of the tenant directory, creating folders.
    pub fn write(&self, relative: &str, content: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn remove(&self, relative: &str) {
        std::fs::remove_file(self.path(relative)).unwrap();
    }

    /// Writes `<id>.yaml`.
    pub fn tenant(&self, id: &str, plan: &str, extra: &str) {
        self.write(&format!("{id}.yaml"), &tenant_yaml(id, plan, extra));
    }

    /// Runs the real binary against this environment.
    pub fn tenantctl(&self, args: &[&str]) -> Output {
        self.tenantctl_with(args, &[])
    }

    /// Runs the real binary with extra environment variables (which override the defaults).
    pub fn tenantctl_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        run(self.command(args, envs))
    }

    /// An application's transaction on a connection of its own, from another thread: runs
    /// `sql` after `BEGIN`, returns once it has, and commits `held` later. Join the handle.
    pub fn hold_in_transaction(
        &self,
        sql: &str,
        held: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let url = self.database_url.clone();
        let sql = format!("BEGIN; {sql}");
        let (started, is_started) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = connect(&url).await;
                client.batch_execute(&sql).await.unwrap();
                started.send(()).unwrap();
                tokio::time::sleep(held).await;
                client.batch_execute("COMMIT").await.unwrap();
            });
        });
        is_started.recv().expect("the holding transaction started");
        holder
    }

    /// Starts the real binary without waiting for it (its output piped, read by
    /// `wait_with_output`): for a test that signals or kills it in the middle of a run.
    pub fn spawn_tenantctl(&self, args: &[&str]) -> std::process::Child {
        let mut command = self.command(args, &[]);
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("start tenantctl")
    }

    /// Runs the real binary in `cwd` with the default backup folder (`backups` there).
    pub fn tenantctl_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut command = self.command(args, &[]);
        command.current_dir(cwd).env_remove("TENANTCTL_BACKUP_DIR");
        run(command)
    }

    fn command(&self, args: &[&str], envs: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command.args(args).stdin(std::process::Stdio::null());
        self.configure(&mut command);
        for (key, value) in envs {
            command.env(key, value);
        }
        command
    }

    /// Points a command (tenantctl, or a wrapper that runs it) at this environment, and clears
    /// the variables of the developer's shell that would change what tenantctl does.
    pub fn configure(&self, command: &mut Command) {
        command
            .env("TENANTCTL_DIR", self.dir.path())
            .env("DATABASE_URL", &self.database_url)
            .env("CHROMA_URL", &self.chroma_url)
            .env("CHROMA_DATABASE", &self.chroma_database)
            .env("TENANTCTL_ROLE_PREFIX", &self.role_prefix)
            .env("TENANTCTL_BACKUP_DIR", self.backups.path())
            .env_remove("CHROMA_TENANT")
            .env_remove("CHROMA_TOKEN")
            .env_remove("TENANTCTL_RETENTION_DAYS")
            .env_remove("TENANTCTL_MAX_DELETES")
            .env_remove("TENANTCTL_PARALLELISM")
            .env_remove("TENANTCTL_SECRETS_DIR")
            .env_remove("TENANTCTL_SECRETS_COMMAND")
            .env_remove("TENANTCTL_BACKUP_TIMEOUT")
            .env_remove("NO_COLOR");
        for name in [
            "AWS_ENDPOINT",
            "AWS_ENDPOINT_URL",
            "AWS_ALLOW_HTTP",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            command.env_remove(name);
        }
        if let Some(bucket) = &self.bucket {
            command.envs(bucket.env());
        }
    }

    /// `apply --auto-approve`, expected to succeed.
    pub fn apply(&self) -> Output {
        self.tenantctl(&["apply", "--auto-approve"]).expect_code(0)
    }

    /// `plan`, expected to succeed.
    pub fn plan(&self) -> Output {
        self.tenantctl(&["plan"]).expect_code(0)
    }

    pub fn role(&self, id: &str) -> String {
        format!("{}{id}", self.role_prefix)
    }

    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        self.runtime
            .block_on(self.client.query(sql, params))
            .unwrap_or_else(|error| panic!("query failed: {sql}: {error}"))
    }

    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Row {
        self.runtime
            .block_on(self.client.query_one(sql, params))
            .unwrap_or_else(|error| panic!("query failed: {sql}: {error}"))
    }

    /// A connection of its own to this test's database, as an application would hold (to keep
    /// a transaction open while tenantctl runs, say).
    pub fn app_client(&self) -> Client {
        self.runtime.block_on(connect(&self.database_url))
    }

    /// Runs statements; returns the error instead of panicking.
    pub fn try_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.runtime.block_on(self.client.batch_execute(sql))
    }

    pub fn execute(&self, sql: &str) {
        self.try_execute(sql)
            .unwrap_or_else(|error| panic!("statement failed: {sql}: {error}"));
    }

    /// Fetches a collection of this environment's Chroma database by name.
    pub fn collection(&self, name: &str) -> Option<serde_json::Value> {
        let url = format!(
            "{}/api/v2/tenants/default_tenant/databases/{}/collections/{name}",
            self.chroma_url, self.chroma_database
        );
        self.runtime.block_on(async {
            let response = self.http.get(&url).send().await.expect("chroma answers");
            match response.status().as_u16() {
                404 => None,
                200 => Some(response.json().await.unwrap()),
                other => panic!("chroma answered {other} for {url}"),
            }
        })
    }

    /// Names of every collection of this environment's Chroma database.
    pub fn collection_names(&self) -> Vec<String> {
        let url = format!(
            "{}/api/v2/tenants/default_tenant/databases/{}/collections?limit=1000",
            self.chroma_url, self.chroma_database
        );
        self.runtime.block_on(async {
            let response = self.http.get(&url).send().await.expect("chroma answers");
            let list: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
            list.iter()
                .filter_map(|collection| collection["name"].as_str().map(str::to_string))
                .collect()
        })
    }

    /// Deletes a collection by hand, as an operator (or an accident) would.
    pub fn delete_collection(&self, name: &str) {
        let url = format!(
            "{}/api/v2/tenants/default_tenant/databases/{}/collections/{name}",
            self.chroma_url, self.chroma_database
        );
        self.runtime.block_on(async {
            let response = self.http.delete(&url).send().await.expect("chroma answers");
            assert!(
                response.status().is_success(),
                "delete {name}: {response:?}"
            );
        });
    }

    /// Creates a collection by hand with the given metadata.
    pub fn create_collection(&self, name: &str, metadata: serde_json::Value) {
        let base = format!(
            "{}/api/v2/tenants/default_tenant/databases",
            self.chroma_url
        );
        self.runtime.block_on(async {
            let _ = self
                .http
                .post(&base)
                .json(&serde_json::json!({ "name": self.chroma_database }))
                .send()
                .await
                .expect("chroma answers");
            let response = self
                .http
                .post(format!("{base}/{}/collections", self.chroma_database))
                .json(&serde_json::json!({ "name": name, "metadata": metadata }))
                .send()
                .await
                .expect("chroma answers");
            assert!(
                response.status().is_success(),
                "create {name}: {response:?}"
            );
        });
    }

    /// Adds `count` records with 3-dimensional embeddings to a collection.
    pub fn add_records(&self, name: &str, count: usize) {
        let collection = self.collection(name).expect("collection exists");
        let id = collection["id"].as_str().unwrap().to_string();
        let url = format!(
            "{}/api/v2/tenants/default_tenant/databases/{}/collections/{id}/add",
            self.chroma_url, self.chroma_database
        );
        let ids: Vec<String> = (0..count).map(|n| format!("doc-{n}")).collect();
        let embeddings: Vec<[f32; 3]> = (0..count).map(|n| [n as f32, 0.5, -1.0]).collect();
        let documents: Vec<String> = (0..count).map(|n| format!("document {n}")).collect();
        self.runtime.block_on(async {
            let response = self
                .http
                .post(&url)
                .json(&serde_json::json!({
                    "ids": ids, "embeddings": embeddings, "documents": documents
                }))
                .send()
                .await
                .expect("chroma answers");
            assert!(response.status().is_success(), "add records: {response:?}");
        });
    }

    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(bucket) = &self.bucket {
            bucket.clear(&self.runtime);
        }
        let database = self.database.clone();
        let prefix = self.role_prefix.clone();
        let admin_url = self.admin_url.clone();
        let chroma = format!(
            "{}/api/v2/tenants/default_tenant/databases/{}",
            self.chroma_url, self.chroma_database
        );
        let http = self.http.clone();
        self.runtime.block_on(async move {
            let admin = connect(&admin_url).await;
            let _ = admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                ))
                .await;
            // Roles are cluster-wide: remove the ones this test's prefix created.
            if let Ok(rows) = admin
                .query(
                    "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1)",
                    &[&prefix],
                )
                .await
            {
                for row in rows {
                    let role: String = row.get(0);
                    let _ = admin
                        .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                        .await;
                }
            }
            // Chroma sometimes answers a delete with an error under load: retry a few times
            // (bounded), so a test run does not leave databases behind.
            for attempt in 0..5u64 {
                match http.delete(&chroma).send().await {
                    Ok(response)
                        if response.status().is_success() || response.status().as_u16() == 404 =>
                    {
                        break
                    }
                    _ => tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await,
                }
            }
        });
    }
}
