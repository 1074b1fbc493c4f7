//! wharf's durable journal and the queue service appliers read it through.
//!
//! # Layout
//!
//! - [`hlc`]: CockroachDB HLC timestamps, parsed strictly.
//! - [`json`]: borrowed views of changefeed JSON, and the canonical key encoding used in journal keys.
//! - [`record`]: the on-disk key and value format (with a version byte), pure functions.
//! - [`commit`]: group commit, one flush + fsync shared by concurrent appends.
//! - [`journal`]: appends, resolved timestamps, windowed reads in bounded chunks, compaction;
//!   values over 60 KiB stored in parts so sled never writes its unsynced blob files.
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
//! An append returns only after its batch is in sled's log **and** the log file was fsynced
//! (sled's own `flush` ends in `sync_file_range`, which is not durable). One request is one sled
//! batch, so a crash leaves all of its rows or none.
//!
//! # Recovery
//!
//! - Process crash or power loss: sled replays its log up to the last complete batch; every
//!   acknowledged append was fsynced, so it is there. Unacknowledged batches may or may not be.
//! - Entries at or below the applied checkpoint (compaction interrupted, or a late duplicate
//!   written while compaction ran) are never read: windows start after the target's checkpoint,
//!   and the next compaction removes them.
//! - The journal's `applied` marker is a cache of the target's checkpoint; if it is lost or
//!   behind, the next commit report from an applier sets it again.
//! - Lease epochs are kept in the journal so they grow across restarts; if they are lost, the
//!   target still refuses a reused epoch (a worker's claim must raise it) and the fenced worker's
//!   report moves the next grant above the target's.
//! - A journal that lost acknowledged records is refused at open, never opened with rows missing:
//!   the highest sequence number acknowledged as durable is kept outside sled (`wharf-durable-seq`,
//!   written after each sync by a thread of its own), and sled must hold at least that much.
//!   sled's panics on damaged data at open are refused the same way. The error names the journal
//!   and says what to do (start on an empty journal, `wharfctl recover`).
//! - A value with another format version or a damaged key stops the partition's applier with a
//!   [`journal::ReadError::Damaged`] error naming the partition; nothing is skipped silently.
//! - A failed fsync poisons the journal: every later append fails (ingest answers 503), health
//!   says why, and `wharf-ingest` stops with an error so a supervisor restarts it and sled
//!   recovers from what is really on disk. A panicking journal thread (indexer, sync) is the same
//!   kind of fault ([`journal::Fault::Fatal`]); an indexing error that is retried turns health to
//!   503 with the reason until indexing succeeds again.

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

pub use client::{Grant, QueueClient, QueueError, Release, WindowReader};
pub use hlc::{Hlc, HlcError};
pub use journal::{
    AppendError, Appended, Chunk, ChunkLimits, Fault, Journal, JournalConfig, OpenError, ReadError, Resolved,
    WindowCursor,
};
pub use local::LocalClient;
pub use record::{Partition, Row};
pub use service::{DEFAULT_LEASE_TIMEOUT, QueueService, ServiceStatus};
