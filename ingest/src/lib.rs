//! wharf's changefeed-facing server.
//!
//! # Layout
//!
//! - [`config`]: `wharf-ingest start` flags, validated once.
//! - [`route`]: request paths to routes (pure).
//! - [`decode`]: webhook and ndjson bodies to messages (pure, fuzzed).
//! - [`validate`]: messages checked against the target catalog, encoded as journal rows (pure).
//! - [`drift`]: payload tables and columns the target lacks: found (pure), handled by policy
//!   (`--onUnknownColumn`, `--onUnknownTable`) and shown while they last.
//! - [`target`]: target database name, cached catalogs, health.
//! - [`server`]: HTTP, status codes, graceful shutdown; [`inflight`]: the bound on body bytes
//!   processed at once (`--inflightLimit`); [`stall`]: stalled partitions on health
//!   (`--stallTimeout`).
//! - [`auth`]: JWT verification with keys in the staging schema; [`tls`]: HTTPS and mutual TLS.
//! - [`metrics`]: `/_/varz`; [`ops`]: livez, readyz, healthz and the `--metricsAddr` server.
//! - [`accept`]: a decoded body checked, journaled or recorded, and the answers on the way.
//! - [`answer`]: answer bodies that keep an unread request body until sent; [`refusals`]: the
//!   rate limit of warnings about refused callers.
//!
//! - [`process`]: the composition root: [`run`] wires the HTTP server, the journal, the queue
//!   service (and its QUIC endpoint for separate appliers), the target's commit witness and the
//!   embedded appliers it is given.
//!
//! A request is answered 200 only after all of its rows are durable in the journal. This library
//! does not depend on the applier: the `wharf-ingest` binary passes it the embedded workers.

pub mod accept;
pub mod answer;
pub mod auth;
pub mod config;
pub mod connections;
pub mod decode;
pub mod drift;
pub mod inflight;
pub mod metrics;
pub mod ops;
pub mod process;
pub mod refusals;
pub mod route;
pub mod server;
pub mod stall;
pub mod target;
pub mod tls;
pub mod validate;

pub use config::{IngestConfig, StartArgs};
pub use process::{
    EmbeddedAppliers, StartError, WARN_DISCARD, WARN_NO_AUTH, WARN_PLAIN_HTTP, WARN_SELF_SIGNED, run, run_with_listener,
};
