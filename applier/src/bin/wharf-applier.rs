//! `wharf-applier start …`: applier workers outside the ingest process.
//!
//! Until the networked queue service lands, a separate applier opens the journal directory
//! itself, which sled allows to one process at a time: use it to drain a journal whose ingest
//! process is stopped, and run appliers embedded in `wharf-ingest` (`--appliers N`) otherwise.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats, DEFAULT_CHUNK_ROWS};
use wharf_queue::{Journal, JournalConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "wharf-applier", version, about = "Applies resolved windows from wharf's journal to the target")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply resolved windows until interrupted.
    Start(StartArgs),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct StartArgs {
    /// Target database: postgresql://user@host:port/database
    #[arg(long = "targetConn")]
    target_conn: String,
    /// Schema inside the target database for wharf's checkpoints.
    #[arg(long = "stagingSchema", default_value = "_replicator")]
    staging_schema: String,
    /// Journal directory (not in use by a running wharf-ingest).
    #[arg(long = "journalDir", default_value = "./journal")]
    journal_dir: PathBuf,
    /// Concurrent workers (each applies one partition at a time).
    #[arg(long = "workers", default_value_t = 1)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => {
            println!("wharf-applier {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Start(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
            tokio::runtime::Runtime::new()?.block_on(start(args))
        }
    }
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    let journal = Journal::open(&JournalConfig::new(&args.journal_dir))?;
    let config = ApplierConfig {
        target_conn: args.target_conn,
        staging_schema: args.staging_schema,
        workers: args.workers.max(1),
        chunk_rows: DEFAULT_CHUNK_ROWS,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal as unix_signal};
        if let (Ok(mut term), Ok(mut int)) =
            (unix_signal(SignalKind::terminate()), unix_signal(SignalKind::interrupt()))
        {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        signal.cancel();
    });
    tracing::info!(journal = %args.journal_dir.display(), workers = config.workers, "wharf-applier started");
    wharf_applier::run(config, journal, Arc::new(ApplyStats::default()), shutdown).await?;
    Ok(())
}
