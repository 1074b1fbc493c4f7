//! A chunk's rows packed into one buffer: what the journal reads, the wire carries and the
//! applier folds, without an allocation per row.
//!
//! Each row is a fixed-size [`Span`] (timestamp, table number, lengths) over `bytes`, where its key
//! and then its `after` follow the previous row's; table names are kept once each.

use crate::record::Row;
use wharf_base::hlc::Hlc;

/// `after_len` of a delete.
const DELETE: u32 = u32::MAX;

/// Rows in journal order, packed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowBatch {
    tables: Vec<String>,
    spans: Vec<Span>,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub hlc: Hlc,
    pub table: u32,
    pub key_len: u32,
    /// [`DELETE`] for a delete.
    pub after_len: u32,
}

impl Span {
    fn len(&self) -> usize {
        self.key_len as usize + if self.after_len == DELETE { 0 } else { self.after_len as usize }
    }
}

/// One row of a [`RowBatch`], borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRow<'a> {
    pub hlc: Hlc,
    pub table: &'a str,
    /// The changefeed's `key` array as compact JSON.
    pub key: &'a [u8],
    /// The `after` object; `None` for a delete.
    pub after: Option<&'a [u8]>,
}

/// Why a batch's parts do not fit together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("a row names table {0}, beyond the batch's tables")]
    Table(u32),
    #[error("the rows' lengths add up to {spans} bytes, the batch holds {bytes}")]
    Length { spans: u64, bytes: usize },
}

impl RowBatch {
    pub fn new() -> Self {
        RowBatch::default()
    }

    /// An empty batch with room for `rows` rows of `bytes` bytes of keys and data: growing by
    /// doubling would copy a chunk's bytes about twice more.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        RowBatch { tables: Vec::new(), spans: Vec::with_capacity(rows), bytes: Vec::with_capacity(bytes) }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of keys and row data held.
    pub fn data_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn push(&mut self, row: BatchRow<'_>) {
        let table = self.table_number(row.table);
        let after_len = row.after.map_or(DELETE, |a| u32::try_from(a.len()).expect("a row under 4 GiB"));
        let key_len = u32::try_from(row.key.len()).expect("a key under 4 GiB");
        self.bytes.extend_from_slice(row.key);
        self.bytes.extend_from_slice(row.after.unwrap_or_default());
        self.spans.push(Span { hlc: row.hlc, table, key_len, after_len });
    }

    /// The number of `table`, added if new. Rows come table after table, so the last one added
    /// is looked at first.
    fn table_number(&mut self, table: &str) -> u32 {
        if let Some(at) = self.tables.iter().rposition(|t| t == table) {
            return at as u32;
        }
        self.tables.push(table.to_owned());
        (self.tables.len() - 1) as u32
    }

    /// The rows in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchRow<'_>> + '_ {
        let mut at = 0;
        self.spans.iter().map(move |span| {
            let row = self.row_at(span, at);
            at += span.len();
            row
        })
    }

    fn row_at(&self, span: &Span, at: usize) -> BatchRow<'_> {
        let key_end = at + span.key_len as usize;
        let after = (span.after_len != DELETE).then(|| &self.bytes[key_end..key_end + span.after_len as usize]);
        BatchRow { hlc: span.hlc, table: &self.tables[span.table as usize], key: &self.bytes[at..key_end], after }
    }

    /// Timestamps of the rows, in order.
    pub fn hlcs(&self) -> impl Iterator<Item = Hlc> + '_ {
        self.spans.iter().map(|s| s.hlc)
    }

    /// The timestamp of the last row.
    pub fn last_hlc(&self) -> Option<Hlc> {
        self.spans.last().map(|s| s.hlc)
    }

    /// Splits off the rows from `at` on (the tables stay in both).
    pub fn split_off(&mut self, at: usize) -> RowBatch {
        let start: usize = self.spans[..at].iter().map(Span::len).sum();
        RowBatch { tables: self.tables.clone(), spans: self.spans.split_off(at), bytes: self.bytes.split_off(start) }
    }

    /// Owned copies of the rows (tests and tools).
    pub fn to_rows(&self) -> Vec<Row> {
        self.iter().map(BatchRow::to_row).collect()
    }

    /// The batch's parts, for the wire.
    pub(crate) fn parts(&self) -> (&[String], &[Span], &[u8]) {
        (&self.tables, &self.spans, &self.bytes)
    }

    /// The buffer that held the keys and rows, emptied, to read the next chunk into.
    pub fn into_buffer(self) -> Vec<u8> {
        let mut bytes = self.bytes;
        bytes.clear();
        bytes
    }

    /// The batch's parts, owned: the wire sends `bytes` without copying them.
    pub(crate) fn into_parts(self) -> (Vec<String>, Vec<Span>, Vec<u8>) {
        (self.tables, self.spans, self.bytes)
    }

    /// A batch from its parts, checked to fit together.
    pub(crate) fn from_parts(tables: Vec<String>, spans: Vec<Span>, bytes: Vec<u8>) -> Result<Self, BatchError> {
        if let Some(bad) = spans.iter().find(|s| s.table as usize >= tables.len()) {
            return Err(BatchError::Table(bad.table));
        }
        let total: u64 = spans.iter().map(|s| s.len() as u64).sum();
        if total != bytes.len() as u64 {
            return Err(BatchError::Length { spans: total, bytes: bytes.len() });
        }
        Ok(RowBatch { tables, spans, bytes })
    }
}

impl Row {
    /// The row borrowed, as a batch holds it.
    pub fn view(&self) -> BatchRow<'_> {
        BatchRow { hlc: self.hlc, table: &self.table, key: &self.key, after: self.after.as_deref() }
    }
}

impl BatchRow<'_> {
    pub fn to_row(self) -> Row {
        Row {
            hlc: self.hlc,
            table: self.table.to_owned(),
            key: self.key.to_vec(),
            after: self.after.map(<[u8]>::to_vec),
        }
    }
}

impl FromIterator<Row> for RowBatch {
    fn from_iter<I: IntoIterator<Item = Row>>(rows: I) -> Self {
        let mut batch = RowBatch::new();
        for row in rows {
            batch.push(row.view());
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let row = |w, table: &str, key: &str, after: Option<&str>| Row {
            hlc: Hlc::new(w, 0),
            table: table.into(),
            key: key.as_bytes().to_vec(),
            after: after.map(|a| a.as_bytes().to_vec()),
        };
        vec![
            row(1, "a", "[1]", Some(r#"{"k":1}"#)),
            row(1, "b", "[2]", None),
            row(2, "a", "[3]", Some("{}")),
            row(3, "b", "[\"x\"]", Some(r#"{"k":"x"}"#)),
            row(3, "b", "[4]", None),
        ]
    }

    #[test]
    fn rows_come_back_as_pushed() {
        let batch: RowBatch = rows().into_iter().collect();
        assert_eq!(batch.len(), 5);
        assert_eq!(batch.to_rows(), rows());
        assert_eq!(batch.hlcs().map(|h| h.wall).collect::<Vec<_>>(), [1, 1, 2, 3, 3]);
        assert_eq!(batch.parts().0, ["a", "b"]);
    }

    #[test]
    fn split_off_keeps_both_halves_whole() {
        for at in 0..=5 {
            let mut head: RowBatch = rows().into_iter().collect();
            let tail = head.split_off(at);
            assert_eq!(head.to_rows(), rows()[..at]);
            assert_eq!(tail.to_rows(), rows()[at..]);
        }
    }

    #[test]
    fn parts_that_do_not_fit_are_refused() {
        let batch: RowBatch = rows().into_iter().collect();
        let (tables, spans, bytes) = batch.parts();
        let (tables, spans, bytes) = (tables.to_vec(), spans.to_vec(), bytes.to_vec());
        let rebuilt = RowBatch::from_parts(tables.clone(), spans.clone(), bytes.clone());
        assert_eq!(rebuilt.as_ref(), Ok(&batch));
        let short = RowBatch::from_parts(tables.clone(), spans.clone(), bytes[1..].to_vec());
        assert_eq!(short, Err(BatchError::Length { spans: bytes.len() as u64, bytes: bytes.len() - 1 }));
        let mut bad = spans;
        bad[0].table = 2;
        assert_eq!(RowBatch::from_parts(tables, bad, bytes), Err(BatchError::Table(2)));
    }
}
