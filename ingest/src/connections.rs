//! What one client may hold of the server: connections per address, and how long a connection may
//! sit without a request. A connection that sends nothing (not even the first bytes that tell
//! HTTP/1.1 from HTTP/2), or that stays idle between requests, is closed after `--readTimeout`,
//! whatever its protocol; one with a request in progress is not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Open connections per client address.
#[derive(Default)]
pub struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A slot for one more connection from `addr`, if it holds fewer than `limit`.
    pub fn admit(self: &Arc<Self>, addr: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().expect("connections lock");
        let count = open.entry(addr).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot { table: self.clone(), addr })
    }
}

/// One connection's place in [`PerAddress`]; given back when dropped.
pub struct AddressSlot {
    table: Arc<PerAddress>,
    addr: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().expect("connections lock");
        if let Some(count) = open.get_mut(&self.addr) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// Requests in progress on one connection, and when the last one began or ended.
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started`.
    last: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { started: Instant::now(), in_flight: AtomicUsize::new(0), last: AtomicU64::new(0) })
    }

    /// Notes a request beginning; the guard notes its end.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        RequestGuard(self.clone())
    }

    fn touch(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    /// How long the connection has been without a request, `None` while one is in progress.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.started.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::SeqCst))))
    }

    /// Completes once the connection has been idle for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let wait = match self.idle_for() {
                Some(idle) if idle >= limit => return,
                Some(idle) => limit - idle,
                None => limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_slots_back() {
        let table = Arc::new(PerAddress::default());
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        let first = table.admit(addr, 2).unwrap();
        let _second = table.admit(addr, 2).unwrap();
        assert!(table.admit(addr, 2).is_none());
        assert!(table.admit("10.0.0.2".parse().unwrap(), 2).is_some(), "another address");
        drop(first);
        assert!(table.admit(addr, 2).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_a_request_in_progress() {
        let activity = Activity::new();
        let guard = activity.request();
        let idle = activity.idle(Duration::from_secs(5));
        tokio::pin!(idle);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(futures_util::poll!(idle.as_mut()).is_pending(), "a request is in progress");
        drop(guard);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(futures_util::poll!(idle.as_mut()).is_pending());
        tokio::time::advance(Duration::from_secs(2)).await;
        idle.await;
    }
}
