//! `wharfctl bench`: ingest and apply throughput, each beside its reference measured in the same run.
//!
//! One module per phase ([`ingest`], [`apply`]; the process phases are in `scale.rs`,
//! `memory.rs`, `restart.rs`, `capacity.rs`, `churn.rs` and `lag.rs`), [`feed`] for the rows
//! and how they are sent, [`report`] for the JSON and the table.
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

mod apply;
pub mod feed;
mod ingest;
mod report;

use clap::Args;

use crate::capacity::Capacity;
use crate::churn::ChurnReport;
use crate::group_lag::GroupLag;
use crate::harness::TargetDb;
use crate::lag::{LagReport, Pipeline, Workload};
use crate::memory::MemoryReport;
use crate::restart::RestartReport;
use crate::scale::ScanReport;
use crate::scaling::ScalePoint;

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
    /// Rows per table of the scaling phase: 8 tables in 8 schemas, in one schema under
    /// `--partitionBy schema` and under `--partitionBy group`, each drained by 1, 2 and 4 applier
    /// processes (0 skips it).
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
    /// Seconds of each half of the group-lag phase: a steady feed into 8 foreign-key groups of
    /// one schema, the lag of 7 of them sampled with nothing locked, then with the eighth group's
    /// table locked (0 skips it).
    #[arg(long = "groupLagSeconds", default_value_t = 10)]
    pub group_lag_seconds: u64,
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
    let bodies = feed::bodies(args.rows, args.body_rows);
    let ingest_feed =
        ingest::Feed { url: &target.url, database: &database, bodies: &bodies, rows: args.rows, senders: args.senders };
    let ingest = ingest::measure_ingest(&ingest_feed, client, jwt_key).await?;
    let apply = apply::measure_apply(&target.url, client, &database, args.rows, &ingest.journals).await?;
    let processes = processes(args, &target.url, &database).await?;
    let references = apply::measure_references(client, args.rows).await?;
    let rates = report::Rates::of(args.rows, &ingest, &apply, &references);
    let end_to_end = end_to_end(args, &target.url, &database, &rates).await?;
    let report = report::Report {
        args,
        bodies_mib: bodies.iter().map(bytes::Bytes::len).sum::<usize>() as f64 / 1048576.0,
        ingest: &ingest,
        apply: &apply,
        references: &references,
        processes: &processes,
        end_to_end: &end_to_end,
        rates: &rates,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        report.print();
    }
    if args.churn_check
        && let Some(Err(why)) = &end_to_end.churn_verdict
    {
        anyhow::bail!("churn check failed: {why}");
    }
    Ok(())
}

/// The phases through real processes, each skipped when its flag is 0.
pub struct Processes {
    pub scan: Option<ScanReport>,
    pub big: Option<MemoryReport>,
    pub restart: Option<RestartReport>,
    pub scaling: Vec<ScalePoint>,
    pub group_lag: Option<GroupLag>,
}

async fn processes(args: &BenchArgs, url: &str, database: &str) -> anyhow::Result<Processes> {
    let scan = match args.scan_rows {
        0 => None,
        rows => Some(crate::scale::scan(url, database, rows).await?),
    };
    let big = match args.big_bodies {
        0 => None,
        bodies => Some(crate::memory::big_bodies(url, database, bodies).await?),
    };
    let restart = match args.restart_gib {
        gib if gib > 0.0 => Some(crate::restart::measure(gib).await?),
        _ => None,
    };
    let scaling = match args.scale_rows {
        0 => Vec::new(),
        rows => crate::scaling::scaling(url, database, rows, &[1, 2, 4]).await?,
    };
    let group_lag = match args.group_lag_seconds {
        0 => None,
        seconds => Some(crate::group_lag::measure(url, database, seconds).await?),
    };
    Ok(Processes { scan, big, restart, scaling, group_lag })
}

/// The end-to-end phases: capacity (embedded and separate, inserts; separate, updates), the
/// churn at a share of the updates' capacity, the steady-feed lag at half the capacity.
pub struct EndToEnd {
    pub capacity: Option<Capacity>,
    pub capacity_separate: Option<Capacity>,
    pub capacity_updates: Option<Capacity>,
    pub churn: Option<ChurnReport>,
    pub churn_verdict: Option<Result<(), String>>,
    pub lag: Option<LagReport>,
}

async fn end_to_end(args: &BenchArgs, url: &str, db: &str, rates: &report::Rates) -> anyhow::Result<EndToEnd> {
    let (capacity, capacity_separate) = match args.capacity_seconds {
        0 => (None, None),
        seconds => {
            let upper = rates.apply.min(rates.durable);
            let embedded = crate::capacity::search(url, db, Pipeline::Embedded, Workload::Inserts, upper, seconds);
            let embedded = embedded.await?;
            let upper = rates.apply_quic.min(rates.durable);
            let separate = crate::capacity::search(url, db, Pipeline::Separate, Workload::Inserts, upper, seconds);
            (Some(embedded), Some(separate.await?))
        }
    };
    // The churn updates keys over and over (slower to apply than inserts): its rate is a share of
    // the capacity for that workload, through the same processes.
    let capacity_updates = match (&capacity_separate, args.churn_seconds) {
        (Some(inserts), 1..) => {
            let upper = inserts.rows_per_s;
            let search =
                crate::capacity::search(url, db, Pipeline::Separate, Workload::Updates, upper, args.capacity_seconds);
            Some(search.await?)
        }
        _ => None,
    };
    let churn_base = capacity_updates.as_ref().map_or(rates.apply_quic, |c| c.rows_per_s);
    let churn = match args.churn_seconds {
        0 => None,
        seconds => Some(crate::churn::measure(url, db, args.churn_share * churn_base, seconds).await?),
    };
    let churn_verdict = churn.as_ref().map(|c| crate::churn::check(&c.samples));
    let lag_rate = capacity.as_ref().map_or(rates.apply, |c| c.rows_per_s) / 2.0;
    let lag = match args.lag_seconds {
        0 => None,
        seconds if lag_rate >= 1000.0 => Some(crate::lag::measure(url, db, lag_rate, seconds).await?),
        _ => None,
    };
    Ok(EndToEnd { capacity, capacity_separate, capacity_updates, churn, churn_verdict, lag })
}
