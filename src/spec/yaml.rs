//! A YAML tree that remembers where every node came from.
//!
//! `yaml-rust2`'s own `Yaml` type drops positions, and serde-based loaders stop at the first
//! error. We build our own small tree from the parser's event stream so that validation can
//! report every problem of a document with its line and column.
//!
//! Scalars are resolved with the YAML 1.2 core schema (not YAML 1.1): only `true`/`false` are
//! booleans (`yes`, `on` stay strings), and a quoted scalar is always a string.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nesting deeper than this is refused: the tree is walked recursively (validation, drop), and
/// no tenant file needs more than a handful of levels.
const MAX_DEPTH: usize = 64;

/// Upper bound on nodes per document once aliases are expanded, so that a "billion laughs"
/// document cannot exhaust memory.
const MAX_NODES: usize = 100_000;

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
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(value) => format!("the boolean {value}"),
            Value::Int {
                value: Some(value), ..
            } => value.to_string(),
            Value::Int { value: None, text } => text.clone(),
            Value::Float(text) => format!("the float {text}"),
            Value::Str { text, .. } => format!("the string {text:?}"),
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

/// A syntax error: parsing of the rest of the file stops here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the scanner or parser gave up.
    pub mark: Mark,
    /// What it said, lowercase.
    pub message: String,
}

/// Parses every document of `text`.
///
/// Documents completed before a syntax error are returned too, so that their own problems are
/// still reported. Empty documents (nothing, only comments, or `null`) are dropped.
pub fn parse(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    // The scanner keeps a byte-order mark as part of the first key; drop it (columns of the first
    // line then count visible characters, which is what an editor shows).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder::default();
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
                let message = error.info().to_string();
                return (
                    builder.documents,
                    Some(SyntaxError {
                        mark: Mark::from_marker(error.marker()),
                        message,
                    }),
                );
            }
        }
    }
}

/// A collection being built.
enum Frame {
    Sequence {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    stack: Vec<Frame>,
    /// Anchored nodes of the current document, with their node counts.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes in the current document, aliases counted at their expanded size.
    nodes: usize,
}

impl Builder {
    fn on_event(&mut self, event: Event, marker: &Marker) -> Result<(), SyntaxError> {
        let mark = Mark::from_marker(marker);
        let is_mapping = matches!(event, Event::MappingStart(..));
        match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd | Event::StreamEnd => {}
            Event::DocumentStart => {
                self.anchors.clear();
                self.nodes = 0;
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(SyntaxError {
                        mark,
                        message: format!(
                            "tags such as `{}{}` are not supported; quote a value to make it a string",
                            short_tag_handle(&tag.handle),
                            tag.suffix
                        ),
                    });
                }
                let node = Node {
                    value: resolve_scalar(text, style),
                    mark,
                };
                self.complete(node, anchor)?;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(SyntaxError {
                        mark,
                        message: format!(
                            "tags such as `{}{}` are not supported",
                            short_tag_handle(&tag.handle),
                            tag.suffix
                        ),
                    });
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        mark,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                self.stack.push(if is_mapping {
                    Frame::Mapping {
                        mark,
                        anchor,
                        entries: Vec::new(),
                        pending_key: None,
                    }
                } else {
                    Frame::Sequence {
                        mark,
                        anchor,
                        items: Vec::new(),
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Sequence {
                        mark,
                        anchor,
                        items,
                    }) => (
                        Node {
                            // A block sequence's start event points at its first `-`, but be safe
                            // and take whichever comes first.
                            mark: items.first().map_or(mark, |first| first.mark.min(mark)),
                            value: Value::Sequence(items),
                        },
                        anchor,
                    ),
                    Some(Frame::Mapping {
                        mark,
                        anchor,
                        entries,
                        ..
                    }) => (
                        Node {
                            // The parser marks a block mapping one character into its first key;
                            // the first key's own mark is where the mapping really starts.
                            mark: entries.first().map_or(mark, |(key, _)| key.mark.min(mark)),
                            value: Value::Mapping(entries),
                        },
                        anchor,
                    ),
                    None => return Ok(()),
                };
                self.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        mark,
                        message: "alias refers to an unknown anchor".to_string(),
                    });
                };
                let size = *size;
                let mut node = node.clone();
                // Errors about the value as a whole point at the alias; errors inside it point at
                // the anchored text, which is where a fix has to be made.
                node.mark = mark;
                self.count(size, mark)?;
                self.attach(node);
            }
        }
        Ok(())
    }

    fn count(&mut self, size: usize, mark: Mark) -> Result<(), SyntaxError> {
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                mark,
                message: format!(
                    "document has more than {MAX_NODES} nodes once aliases are expanded"
                ),
            });
        }
        Ok(())
    }

    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if !matches!(node.value, Value::Mapping(_) | Value::Sequence(_)) {
            self.count(1, node.mark)?;
        }
        if anchor != 0 {
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.attach(node);
        Ok(())
    }

    fn attach(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if node.value != Value::Null {
                    self.documents.push(Document { root: node });
                }
            }
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|(key, value)| node_count(key) + node_count(value))
                .sum::<usize>()
        }
        Value::Sequence(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        _ => 1,
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
    fn tags_are_refused() {
        let (_, error) = parse("a: !!str 5\n");
        assert!(error.unwrap().message.contains("`!!str`"));
    }
}
