//! The composition root of `wharf-ingest`: the HTTP server, the journal, the queue service and its
//! QUIC endpoint, the target's witness of commit reports, the embedded appliers (given by the
//! binary), the background watches, and the order in which they stop.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wharf_queue::service::{CommitWitness, TargetCheckpoint};
use wharf_queue::{Journal, LocalClient, Partition, QueueService};
use wharf_targetdb::witness::CheckpointWitness;

use crate::config::IngestConfig;
use crate::server::State;
use crate::{auth, inflight, metrics, ops, refusals, server, stall, target, tls};

/// Shown at startup and on `/_/healthz` while in force.
pub const WARN_NO_AUTH: &str = "--disableAuthentication: any caller may write to the target; for testing only";
pub const WARN_PLAIN_HTTP: &str =
    "no TLS: tokens and rows cross the network in clear text; add --tlsCertificate and --tlsPrivateKey";
pub const WARN_SELF_SIGNED: &str = "--tlsSelfSigned: clients cannot verify this server; for testing only";
pub const WARN_DISCARD: &str =
    "--discard: rows are parsed and validated, then dropped; nothing is replicated; for measuring only";

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Journal(#[from] wharf_queue::OpenError),
    #[error(transparent)]
    Connect(#[from] wharf_targetdb::ConnectError),
    #[error("the target database: {0}")]
    Target(String),
    #[error(transparent)]
    Queue(#[from] wharf_queue::quic::server::ServeError),
    #[error("stopped: {0}")]
    Fatal(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot start the threads of the embedded appliers or the queue service: {0}")]
    Threads(std::io::Error),
}

/// Re-reads JWT keys every `every` and at once on SIGHUP, until `shutdown`.
async fn refresh_keys(auth: Arc<auth::Authenticator>, every: std::time::Duration, shutdown: CancellationToken) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {}
            _ = hup => tracing::info!("SIGHUP: re-reading JWT keys"),
            _ = shutdown.cancelled() => return,
        }
        auth.refresh().await;
    }
}

/// Starts the in-process applier workers on a client of the queue service, registering their
/// metrics in the registry given, and runs them until the token is cancelled. The `wharf-ingest`
/// binary passes `wharf_applier::run`; this library does not depend on the applier.
pub type EmbeddedAppliers = Box<
    dyn FnOnce(LocalClient, CancellationToken, &mut prometheus_client::registry::Registry) -> BoxFuture<'static, ()>
        + Send,
>;

/// Binds `config.bind_addr` and serves until `shutdown` is cancelled.
pub async fn run(
    config: IngestConfig,
    appliers: Option<EmbeddedAppliers>,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(config.bind_addr)
        .await
        .map_err(|source| StartError::Bind { addr: config.bind_addr, source })?;
    run_with_listener(config, listener, appliers, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 themselves).
pub async fn run_with_listener(
    config: IngestConfig,
    listener: TcpListener,
    appliers: Option<EmbeddedAppliers>,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let tls = match &config.tls {
        Some(settings) => {
            let server = tls::server_config(settings)?;
            if let Some(fingerprint) = &server.self_signed_sha256 {
                tracing::info!(sha256 = %fingerprint, "generated a self-signed certificate for localhost, 127.0.0.1 and ::1");
            }
            Some(tokio_rustls::TlsAcceptor::from(server.config))
        }
        None => None,
    };
    let metrics_listener = match config.metrics_addr {
        Some(addr) => {
            let listener = ops::bind(addr).await?;
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics and health listening (plain HTTP)");
            Some(listener)
        }
        None => None,
    };
    let mut warnings = Vec::new();
    if config.disable_authentication {
        warnings.push(WARN_NO_AUTH);
    }
    if config.tls.as_ref().is_some_and(|t| t.source == tls::CertSource::SelfSigned) {
        warnings.push(WARN_SELF_SIGNED);
    }
    if config.tls.is_none() && !config.disable_authentication {
        warnings.push(WARN_PLAIN_HTTP);
    }
    if config.discard {
        warnings.push(WARN_DISCARD);
    }
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let auth = if config.disable_authentication {
        None
    } else {
        let auth = Arc::new(
            auth::Authenticator::start(&config.target_conn, &config.staging_schema, config.jwt_leeway.as_secs())
                .await?,
        );
        tokio::spawn(refresh_keys(auth.clone(), config.jwt_refresh, shutdown.clone()));
        Some(auth)
    };
    let journal = if config.discard { None } else { Some(Journal::open(&config.journal)?) };
    let target = target::Target::connect(&config.target_conn, config.catalog_refresh).await?;
    let witness: Arc<dyn CommitWitness> =
        Arc::new(TargetWitness(CheckpointWitness::new(&config.target_conn, &config.staging_schema)));
    let queue =
        journal.as_ref().map(|j| QueueService::with_witness(j.clone(), config.lease_timeout, Some(witness.clone())));
    let queue_stop = CancellationToken::new();
    let queue_server = match (&queue, &config.queue) {
        (Some(service), Some(settings)) => {
            Some(serve_queue(service.clone(), settings, config.lease_timeout, &queue_stop)?)
        }
        _ => None,
    };
    let appliers_stop = CancellationToken::new();
    let mut embedded = None;
    let metrics = metrics::IngestMetrics::new(journal.as_ref(), |registry| {
        if let (Some(service), Some(start)) = (&queue, appliers)
            && config.appliers > 0
        {
            let client = LocalClient::new(service.clone(), "embedded", config.appliers as u32);
            embedded = Some(start(client, appliers_stop.clone(), registry));
        }
    });
    let embedded = match embedded {
        Some(appliers) => Some(spawn_embedded(appliers).map_err(StartError::Threads)?),
        None => None,
    };
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = tls.is_some(), database = %target.database, appliers = config.appliers, discard = config.discard, "wharf-ingest listening");
    let state = Arc::new(State {
        limits: config.limits,
        requests: Arc::new(tokio::sync::Semaphore::new(config.limits.max_requests)),
        inflight: inflight::Inflight::new(config.limits.max_inflight_bytes),
        stalls: stall::StallWatch::new(config.stall_timeout),
        staging_schema: config.staging_schema.clone(),
        max_clock_skew: config.max_clock_skew,
        journal,
        auth,
        warnings,
        target,
        body_limit: config.body_limit,
        shutting_down: shutdown.clone(),
        metrics,
        drift_policies: config.drift.clone(),
        drift: crate::drift::DriftWatch::default(),
        metrics_elsewhere: config.metrics_addr.is_some(),
        refusal_log: refusals::LogLimiter::default(),
        queue,
        group_partitions: config.partition_by == crate::config::PartitionBy::Group,
        dropped_warned: std::sync::Mutex::default(),
    });
    if let (true, Some(queue), Some(journal)) = (state.group_partitions, &state.queue, &state.journal) {
        // Before any applier asks: the journal's schemas leased as their groups from the start.
        for schema in journal.partitions() {
            match state.target.catalog(&schema.schema, false).await {
                Ok(catalog) => {
                    queue.set_groups(&schema, &catalog.groups);
                }
                Err(error) => tracing::warn!(%schema, %error, "cannot read the schema's foreign-key groups yet"),
            }
        }
    }
    if let Some(queue) = &state.queue {
        let weak = Arc::downgrade(&state);
        queue.report_drift(Arc::new(move || {
            weak.upgrade().map(|state| state.drift.status(std::time::Instant::now())).unwrap_or_default()
        }));
    }
    let ops_server =
        metrics_listener.map(|listener| tokio::spawn(ops::serve(listener, state.clone(), shutdown.clone())));
    let fatal = tokio::spawn(watch_journal(state.journal.clone(), shutdown.clone()));
    let stalls = tokio::spawn(watch_stalls(state.clone()));
    server::serve(listener, tls, state.clone(), shutdown, config.grace_period).await;
    fatal.abort();
    stalls.abort();
    if let Some(server) = ops_server {
        server.abort();
    }
    let fatal = state.journal.as_ref().and_then(|j| match j.health() {
        Err(wharf_queue::Fault::Fatal(reason)) => Some(reason),
        _ => None,
    });
    appliers_stop.cancel();
    if let Some(embedded) = embedded
        && embedded.await.is_err()
    {
        tracing::error!("embedded appliers failed (a panic; see above)");
    }
    queue_stop.cancel();
    if let Some((server, _runtime)) = queue_server {
        let _ = server.await;
    }
    if let Some(reason) = fatal {
        return Err(StartError::Fatal(reason));
    }
    tracing::info!("wharf-ingest stopped");
    Ok(())
}

/// Serves the queue service over QUIC on a runtime of its own (threads of its own, like the
/// embedded appliers' in [`spawn_embedded`]), so a separate applier's requests do not wait behind
/// request handlers; until `stop`. The runtime is shut down once the server's task has ended.
fn serve_queue(
    service: QueueService,
    settings: &wharf_queue::quic::ServerSettings,
    lease_timeout: std::time::Duration,
    stop: &CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, OwnRuntime), StartError> {
    let runtime = OwnRuntime::new("wharf-queue").map_err(StartError::Threads)?;
    // The endpoint's driver runs on the runtime current when it is bound.
    let endpoint = {
        let _inside = runtime.handle().enter();
        wharf_queue::quic::server::bind(settings, lease_timeout)?
    };
    tracing::info!(address = %endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default(), "queue service listening (QUIC, mutual TLS)");
    let stop = stop.clone();
    let server =
        runtime.handle().spawn(wharf_queue::quic::serve(endpoint, service, async move { stop.cancelled().await }));
    Ok((server, runtime))
}

/// Runs the embedded appliers on a runtime of their own, with worker threads of their own: the
/// operating system then shares the CPU between them and the request handlers, as it does with a
/// separate `wharf-applier`, instead of each of the appliers' wake-ups (a reply from the target)
/// waiting in the request handlers' run queue. The receiver fails if the appliers panicked.
fn spawn_embedded(appliers: BoxFuture<'static, ()>) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = OwnRuntime::new("wharf-applier")?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("wharf-appliers".into()).spawn(move || {
        runtime.handle().block_on(appliers);
        let _ = done.send(());
    })?;
    Ok(finished)
}

/// A multi-threaded tokio runtime that may be dropped anywhere: dropping it shuts it down in the
/// background (dropping a plain `Runtime` inside async code panics, e.g. when startup fails after
/// it was built).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn new(thread_name: &str) -> std::io::Result<OwnRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread().thread_name(thread_name).enable_all().build()?;
        Ok(OwnRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Feeds every partition's resolved and applied timestamps to the stall watch once a second.
async fn watch_stalls(state: Arc<State>) {
    let Some(journal) = state.journal.clone() else { return };
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        let seen = journal.partitions().into_iter().map(|p| {
            let observed = stall::Observed { resolved: journal.resolved(&p), applied: journal.applied(&p) };
            (p, observed)
        });
        state.stalls.observe(seen, std::time::Instant::now());
    }
}

/// Stops the process when the journal can no longer make progress (a dead thread, a failed
/// sync), so a supervisor restarts it and recovery runs from what is on disk.
async fn watch_journal(journal: Option<Journal>, shutdown: CancellationToken) {
    let Some(journal) = journal else { return };
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        if let Err(wharf_queue::Fault::Fatal(reason)) = journal.health() {
            tracing::error!(%reason, "the journal cannot go on; stopping so the process is restarted");
            shutdown.cancel();
            return;
        }
    }
}

/// The target's checkpoint rows as the queue service's [`CommitWitness`].
struct TargetWitness(CheckpointWitness);

impl CommitWitness for TargetWitness {
    fn checkpoint<'a>(&'a self, partition: &'a Partition) -> BoxFuture<'a, Option<TargetCheckpoint>> {
        Box::pin(async move {
            let row = self.0.read(partition).await?;
            Some(TargetCheckpoint { resolved: row.resolved, epoch: row.epoch })
        })
    }
}
