//! `wharf-ingest start …`: the changefeed-facing server.

/// glibc's allocator dominated profiles of the ingest and apply paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats};
use wharf_ingest::StartArgs;

#[derive(Parser)]
#[command(name = "wharf-ingest", version, about = "Receives CockroachDB changefeeds and journals them durably")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve changefeed requests.
    Start(Box<StartArgs>),
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
    match cli.command {
        Command::Version { json } => {
            let report = if json {
                wharf_base::version::json("wharf-ingest")
            } else {
                wharf_base::version::text("wharf-ingest")
            };
            println!("{}", report.trim_end());
            Ok(())
        }
        Command::Start(args) => {
            wharf_base::logging::init(args.log_format, "info");
            // One crypto provider for the whole process (rustls would otherwise have to guess).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let config = (*args).validate()?;
            let appliers = embedded_appliers(&config);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(stop_on_signal(shutdown.clone()));
                wharf_ingest::run(config, Some(appliers), shutdown).await
            })?;
            Ok(())
        }
    }
}

/// The in-process applier workers (`--appliers N`), on the same apply path as `wharf-applier`.
fn embedded_appliers(config: &wharf_ingest::IngestConfig) -> wharf_ingest::EmbeddedAppliers {
    let applier = ApplierConfig {
        on_apply_error: config.on_apply_error,
        quarantine_max_keys: config.quarantine_max_keys,
        ..ApplierConfig::new(&config.target_conn, &config.staging_schema, config.appliers)
    };
    Box::new(move |client, stop, registry| {
        let stats = Arc::new(ApplyStats::default());
        stats.metrics.register(registry);
        Box::pin(wharf_applier::run(applier, client, stats, stop))
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
        _ = int.recv() => tracing::info!("SIGINT: finishing in-flight requests"),
    }
    shutdown.cancel();
}
