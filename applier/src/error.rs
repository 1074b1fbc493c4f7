//! Apply errors, classified by what the worker does next.

use thiserror::Error;
use wharf_queue::ReadError;

use crate::catalog::CatalogError;
use crate::fold::FoldError;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("lease on partition was taken over by another applier (epoch {0} is stale)")]
    Fenced(i64),
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
    #[error(transparent)]
    Journal(#[from] ReadError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("target: {}", describe_pg(.0))]
    Target(#[from] tokio_postgres::Error),
}

/// SQLSTATEs worth retrying as they are: serialization failures, deadlocks, lost connections,
/// shutdowns and resource shortages.
const RETRYABLE_STATES: &[&str] =
    &["40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53000", "53100", "53200", "53300"];

impl ApplyError {
    /// Whether trying the same window again may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Fenced(_) => true,
            ApplyError::Target(e) => match e.code() {
                Some(code) => RETRYABLE_STATES.contains(&code.code()) || code.code().starts_with("08"),
                None => true,
            },
            ApplyError::Catalog(CatalogError::Query(_)) => true,
            _ => false,
        }
    }

    /// A constraint failure that a timestamp-by-timestamp replay of the chunk may avoid.
    pub fn is_constraint_order(&self) -> bool {
        matches!(self, ApplyError::Target(e) if e.code().is_some_and(|c| c.code() == "23503" || c.code() == "23505"))
    }
}

fn describe_pg(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            text
        }
        None => error.to_string(),
    }
}
