//! `wharfctl bench`: ingest and apply throughput, each beside its reference measured in the same run.
//!
//! - durable ingest: 64 concurrent senders POST 1,000-row webhook bodies; 200 only after fsync.
//! - reference: the same server in `--discard` mode (parse and validate, no journal). Both are
//!   measured twice, discard first and last, durable in between, and compared by their means: the
//!   process's first phase pays for growing its heap, and later phases for earlier disk writeback.
//! - apply: the journal from the ingest run, one resolved timestamp covering it, one applier:
//!   embedded, twice, around two runs of a separate `wharf-applier` over the QUIC queue, each kind
//!   compared by its mean.
//! - references: a bare client loading the same rows with `unnest` upserts in 1,000-row batches,
//!   and with binary `COPY`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats};
use wharf_queue::{DEFAULT_LEASE_TIMEOUT, Hlc, Journal, JournalConfig, LocalClient, Partition, QueueService};

use crate::cpu_cost::{self, Busy};
use crate::harness::{InProcessIngest, IngestOptions, TargetDb, checkpoint};
use crate::http::Sender;
use crate::lag::{Pipeline, Workload};
use crate::own_memory::{PhaseMemory, measure};

const T0: u64 = 1_732_615_200_000_000_000;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Target database; without it a throwaway local PostgreSQL is started.
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub target_conn: Option<String>,
    /// Rows per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Rows per webhook body.
    #[arg(long = "bodyRows", default_value_t = 1000)]
    pub body_rows: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
    /// Rows of the single-timestamp scan through real wharf-ingest and wharf-applier processes
    /// (peak memory of each is reported; 0 skips it).
    #[arg(long = "scanRows", default_value_t = 2_000_000)]
    pub scan_rows: usize,
    /// Rows per partition of the scaling phase (8 partitions, 1, 2 and 4 applier processes; 0 skips it).
    #[arg(long = "scaleRows", default_value_t = 25_000)]
    pub scale_rows: usize,
    /// Bodies of about 8 MiB posted by 64 senders to a real wharf-ingest, whose peak memory is
    /// reported (0 skips it).
    #[arg(long = "bigBodies", default_value_t = 128)]
    pub big_bodies: usize,
    /// Seconds of the churn phase: updates at --churnShare of the end-to-end capacity with a
    /// separate applier (of the separate applier's backlog rate when capacity is not measured)
    /// through real processes, sampled every 5 s (memory, journal on disk, backlog; 0 skips it).
    #[arg(long = "churnSeconds", default_value_t = 60)]
    pub churn_seconds: u64,
    /// Share of that rate offered in the churn phase.
    #[arg(long = "churnShare", default_value_t = 0.8)]
    pub churn_share: f64,
    /// Exit non-zero unless the churn phase kept the journal inside its disk bound, memory flat
    /// and the backlog bounded (see `wharfctl bench --help`, and `churn.rs` for the rules).
    #[arg(long = "churnCheck")]
    pub churn_check: bool,
    /// GiB of unapplied rows written to a journal whose opening (what a restarted wharf-ingest
    /// waits for) is then timed, from a cold page cache when running as root (0 skips it).
    #[arg(long = "restartGiB", default_value_t = 1.0)]
    pub restart_gib: f64,
    /// Seconds of each of the 4 feeds that bisect the end-to-end capacity (0 skips it).
    #[arg(long = "capacitySeconds", default_value_t = 20)]
    pub capacity_seconds: u64,
    /// Seconds of the steady-feed lag phase at half the end-to-end capacity (half the apply rate
    /// when capacity is not measured; 0 skips it).
    #[arg(long = "lagSeconds", default_value_t = 10)]
    pub lag_seconds: u64,
}

fn payload(id: usize) -> String {
    format!("row {id:010} {}", "x".repeat(80))
}

fn bodies(rows: usize, body_rows: usize) -> Vec<Bytes> {
    (0..rows).step_by(body_rows).map(|first| bodies_from(first, body_rows.min(rows - first), "rows")).collect()
}

/// One webhook body with rows `first..first + count` of table `topic`, each at its own timestamp.
pub fn bodies_from(first: usize, count: usize, topic: &str) -> Bytes {
    let messages: Vec<String> = (first..first + count)
        .map(|id| {
            format!(
                "{{\"after\": {{\"id\": {id}, \"payload\": \"{}\"}}, \"key\": [{id}], \"topic\": \"{topic}\", \"updated\": \"{}\"}}",
                payload(id),
                Hlc::new(T0 + id as u64, 0)
            )
        })
        .collect();
    Bytes::from(format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), messages.len()))
}

/// Writes back every dirty page first, so one phase's leftover disk writes do not slow the next.
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
}

async fn send_all(sender: &Sender, bodies: &[Bytes], senders: usize) -> anyhow::Result<Duration> {
    settle();
    let started = Instant::now();
    let mut inflight = JoinSet::new();
    for body in bodies {
        while inflight.len() >= senders {
            inflight.join_next().await.expect("non-empty")??;
        }
        let (sender, body) = (sender.clone(), body.clone());
        inflight.spawn(async move { sender.post(body).await });
    }
    while let Some(done) = inflight.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let given = args.target_conn.is_some();
    let target = TargetDb::open(args.target_conn.clone(), "wharf_bench").await?;
    let client = target.client().await?;
    let before = if given { Some(crate::bench_target::check(&client).await?) } else { None };
    let mut jwt_key = None;
    let result = run_phases(&args, &target, &client, &mut jwt_key).await;
    if let Some(before) = before {
        crate::bench_target::clean(&client, &before, jwt_key.as_deref()).await?;
        eprintln!("bench: removed the benchmark's schemas, checkpoints and JWT key from the target");
    }
    result
}

async fn run_phases(
    args: &BenchArgs,
    target: &TargetDb,
    client: &tokio_postgres::Client,
    jwt_key: &mut Option<String>,
) -> anyhow::Result<()> {
    let database: String = client.query_one("SELECT current_database()", &[]).await?.get(0);
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench;
             CREATE TABLE bench.rows (id bigint PRIMARY KEY, payload text);
             CREATE TABLE bench.ref_unnest (id bigint PRIMARY KEY, payload text);
             CREATE TABLE bench.ref_copy (id bigint PRIMARY KEY, payload text);",
        )
        .await?;
    let bodies = bodies(args.rows, args.body_rows);
    let journal_dir = tempfile::tempdir()?;
    let (discard_first, memory_discard_first) =
        measure(discard_run(&target.url, &database, &bodies, args.senders)).await;
    let discard_first = discard_first?;

    let busy = Busy::start();
    let (durable, memory_durable) =
        measure(durable_run(&target.url, &database, &bodies, args.senders, journal_dir.path())).await;
    let mut durable_busy = vec![busy.and_then(Busy::seconds)];
    let durable = durable?;
    eprintln!("bench: durable ingest {:.0} rows/s", args.rows as f64 / durable.as_secs_f64());

    // The same durable run with JWT authentication on (ES256), into a fresh journal.
    let (token, key_id) = install_jwt_key(client).await?;
    *jwt_key = Some(key_id);
    let auth_dir = tempfile::tempdir()?;
    let options = IngestOptions { authenticate: true, ..IngestOptions::default() };
    let (durable_auth, memory_durable_auth) = measure(async {
        let ingest = InProcessIngest::start(&target.url, auth_dir.path(), options).await?;
        let sender = Sender::new(ingest.base_url(&database, "bench")).with_token(&token);
        let took = send_all(&sender, &bodies, args.senders).await?;
        ingest.stop().await?;
        anyhow::Ok(took)
    })
    .await;
    let durable_auth = durable_auth?;
    eprintln!("bench: durable ingest with JWT {:.0} rows/s", args.rows as f64 / durable_auth.as_secs_f64());
    // Phases run later are slower on this machine (disk writeback of earlier phases), so the
    // open run is repeated after the JWT run and the JWT figure is compared with their mean.
    let again_dir = tempfile::tempdir()?;
    let busy = Busy::start();
    let (durable_again, memory_durable_again) =
        measure(durable_run(&target.url, &database, &bodies, args.senders, again_dir.path())).await;
    durable_busy.push(busy.and_then(Busy::seconds));
    let durable_again = durable_again?;

    let (discard_last, memory_discard_last) = measure(discard_run(&target.url, &database, &bodies, args.senders)).await;
    let discard_last = discard_last?;
    // A fourth backlog, for the second separate apply.
    let quic_dir = tempfile::tempdir()?;
    durable_run(&target.url, &database, &bodies, args.senders, quic_dir.path()).await?;

    // Embedded apply before and after two separate ones, each kind compared by its mean (as
    // ingest is): single runs on this machine vary by a tenth or more.
    let (applied, memory_apply) = measure(apply_backlog(&target.url, journal_dir.path(), &database, args.rows)).await;
    let (index, apply, apply_busy) = applied?;
    let mut apply_quic = Vec::new();
    for dir in [&again_dir, &quic_dir] {
        let (took, busy) = crate::scale::apply_quic(&target.url, dir.path(), &database, args.rows).await?;
        eprintln!("bench: apply by a separate wharf-applier {:.0} rows/s", args.rows as f64 / took.as_secs_f64());
        apply_quic.push((took, busy));
    }
    crate::scale::reset_target(client, &Partition::new(&database, "bench")).await?;
    let (applied, memory_apply_again) =
        measure(apply_backlog(&target.url, auth_dir.path(), &database, args.rows)).await;
    let (_, apply_again, apply_again_busy) = applied?;
    let ingest_us = cpu_cost::per_row(&durable_busy, args.rows);
    let apply_us = cpu_cost::per_row(&[apply_busy, apply_again_busy], args.rows);
    let apply_quic_us = cpu_cost::per_row(&apply_quic.iter().map(|(_, busy)| *busy).collect::<Vec<_>>(), args.rows);
    let inprocess_memory = [
        PhaseMemory::json("discard (first)", memory_discard_first),
        PhaseMemory::json("durable", memory_durable),
        PhaseMemory::json("durable, JWT", memory_durable_auth),
        PhaseMemory::json("durable (again)", memory_durable_again),
        PhaseMemory::json("discard (last)", memory_discard_last),
        PhaseMemory::json("apply, embedded applier", memory_apply),
        PhaseMemory::json("apply, embedded applier (again)", memory_apply_again),
    ];
    let scan = match args.scan_rows {
        0 => None,
        rows => Some(crate::scale::scan(&target.url, &database, rows).await?),
    };
    let big = match args.big_bodies {
        0 => None,
        bodies => Some(crate::memory::big_bodies(&target.url, &database, bodies).await?),
    };
    let restart = match args.restart_gib {
        gib if gib > 0.0 => Some(crate::restart::measure(gib).await?),
        _ => None,
    };
    let scaling = match args.scale_rows {
        0 => Vec::new(),
        rows => crate::scale::scaling(&target.url, &database, rows, &[1, 2, 4]).await?,
    };
    // `COPY` before and after `unnest`, compared by their mean.
    let copy_first = reference_copy(client, args.rows).await?;
    let unnest = reference_unnest(client, args.rows).await?;
    client.batch_execute("TRUNCATE bench.ref_copy").await?;
    let copy_last = reference_copy(client, args.rows).await?;
    let per_s = |d: Duration| args.rows as f64 / d.as_secs_f64();
    let apply_rate = (per_s(apply) + per_s(apply_again)) / 2.0;
    let copy_rate = (per_s(copy_first) + per_s(copy_last)) / 2.0;
    let apply_quic_rate = apply_quic.iter().map(|(took, _)| per_s(*took)).sum::<f64>() / apply_quic.len() as f64;
    // Both open durable runs, as the ratios below use.
    let durable_rate =
        (args.rows as f64 / durable.as_secs_f64() + args.rows as f64 / durable_again.as_secs_f64()) / 2.0;
    let (capacity, capacity_separate) = match args.capacity_seconds {
        0 => (None, None),
        seconds => {
            let (url, db) = (&target.url, &database);
            let upper = apply_rate.min(durable_rate);
            let embedded = crate::capacity::search(url, db, Pipeline::Embedded, Workload::Inserts, upper, seconds);
            let embedded = embedded.await?;
            let upper = apply_quic_rate.min(durable_rate);
            let separate = crate::capacity::search(url, db, Pipeline::Separate, Workload::Inserts, upper, seconds);
            (Some(embedded), Some(separate.await?))
        }
    };
    // The churn updates keys over and over (slower to apply than inserts): its rate is a share of
    // the capacity for that workload, through the same processes.
    let capacity_updates = match (&capacity_separate, args.churn_seconds) {
        (Some(inserts), 1..) => {
            let (url, db, upper) = (&target.url, &database, inserts.rows_per_s);
            Some(crate::capacity::search(url, db, Pipeline::Separate, Workload::Updates, upper, args.capacity_seconds))
        }
        _ => None,
    };
    let capacity_updates = match capacity_updates {
        Some(search) => Some(search.await?),
        None => None,
    };
    let churn_base = capacity_updates.as_ref().map_or(apply_quic_rate, |c| c.rows_per_s);
    let churn = match args.churn_seconds {
        0 => None,
        seconds => Some(crate::churn::measure(&target.url, &database, args.churn_share * churn_base, seconds).await?),
    };
    let churn_verdict = churn.as_ref().map(|c| crate::churn::check(&c.samples));
    let lag_rate = capacity.as_ref().map_or(apply_rate, |c| c.rows_per_s) / 2.0;
    let lag = match args.lag_seconds {
        0 => None,
        seconds if lag_rate >= 1000.0 => Some(crate::lag::measure(&target.url, &database, lag_rate, seconds).await?),
        _ => None,
    };

    let rate = |d: Duration| args.rows as f64 / d.as_secs_f64();
    let durable_mean = durable_rate;
    let discard_mean = (rate(discard_first) + rate(discard_last)) / 2.0;
    // Each run of the figures reported as means.
    let runs = json!({
        "ingest_discard_rows_per_s": [rate(discard_first).round(), rate(discard_last).round()],
        "ingest_durable_rows_per_s": [rate(durable).round(), rate(durable_again).round()],
        "apply_rows_per_s": [rate(apply).round(), rate(apply_again).round()],
        "apply_quic_rows_per_s": apply_quic.iter().map(|(took, _)| rate(*took).round()).collect::<Vec<_>>(),
        "apply_reference_copy_rows_per_s": [rate(copy_first).round(), rate(copy_last).round()],
    });
    let report = json!({
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
        "apply_reference_unnest_rows_per_s": rate(unnest).round(),
        "apply_reference_copy_rows_per_s": copy_rate.round(),
        "apply_vs_unnest": (apply_rate / rate(unnest) * 100.0).round() / 100.0,
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
        "scaling": scaling.iter().map(|p| json!({"appliers": p.appliers, "rows_per_s": p.rows_per_s.round(), "peak_rss_mib_applier": p.peak_rss_mib_applier.round()})).collect::<Vec<_>>(),
        "e2e_capacity_rows_per_s": capacity.as_ref().map(|c| c.rows_per_s.round()),
        "e2e_capacity_vs_min_ingest_apply": capacity.as_ref().map(|c| (c.rows_per_s / apply_rate.min(durable_mean) * 100.0).round() / 100.0),
        "e2e_capacity_probes": capacity.as_ref().map(|c| c.probes.iter().map(|p| json!({"asked_rows_per_s": p.asked_rows_per_s.round(), "offered_rows_per_s": p.offered_rows_per_s.round(), "last_lag_ms": p.last_lag.map(|l| l.as_millis() as u64), "sustained": p.sustained})).collect::<Vec<_>>()),
        "lag_offered_rows_per_s": lag.as_ref().map(|l| l.offered_rows_per_s.round()),
        "lag_p50_ms": lag.as_ref().map(|l| l.p50_ms.round()),
        "lag_p99_ms": lag.as_ref().map(|l| l.p99_ms.round()),
        "lag_max_ms": lag.as_ref().map(|l| l.max_ms.round()),
    });
    let mut report = report;
    let extra = json!({
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
    let embedded_bound = cpu_cost::shared_bound(ingest_us, apply_us);
    let separate_bound = cpu_cost::shared_bound(ingest_us, apply_quic_us);
    if let (Some(report), serde_json::Value::Object(extra), serde_json::Value::Object(cpu)) =
        (report.as_object_mut(), extra, cpu)
    {
        report.extend(extra);
        report.extend(cpu);
        report.extend(cpu_cost::report("e2e_capacity", capacity.as_ref().map(|c| c.rows_per_s), embedded_bound));
        let separate = capacity_separate.as_ref().map(|c| c.rows_per_s);
        report.extend(cpu_cost::report("e2e_capacity_separate", separate, separate_bound));
    }
    if args.json {
        println!("{report}");
    } else {
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
            "{:<36} {:>12.0}   (acknowledged and readable by appliers; absolute target ≥ 150000 for durable)",
            "ingest, sustained",
            rate(durable + index)
        );
        println!(
            "{:<36} {:>12.0}   unnest upserts {:>10.0}  ratio {:.2} (target ≥ 1.0; apply: mean of 2 runs)",
            "apply from backlog",
            apply_rate,
            rate(unnest),
            apply_rate / rate(unnest)
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
            bodies.iter().map(Bytes::len).sum::<usize>() as f64 / 1048576.0,
            peaks.join(", ")
        );
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
        for point in &scaling {
            println!(
                "{:<36} {:>12.0}   8 partitions; peak RSS of an applier {:.0} MiB",
                format!("drain by {} wharf-applier process(es)", point.appliers),
                point.rows_per_s,
                point.peak_rss_mib_applier
            );
        }
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
    }
    if args.churn_check
        && let Some(Err(why)) = churn_verdict
    {
        anyhow::bail!("churn check failed: {why}");
    }
    Ok(())
}

/// One durable run into the journal at `dir`.
async fn durable_run(
    url: &str,
    database: &str,
    bodies: &[Bytes],
    senders: usize,
    dir: &std::path::Path,
) -> anyhow::Result<Duration> {
    let ingest = InProcessIngest::start(url, dir, IngestOptions::default()).await?;
    let took = send_all(&Sender::new(ingest.base_url(database, "bench")), bodies, senders).await;
    ingest.stop().await?;
    took
}

/// One run of the reference: the same server in `--discard` mode.
async fn discard_run(url: &str, database: &str, bodies: &[Bytes], senders: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let options = IngestOptions { discard: true, ..IngestOptions::default() };
    let ingest = InProcessIngest::start(url, dir.path(), options).await?;
    let took = send_all(&Sender::new(ingest.base_url(database, "bench")), bodies, senders).await;
    ingest.stop().await?;
    took
}

/// Creates the key tables, inserts a fresh ES256 public key and returns a token it signed and
/// the key's id.
async fn install_jwt_key(client: &tokio_postgres::Client) -> anyhow::Result<(String, String)> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS _replicator;
             CREATE TABLE IF NOT EXISTS _replicator.jwt_public_keys (
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(), public_key text NOT NULL, active bool NOT NULL DEFAULT true);
             CREATE TABLE IF NOT EXISTS _replicator.jwt_revoked_ids (id text PRIMARY KEY);",
        )
        .await?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let id: String = client
        .query_one(
            "INSERT INTO _replicator.jwt_public_keys (public_key) VALUES ($1) RETURNING id::text",
            &[&key.public_key_pem()],
        )
        .await?
        .get(0);
    let claims =
        serde_json::json!({"jti": "bench", wharf_ingest::auth::jwt::CLAIM_NAMESPACE: {"schemas": [["*", "bench"]]}});
    Ok((wharf_ingest::auth::sign::SigningKey::from_pem(&key.serialize_pem())?.sign(&claims)?, id))
}

/// Times the indexing of the logged backlog, then resolves it at once and times one applier
/// draining it.
async fn apply_backlog(
    url: &str,
    journal_dir: &std::path::Path,
    database: &str,
    rows: usize,
) -> anyhow::Result<(Duration, Duration, Option<f64>)> {
    let indexing = Instant::now();
    let journal = Journal::open(&JournalConfig::new(journal_dir))?;
    journal.wait_written().await;
    let index = indexing.elapsed();
    let partition = Partition::new(database, "bench");
    let resolved = Hlc::new(T0 + rows as u64, 0);
    journal.resolve_durable(&partition, resolved).await?;
    // Timing starts once the backlog is indexed and resolved, i.e. readable by an applier.
    while journal.resolved(&partition) != Some(resolved) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    settle();
    let stop = CancellationToken::new();
    let config = ApplierConfig::new(url, "_replicator", 1);
    let busy = Busy::start();
    let started = Instant::now();
    let client = LocalClient::new(QueueService::new(journal.clone(), DEFAULT_LEASE_TIMEOUT), "bench", 1);
    let task = tokio::spawn(wharf_applier::run(config, client, Arc::new(ApplyStats::default()), stop.clone()));
    let client = wharf_targetdb::connect(url).await?;
    let key = partition.to_string();
    crate::sim::feed::wait_until(Duration::from_secs(600), || {
        let (client, key) = (&client, &key);
        async move { checkpoint(client, key).await.ok().flatten().is_some_and(|c| c == resolved.to_string()) }
    })
    .await?;
    let elapsed = started.elapsed();
    let busy = busy.and_then(Busy::seconds);
    stop.cancel();
    task.await?;
    Ok((index, elapsed, busy))
}

async fn reference_unnest(client: &tokio_postgres::Client, rows: usize) -> anyhow::Result<Duration> {
    settle();
    let statement = client
        .prepare("INSERT INTO bench.ref_unnest (id, payload) SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT (id) DO UPDATE SET payload = excluded.payload")
        .await?;
    let started = Instant::now();
    client.batch_execute("BEGIN").await?;
    for start in (0..rows).step_by(1000) {
        let ids: Vec<i64> = (start..(start + 1000).min(rows)).map(|i| i as i64).collect();
        let payloads: Vec<String> = ids.iter().map(|&i| payload(i as usize)).collect();
        client.execute(&statement, &[&ids, &payloads]).await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(started.elapsed())
}

async fn reference_copy(client: &tokio_postgres::Client, rows: usize) -> anyhow::Result<Duration> {
    settle();
    let started = Instant::now();
    let sink = client.copy_in("COPY bench.ref_copy (id, payload) FROM STDIN BINARY").await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT]);
    let mut writer = std::pin::pin!(writer);
    for id in 0..rows {
        writer.as_mut().write(&[&(id as i64), &payload(id)]).await?;
    }
    writer.finish().await?;
    Ok(started.elapsed())
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
