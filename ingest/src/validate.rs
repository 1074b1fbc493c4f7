//! Checking decoded messages against the target catalog and turning them into journal rows. Pure.

use thiserror::Error;
use wharf_base::json::{MAX_KEY_BYTES, MAX_NESTING, canonical_key};
use wharf_queue::RowRef;
use wharf_targetdb::catalog::SchemaCatalog;

use crate::decode::Message;

/// Why a body's rows do not fit the target (HTTP 400, after one catalog refresh).
#[derive(Debug, Error, PartialEq)]
pub enum RowError {
    #[error("message {index}: table {table:?} does not exist in target schema {schema:?}")]
    UnknownTable { index: usize, table: String, schema: String },
    #[error("message {index}: table {table:?}: key has {got} values but the primary key has {want} columns")]
    KeyArity { index: usize, table: String, got: usize, want: usize },
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
pub fn to_rows<'a>(
    messages: &'a [Message<'a>],
    schema: &str,
    catalog: &'a SchemaCatalog,
) -> Result<Vec<RowRef<'a>>, RowError> {
    let mut rows = Vec::with_capacity(messages.len());
    for (index, m) in messages.iter().enumerate() {
        let table = catalog.table(&m.table).ok_or_else(|| RowError::UnknownTable {
            index,
            table: m.table.to_string(),
            schema: schema.to_owned(),
        })?;
        if m.key.len() != table.primary_key.len() {
            return Err(RowError::KeyArity {
                index,
                table: table.name.clone(),
                got: m.key.len(),
                want: table.primary_key.len(),
            });
        }
        if let Some((_, props)) = &m.after
            && let Some((column, _)) = props.0.iter().find(|(c, _)| table.column_index(c).is_none())
        {
            return Err(RowError::UnknownColumn { index, table: table.name.clone(), column: column.to_string() });
        }
        let key =
            canonical_key(m.key_text, &m.key).map_err(|e| RowError::TooDeep { index, part: "key", depth: e.depth })?;
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
            after: m.after.as_ref().map(|(raw, _)| raw.get().as_bytes()),
        });
    }
    Ok(rows)
}
