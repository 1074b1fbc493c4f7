//! Real wharf processes for `bench`: a `wharf-ingest` with its queue service and `wharf-applier`
//! processes (the binaries beside this `wharfctl`), with their peak memory read from /proc.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::http::Sender;

/// A binary built beside this `wharfctl`.
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    anyhow::ensure!(path.exists(), "{} not found; build it: cargo build --release -p {name}", path.display());
    Ok(path)
}

/// Certificates for the queue service on 127.0.0.1 and its appliers.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> anyhow::Result<Certs> {
        let dir = tempfile::tempdir()?;
        crate::certs::write_set(dir.path(), &["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        Ok(Certs { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn server(&self, addr: std::net::SocketAddr) -> wharf_queue::quic::ServerSettings {
        let tls = wharf_queue::quic::TlsFiles {
            certificate: self.path("queue.crt"),
            private_key: self.path("queue.key"),
            ca: self.path("ca.crt"),
        };
        wharf_queue::quic::ServerSettings { addr, tls, client_crl: None }
    }
}

pub use wharf_testkit::Process;

/// What a bench phase with real processes starts from: a fresh schema `schema` holding one table
/// `table (id bigint PRIMARY KEY, payload text)`, and a `wharf-ingest` process on a new journal.
pub struct BenchStack {
    // Declared first so it is dropped (killed) before its journal directory is removed.
    pub ingest: IngestProcess,
    pub client: tokio_postgres::Client,
    pub certs: Certs,
    pub journal: tempfile::TempDir,
}

impl BenchStack {
    pub async fn start(url: &str, schema: &str, table: &str) -> anyhow::Result<BenchStack> {
        let client = wharf_targetdb::connect(url).await?;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.{table} (id bigint PRIMARY KEY, payload text)"
            ))
            .await?;
        let certs = Certs::new()?;
        let journal = tempfile::tempdir()?;
        let ingest = IngestProcess::start(url, journal.path(), &certs).await?;
        Ok(BenchStack { ingest, client, certs, journal })
    }
}

/// A `wharf-ingest` process with no embedded applier and its queue service on.
pub struct IngestProcess {
    pub process: Process,
    pub port: u16,
    pub queue_addr: String,
}

impl IngestProcess {
    pub async fn start(target_url: &str, journal: &Path, certs: &Certs) -> anyhow::Result<IngestProcess> {
        Self::start_with(target_url, journal, certs, &[]).await
    }

    /// Like [`IngestProcess::start`] with `flags` after the usual ones.
    pub async fn start_with(
        target_url: &str,
        journal: &Path,
        certs: &Certs,
        flags: &[&str],
    ) -> anyhow::Result<IngestProcess> {
        let port = wharf_testkit::free_port()?;
        let udp = wharf_testkit::free_port()?;
        let queue_addr = format!("127.0.0.1:{udp}");
        let process = Process::spawn(
            Command::new(sibling("wharf-ingest")?)
                .args(["start", "--disableAuthentication", "--appliers", "0"])
                .args(["--bindAddr", &format!("127.0.0.1:{port}"), "--targetConn", target_url])
                .arg("--journalDir")
                .arg(journal)
                .args(["--queueAddr", &queue_addr])
                .arg("--queueCertificate")
                .arg(certs.path("queue.crt"))
                .arg("--queuePrivateKey")
                .arg(certs.path("queue.key"))
                .arg("--queueClientCA")
                .arg(certs.path("ca.crt"))
                .args(flags)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null()),
        )
        .context("starting wharf-ingest")?;
        let ingest = IngestProcess { process, port, queue_addr };
        let health = Sender::new(format!("http://127.0.0.1:{port}/x/y"));
        crate::sim::feed::wait_until(Duration::from_secs(30), || {
            let health = health.clone();
            async move { matches!(health.get("/_/healthz").await, Ok(200)) }
        })
        .await
        .context("wharf-ingest did not become healthy")?;
        Ok(ingest)
    }

    pub fn base_url(&self, db: &str, schema: &str) -> String {
        format!("http://127.0.0.1:{}/{db}/{schema}", self.port)
    }
}

/// Starts a `wharf-applier` process with `workers` workers against `queue_addr`.
pub fn start_applier(
    queue_addr: &str,
    target_url: &str,
    certs: &Certs,
    workers: usize,
    name: &str,
) -> anyhow::Result<Process> {
    let process = Process::spawn(
        Command::new(sibling("wharf-applier")?)
            .args(["start", "--queueAddr", queue_addr, "--targetConn", target_url, "--name", name])
            .args(["--workers", &workers.to_string()])
            .arg("--queueCA")
            .arg(certs.path("ca.crt"))
            .arg("--queueCertificate")
            .arg(certs.path("applier.crt"))
            .arg("--queuePrivateKey")
            .arg(certs.path("applier.key"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    )
    .context("starting wharf-applier")?;
    Ok(process)
}
