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
//! File writes use `std::fs` (tokio's `fs` feature is not enabled): they go to local disk
//! through a buffer, between awaits on the network.

use crate::backend::chroma::{ChromaClient, ChromaError};
use crate::backend::postgres::{quote_ident, PostgresError};
use crate::observed::ObservedBackup;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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
    #[error("postgres sent an incomplete CSV export of `{table}`")]
    TruncatedCsv { table: String },
    #[error("chroma sent an unexpected answer to get records of `{collection}`: {reason}")]
    ChromaAnswer { collection: String, reason: String },
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

/// What to export.
pub struct ExportRequest<'a> {
    /// The backup root; created (0700) when missing.
    pub root: &'a Path,
    pub tenant: &'a str,
    pub uid: Uuid,
    pub schema: &'a str,
    /// Tables of the schema to export (names as in the catalog).
    pub tables: &'a [String],
    /// The collection, if it exists: (name, id).
    pub collection: Option<(&'a str, &'a str)>,
    /// Server time, used for the folder name and the manifest.
    pub taken_at: DateTime<Utc>,
}

/// A written backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupWritten {
    /// The final folder, `<root>/<tenant>/<uid>/<timestamp>`.
    pub dir: PathBuf,
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

/// Writes a final backup of one tenant.
///
/// The tables are read with `COPY` inside the caller's transaction, so the export includes the
/// transaction's own changes and disappears with it logically (call [`remove`] when the
/// transaction rolls back). Each `COPY` takes its own snapshot unless the transaction is
/// `REPEATABLE READ` or stricter; only then do all tables come from one snapshot.
///
/// Chroma records are paged and checked against the collection's count before and after;
/// duplicates or a different count are an error (the collection changed meanwhile).
///
/// # Guarantees
/// Everything is written into a hidden temporary folder next to the final one, fsynced, and
/// renamed into place last: a folder named like a backup always holds a complete one. On error
/// the temporary folder and any folder this call created are removed.
///
/// # Errors
/// An unsafe tenant name or identifier, an existing backup folder with the same timestamp,
/// a symbolic link in the way, file system errors (naming the path), PostgreSQL and Chroma
/// errors, and records changing during the export.
pub async fn export(
    transaction: &tokio_postgres::Transaction<'_>,
    chroma: &ChromaClient,
    request: &ExportRequest<'_>,
) -> Result<BackupWritten, BackupError> {
    check_component(request.tenant)?;
    // Refuse bad identifiers before anything is created.
    quote_ident(request.schema)?;
    for table in request.tables {
        quote_ident(table)?;
    }

    let stamp = request.taken_at.format(TIMESTAMP_FORMAT).to_string();
    let uid_dir = incarnation_dir(request.root, request.tenant, request.uid);
    let created = create_folders(request.root, request.tenant, request.uid)?;
    // A backup of the same second already there is what an interrupted run left (one that
    // renamed its folder but never committed): it is reported by the plan and kept, and this
    // one takes the next free name, `<timestamp>-2`, `-3`, ...
    let final_dir = (1..=1000)
        .map(|n| {
            uid_dir.join(if n == 1 {
                stamp.clone()
            } else {
                format!("{stamp}-{n}")
            })
        })
        .find(|dir| std::fs::symlink_metadata(dir).is_err())
        .unwrap_or_else(|| uid_dir.join(&stamp));

    let temporary = uid_dir.join(format!(".{stamp}.partial-{}", Uuid::new_v4().simple()));
    let mut renamed = false;
    let outcome = async {
        if std::fs::symlink_metadata(&final_dir).is_ok() {
            return Err(BackupError::Exists(final_dir.clone()));
        }
        make_folder(&temporary)?;
        let written = write_backup(transaction, chroma, request, &temporary).await?;
        // Not found yet: a backup racing for the same second must not be replaced (rename
        // would replace an empty folder).
        if std::fs::symlink_metadata(&final_dir).is_ok() {
            return Err(BackupError::Exists(final_dir.clone()));
        }
        std::fs::rename(&temporary, &final_dir).map_err(io_error("rename into", &final_dir))?;
        renamed = true;
        sync_folder(&uid_dir)?;
        for folder in &created {
            if let Some(parent) = folder.parent() {
                sync_folder(parent)?;
            }
        }
        Ok(written)
    }
    .await;

    match outcome {
        Ok((rows, records, bytes)) => Ok(BackupWritten {
            dir: final_dir,
            rows,
            records,
            bytes,
        }),
        Err(error) => {
            // Best effort: the original error is the one worth reporting.
            let _ = std::fs::remove_dir_all(&temporary);
            if renamed {
                // Complete but not durable: the caller is told it failed, so it must not stay.
                let _ = std::fs::remove_dir_all(&final_dir);
            }
            for folder in created.iter().rev() {
                let _ = std::fs::remove_dir(folder);
            }
            Err(error)
        }
    }
}

/// Writes the files and the manifest into `folder`; returns (rows, records, bytes).
async fn write_backup(
    transaction: &tokio_postgres::Transaction<'_>,
    chroma: &ChromaClient,
    request: &ExportRequest<'_>,
    folder: &Path,
) -> Result<(u64, u64, u64), BackupError> {
    let mut columns = table_columns(transaction, request).await?;
    let mut tables = Vec::with_capacity(request.tables.len());
    make_folder(&folder.join("postgres"))?;
    for table in request.tables {
        let file = format!("postgres/{table}.csv");
        let (rows, bytes, sha256) =
            export_table(transaction, request.schema, table, &folder.join(&file)).await?;
        tables.push(TableFile {
            name: table.clone(),
            file,
            columns: columns.remove(table).unwrap_or_default(),
            rows,
            bytes,
            sha256,
        });
    }

    let chroma_file = match request.collection {
        Some((name, id)) => {
            make_folder(&folder.join("chroma"))?;
            let path = folder.join(RECORDS_FILE);
            let (records, bytes, sha256) = export_records(chroma, name, id, &path).await?;
            Some(ChromaFile {
                collection: name.to_string(),
                id: id.to_string(),
                file: RECORDS_FILE.to_string(),
                records,
                bytes,
                sha256,
            })
        }
        None => None,
    };

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        tenant: request.tenant.to_string(),
        uid: request.uid,
        taken_at: request.taken_at,
        schema: request.schema.to_string(),
        tables,
        chroma: chroma_file,
        restore_hint: RESTORE_HINT.to_string(),
    };
    let mut text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    text.push(b'\n');
    let manifest_path = folder.join(MANIFEST);
    let mut writer = HashingWriter::create(&manifest_path)?;
    writer.write(&text)?;
    let (manifest_bytes, _) = writer.finish()?;

    for subfolder in ["postgres", "chroma"] {
        let path = folder.join(subfolder);
        if path.is_dir() {
            sync_folder(&path)?;
        }
    }
    sync_folder(folder)?;

    let rows = manifest.tables.iter().map(|table| table.rows).sum();
    let records = manifest.chroma.as_ref().map_or(0, |chroma| chroma.records);
    let bytes = manifest.tables.iter().map(|table| table.bytes).sum::<u64>()
        + manifest.chroma.as_ref().map_or(0, |chroma| chroma.bytes)
        + manifest_bytes;
    Ok((rows, records, bytes))
}

/// Column names and types of the requested tables, read in the same transaction.
async fn table_columns(
    transaction: &tokio_postgres::Transaction<'_>,
    request: &ExportRequest<'_>,
) -> Result<std::collections::BTreeMap<String, Vec<Column>>, BackupError> {
    let rows = transaction
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = $1 AND c.relname = ANY($2) \
             ORDER BY c.relname, a.attnum",
            &[&request.schema, &request.tables],
        )
        .await
        .map_err(|error| PostgresError::Query {
            operation: format!("read the columns of schema `{}`", request.schema),
            error,
        })?;
    let mut columns: std::collections::BTreeMap<String, Vec<Column>> = Default::default();
    for row in rows {
        columns.entry(row.get(0)).or_default().push(Column {
            name: row.get(1),
            type_name: row.get(2),
            not_null: row.get(3),
        });
    }
    Ok(columns)
}

/// Streams one table to `path`; returns (rows, bytes, sha256).
async fn export_table(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
    table: &str,
    path: &Path,
) -> Result<(u64, u64, String), BackupError> {
    let operation = || format!("export table `{schema}.{table}`");
    let sql = format!(
        "COPY (SELECT * FROM {}.{}) TO STDOUT WITH (FORMAT csv, HEADER)",
        quote_ident(schema)?,
        quote_ident(table)?
    );
    let stream =
        transaction
            .copy_out(sql.as_str())
            .await
            .map_err(|error| PostgresError::Query {
                operation: operation(),
                error,
            })?;
    futures_util::pin_mut!(stream);
    let mut writer = HashingWriter::create(path)?;
    let mut counter = CsvRecordCounter::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| PostgresError::Query {
            operation: operation(),
            error,
        })?;
        counter.feed(&chunk);
        writer.write(&chunk)?;
    }
    let rows = counter.rows().ok_or_else(|| BackupError::TruncatedCsv {
        table: table.to_string(),
    })?;
    let (bytes, sha256) = writer.finish()?;
    Ok((rows, bytes, sha256))
}

/// Counts CSV records (newlines outside quotes) across chunk boundaries. PostgreSQL ends every
/// line with `\n` on the wire and doubles quotes inside quoted values, so toggling on every
/// quote is exact.
#[derive(Default)]
struct CsvRecordCounter {
    lines: u64,
    in_quotes: bool,
    last: Option<u8>,
}

impl CsvRecordCounter {
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match byte {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => self.lines += 1,
                _ => {}
            }
        }
        if let Some(&last) = bytes.last() {
            self.last = Some(last);
        }
    }

    /// Data rows (lines minus the header); `None` when the stream did not end a record.
    fn rows(&self) -> Option<u64> {
        if self.in_quotes || self.last != Some(b'\n') || self.lines == 0 {
            return None;
        }
        Some(self.lines - 1)
    }
}

/// One page of `POST …/get`: parallel arrays, one entry per id.
#[derive(Deserialize)]
struct RecordsPage {
    ids: Vec<String>,
    embeddings: Option<Vec<Option<Value>>>,
    documents: Option<Vec<Option<String>>>,
    metadatas: Option<Vec<Option<Map<String, Value>>>>,
    uris: Option<Vec<Option<String>>>,
}

/// One line of `records.jsonl`.
#[derive(Serialize)]
struct RecordLine<'a> {
    id: &'a str,
    embedding: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<&'a String>,
}

/// Pages through a collection into `path`; returns (records, bytes, sha256).
async fn export_records(
    chroma: &ChromaClient,
    name: &str,
    id: &str,
    path: &Path,
) -> Result<(u64, u64, String), BackupError> {
    let answer_error = |reason: String| BackupError::ChromaAnswer {
        collection: name.to_string(),
        reason,
    };
    let before = chroma.count_records(id).await?;
    let mut writer = HashingWriter::create(path)?;
    let mut seen = BTreeSet::new();
    let mut offset = 0;
    loop {
        let value = chroma.get_records(id, CHROMA_PAGE_SIZE, offset).await?;
        let page: RecordsPage =
            serde_json::from_value(value).map_err(|error| answer_error(error.to_string()))?;
        let length = page.ids.len();
        let embeddings = page
            .embeddings
            .ok_or_else(|| answer_error("no `embeddings`".to_string()))?;
        let parallel = [
            ("embeddings", Some(embeddings.len())),
            ("documents", page.documents.as_ref().map(Vec::len)),
            ("metadatas", page.metadatas.as_ref().map(Vec::len)),
            ("uris", page.uris.as_ref().map(Vec::len)),
        ];
        for (field, field_length) in parallel {
            if field_length.is_some_and(|field_length| field_length != length) {
                return Err(answer_error(format!(
                    "{length} ids but {} {field}",
                    field_length.unwrap_or_default()
                )));
            }
        }
        for (index, record_id) in page.ids.iter().enumerate() {
            if !seen.insert(record_id.clone()) {
                // The same id on two pages: records moved between pages while paging.
                return Err(BackupError::RecordsChanged {
                    collection: name.to_string(),
                    written: seen.len() as u64,
                    before,
                    after: chroma.count_records(id).await?,
                });
            }
            let embedding = embeddings[index]
                .as_ref()
                .filter(|embedding| embedding.is_array())
                .ok_or_else(|| answer_error(format!("record `{record_id}` has no embedding")))?;
            let line = RecordLine {
                id: record_id,
                embedding,
                document: page.documents.as_ref().and_then(|all| all[index].as_ref()),
                // Chroma answers `{}` for a record that has a uri but no metadata, and null
                // for one added with `{}`: both mean "no metadata".
                metadata: page
                    .metadatas
                    .as_ref()
                    .and_then(|all| all[index].as_ref())
                    .filter(|metadata| !metadata.is_empty()),
                uri: page.uris.as_ref().and_then(|all| all[index].as_ref()),
            };
            let mut text = serde_json::to_vec(&line).expect("a record serializes");
            text.push(b'\n');
            writer.write(&text)?;
        }
        if length < CHROMA_PAGE_SIZE {
            break;
        }
        offset += length;
    }
    let written = seen.len() as u64;
    let after = chroma.count_records(id).await?;
    if written != before || written != after {
        return Err(BackupError::RecordsChanged {
            collection: name.to_string(),
            written,
            before,
            after,
        });
    }
    let (bytes, sha256) = writer.finish()?;
    Ok((written, bytes, sha256))
}

/// A new 0600 file that hashes and counts what goes through it.
struct HashingWriter {
    path: PathBuf,
    writer: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    fn create(path: &Path) -> Result<Self, BackupError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(io_error("create", path))?;
        Ok(HashingWriter {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.writer
            .write_all(bytes)
            .map_err(io_error("write", &self.path))?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Flushes and fsyncs; returns (bytes, sha256 in hex).
    fn finish(self) -> Result<(u64, String), BackupError> {
        let file = self.writer.into_inner().map_err(|error| BackupError::Io {
            action: "write",
            path: self.path.clone(),
            error: error.into_error(),
        })?;
        file.sync_all().map_err(io_error("sync", &self.path))?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }
}

/// Removes one backup folder written by [`export`] (compensation when the tenant's transaction
/// rolls back), then its `<uid>` and `<tenant>` parents if they became empty. A missing folder
/// is fine.
///
/// # Errors
/// `dir`, its `<uid>` or its `<tenant>` folder is a symbolic link, `dir` is not named like a backup (a guard against removing the wrong
/// folder), or a file system error.
pub fn remove(dir: &Path) -> Result<(), BackupError> {
    let named_like_backup = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(is_backup_name);
    if !named_like_backup {
        return Err(BackupError::NotABackup(dir.to_path_buf()));
    }
    // The folder, `<uid>` and `<tenant>`: none may be a link (the root may be).
    for ancestor in dir.ancestors().skip(1).take(2) {
        if std::fs::symlink_metadata(ancestor)
            .is_ok_and(|metadata| metadata.file_type().is_symlink())
        {
            return Err(BackupError::Symlink(ancestor.to_path_buf()));
        }
    }
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("inspect", dir)(error)),
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(BackupError::Symlink(dir.to_path_buf()))
        }
        Ok(metadata) if !metadata.is_dir() => {
            return Err(BackupError::NotABackup(dir.to_path_buf()))
        }
        Ok(_) => {}
    }
    // remove_dir_all unlinks symbolic links inside instead of following them.
    std::fs::remove_dir_all(dir).map_err(io_error("remove", dir))?;
    let mut parent = dir.parent();
    for _level in 0..2 {
        match parent {
            Some(folder) if std::fs::remove_dir(folder).is_ok() => parent = folder.parent(),
            _ => break,
        }
    }
    Ok(())
}

/// Files and bytes of every backup of one tenant incarnation (`<root>/<tenant>/<uid>`), for the
/// plan of a purge: exactly what [`delete_all`] would delete. Zero when there is none.
///
/// # Errors
/// An unsafe tenant name, a symbolic link at `<root>/<tenant>` or `<root>/<tenant>/<uid>`
/// (which [`delete_all`] would refuse), or a file system error.
pub fn usage(root: &Path, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
    check_component(tenant)?;
    let dir = incarnation_dir(root, tenant, uid);
    if !folder_exists(&root.join(tenant))? || !folder_exists(&dir)? {
        return Ok(BackupUsage::default());
    }
    let mut usage = BackupUsage::default();
    for entry in std::fs::read_dir(&dir).map_err(io_error("read", &dir))? {
        let entry = entry.map_err(io_error("read", &dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error("inspect", &path))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if file_type.is_dir() && !hidden && path.join(MANIFEST).is_file() {
            usage.backups += 1;
        }
        add_tree(&path, file_type, &mut usage)?;
    }
    Ok(usage)
}

/// Adds the files under `path` (not following symbolic links; a link counts as a file of its
/// own size) to `usage`.
fn add_tree(
    path: &Path,
    file_type: std::fs::FileType,
    usage: &mut BackupUsage,
) -> Result<(), BackupError> {
    if file_type.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_error("read", path))? {
            let entry = entry.map_err(io_error("read", path))?;
            let child = entry.path();
            let child_type = entry.file_type().map_err(io_error("inspect", &child))?;
            add_tree(&child, child_type, usage)?;
        }
    } else {
        let metadata = std::fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
        usage.files += 1;
        usage.bytes += metadata.len();
    }
    Ok(())
}

/// Deletes every backup of one tenant incarnation (purge), leftovers of interrupted exports
/// included, then `<root>/<tenant>` if it became empty. A missing folder is fine.
///
/// Returns what was deleted, measured just before deleting.
///
/// # Errors
/// An unsafe tenant name, a symbolic link at `<root>/<tenant>` or `<root>/<tenant>/<uid>`
/// (never deleted through), or a file system error naming the path; files already deleted stay
/// deleted.
pub fn delete_all(root: &Path, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
    let usage = usage(root, tenant, uid)?;
    let tenant_dir = root.join(tenant);
    let dir = incarnation_dir(root, tenant, uid);
    if folder_exists(&tenant_dir)? && folder_exists(&dir)? {
        // remove_dir_all unlinks symbolic links inside instead of following them.
        std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
    }
    if folder_exists(&tenant_dir)? {
        let empty = std::fs::read_dir(&tenant_dir)
            .map_err(io_error("read", &tenant_dir))?
            .next()
            .is_none();
        if empty {
            std::fs::remove_dir(&tenant_dir).map_err(io_error("remove", &tenant_dir))?;
        }
    }
    Ok(usage)
}

/// Every backup folder under `root`, complete or partial, for the plan to account for:
/// `<root>/<tenant>/<uid>/<timestamp>` (complete once it holds a manifest) and the hidden
/// `.<timestamp>.partial-<random>` folders an interrupted export leaves. Names that do not fit
/// the layout and symbolic links are skipped, never followed. A missing root is empty.
///
/// # Errors
/// A file system error other than a missing folder, naming the path.
pub fn inventory(root: &Path) -> Result<Vec<ObservedBackup>, BackupError> {
    let mut found = Vec::new();
    for (tenant, tenant_dir) in subfolders(root)? {
        if check_component(&tenant).is_err() {
            continue;
        }
        for (uid_text, uid_dir) in subfolders(&tenant_dir)? {
            let Ok(uid) = Uuid::parse_str(&uid_text) else {
                continue;
            };
            for (folder, path) in subfolders(&uid_dir)? {
                let partial = is_partial_name(&folder);
                let complete = !partial && is_backup_name(&folder);
                if !partial && !complete {
                    continue;
                }
                let mut usage = BackupUsage::default();
                add_tree(
                    &path,
                    std::fs::symlink_metadata(&path)
                        .map_err(io_error("inspect", &path))?
                        .file_type(),
                    &mut usage,
                )?;
                found.push(ObservedBackup {
                    tenant: tenant.clone(),
                    uid,
                    folder,
                    partial: partial || !path.join(MANIFEST).is_file(),
                    files: usage.files,
                    bytes: usage.bytes,
                    recorded: false,
                });
            }
        }
    }
    Ok(found)
}

/// `<timestamp>` or `<timestamp>-<n>`, as [`export`] names a backup folder.
fn is_backup_name(name: &str) -> bool {
    let stamp = match name.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => stamp,
        Some(_) => return false,
        None => name,
    };
    chrono::NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).is_ok()
}

/// `.<timestamp>.partial-<hex>`, as [`export`] names its temporary folder.
fn is_partial_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((stamp, random)) = rest.split_once(".partial-") else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).is_ok()
        && !random.is_empty()
        && random.chars().all(|c| c.is_ascii_hexdigit())
}

/// The real sub-folders of `dir` (not symbolic links), by name; none when `dir` is missing.
fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("read", dir)(error)),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("read", dir))?;
        let file_type = entry
            .file_type()
            .map_err(io_error("inspect", &entry.path()))?;
        if file_type.is_dir() {
            if let Ok(name) = entry.file_name().into_string() {
                folders.push((name, entry.path()));
            }
        }
    }
    folders.sort();
    Ok(folders)
}

/// Removes a partial backup folder that [`inventory`] found, then its `<uid>` and `<tenant>`
/// parents if they became empty. Refuses anything not named like a partial backup.
///
/// # Errors
/// The name does not fit, a symbolic link is in the way, or a file system error.
pub fn remove_partial(
    root: &Path,
    leftover: &crate::plan::BackupLeftover,
) -> Result<(), BackupError> {
    check_component(&leftover.tenant)?;
    if !is_partial_name(&leftover.folder) {
        return Err(BackupError::NotABackup(PathBuf::from(&leftover.path)));
    }
    let tenant_dir = root.join(&leftover.tenant);
    let uid_dir = incarnation_dir(root, &leftover.tenant, leftover.uid);
    if !folder_exists(&tenant_dir)? || !folder_exists(&uid_dir)? {
        return Ok(());
    }
    let dir = uid_dir.join(&leftover.folder);
    if !folder_exists(&dir)? {
        return Ok(());
    }
    // remove_dir_all unlinks symbolic links inside instead of following them.
    std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
    for folder in [&uid_dir, &tenant_dir] {
        if std::fs::remove_dir(folder).is_err() {
            break;
        }
    }
    Ok(())
}

fn incarnation_dir(root: &Path, tenant: &str, uid: Uuid) -> PathBuf {
    root.join(tenant).join(uid.hyphenated().to_string())
}

/// A tenant id used as a folder name: letters, digits, `_` and `-`, so it cannot climb out of
/// the root or hide.
fn check_component(name: &str) -> Result<(), BackupError> {
    let safe = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if safe {
        Ok(())
    } else {
        Err(BackupError::Name(name.to_string()))
    }
}

/// True when `path` is a folder, false when it is missing; a symbolic link is an error.
fn folder_exists(path: &Path) -> Result<bool, BackupError> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            Err(BackupError::Symlink(path.to_path_buf()))
        }
        Ok(metadata) if metadata.is_dir() => Ok(true),
        Ok(_) => Err(BackupError::NotAFolder(path.to_path_buf())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error("inspect", path)(error)),
    }
}

/// Creates `<root>/<tenant>/<uid>` as needed (0700); returns the folders it created, outermost
/// first, so a failed export can take them back.
fn create_folders(root: &Path, tenant: &str, uid: Uuid) -> Result<Vec<PathBuf>, BackupError> {
    let mut created = Vec::new();
    // The root itself may be a symbolic link: the operator chose it.
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(BackupError::NotAFolder(root.to_path_buf())),
        // Not a directory: a parent is a file; creating says so with the path.
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            DirBuilder::new()
                .recursive(true)
                .mode(FOLDER_MODE)
                .create(root)
                .map_err(io_error("create", root))?;
            created.push(root.to_path_buf());
        }
        Err(error) => return Err(io_error("inspect", root)(error)),
    }
    let tenant_dir = root.join(tenant);
    for folder in [tenant_dir.clone(), incarnation_dir(root, tenant, uid)] {
        if !folder_exists(&folder).inspect_err(|_| remove_created(&created))? {
            make_folder(&folder).inspect_err(|_| remove_created(&created))?;
            created.push(folder);
        }
    }
    Ok(created)
}

fn remove_created(created: &[PathBuf]) {
    for folder in created.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
}

fn make_folder(path: &Path) -> Result<(), BackupError> {
    DirBuilder::new()
        .mode(FOLDER_MODE)
        .create(path)
        .map_err(io_error("create", path))
}

/// Makes the entries of a folder durable (new files, renames).
fn sync_folder(path: &Path) -> Result<(), BackupError> {
    // The parent of a relative root such as the default `backups` is the empty path: the
    // working directory.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    File::open(path)
        .and_then(|folder| folder.sync_all())
        .map_err(io_error("sync", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> Option<u64> {
        let mut counter = CsvRecordCounter::default();
        for chunk in chunks {
            counter.feed(chunk);
        }
        counter.rows()
    }

    #[test]
    fn csv_records_are_counted_across_quoted_newlines_and_chunks() {
        assert_eq!(count(&[b"a,b\n"]), Some(0));
        assert_eq!(count(&[b"a,b\n1,\"x\ny\"\n2,\"\"\"q\"\"\n\"\n"]), Some(2));
        assert_eq!(count(&[b"a,b\n1,\"x", b"\ny\"", b"\n2,3\n"]), Some(2));
    }

    #[test]
    fn an_unfinished_csv_is_not_counted() {
        assert_eq!(count(&[]), None);
        assert_eq!(count(&[b"a,b\n1,\"x\n"]), None);
        assert_eq!(count(&[b"a,b\n1,2"]), None);
    }

    #[test]
    fn tenant_names_cannot_leave_the_root() {
        for name in ["", "..", ".", "a/b", "-x", ".hidden", "a b"] {
            assert!(check_component(name).is_err(), "{name:?}");
        }
        assert!(check_component("acme_2").is_ok());
    }

    #[test]
    fn remove_refuses_folders_not_named_like_a_backup() {
        let root = tempfile::tempdir().unwrap();
        let error = remove(root.path()).unwrap_err();
        assert!(matches!(error, BackupError::NotABackup(_)), "{error}");
        assert!(root.path().exists());
    }
}
