//! One view of a tenant change, built once for every renderer: the verbs, the note that follows
//! them, and the lines of its block. Text and Markdown only lay it out (columns and colours,
//! or a `diff` block inside `<details>`); neither decides again what a change means.

use super::{bytes, quote, thousands};
use crate::observed::LiveStatus;
use crate::plan::{
    Action, CredentialChange, DriftProblem, FieldChange, PasswordWhy, Step, TenantChange,
};
use chrono::{DateTime, Utc};

/// What a line does to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Created or granted (`+`).
    Added,
    /// Corrected or switched (`~`).
    Changed,
    /// Destroyed or revoked for good (`-`).
    Removed,
    /// Named but left as it is (what a purge leaves alone).
    Context,
}

/// One line of a tenant block other than a registry field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewLine {
    pub mark: Mark,
    /// What the line is about: `schema`, `role`, `access`, `backup`, ...
    pub label: String,
    /// Its value after the change (for drift: the resource's name).
    pub value: String,
    /// More about the value, e.g. `table conversations`, or what was wrong for drift.
    pub detail: Option<String>,
    /// For a [`Mark::Changed`] line that switches between two values: the value before.
    pub old: Option<String>,
}

impl ViewLine {
    fn new(mark: Mark, label: &str, value: impl Into<String>) -> Self {
        ViewLine {
            mark,
            label: label.to_string(),
            value: value.into(),
            detail: None,
            old: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// `value (detail)`.
    pub fn value_with_detail(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{} ({detail})", self.value),
            None => self.value.clone(),
        }
    }
}

/// A line of a tenant block.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// A resource, an access switch, a backup, drift.
    Resource(ViewLine),
    /// A registry field, `old -> new`; each renderer shows values its own way.
    Field(&'a FieldChange),
}

/// What follows the verbs of a tenant: why, or what happens to its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A suspension's reason.
    Reason(String),
    /// A soft delete: the data is kept until the purge; `pruned` when no file asked for it.
    Kept {
        purge_after: Option<DateTime<Utc>>,
        pruned: Option<String>,
    },
    /// A purge: when the tenant was soft-deleted, and why the purge is due.
    Destroyed {
        deleted_at: Option<DateTime<Utc>>,
        reason: Option<String>,
    },
    /// Migrations: the ones run, and the ones recorded as applied (a tenant made before
    /// migration history existed).
    Migrations {
        run: Vec<String>,
        adopted: Vec<String>,
    },
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Reason(reason) => write!(f, "reason: {}", quote(reason)),
            Note::Kept {
                purge_after,
                pruned,
            } => {
                f.write_str("data kept")?;
                if let Some(purge_after) = purge_after {
                    write!(f, ", purge after {}", purge_after.format("%Y-%m-%d"))?;
                }
                if let Some(pruned) = pruned {
                    write!(f, " ({pruned})")?;
                }
                Ok(())
            }
            Note::Destroyed { deleted_at, reason } => {
                let mut parts = Vec::new();
                if let Some(deleted_at) = deleted_at {
                    parts.push(format!("deleted {}", deleted_at.format("%Y-%m-%d")));
                }
                if let Some(reason) = reason {
                    parts.push(reason.clone());
                }
                f.write_str(&parts.join(", "))
            }
            Note::Migrations { run, adopted } => {
                f.write_str(&run.join(", "))?;
                if !adopted.is_empty() {
                    if !run.is_empty() {
                        f.write_str(" ")?;
                    }
                    write!(
                        f,
                        "({} already applied by an earlier release: recorded)",
                        adopted.join(", ")
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// A tenant change as every renderer shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantView<'a> {
    pub change: &'a TenantChange,
    pub primary: Action,
    /// `update, repair`; a soft delete reads `delete (soft)`.
    pub verbs: String,
    pub note: Option<Note>,
    pub lines: Vec<Line<'a>>,
}

impl<'a> TenantView<'a> {
    /// The view of a change; `None` for a tenant that does not change.
    pub fn of(change: &'a TenantChange) -> Option<Self> {
        let primary = change.primary()?;
        let verbs = change
            .actions
            .iter()
            .map(|action| match action {
                Action::Delete => "delete (soft)",
                other => other.verb(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let note = match primary {
            Action::Suspend => change
                .record
                .as_ref()
                .and_then(|record| record.suspension_reason.clone())
                .map(Note::Reason),
            Action::Delete => Some(Note::Kept {
                purge_after: change.purge_after,
                // A pruned orphan has no file to say why: the reason says it.
                pruned: change
                    .file
                    .is_none()
                    .then(|| change.reason.clone())
                    .flatten(),
            }),
            Action::Purge => Some(Note::Destroyed {
                deleted_at: change.deleted_at,
                reason: change.reason.clone(),
            }),
            Action::Migrate => Some(migrations_note(change)),
            _ => None,
        };
        let lines = match primary {
            Action::Create => create_lines(change),
            Action::Purge => purge_lines(change),
            _ => change_lines(change, note.is_some()),
        };
        Some(TenantView {
            change,
            primary,
            verbs,
            note,
            lines,
        })
    }
}

/// The migrations a change runs and records.
fn migrations_note(change: &TenantChange) -> Note {
    let names = |adopted: bool| {
        change
            .migrations
            .iter()
            .filter(|migration| migration.adopted == adopted)
            .map(|migration| migration.name.clone())
            .collect()
    };
    Note::Migrations {
        run: names(false),
        adopted: names(true),
    }
}

/// A create: the resources made, then every field of the new record.
fn create_lines(change: &TenantChange) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut schema_name = String::new();
    for step in &change.steps {
        let line = match step {
            Step::CreateSchema { schema } => {
                schema_name = schema.clone();
                let names: Vec<&str> = change
                    .migrations
                    .iter()
                    .map(|migration| migration.name.as_str())
                    .collect();
                ViewLine::new(Mark::Added, "schema", schema)
                    .detail(format!("migrations {}", names.join(", ")))
            }
            Step::CreateRole { role } => {
                let access = match change.status_after {
                    Some(LiveStatus::Active) => format!("usage on {schema_name} only"),
                    _ => format!("no access to {schema_name} while not active"),
                };
                ViewLine::new(Mark::Added, "role", role).detail(access)
            }
            Step::CreateCollection { collection } => {
                ViewLine::new(Mark::Added, "collection", collection)
            }
            Step::UpdateCollectionMetadata { collection, .. } => {
                ViewLine::new(Mark::Added, "collection", collection)
                    .detail("adopting the one left by an interrupted create")
            }
            _ => continue,
        };
        lines.push(Line::Resource(line));
    }
    lines.extend(credential_lines(change));
    lines.extend(change.fields.iter().map(Line::Field));
    lines
}

/// What happens to the tenant's credentials: names, prefixes and dates, never a secret.
fn credential_lines(change: &TenantChange) -> Vec<Line<'_>> {
    const SINK: &str = "to the secrets sink";
    let switched = |label: &str, old: String, new: String| {
        let mut line = ViewLine::new(Mark::Changed, label, new);
        line.old = Some(old);
        Line::Resource(line)
    };
    let date = |date: &Option<chrono::NaiveDate>| {
        date.map_or_else(|| "never".to_string(), |date| date.to_string())
    };
    let key = |name: &str| format!("api key {name}");
    change
        .credentials
        .iter()
        .map(|credential| match credential {
            CredentialChange::Login { from, to } if change.status_before.is_none() => {
                Line::Resource(ViewLine::new(
                    Mark::Added,
                    "login",
                    if *to { "allowed" } else { "disabled" },
                ))
            }
            CredentialChange::Login { from, to } => {
                let word = |login: bool| if login { "allowed" } else { "disabled" };
                switched("login", word(*from).to_string(), word(*to).to_string())
            }
            CredentialChange::ConnectionLimit { from, to } => {
                let limit = |limit: &Option<i32>| {
                    limit.map_or_else(|| "none".to_string(), |limit| limit.to_string())
                };
                if change.status_before.is_none() {
                    Line::Resource(ViewLine::new(Mark::Added, "connection limit", limit(to)))
                } else {
                    switched("connection limit", limit(from), limit(to))
                }
            }
            CredentialChange::Password { why } => match why {
                PasswordWhy::New => {
                    Line::Resource(ViewLine::new(Mark::Added, "password", "generated").detail(SINK))
                }
                PasswordWhy::Rotation => {
                    Line::Resource(ViewLine::new(Mark::Changed, "password", "rotated").detail(SINK))
                }
                PasswordWhy::Drift => Line::Resource(
                    ViewLine::new(Mark::Changed, "password", "generated anew").detail(SINK),
                ),
            },
            CredentialChange::PasswordRemoved => {
                Line::Resource(ViewLine::new(Mark::Removed, "password", "removed"))
            }
            CredentialChange::ApiKeyCreated {
                name,
                expires,
                rotated,
            } => {
                let mut detail = vec![SINK.to_string()];
                if let Some(expires) = expires {
                    detail.push(format!("expires {expires}"));
                }
                if *rotated {
                    detail.push("replaces the retiring key".to_string());
                }
                Line::Resource(
                    ViewLine::new(Mark::Added, &key(name), "generated").detail(detail.join(", ")),
                )
            }
            CredentialChange::ApiKeyRetired {
                name,
                prefix,
                until,
            } => Line::Resource(
                ViewLine::new(Mark::Changed, &key(name), prefix.as_str()).detail(format!(
                    "retiring: works until {}",
                    until.format("%Y-%m-%d %H:%M UTC")
                )),
            ),
            CredentialChange::ApiKeyRevoked { name, prefix, why } => Line::Resource(
                ViewLine::new(Mark::Removed, &key(name), prefix.as_str())
                    .detail(format!("revoked: {why}")),
            ),
            CredentialChange::ApiKeyExpiry { name, from, to, .. } => switched(
                &key(name),
                format!("expires {}", date(from)),
                format!("expires {}", date(to)),
            ),
            CredentialChange::SessionsEnded { sessions } => Line::Resource(ViewLine::new(
                Mark::Removed,
                "sessions",
                format!("{} open, ended", thousands(*sessions)),
            )),
        })
        .collect()
}

/// A purge: what it destroys, with what each holds, then what it leaves alone.
fn purge_lines(change: &TenantChange) -> Vec<Line<'_>> {
    let risk = change.at_risk.clone().unwrap_or_default();
    let mut lines = Vec::new();
    for step in &change.steps {
        let line = match step {
            Step::DropSchema { schema } => {
                let line = ViewLine::new(Mark::Removed, "schema", schema);
                match risk.rows {
                    Some(rows) => line.detail(count(rows, "row")),
                    None => line,
                }
            }
            Step::DropRole { role } => ViewLine::new(Mark::Removed, "role", role),
            Step::DeleteCollection { collection } => {
                let line = ViewLine::new(Mark::Removed, "collection", collection);
                match risk.records {
                    Some(records) => line.detail(count(records, "record")),
                    None => line,
                }
            }
            Step::DeleteBackups { .. } => ViewLine::new(
                Mark::Removed,
                "backups",
                format!(
                    "{}, {}",
                    count(risk.backup_files, "file"),
                    bytes(risk.backup_bytes)
                ),
            ),
            Step::DeleteRegistry { .. } => {
                ViewLine::new(Mark::Removed, "registry row", &change.tenant)
                    .detail("an event records the purge")
            }
            _ => continue,
        };
        lines.push(Line::Resource(line));
    }
    // The drift of a purge is what it leaves alone.
    for drift in &change.drift {
        lines.push(Line::Resource(
            ViewLine::new(Mark::Context, drift.resource.label(), &drift.name).detail(&drift.detail),
        ));
    }
    lines
}

/// Any other change: its fields, the access it switches, the backup of a soft delete, drift.
fn change_lines(change: &TenantChange, note_shown: bool) -> Vec<Line<'_>> {
    let transition = change
        .actions
        .iter()
        .any(|action| matches!(action, Action::Suspend | Action::Resume));
    let mut lines: Vec<Line> = change
        .fields
        .iter()
        // The note already shows the reason of a suspension.
        .filter(|field| {
            !(note_shown && transition && field.path == "suspension.reason" && field.new.is_some())
        })
        .map(Line::Field)
        .collect();
    let revoked =
        change.actions.contains(&Action::Suspend) || change.actions.contains(&Action::Delete);
    let granted = change.actions.contains(&Action::Resume)
        || (change.actions.contains(&Action::Restore)
            && change.status_after == Some(LiveStatus::Active));
    let switch = if revoked {
        Some(("granted", "revoked"))
    } else if granted {
        Some(("revoked", "granted"))
    } else {
        None
    };
    if let Some((old, new)) = switch {
        let mut line = ViewLine::new(Mark::Changed, "access", new);
        line.old = Some(old.to_string());
        lines.push(Line::Resource(line));
    }
    if change.primary() == Some(Action::Delete) {
        let mut line = ViewLine::new(
            Mark::Added,
            "backup",
            "final export of tables and collection",
        );
        if let Some(risk) = &change.at_risk {
            line = line.detail(volume(risk.rows, risk.records));
        }
        lines.push(Line::Resource(line));
    }
    for drift in &change.drift {
        let mark = match drift.problem {
            DriftProblem::Missing => Mark::Added,
            DriftProblem::Wrong => Mark::Changed,
        };
        lines.push(Line::Resource(
            ViewLine::new(mark, drift.resource.label(), &drift.name).detail(&drift.detail),
        ));
    }
    lines.extend(credential_lines(change));
    // Migrations named in the note when they are the change; otherwise a line of their own,
    // last: they run in the schema the lines above make or repair.
    if change.primary() != Some(Action::Migrate) && !change.migrations.is_empty() {
        let note = migrations_note(change);
        lines.push(Line::Resource(ViewLine::new(
            Mark::Added,
            "migrations",
            note.to_string(),
        )));
    }
    lines
}

/// The migrations a plan runs on existing tenants: each one's name and how many tenants run it,
/// in version order; and how many tenants migrate in all.
pub fn pending_migrations(plan: &crate::plan::Plan) -> (Vec<(u32, String, usize)>, usize) {
    let mut by_version: std::collections::BTreeMap<u32, (String, usize)> = Default::default();
    let mut tenants = 0;
    for change in plan.effective_changes() {
        if !change.actions.contains(&Action::Migrate) {
            continue;
        }
        tenants += 1;
        for migration in change.migrations.iter().filter(|m| !m.adopted) {
            let entry = by_version
                .entry(migration.version)
                .or_insert_with(|| (migration.name.clone(), 0));
            entry.1 += 1;
        }
    }
    (
        by_version
            .into_iter()
            .map(|(version, (name, count))| (version, name, count))
            .collect(),
        tenants,
    )
}

/// `1 row`, `2,048 records`.
pub(crate) fn count(value: u64, noun: &str) -> String {
    format!(
        "{} {noun}{}",
        thousands(value),
        if value == 1 { "" } else { "s" }
    )
}

/// `1,204 rows, 3,400 records`, leaving out what was not measured.
pub(crate) fn volume(rows: Option<u64>, records: Option<u64>) -> String {
    let mut parts = Vec::new();
    if let Some(rows) = rows {
        parts.push(count(rows, "row"));
    }
    if let Some(records) = records {
        parts.push(count(records, "record"));
    }
    if parts.is_empty() {
        "not measured".to_string()
    } else {
        parts.join(", ")
    }
}

/// One statement of a migration that drops or rewrites data, with what the tenants that run
/// it put at risk: rows of the tables their destructive migrations name, in all and the
/// tenants with the most first.
pub struct Destruction<'a> {
    pub statement: &'a crate::plan::DestructiveMigration,
    /// `None` when no tenant's rows were measured.
    pub rows: Option<u64>,
    pub most: Vec<(&'a str, u64)>,
}

/// [`Destruction`]s of a plan, in the plan's order (by version, then line).
pub fn destructions(plan: &crate::plan::Plan) -> Vec<Destruction<'_>> {
    plan.destructive_migrations
        .iter()
        .map(|statement| {
            let mut measured = false;
            let mut most: Vec<(&str, u64)> = plan
                .changes
                .iter()
                .filter(|change| change.runs_migration(statement.version))
                .filter_map(|change| {
                    let rows = change.at_risk.as_ref()?.rows?;
                    measured = true;
                    Some((change.tenant.as_str(), rows))
                })
                .collect();
            most.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let rows = measured.then(|| most.iter().map(|(_, rows)| rows).sum());
            Destruction {
                statement,
                rows,
                most,
            }
        })
        .collect()
}
