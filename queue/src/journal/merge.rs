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
pub(crate) struct Merge {
    readers: Vec<RunReader>,
    /// Each reader's next entry.
    heap: BinaryHeap<Head>,
    values: Vec<Option<Vec<u8>>>,
    end: Vec<u8>,
}

impl std::fmt::Debug for Merge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merge").field("runs", &self.readers.len()).field("pending", &self.heap.len()).finish()
    }
}

impl Merge {
    pub fn new(runs: &[Arc<Run>], start: &[u8], end: Vec<u8>) -> Result<Merge, ReadFailure> {
        let chunk = (MERGE_BUFFER_BYTES / runs.len().max(1)).clamp(MIN_BUFFER, MAX_BUFFER);
        let mut merge = Merge { readers: Vec::new(), heap: BinaryHeap::new(), values: Vec::new(), end };
        for run in runs {
            let mut reader = RunReader::new(run.clone(), chunk);
            // Entries are sorted, so the ones before `start` are skipped once, at the front.
            loop {
                match reader.next()? {
                    Some((key, _)) if key.as_slice() < start => continue,
                    Some((key, value)) => {
                        merge.push(merge.readers.len(), key, value, run.seq);
                        break;
                    }
                    None => break,
                }
            }
            merge.readers.push(reader);
            merge.values.resize(merge.readers.len(), None);
        }
        Ok(merge)
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
        if let Some((key, value)) = self.readers[index].next()? {
            let seq = self.readers[index].run.seq;
            self.push(index, key, value, seq);
        }
        Ok(())
    }

    /// The next entry in key order.
    pub fn next(&mut self) -> Result<Option<Entry>, ReadFailure> {
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
