//! End-to-end capacity for `wharfctl bench`: the highest steady rate (a resolved timestamp every
//! second) that ingest, journal, one applier (embedded, or a separate `wharf-applier` process) and
//! PostgreSQL sustain together, found by bisection between 0 and an upper bound (the lower of
//! durable ingest and apply alone).
//!
//! A rate is sustained when the feed offered at least 95% of it and its last resolved timestamp
//! was applied within [`KEPT_UP`] of its acknowledgement: a backlog that grew during the feed would
//! leave the last window waiting behind it.

use std::time::Duration;

use crate::lag::{Pipeline, Workload};

/// How long after its acknowledgement the last resolved timestamp may take to be applied.
pub const KEPT_UP: Duration = Duration::from_millis(2500);
const PROBES: usize = 4;

/// One probe of the search.
pub struct Probe {
    pub asked_rows_per_s: f64,
    pub offered_rows_per_s: f64,
    /// The last resolved timestamp's lag, if it was applied within the settle time.
    pub last_lag: Option<Duration>,
    pub sustained: bool,
}

pub struct Capacity {
    /// The highest sustained rate found (0 when none was).
    pub rows_per_s: f64,
    pub probes: Vec<Probe>,
    /// The highest peak RSS of the `wharf-ingest` and `wharf-applier` processes over the probes
    /// (separate processes only).
    pub peak_rss_mib: Option<(f64, f64)>,
}

/// The end-to-end capacity's goal, as a share of the lower of ingest and apply alone.
const GOAL: f64 = 0.7;

/// Bisects `(0, upper]` with [`PROBES`] feeds of `seconds` each, the first at the goal (0.7 of
/// `upper`), so the probe that decides whether the goal is met is run, whatever the search's
/// resolution; the result is the highest rate sustained.
pub async fn search(
    target_url: &str,
    database: &str,
    pipeline: Pipeline,
    workload: Workload,
    upper: f64,
    seconds: u64,
) -> anyhow::Result<Capacity> {
    let (mut low, mut high) = (0.0, upper);
    let mut probes = Vec::with_capacity(PROBES);
    let mut peak_rss_mib: Option<(f64, f64)> = None;
    for probe in 0..PROBES {
        let asked = if probe == 0 { GOAL * upper } else { (low + high) / 2.0 };
        let run = crate::lag::feed(target_url, database, pipeline, workload, asked, seconds, KEPT_UP).await?;
        if let Some((ingest, applier)) = run.peak_rss_mib {
            let (i, a) = peak_rss_mib.unwrap_or((0.0, 0.0));
            peak_rss_mib = Some((i.max(ingest), a.max(applier)));
        }
        let last_lag = run.lags.last().copied().flatten();
        let sustained = run.offered_rows_per_s >= 0.95 * asked && last_lag.is_some_and(|lag| lag <= KEPT_UP);
        eprintln!(
            "bench: capacity probe ({pipeline:?}, {workload:?}) at {asked:.0} rows/s: offered {:.0}, last lag {}, {}",
            run.offered_rows_per_s,
            last_lag.map_or("over 2.5 s".to_owned(), |l| format!("{} ms", l.as_millis())),
            if sustained { "sustained" } else { "not sustained" }
        );
        if sustained {
            low = asked;
        } else {
            high = asked;
        }
        probes.push(Probe { asked_rows_per_s: asked, offered_rows_per_s: run.offered_rows_per_s, last_lag, sustained });
    }
    Ok(Capacity { rows_per_s: low, probes, peak_rss_mib })
}
