//! The tenant schema as code: `migrations/<version>_<name>.sql` in the tenants directory, run in
//! version order in every tenant's schema. A directory without `migrations/` gets the built-in
//! `0001_conversations.sql`, so the seed's table is a migration like any other.
//!
//! Every file is checked here, before any server is contacted: its name, its encoding, its size,
//! and each statement (see [`super::sql`]) for anything that would end or escape the tenant's
//! transaction.

use super::sql;
use super::{SourceFile, SpecError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The folder of migrations inside the tenants directory.
pub const FOLDER: &str = "migrations";

/// The built-in first migration, used when the directory has no `migrations/` folder.
pub const BUILTIN_NAME: &str = "0001_conversations.sql";
pub const BUILTIN_SQL: &str = include_str!("builtin/0001_conversations.sql");

/// Largest migration file: DDL is a few KB; anything near this is data, not schema.
pub const FILE_BYTES: usize = 1024 * 1024;
/// All migrations together.
pub const TOTAL_BYTES: usize = 16 * 1024 * 1024;
/// Most migration files.
pub const MAX_FILES: usize = 10_000;

/// One migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The number its name starts with; unique, ordered numerically.
    pub version: u32,
    /// The file name without `.sql`, e.g. `0002_documents`: how plans name it.
    pub name: String,
    /// Where it comes from, for messages: `tenants/migrations/0002_documents.sql`, or
    /// `built in: 0001_conversations.sql`.
    pub file: String,
    /// Hex SHA-256 of the file's bytes: an applied migration must never change.
    pub checksum: String,
    /// Embedded in tenantctl, for a directory without `migrations/`.
    pub builtin: bool,
    /// The SQL, as it is sent to the server.
    pub sql: String,
}

impl Migration {
    /// Its statements, in order, each sent to the server on its own so that a failure names
    /// the line of the statement that failed (a multi-statement query reports no position for
    /// most errors). The text was split when it was read, so it splits again; should it not,
    /// the whole text is one statement.
    pub fn statements(&self) -> Vec<MigrationStatement<'_>> {
        let online = self.online();
        match sql::statements(&self.sql) {
            Ok(statements) if !statements.is_empty() => statements
                .iter()
                .map(|statement| MigrationStatement {
                    line: statement.line,
                    text: &self.sql[statement.start..statement.end],
                    online: online
                        .then(|| sql::online_index(statement).ok())
                        .flatten()
                        .map(|mut index| {
                            // Relative to the statement's text.
                            index.concurrently = index.concurrently.start - statement.start
                                ..index.concurrently.end - statement.start;
                            index
                        }),
                })
                .collect(),
            _ => vec![MigrationStatement {
                line: 1,
                text: &self.sql,
                online: None,
            }],
        }
    }

    /// Marked `-- tenantctl: no-transaction` on its first line: on an existing tenant it runs
    /// outside the tenant's transaction, statement by statement (each an index built or
    /// dropped concurrently, see [`sql::online_index`]).
    pub fn online(&self) -> bool {
        // The first line only: asked per tenant and per migration by plans and the executor.
        sql::marked_no_transaction(&self.sql)
    }
}

/// One statement of a migration and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatement<'a> {
    pub line: usize,
    /// As written.
    pub text: &'a str,
    /// The index it builds or drops concurrently, in a no-transaction migration (its
    /// `concurrently` relative to `text`).
    pub online: Option<sql::OnlineIndex>,
}

impl<'a> MigrationStatement<'a> {
    /// The statement as it runs inside a transaction: an online one without its
    /// `CONCURRENTLY` (a schema no one else uses yet: the reference, a new tenant's), any
    /// other as written. The word removed holds no line break, so lines stay where they were.
    pub fn in_transaction(&self) -> std::borrow::Cow<'a, str> {
        match &self.online {
            Some(index) => std::borrow::Cow::Owned(format!(
                "{}{}",
                &self.text[..index.concurrently.start],
                &self.text[index.concurrently.end..]
            )),
            None => std::borrow::Cow::Borrowed(self.text),
        }
    }

    /// The 1-based line of the migration an error points at: the server's 1-based character
    /// `position` in `sent` (this statement, as it was sent) when it gives one, else the
    /// statement's first line.
    pub fn line_at(&self, sent: &str, position: Option<usize>) -> usize {
        let within = position.map_or(0, |position| {
            sent.chars()
                .take(position.saturating_sub(1))
                .filter(|c| *c == '\n')
                .count()
        });
        self.line + within
    }
}

/// The migrations of a directory, in version order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Migrations {
    pub list: Vec<Migration>,
}

impl Migrations {
    /// Only the built-in `0001_conversations.sql`.
    pub fn builtin() -> Self {
        Migrations {
            list: vec![migration(
                1,
                "0001_conversations".to_string(),
                format!("built in: {BUILTIN_NAME}"),
                BUILTIN_SQL.to_string(),
                true,
            )],
        }
    }

    /// The statements of `version` that drop or rewrite data: (line, what, tables).
    pub fn destructive(&self, version: u32) -> Vec<(usize, &'static str, Vec<String>)> {
        let Some(migration) = self.get(version) else {
            return Vec::new();
        };
        super::sql::statements(&migration.sql)
            .unwrap_or_default()
            .iter()
            .filter_map(|statement| {
                super::sql::destructive(statement)
                    .map(|(kind, tables)| (statement.line, kind, tables))
            })
            .collect()
    }

    /// The highest version, if any.
    pub fn latest(&self) -> Option<u32> {
        self.list.last().map(|migration| migration.version)
    }

    pub fn get(&self, version: u32) -> Option<&Migration> {
        self.list
            .iter()
            .find(|migration| migration.version == version)
    }
}

fn migration(version: u32, name: String, file: String, sql: String, builtin: bool) -> Migration {
    Migration {
        version,
        name,
        file,
        checksum: hex::encode(Sha256::digest(sql.as_bytes())),
        builtin,
        sql,
    }
}

/// Reads `dir/migrations/*.sql`: the files, for the fingerprint, and the problems met. `None`
/// when there is no such folder.
pub(super) fn read(dir: &Path) -> (Option<Vec<SourceFile>>, Vec<SpecError>) {
    let folder = dir.join(FOLDER);
    let mut errors = Vec::new();
    let error = |file: &Path, message: String, hint: Option<&str>| SpecError {
        file: file.to_path_buf(),
        line: None,
        column: None,
        field: None,
        message,
        hint: hint.map(str::to_string),
    };
    match fs::symlink_metadata(&folder) {
        Err(_) => return (None, errors),
        Ok(metadata) if !metadata.is_dir() && !metadata.file_type().is_symlink() => {
            errors.push(error(
                &folder,
                "`migrations` is not a folder".to_string(),
                Some("migrations live in a folder `migrations/` of the tenants directory"),
            ));
            return (Some(Vec::new()), errors);
        }
        Ok(_) => {}
    }
    let root = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let entries = match fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(problem) => {
            errors.push(error(
                &folder,
                format!("cannot read the folder: {problem}"),
                None,
            ));
            return (Some(Vec::new()), errors);
        }
    };
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    let mut sources = Vec::new();
    let mut total = 0usize;
    for name in names {
        let shown = name.to_string_lossy().into_owned();
        if shown.starts_with('.') {
            continue;
        }
        let path = folder.join(&name);
        if let Ok(target) = fs::canonicalize(&path) {
            if !target.starts_with(&root) {
                errors.push(error(
                    &path,
                    format!("symlink leads outside `{}`", dir.display()),
                    Some("copy the migration into the directory"),
                ));
                continue;
            }
        }
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {
                errors.push(error(
                    &path,
                    "a folder inside `migrations/`".to_string(),
                    Some("migrations are files `migrations/<version>_<name>.sql`, one level only"),
                ));
                continue;
            }
            Ok(_) => {}
            Err(problem) => {
                errors.push(error(
                    &path,
                    format!("cannot read the file: {problem}"),
                    None,
                ));
                continue;
            }
        }
        if sources.len() >= MAX_FILES {
            errors.push(error(
                &folder,
                format!("more than {MAX_FILES} migrations"),
                Some("squash old migrations into one"),
            ));
            break;
        }
        let mut bytes = Vec::new();
        if let Err(problem) = fs::File::open(&path)
            .and_then(|file| file.take(FILE_BYTES as u64 + 1).read_to_end(&mut bytes))
        {
            errors.push(error(
                &path,
                format!("cannot read the file: {problem}"),
                None,
            ));
            continue;
        }
        if bytes.len() > FILE_BYTES {
            errors.push(error(
                &path,
                format!(
                    "migration is larger than {} MiB",
                    FILE_BYTES / (1024 * 1024)
                ),
                Some("a migration is schema, not data: load data outside tenantctl"),
            ));
            continue;
        }
        total += bytes.len();
        if total > TOTAL_BYTES {
            errors.push(error(
                &path,
                format!(
                    "the migrations hold more than {} MiB; this file crosses the limit",
                    TOTAL_BYTES / (1024 * 1024)
                ),
                Some("squash old migrations into one"),
            ));
            break;
        }
        match String::from_utf8(bytes) {
            Ok(text) => sources.push(SourceFile {
                path,
                relative: PathBuf::from(FOLDER).join(&name),
                text,
            }),
            Err(problem) => {
                let valid = &problem.as_bytes()[..problem.utf8_error().valid_up_to()];
                let before = String::from_utf8_lossy(valid);
                let line = 1 + before.matches('\n').count();
                let column = 1 + before
                    .rsplit('\n')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .count();
                errors.push(SpecError {
                    file: path,
                    line: Some(line),
                    column: Some(column),
                    field: None,
                    message: "file is not valid UTF-8".to_string(),
                    hint: Some("save the migration as UTF-8".to_string()),
                });
            }
        }
    }
    (Some(sources), errors)
}

/// Checks the migration files and orders them by version. Pure.
///
/// # Errors
/// Every problem: a name that is not `<version>_<name>.sql`, a version used twice, an empty
/// file, a NUL byte, a statement that cannot be split or that would escape the tenant's
/// transaction.
pub(super) fn parse(sources: &[SourceFile]) -> Result<Migrations, Vec<SpecError>> {
    let mut errors = Vec::new();
    let mut list: Vec<Migration> = Vec::new();
    for source in sources {
        let at = |line: usize, column: usize, message: String, hint: Option<String>| SpecError {
            file: source.path.clone(),
            line: Some(line),
            column: Some(column),
            field: None,
            message,
            hint,
        };
        let file_name = source
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((version, _)) = parse_name(&file_name) else {
            errors.push(SpecError {
                file: source.path.clone(),
                line: None,
                column: None,
                field: None,
                message: format!("`{file_name}` is not named like a migration"),
                hint: Some(
                    "name it `<version>_<name>.sql`: a positive number, `_`, then lowercase letters, digits and `_`, e.g. `0002_documents.sql`".to_string(),
                ),
            });
            continue;
        };
        if let Some(first) = list.iter().find(|other| other.version == version) {
            errors.push(SpecError {
                file: source.path.clone(),
                line: None,
                column: None,
                field: None,
                message: format!(
                    "version {version} is used twice: `{}` and `{file_name}`",
                    first.file.rsplit('/').next().unwrap_or_default()
                ),
                hint: Some("give each migration its own version number".to_string()),
            });
            continue;
        }
        if let Some(offset) = source.text.find('\0') {
            let before = &source.text[..offset];
            let line = 1 + before.matches('\n').count();
            let column = 1 + before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count();
            errors.push(at(
                line,
                column,
                "migration contains a NUL byte".to_string(),
                None,
            ));
            continue;
        }
        let statements = match sql::statements(&source.text) {
            Ok(statements) => statements,
            Err(problem) => {
                errors.push(at(problem.line, problem.column, problem.message, None));
                continue;
            }
        };
        if statements.is_empty() {
            errors.push(SpecError {
                file: source.path.clone(),
                line: None,
                column: None,
                field: None,
                message: "migration is empty".to_string(),
                hint: Some("write its SQL, or remove the file".to_string()),
            });
            continue;
        }
        let online = match sql::no_transaction(&source.text) {
            Ok(online) => online,
            Err(problem) => {
                errors.push(at(
                    problem.line,
                    1,
                    problem.message,
                    Some(problem.hint.to_string()),
                ));
                continue;
            }
        };
        let mut refused = false;
        for statement in &statements {
            // A no-transaction migration holds only index builds and drops, checked by name;
            // any other, nothing that would escape the tenant's transaction.
            let problem = if online {
                sql::online_index(statement).err()
            } else {
                sql::refusal(statement)
            };
            if let Some((message, hint)) = problem {
                errors.push(at(
                    statement.line,
                    statement.column,
                    message,
                    Some(hint.to_string()),
                ));
                refused = true;
            }
        }
        if refused {
            continue;
        }
        list.push(migration(
            version,
            file_name.trim_end_matches(".sql").to_string(),
            source.path.display().to_string(),
            source.text.clone(),
            false,
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    list.sort_by_key(|migration| migration.version);
    Ok(Migrations { list })
}

/// `0002_documents.sql` -> (2, `documents`).
fn parse_name(file_name: &str) -> Option<(u32, &str)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (number, name) = stem.split_once('_')?;
    let valid_number = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit());
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63;
    if !valid_number || !valid_name {
        return None;
    }
    // The registry stores versions as PostgreSQL integers.
    let version: u32 = number.parse().ok().filter(|version| *version > 0)?;
    i32::try_from(version).ok()?;
    Some((version, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from("tenants/migrations").join(name),
            relative: PathBuf::from("migrations").join(name),
            text: text.to_string(),
        }
    }

    fn messages(sources: &[SourceFile]) -> Vec<String> {
        parse(sources)
            .unwrap_err()
            .iter()
            // Without the hint lines.
            .map(|error| {
                error
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn names_versions_and_order() {
        assert_eq!(parse_name("0002_documents.sql"), Some((2, "documents")));
        assert_eq!(parse_name("10_add_index.sql"), Some((10, "add_index")));
        for bad in [
            "1-init.sql",
            "0001.sql",
            "0000_zero.sql",
            "a_b.sql",
            "0001_Docs.sql",
            "0001_x.txt",
            "99999999999_x.sql",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        let parsed = parse(&[
            source("0010_later.sql", "CREATE TABLE later (id int);"),
            source("0002_documents.sql", "CREATE TABLE documents (id int);"),
        ])
        .unwrap();
        let versions: Vec<u32> = parsed.list.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![2, 10]);
        assert_eq!(parsed.list[0].name, "0002_documents");
        assert_eq!(parsed.list[0].checksum.len(), 64);
    }

    #[test]
    fn hostile_files_are_clear_errors() {
        assert_eq!(
            messages(&[source("1-init.sql", "CREATE TABLE t (id int);")]),
            vec!["tenants/migrations/1-init.sql: `1-init.sql` is not named like a migration"]
        );
        assert_eq!(
            messages(&[
                source("0002_a.sql", "CREATE TABLE a (id int);"),
                source("002_b.sql", "CREATE TABLE b (id int);"),
            ]),
            vec!["tenants/migrations/002_b.sql: version 2 is used twice: `0002_a.sql` and `002_b.sql`"]
        );
        assert_eq!(
            messages(&[source("0002_empty.sql", "-- nothing yet\n")]),
            vec!["tenants/migrations/0002_empty.sql: migration is empty"]
        );
        assert_eq!(
            messages(&[source(
                "0002_nul.sql",
                "CREATE TABLE t (id int);\nSELECT '\0';"
            )]),
            vec!["tenants/migrations/0002_nul.sql:2:9: migration contains a NUL byte"]
        );
        assert_eq!(
            messages(&[source(
                "0003_index.sql",
                "CREATE TABLE t (id int);\n\nCREATE INDEX CONCURRENTLY t_id ON t (id);\nCOMMIT;\n"
            )]),
            vec![
                "tenants/migrations/0003_index.sql:3:1: `CONCURRENTLY` cannot run inside a transaction",
                "tenants/migrations/0003_index.sql:4:1: `COMMIT` ends or nests the tenant's transaction",
            ]
        );
    }

    #[test]
    fn a_no_transaction_migration_holds_named_index_builds_only() {
        let migrations = parse(&[
            source("0002_notes.sql", "ALTER TABLE conversations ADD COLUMN note text;"),
            source(
                "0003_note_index.sql",
                "-- tenantctl: no-transaction\n-- Built online: tenants keep writing.\nCREATE INDEX CONCURRENTLY conversations_note\n  ON conversations (note);\nDROP INDEX CONCURRENTLY IF EXISTS old_note;\n",
            ),
        ])
        .unwrap();
        assert!(!migrations.list[0].online());
        let online = &migrations.list[1];
        assert!(online.online());
        let statements = online.statements();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0].line, 3);
        assert_eq!(
            statements[0].in_transaction(),
            "CREATE INDEX  conversations_note\n  ON conversations (note)"
        );
        let index = statements[0].online.as_ref().unwrap();
        assert_eq!(
            (index.create, index.name.as_str()),
            (true, "conversations_note")
        );
        assert_eq!(
            statements[1].in_transaction(),
            "DROP INDEX  IF EXISTS old_note"
        );
        // Transactional migrations are sent as written.
        assert_eq!(migrations.list[0].statements()[0].online, None);

        let errors = parse(&[
            source(
                "0004_mixed.sql",
                "-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\nALTER TABLE t ADD COLUMN y int;\n",
            ),
            source(
                "0005_late.sql",
                "CREATE TABLE u (id int);\n-- tenantctl: no-transaction\n",
            ),
            source("0006_in_transaction.sql", "CREATE INDEX CONCURRENTLY b ON t (x);"),
        ])
        .unwrap_err();
        let shown: Vec<(String, Option<usize>, String)> = errors
            .iter()
            .map(|e| (e.file.display().to_string(), e.line, e.message.clone()))
            .collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(
            shown[0].0.ends_with("0004_mixed.sql") && shown[0].1 == Some(3),
            "{shown:?}"
        );
        assert!(shown[0].2.contains("holds only"), "{shown:?}");
        assert!(
            shown[1].0.ends_with("0005_late.sql") && shown[1].1 == Some(2),
            "{shown:?}"
        );
        assert!(
            shown[2].2.contains("cannot run inside a transaction"),
            "{shown:?}"
        );
        assert!(errors[2]
            .hint
            .as_deref()
            .unwrap()
            .contains("-- tenantctl: no-transaction"));
    }

    #[test]
    fn error_positions_map_to_lines() {
        let migrations = parse(&[source(
            "0002_x.sql",
            "-- Two tables.\nCREATE TABLE a (id int);\n\nCREATE TABLE b (\n  x nope\n);",
        )])
        .unwrap();
        let statements = migrations.list[0].statements();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0].text, "CREATE TABLE a (id int)");
        assert_eq!(statements[1].line, 4);
        // PostgreSQL's position of `nope`, in characters of the statement sent: line 5.
        let position = statements[1].text.find("nope").unwrap() + 1;
        assert_eq!(statements[1].line_at(statements[1].text, Some(position)), 5);
        // No position (most errors of DDL): the statement's first line.
        assert_eq!(statements[1].line_at(statements[1].text, None), 4);
    }

    #[test]
    fn the_builtin_migration_is_the_seed_table() {
        let builtin = Migrations::builtin();
        assert_eq!(builtin.list.len(), 1);
        assert!(builtin.list[0].builtin);
        assert_eq!(builtin.list[0].name, "0001_conversations");
        assert!(builtin.list[0].sql.contains("CREATE TABLE conversations"));
        assert!(parse(&[source("0001_conversations.sql", BUILTIN_SQL)]).is_ok());
    }
}
