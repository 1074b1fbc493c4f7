//! `--targetConn` read the way libpq reads a connection string, so an operator's habits work:
//! a URL or `key=value` pairs; `sslmode` (disable, prefer, require, verify-ca, verify-full),
//! `sslrootcert` (a file or `system`), `sslcert`, `sslkey`, `passfile`; and for whatever the
//! string leaves out, libpq's environment variables and files (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, `PGPASSFILE` or `~/.pgpass`, `PGSSLMODE`, `PGSSLROOTCERT` or
//! `~/.postgresql/root.crt`, `PGSSLCERT`, `PGSSLKEY`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS`).

mod params;
mod pgpass;

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio_postgres::config::Host;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConnInfoError {
    #[error("invalid target connection string: {0}")]
    Syntax(String),
    #[error(
        "invalid target connection string: sslmode {0:?} is not disable, prefer, require, verify-ca or verify-full"
    )]
    SslMode(String),
    #[error("invalid target connection string: {0}")]
    Parse(String),
}

/// How TLS to the target is negotiated and checked (libpq's meanings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, plain otherwise (libpq's default).
    Prefer,
    /// TLS or nothing.
    Require,
    /// TLS with a certificate chaining to the root certificate.
    VerifyCa,
    /// As verify-ca, and the certificate names the host connected to.
    VerifyFull,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// The operating system's trust store (libpq's `sslrootcert=system`; implies verify-full).
    System,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SslSettings {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// A parsed connection string with libpq's defaults filled in.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub pg: tokio_postgres::Config,
    pub ssl: SslSettings,
}

/// Where environment variables come from (the process environment, or a test's map).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl ConnInfo {
    pub fn parse(conn: &str) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::parse_with(conn, &process_env)
    }

    pub fn parse_with(conn: &str, env: Env<'_>) -> Result<ConnInfo, ConnInfoError> {
        let split = params::split(conn)?;
        let mut pg: tokio_postgres::Config = split.rest.parse().map_err(|e| ConnInfoError::Parse(parse_error(e)))?;
        fill_from_env(&mut pg, env)?;
        let ssl = ssl_settings(&split, env)?;
        if pg.get_password().is_none()
            && let Some(password) = env("PGPASSWORD").or_else(|| password_file(&pg, &split, env))
        {
            pg.password(password);
        }
        Ok(ConnInfo { pg, ssl })
    }

    /// Host, port, database and user, for messages (never the password).
    pub fn describe(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        let user = self.user().unwrap_or_else(|| "(current user)".into());
        let database = self.pg.get_dbname().map_or_else(|| user.clone(), str::to_owned);
        format!("host {host}, port {port}, database {database}, user {user}")
    }

    fn user(&self) -> Option<String> {
        self.pg.get_user().map(str::to_owned).or_else(|| process_env("USER")).or_else(|| process_env("LOGNAME"))
    }
}

/// tokio-postgres's parse errors name the option; their text never quotes a value.
fn parse_error(error: tokio_postgres::Error) -> String {
    use std::error::Error;
    match error.source() {
        Some(cause) => cause.to_string(),
        None => error.to_string(),
    }
}

fn fill_from_env(pg: &mut tokio_postgres::Config, env: Env<'_>) -> Result<(), ConnInfoError> {
    if pg.get_hosts().is_empty() && pg.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|h| {
                pg.host(h);
            }),
            None => {
                pg.host(default_host());
            }
        }
    }
    if pg.get_ports().is_empty()
        && let Some(ports) = env("PGPORT")
    {
        for port in ports.split(',') {
            pg.port(port.trim().parse().map_err(|_| ConnInfoError::Parse(format!("PGPORT {port:?} is not a port")))?);
        }
    }
    if pg.get_user().is_none()
        && let Some(user) = env("PGUSER")
    {
        pg.user(user);
    }
    if pg.get_dbname().is_none()
        && let Some(database) = env("PGDATABASE")
    {
        pg.dbname(database);
    }
    if pg.get_application_name().is_none() {
        pg.application_name(env("PGAPPNAME").unwrap_or_else(|| "wharf".into()));
    }
    if pg.get_options().is_none()
        && let Some(options) = env("PGOPTIONS")
    {
        pg.options(options);
    }
    if pg.get_connect_timeout().is_none()
        && let Some(timeout) = env("PGCONNECT_TIMEOUT")
    {
        let secs: u64 = timeout
            .trim()
            .parse()
            .map_err(|_| ConnInfoError::Parse("PGCONNECT_TIMEOUT is not a number of seconds".into()))?;
        if secs > 0 {
            pg.connect_timeout(Duration::from_secs(secs));
        }
    }
    Ok(())
}

/// libpq's default: the Unix socket directory of Debian's PostgreSQL when it exists, else localhost.
fn default_host() -> &'static str {
    if Path::new("/var/run/postgresql").is_dir() { "/var/run/postgresql" } else { "localhost" }
}

fn ssl_settings(split: &params::Split, env: Env<'_>) -> Result<SslSettings, ConnInfoError> {
    let pick = |key: &str, var: &str| split.get(key).map(str::to_owned).or_else(|| env(var));
    let home_file =
        |name: &str| env("HOME").map(|home| Path::new(&home).join(".postgresql").join(name)).filter(|p| p.is_file());
    let mode = match pick("sslmode", "PGSSLMODE").as_deref() {
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => return Err(ConnInfoError::SslMode(other.to_owned())),
    };
    let root_cert = match pick("sslrootcert", "PGSSLROOTCERT") {
        Some(value) if value == "system" => Some(RootCert::System),
        Some(path) => Some(RootCert::File(path.into())),
        None => home_file("root.crt").map(RootCert::File),
    };
    let cert = pick("sslcert", "PGSSLCERT").map(PathBuf::from).or_else(|| home_file("postgresql.crt"));
    let key = pick("sslkey", "PGSSLKEY").map(PathBuf::from).or_else(|| home_file("postgresql.key"));
    Ok(SslSettings { mode, root_cert, cert, key })
}

fn password_file(pg: &tokio_postgres::Config, split: &params::Split, env: Env<'_>) -> Option<String> {
    let path = split
        .get("passfile")
        .map(PathBuf::from)
        .or_else(|| env("PGPASSFILE").map(PathBuf::from))
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(name)) => name.as_str(),
        _ => "localhost",
    };
    let user = pg.get_user().map(str::to_owned).or_else(|| env("USER")).unwrap_or_default();
    let database = pg.get_dbname().map_or_else(|| user.clone(), str::to_owned);
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    pgpass::find(&path, &pgpass::Lookup { host, port, database: &database, user: &user })
}

#[cfg(test)]
mod tests;
