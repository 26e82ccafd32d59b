//! A prefix of a bucket on the S3-compatible server that `scripts/servers.sh` starts (moto's),
//! and a real S3 client (the `object_store` crate's, as tenantctl uses) to look inside it.
//!
//! Every test gets its own prefix, so tests share the server and the bucket without seeing each
//! other. The server is required: without `TENANTCTL_TEST_S3_URL` a test fails, never skips.

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The bucket `scripts/servers.sh` creates for the tests.
pub const BUCKET: &str = "tenantctl-test";
/// Credentials of the test server. moto accepts any; these are distinctive so that a test can
/// search every output for them. A server that checks signatures gets its own key through
/// `TENANTCTL_TEST_S3_ACCESS_KEY` and `TENANTCTL_TEST_S3_SECRET_KEY`.
pub const ACCESS_KEY: &str = "AKIATCTTESTACCESSKEY";
pub const SECRET_KEY: &str = "tct-secret-k3y-must-never-be-printed";

/// The access key the tests use: the override, or [`ACCESS_KEY`].
pub fn access_key() -> String {
    std::env::var("TENANTCTL_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| ACCESS_KEY.to_string())
}

/// The secret key the tests use: the override, or [`SECRET_KEY`].
pub fn secret_key() -> String {
    std::env::var("TENANTCTL_TEST_S3_SECRET_KEY").unwrap_or_else(|_| SECRET_KEY.to_string())
}

/// The region the server expects (moto takes any; Garage its configured `s3_region`).
pub fn region() -> String {
    std::env::var("TENANTCTL_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".to_string())
}

pub struct TestBucket {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub prefix: String,
    store: Arc<dyn ObjectStore>,
}

impl TestBucket {
    /// A prefix of the shared test bucket.
    pub fn new(prefix: &str) -> Self {
        let endpoint = std::env::var("TENANTCTL_TEST_S3_URL").unwrap_or_else(|_| {
            panic!(
                "TENANTCTL_TEST_S3_URL is not set: these tests need the S3-compatible server; run them with `bash scripts/test.sh`"
            )
        });
        Self::at(&endpoint, prefix)
    }

    /// A prefix of the bucket `BUCKET` on the server at `endpoint`.
    pub fn at(endpoint: &str, prefix: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region(region())
            .with_access_key_id(access_key())
            .with_secret_access_key(secret_key())
            .build()
            .expect("an S3 client for the test server");
        TestBucket {
            endpoint: endpoint.to_string(),
            prefix: prefix.to_string(),
            store: Arc::new(store),
        }
    }

    /// What `--backup-dir` gets.
    pub fn url(&self) -> String {
        format!("s3://{BUCKET}/{}", self.prefix)
    }

    /// The variables that point tenantctl at the server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TENANTCTL_BACKUP_DIR", self.url()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_REGION", region()),
            ("AWS_ACCESS_KEY_ID", access_key()),
            ("AWS_SECRET_ACCESS_KEY", secret_key()),
        ]
    }

    fn location(&self, relative: &str) -> ObjectPath {
        ObjectPath::parse(format!("{}/{relative}", self.prefix)).expect("a valid key")
    }

    /// Every object under the prefix: key relative to the prefix, and size.
    pub fn objects(&self, runtime: &tokio::runtime::Runtime) -> BTreeMap<String, u64> {
        use futures_util::TryStreamExt;
        let prefix = ObjectPath::parse(&self.prefix).unwrap();
        let listed: Vec<object_store::ObjectMeta> = runtime
            .block_on(self.store.list(Some(&prefix)).try_collect())
            .expect("list the test bucket");
        listed
            .into_iter()
            .map(|meta| {
                let key = meta.location.to_string();
                let relative = key
                    .strip_prefix(&format!("{}/", self.prefix))
                    .unwrap_or(&key)
                    .to_string();
                (relative, meta.size)
            })
            .collect()
    }

    /// An object's content.
    pub fn read(&self, runtime: &tokio::runtime::Runtime, relative: &str) -> Vec<u8> {
        let location = self.location(relative);
        runtime
            .block_on(async { self.store.get(&location).await?.bytes().await })
            .unwrap_or_else(|error| panic!("read {relative}: {error}"))
            .to_vec()
    }

    /// Writes an object (as an interrupted run would leave one).
    pub fn put(&self, runtime: &tokio::runtime::Runtime, relative: &str, bytes: &[u8]) {
        let location = self.location(relative);
        runtime
            .block_on(self.store.put(&location, bytes.to_vec().into()))
            .unwrap_or_else(|error| panic!("put {relative}: {error}"));
    }

    /// Deletes every object under the prefix (best effort: a test's clean-up).
    pub fn clear(&self, runtime: &tokio::runtime::Runtime) {
        use futures_util::StreamExt;
        let Ok(prefix) = ObjectPath::parse(&self.prefix) else {
            return;
        };
        let store = Arc::clone(&self.store);
        runtime.block_on(async move {
            let locations = store
                .list(Some(&prefix))
                .map(|meta| meta.map(|meta| meta.location));
            let _ = store
                .delete_stream(locations.boxed())
                .collect::<Vec<_>>()
                .await;
        });
    }
}
