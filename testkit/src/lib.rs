//! Test support for wharf's suites, demo and benchmarks (not published).
//!
//! # Layout
//!
//! - [`localpg`]: a throwaway local PostgreSQL on a temporary directory and a free port.
//! - [`wait_for`]: wait for a condition with a deadline (never sleep to synchronise).

pub mod localpg;

use std::time::{Duration, Instant};

pub use localpg::{LocalPg, LocalPgError, free_port};

/// Polls `condition` until it holds or `limit` passes; panics naming `what` on timeout.
pub fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
