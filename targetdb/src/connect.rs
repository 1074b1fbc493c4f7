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

/// A message without the quoted value a data exception (SQLSTATE class 22) quotes back.
fn withhold_values(message: &str, code: &str) -> String {
    if !code.starts_with("22") {
        return message.to_owned();
    }
    match (message.find('"'), message.rfind('"')) {
        (Some(first), Some(last)) if last > first => {
            format!("{}<value withheld>{}", &message[..first], &message[last + 1..])
        }
        _ => message.to_owned(),
    }
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(error) = connection.await {
        tracing::debug!(%error, "target connection closed");
    }
}

/// A PostgreSQL error as one line: the server's message, SQLSTATE and detail when there is one;
/// for other errors, the error and its cause. It goes to logs and to `wharfctl status`, so row
/// values stay out: a detail is kept only when it names a key (`Key (id)=(5) already exists.`),
/// and a data exception's quoted value (`invalid input syntax for type uuid: "…"`) is withheld.
pub fn describe_pg(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let mut text = format!("{} (SQLSTATE {code})", withhold_values(db.message(), code));
            match db.detail() {
                Some(detail) if detail.starts_with("Key (") => text.push_str(&format!("; {detail}")),
                Some(_) => text.push_str("; detail withheld: it may hold row values"),
                None => {}
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_data_exceptions_value_is_withheld_and_other_messages_kept() {
        let withheld = super::withhold_values(r#"invalid input syntax for type uuid: "my secret""#, "22P02");
        assert_eq!(withheld, "invalid input syntax for type uuid: <value withheld>");
        let kept = r#"null value in column "v" of relation "t" violates not-null constraint"#;
        assert_eq!(super::withhold_values(kept, "23502"), kept);
    }
}
