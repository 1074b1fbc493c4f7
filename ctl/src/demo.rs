//! `wharfctl demo`: a changefeed simulator against an in-process wharf-ingest with an embedded
//! applier, then an exact check of the target against the model.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wharf_queue::Hlc;

use crate::harness::{InProcessIngest, IngestOptions, TargetDb, checkpoint};
use crate::http::Sender;
use crate::sim::feed::{self, FeedConfig, FeedStats, ResolvedMark};
use crate::sim::{check, model};

const SCHEMA: &str = "wharf_sim";

/// Resolved timestamps sent, each with its apply lag once applied.
pub(crate) type Marks = Arc<Mutex<Vec<(ResolvedMark, Option<Duration>)>>>;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Target database; without it a throwaway local PostgreSQL is started.
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub target_conn: Option<String>,
    /// How long the simulated changefeed runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Seed of the simulated workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rows per webhook request.
    #[arg(long = "batchRows", default_value_t = 500)]
    pub batch_rows: usize,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    println!("wharf demo: a simulated CockroachDB changefeed replicated into PostgreSQL, then checked row by row");
    let target = TargetDb::open(args.target_conn, "wharf_demo").await?;
    let client = target.client().await?;
    let database = prepare_schema(&client, SCHEMA).await?;
    let journal = tempfile::tempdir()?;
    let ingest =
        InProcessIngest::start(&target.url, journal.path(), IngestOptions { appliers: 1, ..IngestOptions::default() })
            .await?;
    let sender = Sender::new(ingest.base_url(&database, SCHEMA));
    let outcome =
        simulate_and_check(&sender, &target.url, &database, SCHEMA, args.seed, args.seconds, args.batch_rows).await;
    ingest.stop().await?;
    outcome
}

/// `wharfctl simulate`: the same feed against a running wharf-ingest.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Base URL of wharf-ingest, e.g. http://127.0.0.1:26258
    #[arg(long)]
    pub url: String,
    /// Target database the ingest process writes to (for creating the schema and checking).
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub target_conn: String,
    /// Schema to create (dropped first if it exists) and replicate into.
    #[arg(long, default_value = SCHEMA)]
    pub schema: String,
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long = "batchRows", default_value_t = 500)]
    pub batch_rows: usize,
    /// PEM CA bundle that the ingest's HTTPS certificate chains to (for an `https://` URL).
    #[arg(long = "caCert", env = "WHARF_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// File holding the JWT sent as `Authorization: Bearer …` (as `webhook_auth_header` does).
    #[arg(long = "tokenFile", env = "WHARF_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// How long one request is retried (unreachable server, 5xx) before the run fails, e.g. 30s.
    #[arg(long = "retryFor", default_value = "60s", value_parser = wharf_ingest::config::parse_duration)]
    pub retry_for: Duration,
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let client = wharf_targetdb::connect(&args.target_conn).await?;
    let database = prepare_schema(&client, &args.schema).await?;
    let base = format!("{}/{database}/{}", args.url.trim_end_matches('/'), args.schema);
    let mut sender = match &args.ca_cert {
        Some(ca) => Sender::with_ca(base, ca)?,
        None => Sender::new(base),
    }
    .with_retry_for(args.retry_for);
    if let Some(file) = &args.token_file {
        let token = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        sender = sender.with_token(token.trim());
    }
    simulate_and_check(&sender, &args.target_conn, &database, &args.schema, args.seed, args.seconds, args.batch_rows)
        .await
}

/// Creates the simulator's tables in a fresh `schema` and forgets its old checkpoint; returns the
/// database name.
async fn prepare_schema(client: &tokio_postgres::Client, schema: &str) -> anyhow::Result<String> {
    let database: String = client.query_one("SELECT current_database()", &[]).await?.get(0);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; {}",
            model::SCHEMA_SQL.replace("{schema}", schema)
        ))
        .await?;
    let partition = format!("{database}.{schema}");
    if checkpoint(client, &partition).await?.is_some() {
        client.execute("DELETE FROM _replicator.checkpoints WHERE partition = $1", &[&partition]).await?;
    }
    Ok(database)
}

/// Drives the simulated feed for `seconds`, waits for the final resolved timestamp to be applied,
/// compares the target with the model and prints a report.
async fn simulate_and_check(
    sender: &Sender,
    target_url: &str,
    database: &str,
    schema: &str,
    seed: u64,
    seconds: u64,
    batch_rows: usize,
) -> anyhow::Result<()> {
    let partition = format!("{database}.{schema}");
    let mut model = model::Model::new(seed);
    let stats = Arc::new(FeedStats::default());
    let marks: Marks = Arc::default();
    let client = &wharf_targetdb::connect(target_url).await?;
    let watcher = tokio::spawn(watch_lag(wharf_targetdb::connect(target_url).await?, partition.clone(), marks.clone()));
    let bar = progress(stats.clone(), seconds);
    let started = Instant::now();
    let config = FeedConfig { batch_rows, ..FeedConfig::default() };
    let marks_in = marks.clone();
    let deadline = started + Duration::from_secs(seconds);
    let last = feed::drive(&mut model, sender, &config, deadline, stats.clone(), move |m| {
        marks_in.lock().expect("marks").push((m, None))
    })
    .await?;
    let fed = started.elapsed();
    bar.finish_and_clear();
    feed::wait_until(Duration::from_secs(120), || {
        let partition = &partition;
        async move { checkpoint(client, partition).await.ok().flatten().and_then(|c| Hlc::parse(&c).ok()) >= Some(last) }
    })
    .await?;
    watcher.abort();
    let diffs = check::differences(client, schema, &model).await?;
    report(&stats, fed, &marks.lock().expect("marks"), &model, &diffs);
    anyhow::ensure!(diffs.is_empty(), "the target differs from the model");
    Ok(())
}

fn progress(stats: Arc<FeedStats>, seconds: u64) -> ProgressBar {
    let bar = ProgressBar::new(seconds * 10);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        tokio::spawn(progress_lines(stats.clone(), bar.clone()));
    }
    bar.set_style(ProgressStyle::with_template("{spinner} [{bar:30}] {msg}").expect("template").progress_chars("=> "));
    let ticker = bar.clone();
    let started = Instant::now();
    tokio::spawn(async move {
        while !ticker.is_finished() {
            let rows = stats.rows_acked.load(std::sync::atomic::Ordering::Relaxed);
            let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
            ticker.set_position((started.elapsed().as_millis() / 100) as u64);
            ticker.set_message(format!("{rows} rows acknowledged ({rate:.0} rows/s)"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    bar
}

/// Without a terminal (CI, a pipe, `docker compose run`): one line every 5 s instead of a bar.
async fn progress_lines(stats: Arc<FeedStats>, bar: ProgressBar) {
    let started = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        if bar.is_finished() {
            return;
        }
        let rows = stats.rows_acked.load(std::sync::atomic::Ordering::Relaxed);
        let resolved = stats.resolved_sent.load(std::sync::atomic::Ordering::Relaxed);
        let secs = started.elapsed().as_secs();
        eprintln!("simulate: {secs} s, {rows} rows acknowledged, {resolved} resolved timestamps");
    }
}

/// Records, for every resolved timestamp, how long after its acknowledgement it was applied.
pub(crate) async fn watch_lag(client: tokio_postgres::Client, partition: String, marks: Marks) {
    loop {
        if let Ok(Some(applied)) = checkpoint(&client, &partition).await
            && let Ok(applied) = Hlc::parse(&applied)
        {
            let now = Instant::now();
            for (mark, lag) in marks.lock().expect("marks").iter_mut() {
                if lag.is_none() && mark.hlc <= applied {
                    *lag = Some(now.saturating_duration_since(mark.acked_at));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn report(
    stats: &FeedStats,
    fed: Duration,
    marks: &[(ResolvedMark, Option<Duration>)],
    model: &model::Model,
    diffs: &[String],
) {
    let rows = stats.rows_acked.load(std::sync::atomic::Ordering::Relaxed);
    let mut lags: Vec<Duration> = marks.iter().filter_map(|(_, l)| *l).collect();
    lags.sort();
    let pct =
        |p: f64| lags.get(((lags.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "rows acknowledged  {rows} in {:.1} s = {:.0} rows/s (with duplicates and re-emissions)",
        fed.as_secs_f64(),
        rows as f64 / fed.as_secs_f64()
    );
    println!(
        "resolved windows   {} applied; apply lag after each resolved: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lags.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("target             {} parents, {} children", model.parents.len(), model.children.len());
    if diffs.is_empty() {
        println!("check              OK: the target equals the model exactly");
    } else {
        println!("check              FAILED:");
        for d in diffs {
            println!("  {d}");
        }
    }
}
