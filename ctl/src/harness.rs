//! Shared set-up for `demo` and `bench`: a target (given, or a throwaway local PostgreSQL) and an
//! in-process `wharf-ingest` on a free loopback port.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use wharf_ingest::IngestConfig;
use wharf_testkit::LocalPg;

/// The target database; keeps a local server alive while it lives.
pub struct TargetDb {
    pub url: String,
    _local: Option<LocalPg>,
}

impl TargetDb {
    /// Uses `given`, or starts a local PostgreSQL with a fresh database `name`.
    pub async fn open(given: Option<String>, name: &str) -> anyhow::Result<TargetDb> {
        if let Some(url) = given {
            return Ok(TargetDb { url, _local: None });
        }
        let local = LocalPg::start().map_err(|e| anyhow::anyhow!("{e}; or pass --targetConn postgresql://…"))?;
        let admin = wharf_targetdb::connect(&local.url("postgres")).await?;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        Ok(TargetDb { url: local.url(name), _local: Some(local) })
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(wharf_targetdb::connect(&self.url).await?)
    }
}

/// An ingest server running inside this process.
pub struct InProcessIngest {
    pub port: u16,
    stop: CancellationToken,
    task: JoinHandle<Result<(), wharf_ingest::StartError>>,
}

/// How an in-process ingest server runs.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Embedded applier workers.
    pub appliers: usize,
    /// Parse and validate only, no journal.
    pub discard: bool,
    /// JWT authentication on (keys must already be in `_replicator.jwt_public_keys`).
    pub authenticate: bool,
    /// Serve the QUIC queue service for separate `wharf-applier` processes.
    pub queue: Option<wharf_queue::quic::ServerSettings>,
}

impl InProcessIngest {
    pub async fn start(target_url: &str, journal: &std::path::Path, options: IngestOptions) -> anyhow::Result<Self> {
        let IngestOptions { appliers, discard, authenticate, queue } = options;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let config = IngestConfig {
            bind_addr: listener.local_addr()?,
            tls: None,
            disable_authentication: !authenticate,
            jwt_refresh: Duration::from_secs(60),
            jwt_leeway: Duration::ZERO,
            limits: wharf_ingest::server::Limits {
                max_connections: 1024,
                max_connections_per_address: 1024,
                max_requests: 256,
                read_timeout: Duration::from_secs(60),
                max_inflight_bytes: wharf_ingest::inflight::DEFAULT_INFLIGHT_BYTES,
            },
            target_conn: target_url.to_owned(),
            staging_schema: "_replicator".into(),
            journal: wharf_queue::JournalConfig::scratch(journal),
            appliers,
            queue,
            lease_timeout: wharf_queue::DEFAULT_LEASE_TIMEOUT,
            body_limit: wharf_ingest::config::DEFAULT_BODY_LIMIT,
            max_clock_skew: wharf_ingest::config::DEFAULT_MAX_CLOCK_SKEW,
            discard,
            grace_period: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(300),
            metrics_addr: None,
            drift: Default::default(),
            catalog_refresh: wharf_ingest::config::DEFAULT_CATALOG_REFRESH,
            on_apply_error: Default::default(),
            quarantine_max_keys: wharf_applier::worker::DEFAULT_QUARANTINE_MAX_KEYS,
            partition_by: Default::default(),
        };
        let stop = CancellationToken::new();
        let embedded = embedded_appliers(target_url);
        let task = tokio::spawn(wharf_ingest::run_with_listener(config, listener, Some(embedded), stop.clone()));
        let sender = crate::http::Sender::new(format!("http://127.0.0.1:{port}"));
        crate::sim::feed::wait_until(Duration::from_secs(30), || {
            let sender = sender.clone();
            async move { matches!(sender.get("/_/healthz").await, Ok(200)) }
        })
        .await?;
        Ok(InProcessIngest { port, stop, task })
    }

    pub fn base_url(&self, db: &str, schema: &str) -> String {
        format!("http://127.0.0.1:{}/{db}/{schema}", self.port)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

/// In-process applier workers, as `wharf-ingest --appliers N` runs them.
fn embedded_appliers(target_url: &str) -> wharf_ingest::EmbeddedAppliers {
    let target_url = target_url.to_owned();
    Box::new(move |client, stop, _registry| {
        Box::pin(async move {
            let workers = client.workers() as usize;
            let config = wharf_applier::ApplierConfig::new(&target_url, "_replicator", workers);
            wharf_applier::run(config, client, std::sync::Arc::new(wharf_applier::ApplyStats::default()), stop).await
        })
    })
}

/// The applied checkpoint of `partition` in the target, if any.
pub async fn checkpoint(client: &Client, partition: &str) -> anyhow::Result<Option<String>> {
    let row =
        client.query_opt("SELECT resolved FROM _replicator.checkpoints WHERE partition = $1", &[&partition]).await;
    match row {
        Ok(row) => Ok(row.map(|r| r.get(0))),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
