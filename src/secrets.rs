//! Generated secrets and the one place they go.
//!
//! A password or an API key exists in plaintext only here, between its generation (from the
//! operating system's generator, 256 bits) and its delivery to the secrets sink: the database
//! gets a SCRAM verifier or a SHA-256 digest, plans and events get names and prefixes, and
//! [`Secret`] prints as `<redacted>` wherever it is formatted.

use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A value that must never be printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The plaintext, for the sink and for nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be generated or delivered.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error("secrets folder `{path}`: {reason}")]
    Dir { path: String, reason: String },
    /// The command's text is not shown: it may carry a token of the secret store.
    #[error("the secrets command {reason}")]
    Command { reason: String },
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretsError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|error| SecretsError::Random(error.to_string()))?;
    Ok(bytes)
}

fn url_safe(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A generated password and what the database gets of it.
pub struct Password {
    pub password: Secret,
    /// `SCRAM-SHA-256$...`, computed here: the plaintext never reaches the server.
    pub verifier: String,
    /// SHA-256 (hex) of the verifier, recorded to notice a password changed by hand.
    pub fingerprint: String,
}

/// 256 random bits, as 43 URL-safe characters.
///
/// # Errors
/// The random generator failed.
pub fn generate_password() -> Result<Password, SecretsError> {
    let password = url_safe(&random_bytes::<32>()?);
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let fingerprint = hex::encode(Sha256::digest(verifier.as_bytes()));
    Ok(Password {
        password: Secret(password),
        verifier,
        fingerprint,
    })
}

/// A generated API key: `tct_<12 hex>_<43 characters>`.
pub struct ApiKey {
    pub name: String,
    /// `tct_<12 hex>`: identifies the key, public.
    pub prefix: String,
    pub key: Secret,
    /// SHA-256 of the whole key, what the database stores.
    pub digest: [u8; 32],
    pub expires: Option<chrono::NaiveDate>,
}

/// A new key named `name`.
///
/// # Errors
/// The random generator failed.
pub fn generate_api_key(
    name: &str,
    expires: Option<chrono::NaiveDate>,
) -> Result<ApiKey, SecretsError> {
    let prefix = format!("tct_{}", hex::encode(random_bytes::<6>()?));
    let key = format!("{prefix}_{}", url_safe(&random_bytes::<32>()?));
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    Ok(ApiKey {
        name: name.to_string(),
        prefix,
        key: Secret(key),
        digest,
        expires,
    })
}

/// What one tenant's apply generated, delivered as one JSON document.
pub struct TenantSecrets {
    pub tenant: String,
    pub role: String,
    /// The role's new password, with the URL to connect with it.
    pub password: Option<(Secret, Secret)>,
    pub api_keys: Vec<ApiKey>,
    /// Prefixes of keys this apply revoked (the sink may forget them).
    pub revoked: Vec<String>,
}

impl TenantSecrets {
    /// Every plaintext in it, to take out of anything shown (a failing command's output).
    fn plaintexts(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.api_keys.iter().map(|key| key.key.expose()).collect();
        if let Some((password, url)) = &self.password {
            all.push(password.expose());
            all.push(url.expose());
        }
        all
    }

    /// The JSON the sink receives.
    fn document(&self) -> serde_json::Value {
        let mut document = serde_json::json!({
            "tenant": self.tenant,
            "role": self.role,
            "api_keys": self.api_keys.iter().map(|key| serde_json::json!({
                "name": key.name,
                "prefix": key.prefix,
                "key": key.key.expose(),
                "expires": key.expires.map(|date| date.to_string()),
            })).collect::<Vec<_>>(),
        });
        if let Some((password, url)) = &self.password {
            document["password"] = password.expose().into();
            document["database_url"] = url.expose().into();
        }
        if !self.revoked.is_empty() {
            document["revoked"] = serde_json::json!(self.revoked);
        }
        document
    }
}

/// Where generated secrets go: exactly one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretsSink {
    /// `DIR/<tenant>.json`, 0600 in a 0700 folder, written atomically; merged with what the
    /// file already holds (a new key does not lose the password delivered earlier).
    Dir(PathBuf),
    /// Runs `sh -c COMMAND` with the JSON on standard input and `TENANTCTL_TENANT` set; its
    /// exit status decides.
    Command { command: String, timeout: Duration },
}

impl fmt::Display for SecretsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretsSink::Dir(path) => write!(f, "secrets folder `{}`", path.display()),
            // Not its text: a command may carry a token of the secret store.
            SecretsSink::Command { .. } => f.write_str("the secrets command"),
        }
    }
}

impl SecretsSink {
    /// Delivers one tenant's secrets.
    ///
    /// # Errors
    /// The folder or file could not be written, or the command failed, timed out or could
    /// not start; what it printed is shown without any of the secrets.
    pub async fn deliver(&self, secrets: &TenantSecrets) -> Result<(), SecretsError> {
        match self {
            SecretsSink::Dir(dir) => {
                let dir = dir.clone();
                let tenant = secrets.tenant.clone();
                let document = secrets.document();
                tokio::task::spawn_blocking(move || write_file(&dir, &tenant, document))
                    .await
                    .map_err(|error| SecretsError::Dir {
                        path: String::new(),
                        reason: error.to_string(),
                    })?
            }
            SecretsSink::Command { command, timeout } => {
                run_command(command, *timeout, secrets).await
            }
        }
    }
}

fn write_file(dir: &Path, tenant: &str, update: serde_json::Value) -> Result<(), SecretsError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |path: &Path, reason: String| SecretsError::Dir {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(metadata) if metadata.file_type().is_symlink() || !metadata.is_dir() => {
            return Err(failed(
                dir,
                "is not a folder (a symbolic link is refused)".to_string(),
            ));
        }
        Ok(metadata) => {
            if metadata.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
                    |error| failed(dir, format!("cannot make it private (0700): {error}")),
                )?;
            }
        }
        Err(_) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|error| failed(dir, format!("cannot create it: {error}")))?;
        }
    }
    let path = dir.join(format!("{tenant}.json"));
    // What an earlier apply delivered stays, unless this one replaces it.
    let mut document = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({})),
        Err(_) => serde_json::json!({}),
    };
    merge(&mut document, update);
    let text = serde_json::to_string_pretty(&document).unwrap_or_default();
    let temporary = dir.join(format!(".{tenant}.json.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(&path, format!("cannot write it: {error}")));
    }
    Ok(())
}

/// `update` over `document`: its password replaces the old one, its keys replace keys of the
/// same name, revoked prefixes leave.
fn merge(document: &mut serde_json::Value, update: serde_json::Value) {
    let revoked: Vec<String> = update["revoked"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|prefix| prefix.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let new_keys = update["api_keys"].as_array().cloned().unwrap_or_default();
    let mut keys: Vec<serde_json::Value> = document["api_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|key| {
            let prefix = key["prefix"].as_str().unwrap_or_default();
            let name = key["name"].as_str().unwrap_or_default();
            !revoked.iter().any(|gone| gone == prefix)
                && !new_keys
                    .iter()
                    .any(|new| new["name"].as_str() == Some(name))
        })
        .collect();
    keys.extend(new_keys);
    for field in ["tenant", "role", "password", "database_url"] {
        if !update[field].is_null() {
            document[field] = update[field].clone();
        }
    }
    document["api_keys"] = serde_json::Value::Array(keys);
}

async fn run_command(
    command: &str,
    timeout: Duration,
    secrets: &TenantSecrets,
) -> Result<(), SecretsError> {
    use tokio::io::AsyncWriteExt;
    let failed = |reason: String| SecretsError::Command { reason };
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("TENANTCTL_TENANT", &secrets.tenant)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| failed(format!("could not start: {error}")))?;
    let input = serde_json::to_vec(&secrets.document()).unwrap_or_default();
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its input is its own business: its status decides.
            let _ = stdin.write_all(&input).await;
        }
        drop(stdin.take());
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(failed(format!("failed: {error}"))),
        // Dropping the child kills it.
        Err(_) => {
            return Err(failed(format!(
                "did not finish within {} (stopped)",
                humantime::format_duration(timeout)
            )))
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&output.stderr).into_owned();
    if said.trim().is_empty() {
        said = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    // A command may echo what it was given: none of it is shown.
    for plaintext in secrets.plaintexts() {
        said = said.replace(plaintext, "<redacted>");
    }
    let tail: Vec<&str> = said.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let status = output.status.code().map_or_else(
        || "was killed by a signal".to_string(),
        |code| format!("exited {code}"),
    );
    Err(failed(if tail.is_empty() {
        status
    } else {
        format!("{status}: {}", tail.join(" / "))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_random_and_never_printed() {
        let first = generate_password().unwrap();
        let second = generate_password().unwrap();
        assert_eq!(first.password.expose().len(), 43);
        assert_ne!(first.password, second.password);
        assert!(first.verifier.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!first.verifier.contains(first.password.expose()));
        assert_eq!(
            format!("{:?} {}", first.password, first.password),
            "<redacted> <redacted>"
        );
        let key = generate_api_key("web", None).unwrap();
        let text = key.key.expose();
        assert!(text.starts_with(&format!("{}_", key.prefix)));
        assert_eq!(key.prefix.len(), 16);
        assert_eq!(text.len(), 16 + 1 + 43);
        assert_eq!(
            key.digest,
            <[u8; 32]>::from(Sha256::digest(text.as_bytes()))
        );
    }

    fn secrets(name: &str) -> TenantSecrets {
        TenantSecrets {
            tenant: "acme".into(),
            role: "tenant_acme".into(),
            password: None,
            api_keys: vec![generate_api_key(name, None).unwrap()],
            revoked: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_folder_sink_is_private_atomic_and_keeps_what_it_held() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("secrets");
        let sink = SecretsSink::Dir(dir.clone());
        let password = generate_password().unwrap();
        let mut first = secrets("web");
        first.password = Some((password.password.clone(), Secret("postgres://x".into())));
        sink.deliver(&first).await.unwrap();
        let second = secrets("batch");
        sink.deliver(&second).await.unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("acme.json");
        assert_eq!(mode(&file), 0o600);
        let held: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(held["password"], password.password.expose());
        let names: Vec<&str> = held["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "batch"]);
        // No temporary file is left.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_failing_command_says_why_without_the_secrets() {
        let sink = SecretsSink::Command {
            command: "cat >&2; exit 3".into(),
            timeout: Duration::from_secs(10),
        };
        let delivered = secrets("web");
        let error = sink.deliver(&delivered).await.unwrap_err().to_string();
        assert!(error.contains("exited 3"), "{error}");
        assert!(error.contains("<redacted>"), "{error}");
        assert!(
            !error.contains(delivered.api_keys[0].key.expose()),
            "{error}"
        );

        let slow = SecretsSink::Command {
            command: "sleep 30".into(),
            timeout: Duration::from_millis(200),
        };
        let error = slow.deliver(&delivered).await.unwrap_err().to_string();
        assert!(error.contains("did not finish within 200ms"), "{error}");

        let reads = SecretsSink::Command {
            command: "grep -q \"\\\"tenant\\\":\\\"acme\\\"\" && test \"$TENANTCTL_TENANT\" = acme"
                .into(),
            timeout: Duration::from_secs(10),
        };
        reads.deliver(&delivered).await.unwrap();
    }
}
