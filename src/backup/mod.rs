//! Final backups of soft-deleted tenants, and their removal when the tenant is purged.
//!
//! Layout, one folder per backup:
//!
//! ```text
//! <root>/<tenant_id>/<uid>/<YYYYMMDDTHHMMSSZ>/
//!     manifest.json           what was exported, with counts and sha256 of every file
//!     postgres/<table>.csv    COPY ... TO STDOUT WITH (FORMAT csv, HEADER)
//!     chroma/records.jsonl    one record per line: id, embedding, document, metadata, uri
//! ```
//!
//! A backup folder with a `manifest.json` is complete: [`export`] writes into a hidden sibling
//! (`.<timestamp>.partial-<random>`) and renames it into place only after every file, the
//! manifest included, is written and fsynced. Folders are 0700 and files 0600: they hold
//! customer data. Deleting never follows a symbolic link.
//!
//! The same layout lives under the prefix of an object-store URL (`s3://`, `gs://`, `az://`,
//! see [`object`]), where the manifest is written last, after every data object has been read
//! back and checked: a folder without a manifest is an unfinished export there.
//!
//! [`BackupStore`] is the one entry point: the planner and the executor ask it, never a path.
//!
//! Local file writes use `std::fs`: they go to local disk through a buffer, between awaits on
//! the network.

mod export;
mod files;
pub mod object;

use object::ObjectBackups;

/// The local folder store's own operations, for callers (and tests) that hold a path rather
/// than a [`BackupStore`].
pub mod local {
    pub use super::files::{delete_all, inventory, remove, remove_partial, usage};
}

use crate::backend::chroma::{ChromaClient, ChromaError};
use crate::backend::postgres::PostgresError;
use crate::observed::ObservedBackup;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Name of the manifest inside a backup folder; its presence marks the backup as complete.
pub const MANIFEST: &str = "manifest.json";

/// Version of the manifest format written by this module.
pub const FORMAT_VERSION: u32 = 1;

/// Folder names of backups: the UTC time the backup was taken.
const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Records fetched from Chroma per request.
const CHROMA_PAGE_SIZE: usize = 500;

const RECORDS_FILE: &str = "chroma/records.jsonl";

const RESTORE_HINT: &str =
    "verify every file against its sha256 and counts first; for each table: \
COPY \"<schema>\".\"<table>\" (<columns in header order>) FROM STDIN WITH (FORMAT csv, HEADER) \
fed with postgres/<table>.csv; for chroma: create a collection with the same name and POST the \
lines of chroma/records.jsonl (as ids, embeddings, documents, metadatas, uris) to its /add";

const FILE_MODE: u32 = 0o600;
const FOLDER_MODE: u32 = 0o700;

/// Errors of writing, measuring and deleting backups. Paths are named; nothing secret is.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file system call failed. The cause is part of the message (and not a `source`, so a
    /// `{:#}` chain does not print it twice).
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Chroma(#[from] ChromaError),
    #[error("refusing to use `{0}` as a backup folder name")]
    Name(String),
    #[error("refusing to follow the symbolic link `{}`", .0.display())]
    Symlink(PathBuf),
    #[error("`{}` is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("`{}` is not a backup folder", .0.display())]
    NotABackup(PathBuf),
    #[error("backup folder `{}` already exists", .0.display())]
    Exists(PathBuf),
    /// A backup location that cannot be used. Shown without credentials.
    #[error("backup location `{url}`: {reason}")]
    Url { url: String, reason: String },
    /// A request to the object store failed (after its retries). Scrubbed of credentials.
    #[error("cannot {action} `{location}`: {error}")]
    Store {
        action: &'static str,
        location: String,
        error: String,
    },
    /// A file read back from where it was written differs from what was written.
    #[error("backup file `{location}` does not read back as written: {reason}")]
    Verify { location: String, reason: String },
    #[error("postgres sent an incomplete CSV export of `{table}`")]
    TruncatedCsv { table: String },
    #[error(
        "collection `{collection}` changed during the export: wrote {written} records, the server counted {before} before and {after} after"
    )]
    RecordsChanged {
        collection: String,
        written: u64,
        before: u64,
        after: u64,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |error| BackupError::Io {
        action,
        path,
        error,
    }
}

/// Where backups are kept: a local folder (created 0700 when missing) or a prefix of a bucket.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub enum BackupStore {
    Local(PathBuf),
    Object(Arc<ObjectBackups>),
}

/// One written backup folder, for taking it back.
#[derive(Clone, Debug, PartialEq)]
pub enum BackupLocation {
    Local(PathBuf),
    Object(object_store::path::Path),
}

impl BackupStore {
    /// `--backup-dir`: an `s3://`, `gs://` or `az://` URL, or else a local path. Object-store
    /// requests are bounded by `timeout` each.
    ///
    /// # Errors
    /// An empty value, or a URL that cannot be used (see [`object::parse_url`]).
    pub fn open(text: &str, timeout: Duration) -> Result<Self, BackupError> {
        if text.trim().is_empty() {
            return Err(BackupError::Url {
                url: String::new(),
                reason: "`--backup-dir` (`TENANTCTL_BACKUP_DIR`) is empty".to_string(),
            });
        }
        if object::looks_like_url(text) {
            Ok(BackupStore::Object(Arc::new(ObjectBackups::open(
                text, timeout,
            )?)))
        } else {
            Ok(BackupStore::Local(PathBuf::from(text)))
        }
    }

    /// The path or `scheme://bucket/prefix`, as shown and saved with a plan.
    pub fn display(&self) -> String {
        match self {
            BackupStore::Local(root) => root.display().to_string(),
            BackupStore::Object(store) => store.url().to_string(),
        }
    }

    /// How a written backup is named in messages.
    pub fn show(&self, location: &BackupLocation) -> String {
        match (self, location) {
            (BackupStore::Object(store), BackupLocation::Object(folder)) => store.show(folder),
            (_, BackupLocation::Local(dir)) => dir.display().to_string(),
            (BackupStore::Local(_), BackupLocation::Object(folder)) => folder.to_string(),
        }
    }

    /// Every backup folder, complete or not, for the plan to account for.
    ///
    /// # Errors
    /// The folder or the store could not be read.
    pub async fn inventory(&self) -> Result<Vec<ObservedBackup>, BackupError> {
        match self {
            BackupStore::Local(root) => files::inventory(root),
            BackupStore::Object(store) => store.inventory().await,
        }
    }

    /// What a purge of one tenant incarnation deletes.
    ///
    /// # Errors
    /// An unsafe tenant name, a symbolic link in the way, or the store could not be read.
    pub async fn usage(&self, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
        match self {
            BackupStore::Local(root) => files::usage(root, tenant, uid),
            BackupStore::Object(store) => store.usage(tenant, uid).await,
        }
    }

    /// Writes the final backup of one tenant: complete and read back before this returns.
    ///
    /// # Errors
    /// See [`export::export_local`] and [`export::export_object`].
    pub async fn export(
        &self,
        transaction: &tokio_postgres::Transaction<'_>,
        chroma: &ChromaClient,
        request: &ExportRequest<'_>,
    ) -> Result<BackupWritten, BackupError> {
        match self {
            BackupStore::Local(root) => {
                export::export_local(root, transaction, chroma, request).await
            }
            BackupStore::Object(store) => {
                export::export_object(store, transaction, chroma, request).await
            }
        }
    }

    /// Removes a backup this run wrote (its tenant rolled back).
    ///
    /// # Errors
    /// The location is not a backup folder of this store, or deleting failed.
    pub async fn remove(&self, location: &BackupLocation) -> Result<(), BackupError> {
        match (self, location) {
            (_, BackupLocation::Local(dir)) => files::remove(dir),
            (BackupStore::Object(store), BackupLocation::Object(folder)) => {
                store.remove(folder).await
            }
            (BackupStore::Local(_), BackupLocation::Object(folder)) => {
                Err(BackupError::NotABackup(folder.to_string().into()))
            }
        }
    }

    /// Deletes every backup of one tenant incarnation (purge).
    ///
    /// # Errors
    /// See [`files::delete_all`] and [`ObjectBackups::delete_all`].
    pub async fn delete_all(&self, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
        match self {
            BackupStore::Local(root) => files::delete_all(root, tenant, uid),
            BackupStore::Object(store) => store.delete_all(tenant, uid).await,
        }
    }

    /// Removes an unfinished export the plan reported.
    ///
    /// # Errors
    /// The name does not fit, or deleting failed.
    pub async fn remove_partial(
        &self,
        leftover: &crate::plan::BackupLeftover,
    ) -> Result<(), BackupError> {
        match self {
            BackupStore::Local(root) => files::remove_partial(root, leftover),
            BackupStore::Object(store) => store.remove_partial(leftover).await,
        }
    }
}

/// What to export.
pub struct ExportRequest<'a> {
    pub tenant: &'a str,
    pub uid: Uuid,
    pub schema: &'a str,
    /// Tables of the schema to export (names as in the catalog).
    pub tables: &'a [String],
    /// The collection, if it exists: (name, id).
    pub collection: Option<(&'a str, &'a str)>,
    /// The tenant's latest applied migration, for the manifest.
    pub migration_version: Option<u32>,
    /// Server time, used for the folder name and the manifest.
    pub taken_at: DateTime<Utc>,
}

/// A written backup.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupWritten {
    /// The final folder, `<root>/<tenant>/<uid>/<timestamp>`.
    pub location: BackupLocation,
    /// Its name, `<timestamp>` (or `<timestamp>-<n>`).
    pub folder: String,
    /// Rows of all tables.
    pub rows: u64,
    /// Chroma records (0 without a collection).
    pub records: u64,
    /// Bytes of every file written, the manifest included.
    pub bytes: u64,
}

/// Files and bytes of the backups of one tenant incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BackupUsage {
    /// Complete backups (folders with a manifest).
    pub backups: u64,
    /// Every file under `<root>/<tenant>/<uid>`, leftovers of interrupted exports included,
    /// since a purge deletes them too.
    pub files: u64,
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub tenant: String,
    pub uid: Uuid,
    pub taken_at: DateTime<Utc>,
    pub schema: String,
    /// The tenant's latest applied migration: the schema the tables were exported from (a
    /// restore re-creates it by running the migrations up to this version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_version: Option<u32>,
    pub tables: Vec<TableFile>,
    pub chroma: Option<ChromaFile>,
    pub restore_hint: String,
}

/// One exported table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFile {
    pub name: String,
    /// Relative to the backup folder.
    pub file: String,
    /// Columns in CSV order, with their types, so the table can be recreated before a restore.
    pub columns: Vec<Column>,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// A column of an exported table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// As `format_type` prints it, e.g. `timestamp with time zone`.
    #[serde(rename = "type")]
    pub type_name: String,
    pub not_null: bool,
}

/// The exported collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChromaFile {
    pub collection: String,
    pub id: String,
    /// Relative to the backup folder.
    pub file: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}
