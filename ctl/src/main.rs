//! `wharfctl`: demo, changefeed simulator, benchmarks, version.

/// glibc's allocator dominated profiles of the ingest and apply paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod certs;
mod churn;
mod cluster;
mod demo;
mod harness;
mod http;
mod lag;
mod memory;
mod recover;
mod scale;
mod security;
mod sim;
mod status;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wharfctl", version, about = "wharf's admin tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Show leases, checkpoints, lag and the journal's backlog per partition, and the connected appliers.
    Status(status::StatusArgs),
    /// After a lost or damaged journal: the CREATE CHANGEFEED statements that restart each feed
    /// from the checkpoint the target holds.
    Recover(recover::RecoverArgs),
    /// Print the version, build facts and every dependency with its registry checksum.
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Simulate(args) => runtime.block_on(demo::simulate(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::MakeJwt(args) => security::make_jwt(args),
        Command::Certs(command) => certs::run(command),
        Command::Status(args) => runtime.block_on(status::run(args)),
        Command::Recover(args) => runtime.block_on(recover::run(args)),
        Command::Keys(command) => runtime.block_on(security::keys(command)),
        Command::Tokens(command) => runtime.block_on(security::tokens(command)),
        Command::Version { json } => {
            let report =
                if json { wharf_ingest::version::json("wharfctl") } else { wharf_ingest::version::text("wharfctl") };
            println!("{}", report.trim_end());
            Ok(())
        }
    }
}
