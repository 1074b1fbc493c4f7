//! `wharf-ingest start` flags (named as MOLT Replicator's), validated once into [`IngestConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use thiserror::Error;

use crate::tls::{CertSource, TlsSettings};

/// CockroachDB batches up to `webhook_sink_config.Flush.Bytes`; MOLT docs use 1 MiB. 64 MiB leaves
/// room for large initial scans while bounding the memory one request can take.
pub const DEFAULT_BODY_LIMIT: u64 = 64 << 20;
/// The journal refuses records over 1 GiB, so a larger body could never be journaled.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;
/// Default of `--maxClockSkew`: far above CockroachDB's own clock offset limit (500 ms), far
/// below what a forged timestamp needs to do harm.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Default of `--catalogRefresh`.
pub const DEFAULT_CATALOG_REFRESH: Duration = Duration::from_secs(30);
/// Time allowed to finish in-flight requests on SIGTERM before the process exits anyway.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

#[derive(Args, Clone, Debug)]
pub struct StartArgs {
    /// Address to listen on; `:PORT` listens on every interface.
    #[arg(long = "bindAddr", env = "WHARF_BIND_ADDR", default_value = ":26258")]
    pub bind_addr: String,
    /// Target database: postgresql://user@host:port/database
    #[arg(long = "targetConn", env = "WHARF_TARGET_CONN", hide_env_values = true)]
    pub target_conn: String,
    /// Schema inside the target database for wharf's own tables (checkpoints, JWT keys).
    #[arg(long = "stagingSchema", env = "WHARF_STAGING_SCHEMA", default_value = "_replicator")]
    pub staging_schema: String,
    /// Accept every request without a token. For testing only.
    #[arg(long = "disableAuthentication", env = "WHARF_DISABLE_AUTHENTICATION")]
    pub disable_authentication: bool,
    /// PEM certificate chain for HTTPS.
    #[arg(long = "tlsCertificate", env = "WHARF_TLS_CERTIFICATE")]
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long = "tlsPrivateKey", env = "WHARF_TLS_PRIVATE_KEY")]
    pub tls_private_key: Option<PathBuf>,
    /// Serve HTTPS with a generated self-signed certificate. For testing only.
    #[arg(long = "tlsSelfSigned", env = "WHARF_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// PEM bundle of CAs that client certificates must chain to (mutual TLS).
    #[arg(long = "tlsClientCA", env = "WHARF_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Directory of the durable journal.
    #[arg(long = "journalDir", env = "WHARF_JOURNAL_DIR", default_value = "./journal")]
    pub journal_dir: PathBuf,
    /// Journal size past which requests get 503 until appliers catch up, in bytes.
    #[arg(long = "journalBudget", env = "WHARF_JOURNAL_BUDGET", default_value = "8GiB", value_parser = parse_size)]
    pub journal_budget: u64,
    /// Free disk space kept on the journal's file system, in bytes: below it every append gets 503.
    #[arg(long = "diskReserve", env = "WHARF_DISK_RESERVE", default_value = "1GiB", value_parser = parse_size)]
    pub disk_reserve: u64,
    /// Applier workers embedded in this process (0 when separate wharf-applier processes do the work).
    #[arg(long = "appliers", env = "WHARF_APPLIERS", default_value_t = 1)]
    pub appliers: usize,
    /// Largest accepted request body, in bytes (413 above it).
    #[arg(long = "bodyLimit", env = "WHARF_BODY_LIMIT", default_value = "64MiB", value_parser = parse_size)]
    pub body_limit: u64,
    /// UDP address of the queue service that separate wharf-applier processes connect to.
    #[arg(long = "queueAddr", env = "WHARF_QUEUE_ADDR", default_value = ":26259")]
    pub queue_addr: String,
    /// PEM certificate chain of the queue service (its hosts as they appear in --queueAddr of appliers).
    #[arg(long = "queueCertificate", env = "WHARF_QUEUE_CERTIFICATE")]
    pub queue_certificate: Option<PathBuf>,
    /// PEM private key of the queue service certificate.
    #[arg(long = "queuePrivateKey", env = "WHARF_QUEUE_PRIVATE_KEY")]
    pub queue_private_key: Option<PathBuf>,
    /// PEM CA bundle that applier client certificates must chain to (mutual TLS, required).
    #[arg(long = "queueClientCA", env = "WHARF_QUEUE_CLIENT_CA")]
    pub queue_client_ca: Option<PathBuf>,
    /// PEM certificate revocation list of that CA (`wharfctl certs revoke` writes it); a revoked
    /// applier or observer certificate is refused in the handshake. Read at start.
    #[arg(long = "queueClientCRL", env = "WHARF_QUEUE_CLIENT_CRL")]
    pub queue_client_crl: Option<PathBuf>,
    /// An applier silent this long loses its partitions to another.
    #[arg(long = "leaseTimeout", env = "WHARF_LEASE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub lease_timeout: Duration,
    /// Parse and validate every body, then drop it (no journal): for measuring the HTTP path.
    #[arg(long = "discard", env = "WHARF_DISCARD")]
    pub discard: bool,
    /// How often the JWT key and revocation tables are re-read (SIGHUP re-reads at once).
    #[arg(long = "jwtRefresh", env = "WHARF_JWT_REFRESH", default_value = "1m", value_parser = parse_duration)]
    pub jwt_refresh: Duration,
    /// Clock skew allowed when checking a token's exp, nbf and iat.
    #[arg(long = "jwtLeeway", env = "WHARF_JWT_LEEWAY", default_value = "0s", value_parser = parse_duration)]
    pub jwt_leeway: Duration,
    /// Open connections at most (CockroachDB opens up to changefeed.sink_io_workers per node).
    #[arg(long = "maxConnections", env = "WHARF_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Open connections from one client address; more from it are closed at once.
    #[arg(long = "maxConnectionsPerAddress", env = "WHARF_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Requests processed at once; more get 503 + Retry-After.
    #[arg(long = "maxRequests", env = "WHARF_MAX_REQUESTS", default_value_t = 256)]
    pub max_requests: usize,
    /// Request body bytes processed at once; a request waits up to 10 s for room, then gets 503 + Retry-After.
    #[arg(long = "inflightLimit", env = "WHARF_INFLIGHT_LIMIT", default_value = "16MiB", value_parser = parse_size)]
    pub inflight_limit: u64,
    /// Time a client gets to send its headers, and then its body (slow clients are cut off).
    #[arg(long = "readTimeout", env = "WHARF_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Health turns 503 when a partition's resolved rows wait this long with nothing applied, or
    /// rows arrive this long without a new resolved timestamp (0s turns it off).
    #[arg(long = "stallTimeout", visible_alias = "stallThreshold", env = "WHARF_STALL_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub stall_timeout: Duration,
    /// Row (`updated`) and resolved timestamps further ahead of this machine's clock are refused
    /// with 400: one from the far future would become a checkpoint no later row can pass.
    #[arg(long = "maxClockSkew", env = "WHARF_MAX_CLOCK_SKEW", default_value = "5m", value_parser = parse_duration)]
    pub max_clock_skew: Duration,
    /// Serve /_/varz, /_/livez, /_/readyz and /_/healthz on this plain-HTTP address too (HOST:PORT
    /// or :PORT); /_/varz then leaves the main port.
    #[arg(long = "metricsAddr", env = "WHARF_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object per line), on stderr.
    #[arg(long = "logFormat", env = "WHARF_LOG_FORMAT", default_value = "text")]
    pub log_format: wharf_base::logging::LogFormat,
    /// A payload column the target lacks: `halt` (400, until the target has it) or `ignore` (drop
    /// it before journaling); `db.schema=halt|ignore` for one schema. Repeat or separate by commas.
    #[arg(long = "onUnknownColumn", env = "WHARF_ON_UNKNOWN_COLUMN", value_delimiter = ',', default_value = "halt")]
    pub on_unknown_column: Vec<String>,
    /// A payload table the target lacks: `halt` (400) or `ignore` (drop its rows); per schema as
    /// for --onUnknownColumn.
    #[arg(long = "onUnknownTable", env = "WHARF_ON_UNKNOWN_TABLE", value_delimiter = ',', default_value = "halt")]
    pub on_unknown_table: Vec<String>,
    /// A row the target refuses for good (a CHECK, NOT NULL, unique or foreign-key violation, a
    /// value it cannot take): `halt` (the schema stops until the target or the data changes) or
    /// `quarantine` (the row and later versions of its key go to the staging schema's quarantine
    /// table, the rest applies; `wharfctl dlq` lists, replays and discards them).
    #[arg(long = "onApplyError", env = "WHARF_ON_APPLY_ERROR", default_value = "halt")]
    pub on_apply_error: wharf_base::OnApplyError,
    /// Under `--onApplyError quarantine`: once a schema's quarantine holds this many keys, a
    /// row the target refuses halts the partition instead (a target refusing every row should not
    /// move whole tables aside).
    #[arg(long = "quarantineMaxKeys", env = "WHARF_QUARANTINE_MAX_KEYS", default_value_t = 10_000)]
    pub quarantine_max_keys: usize,
    /// `schema`: a partition is a schema, applied in one transaction per resolved timestamp
    /// across its tables. `group`: each foreign-key-connected group of a schema's tables is
    /// leased, applied and checkpointed on its own (consistent within the group at resolved
    /// timestamps; groups may be at different ones). Switching either way is safe (decision 0011).
    #[arg(long = "partitionBy", env = "WHARF_PARTITION_BY", default_value = "schema")]
    pub partition_by: PartitionBy,
    /// How old a schema's cached catalog may get before it is read again (it is also read again
    /// at once when a payload names something it lacks).
    #[arg(long = "catalogRefresh", env = "WHARF_CATALOG_REFRESH", default_value = "30s", value_parser = parse_duration)]
    pub catalog_refresh: Duration,
    /// Time allowed for in-flight requests on shutdown, e.g. 30s.
    #[arg(long = "gracePeriod", env = "WHARF_GRACE_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub grace_period: Duration,
}

#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub bind_addr: SocketAddr,
    /// `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Testing only: every caller may write.
    pub disable_authentication: bool,
    pub jwt_refresh: Duration,
    pub jwt_leeway: Duration,
    pub limits: crate::server::Limits,
    pub target_conn: String,
    pub staging_schema: String,
    pub journal: wharf_queue::JournalConfig,
    pub appliers: usize,
    /// The QUIC queue service for separate appliers; `None` when only embedded ones run.
    pub queue: Option<wharf_queue::quic::ServerSettings>,
    pub lease_timeout: Duration,
    pub body_limit: u64,
    pub discard: bool,
    pub grace_period: Duration,
    pub stall_timeout: Duration,
    pub max_clock_skew: Duration,
    pub metrics_addr: Option<SocketAddr>,
    pub drift: DriftPolicies,
    pub catalog_refresh: Duration,
    pub partition_by: PartitionBy,
    /// `--onApplyError` and `--quarantineMaxKeys`, for the embedded appliers.
    pub on_apply_error: wharf_base::OnApplyError,
    pub quarantine_max_keys: usize,
}

/// `--partitionBy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartitionBy {
    #[default]
    Schema,
    Group,
}

impl std::str::FromStr for PartitionBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "schema" => Ok(PartitionBy::Schema),
            "group" => Ok(PartitionBy::Group),
            other => Err(format!("{other:?} is not a partitioning: schema or group")),
        }
    }
}

/// What to do with payload columns and tables the target lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriftPolicies {
    pub column: crate::drift::Policies,
    pub table: crate::drift::Policies,
}

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("--bindAddr {0:?} is not HOST:PORT or :PORT")]
    BindAddr(String),
    #[error("--targetConn: {0}")]
    TargetConn(String),
    #[error("--jwtRefresh must be at least 1s")]
    JwtRefresh,
    #[error("either both of --tlsCertificate and --tlsPrivateKey must be set, or neither")]
    TlsHalf,
    #[error("--tlsSelfSigned conflicts with --tlsCertificate/--tlsPrivateKey; choose one")]
    TlsBoth,
    #[error("--tlsClientCA needs TLS: add --tlsCertificate and --tlsPrivateKey (or --tlsSelfSigned)")]
    ClientCaWithoutTls,
    #[error("--bodyLimit must be between 1 byte and 1GiB (the largest record the journal holds)")]
    BodyLimit,
    #[error("--queueAddr {0:?} is not HOST:PORT or :PORT")]
    QueueAddr(String),
    #[error("the queue service needs all of --queueCertificate, --queuePrivateKey and --queueClientCA; missing: {0}")]
    QueueTlsHalf(String),
    #[error(
        "--appliers 0 leaves nobody to apply the journal: add --queueCertificate, --queuePrivateKey and --queueClientCA so separate wharf-applier processes can connect (`wharfctl certs create` makes them), or run embedded workers with --appliers N"
    )]
    NoAppliers,
    #[error("--leaseTimeout must be at least 1s")]
    LeaseTimeout,
    #[error("--metricsAddr {0:?} is not HOST:PORT or :PORT")]
    MetricsAddr(String),
    #[error("{0}")]
    Drift(String),
    #[error("--catalogRefresh must be at least 1s")]
    CatalogRefresh,
}

impl StartArgs {
    pub fn validate(self) -> Result<IngestConfig, ConfigError> {
        let bind_addr = parse_bind_addr(&self.bind_addr)?;
        wharf_targetdb::ConnInfo::parse(&self.target_conn).map_err(|e| ConfigError::TargetConn(e.to_string()))?;
        let source = match (self.tls_certificate, self.tls_private_key, self.tls_self_signed) {
            (Some(_), Some(_), true) | (Some(_), None, true) | (None, Some(_), true) => {
                return Err(ConfigError::TlsBoth);
            }
            (Some(certificate), Some(private_key), false) => Some(CertSource::Files { certificate, private_key }),
            (Some(_), None, false) | (None, Some(_), false) => return Err(ConfigError::TlsHalf),
            (None, None, true) => Some(CertSource::SelfSigned),
            (None, None, false) => None,
        };
        if source.is_none() && self.tls_client_ca.is_some() {
            return Err(ConfigError::ClientCaWithoutTls);
        }
        let tls = source.map(|source| TlsSettings { source, client_ca: self.tls_client_ca });
        if self.jwt_refresh < Duration::from_secs(1) {
            return Err(ConfigError::JwtRefresh);
        }
        if self.body_limit == 0 || self.body_limit > MAX_BODY_LIMIT {
            return Err(ConfigError::BodyLimit);
        }
        let queue =
            queue_settings(&self.queue_addr, self.queue_certificate, self.queue_private_key, self.queue_client_ca)?
                .map(|settings| wharf_queue::quic::ServerSettings { client_crl: self.queue_client_crl, ..settings });
        if queue.is_none() && self.appliers == 0 && !self.discard {
            return Err(ConfigError::NoAppliers);
        }
        if self.lease_timeout < Duration::from_secs(1) {
            return Err(ConfigError::LeaseTimeout);
        }
        let drift = DriftPolicies {
            column: crate::drift::Policies::parse(&self.on_unknown_column, "--onUnknownColumn")
                .map_err(ConfigError::Drift)?,
            table: crate::drift::Policies::parse(&self.on_unknown_table, "--onUnknownTable")
                .map_err(ConfigError::Drift)?,
        };
        if self.catalog_refresh < Duration::from_secs(1) {
            return Err(ConfigError::CatalogRefresh);
        }
        let mut journal = wharf_queue::JournalConfig::new(self.journal_dir);
        journal.byte_budget = self.journal_budget;
        journal.disk_reserve = self.disk_reserve;
        Ok(IngestConfig {
            bind_addr,
            tls,
            disable_authentication: self.disable_authentication,
            jwt_refresh: self.jwt_refresh,
            jwt_leeway: self.jwt_leeway,
            limits: crate::server::Limits {
                max_connections: self.max_connections.max(1),
                max_connections_per_address: self.max_connections_per_address.max(1),
                max_requests: self.max_requests.max(1),
                read_timeout: self.read_timeout,
                max_inflight_bytes: self.inflight_limit.max(1),
            },
            target_conn: self.target_conn,
            staging_schema: self.staging_schema,
            journal,
            appliers: self.appliers,
            queue,
            lease_timeout: self.lease_timeout,
            body_limit: self.body_limit,
            discard: self.discard,
            grace_period: self.grace_period,
            stall_timeout: self.stall_timeout,
            max_clock_skew: self.max_clock_skew,
            metrics_addr: match self.metrics_addr.as_deref() {
                Some(text) => Some(parse_bind_addr(text).map_err(|_| ConfigError::MetricsAddr(text.to_owned()))?),
                None => None,
            },
            drift,
            catalog_refresh: self.catalog_refresh,
            on_apply_error: self.on_apply_error,
            quarantine_max_keys: self.quarantine_max_keys,
            partition_by: self.partition_by,
        })
    }
}

/// The queue service's settings: all three TLS files, or none (no queue service).
fn queue_settings(
    addr: &str,
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<wharf_queue::quic::ServerSettings>, ConfigError> {
    let (certificate, private_key, ca) = match (certificate, private_key, client_ca) {
        (None, None, None) => return Ok(None),
        (Some(c), Some(k), Some(ca)) => (c, k, ca),
        (c, k, ca) => {
            let missing: Vec<&str> = [
                (c.is_none(), "--queueCertificate"),
                (k.is_none(), "--queuePrivateKey"),
                (ca.is_none(), "--queueClientCA"),
            ]
            .into_iter()
            .filter_map(|(absent, name)| absent.then_some(name))
            .collect();
            return Err(ConfigError::QueueTlsHalf(missing.join(", ")));
        }
    };
    let addr = parse_bind_addr(addr).map_err(|_| ConfigError::QueueAddr(addr.to_owned()))?;
    let tls = wharf_queue::quic::TlsFiles { certificate, private_key, ca };
    Ok(Some(wharf_queue::quic::ServerSettings { addr, tls, client_crl: None }))
}

fn parse_bind_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_owned() };
    full.parse().map_err(|_| ConfigError::BindAddr(text.to_owned()))
}

/// A duration like `500ms`, `30s`, `5m`, `1h30m` (humantime's syntax); a bare number is seconds.
/// Values that do not fit are refused, never wrapped.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = text.parse().map_err(|_| format!("{text:?} seconds is too long"))?;
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 500ms, 30s, 5m or 1h30m: {e}"))
}

/// A size like `64MiB`, `8 GiB`, `1GB` or a number of bytes (bytesize's syntax; KiB, MiB, GiB
/// are powers of 1024, KB, MB, GB of 1000). Values that do not fit in 64 bits are refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize =
        text.trim().parse().map_err(|e| format!("{text:?} is not a size like 64MiB, 8GiB or 1000000: {e}"))?;
    // bytesize saturates instead of failing; a saturated value is an overflow.
    if size.as_u64() == u64::MAX && text.trim() != u64::MAX.to_string() {
        return Err(format!("{text:?} is too large"));
    }
    Ok(size.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_accept_the_go_form() {
        assert_eq!(parse_bind_addr(":26258").unwrap().to_string(), "0.0.0.0:26258");
        assert_eq!(parse_bind_addr("127.0.0.1:1").unwrap().to_string(), "127.0.0.1:1");
        assert!(parse_bind_addr("nope").is_err());
    }

    fn args(extra: &[&str]) -> Result<IngestConfig, ConfigError> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            start: StartArgs,
        }
        let mut argv = vec!["x", "--targetConn", "postgresql://h/db", "--disableAuthentication"];
        argv.extend_from_slice(extra);
        <Cli as clap::Parser>::parse_from(argv).start.validate()
    }

    #[test]
    fn a_body_limit_the_journal_cannot_hold_is_refused() {
        assert_eq!(args(&["--bodyLimit", "1GiB"]).unwrap().body_limit, 1 << 30);
        assert_eq!(args(&["--bodyLimit", "2GiB"]).err(), Some(ConfigError::BodyLimit));
        assert_eq!(args(&["--bodyLimit", "0"]).err(), Some(ConfigError::BodyLimit));
    }

    #[test]
    fn tls_flags_come_in_valid_combinations() {
        assert_eq!(args(&["--tlsCertificate", "c.pem"]).err(), Some(ConfigError::TlsHalf));
        assert_eq!(args(&["--tlsPrivateKey", "k.pem"]).err(), Some(ConfigError::TlsHalf));
        assert_eq!(
            args(&["--tlsSelfSigned", "--tlsCertificate", "c.pem", "--tlsPrivateKey", "k.pem"]).err(),
            Some(ConfigError::TlsBoth)
        );
        assert_eq!(args(&["--tlsClientCA", "ca.pem"]).err(), Some(ConfigError::ClientCaWithoutTls));
        assert_eq!(args(&["--tlsSelfSigned"]).unwrap().tls.unwrap().source, CertSource::SelfSigned);
        assert!(args(&[]).unwrap().tls.is_none());
    }

    #[test]
    fn the_queue_service_needs_all_its_tls_files_and_someone_must_apply() {
        assert_eq!(
            args(&["--queueCertificate", "q.crt"]).err(),
            Some(ConfigError::QueueTlsHalf("--queuePrivateKey, --queueClientCA".into()))
        );
        assert_eq!(args(&["--appliers", "0"]).err(), Some(ConfigError::NoAppliers));
        let queue = ["--queueCertificate", "q.crt", "--queuePrivateKey", "q.key", "--queueClientCA", "ca.crt"];
        let config = args(&[&["--appliers", "0"][..], &queue[..]].concat()).unwrap();
        assert_eq!(config.queue.unwrap().addr.to_string(), "0.0.0.0:26259");
        assert!(args(&["--appliers", "0", "--discard"]).is_ok());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2 days"), Ok(Duration::from_secs(2 * 86_400)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("18446744073709551h").is_err(), "overflow is refused, not wrapped");
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_take_units_and_refuse_overflow() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("8 GiB"), Ok(8 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("20000000EiB").is_err());
        assert!(parse_size("lots").is_err());
        // The defaults in --help are the constants the code documents.
        assert_eq!(parse_size("8GiB"), Ok(wharf_queue::journal::DEFAULT_BYTE_BUDGET));
        assert_eq!(parse_size("1GiB"), Ok(wharf_queue::journal::DEFAULT_DISK_RESERVE));
        assert_eq!(parse_size("64MiB"), Ok(DEFAULT_BODY_LIMIT));
        assert_eq!(parse_size("16MiB"), Ok(crate::inflight::DEFAULT_INFLIGHT_BYTES));
    }
}
