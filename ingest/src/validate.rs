//! Checking decoded messages against the target catalog and turning them into journal rows. Pure.

use std::borrow::Cow;

use serde_json::value::RawValue;
use thiserror::Error;
use wharf_base::json::{MAX_KEY_BYTES, MAX_NESTING, TooDeep, canonical_key};
use wharf_queue::RowRef;
use wharf_targetdb::catalog::{SchemaCatalog, Table};

use crate::decode::{Key, Message};
use crate::drift::Edits;

/// Why a body's rows do not fit the target (HTTP 400, after one catalog refresh).
#[derive(Debug, Error, PartialEq)]
pub enum RowError {
    #[error("message {index}: table {table:?} does not exist in target schema {schema:?}")]
    UnknownTable { index: usize, table: String, schema: String },
    #[error("message {index}: table {table:?}: key has {got} values but the primary key has {want} columns")]
    KeyArity { index: usize, table: String, got: usize, want: usize },
    #[error("message {index}: table {table:?}: \"{part}\" has no value for primary-key column {column:?}")]
    KeyColumn { index: usize, table: String, part: &'static str, column: String },
    #[error("message {index}: table {table:?} has no column {column:?} (add it to the target first)")]
    UnknownColumn { index: usize, table: String, column: String },
    #[error("message {index}: the {part} is nested {depth} levels deep; at most {MAX_NESTING} are accepted")]
    TooDeep { index: usize, part: &'static str, depth: usize },
    #[error(
        "message {index}: table {table:?}: the primary key is {bytes} bytes of JSON; at most {MAX_KEY_BYTES} are accepted"
    )]
    KeyTooLong { index: usize, table: String, bytes: usize },
}

impl RowError {
    /// Whether a fresher catalog might accept the row (a table or column added since).
    pub fn may_be_stale_catalog(&self) -> bool {
        matches!(self, RowError::UnknownTable { .. } | RowError::UnknownColumn { .. })
    }
}

/// Validates every message, then encodes them; nothing is returned unless all are valid.
/// `edits` (from [`crate::drift::edits`]) drops messages and rewrites `after` objects without the
/// columns an `ignore` policy drops.
pub fn to_rows<'a>(
    messages: &'a [Message<'a>],
    schema: &str,
    catalog: &'a SchemaCatalog,
    edits: &'a Edits,
) -> Result<Vec<RowRef<'a>>, RowError> {
    let mut rows = Vec::with_capacity(messages.len());
    for (index, m) in messages.iter().enumerate() {
        if edits.skip[index] {
            continue;
        }
        let rewritten = edits.after[index].as_deref();
        let table = catalog.table(&m.table).ok_or_else(|| RowError::UnknownTable {
            index,
            table: m.table.to_string(),
            schema: schema.to_owned(),
        })?;
        if let Some((_, props)) = &m.after
            && rewritten.is_none()
            && let Some((column, _)) = props.0.iter().find(|(c, _)| table.column_index(c).is_none())
        {
            return Err(RowError::UnknownColumn { index, table: table.name.clone(), column: column.to_string() });
        }
        let key = key_of(index, m, table)?;
        if key.len() > MAX_KEY_BYTES {
            return Err(RowError::KeyTooLong { index, table: table.name.clone(), bytes: key.len() });
        }
        if let Some((_, props)) = &m.after {
            let depth = props.nesting_depth();
            if depth > MAX_NESTING {
                return Err(RowError::TooDeep { index, part: "after value", depth });
            }
        }
        rows.push(RowRef {
            hlc: m.hlc,
            table: &table.name,
            key,
            after: m.after.as_ref().map(|(raw, _)| rewritten.unwrap_or(raw.get()).as_bytes()),
        });
    }
    Ok(rows)
}

/// The canonical key of a message: its `key` array, or the target's primary-key columns (in the
/// target's order) read from the enriched `key` object or from the row.
fn key_of<'a>(index: usize, m: &'a Message<'a>, table: &Table) -> Result<Cow<'a, [u8]>, RowError> {
    let want = table.primary_key.len();
    let arity = |got: usize| RowError::KeyArity { index, table: table.name.clone(), got, want };
    let too_deep = |e: TooDeep| RowError::TooDeep { index, part: "key", depth: e.depth };
    let (part, props) = match &m.key {
        Key::Array { text, values } if values.len() == want => return canonical_key(text, values).map_err(too_deep),
        Key::Array { values, .. } => return Err(arity(values.len())),
        Key::Columns(props) if props.0.len() != want => return Err(arity(props.0.len())),
        Key::Columns(props) => ("key", props),
        Key::Row => match (&m.after, &m.before) {
            (Some((_, after)), _) => ("after", after),
            (None, Some(before)) => ("before", before),
            (None, None) => return Err(arity(0)),
        },
    };
    let values = table
        .primary_key
        .iter()
        .map(|&c| {
            let column = &table.columns[c].name;
            props.get(column).filter(|v| v.get() != "null").ok_or_else(|| RowError::KeyColumn {
                index,
                table: table.name.clone(),
                part,
                column: column.clone(),
            })
        })
        .collect::<Result<Vec<&RawValue>, _>>()?;
    let text = format!("[{}]", values.iter().map(|v| v.get()).collect::<Vec<_>>().join(","));
    Ok(Cow::Owned(canonical_key(&text, &values).map_err(too_deep)?.into_owned()))
}
