//! Connections to the target database.

use tokio_postgres::{Client, NoTls};

/// Opens a connection; its driver task runs on the current runtime until the client is dropped.
pub async fn connect(conn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "target connection closed");
        }
    });
    Ok(client)
}

/// A PostgreSQL error as one line: the server's message, SQLSTATE and detail when there is one.
pub fn describe_pg(error: &tokio_postgres::Error) -> String {
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
