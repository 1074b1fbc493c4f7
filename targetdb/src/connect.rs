//! Connections to the target database.

use thiserror::Error;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::conninfo::{ConnInfo, ConnInfoError};

/// Why a connection to the target could not be opened. Messages say where (host, port, database,
/// user) and why, once, and never contain the password.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error(transparent)]
    Invalid(#[from] ConnInfoError),
    #[error("target TLS settings ({at}): {reason}")]
    Tls { at: String, reason: String },
    #[error("cannot connect to the target ({at}): {cause}")]
    Failed { at: String, cause: String },
}

/// Opens a connection; its driver task runs on the current runtime until the client is dropped.
pub async fn connect(conn: &str) -> Result<Client, ConnectError> {
    connect_with(&ConnInfo::parse(conn)?).await
}

/// As [`connect`], with a connection string already parsed.
pub async fn connect_with(info: &ConnInfo) -> Result<Client, ConnectError> {
    let tls =
        crate::tls::client_config(&info.ssl).map_err(|reason| ConnectError::Tls { at: info.describe(), reason })?;
    let mut pg = info.pg.clone();
    pg.ssl_mode(match info.ssl.mode {
        crate::conninfo::SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        crate::conninfo::SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let failed = |e: tokio_postgres::Error| ConnectError::Failed { at: info.describe(), cause: describe_pg(&e) };
    match tls {
        None => {
            let (client, connection) = pg.connect(NoTls).await.map_err(failed)?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        Some(config) => {
            let (client, connection) = pg.connect(MakeRustlsConnect::new(config)).await.map_err(failed)?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
    }
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(error) = connection.await {
        tracing::debug!(%error, "target connection closed");
    }
}

/// A PostgreSQL error as one line: the server's message, SQLSTATE and detail when there is one;
/// for other errors, the error and its cause.
pub fn describe_pg(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                text.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            text
        }
    }
}
