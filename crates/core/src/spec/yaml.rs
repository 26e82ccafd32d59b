//! A YAML tree that remembers where every node came from.
//!
//! `yaml-rust2`'s own `Yaml` type drops positions, and serde-based loaders stop at the first
//! error. We build our own small tree from the parser's event stream so that validation can
//! report every problem of a document with its line and column.
//!
//! Scalars are resolved with the YAML 1.2 core schema (not YAML 1.1): only `true`/`false` are
//! booleans (`yes`, `on` stay strings), and a quoted scalar is always a string.
//!
//! The tree is built under the limits of `spec::limits`, counted event by event: an alias is
//! charged its expanded size before it is copied, so a file over a limit stops being read at the
//! point where it crosses it instead of after it has filled memory.

use std::borrow::Cow;
use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::limits::{self, mebibytes, thousands};

/// Nesting deeper than this is refused, aliases expanded included: the tree is walked
/// recursively (validation, drop), and no tenant file needs more than a handful of levels.
const MAX_DEPTH: usize = 64;

/// Characters of a value or key quoted in an error message; a longer one is cut, so that a
/// message fits on a screen and an error does not copy a whole file.
const QUOTED_CHARS: usize = 80;

/// `text` as error messages show it: cut to its first 80 characters and `…`.
pub fn shorten(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(QUOTED_CHARS) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

const ALIAS_HINT: &str = "tenant and plan files hold a few dozen values; look for an anchor \
                          (`&name`) repeated many times through aliases (`*name`)";

/// A 1-based position in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Mark {
    fn from_marker(marker: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Mark {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }

    /// The position right after `prefix`, the start of a file: where an editor puts the cursor
    /// after it. A leading byte-order mark is not counted, as in the parser's marks.
    pub fn after(prefix: &str) -> Self {
        let prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
        let last_line = prefix.rsplit('\n').next().unwrap_or_default();
        Mark {
            line: prefix.matches('\n').count() + 1,
            column: last_line.chars().count() + 1,
        }
    }
}

/// A node of the tree and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The resolved value.
    pub value: Value,
    /// Where the node starts (for a block mapping: its first key).
    pub mark: Mark,
}

/// A resolved YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing at all.
    Null,
    /// Plain `true` or `false` (any case the core schema allows).
    Bool(bool),
    /// A plain integer; `value` is `None` when it does not fit in an `i128`.
    Int { value: Option<i128>, text: String },
    /// A plain floating-point number, kept as written.
    Float(String),
    /// A string; `quoted` tells whether it was written in quotes or as a block scalar, which
    /// lets error hints say "remove the quotes" when the text would have been a number.
    Str { text: String, quoted: bool },
    /// A mapping, in source order, duplicates kept (validation reports them).
    Mapping(Vec<(Node, Node)>),
    /// A sequence.
    Sequence(Vec<Node>),
}

impl Value {
    /// Describes the value for "expected X, found Y" messages.
    pub fn in_words(&self) -> String {
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(value) => format!("the boolean {value}"),
            Value::Int {
                value: Some(value), ..
            } => value.to_string(),
            Value::Int { value: None, text } => text.clone(),
            Value::Float(text) => format!("the float {text}"),
            Value::Str { text, .. } => match shorten(text) {
                Cow::Borrowed(text) => format!("the string {text:?}"),
                Cow::Owned(start) => format!(
                    "the string {start:?} ({} characters)",
                    thousands(text.chars().count())
                ),
            },
            Value::Mapping(_) => "a mapping".to_string(),
            Value::Sequence(_) => "a sequence".to_string(),
        }
    }
}

/// One document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The root node; its mark is where the document's content starts.
    pub root: Node,
}

/// Why the rest of a file was not read: a syntax error, something tenantctl does not read, or a
/// limit crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where reading stopped.
    pub mark: Mark,
    /// What is wrong, lowercase; a syntax error says `invalid YAML: ` and what the parser said.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
}

impl ParseError {
    fn invalid(mark: Mark, message: impl Into<String>) -> Self {
        ParseError {
            mark,
            message: format!("invalid YAML: {}", message.into()),
            hint: None,
        }
    }

    fn refused(mark: Mark, message: String, hint: &str) -> Self {
        ParseError {
            mark,
            message,
            hint: Some(hint.to_string()),
        }
    }
}

/// What the files parsed so far have used of a directory's limits.
///
/// The same budget is passed to [`parse`] for every file of a directory, so that many files,
/// each under the limits of one file, cannot add up to an unbounded amount of work.
#[derive(Debug, Default)]
pub struct Budget {
    /// Nodes built, aliases counted at their expanded size.
    nodes: usize,
    /// Bytes of scalar text built, likewise.
    text: usize,
    /// A limit was crossed.
    spent: bool,
}

impl Budget {
    /// A directory limit was crossed: the files after the one that crossed it must not be read.
    pub fn is_spent(&self) -> bool {
        self.spent
    }
}

/// Parses every document of `text`, drawing on `budget`, the directory's limits.
///
/// Documents completed before an error are returned too, so that their own problems are still
/// reported. Empty documents (nothing, only comments, or `null`) are dropped.
pub fn parse(text: &str, budget: &mut Budget) -> (Vec<Document>, Option<ParseError>) {
    // The scanner keeps a byte-order mark as part of the first key; drop it (columns of the first
    // line then count visible characters, which is what an editor shows).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // The scanner takes a NUL for the end of the input and silently ignores the rest of the
    // file, so a `protected: true` after one would be lost. YAML does not allow NUL anyway:
    // nothing of such a file is read.
    if let Some(offset) = text.find('\0') {
        let error = ParseError::refused(
            Mark::after(&text[..offset]),
            "file contains a NUL byte".to_string(),
            "remove it; a file saved as UTF-16 has one after every ASCII character: save it as UTF-8",
        );
        return (Vec::new(), Some(error));
    }
    let mut builder = Builder {
        documents: Vec::new(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        document_count: 0,
        used: Size::default(),
        directory: budget,
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return (builder.documents, None),
            Ok((event, marker)) => {
                if let Err(error) = builder.on_event(event, &marker) {
                    return (builder.documents, Some(error));
                }
            }
            Err(error) => {
                let error = ParseError::invalid(Mark::from_marker(error.marker()), error.info());
                return (builder.documents, Some(error));
            }
        }
    }
}

/// What a node costs once aliases are expanded.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    /// Scalars, sequences and mappings.
    nodes: usize,
    /// Bytes of scalar text.
    text: usize,
    /// Levels of collections: 0 for a scalar, 1 for `[a]`, 2 for `[[a]]`.
    height: usize,
}

/// A collection being built.
struct Frame {
    mark: Mark,
    anchor: usize,
    /// The collection and what is in it so far.
    size: Size,
    items: Items,
}

enum Items {
    Sequence(Vec<Node>),
    Mapping {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

struct Builder<'b> {
    documents: Vec<Document>,
    stack: Vec<Frame>,
    /// Anchored nodes of the current document, with their sizes.
    anchors: HashMap<usize, (Node, Size)>,
    /// Documents started in this file, empty ones included.
    document_count: usize,
    /// What this file has built so far (`height` unused).
    used: Size,
    /// What the directory has built so far.
    directory: &'b mut Budget,
}

impl Builder<'_> {
    fn on_event(&mut self, event: Event, marker: &Marker) -> Result<(), ParseError> {
        let mark = Mark::from_marker(marker);
        let is_mapping = matches!(event, Event::MappingStart(..));
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd | Event::StreamEnd => {}
            Event::DocumentStart => {
                // Empty documents cost the parser work too, and each `---` is only four bytes.
                self.document_count += 1;
                if self.document_count > limits::FILE_DOCUMENTS {
                    return Err(ParseError::refused(
                        mark,
                        format!(
                            "file has more than {} documents",
                            thousands(limits::FILE_DOCUMENTS)
                        ),
                        "a plans file holds one document per plan; split it into several files",
                    ));
                }
                self.anchors.clear();
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(ParseError::invalid(
                        mark,
                        format!(
                            "tags such as `{}{}` are not supported; quote a value to make it a string",
                            short_tag_handle(&tag.handle),
                            tag.suffix
                        ),
                    ));
                }
                let size = Size {
                    nodes: 1,
                    text: text.len(),
                    height: 0,
                };
                self.charge(size, mark)?;
                let node = Node {
                    value: resolve_scalar(text, style),
                    mark,
                };
                self.complete(node, size, anchor)?;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(ParseError::invalid(
                        mark,
                        format!(
                            "tags such as `{}{}` are not supported",
                            short_tag_handle(&tag.handle),
                            tag.suffix
                        ),
                    ));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(ParseError::invalid(
                        mark,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                // Charged when it starts: a file of empty `[]` is as many nodes as `[x]`.
                let size = Size {
                    nodes: 1,
                    text: 0,
                    height: 1,
                };
                self.charge(size, mark)?;
                self.stack.push(Frame {
                    mark,
                    anchor,
                    size,
                    items: if is_mapping {
                        Items::Mapping {
                            entries: Vec::new(),
                            pending_key: None,
                        }
                    } else {
                        Items::Sequence(Vec::new())
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(Frame {
                    mark,
                    anchor,
                    size,
                    items,
                }) = self.stack.pop()
                else {
                    return Ok(());
                };
                let node = match items {
                    Items::Sequence(items) => Node {
                        // A block sequence's start event points at its first `-`, but be safe and
                        // take whichever comes first.
                        mark: items.first().map_or(mark, |first| first.mark.min(mark)),
                        value: Value::Sequence(items),
                    },
                    Items::Mapping { entries, .. } => Node {
                        // The parser marks a block mapping one character into its first key; the
                        // first key's own mark is where the mapping really starts.
                        mark: entries.first().map_or(mark, |(key, _)| key.mark.min(mark)),
                        value: Value::Mapping(entries),
                    },
                };
                // Its nodes were charged as they came.
                self.complete(node, size, anchor)?;
            }
            Event::Alias(id) => {
                let Some(&(_, size)) = self.anchors.get(&id) else {
                    return Err(ParseError::invalid(
                        mark,
                        "alias refers to an unknown anchor",
                    ));
                };
                if self.stack.len() + size.height > MAX_DEPTH {
                    return Err(ParseError::invalid(
                        mark,
                        format!("nesting deeper than {MAX_DEPTH} levels once aliases are expanded"),
                    ));
                }
                // Charged before the copy is made: this is where a "billion laughs" is stopped.
                self.charge(size, mark)?;
                let mut node = self.anchors[&id].0.clone();
                // Errors about the value as a whole point at the alias; errors inside it point at
                // the anchored text, which is where a fix has to be made.
                node.mark = mark;
                self.attach(node, size);
            }
        }
        Ok(())
    }

    /// Counts `size` against the limits of the file, then of the directory.
    fn charge(&mut self, size: Size, mark: Mark) -> Result<(), ParseError> {
        self.used.nodes += size.nodes;
        self.used.text += size.text;
        if self.used.nodes > limits::FILE_NODES {
            return Err(ParseError::refused(
                mark,
                format!(
                    "file has more than {} nodes once aliases are expanded",
                    thousands(limits::FILE_NODES)
                ),
                ALIAS_HINT,
            ));
        }
        if self.used.text > limits::FILE_TEXT {
            return Err(ParseError::refused(
                mark,
                format!(
                    "file has more than {} of text once aliases are expanded",
                    mebibytes(limits::FILE_TEXT)
                ),
                ALIAS_HINT,
            ));
        }
        let directory = &mut *self.directory;
        directory.nodes += size.nodes;
        directory.text += size.text;
        let crossed = if directory.nodes > limits::DIRECTORY_NODES {
            format!("{} nodes", thousands(limits::DIRECTORY_NODES))
        } else if directory.text > limits::DIRECTORY_TEXT {
            format!("{} of text", mebibytes(limits::DIRECTORY_TEXT))
        } else {
            return Ok(());
        };
        directory.spent = true;
        Err(ParseError::refused(
            mark,
            format!(
                "the files of the directory have more than {crossed} once aliases are expanded; this file crosses the limit and the files after it were not checked"
            ),
            "a directory of 10,000 tenants is far below it; look for files that repeat anchors many times through aliases, or that do not belong to the desired state",
        ))
    }

    fn complete(&mut self, node: Node, size: Size, anchor: usize) -> Result<(), ParseError> {
        if anchor != 0 {
            // The anchor keeps a copy of the node until the document ends; anchors nested around
            // a large node would otherwise multiply it without being counted.
            self.charge(size, node.mark)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.attach(node, size);
        Ok(())
    }

    fn attach(&mut self, node: Node, size: Size) {
        let Some(frame) = self.stack.last_mut() else {
            if node.value != Value::Null {
                self.documents.push(Document { root: node });
            }
            return;
        };
        frame.size.nodes += size.nodes;
        frame.size.text += size.text;
        frame.size.height = frame.size.height.max(size.height + 1);
        match &mut frame.items {
            Items::Sequence(items) => items.push(node),
            Items::Mapping {
                entries,
                pending_key,
            } => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

fn short_tag_handle(handle: &str) -> &str {
    if handle == "tag:yaml.org,2002:" {
        "!!"
    } else {
        handle
    }
}

/// Resolves a scalar with the YAML 1.2 core schema.
fn resolve_scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str { text, quoted: true };
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(value) = parse_core_int(&text) {
        return Value::Int { value, text };
    }
    if is_core_float(&text) {
        return Value::Float(text);
    }
    Value::Str {
        text,
        quoted: false,
    }
}

/// Whether `text`, written as a plain scalar, would be a core-schema integer.
pub fn is_core_int(text: &str) -> bool {
    parse_core_int(text).is_some()
}

/// `Some(value)` when `text` is a core-schema integer (`Some(None)` when it overflows `i128`).
fn parse_core_int(text: &str) -> Option<Option<i128>> {
    let radix_digits = |digits: &str, radix: u32| {
        (!digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)))
            .then(|| i128::from_str_radix(digits, radix).ok())
    };
    if let Some(digits) = text.strip_prefix("0o") {
        return radix_digits(digits, 8);
    }
    if let Some(digits) = text.strip_prefix("0x") {
        return radix_digits(digits, 16);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<i128>().ok())
}

/// Whether `text` is a core-schema float (`1.5`, `-.5`, `1e3`, `.inf`, `.nan`).
fn is_core_float(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(index) => (&unsigned[..index], Some(&unsigned[index + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            whole.chars().all(|c| c.is_ascii_digit())
                && fraction.chars().all(|c| c.is_ascii_digit())
                // `.5` and `1.` are both floats in the core schema, a lone `.` is not
                && !(whole.is_empty() && fraction.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['-', '+']).unwrap_or(exponent);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Document>, Option<ParseError>) {
        super::parse(text, &mut Budget::default())
    }

    fn root(text: &str) -> Node {
        let (mut documents, error) = parse(text);
        assert_eq!(error, None);
        assert_eq!(documents.len(), 1);
        documents.remove(0).root
    }

    fn scalar(text: &str) -> Value {
        let Value::Mapping(mut entries) = root(&format!("k: {text}\n")).value else {
            panic!("not a mapping");
        };
        entries.remove(0).1.value
    }

    #[test]
    fn core_schema_resolution() {
        assert_eq!(scalar("true"), Value::Bool(true));
        assert_eq!(scalar("FALSE"), Value::Bool(false));
        assert!(matches!(scalar("yes"), Value::Str { quoted: false, .. }));
        assert!(matches!(scalar("on"), Value::Str { quoted: false, .. }));
        assert_eq!(scalar("~"), Value::Null);
        assert_eq!(scalar("null"), Value::Null);
        assert_eq!(scalar(""), Value::Null);
        assert!(matches!(
            scalar("4000"),
            Value::Int {
                value: Some(4000),
                ..
            }
        ));
        assert!(matches!(
            scalar("-5"),
            Value::Int {
                value: Some(-5),
                ..
            }
        ));
        assert!(matches!(
            scalar("0x10"),
            Value::Int {
                value: Some(16),
                ..
            }
        ));
        assert!(matches!(
            scalar("0o17"),
            Value::Int {
                value: Some(15),
                ..
            }
        ));
        assert!(matches!(
            scalar("999999999999999999999999999999999999999999"),
            Value::Int { value: None, .. }
        ));
        assert_eq!(scalar("4000.0"), Value::Float("4000.0".into()));
        assert_eq!(scalar("1e3"), Value::Float("1e3".into()));
        assert_eq!(scalar(".inf"), Value::Float(".inf".into()));
        assert!(matches!(
            scalar("\"4000\""),
            Value::Str { quoted: true, .. }
        ));
        assert!(matches!(scalar("'true'"), Value::Str { quoted: true, .. }));
        assert!(matches!(scalar("1.2.3"), Value::Str { quoted: false, .. }));
        assert!(matches!(scalar("gpt-4o"), Value::Str { quoted: false, .. }));
    }

    #[test]
    fn marks_are_one_based_and_block_mappings_start_at_their_first_key() {
        let node = root("# comment\nouter:\n  inner: 5\n");
        assert_eq!(node.mark, Mark { line: 2, column: 1 });
        let Value::Mapping(entries) = node.value else {
            panic!()
        };
        assert_eq!(entries[0].1.mark, Mark { line: 3, column: 3 });
        let Value::Mapping(inner) = &entries[0].1.value else {
            panic!()
        };
        assert_eq!(
            inner[0].1.mark,
            Mark {
                line: 3,
                column: 10
            }
        );
    }

    #[test]
    fn empty_documents_are_dropped_and_syntax_errors_keep_earlier_documents() {
        let (documents, error) = parse("---\n# nothing\n---\na: 1\n---\nb: [\n");
        assert_eq!(documents.len(), 1);
        let error = error.expect("syntax error");
        assert_eq!(error.mark.line, 7);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let node = root("\u{feff}a: b\n");
        let Value::Mapping(entries) = node.value else {
            panic!()
        };
        assert_eq!(
            entries[0].0.value,
            Value::Str {
                text: "a".into(),
                quoted: false
            }
        );
    }

    #[test]
    fn aliases_resolve_to_the_anchored_node() {
        let node = root("a: &x {k: 1}\nb: *x\n");
        let Value::Mapping(entries) = node.value else {
            panic!()
        };
        assert_eq!(entries[0].1.value, entries[1].1.value);
        assert_eq!(entries[1].1.mark, Mark { line: 2, column: 4 });
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let (_, error) = parse(&bomb);
        assert!(error.unwrap().message.contains("aliases are expanded"));

        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let (_, error) = parse(&deep);
        assert!(error.unwrap().message.contains("nesting deeper"));
    }

    #[test]
    fn aliases_cannot_nest_deeper_than_the_limit() {
        let deep = format!("{}x{}", "[".repeat(60), "]".repeat(60));
        // The document's mapping, three sequences and the 60 of the alias: 64 levels.
        assert_eq!(parse(&format!("a: &a {deep}\nb: [[[*a]]]\n")).1, None);
        let (_, error) = parse(&format!("a: &a {deep}\nb: [[[[*a]]]]\n"));
        assert_eq!(
            error,
            Some(ParseError {
                mark: Mark { line: 2, column: 8 },
                message: "invalid YAML: nesting deeper than 64 levels once aliases are expanded"
                    .to_string(),
                hint: None,
            })
        );
    }

    #[test]
    fn the_copies_kept_by_nested_anchors_are_counted() {
        // Each of the 60 anchors keeps its own copy of the 2,000 scalars inside it: 120,000
        // nodes in all, from 2,060 written ones.
        let nested = |scalars: usize| {
            format!(
                "{}[{}]{}\n",
                "&a [".repeat(59),
                vec!["x"; scalars].join(", "),
                "]".repeat(59)
            )
        };
        assert_eq!(parse(&nested(1_000)).1, None);
        let (_, error) = parse(&nested(2_000));
        assert!(error
            .unwrap()
            .message
            .starts_with("file has more than 100,000 nodes"));
    }

    #[test]
    fn a_nul_byte_stops_nothing_silently() {
        let (documents, error) = parse("a: 1\nb: x\0y\nc: 3\n");
        assert!(documents.is_empty());
        assert_eq!(error.unwrap().mark, Mark { line: 2, column: 5 });
        // The position of a NUL after a byte-order mark counts what an editor shows.
        let (_, error) = parse("\u{feff}ab\0");
        assert_eq!(error.unwrap().mark, Mark { line: 1, column: 3 });
    }

    #[test]
    fn long_strings_are_cut_when_described() {
        let long = Value::Str {
            text: "é".repeat(1_000),
            quoted: true,
        };
        assert_eq!(
            long.in_words(),
            format!("the string \"{}…\" (1,000 characters)", "é".repeat(80))
        );
        let short = Value::Str {
            text: "é".repeat(80),
            quoted: true,
        };
        assert_eq!(
            short.in_words(),
            format!("the string \"{}\"", "é".repeat(80))
        );
    }

    #[test]
    fn tags_are_refused() {
        let (_, error) = parse("a: !!str 5\n");
        assert!(error.unwrap().message.contains("`!!str`"));
    }
}
