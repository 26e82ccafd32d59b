//! A real `tenantctl watch` process for tests, and a throwaway PostgreSQL cluster for the test
//! that restarts its server.

use super::TestEnv;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `condition` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running watcher; killed when dropped.
pub struct Watcher {
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    pub name: String,
}

impl Watcher {
    /// Starts `tenantctl watch --log-format json <args>` against `env`, with `extra_env`
    /// overriding the environment's defaults.
    pub fn start(env: &TestEnv, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command
            .arg("watch")
            .args(["--log-format", "json"])
            .args(args)
            .env("TENANTCTL_DIR", env.dir_path())
            .env("DATABASE_URL", &env.database_url)
            .env("CHROMA_URL", &env.chroma_url)
            .env("CHROMA_DATABASE", &env.chroma_database)
            .env("TENANTCTL_ROLE_PREFIX", &env.role_prefix)
            .env("TENANTCTL_BACKUP_DIR", env.backups.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start tenantctl watch");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "raw": true }));
                sink.lock().unwrap().push(value);
            }
        });
        Watcher {
            child,
            logs,
            name: name.to_string(),
        }
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap().clone()
    }

    /// The logs as text, for assertion messages.
    pub fn dump(&self) -> String {
        self.logs()
            .iter()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Number of log lines whose message starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.logs()
            .iter()
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|message| message.starts_with(prefix))
            })
            .count()
    }

    /// Waits for a log line whose message starts with `prefix`.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.count(prefix) > 0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code, or `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of its own, for a test that restarts the server. Started with the same
/// binaries and settings as `scripts/servers.sh`, on a free loopback port.
pub struct ScratchPostgres {
    pub port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres_user(program: &str) -> Command {
    // initdb and pg_ctl refuse to run as root.
    if std::env::var("USER").as_deref() == Ok("root") || is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", program]);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .is_some_and(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl ScratchPostgres {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-scratch-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let status = as_postgres_user(&format!("{PGBIN}/initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let server = ScratchPostgres {
            port: free_port(),
            data,
            _dir: dir,
        };
        server.pg_ctl("start");
        server
    }

    fn pg_ctl(&self, action: &str) {
        // Test-only settings: loopback, no fsync.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.data.display()
        );
        let mut command = as_postgres_user(&format!("{PGBIN}/pg_ctl"));
        command.arg("-D").arg(&self.data).args(["-w", "-t", "30"]);
        if action == "start" {
            command
                .arg("-l")
                .arg(self.data.join("server.log"))
                .args(["-o", &options]);
        } else {
            command.args(["-m", "fast"]);
        }
        let status = command.arg(action).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "pg_ctl {action} failed");
    }

    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        let _ = as_postgres_user(&format!("{PGBIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
