//! wharf's durable journal.
//!
//! # Layout
//!
//! - [`hlc`]: CockroachDB HLC timestamps, parsed strictly.
//! - [`record`]: the on-disk key and value format (with a version byte), pure functions.
//! - [`commit`]: group commit, one flush + fsync shared by concurrent appends.
//! - [`journal`]: appends, resolved timestamps, windowed reads, compaction.
//! - [`source`]: the small trait the applier reads through.
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
//!   behind, the applier sets it again from the target on its next step.
//! - A value with another format version or a damaged key stops the partition's applier with a
//!   [`journal::ReadError::Damaged`] error naming the partition; nothing is skipped silently.
//! - A failed fsync poisons the journal: every later append fails (ingest answers 503) until the
//!   process restarts and sled recovers from what is really on disk.

pub mod commit;
pub mod hlc;
pub mod journal;
pub mod record;
pub mod source;

pub use hlc::{Hlc, HlcError};
pub use journal::{AppendError, Appended, Journal, JournalConfig, OpenError, ReadError, Resolved, WindowCursor};
pub use record::{Partition, Row};
pub use source::WindowSource;
