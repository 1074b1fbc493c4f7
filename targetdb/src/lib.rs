//! What wharf's ingest and applier both need of the target database.
//!
//! # Layout
//!
//! - [`conninfo`]: the connection string as libpq reads it, with libpq's environment and files.
//! - [`tls`]: TLS to the target with libpq's `sslmode` rules.
//! - [`connect`](mod@connect): opening a connection to the target.
//! - [`catalog`]: tables, columns and types, primary keys, foreign-key order of one schema.
//! - [`staging`]: the staging schema's own tables (checkpoints, JWT keys and revocations).
//! - [`checkpoint`]: the fenced checkpoint row committed with the data.
//! - [`witness`]: those rows as the queue service's witness of commit reports.

pub mod catalog;
pub mod checkpoint;
pub mod connect;
pub mod conninfo;
pub mod staging;
pub mod tls;
pub mod witness;

pub use catalog::{CatalogError, SchemaCatalog, quote_ident};
pub use checkpoint::{CheckpointError, CheckpointRow};
pub use connect::{ConnectError, connect, connect_with, describe_pg};
pub use conninfo::ConnInfo;
