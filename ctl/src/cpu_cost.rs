//! CPU cost per row for `wharfctl bench`: the busy time of the whole machine (`/proc/stat`: every
//! process, PostgreSQL and the bench's own senders included) during a phase, divided by its rows.
//!
//! It gives the end-to-end capacity a second reference. Durable ingest alone keeps every core
//! busy, and apply alone keeps PostgreSQL and the applier busy. When they run together they share
//! the cores, so they cannot both keep their solo rates, and `min(ingest, apply)` is not a rate
//! the pair can reach. The rate at which the two would together use every core, at the cost per
//! row each showed alone, can be reached:
//! `cores / (ingest cost per row + apply cost per row)`. The capacity against that rate says how
//! much of the machine the pipeline turns into rows when it is fed steadily.

use serde_json::{Map, Value, json};

/// Busy CPU time of the machine since a start.
#[derive(Clone, Copy)]
pub struct Busy {
    ticks: u64,
}

impl Busy {
    /// `None` where `/proc/stat` cannot be read (not Linux).
    pub fn start() -> Option<Busy> {
        busy_ticks().map(|ticks| Busy { ticks })
    }

    /// Busy core-seconds since `start`.
    pub fn seconds(self) -> Option<f64> {
        let now = busy_ticks()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (per_second > 0).then(|| now.saturating_sub(self.ticks) as f64 / per_second as f64)
    }
}

/// The `cpu` line of `/proc/stat`: every field but idle and iowait counts as busy.
fn busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_busy(stat.lines().next()?)
}

fn parse_busy(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let ticks: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal (guest time is counted within user).
    let busy = ticks.get(..8)?;
    Some(busy.iter().sum::<u64>() - busy[3] - busy[4])
}

/// Microseconds of busy core time per row, from the runs of one phase.
pub fn per_row(busy_seconds: &[Option<f64>], rows: usize) -> Option<f64> {
    let total: f64 = busy_seconds.iter().copied().sum::<Option<f64>>()?;
    Some(total * 1e6 / (rows * busy_seconds.len()) as f64)
}

/// The rate at which ingest and apply, at their costs per row alone, would together keep every
/// core busy.
pub fn shared_bound(ingest_us: Option<f64>, apply_us: Option<f64>) -> Option<f64> {
    let cores = std::thread::available_parallelism().ok()?.get() as f64;
    Some(cores * 1e6 / (ingest_us? + apply_us?))
}

/// The JSON figures of one pipeline: its bound and the capacity against it.
pub fn report(name: &str, capacity: Option<f64>, bound: Option<f64>) -> Map<String, Value> {
    let ratio = capacity.zip(bound).map(|(c, b)| (c / b * 100.0).round() / 100.0);
    let mut out = Map::new();
    out.insert(format!("{name}_cpu_bound_rows_per_s"), json!(bound.map(f64::round)));
    out.insert(format!("{name}_vs_cpu_bound"), json!(ratio));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_everything_but_idle_and_iowait() {
        assert_eq!(parse_busy("cpu  10 1 5 1000 7 2 3 4 0 0"), Some(25));
        assert_eq!(parse_busy("cpu0 10 1 5 1000 7 2 3 4 0 0"), None, "a single core's line");
        assert_eq!(parse_busy("cpu  10 1 5"), None, "too few fields");
    }

    #[test]
    fn the_bound_shares_the_cores_between_the_two_costs() {
        let cores = std::thread::available_parallelism().unwrap().get() as f64;
        let bound = shared_bound(Some(2.0), Some(3.0)).unwrap();
        assert!((bound - cores * 200_000.0).abs() < 1e-6);
        assert_eq!(shared_bound(None, Some(3.0)), None);
        assert_eq!(per_row(&[Some(1.0), Some(3.0)], 1_000_000), Some(2.0));
        assert_eq!(per_row(&[Some(1.0), None], 1_000_000), None);
    }
}
