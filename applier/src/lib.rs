//! wharf's applier: resolved windows from the queue, applied to the target exactly once.
//!
//! # Layout
//!
//! - [`values`]: JSON values to PostgreSQL input text (pure).
//! - [`fold`]: the versions of a key in a chunk folded to one action, keys in the journal's order
//!   (pure).
//! - [`sql`]: set-based `unnest` upserts and deletes, and the text `COPY` (pure); `copy_binary`:
//!   the binary `COPY` where every value has an exact binary form (pure).
//! - [`apply`]: statements of a chunk, in foreign-key order, run inside a transaction;
//!   [`insert_first`]: an upsert's rows tried as a plain insert first, in a savepoint sent with it
//!   and released by the next one; [`statements`]: a connection's prepared statements.
//! - [`window`]: one window read ahead in bounded chunks and committed at timestamp boundaries;
//!   it takes the queue, the target connection and the limits, and returns what it committed.
//! - `careful`: a window that failed on a row the target refuses, applied again group by group in
//!   savepoints, halving refused groups down to the refused row versions; [`quarantine`]: those
//!   versions and every later one of their keys kept in the target's quarantine table
//!   (`--onApplyError quarantine`); [`dlq`]: `wharfctl dlq list|replay|discard`.
//! - [`worker`]: the loop: lease, claim, apply, report; why each row version is applied once.
//!   `regroup`: a foreign key in the target that the ingest's grouping does not know yet.
//! - [`error`]: errors classified into retry, give up the partition, pause it, and pause it
//!   briefly for a regrouping.
//! - [`metrics`]: apply metrics for Prometheus; [`metrics_server`]: what `wharf-applier
//!   --metricsAddr` answers (on `wharf_base::ops_http`).
//!
//! The applier sees the journal only through [`wharf_queue::QueueClient`]: in-process in
//! `wharf-ingest --appliers N`, over QUIC in `wharf-applier`. The target's catalog and
//! checkpoints come from `wharf_targetdb`.

pub mod apply;
mod careful;
mod copy_binary;
pub mod dlq;
pub mod error;
pub mod fold;
pub mod insert_first;
pub mod metrics;
pub mod metrics_server;
pub mod quarantine;
mod regroup;
pub mod sql;
pub mod statements;
pub mod values;
mod window;
pub mod worker;

pub use error::ApplyError;
pub use worker::{ApplierConfig, ApplyStats, DEFAULT_CHUNK_ROWS, run};
