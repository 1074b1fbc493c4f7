//! The benchmark's report: one JSON object, or a table of each figure beside its reference.

use std::time::Duration;

use serde_json::{Value, json};

use super::apply::{ApplyRuns, References};
use super::ingest::IngestRuns;
use super::{BenchArgs, EndToEnd, Processes};
use crate::cpu_cost;

/// The figures compared with their references: rows/s, means of the runs of each kind, and
/// CPU microseconds per row.
pub struct Rates {
    pub durable: f64,
    pub discard: f64,
    pub apply: f64,
    pub apply_quic: f64,
    pub copy: f64,
    pub unnest: f64,
    pub ingest_us: Option<f64>,
    pub apply_us: Option<f64>,
    pub apply_quic_us: Option<f64>,
}

impl Rates {
    pub fn of(rows: usize, ingest: &IngestRuns, apply: &ApplyRuns, references: &References) -> Rates {
        let rate = |d: &Duration| rows as f64 / d.as_secs_f64();
        let mean = |runs: &[Duration]| runs.iter().map(rate).sum::<f64>() / runs.len() as f64;
        let separate: Vec<Duration> = apply.separate.iter().map(|(took, _)| *took).collect();
        let busy = |runs: &[(Duration, Option<f64>)]| runs.iter().map(|(_, busy)| *busy).collect::<Vec<_>>();
        Rates {
            durable: mean(&ingest.durable),
            discard: mean(&ingest.discard),
            apply: mean(&apply.embedded.map(|(took, _)| took)),
            apply_quic: mean(&separate),
            copy: mean(&references.copy),
            unnest: rate(&references.unnest),
            ingest_us: cpu_cost::per_row(&ingest.durable_busy, rows),
            apply_us: cpu_cost::per_row(&busy(&apply.embedded), rows),
            apply_quic_us: cpu_cost::per_row(&busy(&apply.separate), rows),
        }
    }
}

/// Everything measured, for the report.
pub struct Report<'a> {
    pub args: &'a BenchArgs,
    /// Size of the ingest phase's bodies (held by wharfctl while it sends them).
    pub bodies_mib: f64,
    pub ingest: &'a IngestRuns,
    pub apply: &'a ApplyRuns,
    pub references: &'a References,
    pub processes: &'a Processes,
    pub end_to_end: &'a EndToEnd,
    pub rates: &'a Rates,
}

impl Report<'_> {
    pub fn json(&self) -> Value {
        let Report { args, ingest, apply, references, processes, end_to_end, rates, .. } = self;
        let rate = |d: Duration| args.rows as f64 / d.as_secs_f64();
        let ([discard_first, discard_last], [durable, durable_again]) = (ingest.discard, ingest.durable);
        let durable_auth = ingest.durable_jwt;
        let ([(apply_first, _), (apply_again, _)], apply_quic) = (apply.embedded, &apply.separate);
        let index = apply.open;
        let [copy_first, copy_last] = references.copy;
        let (durable_mean, durable_rate, discard_mean) = (rates.durable, rates.durable, rates.discard);
        let (apply_rate, apply_quic_rate, copy_rate) = (rates.apply, rates.apply_quic, rates.copy);
        let (ingest_us, apply_us, apply_quic_us) = (rates.ingest_us, rates.apply_us, rates.apply_quic_us);
        let embedded_bound = cpu_cost::shared_bound(ingest_us, apply_us);
        let separate_bound = cpu_cost::shared_bound(ingest_us, apply_quic_us);
        let Processes { scan, big, restart, scaling, group_lag } = processes;
        let EndToEnd { capacity, capacity_separate, capacity_updates, churn, churn_verdict, lag } = end_to_end;
        let inprocess_memory: Vec<&Value> = ingest.memory.iter().chain(&apply.memory).collect();
        // Each run of the figures reported as means.
        let runs = json!({
            "ingest_discard_rows_per_s": [rate(discard_first).round(), rate(discard_last).round()],
            "ingest_durable_rows_per_s": [rate(durable).round(), rate(durable_again).round()],
            "apply_rows_per_s": [rate(apply_first).round(), rate(apply_again).round()],
            "apply_quic_rows_per_s": apply_quic.iter().map(|(took, _)| rate(*took).round()).collect::<Vec<_>>(),
            "apply_reference_copy_rows_per_s": [rate(copy_first).round(), rate(copy_last).round()],
        });
        let mut report = json!({
            "runs": runs,
            "rows": args.rows,
            "body_rows": args.body_rows,
            "senders": args.senders,
            "ingest_durable_rows_per_s": durable_mean.round(),
            "ingest_discard_rows_per_s": discard_mean.round(),
            "ingest_durable_vs_discard": (durable_mean / discard_mean * 100.0).round() / 100.0,
            "ingest_sustained_rows_per_s": rate(durable + index).round(),
            "ingest_durable_jwt_rows_per_s": rate(durable_auth).round(),
            "ingest_durable_open_again_rows_per_s": rate(durable_again).round(),
            "ingest_jwt_vs_open": (rate(durable_auth) / durable_mean * 100.0).round() / 100.0,
            "apply_rows_per_s": apply_rate.round(),
            "apply_reference_unnest_rows_per_s": rates.unnest.round(),
            "apply_reference_copy_rows_per_s": copy_rate.round(),
            "apply_vs_unnest": (apply_rate / rates.unnest * 100.0).round() / 100.0,
            "apply_vs_copy": (apply_rate / copy_rate * 100.0).round() / 100.0,
            "apply_quic_rows_per_s": apply_quic_rate.round(),
            "apply_quic_vs_embedded": (apply_quic_rate / apply_rate * 100.0).round() / 100.0,
            "scan_rows": scan.as_ref().map(|s| s.rows),
            "scan_rows_per_s": scan.as_ref().map(|s| (s.rows as f64 / s.elapsed.as_secs_f64()).round()),
            "inprocess_memory": inprocess_memory,
            "peak_rss_mib_ingest_scan": scan.as_ref().map(|s| s.peak_rss_mib_ingest.round()),
            "peak_rss_mib_applier_scan": scan.as_ref().map(|s| s.peak_rss_mib_applier.round()),
            "big_bodies": big.as_ref().map(|b| b.bodies),
            "big_body_bytes": big.as_ref().map(|b| b.body_bytes),
            "big_bodies_mib_per_s": big.as_ref().map(|b| (b.bodies as f64 * b.body_bytes as f64 / 1048576.0 / b.elapsed.as_secs_f64()).round()),
            "peak_rss_mib_ingest_big_bodies": big.as_ref().map(|b| b.peak_rss_mib_ingest.round()),
            "churn_offered_rows_per_s": churn.as_ref().map(|c| c.offered_rows_per_s.round()),
            "churn_samples": churn.as_ref().map(|c| &c.samples),
            "e2e_capacity_rows_per_s": capacity.as_ref().map(|c| c.rows_per_s.round()),
            "e2e_capacity_vs_min_ingest_apply": capacity.as_ref().map(|c| (c.rows_per_s / apply_rate.min(durable_mean) * 100.0).round() / 100.0),
            "e2e_capacity_probes": capacity.as_ref().map(|c| c.probes.iter().map(|p| json!({"asked_rows_per_s": p.asked_rows_per_s.round(), "offered_rows_per_s": p.offered_rows_per_s.round(), "last_lag_ms": p.last_lag.map(|l| l.as_millis() as u64), "sustained": p.sustained})).collect::<Vec<_>>()),
            "lag_offered_rows_per_s": lag.as_ref().map(|l| l.offered_rows_per_s.round()),
            "lag_p50_ms": lag.as_ref().map(|l| l.p50_ms.round()),
            "lag_p99_ms": lag.as_ref().map(|l| l.p99_ms.round()),
            "lag_max_ms": lag.as_ref().map(|l| l.max_ms.round()),
        });
        let extra = json!({
            "ingest_durable_gzip_rows_per_s": rate(ingest.durable_gzip).round(),
            "ingest_gzip_vs_open": (rate(ingest.durable_gzip) / durable_mean * 100.0).round() / 100.0,
            "gzip_wire_bytes": ingest.wire_bytes.1,
            "plain_wire_bytes": ingest.wire_bytes.0,
            "e2e_capacity_separate_rows_per_s": capacity_separate.as_ref().map(|c| c.rows_per_s.round()),
            "e2e_capacity_separate_vs_min_ingest_apply": capacity_separate.as_ref().map(|c| (c.rows_per_s / apply_quic_rate.min(durable_rate) * 100.0).round() / 100.0),
            "peak_rss_mib_ingest_capacity_separate": capacity_separate.as_ref().and_then(|c| c.peak_rss_mib).map(|p| p.0.round()),
            "peak_rss_mib_applier_capacity_separate": capacity_separate.as_ref().and_then(|c| c.peak_rss_mib).map(|p| p.1.round()),
            "e2e_capacity_separate_updates_rows_per_s": capacity_updates.as_ref().map(|c| c.rows_per_s.round()),
            "churn_share_of": if capacity_updates.is_some() { "e2e_capacity_separate_updates" } else { "apply_quic" },
            "restart_journal_mib": restart.as_ref().map(|r| (r.journal_bytes as f64 / 1048576.0).round()),
            "restart_rows": restart.as_ref().map(|r| r.rows),
            "restart_open_cold_s": restart.as_ref().and_then(|r| r.cold).map(|t| seconds(t.open)),
            "restart_checked_cold_s": restart.as_ref().and_then(|r| r.cold).map(|t| seconds(t.checked)),
            "restart_open_warm_s": restart.as_ref().map(|r| seconds(r.warm.open)),
            "restart_checked_warm_s": restart.as_ref().map(|r| seconds(r.warm.checked)),
            "churn_check": churn_verdict.as_ref().map(|v| v.as_ref().err().cloned().unwrap_or_else(|| "passed".into())),
            "peak_rss_mib_ingest_churn": churn.as_ref().map(|c| c.samples.iter().map(|s| s.rss_mib_ingest).fold(0.0, f64::max).round()),
            "peak_rss_mib_applier_churn": churn.as_ref().map(|c| c.samples.iter().map(|s| s.rss_mib_applier).fold(0.0, f64::max).round()),
        });
        let round = |us: Option<f64>| us.map(|us| (us * 100.0).round() / 100.0);
        let cpu = json!({
            "cpu_core_us_per_row_ingest_durable": round(ingest_us),
            "cpu_core_us_per_row_apply": round(apply_us),
            "cpu_core_us_per_row_apply_quic": round(apply_quic_us),
        });
        if let (Some(report), serde_json::Value::Object(extra), serde_json::Value::Object(cpu)) =
            (report.as_object_mut(), extra, cpu)
        {
            report.extend(extra);
            report.extend(cpu);
            report.extend(cpu_cost::report("e2e_capacity", capacity.as_ref().map(|c| c.rows_per_s), embedded_bound));
            let separate = capacity_separate.as_ref().map(|c| c.rows_per_s);
            report.extend(cpu_cost::report("e2e_capacity_separate", separate, separate_bound));
            report.extend(crate::scaling::json(scaling, group_lag.as_ref()));
        }
        report
    }

    pub fn print(&self) {
        self.print_throughput();
        self.print_processes();
        self.print_end_to_end();
    }

    /// Ingest and apply against their references, and wharfctl's memory in those phases.
    fn print_throughput(&self) {
        let Report { args, ingest, apply, rates, .. } = self;
        let rate = |d: Duration| args.rows as f64 / d.as_secs_f64();
        let (durable, durable_auth, index) = (ingest.durable[0], ingest.durable_jwt, apply.open);
        let (durable_mean, discard_mean) = (rates.durable, rates.discard);
        let (apply_rate, apply_quic_rate, copy_rate) = (rates.apply, rates.apply_quic, rates.copy);
        let inprocess_memory: Vec<&Value> = ingest.memory.iter().chain(&apply.memory).collect();
        println!("{:<36} {:>12}   reference", "figure", "rows/s");
        println!(
            "{:<36} {:>12.0}   discard (parse, no journal) {:>10.0}  ratio {:.2} (target ≥ 0.6; means of 2 runs each)",
            "ingest, durable",
            durable_mean,
            discard_mean,
            durable_mean / discard_mean
        );
        println!(
            "{:<36} {:>12.0}   durable, open (mean of runs before and after) {:>10.0}  ratio {:.2} (target ≥ 0.95)",
            "ingest, durable, JWT (ES256)",
            rate(durable_auth),
            durable_mean,
            rate(durable_auth) / durable_mean
        );
        println!(
            "{:<36} {:>12.0}   durable, open (mean of runs before and after) {:>10.0}  ratio {:.2} (target ≥ 0.8); {:.1} MiB on the wire against {:.1} MiB plain",
            "ingest, durable, gzip bodies",
            rate(ingest.durable_gzip),
            durable_mean,
            rate(ingest.durable_gzip) / durable_mean,
            ingest.wire_bytes.1 as f64 / 1048576.0,
            ingest.wire_bytes.0 as f64 / 1048576.0
        );
        println!(
            "{:<36} {:>12.0}   (acknowledged and readable by appliers; absolute target ≥ 150000 for durable)",
            "ingest, sustained",
            rate(durable + index)
        );
        println!(
            "{:<36} {:>12.0}   unnest upserts {:>10.0}  ratio {:.2} (target ≥ 1.0; apply: mean of 2 runs)",
            "apply from backlog",
            apply_rate,
            rates.unnest,
            apply_rate / rates.unnest
        );
        println!(
            "{:<36} {:>12}   binary COPY    {:>10.0}  ratio {:.2} (target ≥ 0.6; COPY: mean of 2 runs)",
            "",
            "",
            copy_rate,
            apply_rate / copy_rate
        );
        println!(
            "{:<36} {:>12.0}   embedded applier {:>8.0}  ratio {:.2} (target ≥ 0.9; means of 2 runs each)",
            "apply by a separate wharf-applier",
            apply_quic_rate,
            apply_rate,
            apply_quic_rate / apply_rate
        );
        let peaks: Vec<String> = inprocess_memory
            .iter()
            .map(|m| format!("{} {} → {}", m["phase"].as_str().unwrap_or(""), m["start_rss_mib"], m["peak_rss_mib"]))
            .collect();
        println!(
            "{:<36} {:>12}   RSS MiB of wharfctl (server, senders, {:.0} MiB of bodies), at start → peak: {}",
            "in-process phases",
            "",
            self.bodies_mib,
            peaks.join(", ")
        );
    }

    /// The phases through real processes: scan, large bodies, restart, scaling.
    fn print_processes(&self) {
        let Processes { scan, big, restart, scaling, group_lag } = self.processes;
        if let Some(scan) = &scan {
            println!(
                "{:<36} {:>12.0}   peak RSS: wharf-ingest {:.0} MiB, wharf-applier {:.0} MiB (target < 256 MiB each)",
                format!("single-timestamp scan, {} rows", scan.rows),
                scan.rows as f64 / scan.elapsed.as_secs_f64(),
                scan.peak_rss_mib_ingest,
                scan.peak_rss_mib_applier
            );
        }
        if let Some(big) = &big {
            println!(
                "{:<36} {:>12.0}   MiB/s of bodies; peak RSS of wharf-ingest {:.0} MiB (target < 256 MiB)",
                format!("{} bodies of {:.1} MiB, 64 senders", big.bodies, big.body_bytes as f64 / 1048576.0),
                big.bodies as f64 * big.body_bytes as f64 / 1048576.0 / big.elapsed.as_secs_f64(),
                big.peak_rss_mib_ingest
            );
        }
        if let Some(restart) = &restart {
            let timing = |t: crate::restart::Timing| {
                format!("open {:.2} s, checked {:.2} s", t.open.as_secs_f64(), t.checked.as_secs_f64())
            };
            println!(
                "{:<36} {:>12}   journal of {:.0} MiB ({} rows): cold {}; warm {} (target: open < 3 s for 5 GiB)",
                "restart (journal open)",
                "",
                restart.journal_bytes as f64 / 1048576.0,
                restart.rows,
                restart.cold.map_or("(not root: cache kept)".to_owned(), timing),
                timing(restart.warm)
            );
        }
        crate::scaling::print(scaling, group_lag.as_ref());
    }

    /// End-to-end capacity against its references, the steady-feed lag and the churn.
    fn print_end_to_end(&self) {
        let (args, rates) = (self.args, self.rates);
        let (durable_mean, apply_rate, apply_quic_rate) = (rates.durable, rates.apply, rates.apply_quic);
        let embedded_bound = cpu_cost::shared_bound(rates.ingest_us, rates.apply_us);
        let separate_bound = cpu_cost::shared_bound(rates.ingest_us, rates.apply_quic_us);
        let EndToEnd { capacity, capacity_separate, capacity_updates, churn, churn_verdict, lag } = self.end_to_end;
        if let Some(capacity) = &capacity {
            let upper = apply_rate.min(durable_mean);
            println!(
                "{:<36} {:>12.0}   min(durable ingest, apply) {:>10.0}  ratio {:.2} (target ≥ 0.7)",
                "end-to-end capacity (embedded)",
                capacity.rows_per_s,
                upper,
                capacity.rows_per_s / upper
            );
            print_cpu_bound(capacity.rows_per_s, embedded_bound);
        }
        if let Some(capacity) = &capacity_separate {
            let upper = apply_quic_rate.min(durable_mean);
            let (ingest, applier) = capacity.peak_rss_mib.unwrap_or((f64::NAN, f64::NAN));
            println!(
                "{:<36} {:>12.0}   min(durable ingest, separate apply) {:>10.0}  ratio {:.2} (target ≥ 0.7); peak RSS wharf-ingest {:.0} MiB, wharf-applier {:.0} MiB",
                "end-to-end capacity (separate)",
                capacity.rows_per_s,
                upper,
                capacity.rows_per_s / upper,
                ingest,
                applier
            );
            print_cpu_bound(capacity.rows_per_s, separate_bound);
        }
        if let Some(capacity) = &capacity_updates {
            println!(
                "{:<36} {:>12.0}   (updates of {} keys over and over, separate applier; the churn's reference)",
                "end-to-end capacity (updates)",
                capacity.rows_per_s,
                crate::churn::KEYS
            );
        }
        if let Some(lag) = &lag {
            let of = if capacity.is_some() { "half the end-to-end capacity" } else { "half the apply rate" };
            println!(
                "{:<36} {:>12.0}   lag after each resolved (1 s apart): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 < 1000 ms)",
                format!("steady feed at {of}"),
                lag.offered_rows_per_s,
                lag.p50_ms,
                lag.p99_ms,
                lag.max_ms
            );
        }
        if let Some(churn) = &churn {
            let of = if capacity_updates.is_some() {
                "the end-to-end capacity for updates with a separate applier"
            } else {
                "the separate applier's backlog rate"
            };
            println!(
                "churn at {:.0} rows/s ({:.0}% of {of}), every 5 s:",
                churn.offered_rows_per_s,
                args.churn_share * 100.0
            );
            println!(
                "  {:>5} {:>12} {:>12} {:>12} {:>14} {:>12} {:>10}",
                "t s", "ingest MiB", "applier MiB", "journal MiB", "unapplied MiB", "bound MiB", "backlog s"
            );
            for s in &churn.samples {
                println!(
                    "  {:>5} {:>12.0} {:>12.0} {:>12.1} {:>14.1} {:>12.1} {:>10.1}",
                    s.t_s,
                    s.rss_mib_ingest,
                    s.rss_mib_applier,
                    s.journal_mib,
                    s.unapplied_mib,
                    s.bound_mib,
                    s.backlog_s
                );
            }
            match churn_verdict.as_ref().expect("checked with the churn") {
                Ok(()) => println!("  check: journal inside its bound, memory flat, backlog bounded"),
                Err(why) => println!("  check failed: {why}"),
            }
        }
    }
}

fn print_cpu_bound(capacity: f64, bound: Option<f64>) {
    if let Some(bound) = bound {
        println!(
            "{:<36} {:>12}   ingest and apply sharing the cores at their costs alone {:>10.0}  ratio {:.2}",
            "",
            "",
            bound,
            capacity / bound
        );
    }
}

/// Seconds, rounded to hundredths, for the JSON.
fn seconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}
