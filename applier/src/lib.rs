//! wharf's applier: resolved windows from the journal, applied to the target exactly once.
//!
//! # Layout
//!
//! - [`catalog`]: target tables, columns, primary keys and foreign-key order.
//! - [`values`]: JSON values to PostgreSQL input text (pure).
//! - [`fold`]: the versions of a key in a chunk folded to one action (pure).
//! - [`sql`]: set-based `unnest` upserts and deletes (pure).
//! - [`apply`]: running those statements inside a transaction.
//! - [`checkpoint`]: the fenced checkpoint row committed with the data.
//! - [`worker`]: the loop: lease a partition, apply `(C, R]`, commit with checkpoint `R`, compact.
//! - [`error`]: errors classified into retry and stop.

pub mod apply;
pub mod catalog;
pub mod checkpoint;
pub mod error;
pub mod fold;
pub mod json;
pub mod localpg;
pub mod sql;
pub mod values;
pub mod worker;

pub use error::ApplyError;
pub use worker::{ApplierConfig, ApplyStats, DEFAULT_CHUNK_ROWS, run};
