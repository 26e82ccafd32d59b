//! Final backups in an object store, against the S3-compatible server that `scripts/servers.sh`
//! starts (moto's) and the real PostgreSQL and Chroma: the whole lifecycle, an upload cut off
//! half-way, credentials kept out of every output, and URLs that cannot be used.

mod common;

use common::bucket::{access_key, secret_key, TestBucket, BUCKET};
use common::{Output, TestEnv};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BUILTIN_MIGRATION: &str =
    include_str!("../crates/core/src/spec/builtin/0001_conversations.sql");

/// Fails when an output carries a credential of the object store.
fn assert_no_credential(output: &Output, what: &str) {
    for text in [&output.stdout, &output.stderr] {
        assert!(
            !text.contains(&secret_key()),
            "{what} printed the secret key:\n{text}"
        );
        assert!(
            !text.contains(&access_key()),
            "{what} printed the access key:\n{text}"
        );
    }
}

/// The complete backups (folders with a manifest) under `hooli/<uid>/`, each with its manifest.
fn manifests(env: &TestEnv) -> BTreeMap<String, Value> {
    env.backup_files()
        .into_iter()
        .filter_map(|(path, content)| {
            let folder = path.strip_suffix("/manifest.json")?.to_string();
            Some((folder, serde_json::from_slice(&content).unwrap()))
        })
        .collect()
}

/// Every file a manifest names is in the bucket with its size and sha256, read back here.
fn assert_backup_reads_back(env: &TestEnv, folder: &str, manifest: &Value) {
    let files = env.backup_files();
    let mut named = vec![manifest["chroma"]["file"].as_str().unwrap().to_string()];
    for table in manifest["tables"].as_array().unwrap() {
        named.push(table["file"].as_str().unwrap().to_string());
    }
    for table in manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .chain(std::iter::once(&manifest["chroma"]))
    {
        let path = format!("{folder}/{}", table["file"].as_str().unwrap());
        let content = files
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is missing: {:?}", files.keys()));
        assert_eq!(table["bytes"], content.len(), "{path}");
        assert_eq!(
            table["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(content)),
            "{path}"
        );
    }
    let in_folder = files
        .keys()
        .filter(|path| path.starts_with(&format!("{folder}/")))
        .count();
    assert_eq!(in_folder, named.len() + 1, "{:?}", files.keys());
}

#[test]
fn soft_delete_restore_soft_delete_purge_leaves_no_object_and_prints_no_credential() {
    let env = TestEnv::with_bucket("s3_lifecycle");
    let outputs = std::cell::RefCell::new(Vec::new());
    let run = |args: &[&str], code: i32| {
        let output = env.tenantctl(args).expect_code(code);
        assert_no_credential(&output, &args.join(" "));
        outputs.borrow_mut().push(args.join(" "));
        output
    };
    // Four tenants, soft-deleted together by four workers: uploads run in parallel.
    for id in ["hooli", "initech", "globex", "umbrella"] {
        env.tenant(id, "pro", "retention_days: 0\n");
    }
    run(&["apply", "--auto-approve"], 0);
    env.execute(
        "INSERT INTO tenant_hooli.conversations (id, messages) \
         SELECT gen_random_uuid(), jsonb_build_array(jsonb_build_object('content', repeat('x', 100) || i)) \
         FROM generate_series(1, 2000) AS i",
    );
    env.add_records("tenant_hooli", 7);
    for id in ["hooli", "initech", "globex", "umbrella"] {
        env.tenant(id, "pro", "retention_days: 30\nstate: deleted\n");
    }
    run(&["plan"], 0);
    let applied = run(&["apply", "--auto-approve", "--parallelism", "4"], 0);
    assert!(
        applied.stdout.contains("4 tenants applied"),
        "{}",
        applied.stdout
    );

    // One complete backup per tenant, each file read back from the bucket.
    let backups = manifests(&env);
    assert_eq!(backups.len(), 4, "{:?}", backups.keys());
    let (hooli_folder, hooli) = backups
        .iter()
        .find(|(folder, _)| folder.starts_with("hooli/"))
        .unwrap();
    assert_eq!(hooli["tables"][0]["rows"], 2000);
    assert_eq!(hooli["chroma"]["records"], 7);
    assert_backup_reads_back(&env, hooli_folder, hooli);
    let first_folder = hooli_folder.clone();

    // The event of the soft delete names the folder in the bucket.
    let recorded: String = env
        .query_one(
            "SELECT changes->>'backup' FROM tenantctl.events WHERE tenant_id = 'hooli' AND action = 'delete'",
            &[],
        )
        .get(0);
    assert_eq!(first_folder.rsplit('/').next().unwrap(), recorded);

    // Restore: the data is live again, the backup stays (it is a backup of a past state).
    env.tenant("hooli", "pro", "retention_days: 0\n");
    run(&["apply", "--auto-approve"], 0);
    let rows = env.query_one("SELECT count(*) FROM tenant_hooli.conversations", &[]);
    assert_eq!(rows.get::<_, i64>(0), 2000);

    // Soft delete again, with retention 0: a second backup beside the first.
    env.tenant("hooli", "pro", "retention_days: 0\nstate: deleted\n");
    run(&["apply", "--auto-approve"], 0);
    let hooli_backups: Vec<String> = manifests(&env)
        .into_keys()
        .filter(|folder| folder.starts_with("hooli/"))
        .collect();
    assert_eq!(hooli_backups.len(), 2, "{hooli_backups:?}");

    // The purge: its plan counts the objects listed in the bucket.
    let hooli_objects: Vec<(String, usize)> = env
        .backup_files()
        .into_iter()
        .filter(|(path, _)| path.starts_with("hooli/"))
        .map(|(path, content)| (path, content.len()))
        .collect();
    let planned = run(&["plan"], 0);
    assert!(
        planned.stdout.contains(&format!(
            "- backups               {} files, ",
            hooli_objects.len()
        )),
        "{}",
        planned.stdout
    );
    let applied = run(&["apply", "--auto-approve", "--format", "json"], 0);
    let report: Value = serde_json::from_str(&applied.stdout).unwrap();
    assert_eq!(report["tenants"][0]["tenant"], "hooli", "{report:#}");
    assert_eq!(report["tenants"][0]["result"], "applied", "{report:#}");
    let left: Vec<String> = env
        .backup_files()
        .into_keys()
        .filter(|path| path.starts_with("hooli/"))
        .collect();
    assert!(
        left.is_empty(),
        "objects of the purged tenant remain: {left:?}"
    );
    assert_eq!(manifests(&env).len(), 3, "the other tenants' backups stay");
    let gone = env.query("SELECT 1 FROM tenantctl.tenants WHERE id = 'hooli'", &[]);
    assert!(gone.is_empty());

    // A saved plan records the location without credentials; --help shows no value.
    let saved = env.backups.path().join("s3.plan");
    run(&["plan", "--out", saved.to_str().unwrap()], 0);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains(&format!("s3://{BUCKET}/")), "{text}");
    assert!(!text.contains(&secret_key()) && !text.contains(&access_key()));
    run(&["apply", "--help"], 0);
    assert_eq!(outputs.borrow().len(), 9);
}

#[test]
fn unusable_backup_locations_are_refused_before_anything_changes() {
    let env = TestEnv::with_bucket("s3_refused");
    env.tenant("hooli", "pro", "");
    for (location, expected) in [
        (
            format!("s3://{}:{}@{BUCKET}/x", access_key(), secret_key()),
            "credentials do not belong in the URL",
        ),
        (
            format!("s3://{BUCKET}/x?X-Amz-Credential={}", secret_key()),
            "a query or fragment",
        ),
        (
            "ftp://example.org/backups".to_string(),
            "`ftp://` is not a backup location",
        ),
        (format!("s3://{BUCKET}/a//b"), "segment"),
    ] {
        for command in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            let output = env
                .tenantctl_with(command, &[("TENANTCTL_BACKUP_DIR", location.as_str())])
                .expect_code(1);
            assert!(
                output.stderr.contains(expected),
                "{location}: {}",
                output.stderr
            );
            assert_no_credential(&output, &location);
        }
    }
    // Nothing reached the servers: no registry was created.
    let registry = env.query_one("SELECT to_regclass('tenantctl.tenants') IS NULL", &[]);
    assert!(registry.get::<_, bool>(0));

    // A store that does not answer fails the plan within its bounds, naming the location.
    let started = Instant::now();
    let output = env
        .tenantctl_with(
            &["plan", "--backup-timeout", "2s"],
            &[("AWS_ENDPOINT", "http://127.0.0.1:9")],
        )
        .expect_code(1);
    assert!(
        output.stderr.contains(&format!("s3://{BUCKET}/")),
        "{}",
        output.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_no_credential(&output, "an unreachable store");
}

/// A moto server of this test's own, stopped and resumed with signals; killed when dropped.
struct PrivateS3 {
    child: std::process::Child,
    endpoint: String,
}

impl PrivateS3 {
    fn start() -> Self {
        let program = std::env::var("TENANTCTL_TEST_MOTO_SERVER").unwrap_or_else(|_| {
            panic!(
                "TENANTCTL_TEST_MOTO_SERVER is not set: run the tests with `bash scripts/test.sh`"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start {program}: {error}"));
        let server = PrivateS3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if server
                .request("PUT", &format!("/{BUCKET}"))
                .is_some_and(|(status, _)| status == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the private S3 server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// One unsigned HTTP/1.1 request (moto does not check signatures): status and body, or
    /// `None` when the server does not answer within 2 s.
    fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream
            .set_write_timeout(Some(Duration::from_secs(2)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let status = answer.split(' ').nth(1)?.parse().ok()?;
        Some((status, answer))
    }

    /// Multipart uploads the server has started and not completed.
    fn uploads_in_progress(&self) -> usize {
        self.request("GET", &format!("/{BUCKET}?uploads"))
            .map_or(0, |(_, body)| body.matches("<Upload>").count())
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_upload_cut_off_half_way_rolls_the_tenant_back_and_the_next_run_cleans_up() {
    let mut env = TestEnv::new("s3_cut_off");
    let server = PrivateS3::start();
    env.bucket = Some(TestBucket::at(&server.endpoint, &env.database));
    // Two tables: `attachments` (small, exported first) and `conversations` (about 40 MB, so
    // it goes up in parts of 8 MiB).
    env.write("migrations/0001_conversations.sql", BUILTIN_MIGRATION);
    env.write(
        "migrations/0002_attachments.sql",
        "CREATE TABLE attachments (id integer PRIMARY KEY, name text NOT NULL);\n",
    );
    env.tenant("hooli", "pro", "");
    env.apply();
    env.execute(
        "INSERT INTO tenant_hooli.attachments VALUES (1, 'contract.pdf'), (2, 'logo.png'); \
         INSERT INTO tenant_hooli.conversations (id, messages) \
         SELECT gen_random_uuid(), jsonb_build_array(jsonb_build_object('content', repeat(md5(i::text), 60))) \
         FROM generate_series(1, 20000) AS i",
    );

    // Soft delete, and stop the object store as soon as the big table's upload has begun.
    env.tenant("hooli", "pro", "state: deleted\n");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantctl"));
    command
        .args(["apply", "--auto-approve", "--backup-timeout", "2s"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    env.configure(&mut command);
    let started = Instant::now();
    let child = command.spawn().unwrap();
    let mut stopped = false;
    while started.elapsed() < Duration::from_secs(120) {
        if server.uploads_in_progress() > 0 {
            server.signal("-STOP");
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stopped, "the upload in parts never began");
    let output = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    server.signal("-CONT");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("hooli") && stdout.contains("rolled back"),
        "{stdout}\n{stderr}"
    );
    assert!(elapsed < Duration::from_secs(90), "{elapsed:?}");
    assert!(!stdout.contains(&secret_key()) && !stderr.contains(&secret_key()));

    // Rolled back: still active, every row there, no delete recorded.
    let row = env.query_one(
        "SELECT status, (SELECT count(*) FROM tenant_hooli.conversations) FROM tenantctl.tenants WHERE id = 'hooli'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "active");
    assert_eq!(row.get::<_, i64>(1), 20000);
    let deletes = env.query(
        "SELECT 1 FROM tenantctl.events WHERE tenant_id = 'hooli' AND action = 'delete'",
        &[],
    );
    assert!(deletes.is_empty());

    // What the cut left: the small table's object, in a folder without a manifest. The next
    // plan reports it (and the tenant's soft delete again), and apply removes it first.
    let left: Vec<String> = env.backup_files().into_keys().collect();
    assert!(
        left.iter().all(|path| !path.ends_with("manifest.json")),
        "{left:?}"
    );
    assert!(
        left.iter()
            .any(|path| path.ends_with("postgres/attachments.csv")),
        "{left:?}"
    );
    let folder = left[0].split('/').take(3).collect::<Vec<_>>().join("/");
    let planned = env.plan();
    assert!(
        planned
            .stdout
            .contains(&format!("{folder} ({} file", left.len()))
            && planned
                .stdout
                .contains("an export that was interrupted before it completed; removed by apply"),
        "{}",
        planned.stdout
    );
    let applied = env.apply();
    assert!(
        applied.stdout.contains("Removed the partial backup"),
        "{}",
        applied.stdout
    );

    // Soft-deleted for real now: exactly one complete backup, verified, nothing else.
    let backups = manifests(&env);
    assert_eq!(backups.len(), 1, "{:?}", env.backup_files().keys());
    let (folder, manifest) = backups.iter().next().unwrap();
    assert_backup_reads_back(&env, folder, manifest);
    assert_eq!(
        env.backup_files().len(),
        4,
        "attachments, conversations, records and the manifest: {:?}",
        env.backup_files().keys()
    );
    let status = env.query_one(
        "SELECT status FROM tenantctl.tenants WHERE id = 'hooli'",
        &[],
    );
    assert_eq!(status.get::<_, String>(0), "deleted");
}
