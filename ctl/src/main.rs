//! `wharfctl`: demo, changefeed simulator, benchmarks, version.

/// glibc's allocator dominated profiles of the ingest and apply paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_target;
mod capacity;
mod certs;
mod changefeed;
mod churn;
mod cluster;
mod cpu_cost;
mod demo;
mod dlq;
mod group_lag;
mod harness;
mod http;
mod lag;
mod memory;
mod own_memory;
mod recover;
mod restart;
mod scale;
mod scaling;
mod security;
mod sim;
mod status;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wharfctl", version, about = "wharf's admin tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object per line), on stderr.
    #[arg(long = "logFormat", env = "WHARF_LOG_FORMAT", global = true, default_value = "text")]
    log_format: wharf_base::logging::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated changefeed into PostgreSQL and check the result.
    Demo(demo::DemoArgs),
    /// Drive a simulated changefeed against a running wharf-ingest and check the target.
    Simulate(demo::SimulateArgs),
    /// Measure ingest and apply throughput against their references.
    Bench(bench::BenchArgs),
    /// Make a JWT for a changefeed's webhook_auth_header, or print its claim (--claim).
    MakeJwt(security::MakeJwtArgs),
    /// Manage the JWT public keys in the target's staging schema.
    #[command(subcommand)]
    Keys(security::KeysCommand),
    /// Revoke tokens by jti, or list revoked ones.
    #[command(subcommand)]
    Tokens(security::TokensCommand),
    /// Make the certificates of the queue service and of applier processes (mutual TLS).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Print the CREATE CHANGEFEED statement for a running wharf-ingest (--check: ask it whether it
    /// would accept the statement's path and token).
    Changefeed(changefeed::ChangefeedArgs),
    /// Quarantined row versions (--onApplyError quarantine): list, replay or discard them.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Show leases, checkpoints, lag and the journal's backlog per partition, and the connected appliers.
    Status(status::StatusArgs),
    /// After a lost or damaged journal: the CREATE CHANGEFEED statements that restart each feed
    /// from the checkpoint the target holds.
    Recover(recover::RecoverArgs),
    /// Check a wharf-ingest's health (`/_/healthz`): exit 0 on 200, 1 otherwise, printing the body.
    /// For container healthchecks (no curl needed).
    Health {
        /// e.g. https://localhost:26258/_/healthz
        url: String,
        /// PEM CA bundle for an `https://` URL.
        #[arg(long = "caCert", env = "WHARF_CA_CERT")]
        ca_cert: Option<std::path::PathBuf>,
    },
    /// Print the version, build facts and every package linked into this binary with its
    /// registry checksum.
    Version {
        /// One JSON object for machines.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One crypto provider for the whole process (QUIC, TLS).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    wharf_base::logging::init(cli.log_format, "warn");
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Simulate(args) => runtime.block_on(demo::simulate(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::MakeJwt(args) => security::make_jwt(args),
        Command::Certs(command) => certs::run(command),
        Command::Changefeed(args) => runtime.block_on(changefeed::run(args)),
        Command::Status(args) => runtime.block_on(status::run(args)),
        Command::Dlq(command) => runtime.block_on(dlq::run(command)),
        Command::Recover(args) => runtime.block_on(recover::run(args)),
        Command::Keys(command) => runtime.block_on(security::keys(command)),
        Command::Tokens(command) => runtime.block_on(security::tokens(command)),
        Command::Health { url, ca_cert } => runtime.block_on(health(url, ca_cert)),
        Command::Version { json } => {
            let report =
                if json { wharf_base::version::json("wharfctl") } else { wharf_base::version::text("wharfctl") };
            println!("{}", report.trim_end());
            Ok(())
        }
    }
}

async fn health(url: String, ca_cert: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let (base, path) = match url.match_indices('/').nth(2) {
        Some((i, _)) => (url[..i].to_owned(), url[i..].to_owned()),
        None => (url.clone(), "/_/healthz".to_owned()),
    };
    let sender = match &ca_cert {
        Some(ca) => http::Sender::with_ca(base, ca)?,
        None => http::Sender::new(base),
    };
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), sender.get_text(&path))
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no answer within 10 s"))??;
    println!("{status} {}", body.trim_end());
    anyhow::ensure!(status == 200, "{url} is not healthy");
    Ok(())
}
