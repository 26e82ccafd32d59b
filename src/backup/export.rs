//! Writing a final backup: the tables with `COPY` in the tenant's transaction, the collection's
//! records page by page, every file read back and checked, then the manifest. Locally all of it
//! goes into a hidden folder renamed into place when complete; in an object store straight into
//! the final folder, where the manifest, written last, marks it complete.

use super::files::{check_component, create_folders, incarnation_dir, make_folder, sync_folder};
use super::object::{ObjectBackups, ObjectSink};
use super::{
    io_error, BackupError, BackupLocation, BackupWritten, ChromaFile, Column, ExportRequest,
    Manifest, TableFile, CHROMA_PAGE_SIZE, FILE_MODE, FORMAT_VERSION, MANIFEST, RECORDS_FILE,
    RESTORE_HINT, TIMESTAMP_FORMAT,
};
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::quote_ident;
use crate::backend::postgres::PostgresError;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Writes a final backup of one tenant into a local folder.
///
/// The tables are read with `COPY` inside the caller's transaction, so the export includes the
/// transaction's own changes and disappears with it logically (call [`super::BackupStore::remove`]
/// when the transaction rolls back). Each `COPY` takes its own snapshot unless the transaction is
/// `REPEATABLE READ` or stricter; only then do all tables come from one snapshot.
///
/// Chroma records are paged and checked against the collection's count before and after;
/// duplicates or a different count are an error (the collection changed meanwhile).
///
/// # Guarantees
/// Everything is written into a hidden temporary folder next to the final one, fsynced, read
/// back and checked against its sizes and sha256, and renamed into place last: a folder named
/// like a backup always holds a complete one. On error the temporary folder and any folder
/// this call created are removed.
///
/// # Errors
/// An unsafe tenant name or identifier, an existing backup folder with the same timestamp,
/// a symbolic link in the way, file system errors (naming the path), PostgreSQL and Chroma
/// errors, a file that reads back differently, and records changing during the export.
pub(super) async fn export_local(
    root: &Path,
    transaction: &tokio_postgres::Transaction<'_>,
    chroma: &ChromaClient,
    request: &ExportRequest<'_>,
) -> Result<BackupWritten, BackupError> {
    check_request(request)?;
    let stamp = request.taken_at.format(TIMESTAMP_FORMAT).to_string();
    let uid_dir = incarnation_dir(root, request.tenant, request.uid);
    let created = create_folders(root, request.tenant, request.uid)?;
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
        let destination = Destination::Local(&temporary);
        let manifest = write_files(transaction, chroma, request, &destination).await?;
        verify(&destination, &manifest).await?;
        let text = manifest_text(&manifest);
        let mut sink = destination.create(&[MANIFEST]).await?;
        sink.write(Bytes::from(text)).await?;
        let (manifest_bytes, _) = sink.finish().await?;
        for subfolder in ["postgres", "chroma"] {
            let path = temporary.join(subfolder);
            if path.is_dir() {
                sync_folder(&path)?;
            }
        }
        sync_folder(&temporary)?;
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
        Ok(totals(&manifest, manifest_bytes))
    }
    .await;

    match outcome {
        Ok((rows, records, bytes)) => Ok(BackupWritten {
            folder: final_dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            location: BackupLocation::Local(final_dir),
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

/// Writes a final backup of one tenant into an object store: the same files as
/// [`export_local`], streamed to `<prefix>/<tenant>/<uid>/<timestamp>/` as they are read
/// (tables in parts of a few MiB), read back and checked, and the manifest written last, so
/// that a folder with a manifest holds a complete, verified backup. On error what was uploaded
/// is deleted (best effort: a store that stopped answering keeps an unfinished folder, which
/// the next plan reports and the next apply removes).
///
/// # Errors
/// As [`export_local`], with the store's failures (each request bounded by its timeout)
/// instead of the file system's.
pub(super) async fn export_object(
    store: &ObjectBackups,
    transaction: &tokio_postgres::Transaction<'_>,
    chroma: &ChromaClient,
    request: &ExportRequest<'_>,
) -> Result<BackupWritten, BackupError> {
    check_request(request)?;
    let stamp = request.taken_at.format(TIMESTAMP_FORMAT).to_string();
    let folder = store
        .free_folder(request.tenant, request.uid, &stamp)
        .await?;
    let outcome = async {
        let destination = Destination::Object(store, &folder);
        let manifest = write_files(transaction, chroma, request, &destination).await?;
        verify(&destination, &manifest).await?;
        let text = Bytes::from(manifest_text(&manifest));
        let location = folder.clone().join(MANIFEST);
        store.put(&location, text.clone()).await?;
        let (bytes, sha256) = store.read_back(&location).await?;
        if bytes != text.len() as u64 || sha256 != hex::encode(Sha256::digest(&text)) {
            return Err(BackupError::Verify {
                location: store.show(&location),
                reason: format!(
                    "wrote {} bytes, read back {bytes} with another sha256",
                    text.len()
                ),
            });
        }
        Ok(totals(&manifest, bytes))
    }
    .await;
    match outcome {
        Ok((rows, records, bytes)) => Ok(BackupWritten {
            folder: folder.filename().unwrap_or_default().to_string(),
            location: BackupLocation::Object(folder),
            rows,
            records,
            bytes,
        }),
        Err(error) => {
            store.discard(&folder).await;
            Err(error)
        }
    }
}

/// Refuses bad names and identifiers before anything is created.
fn check_request(request: &ExportRequest<'_>) -> Result<(), BackupError> {
    check_component(request.tenant)?;
    quote_ident(request.schema)?;
    for table in request.tables {
        quote_ident(table)?;
    }
    Ok(())
}

/// (rows, records, bytes) of a written backup, the manifest's own bytes included.
fn totals(manifest: &Manifest, manifest_bytes: u64) -> (u64, u64, u64) {
    let rows = manifest.tables.iter().map(|table| table.rows).sum();
    let records = manifest.chroma.as_ref().map_or(0, |chroma| chroma.records);
    let bytes = manifest.tables.iter().map(|table| table.bytes).sum::<u64>()
        + manifest.chroma.as_ref().map_or(0, |chroma| chroma.bytes)
        + manifest_bytes;
    (rows, records, bytes)
}

fn manifest_text(manifest: &Manifest) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    text.push(b'\n');
    text
}

/// Reads every data file of `manifest` back from `destination` and compares its size and
/// sha256 with what was written.
async fn verify(destination: &Destination<'_>, manifest: &Manifest) -> Result<(), BackupError> {
    let files = manifest
        .tables
        .iter()
        .map(|table| (&table.file, table.bytes, &table.sha256))
        .chain(
            manifest
                .chroma
                .iter()
                .map(|chroma| (&chroma.file, chroma.bytes, &chroma.sha256)),
        );
    for (file, bytes, sha256) in files {
        let parts: Vec<&str> = file.split('/').collect();
        let (read, read_sha256) = destination.read_back(&parts).await?;
        if read != bytes || &read_sha256 != sha256 {
            return Err(BackupError::Verify {
                location: destination.show(&parts),
                reason: format!(
                    "wrote {bytes} bytes (sha256 {sha256}), read back {read} (sha256 {read_sha256})"
                ),
            });
        }
    }
    Ok(())
}

/// Where [`write_files`] puts the files: a local folder, or a folder of an object store.
pub(super) enum Destination<'a> {
    Local(&'a Path),
    Object(&'a ObjectBackups, &'a ObjectPath),
}

impl Destination<'_> {
    /// A new file at `parts` below the folder (its local subfolder is created when missing).
    async fn create(&self, parts: &[&str]) -> Result<Sink, BackupError> {
        match self {
            Destination::Local(folder) => {
                let mut path = folder.to_path_buf();
                for (index, part) in parts.iter().enumerate() {
                    path.push(part);
                    if index + 1 < parts.len() && !path.is_dir() {
                        make_folder(&path)?;
                    }
                }
                Ok(Sink::Local(HashingWriter::create(&path)?))
            }
            Destination::Object(store, folder) => {
                Ok(Sink::Object(store.create(object_path(folder, parts))))
            }
        }
    }

    /// (bytes, sha256) of the file at `parts`, read back.
    async fn read_back(&self, parts: &[&str]) -> Result<(u64, String), BackupError> {
        match self {
            Destination::Local(folder) => {
                let path = parts
                    .iter()
                    .fold(folder.to_path_buf(), |path, part| path.join(part));
                let mut file = File::open(&path).map_err(io_error("read back", &path))?;
                let mut hasher = Sha256::new();
                let mut buffer = vec![0; 256 * 1024];
                let mut bytes = 0u64;
                loop {
                    let read = file
                        .read(&mut buffer)
                        .map_err(io_error("read back", &path))?;
                    if read == 0 {
                        break;
                    }
                    hasher.update(&buffer[..read]);
                    bytes += read as u64;
                }
                Ok((bytes, hex::encode(hasher.finalize())))
            }
            Destination::Object(store, folder) => {
                store.read_back(&object_path(folder, parts)).await
            }
        }
    }

    fn show(&self, parts: &[&str]) -> String {
        match self {
            Destination::Local(folder) => parts
                .iter()
                .fold(folder.to_path_buf(), |path, part| path.join(part))
                .display()
                .to_string(),
            Destination::Object(store, folder) => store.show(&object_path(folder, parts)),
        }
    }
}

fn object_path(folder: &ObjectPath, parts: &[&str]) -> ObjectPath {
    parts
        .iter()
        .fold(folder.clone(), |path, part| path.join(*part))
}

/// A file being written: hashed and counted as it goes.
pub(super) enum Sink {
    Local(HashingWriter),
    Object(ObjectSink),
}

impl Sink {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackupError> {
        match self {
            Sink::Local(writer) => writer.write(&chunk),
            Sink::Object(sink) => sink.write(chunk).await,
        }
    }

    /// Completes the file (fsync, or the end of the upload); returns (bytes, sha256 in hex).
    async fn finish(self) -> Result<(u64, String), BackupError> {
        match self {
            Sink::Local(writer) => writer.finish(),
            Sink::Object(sink) => sink.finish().await,
        }
    }

    /// Gives the file up after an error (an upload in parts is cancelled at the store).
    async fn abort(self) {
        match self {
            Sink::Local(_) => {}
            Sink::Object(sink) => sink.abort().await,
        }
    }

    /// Writes every chunk of `chunks` and finishes; on any error the file is given up.
    async fn fill<S, E>(
        mut self,
        chunks: S,
        mut on_chunk: impl FnMut(&Bytes),
        map_error: impl Fn(E) -> BackupError,
    ) -> Result<(u64, String), BackupError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>>,
    {
        futures_util::pin_mut!(chunks);
        let written = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(&map_error)?;
                on_chunk(&chunk);
                self.write(chunk).await?;
            }
            Ok(())
        }
        .await;
        match written {
            Ok(()) => self.finish().await,
            Err(error) => {
                self.abort().await;
                Err(error)
            }
        }
    }
}

/// Writes the data files into `destination` and returns the manifest describing them (not
/// written: the caller writes it once the files are verified).
async fn write_files(
    transaction: &tokio_postgres::Transaction<'_>,
    chroma: &ChromaClient,
    request: &ExportRequest<'_>,
    destination: &Destination<'_>,
) -> Result<Manifest, BackupError> {
    let mut columns = table_columns(transaction, request).await?;
    let mut tables = Vec::with_capacity(request.tables.len());
    for table in request.tables {
        let name = format!("{table}.csv");
        let sink = destination.create(&["postgres", &name]).await?;
        let (rows, bytes, sha256) = export_table(transaction, request.schema, table, sink).await?;
        tables.push(TableFile {
            name: table.clone(),
            file: format!("postgres/{name}"),
            columns: columns.remove(table).unwrap_or_default(),
            rows,
            bytes,
            sha256,
        });
    }

    let chroma_file = match request.collection {
        Some((name, id)) => {
            let sink = destination.create(&["chroma", "records.jsonl"]).await?;
            let (records, bytes, sha256) = export_records(chroma, name, id, sink).await?;
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

    Ok(Manifest {
        format_version: FORMAT_VERSION,
        tenant: request.tenant.to_string(),
        uid: request.uid,
        taken_at: request.taken_at,
        schema: request.schema.to_string(),
        migration_version: request.migration_version,
        tables,
        chroma: chroma_file,
        restore_hint: RESTORE_HINT.to_string(),
    })
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

/// Streams one table into `sink`; returns (rows, bytes, sha256).
async fn export_table(
    transaction: &tokio_postgres::Transaction<'_>,
    schema: &str,
    table: &str,
    sink: Sink,
) -> Result<(u64, u64, String), BackupError> {
    let operation = || format!("export table `{schema}.{table}`");
    let sql = format!(
        "COPY (SELECT * FROM {}.{}) TO STDOUT WITH (FORMAT csv, HEADER)",
        quote_ident(schema)?,
        quote_ident(table)?
    );
    let stream = match transaction.copy_out(sql.as_str()).await {
        Ok(stream) => stream,
        Err(error) => {
            sink.abort().await;
            return Err(PostgresError::Query {
                operation: operation(),
                error,
            }
            .into());
        }
    };
    let mut counter = CsvRecordCounter::default();
    let (bytes, sha256) = sink
        .fill(
            stream,
            |chunk| counter.feed(chunk),
            |error| {
                PostgresError::Query {
                    operation: operation(),
                    error,
                }
                .into()
            },
        )
        .await?;
    let rows = counter.rows().ok_or_else(|| BackupError::TruncatedCsv {
        table: table.to_string(),
    })?;
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
///
/// Every Chroma request that touches records costs several milliseconds of the server's time,
/// and the server runs them one after the other: a soft delete of many tenants is bound by
/// their number. Most collections fit in one page, read by one request; a count after it
/// confirms nothing was added or removed meanwhile (two requests). A collection that fills the
/// first page is read again from the start between two counts (the first page is not kept: a
/// record removed between it and the first count would shift a later page past one record
/// unnoticed).
async fn export_records(
    chroma: &ChromaClient,
    name: &str,
    id: &str,
    mut sink: Sink,
) -> Result<(u64, u64, String), BackupError> {
    let mut seen = BTreeSet::new();
    let written = async {
        let first = chroma.get_records(id, CHROMA_PAGE_SIZE, 0).await?;
        let before = if first.len() < CHROMA_PAGE_SIZE {
            write_records(&mut sink, &mut seen, &first, chroma, name, id, None).await?;
            u64::try_from(seen.len()).unwrap_or(u64::MAX)
        } else {
            drop(first);
            let before = chroma.count_records(id).await?;
            let mut offset = 0;
            loop {
                let page = chroma.get_records(id, CHROMA_PAGE_SIZE, offset).await?;
                write_records(&mut sink, &mut seen, &page, chroma, name, id, Some(before)).await?;
                if page.len() < CHROMA_PAGE_SIZE {
                    break;
                }
                offset += page.len();
            }
            before
        };
        let written = u64::try_from(seen.len()).unwrap_or(u64::MAX);
        let after = chroma.count_records(id).await?;
        if written != before || written != after {
            return Err(BackupError::RecordsChanged {
                collection: name.to_string(),
                written,
                before,
                after,
            });
        }
        Ok(written)
    }
    .await;
    match written {
        Ok(written) => {
            let (bytes, sha256) = sink.finish().await?;
            Ok((written, bytes, sha256))
        }
        Err(error) => {
            sink.abort().await;
            Err(error)
        }
    }
}

/// Writes one page of records; the same id twice means records moved between pages while
/// paging (`before`: the count taken before the first page, if one was).
async fn write_records(
    sink: &mut Sink,
    seen: &mut BTreeSet<String>,
    page: &[crate::backend::chroma::Record],
    chroma: &ChromaClient,
    name: &str,
    id: &str,
    before: Option<u64>,
) -> Result<(), BackupError> {
    // One chunk per page: an upload gets it in one piece.
    let mut text = Vec::new();
    for record in page {
        if !seen.insert(record.id.clone()) {
            let written = u64::try_from(seen.len()).unwrap_or(u64::MAX);
            return Err(BackupError::RecordsChanged {
                collection: name.to_string(),
                written,
                before: before.unwrap_or(written),
                after: chroma.count_records(id).await?,
            });
        }
        let line = RecordLine {
            id: &record.id,
            embedding: &record.embedding,
            document: record.document.as_ref(),
            metadata: record.metadata.as_ref(),
            uri: record.uri.as_ref(),
        };
        serde_json::to_writer(&mut text, &line).expect("a record serializes");
        text.push(b'\n');
    }
    sink.write(Bytes::from(text)).await
}

/// A new 0600 file that hashes and counts what goes through it.
pub(super) struct HashingWriter {
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
}
