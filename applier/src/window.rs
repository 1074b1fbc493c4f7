//! Applying one window `(C, R]`: chunks are read and prepared ahead by a producer task (at most
//! one chunk waits, so memory is a few chunks whatever the window's size) while the target runs
//! the current one; transactions commit with the fenced checkpoint at timestamp boundaries.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wharf_queue::{BatchRow, Chunk, ChunkLimits, Grant, Hlc, QueueClient, QueueError, WindowReader};
use wharf_targetdb::catalog::SchemaCatalog;
use wharf_targetdb::checkpoint::{self, Floors};

use crate::apply::{Prepared, execute, prepare};
use crate::error::ApplyError;
use crate::fold::fold;
use crate::insert_first::{InsertFirst, Savepoint};
use crate::quarantine::{self, Entry, Keys};
use crate::statements::StatementCache;
use crate::worker::ApplyStats;

/// What a window needs: the queue (as one worker), the target connection with its per-connection
/// state, the limits, and the counters it adds each commit to.
pub(crate) struct Window<'a, Q> {
    pub queue: &'a Q,
    pub worker: u32,
    pub limits: ChunkLimits,
    pub target: Target<'a>,
    pub stats: &'a ApplyStats,
}

/// The target side of a window.
pub(crate) struct Target<'a> {
    pub client: &'a mut tokio_postgres::Client,
    pub statements: &'a mut StatementCache,
    pub insert_first: &'a mut InsertFirst,
    pub staging_schema: &'a str,
    /// A transaction commits at the first timestamp boundary past this many rows.
    pub commit_rows: usize,
}

/// What a window did.
pub(crate) struct Applied {
    /// Whether the worker keeps the partition (the queue service's answer to the last report).
    pub keep: bool,
    /// The checkpoint of the last transaction committed.
    pub through: Hlc,
}

/// What to apply.
pub(crate) struct WindowPlan<'a> {
    pub grant: &'a Grant,
    pub catalog: &'a Arc<SchemaCatalog>,
    /// The target's checkpoint: the window starts after it.
    pub from: Hlc,
    /// Per table, versions a former unit applied already (see `wharf_targetdb::checkpoint`).
    pub floors: &'a Arc<Floors>,
    /// Fold and order each timestamp on its own (after a constraint failure).
    pub by_timestamp: bool,
    /// The partition's quarantined keys: their versions go to the quarantine table instead.
    pub quarantined: &'a Arc<Keys>,
}

/// A chunk turned into statements.
struct Ready {
    rows: usize,
    statements: Vec<Prepared>,
    /// Versions of quarantined keys, for the quarantine table.
    held: Vec<Entry>,
    complete_through: Option<Hlc>,
    last: bool,
}

/// Applies the window, reporting each commit to the queue service as it happens (so the journal
/// compacts and rebalancing can take the partition between transactions).
pub(crate) async fn apply<Q: QueueClient>(
    window: Window<'_, Q>,
    plan: WindowPlan<'_>,
    shutdown: &CancellationToken,
) -> Result<Applied, ApplyError> {
    let Window { queue, worker, limits, mut target, stats } = window;
    let WindowPlan { grant, catalog, from, floors, by_timestamp, quarantined } = plan;
    let reader = queue.open(worker, grant, from, catalog.fk_order.clone()).await?;
    let (sender, mut ready) = mpsc::channel(1);
    let shape =
        Shape { catalog: catalog.clone(), by_timestamp, quarantined: quarantined.clone(), floors: floors.clone() };
    let producer = tokio::spawn(produce(reader, limits, shape, sender));
    let result = async {
        loop {
            let done = apply_transaction(&mut target, grant, floors, &mut ready, shutdown).await?;
            if let Some(applied) = report((queue, worker, stats), grant, &done, shutdown).await? {
                return Ok(applied);
            }
        }
    }
    .await;
    producer.abort();
    result
}

/// Counts a committed transaction and reports it to the queue service; `Some` when the window
/// ends there (its last transaction, the partition handed back, or shutdown).
pub(crate) async fn report<Q: QueueClient>(
    (queue, worker, stats): (&Q, u32, &ApplyStats),
    grant: &Grant,
    done: &Committed,
    shutdown: &CancellationToken,
) -> Result<Option<Applied>, ApplyError> {
    stats.committed(&grant.partition, done);
    let keep = queue.committed(worker, grant, done.through, done.rows).await?;
    Ok((done.last || !keep || shutdown.is_cancelled()).then_some(Applied { keep, through: done.through }))
}

/// Ends a window's transaction at `through`: its quarantined versions, the fenced checkpoint,
/// `COMMIT`.
pub(crate) async fn commit(
    tx: tokio_postgres::Transaction<'_>,
    staging_schema: &str,
    grant: &Grant,
    quarantined: &[Entry],
    through: Hlc,
) -> Result<(), ApplyError> {
    quarantine::write(&tx, staging_schema, &grant.partition, quarantined).await?;
    checkpoint::commit(&tx, staging_schema, &grant.partition, grant.epoch, through).await?;
    Ok(tx.commit().await?)
}

/// One committed target transaction.
pub(crate) struct Committed {
    pub through: Hlc,
    /// Mutations read from the journal.
    pub rows: u64,
    /// Rows written and deleted after folding.
    pub upserts: u64,
    pub deletes: u64,
    /// Row versions written to the quarantine table.
    pub quarantined: u64,
    pub took: std::time::Duration,
    pub last: bool,
}

/// Runs one target transaction: chunks until a timestamp boundary past the commit size (or the
/// window's end, or shutdown), then the fenced checkpoint and `COMMIT`.
async fn apply_transaction(
    target: &mut Target<'_>,
    grant: &Grant,
    floors: &Floors,
    ready: &mut mpsc::Receiver<Result<Ready, ApplyError>>,
    shutdown: &CancellationToken,
) -> Result<Committed, ApplyError> {
    let started = std::time::Instant::now();
    let tx = target.client.transaction().await?;
    let mut savepoint = Savepoint::default();
    let mut rows = 0usize;
    let (mut upserts, mut deletes) = (0, 0);
    let mut held = Vec::new();
    loop {
        let chunk = ready
            .recv()
            .await
            .ok_or_else(|| QueueError::Protocol("the window ended without its last chunk".into()))??;
        execute(&tx, target.statements, target.insert_first, &mut savepoint, &chunk.statements).await?;
        rows += chunk.rows;
        held.extend(chunk.held);
        for statement in &chunk.statements {
            *(if statement.delete { &mut deletes } else { &mut upserts }) += statement.rows as u64;
        }
        let Some(through) = chunk.complete_through else { continue };
        if chunk.last || (may_commit(floors, through) && (rows >= target.commit_rows || shutdown.is_cancelled())) {
            commit(tx, target.staging_schema, grant, &held, through).await?;
            let took = started.elapsed();
            let quarantined = held.len() as u64;
            return Ok(Committed { through, rows: rows as u64, upserts, deletes, quarantined, took, last: chunk.last });
        }
    }
}

/// Whether a transaction may end at `through`: only once every table of the unit is there (past
/// the floors a regrouped unit starts with), so that each commit leaves the group at one resolved
/// timestamp.
pub(crate) fn may_commit(floors: &Floors, through: Hlc) -> bool {
    floors.highest().is_none_or(|highest| through >= highest)
}

/// Reads chunks and prepares their statements off the async runtime, one chunk ahead.
async fn produce<W: WindowReader>(
    mut reader: W,
    limits: ChunkLimits,
    shape: Shape,
    out: mpsc::Sender<Result<Ready, ApplyError>>,
) {
    let shape = Arc::new(shape);
    loop {
        let chunk = match reader.next_chunk(limits).await {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = out.send(Err(e.into())).await;
                return;
            }
        };
        let last = chunk.last;
        let shape = shape.clone();
        let (prepared, rows) = tokio::task::spawn_blocking(move || {
            let prepared = prepare_chunk(&chunk, &shape);
            (prepared, chunk.rows)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        reader.recycle(rows);
        if out.send(prepared).await.is_err() || last {
            return;
        }
    }
}

/// What turning a chunk into statements needs.
struct Shape {
    catalog: Arc<SchemaCatalog>,
    by_timestamp: bool,
    quarantined: Arc<Keys>,
    floors: Arc<Floors>,
}

fn prepare_chunk(chunk: &Chunk, shape: &Shape) -> Result<Ready, ApplyError> {
    let mut statements = Vec::new();
    let mut rows: Vec<BatchRow> = chunk.rows.iter().collect();
    let mut held = Vec::new();
    if !shape.floors.is_empty() {
        rows.retain(|row| !shape.floors.covers(row.table, row.hlc));
    }
    if !shape.quarantined.is_empty() {
        rows.retain(|row| {
            let keep = !shape.quarantined.contains(row);
            if !keep {
                held.push(Entry::held(row));
            }
            keep
        });
    }
    for run in runs(&rows, shape.by_timestamp) {
        statements.extend(prepare(&shape.catalog, fold(run)?)?);
    }
    Ok(Ready { rows: chunk.rows.len(), statements, held, complete_through: chunk.complete_through, last: chunk.last })
}

/// The whole chunk, or its runs of rows with one timestamp each.
fn runs<'c, 'a>(chunk: &'c [BatchRow<'a>], by_timestamp: bool) -> Vec<&'c [BatchRow<'a>]> {
    if !by_timestamp {
        return vec![chunk];
    }
    chunk.chunk_by(|a, b| a.hlc == b.hlc).collect()
}
