//! Journal keys, values and records: the on-disk format, as pure functions over bytes.
//!
//! A row's key orders the journal (a partition's windows are read in key order):
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | HLC wall nanoseconds, big-endian |
//! | 4 | HLC logical counter, big-endian |
//! | 2 | table name length `n`, big-endian |
//! | n | table name, UTF-8, as it appeared in the changefeed |
//! | rest | primary key: the changefeed's `key` array, compact canonical JSON |
//!
//! A redelivered row has the same timestamp, table and key, so it replaces itself.
//!
//! Value:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, [`FORMAT_VERSION`] |
//! | 1 | operation: 0 upsert, 1 delete |
//! | rest | upsert: the row's `after` object, compact JSON; delete: empty |
//!
//! # Log records
//!
//! Each record is the payload of one frame of a segment file (see `journal/segment.rs`):
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, [`FORMAT_VERSION`] |
//! | 1 | kind: 0 rows, 1 resolved timestamp, 2 applied checkpoint, 3 lease epoch |
//! | 2 + n | database name, length-prefixed (big-endian `u16`) |
//! | 2 + n | schema name, length-prefixed |
//! | rows: 4, then per row 4 + k + 4 + v | row count, then each row's key and value, length-prefixed (big-endian `u32`), sorted by key, one per key |
//! | resolved, applied: 12 | the HLC, as in keys |
//! | epoch: 8 | big-endian `u64` |
//!
//! Partition names in errors and metrics: database + `0x00` + schema after `p/` (NUL cannot occur
//! in a SQL identifier).

use std::borrow::Cow;

use thiserror::Error;

use crate::batch::BatchRow;
pub use wharf_base::Partition;

use crate::bytes::{ByteReader, Truncated};
use wharf_base::hlc::{HLC_BYTES, Hlc};

/// Version byte written at the front of every value; readers refuse other versions.
pub const FORMAT_VERSION: u8 = 1;
const OP_UPSERT: u8 = 0;
const OP_DELETE: u8 = 1;

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
    #[error("journal log record is truncated")]
    LogTruncated,
    #[error("journal log record has {0} bytes after its end")]
    LogTrailing(usize),
    #[error("journal rows record holds no rows")]
    NoRows,
}

/// A row as the journal stores it, borrowed: from a [`Row`], or from a request body, so that
/// ingest copies a row's bytes once, into the journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowRef<'a> {
    pub hlc: Hlc,
    pub table: &'a str,
    /// The changefeed's `key` array as compact JSON: borrowed when the sender's text already is.
    pub key: Cow<'a, [u8]>,
    /// The `after` object as sent; `None` for a delete.
    pub after: Option<&'a [u8]>,
}

/// Anything the journal can store as a row.
pub trait RowSource {
    fn row(&self) -> RowRef<'_>;
}

impl RowSource for Row {
    fn row(&self) -> RowRef<'_> {
        RowRef { hlc: self.hlc, table: &self.table, key: Cow::Borrowed(&self.key), after: self.after.as_deref() }
    }
}

impl RowSource for RowRef<'_> {
    fn row(&self) -> RowRef<'_> {
        RowRef { hlc: self.hlc, table: self.table, key: Cow::Borrowed(&self.key), after: self.after }
    }
}

pub fn encode_key(row: &Row) -> Vec<u8> {
    let row = row.row();
    let mut key = Vec::with_capacity(key_len(&row));
    write_key(&mut key, &row);
    key
}

/// Bytes of a row's journal key and value together.
pub fn stored_len(table: &str, key: &[u8], after: Option<&[u8]>) -> usize {
    HLC_BYTES + 2 + table.len() + key.len() + 2 + after.map_or(0, <[u8]>::len)
}

fn key_len(row: &RowRef<'_>) -> usize {
    HLC_BYTES + 2 + row.table.len() + row.key.len()
}

fn write_key(out: &mut Vec<u8>, row: &RowRef<'_>) {
    out.extend_from_slice(&row.hlc.to_bytes());
    out.extend_from_slice(&(row.table.len() as u16).to_be_bytes());
    out.extend_from_slice(row.table.as_bytes());
    out.extend_from_slice(&row.key);
}

/// Compares two rows as their encoded keys compare (timestamp, table name length, table name,
/// primary key): the journal's read order.
pub fn key_order(a: &RowRef<'_>, b: &RowRef<'_>) -> std::cmp::Ordering {
    (a.hlc, a.table.len(), a.table.as_bytes(), &*a.key).cmp(&(b.hlc, b.table.len(), b.table.as_bytes(), &*b.key))
}

pub fn encode_value(row: &Row) -> Vec<u8> {
    let row = row.row();
    let mut value = Vec::with_capacity(value_len(&row));
    write_value(&mut value, &row);
    value
}

fn value_len(row: &RowRef<'_>) -> usize {
    2 + row.after.map_or(0, <[u8]>::len)
}

fn write_value(out: &mut Vec<u8>, row: &RowRef<'_>) {
    match row.after {
        Some(after) => {
            out.extend_from_slice(&[FORMAT_VERSION, OP_UPSERT]);
            out.extend_from_slice(after);
        }
        None => out.extend_from_slice(&[FORMAT_VERSION, OP_DELETE]),
    }
}

/// Decodes a journal entry; the inverse of [`encode_key`] and [`encode_value`].
pub fn decode(key: &[u8], value: &[u8]) -> Result<Row, RecordError> {
    let (hlc, table, primary_key) = decode_key(key)?;
    let after = upsert_data(value)?.map(<[u8]>::to_vec);
    Ok(Row { hlc, table: table.to_owned(), key: primary_key.to_vec(), after })
}

/// [`decode`], borrowed.
pub fn decode_parts<'a>(key: &'a [u8], value: &'a [u8]) -> Result<BatchRow<'a>, RecordError> {
    let (hlc, table, primary_key) = decode_key(key)?;
    Ok(BatchRow { hlc, table, key: primary_key, after: upsert_data(value)? })
}

/// [`decode`] of an entry read into vectors of its own: the row's key and `after` are their
/// tails, moved to the front, so reading a row allocates only its table name.
pub fn decode_owned(mut key: Vec<u8>, mut value: Vec<u8>) -> Result<Row, RecordError> {
    let (hlc, table, primary_key) = decode_key(&key)?;
    let (table, key_start) = (table.to_owned(), key.len() - primary_key.len());
    let upsert = upsert_data(&value)?.is_some();
    key.drain(..key_start);
    let after = upsert.then(|| {
        value.drain(..2);
        value
    });
    Ok(Row { hlc, table, key, after })
}

/// An entry value's `after` JSON; `None` for a delete.
fn upsert_data(value: &[u8]) -> Result<Option<&[u8]>, RecordError> {
    let (&version, rest) = value.split_first().ok_or(RecordError::EmptyValue)?;
    if version != FORMAT_VERSION {
        return Err(RecordError::Version(version));
    }
    let (&op, data) = rest.split_first().ok_or(RecordError::EmptyValue)?;
    match op {
        OP_UPSERT => Ok(Some(data)),
        OP_DELETE if data.is_empty() => Ok(None),
        OP_DELETE => Err(RecordError::DeleteWithData(data.len())),
        other => Err(RecordError::Operation(other)),
    }
}

/// Splits a partition-tree key into its timestamp, table name and primary key.
pub fn decode_key(key: &[u8]) -> Result<(Hlc, &str, &[u8]), RecordError> {
    if key.len() < HLC_BYTES + 2 {
        return Err(RecordError::ShortKey(key.len()));
    }
    let hlc = Hlc::from_bytes(&key[..HLC_BYTES]).ok_or(RecordError::ShortKey(key.len()))?;
    let table_len = u16::from_be_bytes([key[HLC_BYTES], key[HLC_BYTES + 1]]) as usize;
    let table_end = HLC_BYTES + 2 + table_len;
    let table = key.get(HLC_BYTES + 2..table_end).ok_or(RecordError::TableOverrun)?;
    let table = std::str::from_utf8(table).map_err(|_| RecordError::TableNotUtf8)?;
    Ok((hlc, table, &key[table_end..]))
}

const LOG_ROWS: u8 = 0;
const LOG_RESOLVED: u8 = 1;
const LOG_APPLIED: u8 = 2;
const LOG_EPOCH: u8 = 3;

/// A decoded write-ahead log record, borrowing from the stored bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum LogRecord<'a> {
    /// Partition-tree entries (key, value) of one request.
    Rows {
        partition: Partition,
        entries: Vec<(&'a [u8], &'a [u8])>,
    },
    Resolved {
        partition: Partition,
        hlc: Hlc,
    },
    /// Everything up to `hlc` is committed on the target (a cache of the target's checkpoint).
    Applied {
        partition: Partition,
        hlc: Hlc,
    },
    /// The newest lease epoch issued for the partition.
    Epoch {
        partition: Partition,
        epoch: u64,
    },
}

/// Longest database, schema or table name: PostgreSQL's (`NAMEDATALEN` − 1). Names come from
/// the target's catalog or, bounded to this, off the queue protocol's wire.
pub const MAX_NAME_BYTES: usize = 63;

fn push_name(out: &mut Vec<u8>, name: &str) {
    let len = u16::try_from(name.len()).expect("names are bounded long before 65,535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn log_header(kind: u8, partition: &Partition, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + partition.database.len() + partition.schema.len() + extra);
    out.extend_from_slice(&[FORMAT_VERSION, kind]);
    push_name(&mut out, &partition.database);
    push_name(&mut out, &partition.schema);
    out
}

/// The log record of one request's rows.
pub fn encode_log_rows(partition: &Partition, rows: &[RowRef<'_>]) -> Vec<u8> {
    let size = rows_len(rows);
    let mut out = log_header(LOG_ROWS, partition, 4 + size);
    out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
    for row in rows {
        out.extend_from_slice(&(key_len(row) as u32).to_be_bytes());
        write_key(&mut out, row);
        out.extend_from_slice(&(value_len(row) as u32).to_be_bytes());
        write_value(&mut out, row);
    }
    out
}

/// Bytes of the row entries of [`encode_log_rows`]'s record.
fn rows_len(rows: &[RowRef<'_>]) -> usize {
    rows.iter().map(|r| 8 + key_len(r) + value_len(r)).sum()
}

/// Bytes of [`encode_log_rows`]'s record, without encoding it.
pub fn log_rows_len(partition: &Partition, rows: &[RowRef<'_>]) -> usize {
    log_rows_header_len(partition) + rows_len(rows)
}

/// Bytes before the first row entry of [`encode_log_rows`]'s record (header and row count).
pub fn log_rows_header_len(partition: &Partition) -> usize {
    2 + 2 + partition.database.len() + 2 + partition.schema.len() + 4
}

pub fn encode_log_resolved(partition: &Partition, hlc: Hlc) -> Vec<u8> {
    let mut out = log_header(LOG_RESOLVED, partition, HLC_BYTES);
    out.extend_from_slice(&hlc.to_bytes());
    out
}

pub fn encode_log_applied(partition: &Partition, hlc: Hlc) -> Vec<u8> {
    let mut out = log_header(LOG_APPLIED, partition, HLC_BYTES);
    out.extend_from_slice(&hlc.to_bytes());
    out
}

pub fn encode_log_epoch(partition: &Partition, epoch: u64) -> Vec<u8> {
    let mut out = log_header(LOG_EPOCH, partition, 8);
    out.extend_from_slice(&epoch.to_be_bytes());
    out
}

/// Reads length-prefixed fields from a byte slice.
/// The log decoder's reads: a short one is a truncated record.
struct Cursor<'a>(ByteReader<'a>);

impl From<Truncated> for RecordError {
    fn from(_: Truncated) -> Self {
        RecordError::LogTruncated
    }
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        Ok(self.0.take(n)?)
    }
    fn u16(&mut self) -> Result<usize, RecordError> {
        Ok(self.0.u16()? as usize)
    }
    fn u32(&mut self) -> Result<usize, RecordError> {
        Ok(self.0.u32()? as usize)
    }
    fn name(&mut self) -> Result<String, RecordError> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(n)?).map(str::to_owned).map_err(|_| RecordError::TableNotUtf8)
    }
}

/// Decodes a write-ahead log record; the inverse of [`encode_log_rows`] and [`encode_log_resolved`].
pub fn decode_log(bytes: &[u8]) -> Result<LogRecord<'_>, RecordError> {
    let mut cursor = Cursor(ByteReader(bytes));
    let head = cursor.take(2).map_err(|_| RecordError::EmptyValue)?;
    if head[0] != FORMAT_VERSION {
        return Err(RecordError::Version(head[0]));
    }
    let partition = Partition::new(cursor.name()?, cursor.name()?);
    let record = match head[1] {
        LOG_ROWS => {
            let count = cursor.u32()?;
            let mut entries = Vec::with_capacity(count.min(bytes.len() / 8));
            for _ in 0..count {
                let key_len = cursor.u32()?;
                let key = cursor.take(key_len)?;
                let value_len = cursor.u32()?;
                entries.push((key, cursor.take(value_len)?));
            }
            LogRecord::Rows { partition, entries }
        }
        LOG_RESOLVED => {
            LogRecord::Resolved { partition, hlc: Hlc::from_bytes(cursor.take(HLC_BYTES)?).expect("12 bytes") }
        }
        LOG_APPLIED => {
            LogRecord::Applied { partition, hlc: Hlc::from_bytes(cursor.take(HLC_BYTES)?).expect("12 bytes") }
        }
        LOG_EPOCH => {
            LogRecord::Epoch { partition, epoch: u64::from_be_bytes(cursor.take(8)?.try_into().expect("8 bytes")) }
        }
        other => return Err(RecordError::Operation(other)),
    };
    if cursor.0.remaining() > 0 {
        return Err(RecordError::LogTrailing(cursor.0.remaining()));
    }
    Ok(record)
}

/// The first key after every entry at or below `hlc`: `(hlc.next(), "", "")`.
pub fn key_after(hlc: Hlc) -> Vec<u8> {
    hlc.next().to_bytes().to_vec()
}

/// The prefix shared by every entry of `table` at `hlc`.
pub fn table_prefix(hlc: Hlc, table: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(HLC_BYTES + 2 + table.len());
    key.extend_from_slice(&hlc.to_bytes());
    key.extend_from_slice(&(table.len() as u16).to_be_bytes());
    key.extend_from_slice(table.as_bytes());
    key
}

/// The first key after every key that starts with `prefix` (`None`: no such key exists).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
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
            assert_eq!(decode_owned(encode_key(&r), encode_value(&r)).unwrap(), r);
            let (key, value) = (encode_key(&r), encode_value(&r));
            let parts = decode_parts(&key, &value).unwrap();
            assert_eq!(parts.to_row(), r);
            assert_eq!(stored_len(parts.table, parts.key, parts.after), key.len() + value.len());
        }
        let r = row(None);
        assert_eq!(decode_owned(encode_key(&r), vec![1, 1, b'x']), Err(RecordError::DeleteWithData(1)));
        assert_eq!(decode_owned(encode_key(&r)[..5].to_vec(), vec![1, 1]), Err(RecordError::ShortKey(5)));
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
    fn log_records_round_trip() {
        let p = Partition::new("app", "public");
        let (a, b) = (row(Some(r#"{"id":1}"#)), row(None));
        let bytes = encode_log_rows(&p, &[a.row(), b.row()]);
        assert_eq!(log_rows_len(&p, &[a.row(), b.row()]), bytes.len(), "the size is known before encoding");
        let LogRecord::Rows { partition, entries } = decode_log(&bytes).unwrap() else { panic!("rows") };
        assert_eq!(partition, p);
        let decoded: Vec<Row> = entries.iter().map(|(k, v)| decode(k, v).unwrap()).collect();
        assert_eq!(decoded, vec![a, b]);
        let resolved = encode_log_resolved(&p, Hlc::new(9, 1));
        assert_eq!(decode_log(&resolved).unwrap(), LogRecord::Resolved { partition: p, hlc: Hlc::new(9, 1) });
        assert_eq!(decode_log(&resolved[..resolved.len() - 1]), Err(RecordError::LogTruncated));
    }
}
