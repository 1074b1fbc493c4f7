//! Windowed reads: the rows of a window `(after, upto]` of one partition, in bounded chunks.
//!
//! Rows come in journal order `(HLC, table, key)`, merged from the runs (journaled requests) that
//! overlap the window. A chunk holds at most `max_rows` rows and about `max_bytes` bytes, and it
//! ends on a timestamp boundary whenever it can: then [`Chunk::complete_through`] names the newest
//! timestamp whose rows have all been delivered, and the applier may commit there (the target is
//! consistent at that timestamp).
//!
//! A single timestamp larger than a chunk (an initial scan puts a whole table at one timestamp)
//! is streamed in several chunks that the applier applies in one transaction. Inside it, rows
//! come table by table so foreign keys hold across chunks: first the deletes, children before
//! parents, then the upserts, parents before children, following the table order the applier
//! gave when it opened the window. Within one timestamp a key has one version, so nothing needs
//! folding across those chunks.
//!
//! The cursor keeps its merge between chunks, so a window is read once however it is chunked; its
//! memory is the merge's buffers (8 MiB shared by the runs) plus at most one chunk of rows.

use std::collections::VecDeque;
use std::sync::Arc;

use super::index::Run;
use super::merge::{Entry, Merge, ReadFailure};
use super::{ReadError, Shared};
use crate::batch::{BatchRow, RowBatch};
use crate::record::{self, Partition, Row};
use wharf_base::hlc::Hlc;

/// How much one chunk may hold; at least one row is always returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    pub max_rows: usize,
    pub max_bytes: usize,
}

/// One chunk of a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub rows: RowBatch,
    /// Every row at or below this timestamp has been delivered; `None` inside a large timestamp.
    pub complete_through: Option<Hlc>,
    /// The window is exhausted; `complete_through` is then its `upto`.
    pub last: bool,
}

/// A position inside a window, moved forward by each read. Opaque to appliers.
#[derive(Debug)]
pub struct WindowCursor {
    after: Hlc,
    upto: Hlc,
    /// Table names, parents before children (the applier's catalog order).
    table_order: Vec<String>,
    /// Only these tables' rows (a foreign-key group's window); `None`: every table.
    only: Option<Arc<Tables>>,
    state: State,
}

/// A set of table names, matched as the catalog matches them (exactly, else ignoring ASCII case).
#[derive(Debug)]
pub struct Tables(Vec<String>);

impl Tables {
    pub fn new(names: Vec<String>) -> Self {
        Tables(names)
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|t| t == name) || self.0.iter().any(|t| t.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug)]
enum State {
    Start,
    Reading(Box<Reading>),
    Done,
}

#[derive(Debug)]
struct Reading {
    runs: Vec<Arc<Run>>,
    only: Option<Arc<Tables>>,
    main: Merge,
    /// Rows taken from `main` but not delivered yet; they come before `main`'s.
    carry: VecDeque<Row>,
    /// Rows at or below this were delivered by an [`OrderedTimestamp`]: skipped.
    skip_through: Option<Hlc>,
    ordered: Option<OrderedTimestamp>,
}

/// Serving one large timestamp table by table.
#[derive(Debug)]
struct OrderedTimestamp {
    hlc: Hlc,
    /// Tables present at `hlc`, parents first.
    tables: Vec<String>,
    /// `0..n`: deletes of `tables[n - 1 - step]`; `n..2n`: upserts of `tables[step - n]`.
    step: usize,
    merge: Option<Merge>,
}

impl WindowCursor {
    pub fn new(after: Hlc, upto: Hlc, table_order: Vec<String>) -> Self {
        let state = if after >= upto { State::Done } else { State::Start };
        WindowCursor { after, upto, table_order, only: None, state }
    }

    /// A window of only `tables`' rows: runs without any of them are not read, and other tables'
    /// rows in the runs read are skipped.
    pub fn only(mut self, tables: Tables) -> Self {
        self.only = Some(Arc::new(tables));
        self
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// Most rows and bytes a chunk reserves room for before it holds any.
const MAX_RESERVED_ROWS: usize = 1 << 16;
const MAX_RESERVED_BYTES: usize = 8 << 20;

/// Rows and bytes gathered so far in one chunk.
struct Gather {
    rows: RowBatch,
    bytes: usize,
    limits: ChunkLimits,
}

impl Gather {
    fn new(limits: ChunkLimits) -> Self {
        // Untouched capacity costs address space only.
        let rows =
            RowBatch::with_capacity(limits.max_rows.min(MAX_RESERVED_ROWS), limits.max_bytes.min(MAX_RESERVED_BYTES));
        Gather { rows, bytes: 0, limits }
    }

    fn full(&self) -> bool {
        !self.rows.is_empty() && (self.rows.len() >= self.limits.max_rows || self.bytes >= self.limits.max_bytes)
    }

    fn push(&mut self, row: BatchRow<'_>) {
        self.bytes += row.table.len() + row.key.len() + row.after.map_or(0, <[u8]>::len) + 16;
        self.rows.push(row);
    }

    fn push_taken(&mut self, taken: &Taken) {
        match taken {
            Taken::Carried(row) => self.push(row.view()),
            Taken::Read(_, (key, value)) => self.push(record::decode_parts(key, value).expect("checked when read")),
        }
    }
}

/// A row taken from the window: carried over from the last chunk, or just read (and checked).
enum Taken {
    Carried(Row),
    Read(Hlc, Entry),
}

impl Taken {
    fn hlc(&self) -> Hlc {
        match self {
            Taken::Carried(row) => row.hlc,
            Taken::Read(hlc, _) => *hlc,
        }
    }

    fn into_row(self) -> Row {
        match self {
            Taken::Carried(row) => row,
            Taken::Read(_, (key, value)) => record::decode_owned(key, value).expect("checked when read"),
        }
    }
}

/// Turns a failed read into the error an applier sees.
struct Failing<'a>(&'a Partition);

impl Failing<'_> {
    fn read(&self, failure: ReadFailure) -> ReadError {
        match failure {
            ReadFailure::Io(source) => ReadError::Io(source),
            ReadFailure::Damaged(detail) => ReadError::DamagedRun { partition: self.0.clone(), detail },
        }
    }

    fn decode(&self, source: record::RecordError) -> ReadError {
        ReadError::Damaged { partition: self.0.clone(), source }
    }
}

/// Reads the next chunk of `cursor`'s window.
pub(super) fn read_chunk(
    shared: &Shared,
    partition: &Partition,
    cursor: &mut WindowCursor,
    limits: ChunkLimits,
) -> Result<Chunk, ReadError> {
    let failing = Failing(partition);
    if let State::Start = cursor.state {
        let mut runs = shared.index().runs_in(partition, cursor.after, cursor.upto);
        if let Some(only) = &cursor.only {
            runs.retain(|run| run.tables.iter().any(|t| only.contains(&t.name)));
        }
        // Rows are read only from segments that passed their check.
        shared.verification.wait_for(runs.iter().map(|r| r.segment)).map_err(ReadError::Unverified)?;
        let start = record::key_after(cursor.after);
        let main = Merge::new(&runs, &start, record::key_after(cursor.upto)).map_err(|f| failing.read(f))?;
        let only = cursor.only.clone();
        let reading = Reading { runs, only, main, carry: VecDeque::new(), skip_through: None, ordered: None };
        cursor.state = State::Reading(Box::new(reading));
    }
    let upto = cursor.upto;
    let chunk = match &mut cursor.state {
        State::Start => unreachable!("started above"),
        State::Done => return Ok(Chunk { rows: RowBatch::new(), complete_through: Some(upto), last: true }),
        State::Reading(reading) if reading.ordered.is_some() => read_ordered(reading, upto, limits, &failing)?,
        State::Reading(reading) => read_merged(reading, &cursor.table_order, upto, limits, &failing)?,
    };
    if chunk.last {
        cursor.state = State::Done;
    }
    Ok(chunk)
}

impl Reading {
    fn next_row(&mut self, failing: &Failing) -> Result<Option<Taken>, ReadError> {
        loop {
            let row = match self.carry.pop_front() {
                Some(row) => Taken::Carried(row),
                None => match self.main.next().map_err(|f| failing.read(f))? {
                    Some(entry) => {
                        let row = record::decode_parts(&entry.0, &entry.1).map_err(|e| failing.decode(e))?;
                        if self.only.as_ref().is_some_and(|only| !only.contains(row.table)) {
                            continue;
                        }
                        Taken::Read(row.hlc, entry)
                    }
                    None => return Ok(None),
                },
            };
            if self.skip_through.is_none_or(|skip| row.hlc() > skip) {
                return Ok(Some(row));
            }
        }
    }
}

fn read_merged(
    reading: &mut Reading,
    table_order: &[String],
    upto: Hlc,
    limits: ChunkLimits,
    failing: &Failing,
) -> Result<Chunk, ReadError> {
    let mut gather = Gather::new(limits);
    while let Some(row) = reading.next_row(failing)? {
        if !gather.full() {
            gather.push_taken(&row);
            continue;
        }
        let newest = gather.rows.last_hlc().expect("a full chunk has rows");
        if row.hlc() != newest {
            reading.carry.push_front(row.into_row());
            return Ok(Chunk { rows: gather.rows, complete_through: Some(newest), last: false });
        }
        let split = gather.rows.hlcs().take_while(|hlc| *hlc < newest).count();
        if split > 0 {
            let through = gather.rows.hlcs().nth(split - 1).expect("split within the chunk");
            let tail = gather.rows.split_off(split);
            reading.carry.push_front(row.into_row());
            for row in tail.to_rows().into_iter().rev() {
                reading.carry.push_front(row);
            }
            return Ok(Chunk { rows: gather.rows, complete_through: Some(through), last: false });
        }
        // One timestamp fills the chunk: serve it table by table instead, reading it again.
        reading.carry.retain(|r| r.hlc > newest);
        reading.skip_through = Some(newest);
        reading.ordered = Some(OrderedTimestamp::start(&reading.runs, newest, table_order, reading.only.as_deref()));
        return read_ordered(reading, upto, limits, failing);
    }
    Ok(Chunk { rows: gather.rows, complete_through: Some(upto), last: true })
}

fn read_ordered(reading: &mut Reading, upto: Hlc, limits: ChunkLimits, failing: &Failing) -> Result<Chunk, ReadError> {
    let ordered = reading.ordered.as_mut().expect("read_ordered while serving a timestamp");
    let mut gather = Gather::new(limits);
    let n = ordered.tables.len();
    while ordered.step < 2 * n {
        let deletes = ordered.step < n;
        let table = if deletes { &ordered.tables[n - 1 - ordered.step] } else { &ordered.tables[ordered.step - n] };
        if ordered.merge.is_none() {
            let prefix = record::table_prefix(ordered.hlc, table);
            let end = record::prefix_end(&prefix).unwrap_or_else(|| record::key_after(upto));
            // Every run with the table, whatever its operations: a newer copy of a key replaces
            // an older one even when one is a delete and the other an upsert.
            let runs: Vec<Arc<Run>> = reading
                .runs
                .iter()
                .filter(|r| r.min <= ordered.hlc && ordered.hlc <= r.max && r.tables.iter().any(|t| t.name == *table))
                .cloned()
                .collect();
            ordered.merge = Some(Merge::new(&runs, &prefix, end).map_err(|f| failing.read(f))?);
        }
        let merge = ordered.merge.as_mut().expect("made above");
        loop {
            if gather.full() {
                return Ok(Chunk { rows: gather.rows, complete_through: None, last: false });
            }
            let Some((key, value)) = merge.next().map_err(|f| failing.read(f))? else { break };
            let row = record::decode_parts(&key, &value).map_err(|e| failing.decode(e))?;
            if row.after.is_none() == deletes {
                gather.push(row);
            }
        }
        ordered.merge = None;
        ordered.step += 1;
    }
    let hlc = ordered.hlc;
    reading.ordered = None;
    Ok(Chunk { rows: gather.rows, complete_through: Some(hlc), last: false })
}

impl OrderedTimestamp {
    /// The tables of the runs that span `hlc` (of `only`, when given), parents first.
    fn start(runs: &[Arc<Run>], hlc: Hlc, table_order: &[String], only: Option<&Tables>) -> OrderedTimestamp {
        let mut tables: Vec<String> = Vec::new();
        for run in runs.iter().filter(|r| r.min <= hlc && hlc <= r.max) {
            for table in &run.tables {
                if !tables.contains(&table.name) && only.is_none_or(|only| only.contains(&table.name)) {
                    tables.push(table.name.clone());
                }
            }
        }
        let rank = |name: &str| table_order.iter().position(|t| t.eq_ignore_ascii_case(name)).unwrap_or(usize::MAX);
        tables.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        OrderedTimestamp { hlc, tables, step: 0, merge: None }
    }
}
