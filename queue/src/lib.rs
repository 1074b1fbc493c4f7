//! wharf's durable journal and the queue service appliers read it through.
//!
//! # Layout
//!
//! - [`hlc`]: CockroachDB HLC timestamps, parsed strictly.
//! - [`json`]: borrowed views of changefeed JSON, and the canonical key encoding used in journal keys.
//! - [`record`]: the record format (with a version byte), pure functions.
//! - [`batch`]: a chunk's rows packed in one buffer, as the journal reads them, the wire carries
//!   them and appliers fold them.
//! - [`journal`]: segment files of our own (CRC-framed records, group commit), an in-memory index
//!   of runs, resolved timestamps, windowed reads in bounded chunks, deletion of applied segments.
//! - [`lease`]: the lease table (holders, epochs, expiry, pauses, rebalancing), pure.
//! - [`service`]: the queue service: journal + leases behind the operations appliers call.
//! - [`client`]: [`QueueClient`], the one interface appliers use; [`local`] implements it
//!   in-process, [`quic`] across the network ([`wire`] holds its frames, pure and fuzzed).
//! - [`logging`]: `--logFormat text|json` for the three binaries.
//! - [`metrics`]: the Prometheus pieces shared by ingest and applier (the `schema` label, latency
//!   buckets, the journal's sync metrics).
//! - [`version`]: build facts and the packages linked into each binary (embedded by `build.rs`).
//!
//! # Durability
//!
//! An append returns only after its record is written to the segment file **and** the file was
//! fdatasynced; a new segment file and its directory entry are synced before any record in it is
//! acknowledged. One request is one record with one checksum, so a crash leaves all of its rows
//! or none.
//!
//! # Recovery
//!
//! - Process crash or power loss: opening reads every segment back. A last write that a crash cut
//!   short (never acknowledged) is cut off; every acknowledged record was synced, so it is there.
//! - Rows at or below the applied checkpoint (a checkpoint record lost in a crash) are never read:
//!   windows start after the target's checkpoint, and the next checkpoint forgets them.
//! - The journal's `applied` marker is a cache of the target's checkpoint; if it is lost or
//!   behind, the next commit report from an applier sets it again.
//! - Lease epochs are kept in the journal so they grow across restarts; if they are lost, the
//!   target still refuses a reused epoch (a worker's claim must raise it) and the fenced worker's
//!   report moves the next grant above the target's.
//! - A journal that lost or damaged acknowledged records is refused (at open, or by the background
//!   check of closed segments before any of their rows is read), never read with rows missing:
//!   every record carries a CRC-32 and a sequence number, consecutive across segments, and the
//!   highest sequence number acknowledged as durable is kept in a file of its
//!   own (`wharf-durable-seq`, written after each sync by a thread of its own). The error names the
//!   file and says what to do (start on an empty journal, `wharfctl recover`).
//! - A record that no longer parses when read stops the partition's applier with a
//!   [`journal::ReadError`] naming the partition; nothing is skipped silently.
//! - A failed write or fsync poisons the journal: every later append fails (ingest answers 503),
//!   health says why, and `wharf-ingest` stops with an error so a supervisor restarts it and the
//!   journal recovers from what is really on disk. A panicking journal thread is the same kind of
//!   fault ([`journal::Fault::Fatal`]).

pub mod batch;
pub mod client;
pub mod hlc;
pub mod journal;
pub mod json;
pub mod lease;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod quic;
pub mod record;
pub mod service;
pub mod version;
pub mod wire;

pub use batch::{BatchRow, RowBatch};
pub use client::{Grant, QueueClient, QueueError, Release, WindowReader};
pub use hlc::{Hlc, HlcError};
pub use journal::{
    AppendError, Appended, Chunk, ChunkLimits, Fault, Journal, JournalConfig, OpenError, ReadError, Resolved,
    WindowCursor,
};
pub use local::LocalClient;
pub use record::{Partition, Row, RowRef, RowSource};
pub use service::{DEFAULT_LEASE_TIMEOUT, QueueService, ServiceStatus};
