//! wharf's ground floor: what every wharf crate uses and that is not the queue. Nothing here
//! knows the journal, the queue service, QUIC or the target database.
//!
//! Changefeed vocabulary:
//! - [`hlc`]: CockroachDB's hybrid logical clock timestamps, parsed strictly.
//! - [`json`]: changefeed JSON (borrowed raw values, nesting limits) and canonical primary keys.
//! - [`partition`]: [`Partition`], one target schema.
//! - [`apply_policy`]: `--onApplyError`, shared by the ingest's embedded appliers and `wharf-applier`.
//!
//! Process plumbing:
//! - [`logging`]: `--logFormat` and the log subscriber of the three binaries.
//! - [`version`]: build and supply-chain facts for `version` (embedded by `build.rs`).
//! - [`metrics`]: the partition label and latency buckets of the Prometheus metrics.
//! - [`ops_http`]: the plain-HTTP server of the operator's endpoints (`--metricsAddr`).
//! - [`pem`]: reading certificate chains, CA bundles and private keys from PEM files.
//! - [`backoff`]: exponential backoff for retries.

pub mod apply_policy;
pub mod backoff;
pub mod hlc;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod ops_http;
pub mod partition;
pub mod pem;
pub mod version;

pub use apply_policy::OnApplyError;
pub use hlc::{Hlc, HlcError};
pub use partition::Partition;
