//! The objects of schemas as migrations define them (columns, indexes, constraints, views,
//! sequences, functions), read in a fixed number of flat catalog queries for every tenant
//! schema at once, or for the one scratch schema the reference is built in.
//!
//! Definitions come from the server's own deparsers (`pg_get_indexdef`, `pg_get_constraintdef`,
//! `pg_get_viewdef`, `pg_get_expr`), with the schema's name taken out, so a tenant's schema and
//! the reference compare.

use super::PostgresError;
use crate::observed::{ObservedColumn, SchemaShape};
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;

/// Which schemas to read.
#[derive(Debug, Clone, Copy)]
pub enum Schemas<'a> {
    /// Every schema whose name starts with this prefix.
    Prefix(&'a str),
    /// This one schema (its objects found by its OID).
    Exactly(&'a str),
}

impl Schemas<'_> {
    /// The condition that `object` (an expression: the OID of a relation, `pg_class`, or of a
    /// function, `pg_proc`) belongs to the schemas, with the name or prefix as `$1`. Fixed
    /// text: no input.
    ///
    /// One schema is found by its OID, and its objects through `pg_depend`'s index on the
    /// referenced object (every relation and function records a dependency on its schema):
    /// `pg_class` has no index that starts with the namespace, so a condition on
    /// `relnamespace` would read the whole catalog, once per tenant, on a fleet of thousands
    /// (an index or constraint is reached through its table).
    fn condition(&self, object: &str, catalog: &str) -> String {
        match self {
            Schemas::Prefix(_) => "starts_with(n.nspname::text, $1)".to_string(),
            Schemas::Exactly(_) => format!(
                "{object} IN (SELECT d.objid FROM pg_depend d \
                 WHERE d.refclassid = 'pg_namespace'::regclass \
                   AND d.refobjid = to_regnamespace(quote_ident($1)) \
                   AND d.classid = '{catalog}'::regclass)"
            ),
        }
    }

    fn value(&self) -> &str {
        match self {
            Schemas::Prefix(prefix) => prefix,
            Schemas::Exactly(name) => name,
        }
    }
}

/// `type [NOT NULL] [DEFAULT expression]` of a column.
pub fn column_definition(column: &ObservedColumn) -> String {
    let mut definition = column.data_type.clone();
    if column.not_null {
        definition.push_str(" NOT NULL");
    }
    if let Some(default) = &column.default {
        definition.push_str(" DEFAULT ");
        definition.push_str(default);
    }
    definition
}

/// Takes `schema.` and `"schema".` out of a definition, where they qualify a name (not inside a
/// longer identifier such as `other_schema.`).
pub fn unqualified(definition: &str, schema: &str) -> String {
    let mut out = String::with_capacity(definition.len());
    let quoted = format!("\"{schema}\".");
    let plain = format!("{schema}.");
    let mut rest = definition;
    let mut previous: Option<char> = None;
    while !rest.is_empty() {
        let boundary = previous.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '"'));
        if boundary && rest.starts_with(&quoted) {
            rest = &rest[quoted.len()..];
            previous = Some('.');
            continue;
        }
        if boundary && rest.starts_with(&plain) {
            rest = &rest[plain.len()..];
            previous = Some('.');
            continue;
        }
        let character = rest.chars().next().unwrap_or_default();
        out.push(character);
        previous = Some(character);
        rest = &rest[character.len_utf8()..];
    }
    out
}

/// One object of a schema, as read: built into a [`SchemaShape`] schema by schema (see
/// [`build`]), so that thousands of tenants never hold thousands of shapes at once.
#[derive(Debug)]
pub enum Item {
    Column {
        table: String,
        column: String,
        definition: String,
    },
    Index {
        name: String,
        definition: String,
    },
    Constraint {
        key: String,
        definition: String,
    },
    View {
        name: String,
        definition: String,
    },
    Sequence {
        name: String,
    },
    Function {
        signature: String,
    },
}

/// The objects of one schema, as read.
pub type Items = Vec<Item>;

/// Builds a schema's shape from its objects.
pub fn build(items: Items) -> SchemaShape {
    let mut shape = SchemaShape::default();
    for item in items {
        match item {
            Item::Column {
                table,
                column,
                definition,
            } => {
                shape
                    .tables
                    .entry(table)
                    .or_default()
                    .insert(column, definition);
            }
            Item::Index { name, definition } => {
                shape.indexes.insert(name, definition);
            }
            Item::Constraint { key, definition } => {
                shape.constraints.insert(key, definition);
            }
            Item::View { name, definition } => {
                shape.views.insert(name, definition);
            }
            Item::Sequence { name } => {
                shape.sequences.insert(name);
            }
            Item::Function { signature } => {
                shape.functions.insert(signature);
            }
        }
    }
    shape
}

/// Reads the objects of `schemas`, by schema; with `columns`, the tables' columns too (the
/// tenants' columns come from the query `observe` already makes). Each row is reduced to its
/// item as it arrives.
///
/// # Errors
/// A catalog query failed.
pub async fn read(
    client: &impl GenericClient,
    schemas: Schemas<'_>,
    columns: bool,
) -> Result<BTreeMap<String, Items>, PostgresError> {
    let queries = queries(schemas);
    let [columns_sql, indexes_sql, constraints_sql, relations_sql, functions_sql] = &queries;
    read_with(
        client,
        schemas.value(),
        [
            columns_sql.as_str(),
            indexes_sql,
            constraints_sql,
            relations_sql,
            functions_sql,
        ],
        columns,
    )
    .await
}

/// An index as the index query returns it: described, or pointing by its signature to the
/// index of the same signature that was.
struct IndexRow {
    schema: String,
    name: String,
    signature: Option<i64>,
    definition: Option<String>,
    constraint: Option<String>,
    valid: bool,
}

/// The indexes' items: each index with its description, or that of the first index of its
/// signature (with that index's schema taken out).
fn index_items(rows: Vec<IndexRow>) -> Vec<(String, Item)> {
    let described: std::collections::HashMap<i64, String> = rows
        .iter()
        .filter_map(|row| {
            let definition = row.definition.as_ref()?;
            Some((row.signature?, unqualified(definition, &row.schema)))
        })
        .collect();
    rows.into_iter()
        .map(|row| {
            let definition = match (&row.signature, row.definition, row.constraint) {
                (_, Some(definition), _) => unqualified(&definition, &row.schema),
                (Some(signature), None, _) => described.get(signature).cloned().unwrap_or_default(),
                (None, None, constraint) => format!(
                    "the index of constraint `{}`",
                    constraint.unwrap_or_default()
                ),
            };
            // What a concurrent build that failed leaves: the index exists, but is neither
            // used nor complete. It differs from the reference, which is always valid.
            let definition = if row.valid {
                definition
            } else {
                format!("{definition} {}", crate::observed::INVALID_INDEX)
            };
            (
                row.schema,
                Item::Index {
                    name: row.name,
                    definition,
                },
            )
        })
        .collect()
}

/// The five catalog queries of one schema (name as `$1`), built once: a tenant's migrations
/// are verified with them, prepared once per session.
pub fn one_schema_queries() -> &'static [String; 5] {
    static QUERIES: std::sync::OnceLock<[String; 5]> = std::sync::OnceLock::new();
    QUERIES.get_or_init(|| queries(Schemas::Exactly("")))
}

/// Columns, indexes, constraints, views and sequences, functions: the queries of `schemas`,
/// with the name or prefix as `$1`.
fn queries(schemas: Schemas<'_>) -> [String; 5] {
    let relation = |object: &str| schemas.condition(object, "pg_class");
    let columns_sql = format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, 0) \
                     ELSE pg_get_expr(d.adbin, d.adrelid) END \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
         WHERE {} AND c.relkind IN ('r', 'p')",
        relation("c.oid")
    );
    // The index of a primary key, unique or exclusion constraint is what the constraint's
    // definition says: described once, as the constraint.
    //
    // The server describes an index (`pg_get_indexdef`) one by one, and at 10,000 tenants of
    // ten indexes each that is most of a plan's server time, though tenants hold the same
    // few indexes. So each index gets a signature of what its definition is made of (its
    // name and table, the catalog's columns of `pg_index` that the description prints, the
    // access method, options, expression and predicate trees, and the table's columns by
    // number, name, type and collation: the names the description uses), hashed to 64 bits,
    // and only the first index of each signature is described; the others take that
    // description (its schema taken out as from their own). A difference in any of those
    // fields makes another signature, which is described on its own: at worst, one
    // description more. (Not in the signature: operator-class parameters,
    // `gist_trgm_ops(siglen=...)`, changed by hand on one tenant. A 64-bit hash: two
    // different signatures collide with a chance of about 1 in 10^19 per pair.)
    let indexes_sql = match schemas {
        // One schema (a tenant's verification, the reference): every index has its own name,
        // so its own signature; each is described, without computing one.
        Schemas::Exactly(_) => format!(
            "SELECT n.nspname::text, ci.relname::text, NULL::bigint, \
                    CASE WHEN k.conname IS NULL THEN pg_get_indexdef(i.indexrelid) END, \
                    k.conname::text, i.indisvalid \
             FROM pg_index i \
             JOIN pg_class ci ON ci.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = ci.relnamespace \
             LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid \
                  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x') \
             WHERE {}",
            relation("i.indrelid")
        ),
        Schemas::Prefix(_) => format!(
            "WITH columns AS ( \
             SELECT a.attrelid, string_agg(concat_ws(':', a.attnum, a.attname, a.atttypid, \
                        a.attcollation), ',' ORDER BY a.attnum) AS list \
             FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {} AND c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped \
             GROUP BY a.attrelid \
         ), signed AS ( \
             SELECT n.nspname::text AS schema, ci.relname::text AS name, i.indexrelid, \
                    k.conname::text AS constraint_name, i.indisvalid AS valid, \
                    CASE WHEN k.conname IS NULL THEN hashtextextended(concat_ws('|', ci.relname, ci.relkind, \
                        tc.relname, tc.relkind, i.indisunique, i.indnullsnotdistinct, \
                        i.indnkeyatts, i.indkey, i.indclass, i.indoption, i.indcollation, \
                        ci.relam, ci.reloptions, i.indexprs, i.indpred, t.list), 0) END AS signature \
             FROM pg_index i \
             JOIN pg_class ci ON ci.oid = i.indexrelid \
             JOIN pg_class tc ON tc.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = ci.relnamespace \
             LEFT JOIN columns t ON t.attrelid = i.indrelid \
             LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid \
                  AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x') \
             WHERE {} \
         ) \
         SELECT schema, name, signature, \
                CASE WHEN signature IS NOT NULL AND row_number() OVER \
                     (PARTITION BY signature ORDER BY indexrelid) = 1 \
                     THEN pg_get_indexdef(indexrelid) END, \
                constraint_name, valid \
         FROM signed",
            relation("c.oid"),
            relation("i.indrelid")
        ),
    };
    let constraints_sql = format!(
        "SELECT n.nspname::text, c.relname::text, con.conname::text, \
                pg_get_constraintdef(con.oid) \
         FROM pg_constraint con \
         JOIN pg_class c ON c.oid = con.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {}",
        relation("con.conrelid")
    );
    let relations_sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, \
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE {} AND c.relkind IN ('v', 'm', 'S')",
        relation("c.oid")
    );
    let functions_sql = format!(
        "SELECT n.nspname::text, p.oid::regprocedure::text \
         FROM pg_proc p \
         JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE {}",
        schemas.condition("p.oid", "pg_proc")
    );
    [
        columns_sql,
        indexes_sql,
        constraints_sql,
        relations_sql,
        functions_sql,
    ]
}

/// Runs the five queries of [`queries`] (text, or statements prepared from it) with `value`
/// as `$1`, and sorts what they find by schema.
///
/// # Errors
/// A catalog query failed.
pub async fn read_with<T>(
    client: &impl GenericClient,
    value: &str,
    [columns_sql, indexes_sql, constraints_sql, relations_sql, functions_sql]: [&T; 5],
    columns: bool,
) -> Result<BTreeMap<String, Items>, PostgresError>
where
    T: ?Sized + tokio_postgres::ToStatement + Sync + Send,
{
    let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&value];
    let (column_items, index_items, constraint_items, relation_items, function_items) = futures_util::try_join!(
        async {
            if !columns {
                return Ok(Vec::new());
            }
            super::mapped(
                client,
                columns_sql,
                params,
                "read the columns of the schema",
                |row| {
                    let schema: String = row.get(0);
                    let column = ObservedColumn {
                        data_type: row.get(3),
                        not_null: row.get(4),
                        default: row.get(5),
                        primary_key: false,
                    };
                    let definition = unqualified(&column_definition(&column), &schema);
                    (
                        schema,
                        Item::Column {
                            table: row.get(1),
                            column: row.get(2),
                            definition,
                        },
                    )
                },
            )
            .await
        },
        async {
            let rows = super::mapped(client, indexes_sql, params, "read tenant indexes", |row| {
                IndexRow {
                    schema: row.get(0),
                    name: row.get(1),
                    signature: row.get::<_, Option<i64>>(2),
                    definition: row.get(3),
                    constraint: row.get(4),
                    valid: row.get(5),
                }
            })
            .await?;
            Ok(index_items(rows))
        },
        super::mapped(
            client,
            constraints_sql,
            params,
            "read tenant constraints",
            |row| {
                let schema: String = row.get(0);
                let table: String = row.get(1);
                let name: String = row.get(2);
                let definition = unqualified(&row.get::<_, String>(3), &schema);
                (
                    schema,
                    Item::Constraint {
                        key: format!("{table}.{name}"),
                        definition,
                    },
                )
            }
        ),
        super::mapped(
            client,
            relations_sql,
            params,
            "read tenant views and sequences",
            |row| {
                let schema: String = row.get(0);
                let name: String = row.get(1);
                let kind: String = row.get(2);
                let definition: Option<String> = row.get(3);
                let item = match definition {
                    Some(definition) if kind != "S" => {
                        let word = if kind == "m" {
                            "materialized view"
                        } else {
                            "view"
                        };
                        let definition = unqualified(definition.trim(), &schema);
                        Item::View {
                            name,
                            definition: format!("{word}: {definition}"),
                        }
                    }
                    _ => Item::Sequence { name },
                };
                (schema, item)
            }
        ),
        super::mapped(
            client,
            functions_sql,
            params,
            "read tenant functions",
            |row| {
                let schema: String = row.get(0);
                let signature = unqualified(&row.get::<_, String>(1), &schema);
                (schema, Item::Function { signature })
            }
        ),
    )?;
    let mut items: BTreeMap<String, Items> = BTreeMap::new();
    for (schema, item) in column_items
        .into_iter()
        .chain(index_items)
        .chain(constraint_items)
        .chain(relation_items)
        .chain(function_items)
    {
        items.entry(schema).or_default().push(item);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_takes_the_description_of_its_signature_from_another_schema() {
        let row =
            |schema: &str, signature: Option<i64>, definition: Option<&str>, valid| IndexRow {
                schema: schema.to_string(),
                name: "documents_title".to_string(),
                signature,
                definition: definition.map(str::to_string),
                constraint: None,
                valid,
            };
        let items = index_items(vec![
            // The described one comes last: rows arrive in any order.
            row("tenant_b", Some(1), None, false),
            row(
                "tenant_c",
                Some(2),
                Some(
                    "CREATE UNIQUE INDEX documents_title ON tenant_c.documents USING btree (title)",
                ),
                true,
            ),
            row(
                "tenant_a",
                Some(1),
                Some("CREATE INDEX documents_title ON tenant_a.documents USING btree (title)"),
                true,
            ),
            IndexRow {
                constraint: Some("documents_pkey".to_string()),
                ..row("tenant_a", None, None, true)
            },
        ]);
        let shown: Vec<(String, String)> = items
            .into_iter()
            .map(|(schema, item)| match item {
                Item::Index { definition, .. } => (schema, definition),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "tenant_b".to_string(),
                    format!(
                        "CREATE INDEX documents_title ON documents USING btree (title) {}",
                        crate::observed::INVALID_INDEX
                    )
                ),
                (
                    "tenant_c".to_string(),
                    "CREATE UNIQUE INDEX documents_title ON documents USING btree (title)"
                        .to_string()
                ),
                (
                    "tenant_a".to_string(),
                    "CREATE INDEX documents_title ON documents USING btree (title)".to_string()
                ),
                (
                    "tenant_a".to_string(),
                    "the index of constraint `documents_pkey`".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_schema_name_is_taken_out_where_it_qualifies_a_name() {
        assert_eq!(
            unqualified(
                "CREATE INDEX i ON tenant_acme.documents USING btree (title)",
                "tenant_acme"
            ),
            "CREATE INDEX i ON documents USING btree (title)"
        );
        assert_eq!(
            unqualified("nextval('\"tenant_acme\".seq'::regclass)", "tenant_acme"),
            "nextval('seq'::regclass)"
        );
        assert_eq!(
            unqualified("REFERENCES other_tenant_acme.t(id)", "tenant_acme"),
            "REFERENCES other_tenant_acme.t(id)"
        );
    }
}
