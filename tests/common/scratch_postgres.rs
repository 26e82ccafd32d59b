//! A throwaway PostgreSQL cluster for tests that restart the server or need settings of their
//! own (TLS). Same binaries and test-only settings as `scripts/servers.sh`, on a free loopback
//! port, stopped when dropped.

use super::watcher::free_port;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A PostgreSQL cluster of its own, for a test that restarts the server. Started with the same
/// binaries and settings as `scripts/servers.sh`, on a free loopback port.
pub struct ScratchPostgres {
    pub port: u16,
    data: PathBuf,
    /// Extra `-c name=value` server settings.
    settings: String,
    _dir: tempfile::TempDir,
}

const PGBIN: &str = "/usr/lib/postgresql/15/bin";

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

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
        Self::start_with(|_| {}, "")
    }

    /// Starts a cluster after `prepare` ran on its data directory (owned by the server's OS
    /// user afterwards), with extra `-c` settings.
    pub fn start_with(prepare: impl FnOnce(&Path), settings: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-scratch-pg")
            .tempdir_in("/tmp")
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        chown_to_postgres(dir.path());
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
        prepare(&data);
        chown_to_postgres(dir.path());
        let server = ScratchPostgres {
            port: free_port(),
            data,
            settings: settings.to_string(),
            _dir: dir,
        };
        server.pg_ctl("start");
        server
    }

    fn pg_ctl(&self, action: &str) {
        // Test-only settings: loopback, no fsync.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off {}",
            self.port,
            self.data.display(),
            self.settings
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

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
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
