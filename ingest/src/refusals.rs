//! Warnings about refused callers (401, 403, failed TLS handshakes), at most one per kind every
//! [`EVERY`], each saying how many were left out since the last. They name the peer address and
//! the reason, never token text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct LogLimiter {
    kinds: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    /// `Some(left_out)` when a line of `kind` may be written now (`left_out` refusals of that kind
    /// were not logged since the previous line); `None` to stay quiet.
    pub fn allow(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().expect("log limiter lock");
        match kinds.get_mut(kind) {
            Some((last, left_out)) if now.duration_since(*last) < EVERY => {
                *left_out += 1;
                None
            }
            Some((last, left_out)) => {
                *last = now;
                Some(std::mem::take(left_out))
            }
            None => {
                kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_and_period_with_the_count_left_out() {
        let limiter = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.allow("401", t0), Some(0));
        assert_eq!(limiter.allow("401", t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow("401", t0 + Duration::from_secs(2)), None);
        assert_eq!(limiter.allow("403", t0 + Duration::from_secs(2)), Some(0));
        assert_eq!(limiter.allow("401", t0 + EVERY), Some(2));
        assert_eq!(limiter.allow("401", t0 + EVERY), None);
    }
}
