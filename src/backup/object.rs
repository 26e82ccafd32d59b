//! Backups in an object store: S3 (and S3-compatible servers), Google Cloud Storage, Azure Blob
//! Storage, through the `object_store` crate.
//!
//! The layout is the local one under the URL's prefix, `<prefix>/<tenant>/<uid>/<timestamp>/`
//! with `manifest.json` beside the data. An object store has no rename, so completeness is
//! marked the other way round: the data objects are uploaded into the final folder, read back
//! and checked against their sizes and sha256, and only then is the manifest written (and
//! read back). A folder without a manifest is an unfinished export, whatever its name.
//!
//! Credentials come from the provider's usual environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! ...) read by the crate's builders; a URL carrying credentials is refused, and every error
//! text is scrubbed of URL user info, query strings (Azure SAS tokens) and the values of those
//! variables before it is shown.
//!
//! Every request is bounded by `--backup-timeout` (the crate's client timeout) and retried at
//! most twice; reads go in ranges of [`READ_RANGE`] so that one request stays small whatever
//! the size of a table.

use super::files::{check_component, is_backup_name, is_partial_name};
use super::{BackupError, BackupUsage, MANIFEST};
use crate::observed::ObservedBackup;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Bytes buffered per object before the upload turns into a multipart upload, and the size of
/// each part. Parts are uploaded while the export goes on.
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one object in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Bytes read back per request when verifying.
const READ_RANGE: u64 = 32 * 1024 * 1024;

/// Environment variables whose values are credentials of the object stores: never shown, even
/// where a server or the client library would echo them in an error.
const SECRET_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
];

/// The object-store kinds `--backup-dir` accepts, by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    S3,
    Gcs,
    Azure,
}

/// A bucket (and prefix) that holds backups.
pub struct ObjectBackups {
    store: Arc<dyn ObjectStore>,
    /// Under which every backup lives; empty for the bucket's root.
    prefix: ObjectPath,
    /// `scheme://bucket/prefix`, for messages and the saved plan.
    url: String,
}

impl std::fmt::Debug for ObjectBackups {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.url)
    }
}

/// True when `text` is meant as a URL (`scheme://...`) rather than a local path.
pub fn looks_like_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Reads `scheme://bucket/prefix` into the provider, the bucket and the prefix, refusing what
/// the layout cannot hold. Errors show the URL without anything after the host but the path.
pub fn parse_url(text: &str) -> Result<(Provider, String, ObjectPath), BackupError> {
    let shown = shown_url(text);
    let invalid = |reason: &str| BackupError::Url {
        url: shown.clone(),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
    let provider = match url.scheme() {
        "s3" => Provider::S3,
        "gs" => Provider::Gcs,
        "az" => Provider::Azure,
        other => {
            return Err(invalid(&format!(
                "`{other}://` is not a backup location; use a local path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
            )))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials do not belong in the URL; set the provider's environment variables (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_ACCOUNT_KEY, ...)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "a query or fragment is not part of a backup location (credentials and options come from environment variables)",
        ));
    }
    if url.port().is_some() {
        return Err(invalid(
            "a port is not part of a bucket name; set the server with AWS_ENDPOINT (S3-compatible servers)",
        ));
    }
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() {
        return Err(invalid("the bucket (or container) name is missing"));
    }
    let path = url.path().trim_matches('/');
    let prefix = if path.is_empty() {
        ObjectPath::default()
    } else {
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| invalid("the prefix is not UTF-8"))?;
        ObjectPath::parse(decoded.as_ref()).map_err(|_| {
            invalid("the prefix has an empty segment (`//`) or a character object paths refuse")
        })?
    };
    Ok((provider, bucket, prefix))
}

/// `scheme://host/path` of a URL-like text, without user info, port, query or fragment; just
/// the scheme when it does not parse.
fn shown_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(url) => format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.path().trim_end_matches('/')
        ),
        Err(_) => match text.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://…"),
            None => "…".to_string(),
        },
    }
}

impl ObjectBackups {
    /// Connects nothing yet: builds the client for `text` (see [`parse_url`]) with the
    /// provider's environment variables, every request bounded by `timeout`.
    ///
    /// # Errors
    /// A URL the layout cannot hold, or settings the provider's builder refuses (a missing
    /// region, malformed credentials), scrubbed of secrets.
    pub fn open(text: &str, timeout: Duration) -> Result<Self, BackupError> {
        use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
        let (provider, bucket, prefix) = parse_url(text)?;
        // The object-store client's TLS takes the process's default crypto provider: the ring
        // one the rest of tenantctl uses. Installing it twice is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: timeout,
        };
        let timeout_text = humantime::format_duration(timeout).to_string();
        let connect_timeout =
            humantime::format_duration(timeout.min(Duration::from_secs(10))).to_string();
        let url = if prefix.as_ref().is_empty() {
            format!("{}://{bucket}", scheme(provider))
        } else {
            format!("{}://{bucket}/{prefix}", scheme(provider))
        };
        let bucket_url = format!("{}://{bucket}", scheme(provider));
        // The three builders share no trait: the same chain, written once.
        macro_rules! build {
            ($builder:ty, $key:ty) => {
                <$builder>::from_env()
                    .with_url(bucket_url)
                    .with_retry(retry)
                    .with_config(<$key>::Client(ClientConfigKey::Timeout), &timeout_text)
                    .with_config(
                        <$key>::Client(ClientConfigKey::ConnectTimeout),
                        &connect_timeout,
                    )
                    .build()
                    .map(|store| Arc::new(store) as Arc<dyn ObjectStore>)
            };
        }
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match provider {
            Provider::S3 => build!(
                object_store::aws::AmazonS3Builder,
                object_store::aws::AmazonS3ConfigKey
            ),
            Provider::Gcs => build!(
                object_store::gcp::GoogleCloudStorageBuilder,
                object_store::gcp::GoogleConfigKey
            ),
            Provider::Azure => build!(
                object_store::azure::MicrosoftAzureBuilder,
                object_store::azure::AzureConfigKey
            ),
        };
        let store = built.map_err(|error| BackupError::Url {
            url: url.clone(),
            reason: scrub(&error.to_string()),
        })?;
        Ok(ObjectBackups { store, prefix, url })
    }

    /// `scheme://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How a location inside the store is shown: `scheme://bucket/<key>`.
    pub fn show(&self, location: &ObjectPath) -> String {
        let bucket_url = match self.url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            }
            None => self.url.clone(),
        };
        format!("{bucket_url}/{location}")
    }

    fn failed(
        &self,
        action: &'static str,
        location: &ObjectPath,
    ) -> impl FnOnce(object_store::Error) -> BackupError {
        let location = self.show(location);
        move |error| BackupError::Store {
            action,
            location,
            error: scrub(&error.to_string()),
        }
    }

    /// `<prefix>/<tenant>/<uid>`.
    fn incarnation(&self, tenant: &str, uid: Uuid) -> ObjectPath {
        self.prefix
            .clone()
            .join(tenant)
            .join(uid.hyphenated().to_string().as_str())
    }

    /// Every object below `location`, by key.
    async fn list(
        &self,
        location: &ObjectPath,
    ) -> Result<Vec<object_store::ObjectMeta>, BackupError> {
        let prefix = (!location.as_ref().is_empty()).then_some(location);
        self.store
            .list(prefix)
            .try_collect()
            .await
            .map_err(self.failed("list", location))
    }

    /// Deletes `locations`; a missing object is fine.
    async fn delete(
        &self,
        locations: Vec<ObjectPath>,
        under: &ObjectPath,
    ) -> Result<(), BackupError> {
        let stream = futures_util::stream::iter(locations.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(stream);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.failed("delete objects under", under)(error)),
            }
        }
        Ok(())
    }

    /// Deletes every object below `folder`, then checks that none is left.
    async fn delete_folder(&self, folder: &ObjectPath) -> Result<(), BackupError> {
        let objects = self.list(folder).await?;
        self.delete(
            objects.into_iter().map(|meta| meta.location).collect(),
            folder,
        )
        .await?;
        let left = self.list(folder).await?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(BackupError::Store {
                action: "delete",
                location: self.show(folder),
                error: format!("{} object(s) are still there after deleting", left.len()),
            })
        }
    }

    /// Every backup folder under the prefix, complete (with a manifest) or not: the object
    /// store's [`super::inventory`]. Keys that do not fit the layout are skipped.
    ///
    /// # Errors
    /// The store could not be listed.
    pub async fn inventory(&self) -> Result<Vec<ObservedBackup>, BackupError> {
        let mut folders: BTreeMap<(String, Uuid, String), ObservedBackup> = BTreeMap::new();
        for meta in self.list(&self.prefix.clone()).await? {
            let Some(parts) = meta.location.prefix_match(&self.prefix) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|part| part.as_ref().to_string()).collect();
            let [tenant, uid, folder, rest @ ..] = parts.as_slice() else {
                continue;
            };
            let Ok(uid) = Uuid::parse_str(uid) else {
                continue;
            };
            if rest.is_empty()
                || check_component(tenant).is_err()
                || !(is_backup_name(folder) || is_partial_name(folder))
            {
                continue;
            }
            let entry = folders
                .entry((tenant.clone(), uid, folder.clone()))
                .or_insert_with(|| ObservedBackup {
                    tenant: tenant.clone(),
                    uid,
                    folder: folder.clone(),
                    partial: true,
                    files: 0,
                    bytes: 0,
                    recorded: false,
                });
            entry.files += 1;
            entry.bytes += meta.size;
            if rest.len() == 1 && rest[0] == MANIFEST && !is_partial_name(folder) {
                entry.partial = false;
            }
        }
        Ok(folders.into_values().collect())
    }

    /// Objects and bytes of one tenant incarnation, and how many backups are complete: what
    /// [`Self::delete_all`] would delete.
    ///
    /// # Errors
    /// An unsafe tenant name, or the store could not be listed.
    pub async fn usage(&self, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
        check_component(tenant)?;
        let folder = self.incarnation(tenant, uid);
        let mut usage = BackupUsage::default();
        for meta in self.list(&folder).await? {
            usage.files += 1;
            usage.bytes += meta.size;
            let parts: Vec<String> = meta
                .location
                .prefix_match(&folder)
                .map(|parts| parts.map(|part| part.as_ref().to_string()).collect())
                .unwrap_or_default();
            if let [name, file] = parts.as_slice() {
                if file == MANIFEST && is_backup_name(name) {
                    usage.backups += 1;
                }
            }
        }
        Ok(usage)
    }

    /// Deletes every object of one tenant incarnation (purge) and checks that none is left.
    ///
    /// # Errors
    /// An unsafe tenant name, or the store failed; objects already deleted stay deleted.
    pub async fn delete_all(&self, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
        let usage = self.usage(tenant, uid).await?;
        self.delete_folder(&self.incarnation(tenant, uid)).await?;
        Ok(usage)
    }

    /// Removes a backup written by this run (its tenant rolled back).
    ///
    /// # Errors
    /// `folder` is not a backup folder of this store, or the store failed.
    pub async fn remove(&self, folder: &ObjectPath) -> Result<(), BackupError> {
        let named_like_backup =
            folder.filename().is_some_and(is_backup_name) && folder.prefix_matches(&self.prefix);
        if !named_like_backup {
            return Err(BackupError::NotABackup(self.show(folder).into()));
        }
        self.delete_folder(folder).await
    }

    /// Removes an unfinished export that the plan reported, after checking again, under the
    /// lock, that it has no manifest.
    ///
    /// # Errors
    /// The name does not fit, the folder became complete, or the store failed.
    pub async fn remove_partial(
        &self,
        leftover: &crate::plan::BackupLeftover,
    ) -> Result<(), BackupError> {
        check_component(&leftover.tenant)?;
        let folder = self
            .incarnation(&leftover.tenant, leftover.uid)
            .join(leftover.folder.as_str());
        if !(is_backup_name(&leftover.folder) || is_partial_name(&leftover.folder)) {
            return Err(BackupError::NotABackup(self.show(&folder).into()));
        }
        let objects = self.list(&folder).await?;
        let manifest = folder.clone().join(MANIFEST);
        if objects.iter().any(|meta| meta.location == manifest) {
            return Err(BackupError::Store {
                action: "remove the unfinished backup",
                location: self.show(&folder),
                error: "it has a manifest now (complete); left in place".to_string(),
            });
        }
        self.delete(
            objects.into_iter().map(|meta| meta.location).collect(),
            &folder,
        )
        .await
    }

    /// The free folder name for a backup taken at `stamp`: `<stamp>`, else `<stamp>-2`, ...
    /// (a folder of the same second is what an interrupted run left).
    pub(super) async fn free_folder(
        &self,
        tenant: &str,
        uid: Uuid,
        stamp: &str,
    ) -> Result<ObjectPath, BackupError> {
        let incarnation = self.incarnation(tenant, uid);
        let taken = self
            .store
            .list_with_delimiter(Some(&incarnation))
            .await
            .map_err(self.failed("list", &incarnation))?
            .common_prefixes
            .into_iter()
            .filter_map(|prefix| prefix.filename().map(str::to_string))
            .collect::<std::collections::BTreeSet<String>>();
        (1..=1000)
            .map(|n| {
                if n == 1 {
                    stamp.to_string()
                } else {
                    format!("{stamp}-{n}")
                }
            })
            .find(|name| !taken.contains(name))
            .map(|name| incarnation.clone().join(name.as_str()))
            .ok_or_else(|| BackupError::Exists(self.show(&incarnation.clone().join(stamp)).into()))
    }

    /// A new object at `location`, uploaded as it is written.
    pub(super) fn create(&self, location: ObjectPath) -> ObjectSink {
        let shown = self.show(&location);
        ObjectSink {
            writer: object_store::buffered::BufWriter::with_capacity(
                Arc::clone(&self.store),
                location,
                PART_SIZE,
            )
            .with_max_concurrency(PARTS_IN_FLIGHT),
            shown,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Writes a small object in one request.
    pub(super) async fn put(&self, location: &ObjectPath, bytes: Bytes) -> Result<(), BackupError> {
        self.store
            .put(location, bytes.into())
            .await
            .map(|_| ())
            .map_err(self.failed("upload", location))
    }

    /// Reads `location` back in ranges and returns (bytes, sha256 in hex).
    pub(super) async fn read_back(
        &self,
        location: &ObjectPath,
    ) -> Result<(u64, String), BackupError> {
        let size = self
            .store
            .head(location)
            .await
            .map_err(self.failed("read back", location))?
            .size;
        let mut hasher = Sha256::new();
        let mut offset = 0;
        while offset < size {
            let end = size.min(offset + READ_RANGE);
            let chunk = self
                .store
                .get_range(location, offset..end)
                .await
                .map_err(self.failed("read back", location))?;
            if chunk.is_empty() {
                break;
            }
            hasher.update(&chunk);
            offset += chunk.len() as u64;
        }
        Ok((offset, hex::encode(hasher.finalize())))
    }

    /// Best effort: removes what a failed export uploaded into `folder`. The export's error is
    /// the one reported; what stays is an unfinished folder the next plan reports and the next
    /// apply removes.
    pub(super) async fn discard(&self, folder: &ObjectPath) {
        if let Err(error) = self.delete_folder(folder).await {
            tracing::warn!(folder = %self.show(folder), %error, "could not remove an unfinished backup; the next apply removes it");
        }
    }
}

fn scheme(provider: Provider) -> &'static str {
    match provider {
        Provider::S3 => "s3",
        Provider::Gcs => "gs",
        Provider::Azure => "az",
    }
}

/// An object being uploaded: bytes are hashed and counted as they go.
pub(super) struct ObjectSink {
    writer: object_store::buffered::BufWriter,
    shown: String,
    hasher: Sha256,
    bytes: u64,
}

impl ObjectSink {
    pub(super) async fn write(&mut self, chunk: Bytes) -> Result<(), BackupError> {
        self.hasher.update(&chunk);
        self.bytes += chunk.len() as u64;
        let shown = &self.shown;
        self.writer
            .put(chunk)
            .await
            .map_err(|error| BackupError::Store {
                action: "upload",
                location: shown.clone(),
                error: scrub(&error.to_string()),
            })
    }

    /// Completes the upload; returns (bytes, sha256 in hex).
    pub(super) async fn finish(mut self) -> Result<(u64, String), BackupError> {
        self.writer
            .shutdown()
            .await
            .map_err(|error| BackupError::Store {
                action: "upload",
                location: self.shown.clone(),
                error: scrub(&error.to_string()),
            })?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }

    /// Abandons the upload, asking the store to drop the parts sent so far (best effort).
    pub(super) async fn abort(mut self) {
        let _ = self.writer.abort().await;
    }
}

/// `text` without URL user info, URL query strings (an Azure SAS token travels there) and the
/// values of the credential variables, for error messages of the object stores.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | '<'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        out.push_str(host);
        let path = path.split(['?', '#']).next().unwrap_or_default();
        out.push_str(path);
        if url.len() > authority_end + path.len() {
            out.push_str("?…");
        }
        rest = tail;
    }
    out.push_str(rest);
    for name in SECRET_VARIABLES {
        if let Ok(value) = std::env::var(name) {
            let value = value.trim();
            if value.len() >= 4 {
                out = out.replace(value, "***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_provider_a_bucket_and_a_prefix() {
        let (provider, bucket, prefix) = parse_url("s3://backups/tenantctl/prod/").unwrap();
        assert_eq!(provider, Provider::S3);
        assert_eq!(bucket, "backups");
        assert_eq!(prefix.as_ref(), "tenantctl/prod");
        let (provider, bucket, prefix) = parse_url("gs://b").unwrap();
        assert_eq!(
            (provider, bucket.as_str(), prefix.as_ref()),
            (Provider::Gcs, "b", "")
        );
        let (provider, _, _) = parse_url("az://container/x").unwrap();
        assert_eq!(provider, Provider::Azure);
    }

    #[test]
    fn bad_urls_are_refused_without_showing_credentials() {
        for (text, expected) in [
            (
                "s3://AKIA:s3cretvalue@bucket/x",
                "credentials do not belong in the URL",
            ),
            (
                "s3://bucket/x?X-Amz-Signature=s3cretvalue",
                "a query or fragment",
            ),
            ("ftp://host/x", "`ftp://` is not a backup location"),
            ("s3:///x", "bucket"),
            ("s3://bucket/a//b", "segment"),
            ("s3://bucket:9000/x", "AWS_ENDPOINT"),
        ] {
            let error = parse_url(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("s3cretvalue"), "{text}: {error}");
        }
    }

    #[test]
    fn local_paths_are_not_urls() {
        assert!(looks_like_url("s3://bucket"));
        assert!(looks_like_url("az://c/p"));
        assert!(!looks_like_url("backups"));
        assert!(!looks_like_url("/var/backups/a://b"));
        assert!(!looks_like_url("./s3:/bucket"));
    }

    #[test]
    fn errors_are_scrubbed_of_user_info_and_queries() {
        let text = "error sending request for url (https://user:pa55word@host.example/bucket/key?sig=abc&se=1): timed out";
        let scrubbed = scrub(text);
        assert_eq!(
            scrubbed,
            "error sending request for url (https://host.example/bucket/key?…): timed out"
        );
    }
}
