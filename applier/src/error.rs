//! Apply errors, classified by what the worker does next.

use thiserror::Error;
use wharf_queue::QueueError;
use wharf_targetdb::catalog::CatalogError;
use wharf_targetdb::checkpoint::{CheckpointError, Fenced};
use wharf_targetdb::{ConnectError, describe_pg};

use crate::fold::FoldError;

#[derive(Debug, Error)]
pub enum ApplyError {
    /// Never retried: the worker gives the partition back and says at which epoch the target is,
    /// so the queue service grants above it.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("table {0:?} is not in the target schema")]
    UnknownTable(String),
    #[error("table {table}: column {column:?} is not in the target table")]
    UnknownColumn { table: String, column: String },
    #[error("table {table}: row lacks primary-key column {column:?}")]
    MissingKeyColumn { table: String, column: String },
    #[error("table {table}: key has {got} values, the primary key has {want} columns")]
    KeyArity { table: String, got: usize, want: usize },
    #[error(transparent)]
    Fold(#[from] FoldError),
    /// A row version the target refuses for good (found by [`crate::careful`] under
    /// `--onApplyError halt`): the partition pauses, and status names the row.
    #[error("table {table}, key {key}, version {version}: target: {}", describe_pg(.source))]
    Rejected { table: String, key: String, version: wharf_queue::Hlc, source: tokio_postgres::Error },
    /// A refused row version under `--onApplyError quarantine` when the partition's quarantine
    /// already holds `--quarantineMaxKeys` keys: the partition pauses as under `halt`.
    #[error(
        "the quarantine of this partition holds {limit} keys (--quarantineMaxKeys), so a refused row halts it: table {table}, key {key}, version {version}: target: {}; fix the target, then `wharfctl dlq replay`",
        describe_pg(.source)
    )]
    QuarantineFull {
        limit: usize,
        table: String,
        key: String,
        version: wharf_queue::Hlc,
        source: tokio_postgres::Error,
    },
    /// The target refused a row for a foreign key that links the group's tables to tables
    /// outside it: the target has a key that the ingest's grouping does not know yet. Not the
    /// row's fault (its parent is in the other group, perhaps not applied yet): the group waits,
    /// briefly paused, for the ingest's next catalog read to merge the groups.
    #[error(
        "target: {} (its foreign keys now link this group's tables to {others}, which the ingest has not grouped with them yet; waiting for its next catalog read, every --catalogRefresh, to merge the groups)",
        describe_pg(.source)
    )]
    Regrouping { others: String, source: tokio_postgres::Error },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("target: {}", describe_pg(.0))]
    Target(#[from] tokio_postgres::Error),
    /// Unreachable, refused, or a TLS failure: retried with backoff (the message says where and why).
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

impl From<CheckpointError> for ApplyError {
    fn from(e: CheckpointError) -> Self {
        match e {
            CheckpointError::Fenced(fenced) => ApplyError::Fenced(fenced),
            CheckpointError::Target(e) => ApplyError::Target(e),
        }
    }
}

/// SQLSTATEs worth retrying as they are: serialization failures, deadlocks, lost connections,
/// shutdowns and resource shortages.
const RETRYABLE_STATES: &[&str] =
    &["40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53000", "53100", "53200", "53300"];

/// SQLSTATE classes of errors that are a row's fault, for `--onApplyError`: data exceptions (22:
/// a value out of range, malformed, too long) and integrity constraint violations (23: CHECK, NOT
/// NULL, unique, foreign key, exclusion). Class 42 (a type or name the statement got wrong) is
/// the catalog's fault: it is read again first ([`ApplyError::may_be_stale_catalog`]), and with
/// the target's types a value that does not fit fails in class 22.
const REJECTION_CLASSES: &[&str] = &["22", "23"];

/// What the worker does after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep the partition, back off, try the same window again.
    Retry,
    /// Give the partition back: its lease is gone.
    GiveUp,
    /// Give the partition back paused: only a change to the target or the data can help.
    Pause,
    /// Give the partition back paused briefly: the ingest is about to regroup it.
    AwaitRegrouping,
}

impl ApplyError {
    pub fn next(&self) -> Next {
        match self {
            ApplyError::Fenced(_) | ApplyError::Queue(QueueError::NotHolder(_)) => Next::GiveUp,
            ApplyError::Regrouping { .. } => Next::AwaitRegrouping,
            ApplyError::Queue(e) if e.is_retryable() => Next::Retry,
            ApplyError::Target(e) => match e.code() {
                Some(code) if RETRYABLE_STATES.contains(&code.code()) || code.code().starts_with("08") => Next::Retry,
                Some(_) => Next::Pause,
                None => Next::Retry,
            },
            ApplyError::Catalog(CatalogError::Query(_) | CatalogError::Connect(_)) | ApplyError::Connect(_) => {
                Next::Retry
            }
            _ => Next::Pause,
        }
    }

    /// Whether the target's shape may have changed under the cached catalog: a table or column
    /// it lacks, or the target refusing a statement's names or types (SQLSTATE class 42, e.g.
    /// after an `ALTER TABLE`). The next window reads the catalog again.
    pub fn may_be_stale_catalog(&self) -> bool {
        match self {
            ApplyError::UnknownTable(_) | ApplyError::UnknownColumn { .. } | ApplyError::MissingKeyColumn { .. } => {
                true
            }
            ApplyError::KeyArity { .. } => true,
            ApplyError::Target(e) => e.code().is_some_and(|c| c.code().starts_with("42")),
            _ => false,
        }
    }

    /// An error the target gives for the rows themselves: the window is applied again with each
    /// row group in a savepoint ([`crate::careful`]) to find the refused rows.
    pub fn is_rejection(&self) -> bool {
        let ApplyError::Target(e) = self else { return false };
        e.code().is_some_and(|c| {
            let code = c.code();
            REJECTION_CLASSES.iter().any(|class| code.starts_with(class))
        })
    }

    /// A constraint failure that a timestamp-by-timestamp replay of the window may avoid.
    pub fn is_constraint_order(&self) -> bool {
        matches!(self, ApplyError::Target(e) if e.code().is_some_and(|c| c.code() == "23503" || c.code() == "23505"))
    }
}
