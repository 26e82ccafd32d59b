//! One file's documents to typed records, reporting every problem with its position.
//!
//! Nothing here stops at the first error: each field is checked on its own and a bad field is
//! simply left out of the record, so that one run reports everything wrong with a document.
//! Cross-document rules (duplicates, plan references, the merge) live in the parent module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::limits::{self, thousands};
use super::yaml::{self, Budget, Mark, Node, Value};
use super::{
    validate_tenant_id, ApiKeySpec, AuthSettings, DesiredStatus, Location, PartialAuth,
    PartialConfig, PlanSpec, Settings, SourceFile, SpecError, API_VERSION,
};

const KINDS: [&str; 3] = ["Tenant", "Plan", "Settings"];
const TENANT_FIELDS: [&str; 12] = [
    "apiVersion",
    "kind",
    "id",
    "name",
    "state",
    "plan",
    "config",
    "suspension",
    "retention_days",
    "protected",
    "canary",
    "auth",
];
const PLAN_FIELDS: [&str; 6] = [
    "apiVersion",
    "kind",
    "name",
    "description",
    "config",
    "auth",
];
const SETTINGS_FIELDS: [&str; 5] = ["apiVersion", "kind", "retention_days", "canary", "auth"];
/// Tenants a canary may hold.
const CANARY: (u32, u32) = (0, 1_000);
const AUTH_FIELDS: [&str; 4] = ["login", "connection_limit", "api_keys", "rotate"];
const API_KEY_FIELDS: [&str; 2] = ["name", "expires"];
const AUTH_SETTINGS_FIELDS: [&str; 2] = ["app_role", "rotation_grace"];
/// Most API keys per tenant.
const MAX_API_KEYS: usize = 100;
/// `CONNECTION LIMIT` of a tenant role.
const CONNECTION_LIMIT: (u32, u32) = (0, 10_000);
const CONFIG_FIELDS: [&str; 4] = ["model", "max_tokens", "rate_limit_per_minute", "features"];
const SUSPENSION_FIELDS: [&str; 1] = ["reason"];

const MAX_NAME_CHARS: usize = 200;
const MAX_TOKENS: (u32, u32) = (1, 1_000_000);
const RATE_LIMIT: (u32, u32) = (0, 1_000_000);
const RETENTION_DAYS: (u32, u32) = (0, super::MAX_RETENTION_DAYS);

/// The collected errors of a run, at most [`limits::ERRORS`] of them.
#[derive(Debug, Default)]
pub(super) struct Problems {
    errors: Vec<SpecError>,
    /// Some document could not be read far enough to know what it declares (a syntax error, a
    /// plan without a valid name): an "unknown plan" may be declared there.
    pub(super) incomplete: bool,
    /// The file of the first error past the limit, once there is one.
    overflow: Option<PathBuf>,
}

impl Problems {
    /// Records an error at `location`, unless [`Self::is_full`].
    pub(super) fn at(
        &mut self,
        location: &Location,
        field: Option<&str>,
        message: String,
        hint: Option<String>,
    ) {
        if self.errors.len() >= limits::ERRORS {
            self.overflow.get_or_insert_with(|| location.file.clone());
            return;
        }
        self.errors.push(SpecError {
            file: location.file.clone(),
            line: Some(location.line),
            column: Some(location.column),
            field: field.map(str::to_string),
            message,
            hint,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// An error was dropped for being past the limit: checking anything more is wasted work.
    pub(super) fn is_full(&self) -> bool {
        self.overflow.is_some()
    }

    fn len(&self) -> usize {
        self.errors.len()
    }

    /// The errors, and one more saying where checking stopped if some were dropped.
    pub(super) fn into_errors(mut self) -> Vec<SpecError> {
        if let Some(file) = self.overflow {
            self.errors.push(SpecError {
                file,
                line: None,
                column: None,
                field: None,
                message: format!(
                    "more than {} errors; checking stopped at this file",
                    thousands(limits::ERRORS)
                ),
                hint: Some("fix the errors shown and run again to see the rest".to_string()),
            });
        }
        self.errors
    }
}

/// A tenant document as far as it could be read; `None` fields were missing or invalid.
#[derive(Debug)]
pub(super) struct RawTenant {
    pub(super) id: Option<String>,
    /// The `id` value, or the document start when there is none.
    pub(super) id_location: Location,
    pub(super) name: Option<String>,
    pub(super) state: DesiredStatus,
    pub(super) plan: Option<String>,
    /// The `plan` value, or the document start when there is none.
    pub(super) plan_location: Location,
    pub(super) config: PartialConfig,
    pub(super) suspension_reason: Option<String>,
    pub(super) retention_days: Option<u32>,
    pub(super) protected: bool,
    pub(super) canary: bool,
    pub(super) auth: Option<PartialAuth>,
    pub(super) location: Location,
    /// No error was found in the document.
    pub(super) clean: bool,
}

/// A document that could be classified.
#[derive(Debug)]
pub(super) enum Document {
    Tenant(RawTenant),
    /// `clean` is false when the plan's document had errors (its name was still valid).
    Plan {
        plan: PlanSpec,
        clean: bool,
    },
    Settings(Settings),
}

/// Parses and validates every document of one file, drawing on `budget`, the directory's limits.
pub(super) fn file_documents(
    source: &SourceFile,
    problems: &mut Problems,
    budget: &mut Budget,
) -> Vec<Document> {
    let mut context = Context {
        file: &source.path,
        problems,
    };
    let (documents, parse_error) = yaml::parse(&source.text, budget);
    if let Some(error) = parse_error {
        context.problems.incomplete = true;
        context.error(error.mark, None, error.message, error.hint);
    }

    let mut typed = Vec::new();
    let mut first_tenant: Option<usize> = None;
    let mut kinds = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let before = context.problems.len();
        let result = context.document(&document.root, &source.relative);
        let clean = context.problems.len() == before;
        kinds.push(match &result {
            Some(Document::Tenant(_)) => Some("Tenant"),
            Some(Document::Plan { .. }) => Some("Plan"),
            Some(Document::Settings(_)) => Some("Settings"),
            None => None,
        });
        if let Some(mut document) = result {
            match &mut document {
                Document::Tenant(tenant) => {
                    tenant.clean = clean;
                    first_tenant.get_or_insert(index);
                }
                Document::Plan { clean: flag, .. } => *flag = clean,
                Document::Settings(_) => {}
            }
            typed.push(document);
        }
    }

    // One file per tenant: the file name is the tenant's key in git, so a tenant file that also
    // declared a plan or another tenant would make renames and reviews ambiguous.
    if let Some(tenant_index) = first_tenant {
        for (index, document) in documents.iter().enumerate() {
            if index == tenant_index {
                continue;
            }
            let what = kinds[index].map_or("another document".to_string(), |kind| {
                format!("a `{kind}` document")
            });
            context.error(
                document.root.mark,
                None,
                format!(
                    "a tenant file holds exactly one document, but this file has {what} besides its `Tenant`"
                ),
                Some("move this document to a file of its own".to_string()),
            );
        }
    }
    typed
}

struct Context<'a> {
    file: &'a Path,
    problems: &'a mut Problems,
}

/// The fields of a mapping, once keys have been checked.
struct MappingFields<'n> {
    /// Where the mapping starts, for "missing field" errors.
    mark: Mark,
    /// Path of the mapping itself (`""` for the document, `config`, ...).
    path: String,
    values: BTreeMap<&'n str, (&'n Node, &'n Node)>,
}

impl<'n> MappingFields<'n> {
    fn value(&self, name: &str) -> Option<&'n Node> {
        self.values.get(name).map(|(_, value)| *value)
    }

    fn key(&self, name: &str) -> Option<&'n Node> {
        self.values.get(name).map(|(key, _)| *key)
    }

    fn path(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Context<'_> {
    fn location(&self, mark: Mark) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: mark.line,
            column: mark.column,
        }
    }

    fn error(&mut self, mark: Mark, field: Option<&str>, message: String, hint: Option<String>) {
        let location = self.location(mark);
        self.problems.at(&location, field, message, hint);
    }

    fn expected(&mut self, node: &Node, field: &str, expected: &str) {
        let hint = match &node.value {
            Value::Null => {
                Some("an empty value is null in YAML; remove the key to leave it unset".to_string())
            }
            _ => None,
        };
        self.error(
            node.mark,
            Some(field),
            format!("expected {expected}, found {}", node.value.in_words()),
            hint,
        );
    }

    /// The entries of a mapping with string keys, each key once; reports non-string and
    /// duplicate keys. `None` (and an error) when `node` is not a mapping.
    fn entries<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
    ) -> Option<BTreeMap<&'n str, (&'n Node, &'n Node)>> {
        let Value::Mapping(entries) = &node.value else {
            self.expected(
                node,
                if path.is_empty() { "document" } else { path },
                "a mapping",
            );
            return None;
        };
        let mut values: BTreeMap<&str, (&Node, &Node)> = BTreeMap::new();
        for (key, value) in entries {
            let Value::Str { text, .. } = &key.value else {
                self.error(
                    key.mark,
                    (!path.is_empty()).then_some(path),
                    format!("expected a field name, found {}", key.value.in_words()),
                    None,
                );
                continue;
            };
            if let Some((first, _)) = values.get(text.as_str()) {
                self.error(
                    key.mark,
                    Some(&join(path, &yaml::shorten(text))),
                    format!(
                        "duplicate key `{}`, first set at line {}",
                        yaml::shorten(text),
                        first.mark.line
                    ),
                    Some("a key may appear only once in a mapping; remove one of them".to_string()),
                );
                continue;
            }
            values.insert(text, (key, value));
        }
        Some(values)
    }

    /// Like [`Self::entries`], and reports every field not in `allowed`.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        owner: &str,
        allowed: &[&str],
    ) -> Option<MappingFields<'n>> {
        let values = self.entries(node, path)?;
        for (name, (key, _)) in &values {
            if allowed.contains(name) {
                continue;
            }
            let suggestion = did_you_mean(name, allowed.iter().copied())
                .map(|close| format!("did you mean `{close}`? "))
                .unwrap_or_default();
            self.error(
                key.mark,
                Some(&join(path, &yaml::shorten(name))),
                format!("unknown field `{}`", yaml::shorten(name)),
                Some(format!(
                    "{suggestion}the fields of {owner} are {}",
                    list(allowed)
                )),
            );
        }
        Some(MappingFields {
            mark: node.mark,
            path: path.to_string(),
            values,
        })
    }

    fn missing(&mut self, fields: &MappingFields<'_>, name: &str, hint: Option<String>) {
        self.error(
            fields.mark,
            Some(&fields.path(name)),
            format!("missing required field `{name}`"),
            hint,
        );
    }

    fn string(&mut self, node: &Node, field: &str) -> Option<String> {
        match &node.value {
            // From a `\0` escape (a raw NUL byte is refused before parsing): PostgreSQL's `text` and
            // `jsonb` cannot hold it, so such a value would pass validation and fail at apply.
            Value::Str { text, .. } if text.contains('\0') => {
                self.error(
                    node.mark,
                    Some(field),
                    "contains a NUL character (`\\0`), which PostgreSQL cannot store".to_string(),
                    Some("remove the `\\0` escape from the value".to_string()),
                );
                None
            }
            Value::Str { text, .. } => Some(text.clone()),
            Value::Int { .. } | Value::Float(_) | Value::Bool(_) => {
                self.error(
                    node.mark,
                    Some(field),
                    format!("expected a string, found {}", node.value.in_words()),
                    Some("put the value in quotes to make it a string".to_string()),
                );
                None
            }
            _ => {
                self.expected(node, field, "a string");
                None
            }
        }
    }

    fn text(&mut self, node: &Node, field: &str, max_chars: Option<usize>) -> Option<String> {
        let text = self.string(node, field)?;
        if text.trim().is_empty() {
            self.error(
                node.mark,
                Some(field),
                "must not be empty".to_string(),
                None,
            );
            return None;
        }
        if let Some(max) = max_chars {
            let count = text.chars().count();
            if count > max {
                self.error(
                    node.mark,
                    Some(field),
                    format!("must be at most {max} characters, found {count}"),
                    None,
                );
                return None;
            }
        }
        Some(text)
    }

    fn integer(&mut self, node: &Node, field: &str, (min, max): (u32, u32)) -> Option<u32> {
        let kind = if min == 0 {
            "a non-negative integer"
        } else {
            "a positive integer"
        };
        let value = match &node.value {
            Value::Int { value, .. } => *value,
            Value::Str { text, quoted: true } if yaml_int(text) => {
                self.error(
                    node.mark,
                    Some(field),
                    format!("expected {kind}, found {}", node.value.in_words()),
                    Some("remove the quotes: a quoted value is always a string".to_string()),
                );
                return None;
            }
            Value::Float(text) => {
                let hint = text
                    .strip_suffix(".0")
                    .filter(|whole| yaml_int(whole))
                    .map(|whole| format!("write it without a fraction: `{whole}`"));
                self.error(
                    node.mark,
                    Some(field),
                    format!("expected {kind}, found the float {text}"),
                    hint,
                );
                return None;
            }
            _ => {
                self.expected(node, field, kind);
                return None;
            }
        };
        match value {
            Some(value) if value < 0 && min == 0 => {
                self.error(
                    node.mark,
                    Some(field),
                    format!("expected {kind}, found {value}"),
                    None,
                );
                None
            }
            Some(value) if (i128::from(min)..=i128::from(max)).contains(&value) => {
                u32::try_from(value).ok()
            }
            _ => {
                let found = node.value.in_words();
                self.error(
                    node.mark,
                    Some(field),
                    format!("expected an integer from {min} to {max}, found {found}"),
                    None,
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, field: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(value) => Some(*value),
            Value::Str { quoted, .. } => {
                let hint = if *quoted {
                    "remove the quotes: a quoted value is always a string"
                } else {
                    "YAML 1.2 has only `true` and `false` as booleans (`yes`, `on` are strings)"
                };
                self.error(
                    node.mark,
                    Some(field),
                    format!(
                        "expected `true` or `false`, found {}",
                        node.value.in_words()
                    ),
                    Some(hint.to_string()),
                );
                None
            }
            _ => {
                self.expected(node, field, "`true` or `false`");
                None
            }
        }
    }

    /// Checks `apiVersion` and `kind`, then hands the document to the validator of its kind.
    fn document(&mut self, root: &Node, relative: &Path) -> Option<Document> {
        let Value::Mapping(entries) = &root.value else {
            self.error(
                root.mark,
                None,
                format!(
                    "expected a mapping with `apiVersion` and `kind`, found {}",
                    root.value.in_words()
                ),
                None,
            );
            return None;
        };
        // The first occurrence decides; a duplicate is reported by the fields check.
        let lookup = |name: &str| {
            entries.iter().find_map(|(key, value)| match &key.value {
                Value::Str { text, .. } if text == name => Some(value),
                _ => None,
            })
        };

        match lookup("apiVersion") {
            None => self.error(
                root.mark,
                Some("apiVersion"),
                "missing required field `apiVersion`".to_string(),
                Some(format!("add `apiVersion: {API_VERSION}`")),
            ),
            Some(node) => match &node.value {
                Value::Str { text, .. } if text == API_VERSION => {}
                _ => self.error(
                    node.mark,
                    Some("apiVersion"),
                    format!("expected `{API_VERSION}`, found {}", node.value.in_words()),
                    Some(format!(
                        "this version of tenantctl reads `apiVersion: {API_VERSION}`"
                    )),
                ),
            },
        }

        let kind = match lookup("kind") {
            None => {
                self.error(
                    root.mark,
                    Some("kind"),
                    "missing required field `kind`".to_string(),
                    Some(format!("add `kind:` with one of {}", list(&KINDS))),
                );
                return None;
            }
            Some(node) => match &node.value {
                Value::Str { text, .. } if KINDS.contains(&text.as_str()) => text.as_str(),
                _ => {
                    let suggestion = match &node.value {
                        Value::Str { text, .. } => did_you_mean(text, KINDS.into_iter())
                            .map(|close| format!("did you mean `{close}`? ")),
                        _ => None,
                    }
                    .unwrap_or_default();
                    self.error(
                        node.mark,
                        Some("kind"),
                        format!(
                            "expected one of {}, found {}",
                            list(&KINDS),
                            node.value.in_words()
                        ),
                        Some(format!("{suggestion}kinds are case-sensitive")),
                    );
                    return None;
                }
            },
        };
        let location = self.location(root.mark);
        match kind {
            "Tenant" => self.tenant(root, relative, location).map(Document::Tenant),
            "Plan" => self
                .plan(root, location)
                .map(|plan| Document::Plan { plan, clean: true }),
            _ => self.settings(root, location).map(Document::Settings),
        }
    }

    fn tenant(&mut self, root: &Node, relative: &Path, location: Location) -> Option<RawTenant> {
        let fields = self.fields(root, "", "a `Tenant`", &TENANT_FIELDS)?;
        let stem = relative
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();

        let id = match fields.value("id") {
            None => {
                let hint = validate_tenant_id(&stem).is_ok().then(|| {
                    format!(
                        "add `id: {stem}` (the file is named `{}`)",
                        relative.display()
                    )
                });
                self.missing(&fields, "id", hint);
                None
            }
            Some(node) => self.tenant_id(node, relative, &stem),
        };
        let id_location = fields
            .value("id")
            .map_or_else(|| location.clone(), |node| self.location(node.mark));

        let name = match fields.value("name") {
            None => {
                self.missing(
                    &fields,
                    "name",
                    Some("add `name:` with the display name".to_string()),
                );
                None
            }
            Some(node) => self.text(node, "name", Some(MAX_NAME_CHARS)),
        };

        let state = fields.value("state").and_then(|node| {
            let text = self.string(node, "state")?;
            let found = DesiredStatus::ALL
                .into_iter()
                .find(|state| state.as_str() == text);
            if found.is_none() {
                let names = DesiredStatus::ALL.map(DesiredStatus::as_str);
                let suggestion = did_you_mean(&text, names.into_iter())
                    .map(|close| format!("did you mean `{close}`? "))
                    .unwrap_or_default();
                self.error(
                    node.mark,
                    Some("state"),
                    format!(
                        "expected one of {}, found {}",
                        list(&names),
                        node.value.in_words()
                    ),
                    Some(format!("{suggestion}states are lowercase")),
                );
            }
            found
        });
        // An invalid `state` is already reported; the suspension rules are skipped for it rather
        // than guessing what was meant.
        let state_valid = fields.value("state").is_none() || state.is_some();
        let state = state.unwrap_or(DesiredStatus::Active);

        let plan = match fields.value("plan") {
            None => {
                self.missing(
                    &fields,
                    "plan",
                    Some("add `plan:` with the name of a `Plan` document".to_string()),
                );
                None
            }
            Some(node) => self.text(node, "plan", None),
        };
        let plan_location = fields
            .value("plan")
            .map_or_else(|| location.clone(), |node| self.location(node.mark));

        let config = fields
            .value("config")
            .map(|node| self.config(node))
            .unwrap_or_default();

        let suspension = fields.value("suspension").map(|node| {
            let fields = self.fields(node, "suspension", "`suspension`", &SUSPENSION_FIELDS)?;
            match fields.value("reason") {
                None => {
                    self.missing(
                        &fields,
                        "reason",
                        Some("say why, e.g. `reason: \"invoice overdue\"`".to_string()),
                    );
                    None
                }
                Some(node) => self.text(node, "suspension.reason", Some(MAX_NAME_CHARS)),
            }
        });
        if state_valid {
            match (state, &suspension) {
                (DesiredStatus::Suspended, None) => {
                    let mark = fields.value("state").map_or(fields.mark, |node| node.mark);
                    self.error(
                        mark,
                        Some("state"),
                        "`state: suspended` requires `suspension.reason`".to_string(),
                        Some("add `suspension: { reason: \"...\" }` saying why the tenant is suspended".to_string()),
                    );
                }
                (DesiredStatus::Active | DesiredStatus::Deleted, Some(_)) => {
                    let mark = fields
                        .key("suspension")
                        .map_or(fields.mark, |node| node.mark);
                    self.error(
                        mark,
                        Some("suspension"),
                        format!("`suspension` is only allowed when `state` is `suspended`, not `{state}`"),
                        Some("remove `suspension`, or set `state: suspended`".to_string()),
                    );
                }
                _ => {}
            }
        }
        let suspension_reason = match state {
            DesiredStatus::Suspended => suspension.flatten(),
            _ => None,
        };

        let retention_days = fields
            .value("retention_days")
            .and_then(|node| self.integer(node, "retention_days", RETENTION_DAYS));
        let protected = fields
            .value("protected")
            .and_then(|node| self.boolean(node, "protected"))
            .unwrap_or(false);
        let canary = fields
            .value("canary")
            .and_then(|node| self.boolean(node, "canary"))
            .unwrap_or(false);
        let auth = fields.value("auth").map(|node| self.auth(node));

        Some(RawTenant {
            id,
            id_location,
            name,
            state,
            plan,
            plan_location,
            config,
            suspension_reason,
            retention_days,
            protected,
            canary,
            auth,
            location,
            // Set by the caller, which sees every error of the document.
            clean: true,
        })
    }

    /// Checks the id itself and that the file is named after it.
    fn tenant_id(&mut self, node: &Node, relative: &Path, stem: &str) -> Option<String> {
        let id = self.string(node, "id")?;
        if let Err(message) = validate_tenant_id(&id) {
            self.error(node.mark, Some("id"), message, None);
            return None;
        }
        let extension = relative
            .extension()
            .and_then(|extension| extension.to_str());
        let named_after_id = stem == id && matches!(extension, Some("yaml" | "yml"));
        if !named_after_id {
            let expected = relative.with_file_name(format!("{id}.yaml"));
            self.error(
                node.mark,
                Some("id"),
                format!(
                    "tenant `{id}` must be declared in a file named `{id}.yaml` or `{id}.yml`, not `{}`",
                    relative.display()
                ),
                Some(format!(
                    "rename the file to `{}`, or fix the id if the file name is right",
                    expected.display()
                )),
            );
        }
        Some(id)
    }

    fn plan(&mut self, root: &Node, location: Location) -> Option<PlanSpec> {
        let fields = self.fields(root, "", "a `Plan`", &PLAN_FIELDS)?;
        let name = match fields.value("name") {
            None => {
                self.missing(&fields, "name", Some("add `name:`, e.g. `name: pro`".to_string()));
                None
            }
            Some(node) => self.string(node, "name").and_then(|name| {
                if valid_plan_name(&name) {
                    Some(name)
                } else {
                    self.error(
                        node.mark,
                        Some("name"),
                        format!("invalid plan name `{}`", yaml::shorten(&name)),
                        Some("a plan name is a lowercase letter, then up to 62 lowercase letters, digits, `_` or `-`".to_string()),
                    );
                    None
                }
            }),
        };
        let description = fields
            .value("description")
            .and_then(|node| self.string(node, "description"));
        let config = fields
            .value("config")
            .map(|node| self.config(node))
            .unwrap_or_default();
        let auth = fields.value("auth").map(|node| self.auth(node));
        let Some(name) = name else {
            self.problems.incomplete = true;
            return None;
        };
        Some(PlanSpec {
            name,
            description,
            config,
            auth,
            location,
        })
    }

    fn settings(&mut self, root: &Node, location: Location) -> Option<Settings> {
        let fields = self.fields(root, "", "`Settings`", &SETTINGS_FIELDS)?;
        let retention_days = fields
            .value("retention_days")
            .and_then(|node| self.integer(node, "retention_days", RETENTION_DAYS));
        let canary = fields
            .value("canary")
            .and_then(|node| self.integer(node, "canary", CANARY))
            .map(|count| count as usize);
        let auth = fields
            .value("auth")
            .map(|node| self.auth_settings(node))
            .unwrap_or_default();
        Some(Settings {
            retention_days,
            canary,
            auth,
            location: Some(location),
        })
    }

    /// `auth` of a tenant or a plan.
    fn auth(&mut self, node: &Node) -> PartialAuth {
        let mut auth = PartialAuth::default();
        let Some(fields) = self.fields(node, "auth", "`auth`", &AUTH_FIELDS) else {
            return auth;
        };
        auth.login = fields
            .value("login")
            .and_then(|node| self.boolean(node, "auth.login"));
        auth.connection_limit = fields
            .value("connection_limit")
            .and_then(|node| self.integer(node, "auth.connection_limit", CONNECTION_LIMIT));
        auth.rotate = fields
            .value("rotate")
            .and_then(|node| self.scalar_text(node, "auth.rotate"));
        if let Some(node) = fields.value("api_keys") {
            auth.api_keys = self.api_keys(node);
        }
        auth
    }

    /// `auth.api_keys`: a sequence of `{name, expires}`, names unique.
    fn api_keys(&mut self, node: &Node) -> Option<Vec<ApiKeySpec>> {
        let Value::Sequence(items) = &node.value else {
            self.expected(node, "auth.api_keys", "a sequence of `- name: ...`");
            return None;
        };
        if items.len() > MAX_API_KEYS {
            self.error(
                node.mark,
                Some("auth.api_keys"),
                format!(
                    "at most {MAX_API_KEYS} API keys per tenant, found {}",
                    items.len()
                ),
                None,
            );
            return None;
        }
        let mut keys: Vec<ApiKeySpec> = Vec::new();
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            let path = format!("auth.api_keys[{index}]");
            let Some(fields) = self.fields(item, &path, "an API key", &API_KEY_FIELDS) else {
                continue;
            };
            let name = match fields.value("name") {
                None => {
                    self.missing(&fields, "name", Some("name the key, e.g. `- name: web`".to_string()));
                    None
                }
                Some(node) => self.string(node, &format!("{path}.name")).and_then(|name| {
                    if valid_key_name(&name) {
                        Some((name, node.mark))
                    } else {
                        self.error(
                            node.mark,
                            Some(&format!("{path}.name")),
                            format!("invalid API key name `{}`", yaml::shorten(&name)),
                            Some("a key name is a lowercase letter, then up to 39 lowercase letters, digits, `_` or `-`".to_string()),
                        );
                        None
                    }
                }),
            };
            let expires = fields.value("expires").and_then(|node| {
                let field = format!("{path}.expires");
                let text = self.scalar_text(node, &field)?;
                match chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
                    Ok(date) if text.len() == 10 => Some(date),
                    _ => {
                        self.error(
                            node.mark,
                            Some(&field),
                            format!("expected a date `YYYY-MM-DD`, found {}", node.value.in_words()),
                            Some("e.g. `expires: 2027-06-01`: the key stops working at the start of that day (UTC)".to_string()),
                        );
                        None
                    }
                }
            });
            let Some((name, mark)) = name else {
                continue;
            };
            if let Some(line) = first_line.get(&name) {
                self.error(
                    mark,
                    Some(&format!("{path}.name")),
                    format!("duplicate API key name `{name}`, first declared at line {line}"),
                    Some("each key of a tenant needs its own name".to_string()),
                );
                continue;
            }
            first_line.insert(name.clone(), mark.line);
            keys.push(ApiKeySpec {
                name,
                expires,
                location: self.location(mark),
            });
        }
        Some(keys)
    }

    /// `auth` of the Settings document.
    fn auth_settings(&mut self, node: &Node) -> AuthSettings {
        let mut settings = AuthSettings::default();
        let Some(fields) = self.fields(node, "auth", "`auth` of `Settings`", &AUTH_SETTINGS_FIELDS)
        else {
            return settings;
        };
        if let Some(node) = fields.value("app_role") {
            if let Some(role) = self.string(node, "auth.app_role") {
                if valid_role_name(&role) {
                    settings.app_role = Some(role);
                } else {
                    self.error(
                        node.mark,
                        Some("auth.app_role"),
                        format!("invalid role name `{}`", yaml::shorten(&role)),
                        Some("a role name here is a lowercase letter or `_`, then up to 62 lowercase letters, digits or `_`, and does not start with `pg_`".to_string()),
                    );
                }
            }
        }
        if let Some(node) = fields.value("rotation_grace") {
            if let Some(text) = self.scalar_text(node, "auth.rotation_grace") {
                match humantime::parse_duration(&text) {
                    // humantime refuses a bare number: a unit is always written.
                    Ok(grace) if grace <= MAX_ROTATION_GRACE => settings.rotation_grace = grace,
                    _ => self.error(
                        node.mark,
                        Some("auth.rotation_grace"),
                        format!("expected a duration up to 90 days with its unit, found {}", node.value.in_words()),
                        Some("e.g. `rotation_grace: 24h` or `rotation_grace: 30m`; 0s revokes replaced keys at once".to_string()),
                    ),
                }
            }
        }
        settings
    }

    /// A plain or quoted scalar as text (`2026-12-01` and `"2026-12-01"` alike; a number as
    /// written).
    fn scalar_text(&mut self, node: &Node, field: &str) -> Option<String> {
        let text = match &node.value {
            Value::Str { text, .. } => text.clone(),
            Value::Int { text, .. } | Value::Float(text) => text.clone(),
            _ => {
                self.expected(node, field, "a string");
                return None;
            }
        };
        if text.trim().is_empty() || text.chars().count() > MAX_NAME_CHARS || text.contains('\0') {
            self.error(
                node.mark,
                Some(field),
                format!(
                    "expected 1 to {MAX_NAME_CHARS} characters (no NUL), found {}",
                    node.value.in_words()
                ),
                None,
            );
            return None;
        }
        Some(text)
    }

    /// A `config` mapping, every key optional (plans and tenants share the shape).
    fn config(&mut self, node: &Node) -> PartialConfig {
        let mut config = PartialConfig::default();
        let Some(fields) = self.fields(node, "config", "`config`", &CONFIG_FIELDS) else {
            return config;
        };
        config.model = fields
            .value("model")
            .and_then(|node| self.text(node, "config.model", Some(MAX_NAME_CHARS)));
        config.max_tokens = fields
            .value("max_tokens")
            .and_then(|node| self.integer(node, "config.max_tokens", MAX_TOKENS));
        config.rate_limit_per_minute = fields
            .value("rate_limit_per_minute")
            .and_then(|node| self.integer(node, "config.rate_limit_per_minute", RATE_LIMIT));
        if let Some(features) = fields.value("features") {
            if let Some(entries) = self.entries(features, "config.features") {
                for (name, (key, value)) in entries {
                    let path = format!("config.features.{}", yaml::shorten(name));
                    if !valid_feature_name(name) {
                        self.error(
                            key.mark,
                            Some(&path),
                            format!("invalid feature name `{}`", yaml::shorten(name)),
                            Some("a feature name is a lowercase letter, then lowercase letters, digits or `_`".to_string()),
                        );
                        continue;
                    }
                    if let Some(enabled) = self.boolean(value, &path) {
                        config.features.insert(name.to_string(), enabled);
                    }
                }
            }
        }
        config
    }
}

/// Whether a text would be an integer written without quotes.
fn yaml_int(text: &str) -> bool {
    yaml::is_core_int(text)
}

/// `[a-z][a-z0-9_-]{0,62}`.
/// Longest rotation grace: keys a rotation replaced stop working within this.
const MAX_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// `[a-z][a-z0-9_-]{0,39}`.
fn valid_key_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A role name tenantctl can quote safely and that is no reserved name: `[a-z_][a-z0-9_]{0,62}`,
/// not `pg_...`.
fn valid_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && !name.starts_with("pg_")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_plan_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `[a-z][a-z0-9_]*`.
fn valid_feature_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The candidate closest to `word` within an edit distance of 2 (ignoring case), if any.
pub(super) fn did_you_mean<'c>(
    word: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    let word = word.to_lowercase();
    let length = word.chars().count();
    candidates
        // The distance is at least the difference in length: skipping those keeps a very long
        // word (a hostile key) from costing its length times every candidate's.
        .filter(|candidate| candidate.chars().count().abs_diff(length) <= 2)
        .map(|candidate| (edit_distance(&word, &candidate.to_lowercase()), candidate))
        // A distance as long as the word itself would suggest anything for a short word.
        .filter(|(distance, _)| *distance <= 2 && *distance < word.chars().count())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, in characters (strsim's, the one clap uses for its own suggestions).
fn edit_distance(left: &str, right: &str) -> usize {
    strsim::levenshtein(left, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("max_token", "max_tokens"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            did_you_mean("max_token", CONFIG_FIELDS.into_iter()),
            Some("max_tokens")
        );
        assert_eq!(did_you_mean("tenant", KINDS.into_iter()), Some("Tenant"));
        assert_eq!(did_you_mean("colour", CONFIG_FIELDS.into_iter()), None);
        assert_eq!(did_you_mean("x", ["id"].into_iter()), None);
    }

    #[test]
    fn name_rules() {
        assert!(valid_plan_name("pro"));
        assert!(valid_plan_name("team-2024_v2"));
        assert!(valid_plan_name(&format!("a{}", "b".repeat(62))));
        assert!(!valid_plan_name(&format!("a{}", "b".repeat(63))));
        assert!(!valid_plan_name("Pro"));
        assert!(!valid_plan_name("1pro"));
        assert!(!valid_plan_name(""));
        assert!(valid_feature_name("rag"));
        assert!(valid_feature_name("web_search2"));
        assert!(!valid_feature_name("web-search"));
        assert!(!valid_feature_name("RAG"));
    }
}
