//! Stalled partitions, made visible (`--stallTimeout`): health answers 503 with the reason while
//! one lasts, and a warning is logged when it starts.
//!
//! Two stalls are told apart:
//! - resolved rows wait and nothing is applied for longer than the timeout (appliers down,
//!   failing or paused);
//! - rows keep arriving above the newest resolved timestamp and the feed, which sent resolved
//!   timestamps before, sends none for longer than the timeout. Before a partition's first
//!   resolved timestamp (an initial scan sends none until it is done, and a changefeed created
//!   without the `resolved` option never does) this is only logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wharf_queue::{Hlc, Partition};

/// What is known of one partition, and since when.
#[derive(Debug, Clone, Default)]
struct Track {
    resolved: Option<Hlc>,
    applied: Option<Hlc>,
    /// Newest timestamp of rows accepted.
    newest_row: Option<Hlc>,
    /// Since when resolved work waits with the applied checkpoint unchanged.
    waiting_apply: Option<Instant>,
    /// Since when rows above the resolved timestamp wait with it unchanged.
    waiting_resolved: Option<Instant>,
    /// Whether the "no resolved timestamp yet" warning was logged for the current wait.
    warned_never_resolved: bool,
    /// Whether the current stall was logged.
    warned: bool,
}

/// A partition's state as read from the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub resolved: Option<Hlc>,
    pub applied: Option<Hlc>,
}

pub struct StallWatch {
    timeout: Duration,
    tracks: Mutex<HashMap<Partition, Track>>,
}

impl StallWatch {
    /// `timeout` zero turns detection off.
    pub fn new(timeout: Duration) -> StallWatch {
        StallWatch { timeout, tracks: Mutex::default() }
    }

    /// Notes rows accepted for `partition`, the newest at `newest`.
    pub fn rows_arrived(&self, partition: &Partition, newest: Hlc) {
        let mut tracks = self.tracks.lock().expect("stall lock");
        let track = tracks.entry(partition.clone()).or_default();
        track.newest_row = track.newest_row.max(Some(newest));
    }

    /// Updates every partition from the journal's view at `now`; logs stalls as they start.
    pub fn observe(&self, partitions: impl IntoIterator<Item = (Partition, Observed)>, now: Instant) {
        if self.timeout.is_zero() {
            return;
        }
        let mut tracks = self.tracks.lock().expect("stall lock");
        for (partition, seen) in partitions {
            let track = tracks.entry(partition.clone()).or_default();
            update(track, seen, now);
            match stall(track, now, self.timeout) {
                Some(reason) if !track.warned => {
                    tracing::warn!(%partition, "{reason}");
                    track.warned = true;
                }
                Some(_) => {}
                None => track.warned = false,
            }
            if let Some(since) = track.waiting_resolved
                && track.resolved.is_none()
                && now.duration_since(since) > self.timeout
                && !track.warned_never_resolved
            {
                tracing::warn!(%partition, "rows arrive but no resolved timestamp came yet in {}: normal during an initial scan; otherwise create the changefeed WITH resolved, or nothing is ever applied", human(now.duration_since(since)));
                track.warned_never_resolved = true;
            }
        }
    }

    /// The stalls in force, one line each (empty when none).
    pub fn reasons(&self, now: Instant) -> Vec<String> {
        if self.timeout.is_zero() {
            return Vec::new();
        }
        let tracks = self.tracks.lock().expect("stall lock");
        let mut out: Vec<String> =
            tracks.iter().filter_map(|(p, t)| stall(t, now, self.timeout).map(|r| format!("{p}: {r}"))).collect();
        out.sort();
        out
    }
}

fn update(track: &mut Track, seen: Observed, now: Instant) {
    let apply_work = seen.resolved.is_some() && seen.resolved > seen.applied;
    track.waiting_apply = match (apply_work, track.waiting_apply) {
        (false, _) => None,
        (true, Some(since)) if seen.applied == track.applied => Some(since),
        (true, _) => Some(now),
    };
    let unresolved = track.newest_row.is_some() && track.newest_row > seen.resolved;
    track.waiting_resolved = match (unresolved, track.waiting_resolved) {
        (false, _) => None,
        (true, Some(since)) if seen.resolved == track.resolved => Some(since),
        (true, _) => {
            track.warned_never_resolved = false;
            Some(now)
        }
    };
    track.resolved = seen.resolved;
    track.applied = seen.applied;
}

fn stall(track: &Track, now: Instant, timeout: Duration) -> Option<String> {
    if let Some(since) = track.waiting_apply
        && now.duration_since(since) > timeout
    {
        return Some(format!(
            "resolved rows have waited {} and nothing was applied (appliers down, failing or paused? see wharfctl status and the appliers' logs)",
            human(now.duration_since(since))
        ));
    }
    if let Some(since) = track.waiting_resolved
        && track.resolved.is_some()
        && now.duration_since(since) > timeout
    {
        return Some(format!(
            "rows keep arriving but no new resolved timestamp came in {} (changefeed paused or failing? see SHOW CHANGEFEED JOBS)",
            human(now.duration_since(since))
        ));
    }
    None
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m {}s", s / 60, s % 60) } else { format!("{s}s") }
}

#[cfg(test)]
mod tests;
