//! Writing a final backup: the tables with `COPY` in the tenant's transaction, the collection's
//! records page by page, the manifest, all into a hidden folder renamed into place when
//! complete.

use super::files::{check_component, create_folders, incarnation_dir, make_folder, sync_folder};
use super::{
    io_error, BackupError, BackupWritten, ChromaFile, Column, ExportRequest, Manifest, TableFile,
    CHROMA_PAGE_SIZE, FILE_MODE, FORMAT_VERSION, MANIFEST, RECORDS_FILE, RESTORE_HINT,
    TIMESTAMP_FORMAT,
};
use crate::backend::chroma::ChromaClient;
use crate::backend::postgres::quote_ident;
use crate::backend::postgres::PostgresError;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

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
        migration_version: request.migration_version,
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
    path: &Path,
) -> Result<(u64, u64, String), BackupError> {
    let first = chroma.get_records(id, CHROMA_PAGE_SIZE, 0).await?;
    let mut writer = HashingWriter::create(path)?;
    let mut seen = BTreeSet::new();
    let before = if first.len() < CHROMA_PAGE_SIZE {
        write_records(&mut writer, &mut seen, &first, chroma, name, id, None).await?;
        u64::try_from(seen.len()).unwrap_or(u64::MAX)
    } else {
        drop(first);
        let before = chroma.count_records(id).await?;
        let mut offset = 0;
        loop {
            let page = chroma.get_records(id, CHROMA_PAGE_SIZE, offset).await?;
            write_records(
                &mut writer,
                &mut seen,
                &page,
                chroma,
                name,
                id,
                Some(before),
            )
            .await?;
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
    let (bytes, sha256) = writer.finish()?;
    Ok((written, bytes, sha256))
}

/// Writes one page of records; the same id twice means records moved between pages while
/// paging (`before`: the count taken before the first page, if one was).
async fn write_records(
    writer: &mut HashingWriter,
    seen: &mut BTreeSet<String>,
    page: &[crate::backend::chroma::Record],
    chroma: &ChromaClient,
    name: &str,
    id: &str,
    before: Option<u64>,
) -> Result<(), BackupError> {
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
        let mut text = serde_json::to_vec(&line).expect("a record serializes");
        text.push(b'\n');
        writer.write(&text)?;
    }
    Ok(())
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
