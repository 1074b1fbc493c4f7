//! The bound on request body bytes processed at once (`--inflightLimit`).

use std::sync::Arc;
use std::time::Duration;

/// Default of `--inflightLimit`: with about four copies of a body alive while it is decoded,
/// validated and journaled, this keeps request memory near 64 MiB. With 32 MiB, `wharf-ingest`
/// peaked at 226–267 MiB in the bench's overloaded capacity probes (beside the queue service);
/// with 16 MiB at 200–205 MiB. 16 MiB still holds 80 of the bench's 1,000-row bodies at once.
pub const DEFAULT_INFLIGHT_BYTES: u64 = 16 << 20;

/// How long a request waits for room under `--inflightLimit` before it gets 503.
const INFLIGHT_WAIT: Duration = Duration::from_secs(10);

/// Body bytes in flight, counted in KiB (a semaphore has at most 2^32 permits).
///
/// A body holds what has arrived and grows as more does. It never waits while holding part of
/// the budget: bodies that each held a part and waited for more could hold all of it and wait for
/// each other until they time out (64 bodies of 8 MiB under 16 MiB did, and got 408). A body
/// that has to wait moves what it holds to a parking budget of the same size and waits, in
/// order, for all it announced (`Content-Length`, all of the budget at most) at once, so it waits
/// once; a body that does not announce its size waits for what has arrived. A body only waits
/// for what it announced when it brought more bytes than there was room for: an idle client
/// holds what it sent, never what it announced. Body bytes are therefore at most twice the
/// limit, and a body that cannot park gets 503 at once.
pub struct Inflight {
    permits: Arc<tokio::sync::Semaphore>,
    parked: Arc<tokio::sync::Semaphore>,
    max_kib: u32,
    wait: Duration,
}

impl Inflight {
    pub fn new(max_bytes: u64) -> Inflight {
        let max_kib = max_bytes.div_ceil(1024).clamp(1, u32::MAX as u64 >> 4) as u32;
        let budget = || Arc::new(tokio::sync::Semaphore::new(max_kib as usize));
        Inflight { permits: budget(), parked: budget(), max_kib, wait: INFLIGHT_WAIT }
    }

    /// Waits for room for a body of `bytes` (a body larger than the whole limit waits for all of it).
    pub async fn reserve(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = bytes.div_ceil(1024).clamp(1, self.max_kib as u64) as u32;
        let acquire = self.permits.clone().acquire_many_owned(kib);
        tokio::time::timeout(self.wait, acquire).await.ok()?.ok()
    }

    /// What one body holds: nothing until its bytes arrive. `announced` is its `Content-Length`
    /// (0 if none), what it waits for if it has to wait.
    pub fn hold(&self, announced: u64) -> Held {
        let announced_kib = announced.div_ceil(1024).min(self.max_kib as u64) as u32;
        Held { permit: None, kib: 0, announced_kib }
    }

    /// Waits for room for `total` bytes of the body `held` is for, as they arrive (all of the
    /// limit at most: a body larger than it runs alone); `false` if none frees up in time.
    pub async fn grow(&self, held: &mut Held, total: u64) -> bool {
        let want = total.div_ceil(1024).clamp(1, self.max_kib as u64) as u32;
        if want <= held.kib {
            return true;
        }
        if let Ok(more) = self.permits.clone().try_acquire_many_owned(want - held.kib) {
            held.add(more, want);
            return true;
        }
        // Waiting: what the body holds moves to the parking budget, so it never waits holding part
        // of the budget others wait for.
        let parked = match held.kib {
            0 => None,
            kib => match self.parked.clone().try_acquire_many_owned(kib) {
                Ok(parked) => Some(parked),
                Err(_) => return false,
            },
        };
        held.release();
        let want = want.max(held.announced_kib);
        let acquire = self.permits.clone().acquire_many_owned(want);
        let Ok(Ok(all)) = tokio::time::timeout(self.wait, acquire).await else { return false };
        held.add(all, want);
        drop(parked);
        true
    }
}

/// The body bytes one request holds of the limit; given back when dropped.
pub struct Held {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    kib: u32,
    announced_kib: u32,
}

impl Held {
    fn add(&mut self, more: tokio::sync::OwnedSemaphorePermit, kib: u32) {
        match &mut self.permit {
            Some(permit) => permit.merge(more),
            None => self.permit = Some(more),
        }
        self.kib = kib;
    }

    fn release(&mut self) {
        self.permit = None;
        self.kib = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_waits_for_room_and_one_over_the_limit_takes_all_of_it() {
        let inflight = Inflight { wait: Duration::from_secs(30), ..Inflight::new(1 << 20) };
        let first = inflight.reserve(600 << 10).await.unwrap();
        let mut second = Box::pin(inflight.reserve(600 << 10));
        assert!(futures_util::poll!(second.as_mut()).is_pending(), "room for 1 MiB, 1.2 MiB asked");
        drop(first);
        let second = second.await.unwrap();
        drop(second);
        let huge = inflight.reserve(64 << 20).await.expect("a body over the limit still runs, alone");
        assert!(futures_util::poll!(Box::pin(inflight.reserve(1))).is_pending());
        drop(huge);
    }

    #[tokio::test]
    async fn a_body_holds_what_arrived_not_what_it_announced() {
        let inflight = Inflight { wait: Duration::from_millis(50), ..Inflight::new(1 << 20) };
        let mut slow = inflight.hold(0);
        assert!(inflight.grow(&mut slow, 10 << 10).await);
        let other = inflight.reserve(1000 << 10).await.expect("room beside 10 KiB that arrived");
        assert!(!inflight.grow(&mut slow, 100 << 10).await, "no room for more in time");
        drop(other);
        assert!(inflight.grow(&mut slow, 100 << 10).await);
        assert!(inflight.grow(&mut slow, 64 << 20).await, "over the limit: all of it, alone");
        drop(slow);
        assert!(inflight.reserve(1 << 20).await.is_some(), "all given back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_bodies_growing_at_once_all_finish_instead_of_holding_the_budget_for_each_other() {
        // 16 bodies of 256 KiB under 1 MiB, arriving 64 KiB at a time: after one step each they
        // hold the whole budget between them, and each needs more. Each announced its size.
        let inflight = Arc::new(Inflight { wait: Duration::from_secs(30), ..Inflight::new(1 << 20) });
        let mut bodies = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let inflight = inflight.clone();
            bodies.spawn(async move {
                let mut held = inflight.hold(256 << 10);
                for step in 1..=4u64 {
                    assert!(inflight.grow(&mut held, step * (64 << 10)).await, "refused at step {step}");
                    tokio::task::yield_now().await;
                }
            });
        }
        let all = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(body) = bodies.join_next().await {
                body.unwrap();
            }
        });
        assert!(all.await.is_ok(), "bodies held the budget for each other");
        assert!(inflight.reserve(1 << 20).await.is_some(), "all given back");
        assert_eq!(inflight.parked.available_permits(), 1024, "nothing left parked");
    }

    #[tokio::test]
    async fn no_room_in_time_is_refused() {
        let inflight = Inflight { wait: Duration::from_millis(1), ..Inflight::new(1024) };
        let _held = inflight.reserve(1024).await.unwrap();
        assert!(inflight.reserve(1).await.is_none());
    }
}
