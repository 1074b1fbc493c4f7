//! Applier workers: lease a partition, apply its resolved window in one transaction, repeat.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;
use wharf_queue::{Hlc, Partition, Row, WindowCursor, WindowSource};

use crate::apply::{Prepared, StatementCache, execute, prepare};
use crate::catalog::{SchemaCatalog, discover};
use crate::checkpoint::{self, Lease};
use crate::error::ApplyError;
use crate::fold::fold;

/// Rows read from the journal per chunk: bounds memory, big enough for set-based statements.
pub const DEFAULT_CHUNK_ROWS: usize = 10_000;
/// How long a partition rests after a permanent error before it is tried again.
const PERMANENT_PAUSE: Duration = Duration::from_secs(60);
/// Idle poll interval; a resolved timestamp wakes workers at once anyway.
const IDLE_POLL: Duration = Duration::from_secs(1);
const CATALOG_MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct ApplierConfig {
    pub target_conn: String,
    pub staging_schema: String,
    pub workers: usize,
    pub chunk_rows: usize,
}

/// Counters shared with the host process (demo, bench, metrics).
#[derive(Debug, Default)]
pub struct ApplyStats {
    pub rows: AtomicU64,
    pub windows: AtomicU64,
}

#[derive(Default)]
struct Shared {
    held: Mutex<HashSet<Partition>>,
    paused: Mutex<HashMap<Partition, Instant>>,
    /// The checkpoint last committed per partition, so idle partitions cost no query.
    known: Mutex<HashMap<Partition, Hlc>>,
}

/// Runs `config.workers` workers until `shutdown` is cancelled.
pub async fn run<S: WindowSource>(
    config: ApplierConfig,
    source: S,
    stats: Arc<ApplyStats>,
    shutdown: CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let client = connect(&config.target_conn).await?;
    checkpoint::create_tables(&client, &config.staging_schema).await?;
    drop(client);
    let shared = Arc::new(Shared::default());
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..config.workers {
        let worker = Worker {
            id,
            config: config.clone(),
            source: source.clone(),
            stats: stats.clone(),
            shared: shared.clone(),
            client: None,
            cache: StatementCache::default(),
            catalogs: HashMap::new(),
        };
        tasks.spawn(worker.run(shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

pub async fn connect(conn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "target connection closed");
        }
    });
    Ok(client)
}

struct Worker<S> {
    id: usize,
    config: ApplierConfig,
    source: S,
    stats: Arc<ApplyStats>,
    shared: Arc<Shared>,
    client: Option<Client>,
    cache: StatementCache,
    catalogs: HashMap<String, (Instant, Arc<SchemaCatalog>)>,
}

enum Step {
    Idle,
    Applied { rows: u64, resolved: Hlc },
}

impl<S: WindowSource> Worker<S> {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut changes = self.source.subscribe();
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let mut worked = false;
            let mut failed = false;
            for partition in self.source.partitions() {
                if shutdown.is_cancelled() || !self.hold(&partition) {
                    continue;
                }
                let result = self.step(&partition).await;
                self.shared.held.lock().expect("held lock").remove(&partition);
                match result {
                    Ok(Step::Idle) => {}
                    Ok(Step::Applied { rows, resolved }) => {
                        worked = true;
                        backoff = Duration::from_millis(100);
                        tracing::debug!(worker = self.id, %partition, rows, %resolved, "window applied");
                    }
                    Err(error) => failed |= self.on_error(&partition, error),
                }
            }
            if failed {
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.cancelled() => {} }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            } else if !worked {
                tokio::select! {
                    _ = changes.changed() => {},
                    _ = tokio::time::sleep(IDLE_POLL) => {},
                    _ = shutdown.cancelled() => {},
                }
            }
        }
    }

    /// Logs an error once and decides: `true` to back off and retry, `false` after pausing the partition.
    fn on_error(&mut self, partition: &Partition, error: ApplyError) -> bool {
        self.shared.known.lock().expect("known lock").remove(partition);
        if matches!(error, ApplyError::Target(ref e) if e.is_closed())
            || self.client.as_ref().is_some_and(Client::is_closed)
        {
            self.client = None;
            self.cache.clear();
        }
        if matches!(error, ApplyError::UnknownTable(_) | ApplyError::UnknownColumn { .. }) {
            self.catalogs.clear();
        }
        if error.is_retryable() {
            tracing::warn!(worker = self.id, %partition, %error, "apply failed; retrying");
            return true;
        }
        tracing::error!(worker = self.id, %partition, %error, pause_s = PERMANENT_PAUSE.as_secs(), "apply failed permanently; partition paused (fix the target or the data, it is retried after the pause)");
        self.shared.paused.lock().expect("paused lock").insert(partition.clone(), Instant::now() + PERMANENT_PAUSE);
        false
    }

    fn hold(&self, partition: &Partition) -> bool {
        if let Some(until) = self.shared.paused.lock().expect("paused lock").get(partition)
            && Instant::now() < *until
        {
            return false;
        }
        let resolved = self.source.resolved(partition);
        let known = self.shared.known.lock().expect("known lock").get(partition).copied();
        if resolved.is_none() || (known.is_some() && resolved <= known) {
            return false;
        }
        self.shared.held.lock().expect("held lock").insert(partition.clone())
    }

    async fn step(&mut self, partition: &Partition) -> Result<Step, ApplyError> {
        let Some(resolved) = self.source.resolved(partition) else { return Ok(Step::Idle) };
        if self.client.is_none() {
            self.client = Some(connect(&self.config.target_conn).await?);
            self.cache.clear();
        }
        let lease =
            checkpoint::acquire(self.client.as_ref().expect("connected"), &self.config.staging_schema, partition)
                .await?;
        self.source.mark_applied(partition, lease.checkpoint)?;
        if resolved <= lease.checkpoint {
            self.shared.known.lock().expect("known lock").insert(partition.clone(), lease.checkpoint);
            return Ok(Step::Idle);
        }
        let catalog = self.catalog(&partition.schema).await?;
        let rows = match self.apply_window(partition, &catalog, lease, resolved, false).await {
            Err(e) if e.is_constraint_order() => {
                tracing::info!(%partition, error = %e, "constraint failure with folded chunks; replaying the window one timestamp at a time");
                self.cache.clear();
                self.apply_window(partition, &catalog, lease, resolved, true).await
            }
            other => other,
        };
        let rows = rows.inspect_err(|_| {
            // A rolled-back transaction also rolled back the staging tables it created.
            self.cache.clear();
        })?;
        self.source.mark_applied(partition, resolved)?;
        self.shared.known.lock().expect("known lock").insert(partition.clone(), resolved);
        self.stats.rows.fetch_add(rows, Ordering::Relaxed);
        self.stats.windows.fetch_add(1, Ordering::Relaxed);
        Ok(Step::Applied { rows, resolved })
    }

    /// Applies (checkpoint, resolved] and the new checkpoint in one transaction. Reading, folding
    /// and encoding the next chunk runs on a blocking thread while the target executes this one.
    async fn apply_window(
        &mut self,
        partition: &Partition,
        catalog: &Arc<SchemaCatalog>,
        lease: Lease,
        resolved: Hlc,
        by_timestamp: bool,
    ) -> Result<u64, ApplyError> {
        let client = self.client.as_mut().expect("connected");
        let tx = client.transaction().await?;
        let reader = ChunkReader {
            source: self.source.clone(),
            partition: partition.clone(),
            catalog: catalog.clone(),
            chunk_rows: self.config.chunk_rows,
            by_timestamp,
        };
        let mut pending = Some(reader.clone().spawn(WindowCursor::new(lease.checkpoint, resolved)));
        let mut rows = 0u64;
        while let Some(handle) = pending.take() {
            let chunk = handle.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            if chunk.rows == 0 {
                break;
            }
            if !chunk.cursor.is_done() {
                pending = Some(reader.clone().spawn(chunk.cursor.clone()));
            }
            rows += chunk.rows as u64;
            execute(&tx, &mut self.cache, &chunk.statements).await?;
        }
        checkpoint::commit(&tx, &self.config.staging_schema, partition, lease, resolved).await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn catalog(&mut self, schema: &str) -> Result<Arc<SchemaCatalog>, ApplyError> {
        if let Some((at, catalog)) = self.catalogs.get(schema)
            && at.elapsed() < CATALOG_MAX_AGE
        {
            return Ok(catalog.clone());
        }
        let catalog = Arc::new(discover(self.client.as_ref().expect("connected"), schema).await?);
        self.catalogs.insert(schema.to_owned(), (Instant::now(), catalog.clone()));
        Ok(catalog)
    }
}

/// Reads one chunk of a window and turns it into statements, off the async runtime.
#[derive(Clone)]
struct ChunkReader<S> {
    source: S,
    partition: Partition,
    catalog: Arc<SchemaCatalog>,
    chunk_rows: usize,
    by_timestamp: bool,
}

struct Chunk {
    cursor: WindowCursor,
    rows: usize,
    statements: Vec<Prepared>,
}

impl<S: WindowSource> ChunkReader<S> {
    fn spawn(self, mut cursor: WindowCursor) -> tokio::task::JoinHandle<Result<Chunk, ApplyError>> {
        tokio::task::spawn_blocking(move || {
            let rows = self.source.read_chunk(&self.partition, &mut cursor, self.chunk_rows)?;
            let mut statements = Vec::new();
            for run in runs(&rows, self.by_timestamp) {
                statements.extend(prepare(&self.catalog, fold(run)?)?);
            }
            Ok(Chunk { cursor, rows: rows.len(), statements })
        })
    }
}

/// The whole chunk, or its runs of rows with one timestamp each.
fn runs(chunk: &[Row], by_timestamp: bool) -> Vec<&[Row]> {
    if !by_timestamp {
        return vec![chunk];
    }
    chunk.chunk_by(|a, b| a.hlc == b.hlc).collect()
}
