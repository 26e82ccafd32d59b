//! A real `tenantctl watch` process for tests.

use super::TestEnv;
use std::io::{BufRead, BufReader};
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
    /// Everything written to stderr, byte for byte.
    stderr: Arc<Mutex<Vec<u8>>>,
    pub name: String,
}

impl Watcher {
    /// Starts `tenantctl watch --log-format json <args>` against `env`, with `extra_env`
    /// overriding the environment's defaults.
    pub fn start(env: &TestEnv, name: &str, args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        Self::start_with_log_format(env, name, "json", args, extra_env)
    }

    /// [`Watcher::start`] with `--log-format <format>`. Lines that are not JSON are kept as
    /// `{"message": <line>, "raw": true}`.
    pub fn start_with_log_format(
        env: &TestEnv,
        name: &str,
        format: &str,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantctl"));
        command
            .arg("watch")
            .args(["--log-format", format])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        env.configure(&mut command);
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start tenantctl watch");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (sink, raw_sink) = (logs.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while reader
                .read_until(b'\n', &mut line)
                .is_ok_and(|read| read > 0)
            {
                raw_sink.lock().unwrap().extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches('\n');
                let value = serde_json::from_str(text)
                    .unwrap_or_else(|_| serde_json::json!({ "message": text, "raw": true }));
                sink.lock().unwrap().push(value);
                line.clear();
            }
        });
        Watcher {
            child,
            logs,
            stderr: raw,
            name: name.to_string(),
        }
    }

    /// Everything the watcher wrote to stderr so far, as bytes.
    pub fn stderr_bytes(&self) -> Vec<u8> {
        self.stderr.lock().unwrap().clone()
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
