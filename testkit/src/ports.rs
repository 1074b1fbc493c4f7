//! Ports for the servers that tests and benchmarks start.
//!
//! A port from `bind(…:0)` is in the kernel's ephemeral range, so between choosing it and the
//! server binding it, any outgoing connection (a PostgreSQL client, an HTTP request) or another
//! `bind(…:0)` may take it: "Address already in use", seen in CI. These ports come from below
//! that range instead, each handed out once per process, and are checked free for TCP and UDP.

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out: above the well-known and most registered services' ports.
const FLOOR: u32 = 15000;
/// Where the kernel's ephemeral range starts when `/proc` does not say.
const DEFAULT_EPHEMERAL_LOW: u32 = 32768;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A port below the ephemeral range that no other caller in this process has had, free for
/// both TCP and UDP on loopback when checked.
pub fn free_port() -> io::Result<u16> {
    let span = ephemeral_low().saturating_sub(FLOOR).max(1);
    // Processes start at different points, so concurrent test binaries rarely meet.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = FLOOR + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).map_err(|_| io::Error::other("port out of range"))?;
        if is_free(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, format!("no free port between {FLOOR} and the ephemeral range")))
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!(u32::from(port) >= FLOOR && u32::from(port) < ephemeral_low(), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
