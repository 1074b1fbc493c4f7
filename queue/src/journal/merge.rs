//! Reading runs back: a buffered reader over one run's entries, and a merge of many runs into one
//! stream in key order, where a later run's entry replaces an earlier one with the same key (a
//! redelivered row overwrites itself).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::index::Run;

/// Memory shared by the buffers of one merge's readers.
const MERGE_BUFFER_BYTES: usize = 8 << 20;
const MIN_BUFFER: usize = 4 << 10;
const MAX_BUFFER: usize = 256 << 10;

/// An entry: the partition-tree key and value of one row (see [`crate::record`]).
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Why a run could not be read.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    Io(std::io::Error),
    /// The bytes do not parse as entries.
    Damaged(String),
}

struct RunReader {
    run: Arc<Run>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    buf: Vec<u8>,
    /// Next unparsed byte in `buf`.
    pos: usize,
    chunk: usize,
}

impl RunReader {
    fn new(run: Arc<Run>, chunk: usize) -> Self {
        let start = run.start;
        RunReader { run, buf_at: start, buf: Vec::new(), pos: 0, chunk }
    }

    /// Makes at least `n` unparsed bytes available; false at the end of the run.
    fn fill(&mut self, n: usize) -> Result<bool, ReadFailure> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        let next = self.buf_at + self.pos as u64;
        let left = self.run.end - next;
        if left < n as u64 {
            return Ok(false);
        }
        let want = (n.max(self.chunk) as u64).min(left) as usize;
        self.buf.drain(..self.pos);
        self.buf_at = next;
        self.pos = 0;
        let have = self.buf.len();
        self.buf.resize(want, 0);
        self.run.file.read_exact_at(&mut self.buf[have..], next + have as u64).map_err(ReadFailure::Io)?;
        Ok(true)
    }

    fn u32(&mut self) -> Result<usize, ReadFailure> {
        let bytes = &self.buf[self.pos..self.pos + 4];
        self.pos += 4;
        Ok(u32::from_be_bytes(bytes.try_into().expect("4 bytes")) as usize)
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, ReadFailure> {
        if !self.fill(n)? {
            return Err(self.damaged("an entry runs past the end of its record"));
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    /// Lets go of the buffer of a run read to its end.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.pos = 0;
        self.buf_at = self.run.end;
    }

    fn damaged(&self, what: &str) -> ReadFailure {
        ReadFailure::Damaged(format!("record {} in segment {}: {what}", self.run.seq, self.run.segment))
    }

    /// The next entry, or `None` at the end of the run.
    fn next(&mut self) -> Result<Option<Entry>, ReadFailure> {
        if self.buf_at + self.pos as u64 == self.run.end {
            return Ok(None);
        }
        if !self.fill(4)? {
            return Err(self.damaged("a key length runs past the end of its record"));
        }
        let key_len = self.u32()?;
        let key = self.take(key_len)?;
        if !self.fill(4)? {
            return Err(self.damaged("a value length runs past the end of its record"));
        }
        let value_len = self.u32()?;
        let value = self.take(value_len)?;
        Ok(Some((key, value)))
    }
}

/// A reader's next entry in a merge's heap: smallest key first and, among equal keys, the newest
/// run's (highest sequence number); then the reader's index.
type Head = Reverse<(Vec<u8>, Reverse<u64>, usize)>;

/// The entries of several runs with keys in `[start, end)`, in key order, one per key.
///
/// A run is opened only once the merge reaches its lowest timestamp, and its buffer is let go at
/// its end, so what is held at once is the runs that overlap the current position (all of them
/// only when every run spans it, as in an initial scan).
pub(crate) struct Merge {
    readers: Vec<RunReader>,
    /// Each open reader's next entry.
    heap: BinaryHeap<Head>,
    values: Vec<Option<Vec<u8>>>,
    /// Runs not opened yet, the one with the lowest timestamp last.
    waiting: Vec<Arc<Run>>,
    chunk: usize,
    start: Vec<u8>,
    end: Vec<u8>,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge")
            .field("opened", &self.readers.len())
            .field("waiting", &self.waiting.len())
            .field("pending", &self.heap.len())
            .finish()
    }
}

impl Merge {
    pub fn new(runs: &[Arc<Run>], start: &[u8], end: Vec<u8>) -> Result<Merge, ReadFailure> {
        let chunk = (MERGE_BUFFER_BYTES / runs.len().max(1)).clamp(MIN_BUFFER, MAX_BUFFER);
        let mut waiting = runs.to_vec();
        waiting.sort_by(|a, b| b.min.cmp(&a.min).then(b.seq.cmp(&a.seq)));
        let mut merge = Merge {
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            values: Vec::new(),
            waiting,
            chunk,
            start: start.to_vec(),
            end,
        };
        merge.open_due()?;
        Ok(merge)
    }

    /// Opens every waiting run that may hold a key at or below the smallest key queued (any, when
    /// nothing is queued), so no key comes out before a smaller or equal one of an unopened run.
    fn open_due(&mut self) -> Result<(), ReadFailure> {
        while let Some(next) = self.waiting.last() {
            let due = match self.heap.peek() {
                None => true,
                Some(Reverse((key, _, _))) => next.min.to_bytes().as_slice() <= key.as_slice(),
            };
            if !due {
                return Ok(());
            }
            let run = self.waiting.pop().expect("peeked");
            self.open(run)?;
        }
        Ok(())
    }

    fn open(&mut self, run: Arc<Run>) -> Result<(), ReadFailure> {
        let index = self.readers.len();
        self.readers.push(RunReader::new(run, self.chunk));
        // Entries are sorted, so the ones before `start` are skipped once, at the front.
        loop {
            match self.readers[index].next()? {
                Some((key, _)) if key < self.start => continue,
                Some((key, value)) => {
                    let seq = self.readers[index].run.seq;
                    self.push(index, key, value, seq);
                    return Ok(());
                }
                None => {
                    self.readers[index].release();
                    return Ok(());
                }
            }
        }
    }

    fn push(&mut self, index: usize, key: Vec<u8>, value: Vec<u8>, seq: u64) {
        if key >= self.end {
            return;
        }
        if index >= self.values.len() {
            self.values.resize(index + 1, None);
        }
        self.values[index] = Some(value);
        self.heap.push(Reverse((key, Reverse(seq), index)));
    }

    fn advance(&mut self, index: usize) -> Result<(), ReadFailure> {
        match self.readers[index].next()? {
            Some((key, value)) => {
                let seq = self.readers[index].run.seq;
                self.push(index, key, value, seq);
            }
            None => self.readers[index].release(),
        }
        Ok(())
    }

    /// The next entry in key order.
    pub fn next(&mut self) -> Result<Option<Entry>, ReadFailure> {
        self.open_due()?;
        let Some(Reverse((key, _, index))) = self.heap.pop() else { return Ok(None) };
        let value = self.values[index].take().expect("a queued entry has its value");
        self.advance(index)?;
        // Older copies of the same key (a redelivered row) are skipped.
        while self.heap.peek().is_some_and(|Reverse((next, _, _))| *next == key) {
            let Reverse((_, _, older)) = self.heap.pop().expect("peeked");
            self.values[older] = None;
            self.advance(older)?;
        }
        Ok(Some((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::journal::index::RunShape;
    use crate::record::{self, Partition, Row, RowSource};
    use wharf_base::hlc::Hlc;

    /// Writes each run's rows (sorted) into one file as rows records and returns the runs.
    fn runs(dir: &std::path::Path, runs: &[Vec<Row>]) -> Vec<Arc<Run>> {
        let partition = Partition::new("db", "s");
        let path = dir.join("runs");
        let mut file = std::fs::File::create(&path).unwrap();
        let read = Arc::new(std::fs::File::open(&path).unwrap());
        let mut at = 0u64;
        let mut out = Vec::new();
        for (seq, rows) in runs.iter().enumerate() {
            let refs: Vec<_> = rows.iter().map(Row::row).collect();
            let payload = record::encode_log_rows(&partition, &refs);
            file.write_all(&payload).unwrap();
            let shape = RunShape::of(&refs).unwrap();
            out.push(Arc::new(Run::new(seq as u64, 0, read.clone(), &partition, (at, payload.len()), shape)));
            at += payload.len() as u64;
        }
        out
    }

    fn row(wall: u64, key: u64, value: &str) -> Row {
        Row {
            hlc: Hlc::new(wall, 0),
            table: "t".into(),
            key: format!("[{key}]").into_bytes(),
            after: Some(value.into()),
        }
    }

    #[test]
    fn runs_are_opened_when_reached_and_let_go_at_their_end_and_the_newest_copy_wins() {
        let dir = tempfile::tempdir().unwrap();
        // 200 runs of 10 rows each over consecutive timestamps, then a later run repeating a key.
        let mut all: Vec<Vec<Row>> =
            (0..200u64).map(|r| (0..10).map(|i| row(10 * r + i, 10 * r + i, "old")).collect()).collect();
        all.push(vec![row(55, 55, "new")]);
        let runs = runs(dir.path(), &all);
        let mut merge =
            Merge::new(&runs, &record::key_after(Hlc::new(4, 0)), record::key_after(Hlc::new(10_000, 0))).unwrap();
        let (mut seen, mut most_buffers) = (Vec::new(), 0);
        while let Some((key, value)) = merge.next().unwrap() {
            seen.push(record::decode(&key, &value).unwrap());
            most_buffers = most_buffers.max(merge.readers.iter().filter(|r| !r.buf.is_empty()).count());
        }
        assert_eq!(seen.len(), 2000 - 5);
        assert!(seen.windows(2).all(|w| w[0].hlc < w[1].hlc));
        assert_eq!(seen.iter().find(|r| r.hlc == Hlc::new(55, 0)).unwrap().after.as_deref(), Some(&b"new"[..]));
        assert!(most_buffers <= 3, "{most_buffers} runs held buffers at once");
    }
}
