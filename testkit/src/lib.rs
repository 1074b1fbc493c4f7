//! Test support for wharf's suites, demo and benchmarks (not published).
//!
//! # Layout
//!
//! - [`localpg`]: a throwaway local PostgreSQL on a temporary directory and a free port.
//! - [`tlspg`]: a local PostgreSQL with TLS, passwords and client certificates, and its CA.
//! - [`ports`]: ports for the servers they start, below the kernel's ephemeral range.
//! - [`process`]: a child process killed and reaped when dropped (the tests' and bench's wharf
//!   processes).
//! - [`wait_for`]: wait for a condition with a deadline (never sleep to synchronise).

pub mod localpg;
pub mod ports;
pub mod process;
pub mod tlspg;

use std::time::{Duration, Instant};

pub use localpg::{LocalPg, LocalPgError, PgOptions, ServerTls};
pub use ports::free_port;
pub use process::Process;
pub use tlspg::TlsPg;

/// Polls `condition` until it holds or `limit` passes; panics naming `what` on timeout.
pub fn wait_for(what: &str, limit: Duration, condition: impl FnMut() -> bool) {
    assert!(wait_until(limit, condition), "timed out after {limit:?} waiting for {what}");
}

/// Polls `condition` until it holds (true) or `limit` passes (false), for callers that explain
/// a timeout themselves.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
