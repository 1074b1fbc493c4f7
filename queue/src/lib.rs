//! wharf's durable journal and the queue service appliers read it through.
//!
//! # Layout
//!
//! Timestamps, changefeed JSON, keys and partitions are `wharf_base`'s (re-exported: [`Hlc`],
//! [`Partition`]).
//!
//! - [`record`]: the record format (with a version byte), pure functions.
//! - [`batch`]: a chunk's rows packed in one buffer, as the journal reads them, the wire carries
//!   them and appliers fold them.
//! - [`journal`]: segment files of our own (CRC-framed records, group commit), an in-memory index
//!   of runs, resolved timestamps, windowed reads in bounded chunks, deletion of applied segments.
//! - [`lease`]: the lease table (holders, epochs, expiry, pauses, rebalancing), pure.
//! - [`service`]: the queue service: journal + leases behind the operations appliers call.
//! - [`client`]: [`QueueClient`], the one interface appliers use; [`local`] implements it
//!   in-process, [`quic`] across the network ([`wire`] holds its frames, pure and fuzzed).
//! - [`metrics`]: the journal's sync metrics.
//!
//! # Durability
//!
//! An append returns only after its record is written to the segment file, the file was
//! fdatasynced **and** the durable mark (`wharf-durable-seq`) was raised over it and synced; a
//! new segment file is written under a temporary name, synced, renamed and its directory synced
//! before any record in it is acknowledged. One request is one record with one checksum, so a
//! crash leaves all of its rows or none. The journal does not use `O_DIRECT`.
//!
//! # Recovery
//!
//! The rules are listed, in the order applied, at the top of `journal/recover.rs`. In short:
//!
//! - Opening reads the closed segments' summaries and the last segment's records; the closed
//!   segments' records are checked in the background before any of their rows is read.
//! - A journal that lost or damaged an acknowledged record is refused (at open, or by that check),
//!   never read with rows missing: every record carries a CRC-32 and a sequence number,
//!   consecutive across segments, and `wharf-durable-seq` keeps the log start (moved before
//!   segments are deleted) and the exact durable mark. A missing segment (the first one too), a
//!   missing or damaged bounds file while segments exist, a damaged or truncated segment: refused,
//!   with an error that names the file and says what to do (start on an empty journal,
//!   `wharfctl recover`).
//! - Only what was never acknowledged is cut off: the end of the last segment past the mark. A
//!   file is never deleted at recovery, except segments the log start says are dead and
//!   temporary files; a last segment with a damaged magic and nothing acknowledged in it is set
//!   aside.
//! - Records a crashed process wrote but never synced are synced before the mark covers them.
//! - Rows at or below the applied checkpoint (a checkpoint record lost in a crash) are never read:
//!   windows start after the target's checkpoint, and the next checkpoint forgets them.
//! - The journal's `applied` marker is a cache of the target's checkpoint, never above the
//!   partition's resolved timestamp; if it is lost or behind, the next commit report from an
//!   applier sets it again. Under `--partitionBy group` it is the lowest checkpoint of the
//!   schema's current groups, set only once each of them has reported (a regrouping starts that
//!   count again).
//! - Lease epochs are kept in the journal so they grow across restarts; if they are lost, the
//!   target still refuses a reused epoch (a worker's claim must raise it) and the fenced worker's
//!   report moves the next grant above the target's. The journal keeps one epoch per schema,
//!   the highest granted to the schema or any of its groups, and every unit's epochs start
//!   there after a restart.
//! - A record that no longer parses when read stops the partition's applier with a
//!   [`journal::ReadError`] naming the partition; nothing is skipped silently.
//! - A failed write or fsync (segment, bounds file, or directory after a deletion) poisons the
//!   journal: every later append fails (ingest answers 503), the segment is cut back to its last
//!   synced record, health says why, and `wharf-ingest` stops with an error so a supervisor
//!   restarts it and the journal recovers from what is really on disk. A panicking journal
//!   thread is the same kind of fault ([`journal::Fault::Fatal`]). A full disk is not: the write
//!   waits and is tried again, and health reports a stall ([`journal::Fault::Stalled`]), as it
//!   does for a write or sync that has not returned for [`journal::DEFAULT_SYNC_STALL`].

pub mod batch;
mod bytes;
pub mod client;
pub mod groups;
pub mod journal;
pub mod lease;
pub mod local;
pub mod metrics;
pub mod quic;
pub mod record;
pub mod service;
pub mod wire;

pub use batch::{BatchRow, RowBatch};
pub use client::{Grant, QueueClient, QueueError, Release, WindowReader};
pub use journal::{
    AppendError, Appended, Chunk, ChunkLimits, Fault, Journal, JournalConfig, OpenError, ReadError, Resolved,
    WindowCursor,
};
pub use local::LocalClient;
pub use record::{Partition, Row, RowRef, RowSource};
pub use service::{DEFAULT_LEASE_TIMEOUT, DriftSource, DriftStatus, QueueService, ServiceStatus};
pub use wharf_base::{Hlc, HlcError};
