//! A connection's prepared statements, keyed by their SQL text.

use std::collections::HashMap;

use tokio_postgres::{Statement, Transaction};

/// Prepared statements of one connection, keyed by their SQL text.
#[derive(Default)]
pub struct StatementCache {
    statements: HashMap<String, Statement>,
}

impl StatementCache {
    pub(crate) async fn get(&mut self, tx: &Transaction<'_>, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let statement = tx.prepare(sql).await?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn clear(&mut self) {
        self.statements.clear();
    }
}
