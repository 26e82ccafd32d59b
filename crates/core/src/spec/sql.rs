//! Just enough of PostgreSQL's lexical rules to split a migration into statements and read
//! their first words: comments (`--`, nested `/* */`), string constants (`'...'`, `E'...'`,
//! dollar-quoted `$tag$...$tag$`) and quoted identifiers are skipped, `;` ends a statement.
//!
//! With it, a migration is checked before any tenant is touched: nothing that would end or
//! escape the tenant's transaction (`COMMIT`, `CREATE INDEX CONCURRENTLY`, `VACUUM`, `SET ROLE`,
//! a session-level `SET`) and nothing that would reach beyond the tenant's schema by design
//! (`CREATE SCHEMA`, `SECURITY DEFINER`, `COPY ... PROGRAM`).

/// One statement of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Byte offset of its first character (after leading blanks and comments).
    pub start: usize,
    /// Byte offset of its `;`, or the end of the text: `start..end` is the statement, trailing
    /// comments included, as it can be sent to the server on its own.
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based column of `start`, in characters.
    pub column: usize,
    /// Its words outside comments, strings and quoted identifiers, uppercased, in order.
    pub words: Vec<String>,
    /// Where each word of `words` is in the text: byte offsets `start..end`.
    pub spans: Vec<std::ops::Range<usize>>,
}

/// Why the text cannot be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Splits `sql` into statements (empty ones dropped).
///
/// # Errors
/// An unterminated comment, string, dollar quote or quoted identifier, or a psql
/// meta-command (a line starting with `\`), which is no SQL.
pub fn statements(sql: &str) -> Result<Vec<Statement>, LexError> {
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let mut position = Position::default();
    let mut statements = Vec::new();
    let mut current: Option<Statement> = None;
    let mut word = String::new();
    // Byte offset of the first character of `word`.
    let mut word_start = 0usize;
    let mut index = 0;
    let mut line_start = true;
    // A SQL-standard function body (`CREATE FUNCTION ... BEGIN ATOMIC ...; ...; END`) holds
    // semicolons that do not end the statement. The same heuristic as psql's: in a statement
    // that starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, outside parentheses, `BEGIN` opens a
    // block, `CASE` inside one opens another, `END` closes one.
    let mut blocks = 0usize;
    let mut parentheses = 0usize;

    let flush_word = |word: &mut String,
                      span: std::ops::Range<usize>,
                      current: &mut Option<Statement>,
                      blocks: &mut usize,
                      parentheses: usize| {
        if !word.is_empty() {
            if let Some(statement) = current.as_mut() {
                let upper = word.to_uppercase();
                if parentheses == 0 && defines_routine(&statement.words) {
                    match upper.as_str() {
                        "BEGIN" => *blocks += 1,
                        "CASE" if *blocks > 0 => *blocks += 1,
                        "END" => *blocks = blocks.saturating_sub(1),
                        _ => {}
                    }
                }
                statement.words.push(upper);
                statement.spans.push(span);
            }
            word.clear();
        }
    };

    while index < chars.len() {
        let (offset, character) = chars[index];
        let next = chars.get(index + 1).map(|(_, c)| *c);
        let here = position;

        if line_start && character == '\\' {
            return Err(LexError {
                line: here.line,
                column: here.column,
                message: "psql meta-commands (`\\...`) are not SQL; a migration is sent to the server as it is".to_string(),
            });
        }
        if !character.is_whitespace() {
            line_start = false;
        }

        // Comments: skipped, and they end a word.
        if character == '-' && next == Some('-') {
            flush_word(
                &mut word,
                word_start..offset,
                &mut current,
                &mut blocks,
                parentheses,
            );
            while index < chars.len() && chars[index].1 != '\n' {
                position.advance(chars[index].1);
                index += 1;
            }
            continue;
        }
        if character == '/' && next == Some('*') {
            flush_word(
                &mut word,
                word_start..offset,
                &mut current,
                &mut blocks,
                parentheses,
            );
            let mut depth = 0usize;
            loop {
                let Some(&(_, c)) = chars.get(index) else {
                    return Err(LexError {
                        line: here.line,
                        column: here.column,
                        message: "unterminated `/*` comment".to_string(),
                    });
                };
                let n = chars.get(index + 1).map(|(_, c)| *c);
                if c == '/' && n == Some('*') {
                    depth += 1;
                    position.advance(c);
                    position.advance('*');
                    index += 2;
                } else if c == '*' && n == Some('/') {
                    depth -= 1;
                    position.advance(c);
                    position.advance('/');
                    index += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    position.advance(c);
                    index += 1;
                }
            }
            continue;
        }

        if character == ';' {
            // The word before it may be the `END` that closes a block.
            flush_word(
                &mut word,
                word_start..offset,
                &mut current,
                &mut blocks,
                parentheses,
            );
        }
        if character == ';' && blocks == 0 {
            if let Some(mut statement) = current.take() {
                statement.end = offset;
                statements.push(statement);
            }
            parentheses = 0;
            position.advance(character);
            index += 1;
            continue;
        }
        if character.is_whitespace() {
            flush_word(
                &mut word,
                word_start..offset,
                &mut current,
                &mut blocks,
                parentheses,
            );
            position.advance(character);
            if character == '\n' {
                line_start = true;
            }
            index += 1;
            continue;
        }

        // Something that belongs to a statement starts one.
        if current.is_none() {
            current = Some(Statement {
                start: offset,
                end: offset,
                line: here.line,
                column: here.column,
                words: Vec::new(),
                spans: Vec::new(),
            });
        }

        // String constants and quoted identifiers: skipped whole.
        let escape_string =
            (character == 'E' || character == 'e') && next == Some('\'') && word.is_empty();
        if character == '\'' || escape_string || character == '"' {
            flush_word(
                &mut word,
                word_start..offset,
                &mut current,
                &mut blocks,
                parentheses,
            );
            let quote = if escape_string { '\'' } else { character };
            if escape_string {
                position.advance(character);
                index += 1;
            }
            position.advance(quote);
            index += 1;
            loop {
                let Some(&(_, c)) = chars.get(index) else {
                    return Err(LexError {
                        line: here.line,
                        column: here.column,
                        message: if quote == '"' {
                            "unterminated quoted identifier".to_string()
                        } else {
                            "unterminated string constant".to_string()
                        },
                    });
                };
                position.advance(c);
                index += 1;
                if escape_string && c == '\\' {
                    if let Some(&(_, escaped)) = chars.get(index) {
                        position.advance(escaped);
                        index += 1;
                    }
                    continue;
                }
                if c == quote {
                    // A doubled quote is the quote itself.
                    if chars.get(index).map(|(_, c)| *c) == Some(quote) {
                        position.advance(quote);
                        index += 1;
                        continue;
                    }
                    break;
                }
            }
            continue;
        }
        if character == '$' && word.is_empty() {
            // `$tag$` or `$$` opens a dollar quote; `$1` is a parameter.
            let mut end = index + 1;
            while end < chars.len()
                && (chars[end].1.is_ascii_alphanumeric() || chars[end].1 == '_')
                && !(end == index + 1 && chars[end].1.is_ascii_digit())
            {
                end += 1;
            }
            if end < chars.len() && chars[end].1 == '$' {
                let tag: String = chars[index..=end].iter().map(|(_, c)| *c).collect();
                for &(_, c) in &chars[index..=end] {
                    position.advance(c);
                }
                index = end + 1;
                let body_start = index;
                let tag_chars: Vec<char> = tag.chars().collect();
                let mut closed = false;
                while index < chars.len() {
                    if chars[index].1 == '$'
                        && chars.len() - index >= tag_chars.len()
                        && chars[index..index + tag_chars.len()]
                            .iter()
                            .map(|(_, c)| *c)
                            .eq(tag_chars.iter().copied())
                    {
                        for &(_, c) in &chars[index..index + tag_chars.len()] {
                            position.advance(c);
                        }
                        index += tag_chars.len();
                        closed = true;
                        break;
                    }
                    position.advance(chars[index].1);
                    index += 1;
                }
                let _ = body_start;
                if !closed {
                    return Err(LexError {
                        line: here.line,
                        column: here.column,
                        message: format!("unterminated dollar-quoted string `{tag}`"),
                    });
                }
                continue;
            }
        }

        if character.is_alphanumeric() || character == '_' {
            if word.is_empty() {
                word_start = offset;
            }
            word.push(character);
        } else {
            // Punctuation ends a word and is a word of its own only for `(`: enough to tell
            // `SET` from `SET LOCAL`, and a function body from its attributes.
            flush_word(
                &mut word,
                word_start..offset,
                &mut current,
                &mut blocks,
                parentheses,
            );
            if character == '(' || character == '=' {
                if let Some(statement) = current.as_mut() {
                    statement.words.push(character.to_string());
                    statement.spans.push(offset..offset + 1);
                }
            }
            match character {
                '(' => parentheses += 1,
                ')' => parentheses = parentheses.saturating_sub(1),
                _ => {}
            }
        }
        position.advance(character);
        index += 1;
    }
    flush_word(
        &mut word,
        word_start..sql.len(),
        &mut current,
        &mut blocks,
        parentheses,
    );
    if let Some(mut statement) = current.take() {
        statement.end = sql.len();
        statements.push(statement);
    }
    Ok(statements)
}

/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE`: a statement whose body may be a `BEGIN ATOMIC`
/// block.
fn defines_routine(words: &[String]) -> bool {
    let routine =
        |word: Option<&String>| word.is_some_and(|word| word == "FUNCTION" || word == "PROCEDURE");
    words.first().is_some_and(|word| word == "CREATE")
        && (routine(words.get(1))
            || words.get(1).is_some_and(|word| word == "OR")
                && words.get(2).is_some_and(|word| word == "REPLACE")
                && routine(words.get(3)))
}

#[derive(Debug, Clone, Copy)]
struct Position {
    line: usize,
    column: usize,
}

impl Default for Position {
    fn default() -> Self {
        Position { line: 1, column: 1 }
    }
}

impl Position {
    fn advance(&mut self, character: char) {
        if character == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
    }
}

/// What a statement that drops or rewrites data does, and the tables it does it to (as
/// written, lower-cased; a quoted name is not a word and is left out): `DROP TABLE`,
/// `DROP COLUMN`, `ALTER COLUMN TYPE`, `TRUNCATE`, `DELETE without WHERE`. `None` for every
/// other statement.
pub fn destructive(statement: &Statement) -> Option<(&'static str, Vec<String>)> {
    let words: Vec<&str> = statement.words.iter().map(String::as_str).collect();
    let name = |word: &str| word.to_lowercase();
    // The words after `position` that name tables: `[IF EXISTS] [ONLY] a, b ...`, up to a
    // keyword that ends the list.
    let tables_after = |position: usize, stop: &[&str]| -> Vec<String> {
        let mut rest = &words[position.min(words.len())..];
        if rest.starts_with(&["IF", "EXISTS"]) {
            rest = &rest[2..];
        }
        if rest.first() == Some(&"ONLY") {
            rest = &rest[1..];
        }
        rest.iter()
            .take_while(|word| !stop.contains(word))
            .map(|word| name(word))
            .collect()
    };
    match words.as_slice() {
        ["DROP", "TABLE", ..] => Some(("DROP TABLE", tables_after(2, &["CASCADE", "RESTRICT"]))),
        ["TRUNCATE", ..] => {
            let start = if words.get(1) == Some(&"TABLE") { 2 } else { 1 };
            Some((
                "TRUNCATE",
                tables_after(start, &["RESTART", "CONTINUE", "CASCADE", "RESTRICT"]),
            ))
        }
        ["DELETE", "FROM", ..] if !words.contains(&"WHERE") => Some((
            "DELETE without WHERE",
            tables_after(2, &["AS", "USING", "RETURNING"])
                .into_iter()
                .take(1)
                .collect(),
        )),
        ["ALTER", "TABLE", ..] => {
            let table: Vec<String> = tables_after(2, &[]).into_iter().take(1).collect();
            // `DROP [COLUMN] x`, not `DROP CONSTRAINT`, `DROP DEFAULT`, `DROP NOT NULL`, ...
            let drops_column = words.windows(2).any(|pair| {
                pair[0] == "DROP"
                    && !matches!(
                        pair[1],
                        "CONSTRAINT" | "DEFAULT" | "NOT" | "IDENTITY" | "EXPRESSION"
                    )
            });
            // `ALTER [COLUMN] x [SET DATA] TYPE t` (a column named `type` is not a retype).
            let retypes = (2..words.len()).any(|index| {
                if words[index] != "ALTER" {
                    return false;
                }
                let column = if words.get(index + 1) == Some(&"COLUMN") {
                    index + 2
                } else {
                    index + 1
                };
                let after = &words[(column + 1).min(words.len())..];
                after.first() == Some(&"TYPE") || after.starts_with(&["SET", "DATA", "TYPE"])
            });
            if drops_column {
                Some(("DROP COLUMN", table))
            } else if retypes {
                Some(("ALTER COLUMN TYPE", table))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The first line of a migration that runs outside any transaction, statement by statement.
pub const NO_TRANSACTION: &str = "-- tenantctl: no-transaction";

/// Whether the first line of `sql` is the [`NO_TRANSACTION`] marker (spaces and case aside).
/// Only that line decides; [`no_transaction`] also checks the other lines, once, when the file
/// is read.
pub fn marked_no_transaction(sql: &str) -> bool {
    let first = sql
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or_default();
    directive(first).is_some_and(|directive| directive.eq_ignore_ascii_case("no-transaction"))
}

/// The text after `-- tenantctl:` on a line that is such a comment.
fn directive(line: &str) -> Option<&str> {
    let comment = line.trim_start().strip_prefix("--")?.trim();
    comment
        .get(.."tenantctl".len())
        .filter(|word| word.eq_ignore_ascii_case("tenantctl"))?;
    Some(
        comment["tenantctl".len()..]
            .trim_start()
            .strip_prefix(':')?
            .trim(),
    )
}

/// A `-- tenantctl:` comment that is not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveError {
    pub line: usize,
    pub message: String,
    pub hint: &'static str,
}

/// Whether a migration is marked to run outside a transaction: its first line is
/// [`NO_TRANSACTION`] (spaces and case aside).
///
/// # Errors
/// A line comment starting `-- tenantctl:` that is not the marker on the first line: a typo in
/// it must not silently run the migration another way than its author meant.
pub fn no_transaction(sql: &str) -> Result<bool, DirectiveError> {
    let mut marked = false;
    for (index, line) in sql.trim_start_matches('\u{feff}').lines().enumerate() {
        let Some(directive) = directive(line) else {
            continue;
        };
        let hint = "the one directive is `-- tenantctl: no-transaction`, alone on the first line";
        if !directive.eq_ignore_ascii_case("no-transaction") {
            return Err(DirectiveError {
                line: index + 1,
                message: format!("unknown directive `tenantctl: {directive}`"),
                hint,
            });
        }
        if index > 0 {
            return Err(DirectiveError {
                line: index + 1,
                message: "`-- tenantctl: no-transaction` is not on the first line, so it would be ignored".to_string(),
                hint,
            });
        }
        marked = true;
    }
    Ok(marked)
}

/// A statement of a no-transaction migration: an index built or dropped concurrently, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineIndex {
    /// `CREATE INDEX CONCURRENTLY` (else `DROP INDEX CONCURRENTLY`).
    pub create: bool,
    /// The index, as the server names it (an unquoted name, folded to lower case).
    pub name: String,
    /// Where the word `CONCURRENTLY` is in the migration's text: without it, the statement is
    /// the same index built inside a transaction (the reference schema, a new tenant's schema).
    pub concurrently: std::ops::Range<usize>,
}

/// What a statement of a no-transaction migration does, or why it may not be one: each runs on
/// its own and is recorded when done, so only statements that can be checked and resumed by
/// name are allowed: `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON table ...` and
/// `DROP INDEX CONCURRENTLY [IF EXISTS] name`, with plain (unquoted, unqualified) names.
///
/// # Errors
/// The message and a hint.
pub fn online_index(statement: &Statement) -> Result<OnlineIndex, (String, &'static str)> {
    let words: Vec<&str> = statement.words.iter().map(String::as_str).collect();
    let only = "a `-- tenantctl: no-transaction` migration holds only `CREATE INDEX CONCURRENTLY` and `DROP INDEX CONCURRENTLY` statements";
    let hint = "put every other statement in a migration of its own, which runs in the tenant's transaction";
    let plain = |word: Option<&&str>| -> Option<String> {
        word.filter(|word| {
            word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && word.chars().next().is_some_and(|c| !c.is_ascii_digit())
                && !matches!(**word, "ON" | "IF" | "ONLY" | "USING")
        })
        .map(|word| word.to_ascii_lowercase())
    };
    let unnamed = (
        "name the index with a plain name (unquoted, without a schema)".to_string(),
        "tenantctl checks, resumes and rebuilds a concurrent build by the index's name",
    );
    let (create, mut position) = match words.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..] => (true, 3),
        ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => (true, 4),
        ["DROP", "INDEX", "CONCURRENTLY", ..] => (false, 3),
        _ => {
            let shown = words[..words.len().min(2)].join(" ");
            return Err((format!("`{shown}`: {only}"), hint));
        }
    };
    let concurrently = statement.spans[position - 1].clone();
    let exists: &[&str] = if create {
        &["IF", "NOT", "EXISTS"]
    } else {
        &["IF", "EXISTS"]
    };
    if words[position..].starts_with(exists) {
        position += exists.len();
    }
    let Some(name) = plain(words.get(position)) else {
        return Err(unnamed);
    };
    position += 1;
    if create {
        if words.get(position) != Some(&"ON") {
            return Err(unnamed);
        }
        position += 1;
        if words.get(position) == Some(&"ONLY") {
            position += 1;
        }
        let table = plain(words.get(position));
        let after = words.get(position + 1);
        if table.is_none() || !matches!(after, Some(&"(") | Some(&"USING")) {
            return Err((
                "name the table with a plain name (unquoted, without a schema)".to_string(),
                "the index is built in the tenant's schema, on its own table",
            ));
        }
    } else if position != words.len() {
        return Err((
            "`DROP INDEX CONCURRENTLY` takes one plain index name and nothing else".to_string(),
            "drop one index per statement",
        ));
    }
    Ok(OnlineIndex {
        create,
        name,
        concurrently,
    })
}

/// Why a statement may not be part of a migration, with a hint; `None` when it may.
pub fn refusal(statement: &Statement) -> Option<(String, &'static str)> {
    let words: Vec<&str> = statement.words.iter().map(String::as_str).collect();
    let first = words.first().copied().unwrap_or_default();
    let starts = |prefix: &[&str]| words.starts_with(prefix);
    let contains_pair = |a: &str, b: &str| words.windows(2).any(|pair| pair == [a, b]);
    let transaction = "migrations run inside the tenant's transaction, which tenantctl commits or rolls back as a whole";
    let shown = |count: usize| words[..count.min(words.len())].join(" ");

    match first {
        "BEGIN" | "START" | "COMMIT" | "END" | "ABORT" => {
            return Some((
                format!("`{}` ends or nests the tenant's transaction", shown(2)),
                transaction,
            ));
        }
        "ROLLBACK" if !starts(&["ROLLBACK", "TO"]) => {
            return Some((
                format!("`{}` ends the tenant's transaction", shown(2)),
                transaction,
            ));
        }
        "PREPARE" if starts(&["PREPARE", "TRANSACTION"]) => {
            return Some((
                "`PREPARE TRANSACTION` ends the tenant's transaction".to_string(),
                transaction,
            ));
        }
        "VACUUM" => {
            return Some((
                "`VACUUM` cannot run inside a transaction".to_string(),
                "run it by hand, outside tenantctl",
            ));
        }
        "SET" if !starts(&["SET", "LOCAL"]) && !starts(&["SET", "CONSTRAINTS"]) => {
            return Some((
                format!("`{}` changes the session, beyond the tenant's transaction", shown(3)),
                "use `SET LOCAL`, which ends with the transaction; tenantctl sets the search_path to the tenant's schema itself",
            ));
        }
        "RESET" | "DISCARD" => {
            return Some((
                format!(
                    "`{}` changes the session, beyond the tenant's transaction",
                    shown(2)
                ),
                "use `SET LOCAL` for settings that last until the commit",
            ));
        }
        "LOAD" => {
            return Some((
                "`LOAD` loads a library into the server".to_string(),
                "install extensions by hand, outside tenantctl",
            ));
        }
        _ => {}
    }
    if (first == "CREATE" || first == "DROP" || first == "ALTER")
        && words.get(1).is_some_and(|word| *word == "SCHEMA")
    {
        return Some((
            format!(
                "`{}` works on schemas; a migration works inside its tenant's schema",
                shown(2)
            ),
            "tenantctl creates and drops tenant schemas itself",
        ));
    }
    if (first == "CREATE" || first == "DROP")
        && (words.get(1) == Some(&"DATABASE")
            || words.get(1) == Some(&"TABLESPACE")
            || words.get(1) == Some(&"ROLE")
            || words.get(1) == Some(&"USER"))
    {
        return Some((
            format!("`{}` reaches beyond the tenant's schema", shown(2)),
            "a migration creates the objects of one tenant's schema",
        ));
    }
    if starts(&["ALTER", "SYSTEM"])
        || starts(&["ALTER", "ROLE"])
        || starts(&["ALTER", "USER"])
        || starts(&["ALTER", "DATABASE"])
    {
        return Some((
            format!("`{}` reaches beyond the tenant's schema", shown(2)),
            "a migration creates the objects of one tenant's schema",
        ));
    }
    if first == "REINDEX" && words.contains(&"CONCURRENTLY") {
        return Some((
            "`REINDEX CONCURRENTLY` cannot run inside a transaction".to_string(),
            "rebuild an index online by dropping and creating it in a `-- tenantctl: no-transaction` migration",
        ));
    }
    if matches!(first, "CREATE" | "DROP")
        && words.contains(&"INDEX")
        && words.contains(&"CONCURRENTLY")
    {
        return Some((
            "`CONCURRENTLY` cannot run inside a transaction".to_string(),
            "put the index in a migration of its own whose first line is `-- tenantctl: no-transaction`: it then runs outside the transaction, statement by statement",
        ));
    }
    if contains_pair("SECURITY", "DEFINER") {
        return Some((
            "`SECURITY DEFINER` would run as tenantctl's user, with rights over every tenant"
                .to_string(),
            "leave the function `SECURITY INVOKER` (the default)",
        ));
    }
    if contains_pair("SESSION", "AUTHORIZATION") || words.contains(&"SET_CONFIG") {
        return Some((
            "changing the role or settings of the session escapes the tenant's transaction"
                .to_string(),
            "use `SET LOCAL` for settings that last until the commit",
        ));
    }
    if first == "COPY"
        && (words.contains(&"PROGRAM") || words.contains(&"STDIN") || words.contains(&"STDOUT"))
    {
        return Some((
            "`COPY` with a program or the client's input cannot run in a migration".to_string(),
            "insert seed rows with `INSERT ... VALUES`",
        ));
    }
    None
}

#[cfg(test)]
mod tests {

    fn destroys(sql: &str) -> Vec<(&'static str, Vec<String>)> {
        statements(sql)
            .unwrap()
            .iter()
            .filter_map(destructive)
            .collect()
    }

    #[test]
    fn statements_that_drop_or_rewrite_data_are_found() {
        let found = destroys(
            "DROP TABLE IF EXISTS old_notes, drafts CASCADE;\n\
             ALTER TABLE documents DROP COLUMN body;\n\
             ALTER TABLE ONLY documents DROP summary, ADD COLUMN x int;\n\
             ALTER TABLE documents ALTER COLUMN title TYPE varchar(80);\n\
             ALTER TABLE documents ALTER title SET DATA TYPE text USING title::text;\n\
             TRUNCATE TABLE events, audit RESTART IDENTITY;\n\
             DELETE FROM sessions;\n\
             DELETE FROM sessions AS s USING users u;",
        );
        let expected: Vec<(&str, Vec<String>)> = vec![
            ("DROP TABLE", vec!["old_notes".into(), "drafts".into()]),
            ("DROP COLUMN", vec!["documents".into()]),
            ("DROP COLUMN", vec!["documents".into()]),
            ("ALTER COLUMN TYPE", vec!["documents".into()]),
            ("ALTER COLUMN TYPE", vec!["documents".into()]),
            ("TRUNCATE", vec!["events".into(), "audit".into()]),
            ("DELETE without WHERE", vec!["sessions".into()]),
            ("DELETE without WHERE", vec!["sessions".into()]),
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn statements_that_keep_data_are_not_flagged() {
        assert!(destroys(
            "CREATE TABLE t (id int);\n\
             ALTER TABLE t ADD COLUMN note text;\n\
             ALTER TABLE t ALTER COLUMN note DROP DEFAULT;\n\
             ALTER TABLE t ALTER COLUMN note DROP NOT NULL;\n\
             ALTER TABLE t ALTER COLUMN type SET DEFAULT 'a';\n\
             ALTER TABLE t DROP CONSTRAINT t_pkey;\n\
             DELETE FROM t WHERE id = 1;\n\
             DROP INDEX t_note;\n\
             UPDATE t SET note = 'x' WHERE id = 2;\n\
             INSERT INTO t VALUES (1);\n\
             COMMENT ON TABLE t IS 'DROP TABLE t';"
        )
        .is_empty());
    }

    use super::*;

    fn words(sql: &str) -> Vec<Vec<String>> {
        statements(sql)
            .unwrap()
            .into_iter()
            .map(|statement| statement.words)
            .collect()
    }

    #[test]
    fn statements_skip_comments_strings_and_quoted_names() {
        let sql = "-- a comment; with a semicolon\n\
                   CREATE TABLE \"odd;name\" (note text DEFAULT 'it''s; fine');\n\
                   /* nested /* comment; */ still */ INSERT INTO t VALUES (E'\\'; x');\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; COMMIT; $body$;\n";
        let split = statements(sql).unwrap();
        assert_eq!(split.len(), 3);
        assert_eq!(split[0].line, 2);
        assert_eq!(split[0].words[..2], ["CREATE", "TABLE"]);
        assert_eq!(split[1].line, 3);
        assert_eq!(split[1].words[0], "INSERT");
        assert_eq!(split[2].line, 4);
        assert!(
            !split[2].words.contains(&"COMMIT".to_string()),
            "{:?}",
            split[2].words
        );
        // `$1` is a parameter, not a dollar quote: the statement ends at the `;`.
        assert_eq!(words("SELECT $1; SELECT 2")[0], ["SELECT", "1"]);
        // Each statement's text can be sent on its own.
        let texts: Vec<&str> = split.iter().map(|s| &sql[s.start..s.end]).collect();
        assert_eq!(
            texts[0],
            "CREATE TABLE \"odd;name\" (note text DEFAULT 'it''s; fine')"
        );
        assert!(texts[2].ends_with("$body$"), "{}", texts[2]);
        let last = statements("SELECT 1;\nSELECT 2 -- no semicolon").unwrap();
        assert_eq!(
            &"SELECT 1;\nSELECT 2 -- no semicolon"[last[1].start..last[1].end],
            "SELECT 2 -- no semicolon"
        );
    }

    #[test]
    fn a_sql_standard_function_body_is_one_statement() {
        let sql = "CREATE OR REPLACE FUNCTION total(a int, b int) RETURNS int LANGUAGE sql\n\
                   BEGIN ATOMIC\n\
                     SELECT CASE WHEN a > b THEN a ELSE b END;\n\
                     SELECT a + b;\n\
                   END;\n\
                   CREATE TABLE after_it (id int);\n\
                   CREATE TABLE t (begin int, \"end\" int);\n\
                   SELECT 1;";
        let split = statements(sql).unwrap();
        assert_eq!(split.len(), 4, "{split:?}");
        assert!(sql[split[0].start..split[0].end].ends_with("END"));
        assert_eq!(split[1].words[..3], ["CREATE", "TABLE", "AFTER_IT"]);
        assert_eq!(split[1].line, 6);
        // `begin` as a column name, inside parentheses, opens nothing.
        assert_eq!(split[3].words, ["SELECT", "1"]);
        assert!(split.iter().all(|statement| refusal(statement).is_none()));
    }

    #[test]
    fn unterminated_parts_are_errors_at_their_start() {
        let error = statements("SELECT 1;\nSELECT 'open").unwrap_err();
        assert_eq!((error.line, error.column), (2, 8));
        assert_eq!(error.message, "unterminated string constant");
        assert!(statements("SELECT $x$ never closed").is_err());
        assert!(statements("/* open").is_err());
        let error = statements("CREATE TABLE t ();\n\\i other.sql\n").unwrap_err();
        assert_eq!(error.line, 2);
    }

    #[test]
    fn the_no_transaction_marker_is_the_first_line_or_an_error() {
        assert_eq!(
            no_transaction("-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"),
            Ok(true)
        );
        assert_eq!(
            no_transaction("--TenantCtl :  No-Transaction  \nSELECT 1"),
            Ok(true)
        );
        assert_eq!(
            no_transaction("-- an ordinary comment\nCREATE TABLE t (a int);"),
            Ok(false)
        );
        assert_eq!(
            no_transaction("CREATE TABLE t (a int); -- tenantctl is great"),
            Ok(false)
        );
        let late = no_transaction("-- the index\n-- tenantctl: no-transaction\n").unwrap_err();
        assert_eq!(late.line, 2);
        assert!(
            late.message.contains("not on the first line"),
            "{}",
            late.message
        );
        assert!(marked_no_transaction(
            "--TenantCtl :  No-Transaction  \nSELECT 1"
        ));
        assert!(!marked_no_transaction(
            "-- the index\n-- tenantctl: no-transaction\n"
        ));
        assert!(!marked_no_transaction("-- tenantctl: no-transactions\n"));
        let typo = no_transaction("-- tenantctl: no-transactions\n").unwrap_err();
        assert_eq!(
            (typo.line, typo.message.as_str()),
            (1, "unknown directive `tenantctl: no-transactions`")
        );
    }

    #[test]
    fn online_statements_are_named_index_builds_and_drops() {
        let sql = "CREATE INDEX CONCURRENTLY documents_title ON documents (title);\n\
                   create unique index concurrently if not exists Docs_Slug on only documents using btree (slug) where slug is not null;\n\
                   DROP INDEX CONCURRENTLY IF EXISTS old_index;\n\
                   DROP INDEX CONCURRENTLY other_index";
        let found: Vec<OnlineIndex> = statements(sql)
            .unwrap()
            .iter()
            .map(|statement| online_index(statement).unwrap())
            .collect();
        let names: Vec<(bool, &str)> = found.iter().map(|i| (i.create, i.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (true, "documents_title"),
                (true, "docs_slug"),
                (false, "old_index"),
                (false, "other_index")
            ]
        );
        for index in &found {
            assert!(sql[index.concurrently.clone()].eq_ignore_ascii_case("concurrently"));
        }
        for (sql, expected) in [
            (
                "CREATE INDEX documents_title ON documents (title)",
                "holds only",
            ),
            ("ALTER TABLE documents ADD COLUMN note text", "holds only"),
            (
                "CREATE INDEX CONCURRENTLY ON documents (title)",
                "name the index",
            ),
            (
                "CREATE INDEX CONCURRENTLY \"Odd\" ON documents (title)",
                "name the index",
            ),
            (
                "CREATE INDEX CONCURRENTLY i ON tenant_other.documents (title)",
                "name the table",
            ),
            (
                "CREATE INDEX CONCURRENTLY i ON \"documents\" (title)",
                "name the table",
            ),
            (
                "DROP INDEX CONCURRENTLY tenant_other.i",
                "one plain index name",
            ),
            ("DROP INDEX CONCURRENTLY a, b", "one plain index name"),
            ("REINDEX INDEX CONCURRENTLY i", "holds only"),
        ] {
            let (message, _) = online_index(&statements(sql).unwrap()[0]).unwrap_err();
            assert!(message.contains(expected), "{sql}: {message}");
        }
    }

    #[test]
    fn words_know_where_they_are() {
        let sql = "CREATE /* x */ index\n  Concurrently i ON t (a)";
        let statement = &statements(sql).unwrap()[0];
        let shown: Vec<&str> = statement
            .spans
            .iter()
            .map(|span| &sql[span.clone()])
            .collect();
        assert_eq!(
            shown,
            ["CREATE", "index", "Concurrently", "i", "ON", "t", "(", "a"]
        );
    }

    #[test]
    fn what_escapes_the_transaction_is_refused() {
        for sql in [
            "COMMIT",
            "commit work",
            "BEGIN",
            "START TRANSACTION",
            "ROLLBACK",
            "END",
            "VACUUM t",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "create unique index concurrently if not exists i on t (a)",
            "DROP INDEX CONCURRENTLY i",
            "REINDEX TABLE CONCURRENTLY t",
            "SET ROLE admin",
            "SET search_path TO public",
            "SET SESSION search_path TO public",
            "RESET ALL",
            "SET SESSION AUTHORIZATION admin",
            "SELECT set_config('search_path', 'public', false)",
            "CREATE SCHEMA other",
            "DROP SCHEMA tenant_other CASCADE",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
            "COPY t FROM PROGRAM 'id'",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "CREATE ROLE sneaky",
        ] {
            let statement = &statements(sql).unwrap()[0];
            assert!(refusal(statement).is_some(), "{sql} was accepted");
        }
        for sql in [
            "CREATE TABLE documents (id uuid PRIMARY KEY, title text NOT NULL)",
            "CREATE INDEX documents_title ON documents (title)",
            "ALTER TABLE documents ADD COLUMN summary text",
            "SET LOCAL lock_timeout = '1s'",
            "SAVEPOINT before; ROLLBACK TO SAVEPOINT before",
            "CREATE VIEW recent AS SELECT * FROM documents",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "INSERT INTO settings VALUES ('commit', 'set role')",
        ] {
            for statement in statements(sql).unwrap() {
                assert_eq!(refusal(&statement), None, "{sql} was refused");
            }
        }
    }
}
