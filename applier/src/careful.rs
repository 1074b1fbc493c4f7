//! A window applied row group by row group, to find the row versions the target refuses.
//!
//! Run after a window failed with a rejection ([`ApplyError::is_rejection`]). Each chunk (of at
//! most 1,000 rows) is tried whole in a savepoint, one timestamp after the other. A chunk the
//! target refuses is rolled back and each of its timestamps is applied on its own, as groups of
//! one table and one kind (deletes child→parent, then upserts parent→child), each group in a
//! savepoint. A group the target refuses is rolled back and split in halves, down to the single
//! row versions it refuses, so a few bad rows cost a few chunks applied again and about
//! `bad × log₂(group)` extra statements, not a statement per row of the window.
//!
//! Under `--onApplyError halt` the first refused version ends the window with
//! [`ApplyError::Rejected`], naming its table and key. Under `quarantine` each refused version is
//! written to the quarantine table in the transaction that commits the rest of the window, its
//! key joins the quarantined keys, and its later versions follow it there
//! ([`crate::quarantine`]).

use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;
use wharf_base::OnApplyError;
use wharf_queue::{BatchRow, ChunkLimits, QueueClient, QueueError, WindowReader};
use wharf_targetdb::catalog::SchemaCatalog;

use crate::apply::{execute, prepare};
use crate::error::ApplyError;
use crate::fold::fold;
use crate::insert_first::{InsertFirst, Savepoint};
use crate::quarantine::{Entry, Keys};
use crate::statements::StatementCache;
use crate::window::{self, Applied, Committed, Target, Window, WindowPlan, may_commit};

const CAREFUL_CHUNK_ROWS: usize = 1_000;

/// What to do with a refused row version.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub on_error: OnApplyError,
    /// Under `quarantine`, a refused version of a new key halts the partition once this many
    /// keys are quarantined (a target that refuses every row should not move a table aside).
    pub max_keys: usize,
}

/// Applies the window as the module says; `keys` are the partition's quarantined keys, and gain
/// the keys quarantined here.
pub(crate) async fn apply<Q: QueueClient>(
    window: Window<'_, Q>,
    plan: WindowPlan<'_>,
    policy: Policy,
    keys: &mut Keys,
    shutdown: &CancellationToken,
) -> Result<Applied, ApplyError> {
    let Window { queue, worker, limits, target, stats } = window;
    // Smaller chunks: a refused chunk is applied a timestamp at a time, and reading the next chunk
    // is what tells the queue service the lease is in use.
    let limits = ChunkLimits { max_rows: limits.max_rows.min(CAREFUL_CHUNK_ROWS), ..limits };
    let Target { client, statements, insert_first, staging_schema, commit_rows } = target;
    let WindowPlan { grant, catalog, from, floors, .. } = plan;
    let mut reader = queue.open(worker, grant, from, catalog.fk_order.clone()).await?;
    loop {
        let started = std::time::Instant::now();
        let tx = client.transaction().await?;
        let mut group = Group {
            tx: &tx,
            statements: &mut *statements,
            insert_first: &mut *insert_first,
            catalog,
            policy,
            keys: &mut *keys,
            entries: Vec::new(),
            upserts: 0,
            deletes: 0,
        };
        let mut rows = 0usize;
        let (through, last) = loop {
            let chunk = reader.next_chunk(limits).await?;
            let batch: Vec<BatchRow> = chunk.rows.iter().filter(|row| !floors.covers(row.table, row.hlc)).collect();
            group.chunk(&batch).await?;
            rows += batch.len();
            drop(batch);
            let (complete, last) = (chunk.complete_through, chunk.last);
            reader.recycle(chunk.rows);
            if let Some(through) = complete
                && (last || (may_commit(floors, through) && (rows >= commit_rows || shutdown.is_cancelled())))
            {
                break (through, last);
            }
            if last {
                return Err(QueueError::Protocol("the window ended without a complete timestamp".into()).into());
            }
        };
        let entries = std::mem::take(&mut group.entries);
        let (upserts, deletes) = (group.upserts, group.deletes);
        drop(group);
        window::commit(tx, staging_schema, grant, &entries, through).await?;
        let done = Committed {
            through,
            rows: rows as u64,
            upserts,
            deletes,
            quarantined: entries.len() as u64,
            took: started.elapsed(),
            last,
        };
        if let Some(applied) = window::report((queue, worker, stats), grant, &done, shutdown).await? {
            return Ok(applied);
        }
    }
}

/// One transaction of a careful window.
struct Group<'g, 'tx> {
    tx: &'g Transaction<'tx>,
    statements: &'g mut StatementCache,
    insert_first: &'g mut InsertFirst,
    catalog: &'g SchemaCatalog,
    policy: Policy,
    keys: &'g mut Keys,
    entries: Vec<Entry>,
    /// Row versions applied, for the apply metrics.
    upserts: u64,
    deletes: u64,
}

impl Group<'_, '_> {
    /// Applies a chunk: whole, one timestamp after the other, in one savepoint; when the target
    /// refuses it, timestamp by timestamp as [`Group::settle`] does.
    async fn chunk(&mut self, batch: &[BatchRow<'_>]) -> Result<(), ApplyError> {
        let (held, fresh): (Vec<BatchRow>, Vec<BatchRow>) = batch.iter().partition(|row| self.keys.contains(row));
        self.entries.extend(held.iter().map(Entry::held));
        self.tx.batch_execute("SAVEPOINT wharf_careful").await?;
        let mut whole = Ok(());
        for run in fresh.chunk_by(|a, b| a.hlc == b.hlc) {
            whole = self.run(run).await;
            if whole.is_err() {
                break;
            }
        }
        match whole {
            Ok(()) => {
                self.tx.batch_execute("RELEASE SAVEPOINT wharf_careful").await?;
                for row in &fresh {
                    *(if row.after.is_none() { &mut self.deletes } else { &mut self.upserts }) += 1;
                }
                return Ok(());
            }
            Err(error) if error.is_rejection() => {
                self.tx.batch_execute("ROLLBACK TO SAVEPOINT wharf_careful; RELEASE SAVEPOINT wharf_careful").await?;
            }
            Err(error) => return Err(error),
        }
        for run in fresh.chunk_by(|a, b| a.hlc == b.hlc) {
            self.settle(run).await?;
        }
        Ok(())
    }

    /// Applies the rows of one timestamp, quarantining what the target refuses (or failing on it
    /// under `halt`); versions of keys quarantined meanwhile are held.
    async fn settle(&mut self, run: &[BatchRow<'_>]) -> Result<(), ApplyError> {
        let (held, fresh): (Vec<BatchRow>, Vec<BatchRow>) = run.iter().partition(|row| self.keys.contains(row));
        self.entries.extend(held.iter().map(Entry::held));
        for rows in groups(self.catalog, &fresh) {
            for (row, error) in self.bisect(&rows).await? {
                let ApplyError::Target(source) = error else { unreachable!("bisect returns rejections") };
                let (table, key, version) =
                    (row.table.to_owned(), String::from_utf8_lossy(row.key).into_owned(), row.hlc);
                match self.policy {
                    Policy { on_error: OnApplyError::Halt, .. } => {
                        return Err(ApplyError::Rejected { table, key, version, source });
                    }
                    Policy { max_keys, .. } if self.keys.len() >= max_keys => {
                        return Err(ApplyError::QuarantineFull { limit: max_keys, table, key, version, source });
                    }
                    _ => {}
                }
                let (sqlstate, message) = describe(&source);
                tracing::warn!(table = row.table, key = %String::from_utf8_lossy(row.key), version = %row.hlc, sqlstate, "row version quarantined: the target refuses it");
                self.keys.insert(&row);
                self.entries.push(Entry::refused(&row, Some(sqlstate), message));
            }
        }
        Ok(())
    }

    /// Runs `rows` in savepoints, halving what the target refuses; returns the single row
    /// versions it refuses, in order, with the error of each.
    async fn bisect<'r>(&mut self, rows: &[BatchRow<'r>]) -> Result<Vec<(BatchRow<'r>, ApplyError)>, ApplyError> {
        let mut refused = Vec::new();
        // Last in, first out: the first half is tried before the second.
        let mut todo = vec![rows];
        while let Some(part) = todo.pop() {
            self.tx.batch_execute("SAVEPOINT wharf_careful").await?;
            match self.run(part).await {
                Ok(()) => {
                    self.tx.batch_execute("RELEASE SAVEPOINT wharf_careful").await?;
                    let count = part.len() as u64;
                    *(if part[0].after.is_none() { &mut self.deletes } else { &mut self.upserts }) += count;
                }
                Err(error) if error.is_rejection() => {
                    self.tx
                        .batch_execute("ROLLBACK TO SAVEPOINT wharf_careful; RELEASE SAVEPOINT wharf_careful")
                        .await?;
                    if let [row] = part {
                        refused.push((*row, error));
                    } else {
                        let (first, second) = part.split_at(part.len() / 2);
                        todo.push(second);
                        todo.push(first);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(refused)
    }

    async fn run(&mut self, rows: &[BatchRow<'_>]) -> Result<(), ApplyError> {
        let statements = prepare(self.catalog, fold(rows)?)?;
        // A savepoint of its own: the enclosing one's rollback or release ends it.
        let mut savepoint = Savepoint::default();
        execute(self.tx, self.statements, self.insert_first, &mut savepoint, &statements).await
    }
}

/// The rows of one timestamp as groups of one table and one kind, in the order the target needs
/// them: deletes child→parent, then upserts parent→child; rows keep the journal's order.
fn groups<'r>(catalog: &SchemaCatalog, rows: &[BatchRow<'r>]) -> Vec<Vec<BatchRow<'r>>> {
    let mut tables: Vec<&str> = rows.iter().map(|row| row.table).collect();
    tables.sort_by_key(|table| (catalog.rank(table), *table));
    tables.dedup();
    let of = |table: &str, delete: bool| -> Vec<BatchRow<'r>> {
        rows.iter().filter(|row| row.table == table && row.after.is_none() == delete).copied().collect()
    };
    let deletes = tables.iter().rev().map(|table| of(table, true));
    let upserts = tables.iter().map(|table| of(table, false));
    deletes.chain(upserts).filter(|group| !group.is_empty()).collect()
}

/// The SQLSTATE and the target's whole message for the quarantine table (which holds the row's
/// values anyway, so the detail is kept).
pub(crate) fn describe(error: &tokio_postgres::Error) -> (String, String) {
    match error.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_owned();
            if let Some(detail) = db.detail() {
                message.push_str(&format!(" ({detail})"));
            }
            (db.code().code().to_owned(), message)
        }
        None => (String::new(), error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use wharf_queue::Hlc;

    #[test]
    fn groups_put_deletes_child_first_then_upserts_parent_first() {
        let catalog = SchemaCatalog {
            tables: HashMap::new(),
            fk_order: vec!["parent".into(), "child".into()],
            groups: Vec::new(),
        };
        let row = |table: &'static str, key: &'static str, after: Option<&'static str>| BatchRow {
            hlc: Hlc::new(1, 0),
            table,
            key: key.as_bytes(),
            after: after.map(str::as_bytes),
        };
        let rows = [
            row("child", "[1]", Some("{}")),
            row("parent", "[1]", None),
            row("parent", "[2]", Some("{}")),
            row("child", "[2]", None),
            row("child", "[3]", Some("{}")),
        ];
        let order: Vec<Vec<(&str, &[u8])>> =
            groups(&catalog, &rows).iter().map(|g| g.iter().map(|r| (r.table, r.key)).collect()).collect();
        assert_eq!(
            order,
            vec![
                vec![("child", b"[2]".as_slice())],
                vec![("parent", b"[1]".as_slice())],
                vec![("parent", b"[2]".as_slice())],
                vec![("child", b"[1]".as_slice()), ("child", b"[3]".as_slice())],
            ]
        );
    }
}
