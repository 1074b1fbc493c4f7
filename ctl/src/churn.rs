//! The churn phase of `wharfctl bench`: a steady feed of updates over a rolling key space at a
//! given rate (a resolved timestamp every second) through a real `wharf-ingest` and one
//! `wharf-applier`, sampled every 5 s: resident memory of both, the journal's size on disk, the
//! unapplied rows and the lag. The journal's bound is 2 × the unapplied data + 64 MiB.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wharf_queue::{Hlc, Partition};

use crate::cluster::{BenchStack, start_applier};
use crate::http::Sender;
use crate::lag::{BODY_ROWS, SteadyFeed};

/// Above the lag phase's timestamps, below any clock this runs on (ingest refuses timestamps ahead
/// of its clock).
const T0: u64 = 1_770_000_000_000_000_000;
/// Keys updated over and over, so the target table stays the same size however long it runs.
pub const KEYS: usize = 200_000;
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// One sample of the churn phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChurnSample {
    pub t_s: u64,
    pub rss_mib_ingest: f64,
    pub rss_mib_applier: f64,
    pub journal_mib: f64,
    pub unapplied_rows: u64,
    /// The unapplied rows as the journal stores them (key and value).
    pub unapplied_mib: f64,
    /// 2 × unapplied + 64 MiB.
    pub bound_mib: f64,
    /// Seconds of feed not applied yet (unapplied rows at the offered rate).
    pub backlog_s: f64,
}

pub struct ChurnReport {
    pub offered_rows_per_s: f64,
    pub samples: Vec<ChurnSample>,
}

fn row_json(id: usize) -> String {
    let key = id % KEYS;
    format!(
        "{{\"after\": {{\"id\": {key}, \"payload\": \"churn {id:010} {}\"}}, \"key\": [{key}], \"topic\": \"churn\", \"updated\": \"{}\"}}",
        "c".repeat(80),
        Hlc::new(T0 + id as u64, 0)
    )
}

/// Journal bytes of one row: the JSON `after` plus its key (timestamp, table, key JSON).
fn row_journal_bytes() -> f64 {
    let after = format!("{{\"id\": 100000, \"payload\": \"churn 0000000000 {}\"}}", "c".repeat(80));
    (after.len() + 12 + 2 + "churn".len() + "[100000]".len() + 2) as f64
}

fn body(first: usize, rows: usize) -> Bytes {
    let messages: Vec<String> = (first..first + rows).map(row_json).collect();
    Bytes::from(format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), rows))
}

/// Bytes the files under `dir` occupy on disk.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { disk_usage(&entry.path()) } else { meta.blocks() * 512 };
    }
    total
}

/// Feeds `rows_per_s` for `seconds` into `database.bench_churn.churn`.
pub async fn measure(url: &str, database: &str, rows_per_s: f64, seconds: u64) -> anyhow::Result<ChurnReport> {
    let BenchStack { ingest, client, certs, journal } = BenchStack::start(url, "bench_churn", "churn").await?;
    let applier = start_applier(&ingest.queue_addr, url, &certs, 1, "churn")?;
    let sender = Sender::new(ingest.base_url(database, "bench_churn"));
    let partition = Partition::new(database, "bench_churn").to_string();
    let per_second = ((rows_per_s as usize) / BODY_ROWS).max(1) * BODY_ROWS;
    let row_bytes = row_journal_bytes();
    let started = Instant::now();
    let mut next_sample = Duration::ZERO;
    let mut samples = Vec::new();
    let mut next_id = 0usize;
    for second in 0..seconds {
        let feed = SteadyFeed { sender: &sender, started, t0: T0, bodies: per_second / BODY_ROWS, body };
        feed.second(second, &mut next_id).await?;
        if started.elapsed() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let checkpoint = crate::harness::checkpoint(&client, &partition).await?;
            let applied = checkpoint.and_then(|c| Hlc::parse(&c).ok()).map_or(0, |c| c.wall.saturating_sub(T0));
            let unapplied_rows = (next_id as u64).saturating_sub(applied);
            let unapplied = unapplied_rows as f64 * row_bytes / 1048576.0;
            let backlog_s = unapplied_rows as f64 / per_second as f64;
            samples.push(ChurnSample {
                t_s: started.elapsed().as_secs(),
                rss_mib_ingest: ingest.process.rss_mib().unwrap_or(f64::NAN),
                rss_mib_applier: applier.rss_mib().unwrap_or(f64::NAN),
                journal_mib: disk_usage(journal.path()) as f64 / 1048576.0,
                unapplied_rows,
                unapplied_mib: unapplied,
                bound_mib: 2.0 * unapplied + 64.0,
                backlog_s,
            });
        }
    }
    let offered = next_id as f64 / started.elapsed().as_secs_f64();
    applier.stop()?;
    ingest.process.stop()?;
    Ok(ChurnReport { offered_rows_per_s: offered, samples })
}

/// Slack for memory noise between the two halves of a churn.
const RSS_SLACK_MIB: f64 = 32.0;
/// A backlog this small is bounded whatever the first half did.
const BACKLOG_FLOOR_S: f64 = 10.0;

/// Judges a churn run: every sample inside the journal's disk bound; memory flat (no process's
/// peak in the second half above 1.25× its peak in the first half + 32 MiB); the backlog bounded
/// (its peak in the second half at most 10 s or twice its peak in the first half).
pub fn check(samples: &[ChurnSample]) -> Result<(), String> {
    if samples.len() < 4 {
        return Err(format!("{} samples are too few to judge; run at least 20 s", samples.len()));
    }
    if let Some(s) = samples.iter().find(|s| s.journal_mib > s.bound_mib) {
        return Err(format!(
            "at {} s the journal took {:.1} MiB on disk, over its bound of {:.1} MiB (2 × {:.1} MiB unapplied + 64)",
            s.t_s, s.journal_mib, s.bound_mib, s.unapplied_mib
        ));
    }
    let (first, second) = samples.split_at(samples.len() / 2);
    let peak = |half: &[ChurnSample], f: fn(&ChurnSample) -> f64| half.iter().map(f).fold(0.0, f64::max);
    for (name, f) in [
        ("wharf-ingest", (|s: &ChurnSample| s.rss_mib_ingest) as fn(&ChurnSample) -> f64),
        ("wharf-applier", |s: &ChurnSample| s.rss_mib_applier),
    ] {
        let (before, after) = (peak(first, f), peak(second, f));
        if after > 1.25 * before + RSS_SLACK_MIB {
            return Err(format!("{name} grew from a peak of {before:.0} MiB in the first half to {after:.0} MiB"));
        }
    }
    let (before, after) = (peak(first, |s| s.backlog_s), peak(second, |s| s.backlog_s));
    if after > BACKLOG_FLOOR_S.max(2.0 * before) {
        return Err(format!(
            "the backlog grew from a peak of {before:.1} s in the first half to {after:.1} s: the rate is more than the appliers sustain"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: u64, rss: f64, journal_mib: f64, unapplied_mib: f64, backlog_s: f64) -> ChurnSample {
        ChurnSample {
            t_s,
            rss_mib_ingest: rss,
            rss_mib_applier: 60.0,
            journal_mib,
            unapplied_rows: 0,
            unapplied_mib,
            bound_mib: 2.0 * unapplied_mib + 64.0,
            backlog_s,
        }
    }

    #[test]
    fn a_steady_churn_passes_and_each_kind_of_drift_fails_with_its_reason() {
        let steady: Vec<ChurnSample> = (0..12).map(|i| sample(i * 5, 100.0, 80.0, 20.0, 1.5)).collect();
        assert_eq!(check(&steady), Ok(()));
        let mut over = steady.clone();
        over[7].journal_mib = 200.0;
        assert!(check(&over).unwrap_err().contains("at 35 s the journal took 200.0 MiB"));
        let growing: Vec<ChurnSample> =
            (0..12).map(|i| sample(i * 5, 100.0 + 40.0 * i as f64, 80.0, 20.0, 1.5)).collect();
        assert!(check(&growing).unwrap_err().contains("wharf-ingest grew"));
        let behind: Vec<ChurnSample> =
            (0..12).map(|i| sample(i * 5, 100.0, 80.0, 20.0, 1.0 + 2.0 * i as f64)).collect();
        assert!(check(&behind).unwrap_err().contains("the backlog grew"));
        assert!(check(&steady[..2]).unwrap_err().contains("too few"));
    }
}
