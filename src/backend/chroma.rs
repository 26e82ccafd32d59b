//! A small typed client for exactly the Chroma HTTP API v2 calls tenantctl makes.
//!
//! The official and community Rust clients each pull a second major version of reqwest; this
//! module covers the dozen calls needed, over the crate's own reqwest.

use crate::observed::ObservedCollection;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Page size of collection listings: about 1.4 KB of JSON per collection.
/// Collections per page of the listing: 500 (about 0.7 MB of JSON each) lists 10,000
/// collections in a third of the time pages of 100 take.
const PAGE_SIZE: usize = 500;
/// Pages of the listing requested at once.
const PAGES_AT_ONCE: usize = 4;

/// Longest a request may take. A hung server costs a tenant this (and its compensation as much
/// again); the run stops after a few tenants in a row failed on the same server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of Chroma calls. They carry the base URL (never the token) so a message names the
/// server that failed.
#[derive(Debug, thiserror::Error)]
pub enum ChromaError {
    #[error("chroma at `{url}` is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("chroma at `{url}` answered {status} to {operation}: {message}")]
    Status {
        url: String,
        operation: String,
        status: StatusCode,
        message: String,
    },
    #[error("chroma at `{url}` sent an unexpected answer to {operation}: {reason}")]
    Decode {
        url: String,
        operation: String,
        reason: String,
    },
    #[error("invalid chroma url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
}

/// A connection to one Chroma tenant and database.
#[derive(Clone)]
pub struct ChromaClient {
    http: reqwest::Client,
    /// As given (credentials in it are sent as basic auth by the HTTP client); never shown.
    base: String,
    /// What may be shown: scheme, host, port and path, without user or password.
    shown: String,
    tenant: String,
    database: String,
    token: Option<String>,
}

impl std::fmt::Debug for ChromaClient {
    // Hand-written so the token can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromaClient")
            .field("url", &self.shown)
            .field("tenant", &self.tenant)
            .field("database", &self.database)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

#[derive(Deserialize)]
struct CollectionJson {
    id: String,
    name: String,
    #[serde(default)]
    metadata: Option<crate::observed::SmallMap<String, Value>>,
}

impl ChromaClient {
    /// Builds a client; no request is sent.
    ///
    /// # Errors
    /// The URL is not an http(s) URL.
    pub fn new(
        url: &str,
        tenant: &str,
        database: &str,
        token: Option<String>,
    ) -> Result<Self, ChromaError> {
        let expected = "expected an http(s) URL such as `http://127.0.0.1:8000`";
        let parsed = url::Url::parse(url).map_err(|_| ChromaError::InvalidUrl {
            url: shown_unparsed(url),
            reason: expected.to_string(),
        })?;
        let shown = shown_url(&parsed);
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ChromaError::InvalidUrl {
                url: shown,
                reason: expected.to_string(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| ChromaError::InvalidUrl {
                url: shown.clone(),
                reason: error.to_string(),
            })?;
        Ok(ChromaClient {
            http,
            base: url.trim_end_matches('/').to_string(),
            shown,
            tenant: tenant.to_string(),
            database: database.to_string(),
            token,
        })
    }

    /// The same client with another request timeout.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS backend).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Result<Self, ChromaError> {
        self.http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|error| ChromaError::InvalidUrl {
                url: self.shown.clone(),
                reason: error.to_string(),
            })?;
        Ok(self)
    }

    /// The URL as it may be shown (no credentials, even if the given URL had some).
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The Chroma tenant and database, e.g. `default_tenant/default_database`.
    pub fn scope_name(&self) -> String {
        format!("{}/{}", self.tenant, self.database)
    }

    fn collections_path(&self) -> String {
        format!(
            "/api/v2/tenants/{}/databases/{}/collections",
            encode(&self.tenant),
            encode(&self.database)
        )
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        operation: &str,
    ) -> Result<(StatusCode, Value), ChromaError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status();
        // A dropped connection mid-body is a failure of the step, never a success.
        let text = response
            .text()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|error| ChromaError::Decode {
                url: self.shown.clone(),
                operation: operation.to_string(),
                reason: error.to_string(),
            })?
        };
        Ok((status, value))
    }

    /// A request to `path` with the token, if any.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A failed or cut-off exchange: the server is shown without credentials.
    fn unreachable(&self, error: &reqwest::Error) -> ChromaError {
        ChromaError::Unreachable {
            url: self.shown.clone(),
            reason: describe_reqwest_error(error),
        }
    }

    /// A `GET` whose success is decoded straight into `T` (unknown fields skipped, no
    /// intermediate JSON tree).
    async fn get_typed<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        operation: &str,
    ) -> Result<T, ChromaError> {
        let response = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if !status.is_success() {
            let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(self.status_error(operation, status, &value));
        }
        serde_json::from_slice(&bytes).map_err(|error| ChromaError::Decode {
            url: self.shown.clone(),
            operation: operation.to_string(),
            reason: error.to_string(),
        })
    }

    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        operation: &str,
    ) -> Result<Value, ChromaError> {
        let (status, value) = self.call(method, path, body, operation).await?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(self.status_error(operation, status, &value))
        }
    }

    fn status_error(&self, operation: &str, status: StatusCode, value: &Value) -> ChromaError {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| value.get("error").and_then(Value::as_str))
            .unwrap_or("no message")
            .to_string();
        ChromaError::Status {
            url: self.shown.clone(),
            operation: operation.to_string(),
            status,
            message,
        }
    }

    /// `GET /api/v2/heartbeat`.
    pub async fn heartbeat(&self) -> Result<(), ChromaError> {
        self.call_ok(Method::GET, "/api/v2/heartbeat", None, "heartbeat")
            .await
            .map(|_| ())
    }

    /// Creates the Chroma tenant and database when missing (409 means they exist). Chroma
    /// accepts a database under a missing tenant, so the tenant goes first.
    pub async fn ensure_scope(&self) -> Result<(), ChromaError> {
        let (status, value) = self
            .call(
                Method::POST,
                "/api/v2/tenants",
                Some(json!({ "name": self.tenant })),
                "create tenant",
            )
            .await?;
        if !status.is_success() && status != StatusCode::CONFLICT {
            return Err(self.status_error("create tenant", status, &value));
        }
        let path = format!("/api/v2/tenants/{}/databases", encode(&self.tenant));
        let (status, value) = self
            .call(
                Method::POST,
                &path,
                Some(json!({ "name": self.database })),
                "create database",
            )
            .await?;
        if !status.is_success() && status != StatusCode::CONFLICT {
            return Err(self.status_error("create database", status, &value));
        }
        Ok(())
    }

    /// Whether the configured Chroma tenant and database exist.
    pub async fn scope(&self) -> Result<crate::observed::ChromaScope, ChromaError> {
        let exists = |path: String, operation: &'static str| async move {
            let (status, value) = self.call(Method::GET, &path, None, operation).await?;
            match status {
                status if status.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                status => Err(self.status_error(operation, status, &value)),
            }
        };
        let tenant_exists = exists(
            format!("/api/v2/tenants/{}", encode(&self.tenant)),
            "get tenant",
        )
        .await?;
        let database_exists = tenant_exists
            && exists(
                format!(
                    "/api/v2/tenants/{}/databases/{}",
                    encode(&self.tenant),
                    encode(&self.database)
                ),
                "get database",
            )
            .await?;
        Ok(crate::observed::ChromaScope {
            tenant_exists,
            database_exists,
        })
    }

    /// Every collection of the database, by name.
    ///
    /// Chroma orders listings by a random uuid, so pages shift when someone creates collections
    /// meanwhile. The listing is deduplicated by id and checked against `collections_count`;
    /// a mismatch is retried a few times before being reported.
    pub async fn list_collections(
        &self,
    ) -> Result<BTreeMap<String, ObservedCollection>, ChromaError> {
        let mut last_mismatch = (0, 0);
        for _attempt in 0..3 {
            let expected = self.count_collections().await?;
            let mut by_name = BTreeMap::new();
            let mut seen_ids = std::collections::BTreeSet::new();
            let mut keep = |page: Vec<CollectionJson>| {
                for collection in page {
                    if seen_ids.insert(collection.id.clone()) {
                        by_name.insert(
                            collection.name,
                            ObservedCollection {
                                id: collection.id,
                                metadata: crate::observed::compact(
                                    collection.metadata.unwrap_or_default(),
                                ),
                                records: None,
                            },
                        );
                    }
                }
            };
            // The pages the count announces, a few at once (the server answers reads in
            // parallel), each decoded as it arrives; then on, one by one, while pages come full
            // (collections created meanwhile).
            let counted_pages = usize::try_from(expected).unwrap_or(usize::MAX) / PAGE_SIZE + 1;
            let pages: Vec<Vec<CollectionJson>> = futures_util::stream::iter(0..counted_pages)
                .map(|page| self.list_page(page * PAGE_SIZE))
                .buffered(PAGES_AT_ONCE)
                .try_collect()
                .await?;
            let mut last_full = pages.last().is_some_and(|page| page.len() == PAGE_SIZE);
            for page in pages {
                keep(page);
            }
            let mut offset = counted_pages * PAGE_SIZE;
            while last_full {
                let page = self.list_page(offset).await?;
                last_full = page.len() == PAGE_SIZE;
                keep(page);
                offset += PAGE_SIZE;
            }
            if by_name.len() as u64 == expected {
                return Ok(by_name);
            }
            last_mismatch = (by_name.len() as u64, expected);
        }
        Err(ChromaError::Decode {
            url: self.shown.clone(),
            operation: "list collections".to_string(),
            reason: format!(
                "listed {} collections but the server counts {}; collections are being created or deleted concurrently",
                last_mismatch.0, last_mismatch.1
            ),
        })
    }

    /// `GET …/collections_count`.
    /// One page of the listing.
    async fn list_page(&self, offset: usize) -> Result<Vec<CollectionJson>, ChromaError> {
        let path = format!(
            "{}?limit={PAGE_SIZE}&offset={offset}",
            self.collections_path()
        );
        self.get_typed(&path, "list collections").await
    }

    pub async fn count_collections(&self) -> Result<u64, ChromaError> {
        let path = format!(
            "/api/v2/tenants/{}/databases/{}/collections_count",
            encode(&self.tenant),
            encode(&self.database)
        );
        let value = self
            .call_ok(Method::GET, &path, None, "count collections")
            .await?;
        value.as_u64().ok_or_else(|| ChromaError::Decode {
            url: self.shown.clone(),
            operation: "count collections".to_string(),
            reason: format!("expected an integer, got {value}"),
        })
    }

    /// Creates a collection; returns its id.
    pub async fn create_collection(
        &self,
        name: &str,
        metadata: &Map<String, Value>,
    ) -> Result<String, ChromaError> {
        let operation = format!("create collection `{name}`");
        let value = self
            .call_ok(
                Method::POST,
                &self.collections_path(),
                Some(json!({ "name": name, "metadata": metadata, "get_or_create": false })),
                &operation,
            )
            .await?;
        value
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ChromaError::Decode {
                url: self.shown.clone(),
                operation,
                reason: "no `id` in the answer".to_string(),
            })
    }

    /// Fetches one collection by name; `None` when it does not exist.
    pub async fn get_collection(
        &self,
        name: &str,
    ) -> Result<Option<ObservedCollection>, ChromaError> {
        let operation = format!("get collection `{name}`");
        let path = format!("{}/{}", self.collections_path(), encode(name));
        let (status, value) = self.call(Method::GET, &path, None, &operation).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&operation, status, &value));
        }
        let collection: CollectionJson =
            serde_json::from_value(value).map_err(|error| ChromaError::Decode {
                url: self.shown.clone(),
                operation,
                reason: error.to_string(),
            })?;
        Ok(Some(ObservedCollection {
            id: collection.id,
            metadata: collection.metadata.unwrap_or_default(),
            records: None,
        }))
    }

    /// Replaces a collection's metadata (Chroma replaces, it does not merge).
    pub async fn update_metadata(
        &self,
        id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<(), ChromaError> {
        let path = format!("{}/{}", self.collections_path(), encode(id));
        self.call_ok(
            Method::PUT,
            &path,
            Some(json!({ "new_metadata": metadata })),
            "update collection metadata",
        )
        .await
        .map(|_| ())
    }

    /// Deletes a collection by name.
    pub async fn delete_collection(&self, name: &str) -> Result<(), ChromaError> {
        let path = format!("{}/{}", self.collections_path(), encode(name));
        self.call_ok(
            Method::DELETE,
            &path,
            None,
            &format!("delete collection `{name}`"),
        )
        .await
        .map(|_| ())
    }

    /// Number of records in a collection.
    pub async fn count_records(&self, id: &str) -> Result<u64, ChromaError> {
        let path = format!("{}/{}/count", self.collections_path(), encode(id));
        let value = self
            .call_ok(Method::GET, &path, None, "count records")
            .await?;
        value.as_u64().ok_or_else(|| ChromaError::Decode {
            url: self.shown.clone(),
            operation: "count records".to_string(),
            reason: format!("expected an integer, got {value}"),
        })
    }

    /// Adds records (ids, embeddings, documents, metadatas) to a collection.
    pub async fn add_records(&self, id: &str, records: Value) -> Result<(), ChromaError> {
        let path = format!("{}/{}/add", self.collections_path(), encode(id));
        self.call_ok(Method::POST, &path, Some(records), "add records")
            .await
            .map(|_| ())
    }

    /// One page of records with everything needed to restore them, each a whole
    /// [`Record`] (the server's parallel arrays checked to match).
    pub async fn get_records(
        &self,
        id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Record>, ChromaError> {
        let operation = "get records";
        let path = format!("{}/{}/get", self.collections_path(), encode(id));
        let value = self
            .call_ok(
                Method::POST,
                &path,
                Some(json!({
                    "limit": limit,
                    "offset": offset,
                    "include": ["embeddings", "documents", "metadatas", "uris"],
                })),
                operation,
            )
            .await?;
        let decode = |reason: String| ChromaError::Decode {
            url: self.shown.clone(),
            operation: operation.to_string(),
            reason,
        };
        let page: RecordPage =
            serde_json::from_value(value).map_err(|error| decode(error.to_string()))?;
        page.into_records().map_err(decode)
    }
}

/// One record of a collection, as a backup keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// The embedding exactly as the server sent it (a JSON array of numbers).
    pub embedding: Value,
    pub document: Option<String>,
    /// `None` for no metadata: Chroma answers `{}` for a record that has a uri but no
    /// metadata, and null for one added with `{}`.
    pub metadata: Option<Map<String, Value>>,
    pub uri: Option<String>,
}

/// One page of `POST …/get`: parallel arrays, one entry per id.
#[derive(Deserialize)]
struct RecordPage {
    ids: Vec<String>,
    embeddings: Option<Vec<Option<Value>>>,
    documents: Option<Vec<Option<String>>>,
    metadatas: Option<Vec<Option<Map<String, Value>>>>,
    uris: Option<Vec<Option<String>>>,
}

impl RecordPage {
    /// The page as records; an error when an array is missing or of another length than the
    /// ids, or a record has no embedding.
    fn into_records(self) -> Result<Vec<Record>, String> {
        let length = self.ids.len();
        let embeddings = self.embeddings.ok_or("no `embeddings`")?;
        let parallel = [
            ("embeddings", Some(embeddings.len())),
            ("documents", self.documents.as_ref().map(Vec::len)),
            ("metadatas", self.metadatas.as_ref().map(Vec::len)),
            ("uris", self.uris.as_ref().map(Vec::len)),
        ];
        for (field, field_length) in parallel {
            if let Some(field_length) = field_length.filter(|field_length| *field_length != length)
            {
                return Err(format!("{length} ids but {field_length} {field}"));
            }
        }
        let mut documents = self.documents.map(Vec::into_iter);
        let mut metadatas = self.metadatas.map(Vec::into_iter);
        let mut uris = self.uris.map(Vec::into_iter);
        self.ids
            .into_iter()
            .zip(embeddings)
            .map(|(id, embedding)| {
                let embedding = embedding
                    .filter(Value::is_array)
                    .ok_or_else(|| format!("record `{id}` has no embedding"))?;
                Ok(Record {
                    document: documents.as_mut().and_then(Iterator::next).flatten(),
                    metadata: metadatas
                        .as_mut()
                        .and_then(Iterator::next)
                        .flatten()
                        .filter(|metadata| !metadata.is_empty()),
                    uri: uris.as_mut().and_then(Iterator::next).flatten(),
                    id,
                    embedding,
                })
            })
            .collect()
    }
}

/// A URL without its user and password, for messages and plan headers.
fn shown_url(parsed: &url::Url) -> String {
    let mut shown = parsed.clone();
    let had_credentials = !parsed.username().is_empty() || parsed.password().is_some();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let text = shown.as_str().trim_end_matches('/').to_string();
    if had_credentials {
        format!("{text} (credentials hidden)")
    } else {
        text
    }
}

/// At most the scheme and host of a URL that did not parse (a password may hold any
/// character): the host is what follows the last `@`.
fn shown_unparsed(url: &str) -> String {
    super::scheme_and_host(url).unwrap_or_else(|| "(not a URL)".to_string())
}

/// Percent-encodes one path segment. Tenant and collection names are validated to a safe
/// alphabet already; this keeps a user-chosen Chroma tenant or database name from changing
/// the path (`/`, `?`, `#`, `%` and spaces are encoded).
fn encode(segment: &str) -> String {
    /// Everything but RFC 3986's unreserved characters.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn describe_reqwest_error(error: &reqwest::Error) -> String {
    // reqwest's Display includes the full URL; rebuild a message from the source chain instead,
    // which is both shorter and free of anything a user put in the URL.
    let mut reason = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_becomes_whole_records_or_an_error() {
        let page: RecordPage = serde_json::from_value(json!({
            "ids": ["a", "b"],
            "embeddings": [[0.5, 1.0], [2.0, 3.0]],
            "documents": ["first", null],
            "metadatas": [{}, {"k": 1}],
            "uris": null,
        }))
        .unwrap();
        let records = page.into_records().unwrap();
        assert_eq!(records[0].metadata, None, "`{{}}` is no metadata");
        assert_eq!(records[1].metadata.as_ref().unwrap()["k"], json!(1));
        assert_eq!(records[0].document.as_deref(), Some("first"));
        assert_eq!(records[1].embedding, json!([2.0, 3.0]));
        let short: RecordPage = serde_json::from_value(json!({
            "ids": ["a", "b"], "embeddings": [[0.5]], "documents": null,
            "metadatas": null, "uris": null,
        }))
        .unwrap();
        assert_eq!(short.into_records().unwrap_err(), "2 ids but 1 embeddings");
        let missing: RecordPage = serde_json::from_value(json!({
            "ids": ["a"], "embeddings": [null], "documents": null,
            "metadatas": null, "uris": null,
        }))
        .unwrap();
        assert_eq!(
            missing.into_records().unwrap_err(),
            "record `a` has no embedding"
        );
    }

    #[test]
    fn path_segments_cannot_change_the_path() {
        assert_eq!(encode("default_database"), "default_database");
        assert_eq!(encode("a/../b?c#d e%"), "a%2F..%2Fb%3Fc%23d%20e%25");
    }

    #[test]
    fn credentials_in_a_url_are_never_shown() {
        let parsed =
            url::Url::parse("https://reader:s3cret@chroma.internal:8000/base/?x=1").unwrap();
        assert_eq!(
            shown_url(&parsed),
            "https://chroma.internal:8000/base (credentials hidden)"
        );
        assert_eq!(
            shown_unparsed("http://u:s3/cr@t@chroma:80x0"),
            "http://chroma/…"
        );
        assert_eq!(shown_unparsed("chroma:8000"), "(not a URL)");
    }
}
