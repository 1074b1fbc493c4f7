//! `wharfctl status`: per partition the lease holder, epoch, checkpoint, resolved timestamp, lag
//! and what waits in the journal; the connected applier processes.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;
use wharf_queue::quic::{ClientSettings, QuicClient, TlsFiles};
use wharf_queue::{Hlc, ServiceStatus};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The queue service of a wharf-ingest: HOST:PORT.
    #[arg(long = "queueAddr")]
    pub queue_addr: String,
    /// PEM CA certificate that signed the queue service's certificate.
    #[arg(long = "queueCA")]
    pub queue_ca: PathBuf,
    /// PEM client certificate signed by the CA the queue service trusts.
    #[arg(long = "queueCertificate")]
    pub queue_certificate: PathBuf,
    /// PEM private key of the client certificate.
    #[arg(long = "queuePrivateKey")]
    pub queue_private_key: PathBuf,
    /// Target database: adds the checkpoints as the target holds them.
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub target_conn: Option<String>,
    /// Schema of wharf's tables in the target.
    #[arg(long = "stagingSchema", env = "WHARF_STAGING_SCHEMA", default_value = "_replicator")]
    pub staging_schema: String,
    /// One JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    partition: String,
    holder: Option<String>,
    epoch: u64,
    /// The checkpoint committed in the target (or the journal's copy without --targetConn).
    applied: Option<String>,
    resolved: Option<String>,
    /// Seconds from the applied checkpoint to now.
    lag_s: Option<f64>,
    /// Seconds from the applied checkpoint to the newest resolved timestamp.
    behind_s: Option<f64>,
    pending_rows: u64,
    pending_bytes: u64,
    /// Rows at or below the checkpoint acknowledged and dropped since the ingest started.
    dropped_stale: u64,
    paused: Option<String>,
    /// Why its apply fails for good, until a window commits rows again.
    blocked: Option<String>,
    /// Row versions in the target's quarantine table (with --targetConn).
    quarantined: Option<u64>,
    /// Seconds since the holder last made progress (a grant, a chunk read, a commit).
    idle_s: Option<u64>,
    /// A foreign-key group's tables; empty for a schema.
    tables: Vec<String>,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let settings = ClientSettings {
        addr: args.queue_addr.clone(),
        tls: TlsFiles { certificate: args.queue_certificate, private_key: args.queue_private_key, ca: args.queue_ca },
        name: "wharfctl-status".into(),
        workers: 0,
    };
    let status = QuicClient::new(settings)?.status().await?;
    let (target, quarantined) = match &args.target_conn {
        Some(conn) => {
            let client = wharf_targetdb::connect(conn).await?;
            let checkpoints = wharf_targetdb::checkpoint::read_all(&client, &args.staging_schema).await?;
            (checkpoints, Some(wharf_applier::dlq::counts(&client, &args.staging_schema).await?))
        }
        None => (Vec::new(), None),
    };
    let rows = rows(&status, &target, quarantined.as_ref());
    if args.json {
        let out = serde_json::json!({
            "partitions": rows,
            "sessions": status.sessions,
            "lease_timeout_ms": status.lease_timeout_ms,
            "drift": status.drift,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_tables(&rows, &status);
    }
    Ok(())
}

fn rows(
    status: &ServiceStatus,
    target: &[wharf_targetdb::CheckpointRow],
    quarantined: Option<&std::collections::HashMap<String, u64>>,
) -> Vec<Row> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let seconds = |from: Hlc, to: u64| to.saturating_sub(from.wall) as f64 / 1e9;
    status
        .partitions
        .iter()
        .map(|p| {
            let in_target = target.iter().find(|c| c.partition == p.lease.partition).map(|c| c.resolved);
            let applied = in_target.or_else(|| p.applied.as_deref().and_then(|h| Hlc::parse(h).ok()));
            let resolved = p.resolved.as_deref().and_then(|h| Hlc::parse(h).ok());
            Row {
                partition: p.lease.partition.clone(),
                holder: p.lease.holder.clone(),
                epoch: p.lease.epoch,
                applied: applied.map(|h| h.to_string()),
                resolved: p.resolved.clone(),
                lag_s: applied.map(|a| seconds(a, now)),
                behind_s: applied.zip(resolved).map(|(a, r)| seconds(a, r.wall)),
                pending_rows: p.pending_rows,
                pending_bytes: p.pending_bytes,
                dropped_stale: p.dropped_stale,
                paused: p.lease.paused.clone(),
                blocked: p.lease.blocked.clone(),
                quarantined: quarantined.map(|q| q.get(&p.lease.partition).copied().unwrap_or(0)),
                idle_s: p.lease.idle_s,
                tables: p.tables.clone(),
            }
        })
        .collect()
}

fn print_tables(rows: &[Row], status: &ServiceStatus) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let secs = |v: Option<f64>| v.map_or("-".into(), |s| format!("{s:.1}"));
    println!(
        "{:<24} {:<22} {:>5} {:>32} {:>32} {:>8} {:>8} {:>10} {:>12} {:>8} {:>6}",
        "PARTITION",
        "HOLDER",
        "EPOCH",
        "APPLIED",
        "RESOLVED",
        "LAG_S",
        "BEHIND_S",
        "ROWS",
        "BYTES",
        "DROPPED",
        "IDLE_S"
    );
    for r in rows {
        println!(
            "{:<24} {:<22} {:>5} {:>32} {:>32} {:>8} {:>8} {:>10} {:>12} {:>8} {:>6}{}",
            r.partition,
            opt(&r.holder),
            r.epoch,
            opt(&r.applied),
            opt(&r.resolved),
            secs(r.lag_s),
            secs(r.behind_s),
            r.pending_rows,
            r.pending_bytes,
            r.dropped_stale,
            r.idle_s.map_or("-".into(), |s| s.to_string()),
            match (&r.paused, &r.blocked) {
                (Some(p), _) => format!("  paused: {p}"),
                (None, Some(b)) => format!("  blocked: {b}"),
                _ => String::new(),
            } + &match r.quarantined {
                Some(n) if n > 0 => format!("  quarantined: {n} (wharfctl dlq list)"),
                _ => String::new(),
            }
        );
    }
    print_groups(rows);
    println!();
    println!("{:<8} {:<32} {:>8} {:>7}", "SESSION", "APPLIER", "WORKERS", "LEASES");
    for s in &status.sessions {
        println!("{:<8} {:<32} {:>8} {:>7}", s.session, s.name, s.workers, s.leases);
    }
    if status.sessions.is_empty() {
        println!("(no applier connected)");
    }
    print_drift(status);
}

/// The tables of each foreign-key group (`--partitionBy group`).
fn print_groups(rows: &[Row]) {
    if rows.iter().all(|r| r.tables.is_empty()) {
        return;
    }
    println!();
    println!("{:<40} TABLES", "GROUP");
    for r in rows.iter().filter(|r| !r.tables.is_empty()) {
        println!("{:<40} {}", r.partition, r.tables.join(", "));
    }
}

/// Payload tables and columns the target lacks, while the ingest sees them.
fn print_drift(status: &ServiceStatus) {
    if status.drift.is_empty() {
        return;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    println!();
    println!(
        "{:<24} {:<24} {:<24} {:<15} {:<7} {:>8} {:>9} {:>8}",
        "DRIFT", "TABLE", "COLUMN", "KIND", "POLICY", "SINCE_S", "REFUSED", "DROPPED"
    );
    for d in &status.drift {
        println!(
            "{:<24} {:<24} {:<24} {:<15} {:<7} {:>8} {:>9} {:>8}",
            d.partition,
            d.table,
            d.column.as_deref().unwrap_or("-"),
            d.kind,
            d.policy,
            now.saturating_sub(d.since_unix_s),
            d.refused,
            d.dropped
        );
    }
}
