//! `COPY` or a plain `INSERT` first, `ON CONFLICT` when a row exists.
//!
//! In PostgreSQL 15 an `INSERT … ON CONFLICT DO UPDATE` of rows that do not exist yet costs about
//! twice a plain `INSERT` of them: each row probes the primary key before its speculative insert.
//! Initial scans and insert-heavy feeds are exactly that, so an upsert's rows are first sent
//! inside a savepoint as a `COPY … FROM STDIN` (binary where it can be, else text; faster still) or, when a column needs
//! a conversion `COPY` cannot do (PostGIS), as a plain `INSERT`. A unique violation (SQLSTATE
//! 23505) rolls back to the savepoint, with everything the attempt did (trigger effects
//! included), and the upsert runs as before. So does any other error of a `COPY`: its column input
//! is stricter than the upsert's casts in places (a `varchar(n)` too long is an error, not
//! truncated), and the upsert keeps the one behaviour and error report. After a conflict the plain attempt is skipped for the next 1, 2, 4 … 64 statements of
//! that shape, so a feed of updates pays for a failed attempt rarely.

use std::collections::HashMap;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use crate::error::ApplyError;
use crate::statements::StatementCache;

const MAX_SKIP: u32 = 64;

/// Per upsert statement of one connection: how many more to run without trying the plain insert,
/// and the next pause.
#[derive(Default)]
pub struct InsertFirst {
    shapes: HashMap<String, Backoff>,
}

#[derive(Clone, Copy)]
struct Backoff {
    skip: u32,
    next: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { skip: 0, next: 1 }
    }
}

impl InsertFirst {
    /// Whether to try the plain insert for this upsert now.
    fn attempt(&mut self, upsert: &str) -> bool {
        let state = self.shapes.entry(upsert.to_owned()).or_default();
        if state.skip > 0 {
            state.skip -= 1;
            return false;
        }
        true
    }

    fn record(&mut self, upsert: &str, inserted: bool) {
        let state = self.shapes.entry(upsert.to_owned()).or_default();
        if inserted {
            *state = Backoff::default();
        } else {
            state.skip = state.next;
            state.next = (state.next * 2).min(MAX_SKIP);
        }
    }
}

/// The rows of an upsert as a plain write.
pub enum Plain<'a> {
    /// `COPY … FROM STDIN` and its text-format data.
    Copy { sql: &'a str, data: bytes::Bytes },
    /// `INSERT … SELECT FROM unnest(…)` and its parameters.
    Insert { sql: &'a str, params: &'a [&'a (dyn ToSql + Sync)] },
}

/// The insert-first savepoint of one target transaction. After an attempt it is left open and
/// released by the next attempt's `SAVEPOINT` in the same message, so a chunk costs two round
/// trips (the savepoint with the `COPY`'s start, then its data) instead of five. Statements that
/// run while it is open run inside it, and `COMMIT` commits it; it is never more than one deep.
#[derive(Default)]
pub struct Savepoint {
    open: bool,
}

impl Savepoint {
    fn begin(&mut self) -> &'static str {
        let sql = if self.open {
            "RELEASE SAVEPOINT wharf_insert_first; SAVEPOINT wharf_insert_first"
        } else {
            "SAVEPOINT wharf_insert_first"
        };
        self.open = true;
        sql
    }
}

/// Runs `plain` (the rows of `upsert` as a plain write) in a savepoint; `true` if it wrote the
/// rows, `false` if the caller must run the upsert (a row existed, the `COPY` failed, or the plain
/// form is on pause).
pub async fn insert(
    tx: &Transaction<'_>,
    (cache, first, savepoint): (&mut StatementCache, &mut InsertFirst, &mut Savepoint),
    upsert: &str,
    plain: Plain<'_>,
) -> Result<bool, ApplyError> {
    if !first.attempt(upsert) {
        return Ok(false);
    }
    let outcome = match plain {
        Plain::Copy { sql, data } => {
            let statement = cache.get(tx, sql).await?;
            // Sent together: the savepoint's answer comes before the `COPY`'s.
            let (begun, copied) = tokio::join!(tx.batch_execute(savepoint.begin()), copy(tx, &statement, data));
            begun?;
            copied
        }
        Plain::Insert { sql, params } => {
            let statement = cache.get(tx, sql).await?;
            tx.batch_execute(savepoint.begin()).await?;
            match tx.execute(&statement, params).await {
                Err(e) if e.code() != Some(&SqlState::UNIQUE_VIOLATION) => return Err(e.into()),
                other => other.map(|_| ()),
            }
        }
    };
    let inserted = match outcome {
        Ok(()) => true,
        Err(error) => {
            if error.code() != Some(&SqlState::UNIQUE_VIOLATION) {
                tracing::debug!(%error, "COPY refused the rows; the upsert writes them");
            }
            tx.batch_execute("ROLLBACK TO SAVEPOINT wharf_insert_first").await?;
            false
        }
    };
    first.record(upsert, inserted);
    Ok(inserted)
}

async fn copy(tx: &Transaction<'_>, statement: &Statement, data: bytes::Bytes) -> Result<(), tokio_postgres::Error> {
    use futures_util::SinkExt;
    let sink = tx.copy_in(statement).await?;
    futures_util::pin_mut!(sink);
    sink.send(data).await?;
    sink.finish().await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_pause_the_plain_insert_for_longer_each_time_and_a_success_resets() {
        let mut first = InsertFirst::default();
        let pattern = |first: &mut InsertFirst, n: usize| (0..n).map(|_| first.attempt("u")).collect::<Vec<_>>();
        assert!(first.attempt("u"));
        first.record("u", false);
        assert_eq!(pattern(&mut first, 2), [false, true]);
        first.record("u", false);
        assert_eq!(pattern(&mut first, 3), [false, false, true]);
        first.record("u", false);
        assert_eq!(pattern(&mut first, 5), [false, false, false, false, true]);
        first.record("u", true);
        assert_eq!(pattern(&mut first, 2), [true, true]);
        assert!(first.attempt("other"), "shapes are independent");
        for _ in 0..20 {
            first.record("v", false);
        }
        assert_eq!(first.shapes["v"].skip, MAX_SKIP);
    }
}
