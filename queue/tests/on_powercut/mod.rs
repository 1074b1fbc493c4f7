//! The journal on the power-cut filesystem (`wharf-powercut`): a mount per test, rows that say
//! which request they came from, and a check of what an open journal holds against what was
//! acknowledged. Needs root (or fusermount3) and `/dev/fuse`, as `ingest/tests/power_cut.rs`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wharf_powercut::PowerCut;
use wharf_queue::{ChunkLimits, Hlc, Journal, Partition, Row, WindowCursor};

pub struct Disk {
    pub cut: PowerCut,
    _dir: tempfile::TempDir,
}

impl Disk {
    pub fn mount() -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let cut = PowerCut::mount(dir.path()).expect("mount the power-cut filesystem (needs root and /dev/fuse)");
        Disk { cut, _dir: dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.cut.path().join(name)
    }
}

pub fn p(i: u8) -> Partition {
    Partition::new("db", format!("s{i}"))
}

/// Row `key` written at `wall`; its value names both.
pub fn row(wall: u64, key: u64) -> Row {
    Row {
        hlc: Hlc::new(wall, 0),
        table: "t".into(),
        key: format!("[{key}]").into_bytes(),
        after: Some(format!("{{\"k\":{key},\"at\":{wall}}}").into_bytes()),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Every row of `partition` above its applied mark.
pub fn rows_above_applied(journal: &Journal, partition: &Partition) -> Vec<Row> {
    let after = journal.applied(partition).unwrap_or(Hlc::ZERO);
    let mut cursor = WindowCursor::new(after, Hlc::new(u64::MAX >> 1, 0), Vec::new());
    let mut rows = Vec::new();
    loop {
        let chunk = journal
            .read_chunk(partition, &mut cursor, ChunkLimits { max_rows: 1000, max_bytes: 1 << 20 })
            .unwrap_or_else(|e| panic!("reading {partition}: {e}"));
        rows.extend(chunk.rows.to_rows());
        if chunk.last {
            return rows;
        }
    }
}

/// What the journal acknowledged, and the filesystem's operation count right after.
#[derive(Clone, Debug)]
pub enum Ack {
    Rows(Partition, Vec<Row>),
    Resolved(Partition, Hlc),
}

#[derive(Default, Debug)]
pub struct Acks {
    /// Operation count right after each acknowledgement, and what it acknowledged.
    pub acked: Vec<(u64, Ack)>,
    /// Every row ever handed to the journal, acknowledged or not.
    pub sent: Vec<(Partition, Row)>,
    /// Applied checkpoints reported (committed on the target), with the operation count right
    /// before the report: rows at or below one may be gone once it came before the cut, because
    /// the target holds them.
    pub reported: Vec<(u64, Partition, Hlc)>,
}

impl Acks {
    /// The newest checkpoint of `partition` reported before operation `crash`.
    pub fn reported_before(&self, partition: &Partition, crash: u64) -> Hlc {
        let reports = self.reported.iter().filter(|(at, q, _)| *at <= crash && q == partition);
        reports.map(|(_, _, h)| *h).max().unwrap_or(Hlc::ZERO)
    }

    /// Checks an open journal against everything acknowledged before operation `crash`: each
    /// acknowledged resolved timestamp is there, each acknowledged row above the applied
    /// checkpoint is there with its value, and nothing is there that was never sent.
    pub fn check(&self, journal: &Journal, crash: u64, context: &str) {
        for partition in [p(1), p(2)] {
            let own = journal.applied(&partition).unwrap_or(Hlc::ZERO);
            let resolved = journal.resolved(&partition).unwrap_or(Hlc::ZERO);
            assert!(own <= resolved, "{context}: {partition} applied {own} above resolved {resolved}");
            let applied = own.max(self.reported_before(&partition, crash));
            let got = rows_above_applied(journal, &partition);
            for row in &got {
                assert!(
                    self.sent.iter().any(|(q, r)| *q == partition && r == row),
                    "{context}: {partition} holds a row never sent: {row:?}"
                );
            }
            for (at, ack) in self.acked.iter().filter(|(at, _)| *at <= crash) {
                match ack {
                    Ack::Resolved(q, hlc) if *q == partition => assert!(
                        resolved >= *hlc,
                        "{context}: {partition} resolved {resolved}, but {hlc} was acknowledged (at op {at})"
                    ),
                    Ack::Rows(q, rows) if *q == partition => {
                        for row in rows.iter().filter(|r| r.hlc > applied) {
                            assert!(got.contains(row), "{context}: acknowledged row lost (at op {at}): {row:?}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The segment files of a journal directory, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

/// Offsets of every frame in a segment file's bytes: (start of its header, payload length).
pub fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 16 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || at + 16 + len > bytes.len() {
            break;
        }
        out.push((at, len));
        at += 16 + len;
    }
    out
}

/// A whole frame for record `seq` holding `payload`, as the journal writes it.
pub fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_be_bytes());
    crc.update(payload);
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
