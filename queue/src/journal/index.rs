//! The journal's in-memory index: per partition, where its unapplied rows are (one [`Run`] per
//! journaled request) and its resolved, applied and epoch marks; per segment, how many runs still
//! live in it. Rebuilt from the segments at open; about 150–200 bytes per journaled request (a
//! [`Run`] with its tables' names, behind an `Arc`), never per row.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use crate::record::{Partition, RowRef};
use wharf_base::hlc::Hlc;

/// One request's rows in a segment: entries sorted by key, one per key.
#[derive(Debug)]
pub(crate) struct Run {
    /// The record's sequence number; a later run's entry wins over an earlier one with its key.
    pub seq: u64,
    pub segment: u64,
    /// File offsets of the first entry and of the end of the last.
    pub start: u64,
    pub end: u64,
    pub min: Hlc,
    pub max: Hlc,
    /// Rows in the run (for status: counted from the index, never read).
    pub rows: u32,
    pub tables: Vec<TableOps>,
    pub file: Arc<File>,
}

impl Run {
    /// The run of the rows record with sequence number `seq` whose payload, `len` bytes, starts
    /// at `payload_at` in `segment` (read through `file`).
    pub fn new(
        seq: u64,
        segment: u64,
        file: Arc<File>,
        partition: &Partition,
        (payload_at, len): (u64, usize),
        shape: RunShape,
    ) -> Run {
        Run {
            seq,
            segment,
            start: payload_at + crate::record::log_rows_header_len(partition) as u64,
            end: payload_at + len as u64,
            min: shape.min,
            max: shape.max,
            rows: shape.rows,
            tables: shape.tables,
            file,
        }
    }
}

/// A table a run has rows of, and which kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableOps {
    pub name: String,
    pub upserts: bool,
    pub deletes: bool,
}

/// What a run holds, worked out from its rows (sorted by key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunShape {
    pub min: Hlc,
    pub max: Hlc,
    pub rows: u32,
    pub tables: Vec<TableOps>,
}

impl RunShape {
    /// `None` for no rows.
    pub fn of(rows: &[RowRef<'_>]) -> Option<RunShape> {
        let mut shape: Option<RunShape> = None;
        for row in rows {
            RunShape::include(&mut shape, row.hlc, row.table, row.after.is_some());
        }
        shape
    }

    /// Adds a row to `shape`, starting it with this row if it is `None`.
    pub fn include(shape: &mut Option<RunShape>, hlc: Hlc, table: &str, upsert: bool) {
        shape
            .get_or_insert_with(|| RunShape { min: hlc, max: hlc, rows: 0, tables: Vec::new() })
            .add(hlc, table, upsert);
    }

    fn add(&mut self, hlc: Hlc, table: &str, upsert: bool) {
        self.min = self.min.min(hlc);
        self.max = self.max.max(hlc);
        self.rows = self.rows.saturating_add(1);
        let ops = match self.tables.iter_mut().find(|t| t.name == table) {
            Some(ops) => ops,
            None => {
                self.tables.push(TableOps { name: table.to_owned(), upserts: false, deletes: false });
                self.tables.last_mut().expect("just pushed")
            }
        };
        if upsert {
            ops.upserts = true;
        } else {
            ops.deletes = true;
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct PartitionState {
    /// In sequence order.
    pub runs: Vec<Arc<Run>>,
    /// The newest resolved timestamp that is durable (visible to appliers).
    pub resolved: Option<Hlc>,
    pub applied: Option<Hlc>,
    pub epoch: u64,
}

pub(crate) struct Segment {
    pub file: Arc<File>,
    /// Runs in this segment not yet covered by their partition's applied checkpoint.
    pub live_runs: usize,
}

#[derive(Default)]
pub(crate) struct Index {
    pub partitions: BTreeMap<Partition, PartitionState>,
    /// By first sequence number; the last one is the segment being written.
    pub segments: BTreeMap<u64, Segment>,
}

impl Index {
    pub fn partition(&mut self, partition: &Partition) -> &mut PartitionState {
        if !self.partitions.contains_key(partition) {
            self.partitions.insert(partition.clone(), PartitionState::default());
        }
        self.partitions.get_mut(partition).expect("just inserted")
    }

    /// Adds a run unless the partition's checkpoint already covers it.
    pub fn add_run(&mut self, partition: &Partition, run: Run) {
        let state = self.partition(partition);
        if state.applied.is_some_and(|a| run.max <= a) {
            return;
        }
        let segment = run.segment;
        state.runs.push(Arc::new(run));
        if let Some(segment) = self.segments.get_mut(&segment) {
            segment.live_runs += 1;
        }
    }

    pub fn raise_resolved(&mut self, partition: &Partition, hlc: Hlc) -> bool {
        let state = self.partition(partition);
        let raised = state.resolved.is_none_or(|r| r < hlc);
        if raised {
            state.resolved = Some(hlc);
        }
        raised
    }

    /// Raises the applied checkpoint and drops the runs it covers; returns whether it moved.
    pub fn raise_applied(&mut self, partition: &Partition, hlc: Hlc) -> bool {
        let state = self.partition(partition);
        if state.applied.is_some_and(|a| a >= hlc) {
            return false;
        }
        state.applied = Some(hlc);
        let mut freed: Vec<u64> = Vec::new();
        state.runs.retain(|run| {
            let live = run.max > hlc;
            if !live {
                freed.push(run.segment);
            }
            live
        });
        for segment in freed {
            if let Some(segment) = self.segments.get_mut(&segment) {
                segment.live_runs -= 1;
            }
        }
        true
    }

    pub fn raise_epoch(&mut self, partition: &Partition, epoch: u64) {
        let state = self.partition(partition);
        state.epoch = state.epoch.max(epoch);
    }

    /// First sequence numbers of the oldest segments whose runs are all applied, oldest first,
    /// stopping at the first that is not (segments go in order, so the log has no gaps) and
    /// never including the segment being written.
    pub fn dead_head(&self) -> Vec<u64> {
        let writing = self.segments.keys().next_back().copied();
        self.segments
            .iter()
            .take_while(|(first, segment)| segment.live_runs == 0 && Some(**first) != writing)
            .map(|(first, _)| *first)
            .collect()
    }

    /// Rows and bytes of the runs of `partition` with rows above `after`, from the index alone:
    /// a run that straddles `after` counts whole, and a row redelivered in a later request counts
    /// again.
    pub fn pending(&self, partition: &Partition, after: Hlc) -> (u64, u64) {
        let Some(state) = self.partitions.get(partition) else { return (0, 0) };
        state
            .runs
            .iter()
            .filter(|r| r.max > after)
            .fold((0, 0), |(rows, bytes), r| (rows + u64::from(r.rows), bytes + (r.end - r.start)))
    }

    /// The runs of `partition` that may hold rows in `(after, upto]`.
    pub fn runs_in(&self, partition: &Partition, after: Hlc, upto: Hlc) -> Vec<Arc<Run>> {
        self.partitions
            .get(partition)
            .map_or(Vec::new(), |state| state.runs.iter().filter(|r| r.max > after && r.min <= upto).cloned().collect())
    }
}
