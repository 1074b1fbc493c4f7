//! Applier workers: the loop that turns leased partitions into committed target transactions.
//!
//! A worker leases a partition ([`QueueClient::acquire`]), claims its epoch in the target and
//! reads the checkpoint `C` ([`wharf_targetdb::checkpoint::claim`]), applies `(C, R]` in bounded
//! chunks ([`crate::window`]) with a fenced checkpoint per transaction, and reports each commit
//! ([`QueueClient::committed`]) so the journal compacts; the answer says whether it keeps the
//! partition (rebalancing). A fenced worker ([`ApplyError::Fenced`]) gives the partition back,
//! naming the target's epoch. Why this applies each row version once is written in one place,
//! [`wharf_targetdb::checkpoint`].
//!
//! When an error leaves the outcome of a commit unknown (the connection died during `COMMIT`),
//! the worker forgets `C` and re-reads it before the next window, checking its epoch is still
//! there. A worker task that panics is noticed by [`run`]: its partitions are given back, the
//! failure is logged and counted, and a fresh worker takes its place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;
use wharf_queue::{ChunkLimits, Grant, Hlc, Partition, QueueClient, Release};
use wharf_targetdb::catalog::{SchemaCatalog, discover};
use wharf_targetdb::{checkpoint, connect, staging};

use crate::careful;
use crate::error::{ApplyError, Next};
use crate::insert_first::InsertFirst;
use crate::quarantine::Keys;
use crate::regroup::linked_outside;
use crate::statements::StatementCache;
use crate::window::{self, Target, Window, WindowPlan};
use wharf_base::OnApplyError;
use wharf_base::backoff::Backoff;
use wharf_targetdb::checkpoint::{Claimed, Fenced, Floors, Unit};

/// Rows per chunk read from the queue: bounds memory, big enough for set-based statements.
pub const DEFAULT_CHUNK_ROWS: usize = 10_000;
/// Bytes per chunk (about): bounds memory when rows are large.
pub const DEFAULT_CHUNK_BYTES: usize = 8 << 20;
/// A transaction commits at the first timestamp boundary after this many rows (or at the window's end).
pub const DEFAULT_COMMIT_ROWS: usize = 100_000;
/// `--quarantineMaxKeys`: quarantined keys per partition before a refused row halts it.
pub const DEFAULT_QUARANTINE_MAX_KEYS: usize = 10_000;
/// How long a partition rests after a permanent error before it is tried again.
const PERMANENT_PAUSE: Duration = Duration::from_secs(60);
/// How long a group whose tables a new foreign key links to another group waits before it is
/// tried again, if the ingest has not regrouped it by then (which ends the pause at once).
const REGROUP_PAUSE: Duration = Duration::from_secs(5);
/// How long one `acquire` waits for work; a resolved timestamp ends the wait at once.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// A catalog is read again after this long (as the ingest's default `--catalogRefresh`), and at the
/// next window after an error that says the target's shape changed.
const CATALOG_MAX_AGE: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ApplierConfig {
    pub target_conn: String,
    pub staging_schema: String,
    pub workers: usize,
    pub chunk_rows: usize,
    pub chunk_bytes: usize,
    pub commit_rows: usize,
    /// `--onApplyError`.
    pub on_apply_error: OnApplyError,
    /// `--quarantineMaxKeys`.
    pub quarantine_max_keys: usize,
}

impl ApplierConfig {
    pub fn new(target_conn: &str, staging_schema: &str, workers: usize) -> Self {
        ApplierConfig {
            target_conn: target_conn.to_owned(),
            staging_schema: staging_schema.to_owned(),
            workers,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            commit_rows: DEFAULT_COMMIT_ROWS,
            on_apply_error: OnApplyError::Halt,
            quarantine_max_keys: DEFAULT_QUARANTINE_MAX_KEYS,
        }
    }
}

/// Counters shared with the host process (demo, bench, metrics).
#[derive(Debug, Default)]
pub struct ApplyStats {
    pub rows: AtomicU64,
    pub commits: AtomicU64,
    pub fenced: AtomicU64,
    pub worker_failures: AtomicU64,
    /// The same and more, per partition, for Prometheus.
    pub metrics: crate::metrics::ApplyMetrics,
}

impl ApplyStats {
    /// Counts a committed target transaction.
    pub(crate) fn committed(&self, partition: &Partition, done: &crate::window::Committed) {
        self.rows.fetch_add(done.rows, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.metrics.committed(partition, done);
    }
}

/// The partitions each worker holds (index → partition → epoch), for giving them back when a
/// worker task dies.
type Held = Arc<Mutex<HashMap<u32, HashMap<Partition, u64>>>>;

/// Runs `config.workers` workers until `shutdown` is cancelled; each gives its partitions back
/// at a window boundary before it ends.
pub async fn run<Q: QueueClient>(config: ApplierConfig, queue: Q, stats: Arc<ApplyStats>, shutdown: CancellationToken) {
    if !create_staging(&config, &shutdown).await {
        return;
    }
    let config = Arc::new(config);
    let held: Held = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut index_of = HashMap::new();
    for index in 0..config.workers as u32 {
        let worker = Worker::new(index, config.clone(), queue.clone(), stats.clone(), held.clone());
        index_of.insert(tasks.spawn(worker.run(shutdown.clone())).id(), index);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, error) = match joined {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(e)),
        };
        let Some(index) = index_of.remove(&id) else { continue };
        let Some(error) = error else { continue };
        stats.worker_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(worker = index, %error, "applier worker failed; giving its partitions back and starting a new one");
        let partitions = held.lock().expect("held lock").remove(&index).unwrap_or_default();
        for (partition, epoch) in partitions {
            let grant = Grant { partition, epoch, upto: Hlc::ZERO, tables: Vec::new() };
            if let Err(error) = queue.release(index, &grant, Release::Done).await {
                tracing::warn!(%error, "cannot give a failed worker's partition back; its lease will expire");
            }
        }
        if !shutdown.is_cancelled() {
            let worker = Worker::new(index, config.clone(), queue.clone(), stats.clone(), held.clone());
            index_of.insert(tasks.spawn(worker.run(shutdown.clone())).id(), index);
        }
    }
}

/// Creates the checkpoint table, retrying while the target is unreachable; `false` on shutdown.
async fn create_staging(config: &ApplierConfig, shutdown: &CancellationToken) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    loop {
        let attempt = async {
            let client = connect(&config.target_conn).await.map_err(|e| e.to_string())?;
            let staging = &config.staging_schema;
            let created = async {
                staging::create_checkpoints(&client, staging).await?;
                staging::create_quarantine(&client, staging).await
            };
            created.await.map_err(|e| wharf_targetdb::describe_pg(&e))
        };
        match attempt.await {
            Ok(()) => return true,
            Err(error) => tracing::warn!(%error, "cannot prepare the staging schema in the target; retrying"),
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

/// A worker's claim on a partition in the target.
#[derive(Clone, Debug)]
struct Claim {
    epoch: u64,
    /// The target's checkpoint, `None` when an error left it unknown.
    checkpoint: Option<Hlc>,
    /// Tables a former unit applied beyond the checkpoint (a regrouped group's first window).
    floors: Arc<Floors>,
}

/// Where a window starts.
struct Start {
    from: Hlc,
    floors: Arc<Floors>,
}

pub(crate) struct Worker<Q> {
    index: u32,
    config: Arc<ApplierConfig>,
    queue: Q,
    stats: Arc<ApplyStats>,
    held: Held,
    client: Option<Client>,
    statements: StatementCache,
    insert_first: InsertFirst,
    catalogs: HashMap<String, (Instant, Arc<SchemaCatalog>)>,
    claims: HashMap<Partition, Claim>,
}

impl<Q: QueueClient> Worker<Q> {
    fn new(index: u32, config: Arc<ApplierConfig>, queue: Q, stats: Arc<ApplyStats>, held: Held) -> Self {
        Worker {
            index,
            config,
            queue,
            stats,
            held,
            client: None,
            statements: StatementCache::default(),
            insert_first: InsertFirst::default(),
            catalogs: HashMap::new(),
            claims: HashMap::new(),
        }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(100), MAX_BACKOFF);
        while !shutdown.is_cancelled() {
            let acquired = tokio::select! {
                acquired = self.queue.acquire(self.index, IDLE_WAIT) => acquired,
                _ = shutdown.cancelled() => break,
            };
            let failed = match acquired {
                Ok(None) => false,
                Ok(Some(grant)) => match self.step(&grant, &shutdown).await {
                    Ok(keep) => {
                        if !keep {
                            self.forget(&grant.partition);
                        }
                        false
                    }
                    Err(error) => self.on_error(&grant, error).await,
                },
                Err(error) => {
                    tracing::warn!(worker = self.index, %error, "cannot get work from the queue service; retrying");
                    true
                }
            };
            if failed {
                backoff.wait(&shutdown).await;
            } else {
                backoff.reset();
            }
        }
        self.release_all().await;
    }

    /// Applies the granted partition up to `grant.upto`; returns whether the worker keeps it.
    async fn step(&mut self, grant: &Grant, shutdown: &CancellationToken) -> Result<bool, ApplyError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.config.target_conn).await?);
            self.forget_prepared();
        }
        let mut catalog = self.catalog(&grant.partition.schema).await?;
        if !grant.tables.is_empty() && !catalog.groups.contains(&grant.tables) {
            // The ingest saw other foreign keys than this worker's cached catalog (a group merged
            // or split since): read it again, so the window's parent-first order knows them.
            self.catalogs.remove(&grant.partition.schema);
            catalog = self.catalog(&grant.partition.schema).await?;
        }
        let start = self.checkpoint(grant, &catalog).await?;
        if grant.upto <= start.from {
            // Nothing to apply; the report tells the service what the target already holds.
            return Ok(self.queue.committed(self.index, grant, start.from, 0).await?);
        }
        let applied = match self.apply(grant, &catalog, start, shutdown).await {
            Err(e) if e.may_be_stale_catalog() => {
                tracing::info!(partition = %grant.partition, error = %e, "the target's shape may have changed; reading its catalog again and retrying the window");
                self.catalogs.remove(&grant.partition.schema);
                let catalog = self.catalog(&grant.partition.schema).await?;
                let start = self.reread_checkpoint(grant, &catalog).await?;
                self.apply(grant, &catalog, start, shutdown).await
            }
            other => other,
        }?;
        if let Some(claim) = self.claims.get_mut(&grant.partition) {
            claim.checkpoint = Some(applied.through);
        }
        Ok(applied.keep)
    }

    /// Applies a window from `from`; after a constraint failure of folded chunks, once more one
    /// timestamp at a time; after a row the target refuses, once more group by group to find it
    /// (and quarantine it, or name it, as `--onApplyError` says).
    async fn apply(
        &mut self,
        grant: &Grant,
        catalog: &Arc<SchemaCatalog>,
        start: Start,
        shutdown: &CancellationToken,
    ) -> Result<window::Applied, ApplyError> {
        let quarantined = Arc::new(self.quarantined(grant).await?);
        let Start { from, floors } = start;
        let plan = WindowPlan { grant, catalog, from, floors: &floors, by_timestamp: false, quarantined: &quarantined };
        let refused = match window::apply(self.window(), plan, shutdown).await {
            Err(e) if e.is_constraint_order() => {
                tracing::info!(partition = %grant.partition, error = %e, "constraint failure with folded chunks; replaying the window one timestamp at a time");
                let Start { from, floors } = self.reread_checkpoint(grant, catalog).await?;
                let plan =
                    WindowPlan { grant, catalog, from, floors: &floors, by_timestamp: true, quarantined: &quarantined };
                match window::apply(self.window(), plan, shutdown).await {
                    Err(e) if e.is_rejection() => e,
                    other => return other,
                }
            }
            Err(e) if e.is_rejection() => e,
            other => return other,
        };
        let refused = self.regrouping(grant, refused).await?;
        let policy =
            careful::Policy { on_error: self.config.on_apply_error, max_keys: self.config.quarantine_max_keys };
        tracing::info!(partition = %grant.partition, error = %refused, policy = %policy.on_error, "the target refuses a row of the window; applying it again group by group to find it");
        let Start { from, floors } = self.reread_checkpoint(grant, catalog).await?;
        let mut keys = self.quarantined(grant).await?;
        let plan = WindowPlan { grant, catalog, from, floors: &floors, by_timestamp: true, quarantined: &quarantined };
        careful::apply(self.window(), plan, policy, &mut keys, shutdown).await
    }

    /// A foreign-key violation in a group that the target's foreign keys (read again here) link
    /// to tables outside it is [`ApplyError::Regrouping`]: the row's parent may be in the other
    /// group, not applied yet, so it is not the row's fault. Any other refusal comes back as it is.
    async fn regrouping(&mut self, grant: &Grant, refused: ApplyError) -> Result<ApplyError, ApplyError> {
        let ApplyError::Target(source) = refused else { return Ok(refused) };
        if grant.tables.is_empty() || source.code() != Some(&SqlState::FOREIGN_KEY_VIOLATION) {
            return Ok(ApplyError::Target(source));
        }
        self.catalogs.remove(&grant.partition.schema);
        let catalog = self.catalog(&grant.partition.schema).await?;
        let others = linked_outside(&catalog.groups, &grant.tables);
        if others.is_empty() {
            return Ok(ApplyError::Target(source));
        }
        Err(ApplyError::Regrouping { others: others.join(", "), source })
    }

    /// The partition's quarantined keys (read after its checkpoint: see [`crate::quarantine`]).
    async fn quarantined(&self, grant: &Grant) -> Result<Keys, ApplyError> {
        let client = self.client.as_ref().expect("connected");
        Ok(Keys::load(client, &self.config.staging_schema, &grant.partition).await?)
    }

    /// After a failed window: transactions of it may have committed before the failure, so the
    /// target's row says where a retry starts. Prepared statements are dropped too.
    async fn reread_checkpoint(&mut self, grant: &Grant, catalog: &SchemaCatalog) -> Result<Start, ApplyError> {
        self.forget_prepared();
        if let Some(claim) = self.claims.get_mut(&grant.partition) {
            claim.checkpoint = None;
        }
        self.checkpoint(grant, catalog).await
    }

    /// What a window needs of this worker (connected).
    fn window(&mut self) -> Window<'_, Q> {
        Window {
            queue: &self.queue,
            worker: self.index,
            limits: ChunkLimits { max_rows: self.config.chunk_rows, max_bytes: self.config.chunk_bytes },
            target: Target {
                client: self.client.as_mut().expect("connected"),
                statements: &mut self.statements,
                insert_first: &mut self.insert_first,
                staging_schema: &self.config.staging_schema,
                commit_rows: self.config.commit_rows,
            },
            stats: &self.stats,
        }
    }

    /// Prepared statements and insert-first pauses belong to one connection (and a rolled-back
    /// transaction may have left statements half prepared).
    fn forget_prepared(&mut self) {
        self.statements.clear();
        self.insert_first = InsertFirst::default();
    }

    /// The target's checkpoint under this grant's epoch: claims a new epoch (for a group, under
    /// the grant's tables; for a schema, covering its catalog's tables), re-reads a known one
    /// whose checkpoint an error left unknown.
    async fn checkpoint(&mut self, grant: &Grant, catalog: &SchemaCatalog) -> Result<Start, ApplyError> {
        let client = self.client.as_mut().expect("connected");
        let staging = &self.config.staging_schema;
        let partition = &grant.partition;
        let claimed = match self.claims.get(partition) {
            Some(Claim { epoch, checkpoint: Some(from), floors }) if *epoch == grant.epoch => {
                return Ok(Start { from: *from, floors: floors.clone() });
            }
            Some(Claim { epoch, checkpoint: None, .. }) if *epoch == grant.epoch => {
                let row = checkpoint::read(&*client, staging, partition).await?;
                match row {
                    Some(row) if row.epoch == grant.epoch && !row.retired => {
                        Claimed { checkpoint: row.resolved, floors: row.floors }
                    }
                    other => {
                        return Err(Fenced {
                            partition: partition.to_string(),
                            mine: grant.epoch,
                            current: other.as_ref().map_or(0, |r| r.epoch),
                            retired: other.is_some_and(|r| r.retired),
                        }
                        .into());
                    }
                }
            }
            // An epoch this worker never claimed: raise the target's to it (or find it fenced).
            _ => {
                let tables: Vec<String>;
                let unit = if grant.partition.group.is_none() {
                    tables = catalog.tables.keys().cloned().collect();
                    Unit::Schema { catalog: &tables }
                } else {
                    Unit::Group(&grant.tables)
                };
                checkpoint::claim(client, staging, partition, unit, grant.epoch).await?
            }
        };
        let start = Start { from: claimed.checkpoint, floors: Arc::new(claimed.floors) };
        let claim = Claim { epoch: grant.epoch, checkpoint: Some(start.from), floors: start.floors.clone() };
        self.claims.insert(partition.clone(), claim);
        self.publish_held();
        Ok(start)
    }

    /// Called after each commit of a window.
    /// Logs an error once and acts on it; `true` to back off before the next attempt.
    async fn on_error(&mut self, grant: &Grant, error: ApplyError) -> bool {
        let partition = &grant.partition;
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        self.forget_prepared();
        if error.may_be_stale_catalog() {
            self.catalogs.clear();
        }
        if let Some(claim) = self.claims.get_mut(partition) {
            claim.checkpoint = None;
        }
        self.stats.metrics.failed(partition);
        let how = match error.next() {
            Next::Retry => {
                tracing::warn!(worker = self.index, %partition, %error, "apply failed; retrying");
                return true;
            }
            Next::GiveUp => {
                tracing::warn!(worker = self.index, %partition, %error, "giving the partition up");
                match error {
                    ApplyError::Fenced(Fenced { current, .. }) => {
                        self.stats.fenced.fetch_add(1, Ordering::Relaxed);
                        Release::Fenced { target_epoch: current }
                    }
                    _ => Release::Done,
                }
            }
            Next::AwaitRegrouping => {
                tracing::warn!(worker = self.index, %partition, %error, pause_s = REGROUP_PAUSE.as_secs(), "a foreign key the ingest has not seen yet; partition paused until it regroups");
                Release::Paused { pause: REGROUP_PAUSE, reason: error.to_string() }
            }
            Next::Pause => {
                tracing::error!(worker = self.index, %partition, %error, pause_s = PERMANENT_PAUSE.as_secs(), "apply failed permanently; partition paused (fix the target or the data; it is retried after the pause)");
                Release::Paused { pause: PERMANENT_PAUSE, reason: error.to_string() }
            }
        };
        self.forget(partition);
        if let Err(error) = self.queue.release(self.index, grant, how).await {
            tracing::warn!(worker = self.index, %partition, %error, "cannot give the partition back; its lease will expire");
        }
        false
    }

    fn forget(&mut self, partition: &Partition) {
        self.claims.remove(partition);
        self.publish_held();
    }

    fn publish_held(&self) {
        let held = self.claims.iter().map(|(p, c)| (p.clone(), c.epoch)).collect();
        self.held.lock().expect("held lock").insert(self.index, held);
    }

    /// Gives every held partition back (shutdown, between windows).
    async fn release_all(&mut self) {
        for (partition, claim) in std::mem::take(&mut self.claims) {
            let grant = Grant { partition, epoch: claim.epoch, upto: Hlc::ZERO, tables: Vec::new() };
            if let Err(error) = self.queue.release(self.index, &grant, Release::Done).await {
                tracing::debug!(%error, "cannot give a partition back at shutdown; its lease will expire");
            }
        }
        self.publish_held();
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
