//! Windowed reads: the rows of a window `(after, upto]` of one partition, in bounded chunks.
//!
//! Rows come in journal order `(HLC, table, key)`. A chunk holds at most `max_rows` rows and
//! about `max_bytes` bytes, and it ends on a timestamp boundary whenever it can: then
//! [`Chunk::complete_through`] names the newest timestamp whose rows have all been delivered, and
//! the applier may commit there (the target is consistent at that timestamp).
//!
//! A single timestamp larger than a chunk (an initial scan puts a whole table at one timestamp)
//! is streamed in several chunks that the applier applies in one transaction. Inside it, rows
//! come table by table so foreign keys hold across chunks: first the deletes, children before
//! parents, then the upserts, parents before children, following the table order the applier
//! gave when it opened the window. Within one timestamp a key has one version, so nothing needs
//! folding across those chunks.

use crate::hlc::Hlc;
use crate::record::{self, Row};

use super::ReadError;
use crate::record::Partition;

/// How much one chunk may hold; at least one row is always returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
}

/// One chunk of a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub rows: Vec<Row>,
    /// Every row at or below this timestamp has been delivered; `None` inside a large timestamp.
    pub complete_through: Option<Hlc>,
    /// The window is exhausted; `complete_through` is then its `upto`.
    pub last: bool,
}

/// A position inside a window, moved forward by each read. Opaque to appliers.
#[derive(Clone, Debug)]
pub struct WindowCursor {
    next_key: Vec<u8>,
    end_key: Vec<u8>,
    upto: Hlc,
    /// Table names, parents before children (the applier's catalog order).
    table_order: Vec<String>,
    state: State,
}

#[derive(Clone, Debug)]
enum State {
    Merged,
    /// Serving one large timestamp table by table.
    Ordered(OrderedTimestamp),
    Done,
}

#[derive(Clone, Debug)]
struct OrderedTimestamp {
    hlc: Hlc,
    /// Tables present at `hlc`, parents first.
    tables: Vec<String>,
    /// `0..n`: deletes of `tables[n - 1 - step]`; `n..2n`: upserts of `tables[step - n]`.
    step: usize,
    resume: Option<Vec<u8>>,
}

impl WindowCursor {
    pub fn new(after: Hlc, upto: Hlc, table_order: Vec<String>) -> Self {
        let state = if after >= upto { State::Done } else { State::Merged };
        WindowCursor { next_key: record::key_after(after), end_key: record::key_after(upto), upto, table_order, state }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// Rows and bytes gathered so far in one chunk.
struct Gather {
    rows: Vec<Row>,
    bytes: usize,
    limits: ChunkLimits,
}

impl Gather {
    fn new(limits: ChunkLimits) -> Self {
        Gather { rows: Vec::new(), bytes: 0, limits }
    }

    fn full(&self) -> bool {
        !self.rows.is_empty() && (self.rows.len() >= self.limits.max_rows || self.bytes >= self.limits.max_bytes)
    }

    fn push(&mut self, row: Row) {
        self.bytes += row.table.len() + row.key.len() + row.after.as_ref().map_or(0, Vec::len) + 16;
        self.rows.push(row);
    }
}

/// Reads the next chunk of `cursor`'s window from `tree`.
pub(super) fn read_chunk(
    tree: &sled::Tree,
    partition: &Partition,
    cursor: &mut WindowCursor,
    limits: ChunkLimits,
) -> Result<Chunk, ReadError> {
    let damaged = |source| ReadError::Damaged { partition: partition.clone(), source };
    match cursor.state {
        State::Done => Ok(Chunk { rows: Vec::new(), complete_through: Some(cursor.upto), last: true }),
        State::Merged => read_merged(tree, cursor, limits, &damaged),
        State::Ordered(_) => read_ordered(tree, cursor, limits, &damaged),
    }
}

fn read_merged(
    tree: &sled::Tree,
    cursor: &mut WindowCursor,
    limits: ChunkLimits,
    damaged: &dyn Fn(record::RecordError) -> ReadError,
) -> Result<Chunk, ReadError> {
    let mut gather = Gather::new(limits);
    // The key of the first row of the newest timestamp gathered, to resume there when cut.
    let mut newest_start: Vec<u8> = Vec::new();
    for item in super::parts::joined(tree.range(cursor.next_key.clone()..cursor.end_key.clone())) {
        let (key, value) = item?;
        let row = record::decode(&key, &value).map_err(damaged)?;
        let newest = gather.rows.last().map(|r| r.hlc);
        if gather.full() {
            let newest = newest.expect("a full chunk has rows");
            if row.hlc != newest {
                cursor.next_key = key.to_vec();
                return Ok(Chunk { rows: gather.rows, complete_through: Some(newest), last: false });
            }
            let split = gather.rows.partition_point(|r| r.hlc < newest);
            if split > 0 {
                let through = gather.rows[split - 1].hlc;
                gather.rows.truncate(split);
                cursor.next_key = newest_start;
                return Ok(Chunk { rows: gather.rows, complete_through: Some(through), last: false });
            }
            // One timestamp fills the chunk: serve it table by table instead.
            let ordered = OrderedTimestamp::start(tree, newest, &cursor.table_order, damaged)?;
            cursor.state = State::Ordered(ordered);
            return read_ordered(tree, cursor, limits, damaged);
        }
        if newest != Some(row.hlc) {
            newest_start = key.to_vec();
        }
        gather.push(row);
    }
    cursor.state = State::Done;
    Ok(Chunk { rows: gather.rows, complete_through: Some(cursor.upto), last: true })
}

fn read_ordered(
    tree: &sled::Tree,
    cursor: &mut WindowCursor,
    limits: ChunkLimits,
    damaged: &dyn Fn(record::RecordError) -> ReadError,
) -> Result<Chunk, ReadError> {
    let State::Ordered(ordered) = &mut cursor.state else { unreachable!("read_ordered in another state") };
    let mut gather = Gather::new(limits);
    let n = ordered.tables.len();
    while ordered.step < 2 * n {
        let deletes = ordered.step < n;
        let table = if deletes { &ordered.tables[n - 1 - ordered.step] } else { &ordered.tables[ordered.step - n] };
        let prefix = record::table_prefix(ordered.hlc, table);
        let start = ordered.resume.take().unwrap_or_else(|| prefix.clone());
        let end = record::prefix_end(&prefix).unwrap_or_else(|| cursor.end_key.clone());
        for item in super::parts::joined(tree.range(start..end)) {
            let (key, value) = item?;
            if gather.full() {
                ordered.resume = Some(key.to_vec());
                return Ok(Chunk { rows: gather.rows, complete_through: None, last: false });
            }
            let row = record::decode(&key, &value).map_err(damaged)?;
            if row.after.is_none() == deletes {
                gather.push(row);
            }
        }
        ordered.step += 1;
    }
    let hlc = ordered.hlc;
    cursor.next_key = record::key_after(hlc);
    cursor.state = State::Merged;
    Ok(Chunk { rows: gather.rows, complete_through: Some(hlc), last: false })
}

impl OrderedTimestamp {
    /// Finds the tables present at `hlc` (one seek per table) and orders them parents first.
    fn start(
        tree: &sled::Tree,
        hlc: Hlc,
        table_order: &[String],
        damaged: &dyn Fn(record::RecordError) -> ReadError,
    ) -> Result<OrderedTimestamp, ReadError> {
        let end = record::key_after(hlc);
        let mut start = hlc.to_bytes().to_vec();
        let mut tables: Vec<String> = Vec::new();
        while let Some(item) = tree.range(start.clone()..end.clone()).next() {
            let (key, _) = item?;
            let (_, table, _) = record::decode_key(&key).map_err(damaged)?;
            let Some(next) = record::prefix_end(&record::table_prefix(hlc, table)) else { break };
            tables.push(table.to_owned());
            start = next;
        }
        let rank = |name: &str| table_order.iter().position(|t| t.eq_ignore_ascii_case(name)).unwrap_or(usize::MAX);
        tables.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        Ok(OrderedTimestamp { hlc, tables, step: 0, resume: None })
    }
}
