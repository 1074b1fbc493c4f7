//! Journal keys and values: the on-disk format, as pure functions over bytes.
//!
//! Every partition (one target `db.schema`) has its own sled tree, named `p/` + the partition's
//! encoded name, so a partition's entries are contiguous and their key order is the apply order.
//!
//! Key (inside a partition tree):
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | HLC wall nanoseconds, big-endian |
//! | 4 | HLC logical counter, big-endian |
//! | 2 | table name length `n`, big-endian |
//! | n | table name, UTF-8, as it appeared in the changefeed |
//! | rest | primary key: the changefeed's `key` array, compact canonical JSON |
//!
//! A redelivered row has the same timestamp, table and key, so it overwrites itself.
//!
//! Value:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, [`FORMAT_VERSION`] |
//! | 1 | operation: 0 upsert, 1 delete |
//! | rest | upsert: the row's `after` object, compact JSON; delete: empty |
//!
//! Partition tree names: `p/` + database + `0x00` + schema (NUL cannot occur in a SQL identifier).

use thiserror::Error;

use crate::hlc::{HLC_BYTES, Hlc};

/// Version byte written at the front of every value; readers refuse other versions.
pub const FORMAT_VERSION: u8 = 1;
const OP_UPSERT: u8 = 0;
const OP_DELETE: u8 = 1;
const PARTITION_PREFIX: &[u8] = b"p/";

/// One target schema: the unit of resolved timestamps, leasing and transactional apply.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub database: String,
    pub schema: String,
}

impl Partition {
    pub fn new(database: impl Into<String>, schema: impl Into<String>) -> Self {
        Partition { database: database.into(), schema: schema.into() }
    }

    pub fn tree_name(&self) -> Vec<u8> {
        let mut name = PARTITION_PREFIX.to_vec();
        name.extend_from_slice(self.database.as_bytes());
        name.push(0);
        name.extend_from_slice(self.schema.as_bytes());
        name
    }

    pub fn from_tree_name(name: &[u8]) -> Option<Partition> {
        let rest = name.strip_prefix(PARTITION_PREFIX)?;
        let split = rest.iter().position(|b| *b == 0)?;
        let database = std::str::from_utf8(&rest[..split]).ok()?;
        let schema = std::str::from_utf8(&rest[split + 1..]).ok()?;
        Some(Partition::new(database, schema))
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.database, self.schema)
    }
}

/// One row version from a changefeed, validated and ready to journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub hlc: Hlc,
    pub table: String,
    /// The changefeed's `key` array as compact JSON.
    pub key: Vec<u8>,
    /// The `after` object as compact JSON; `None` for a delete.
    pub after: Option<Vec<u8>>,
}

/// Why stored bytes could not be decoded: the journal is damaged or from another version.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("journal key is {0} bytes, shorter than its header")]
    ShortKey(usize),
    #[error("journal key's table name runs past the end of the key")]
    TableOverrun,
    #[error("journal key's table name is not UTF-8")]
    TableNotUtf8,
    #[error("journal value is empty")]
    EmptyValue,
    #[error("journal value has format version {0}; this build reads version {FORMAT_VERSION}")]
    Version(u8),
    #[error("journal value has unknown operation {0}")]
    Operation(u8),
    #[error("journal delete carries {0} bytes of row data")]
    DeleteWithData(usize),
}

pub fn encode_key(row: &Row) -> Vec<u8> {
    let table = row.table.as_bytes();
    let mut key = Vec::with_capacity(HLC_BYTES + 2 + table.len() + row.key.len());
    key.extend_from_slice(&row.hlc.to_bytes());
    key.extend_from_slice(&(table.len() as u16).to_be_bytes());
    key.extend_from_slice(table);
    key.extend_from_slice(&row.key);
    key
}

pub fn encode_value(row: &Row) -> Vec<u8> {
    match &row.after {
        Some(after) => {
            let mut value = Vec::with_capacity(2 + after.len());
            value.extend_from_slice(&[FORMAT_VERSION, OP_UPSERT]);
            value.extend_from_slice(after);
            value
        }
        None => vec![FORMAT_VERSION, OP_DELETE],
    }
}

/// Decodes a journal entry; the inverse of [`encode_key`] and [`encode_value`].
pub fn decode(key: &[u8], value: &[u8]) -> Result<Row, RecordError> {
    if key.len() < HLC_BYTES + 2 {
        return Err(RecordError::ShortKey(key.len()));
    }
    let hlc = Hlc::from_bytes(&key[..HLC_BYTES]).ok_or(RecordError::ShortKey(key.len()))?;
    let table_len = u16::from_be_bytes([key[HLC_BYTES], key[HLC_BYTES + 1]]) as usize;
    let table_end = HLC_BYTES + 2 + table_len;
    let table = key.get(HLC_BYTES + 2..table_end).ok_or(RecordError::TableOverrun)?;
    let table = std::str::from_utf8(table).map_err(|_| RecordError::TableNotUtf8)?;
    let (&version, rest) = value.split_first().ok_or(RecordError::EmptyValue)?;
    if version != FORMAT_VERSION {
        return Err(RecordError::Version(version));
    }
    let (&op, data) = rest.split_first().ok_or(RecordError::EmptyValue)?;
    let after = match op {
        OP_UPSERT => Some(data.to_vec()),
        OP_DELETE if data.is_empty() => None,
        OP_DELETE => return Err(RecordError::DeleteWithData(data.len())),
        other => return Err(RecordError::Operation(other)),
    };
    Ok(Row { hlc, table: table.to_owned(), key: key[table_end..].to_vec(), after })
}

/// The first key after every entry at or below `hlc`: `(hlc.next(), "", "")`.
pub fn key_after(hlc: Hlc) -> Vec<u8> {
    hlc.next().to_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(after: Option<&str>) -> Row {
        Row {
            hlc: Hlc::new(7, 3),
            table: "orders".into(),
            key: b"[1,1002]".to_vec(),
            after: after.map(|a| a.as_bytes().to_vec()),
        }
    }

    #[test]
    fn upserts_and_deletes_round_trip() {
        for r in [row(Some(r#"{"id":1}"#)), row(None)] {
            assert_eq!(decode(&encode_key(&r), &encode_value(&r)).unwrap(), r);
        }
    }

    #[test]
    fn another_format_version_is_refused() {
        let r = row(None);
        assert_eq!(decode(&encode_key(&r), &[2, 1]), Err(RecordError::Version(2)));
    }

    #[test]
    fn truncated_keys_are_refused() {
        let key = encode_key(&row(None));
        assert_eq!(decode(&key[..5], &[1, 1]), Err(RecordError::ShortKey(5)));
        assert_eq!(decode(&key[..16], &[1, 1]), Err(RecordError::TableOverrun));
    }

    #[test]
    fn partition_names_round_trip() {
        let p = Partition::new("app", "public");
        assert_eq!(Partition::from_tree_name(&p.tree_name()), Some(p));
        assert_eq!(Partition::from_tree_name(b"meta"), None);
    }
}
