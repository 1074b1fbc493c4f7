//! `wharf-applier start …`: applier workers in a process of their own, fed by the queue service
//! of a `wharf-ingest` over QUIC with mutual TLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats};
use wharf_queue::QueueError;
use wharf_queue::quic::{ClientSettings, QuicClient, TlsFiles};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wharf-applier", version, about = "Applies resolved windows from wharf's queue service to the target")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply resolved windows until SIGTERM or SIGINT.
    Start(Box<StartArgs>),
    /// Print the version, build facts and every package linked into this binary with its
    /// registry checksum.
    Version {
        /// One JSON object for machines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct StartArgs {
    /// The queue service of a wharf-ingest: HOST:PORT (UDP); HOST must be in its certificate.
    #[arg(long = "queueAddr", env = "WHARF_QUEUE_ADDR")]
    queue_addr: String,
    /// Target database: postgresql://user@host:port/database
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    target_conn: String,
    /// PEM CA certificate that signed the queue service's certificate.
    #[arg(long = "queueCA", env = "WHARF_QUEUE_CA")]
    queue_ca: PathBuf,
    /// PEM client certificate, signed by the CA the queue service trusts (--queueClientCA).
    #[arg(long = "queueCertificate", env = "WHARF_QUEUE_CERTIFICATE")]
    queue_certificate: PathBuf,
    /// PEM private key of the client certificate.
    #[arg(long = "queuePrivateKey", env = "WHARF_QUEUE_PRIVATE_KEY")]
    queue_private_key: PathBuf,
    /// Schema inside the target database for wharf's checkpoints.
    #[arg(long = "stagingSchema", env = "WHARF_STAGING_SCHEMA", default_value = "_replicator")]
    staging_schema: String,
    /// Concurrent workers in this process (each applies one partition at a time).
    #[arg(long = "workers", env = "WHARF_WORKERS", default_value_t = 1)]
    workers: u32,
    /// A row the target refuses for good (a CHECK, NOT NULL, unique or foreign-key violation, a
    /// value it cannot take): `halt` (the schema stops until the target or the data changes) or
    /// `quarantine` (the row and later versions of its key go to the staging schema's quarantine
    /// table, the rest applies; `wharfctl dlq` lists, replays and discards them).
    #[arg(long = "onApplyError", env = "WHARF_ON_APPLY_ERROR", default_value = "halt")]
    on_apply_error: wharf_base::OnApplyError,
    /// Under `--onApplyError quarantine`: once a schema's quarantine holds this many keys, a
    /// row the target refuses halts the partition instead (a target refusing every row should not
    /// move whole tables aside).
    #[arg(long = "quarantineMaxKeys", env = "WHARF_QUARANTINE_MAX_KEYS", default_value_t = 10_000)]
    quarantine_max_keys: usize,
    /// Name shown by `wharfctl status` (default: host name and process id).
    #[arg(long = "name", env = "WHARF_NAME")]
    name: Option<String>,
    /// Serve /_/varz (this process's apply metrics) and /_/livez on this plain-HTTP address
    /// (HOST:PORT).
    #[arg(long = "metricsAddr", env = "WHARF_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object per line), on stderr.
    #[arg(long = "logFormat", env = "WHARF_LOG_FORMAT", default_value = "text")]
    log_format: wharf_base::logging::LogFormat,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version { json } => {
            let report = if json {
                wharf_base::version::json("wharf-applier")
            } else {
                wharf_base::version::text("wharf-applier")
            };
            println!("{}", report.trim_end());
            Ok(())
        }
        Command::Start(args) => {
            wharf_base::logging::init(args.log_format, "info");
            // One crypto provider for the whole process.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            tokio::runtime::Runtime::new()?.block_on(start(*args))
        }
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let workers = args.workers.max(1);
    let settings = ClientSettings {
        addr: args.queue_addr.clone(),
        tls: TlsFiles { certificate: args.queue_certificate, private_key: args.queue_private_key, ca: args.queue_ca },
        name: args.name.unwrap_or_else(default_name),
        workers,
    };
    let client = QuicClient::new(settings)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    if !connect_first(&client, &args.queue_addr, &shutdown).await? {
        return Ok(());
    }
    let config = ApplierConfig {
        on_apply_error: args.on_apply_error,
        quarantine_max_keys: args.quarantine_max_keys,
        ..ApplierConfig::new(&args.target_conn, &args.staging_schema, workers as usize)
    };
    let stats = Arc::new(ApplyStats::default());
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on --metricsAddr {addr}: {e}"))?;
        let mut registry = prometheus_client::registry::Registry::default();
        stats.metrics.register(&mut registry);
        tracing::info!(address = %addr, "metrics listening (plain HTTP)");
        tokio::spawn(wharf_applier::metrics_server::serve(listener, Arc::new(registry), shutdown.clone()));
    }
    tracing::info!(queue = %args.queue_addr, workers, "wharf-applier started");
    wharf_applier::run(config, client, stats, shutdown).await;
    tracing::info!("wharf-applier stopped; its partitions were given back");
    Ok(())
}

/// Waits for the queue service (it may start later); a protocol mismatch stops the process.
/// `false` when shut down first.
async fn connect_first(client: &QuicClient, addr: &str, shutdown: &CancellationToken) -> anyhow::Result<bool> {
    let mut backoff = wharf_base::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match client.connect().await {
            Ok(()) => return Ok(true),
            Err(error @ QueueError::Protocol(_)) => return Err(error.into()),
            Err(error) => tracing::warn!(queue = %addr, %error, "queue service not reachable yet; retrying"),
        }
        if !backoff.wait(shutdown).await {
            return Ok(false);
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the current transaction, giving partitions back"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the current transaction, giving partitions back"),
    }
    shutdown.cancel();
}
