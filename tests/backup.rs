//! Final backups against the real PostgreSQL and Chroma: export, verification, usage, deletion.

mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::TestEnv;
use futures_util::SinkExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tenantctl::backend::chroma::ChromaClient;
use tenantctl::backup::{self, BackupError, BackupUsage, ExportRequest, Manifest, MANIFEST};
use tokio_postgres::NoTls;
use uuid::Uuid;

const SCHEMA: &str = "tenant_acme";
const COLLECTION: &str = "tenant_acme";
/// More than two pages of 500, so paging is exercised.
const RECORDS: usize = 1_203;
const DIMENSION: usize = 4;

/// Awkward values for CSV: embedded newlines, quotes, commas, backslashes, unicode, empty
/// strings next to NULLs.
const CONVERSATIONS: &str = r#"
CREATE SCHEMA tenant_acme;
CREATE TABLE tenant_acme.conversations (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    messages jsonb
);
CREATE TABLE tenant_acme.notes (id integer PRIMARY KEY, body text, tags text[]);
INSERT INTO tenant_acme.conversations VALUES
  ('00000000-0000-0000-0000-000000000001', '2026-01-02 03:04:05.123456+00',
   '[{"role": "user", "content": "line one\nline two, with a comma"},
     {"role": "assistant", "content": "she said \"hi\"\r\n\\ back\\slash"}]'),
  ('00000000-0000-0000-0000-000000000002', '2026-01-03 00:00:00+00',
   '{"empty": "", "quote": "\"", "multi": "a\n\n\nb", "csv": "x,\"y\",z\n"}'),
  ('00000000-0000-0000-0000-000000000003', '2026-01-04 00:00:00+00', NULL),
  ('00000000-0000-0000-0000-000000000004', '2026-01-05 00:00:00+00', '"ünïcødé ✓"');
INSERT INTO tenant_acme.notes VALUES
  (1, E'multi\nline\n"quoted"', ARRAY['a,b', 'c"d', E'e\nf']),
  (2, '', '{}'),
  (3, NULL, NULL);
"#;

fn tables() -> Vec<String> {
    vec!["conversations".to_string(), "notes".to_string()]
}

fn chroma(env: &TestEnv) -> ChromaClient {
    ChromaClient::new(
        &env.chroma_url,
        "default_tenant",
        &env.chroma_database,
        None,
    )
    .unwrap()
}

fn embedding(index: usize) -> Vec<f32> {
    (0..DIMENSION)
        .map(|component| (index * DIMENSION + component) as f32 * 0.1 - 7.3)
        .collect()
}

/// Creates the tenant schema with rows, and a collection with records; returns the collection id.
fn fixture(env: &TestEnv) -> String {
    env.execute(CONVERSATIONS);
    let chroma = chroma(env);
    env.runtime.block_on(async {
        chroma.ensure_scope().await.unwrap();
        let mut metadata = Map::new();
        metadata.insert("managed_by".into(), json!("tenantctl"));
        let id = chroma
            .create_collection(COLLECTION, &metadata)
            .await
            .unwrap();
        let indexes: Vec<usize> = (0..RECORDS).collect();
        for batch in indexes.chunks(300) {
            let ids: Vec<String> = batch.iter().map(|i| format!("record-{i}")).collect();
            let embeddings: Vec<Vec<f32>> = batch.iter().map(|&i| embedding(i)).collect();
            // Every third record has no document, every fifth no metadata, every seventh a uri.
            let documents: Vec<Value> = batch
                .iter()
                .map(|i| match i % 3 {
                    0 => Value::Null,
                    _ => json!(format!("document {i}\nwith \"quotes\", commas")),
                })
                .collect();
            let metadatas: Vec<Value> = batch
                .iter()
                .map(|i| match i % 5 {
                    0 => Value::Null,
                    _ => json!({ "n": i, "half": *i as f64 / 2.0, "even": i % 2 == 0, "s": "x" }),
                })
                .collect();
            let uris: Vec<Value> = batch
                .iter()
                .map(|i| match i % 7 {
                    0 => json!(format!("s3://bucket/{i}")),
                    _ => Value::Null,
                })
                .collect();
            chroma
                .add_records(
                    &id,
                    json!({
                        "ids": ids,
                        "embeddings": embeddings,
                        "documents": documents,
                        "metadatas": metadatas,
                        "uris": uris,
                    }),
                )
                .await
                .unwrap();
        }
        id
    })
}

fn taken_at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, second).unwrap()
}

/// A backup written into a local folder.
#[derive(Debug)]
struct Written {
    dir: PathBuf,
    rows: u64,
    records: u64,
    bytes: u64,
}

/// Runs the local store's export inside a transaction of a fresh connection, committed on
/// success.
fn export(
    env: &TestEnv,
    root: &Path,
    uid: Uuid,
    tables: &[String],
    collection: Option<(&str, &str)>,
    taken_at: DateTime<Utc>,
) -> Result<Written, BackupError> {
    let chroma = chroma(env);
    env.runtime.block_on(async {
        let (mut client, connection) = tokio_postgres::connect(&env.database_url, NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let transaction = client.transaction().await.unwrap();
        let request = ExportRequest {
            tenant: "acme",
            uid,
            schema: SCHEMA,
            tables,
            collection,
            migration_version: Some(1),
            taken_at,
        };
        let store = backup::BackupStore::Local(root.to_path_buf());
        let written = store.export(&transaction, &chroma, &request).await;
        if written.is_ok() {
            transaction.commit().await.unwrap();
        }
        let written = written?;
        let backup::BackupLocation::Local(dir) = written.location else {
            panic!("a local store writes local folders: {written:?}");
        };
        assert_eq!(dir.file_name().unwrap().to_str().unwrap(), written.folder);
        Ok(Written {
            dir,
            rows: written.rows,
            records: written.records,
            bytes: written.bytes,
        })
    })
}

fn read_manifest(dir: &Path) -> Manifest {
    serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap()
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir` with its size.
fn files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut found = BTreeMap::new();
    if !dir.exists() {
        return found;
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files(&entry.path()));
        } else {
            found.insert(entry.path(), entry.metadata().unwrap().len());
        }
    }
    found
}

#[test]
fn export_writes_a_complete_backup_that_verifies_and_reimports() {
    let env = TestEnv::new("bk_export");
    let collection_id = fixture(&env);
    let root = env.path("backups");
    let uid = Uuid::new_v4();

    let written = export(
        &env,
        &root,
        uid,
        &tables(),
        Some((COLLECTION, &collection_id)),
        taken_at(7),
    )
    .unwrap();

    let uid_dir = root.join("acme").join(uid.to_string());
    assert_eq!(written.dir, uid_dir.join("20260304T050607Z"));
    assert_eq!(written.rows, 7);
    assert_eq!(written.records, RECORDS as u64);
    // Only the final folder: the temporary one was renamed into place.
    let entries: Vec<_> = std::fs::read_dir(&uid_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec!["20260304T050607Z"]);

    let all_files = files(&written.dir);
    assert_eq!(
        all_files.keys().cloned().collect::<Vec<_>>(),
        vec![
            written.dir.join("chroma/records.jsonl"),
            written.dir.join(MANIFEST),
            written.dir.join("postgres/conversations.csv"),
            written.dir.join("postgres/notes.csv"),
        ]
    );
    assert_eq!(written.bytes, all_files.values().sum::<u64>());
    for file in all_files.keys() {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for folder in [
        root.join("acme"),
        uid_dir.clone(),
        written.dir.clone(),
        written.dir.join("postgres"),
        written.dir.join("chroma"),
    ] {
        assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    }

    let manifest = read_manifest(&written.dir);
    assert_eq!(manifest.format_version, 1);
    assert_eq!(manifest.tenant, "acme");
    assert_eq!(manifest.uid, uid);
    assert_eq!(manifest.taken_at, taken_at(7));
    assert_eq!(manifest.schema, SCHEMA);
    assert!(
        manifest.restore_hint.contains("COPY"),
        "{}",
        manifest.restore_hint
    );
    let counts: Vec<(&str, u64)> = manifest
        .tables
        .iter()
        .map(|table| (table.name.as_str(), table.rows))
        .collect();
    assert_eq!(counts, vec![("conversations", 4), ("notes", 3)]);
    let columns: Vec<(&str, &str, bool)> = manifest.tables[0]
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.not_null))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("id", "uuid", true),
            ("created_at", "timestamp with time zone", true),
            ("messages", "jsonb", false),
        ]
    );
    for table in &manifest.tables {
        let path = written.dir.join(&table.file);
        assert_eq!(table.sha256, sha256(&path), "{}", table.file);
        assert_eq!(table.bytes, std::fs::metadata(&path).unwrap().len());
    }
    let chroma_file = manifest
        .chroma
        .as_ref()
        .expect("the collection is exported");
    assert_eq!(chroma_file.collection, COLLECTION);
    assert_eq!(chroma_file.id, collection_id);
    assert_eq!(chroma_file.records, RECORDS as u64);
    let records_path = written.dir.join(&chroma_file.file);
    assert_eq!(chroma_file.sha256, sha256(&records_path));
    assert_eq!(
        chroma_file.bytes,
        std::fs::metadata(&records_path).unwrap().len()
    );

    // The CSV files re-import into copies of the tables, giving identical rows.
    env.execute("CREATE SCHEMA restored");
    for table in &manifest.tables {
        env.execute(&format!(
            "CREATE TABLE restored.{0} (LIKE tenant_acme.{0} INCLUDING ALL)",
            table.name
        ));
        let csv = std::fs::read(written.dir.join(&table.file)).unwrap();
        env.runtime.block_on(async {
            let sink = env
                .client
                .copy_in(&format!(
                    "COPY restored.{} FROM STDIN WITH (FORMAT csv, HEADER)",
                    table.name
                ))
                .await
                .unwrap();
            futures_util::pin_mut!(sink);
            sink.send(std::io::Cursor::new(csv)).await.unwrap();
            let copied = sink.finish().await.unwrap();
            assert_eq!(copied, table.rows, "{}", table.name);
        });
        let differences = env.query_one(
            &format!(
                "SELECT count(*) FROM ((TABLE tenant_acme.{0} EXCEPT ALL TABLE restored.{0}) \
                 UNION ALL (TABLE restored.{0} EXCEPT ALL TABLE tenant_acme.{0})) d",
                table.name
            ),
            &[],
        );
        assert_eq!(differences.get::<_, i64>(0), 0, "{}", table.name);
    }
    // NULL and the empty string stay apart.
    let notes = env.query(
        "SELECT body IS NULL, body = '' FROM restored.notes WHERE id IN (2, 3) ORDER BY id",
        &[],
    );
    let notes: Vec<(bool, Option<bool>)> = notes.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(notes, vec![(false, Some(true)), (true, None)]);

    // The JSONL holds every record once with its embedding and whatever else it had.
    let text = std::fs::read_to_string(&records_path).unwrap();
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let record: Map<String, Value> = serde_json::from_str(line).unwrap();
        let id = record["id"].as_str().unwrap().to_string();
        assert!(seen.insert(id, record).is_none(), "duplicate line {line}");
    }
    assert_eq!(seen.len(), RECORDS);
    for index in 0..RECORDS {
        let record = &seen[&format!("record-{index}")];
        let embedding_read: Vec<f32> = record["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(embedding_read, embedding(index), "record-{index}");
        assert_eq!(record.contains_key("document"), index % 3 != 0);
        assert_eq!(
            record.contains_key("metadata"),
            index % 5 != 0,
            "{record:?}"
        );
        assert_eq!(record.contains_key("uri"), index % 7 == 0);
        if index % 3 != 0 {
            assert_eq!(
                record["document"],
                json!(format!("document {index}\nwith \"quotes\", commas"))
            );
        }
        if index % 5 != 0 {
            assert_eq!(record["metadata"]["n"], json!(index));
            assert_eq!(record["metadata"]["even"], json!(index % 2 == 0));
        }
    }
}

#[test]
fn usage_and_delete_all_account_for_every_file() {
    let env = TestEnv::new("bk_delete");
    let collection_id = fixture(&env);
    let root = env.path("backups");
    let uid = Uuid::new_v4();
    let other_uid = Uuid::new_v4();

    assert_eq!(
        backup::local::usage(&root, "acme", uid).unwrap(),
        BackupUsage::default()
    );
    let collection = Some((COLLECTION, collection_id.as_str()));
    let first = export(&env, &root, uid, &tables(), collection, taken_at(1)).unwrap();
    let second = export(&env, &root, uid, &tables(), collection, taken_at(2)).unwrap();
    let other = export(&env, &root, other_uid, &tables(), None, taken_at(3)).unwrap();
    // The same second twice (a backup an interrupted run left, say) takes the next name and
    // leaves the first backup alone.
    let again = export(&env, &root, uid, &tables(), collection, taken_at(2)).unwrap();
    assert_eq!(
        again.dir.file_name().unwrap().to_str().unwrap(),
        format!("{}-2", second.dir.file_name().unwrap().to_str().unwrap())
    );
    assert_eq!(read_manifest(&second.dir).taken_at, taken_at(2));
    // A leftover of an interrupted export counts as files to delete, not as a backup.
    let uid_dir = root.join("acme").join(uid.to_string());
    std::fs::create_dir(uid_dir.join(".20260304T050609Z.partial-x")).unwrap();
    std::fs::write(
        uid_dir.join(".20260304T050609Z.partial-x/half.csv"),
        "id\n1\n",
    )
    .unwrap();

    let usage = backup::local::usage(&root, "acme", uid).unwrap();
    assert_eq!(
        usage,
        BackupUsage {
            backups: 3,
            files: 13,
            bytes: first.bytes + second.bytes + again.bytes + 5,
        }
    );

    let deleted = backup::local::delete_all(&root, "acme", uid).unwrap();
    assert_eq!(deleted, usage);
    assert!(!uid_dir.exists());
    // The other incarnation is untouched, so the tenant folder stays.
    assert!(other.dir.join(MANIFEST).is_file());
    assert_eq!(
        backup::local::usage(&root, "acme", uid).unwrap(),
        BackupUsage::default()
    );

    let deleted = backup::local::delete_all(&root, "acme", other_uid).unwrap();
    assert_eq!(
        deleted,
        BackupUsage {
            backups: 1,
            files: 3,
            bytes: other.bytes,
        }
    );
    assert!(
        !root.join("acme").exists(),
        "the empty tenant folder is removed"
    );
    assert!(root.exists(), "the root stays");
    // Nothing left to delete is fine.
    assert_eq!(
        backup::local::delete_all(&root, "acme", uid).unwrap(),
        BackupUsage::default()
    );
}

#[test]
fn export_into_an_unwritable_root_fails_naming_the_path_and_leaves_nothing() {
    let env = TestEnv::new("bk_unwritable");
    let collection_id = fixture(&env);
    let collection = Some((COLLECTION, collection_id.as_str()));
    let uid = Uuid::new_v4();

    // The root is a file.
    let root = env.path("backups");
    std::fs::write(&root, "not a folder").unwrap();
    let error = export(&env, &root, uid, &tables(), collection, taken_at(1)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("`{}` is not a folder", root.display())
    );
    assert_eq!(std::fs::read_to_string(&root).unwrap(), "not a folder");

    // The root cannot be created (its parent is a file).
    let below_file = root.join("backups");
    let error = export(&env, &below_file, uid, &tables(), collection, taken_at(1)).unwrap_err();
    assert!(matches!(error, BackupError::Io { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("cannot create `{}`", below_file.display())),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&root).unwrap(), "not a folder");

    // A failure half-way (a table that does not exist) takes back the folders it created.
    let root = env.path("fresh");
    std::fs::create_dir(&root).unwrap();
    let missing = vec!["conversations".to_string(), "missing".to_string()];
    let error = export(&env, &root, uid, &missing, collection, taken_at(1)).unwrap_err();
    assert!(matches!(error, BackupError::Postgres(_)), "{error:?}");
    assert!(error.to_string().contains("tenant_acme.missing"), "{error}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);

    // So does a Chroma failure (an unknown collection id), after the tables were written.
    let error = export(
        &env,
        &root,
        uid,
        &tables(),
        Some((COLLECTION, "00000000-0000-0000-0000-000000000000")),
        taken_at(1),
    )
    .unwrap_err();
    assert!(matches!(error, BackupError::Chroma(_)), "{error:?}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);

    // A tenant name that could leave the root is refused before anything is created.
    let error = backup::local::usage(&root, "../escape", uid).unwrap_err();
    assert!(matches!(error, BackupError::Name(_)), "{error}");
}

#[test]
fn export_of_a_tenant_without_a_collection_has_no_chroma_part() {
    let env = TestEnv::new("bk_nochroma");
    env.execute(CONVERSATIONS);
    let root = env.path("backups");
    let uid = Uuid::new_v4();

    let written = export(&env, &root, uid, &tables(), None, taken_at(9)).unwrap();

    assert_eq!((written.rows, written.records), (7, 0));
    let manifest = read_manifest(&written.dir);
    assert!(manifest.chroma.is_none());
    let raw: Value =
        serde_json::from_slice(&std::fs::read(written.dir.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(raw["chroma"], Value::Null);
    assert!(!written.dir.join("chroma").exists());
    assert_eq!(files(&written.dir).len(), 3);
    assert_eq!(
        backup::local::usage(&root, "acme", uid).unwrap(),
        BackupUsage {
            backups: 1,
            files: 3,
            bytes: written.bytes,
        }
    );
}

#[test]
fn remove_takes_back_one_backup_and_its_empty_parents() {
    let env = TestEnv::new("bk_remove");
    env.execute(CONVERSATIONS);
    let root = env.path("backups");
    let uid = Uuid::new_v4();
    let kept = export(&env, &root, uid, &tables(), None, taken_at(1)).unwrap();
    let compensated = export(&env, &root, uid, &tables(), None, taken_at(2)).unwrap();

    backup::local::remove(&compensated.dir).unwrap();
    assert!(!compensated.dir.exists());
    assert!(kept.dir.join(MANIFEST).is_file());
    backup::local::remove(&compensated.dir).unwrap(); // already gone: fine

    backup::local::remove(&kept.dir).unwrap();
    assert!(!root.join("acme").exists());
    assert!(root.exists());
}

#[test]
fn deleting_never_goes_through_a_symbolic_link() {
    let env = TestEnv::new("bk_symlink");
    env.execute(CONVERSATIONS);
    let outside = env.path("outside");
    let uid = Uuid::new_v4();
    let written = export(&env, &outside, uid, &tables(), None, taken_at(1)).unwrap();

    // <root>/acme points at another root's tenant folder.
    let root = env.path("backups");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(outside.join("acme"), root.join("acme")).unwrap();
    let error = backup::local::delete_all(&root, "acme", uid).unwrap_err();
    assert!(matches!(error, BackupError::Symlink(_)), "{error}");
    assert!(backup::local::usage(&root, "acme", uid).is_err());
    let linked_dir = root
        .join("acme")
        .join(uid.to_string())
        .join(written.dir.file_name().unwrap());
    let error = backup::local::remove(&linked_dir).unwrap_err();
    assert!(matches!(error, BackupError::Symlink(_)), "{error}");
    assert!(written.dir.join(MANIFEST).is_file());

    // The backup folder itself is a link.
    let root2 = env.path("backups2");
    std::fs::create_dir_all(root2.join("acme")).unwrap();
    let link = root2.join("acme").join("20260304T050601Z");
    std::os::unix::fs::symlink(&written.dir, &link).unwrap();
    let error = backup::local::remove(&link).unwrap_err();
    assert!(matches!(error, BackupError::Symlink(_)), "{error}");
    assert!(written.dir.join(MANIFEST).is_file());
    assert!(link.exists());
}
