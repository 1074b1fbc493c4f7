//! Helpers shared by the black-box tests: a real PostgreSQL, the real `wharf-ingest` binary on a
//! real port, and a minimal HTTP/1.1 client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wharf_testkit::Process;

pub use wharf_testkit::{LocalPg, free_port};

/// The fixtures in `testdata/fixtures`: the shared set (scenarios A to D, copied unchanged) and
/// the changefeed-contract scenarios E, Q and N written by `gen_contract_fixtures.py`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures")
}

// Compiled into every test crate; not all of them wait for anything.
#[allow(unused_imports)]
pub use wharf_testkit::{wait_for, wait_until};

/// Certificates for the queue service and its appliers, made with a CA of their own: `ca.crt`,
/// `queue.crt`/`queue.key` (localhost, 127.0.0.1), `applier.crt`/`applier.key`.
pub struct QueuePki {
    pub dir: tempfile::TempDir,
}

impl QueuePki {
    pub fn new() -> QueuePki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        for (name, hosts) in [("queue", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]), ("applier", vec![])] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(hosts).unwrap().signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        QueuePki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// `wharf-ingest` flags: no embedded appliers, the queue service on `127.0.0.1:udp_port`.
    pub fn ingest_args(&self, udp_port: u16, lease_timeout: &str) -> Vec<String> {
        let mut args: Vec<String> = ["--appliers", "0", "--queueAddr"].map(String::from).to_vec();
        args.push(format!("127.0.0.1:{udp_port}"));
        for (flag, file) in
            [("--queueCertificate", "queue.crt"), ("--queuePrivateKey", "queue.key"), ("--queueClientCA", "ca.crt")]
        {
            args.push(flag.to_owned());
            args.push(self.path(file));
        }
        args.extend(["--leaseTimeout".to_owned(), lease_timeout.to_owned()]);
        args
    }
}

/// Flags for an ingest with no applier at all (the journal only fills): the queue service is on,
/// nobody connects to it.
pub fn journal_only(pki: &QueuePki) -> Vec<String> {
    pki.ingest_args(free_port().unwrap(), "10s")
}

/// A directory for process logs; `WHARF_KEEP_LOGS=1` keeps it for a look after a failure.
pub fn logs_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(std::env::var_os("WHARF_KEEP_LOGS").is_some())
        .tempdir()
        .unwrap()
}

/// `&[String]` as `&[&str]`.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A running `wharf-applier start` process, stderr in a log file.
pub struct Applier {
    pub child: Process,
    pub log: PathBuf,
    /// Where its `/_/varz` is served (`--metricsAddr`, given through `WHARF_METRICS_ADDR`).
    pub metrics_port: u16,
}

impl Applier {
    /// Starts an applier named `name` (also its `application_name` in the target) against the
    /// queue service at `queue_addr`.
    pub fn start(name: &str, queue_addr: &str, target_url: &str, pki: &QueuePki, workers: u32, logs: &Path) -> Applier {
        Self::start_with(name, queue_addr, target_url, pki, "applier", workers, logs)
    }

    /// Like [`Applier::start`] with `flags` after the usual ones.
    pub fn start_flags(
        name: &str,
        queue_addr: &str,
        (target_url, pki, logs): (&str, &QueuePki, &Path),
        flags: &[&str],
    ) -> Applier {
        Self::spawn(name, queue_addr, (target_url, pki, "applier"), 1, logs, flags)
    }

    /// Like [`Applier::start`] with the client certificate `{cert}.crt`/`{cert}.key` from `pki`.
    pub fn start_with(
        name: &str,
        queue_addr: &str,
        target_url: &str,
        pki: &QueuePki,
        cert: &str,
        workers: u32,
        logs: &Path,
    ) -> Applier {
        Self::spawn(name, queue_addr, (target_url, pki, cert), workers, logs, &[])
    }

    fn spawn(
        name: &str,
        queue_addr: &str,
        (target_url, pki, cert): (&str, &QueuePki, &str),
        workers: u32,
        logs: &Path,
        flags: &[&str],
    ) -> Applier {
        let log = logs.join(format!("{name}.log"));
        let bin = Path::new(env!("CARGO_BIN_EXE_wharf-ingest")).with_file_name("wharf-applier");
        assert!(
            bin.exists(),
            "{} is not built; `cargo test --workspace` builds it (or cargo build -p wharf-applier)",
            bin.display()
        );
        let separator = if target_url.contains('?') { '&' } else { '?' };
        let metrics_port = free_port().unwrap();
        let child = Process::spawn(
            Command::new(bin)
                .args(["start", "--queueAddr", queue_addr, "--name", name, "--workers", &workers.to_string()])
                .arg("--targetConn")
                .arg(format!("{target_url}{separator}application_name={name}"))
                .args(["--queueCA", &pki.path("ca.crt")])
                .args(["--queueCertificate", &pki.path(&format!("{cert}.crt"))])
                .args(["--queuePrivateKey", &pki.path(&format!("{cert}.key"))])
                .args(flags)
                .env("RUST_LOG", "info")
                .env("WHARF_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).unwrap())),
        )
        .expect("spawn wharf-applier");
        Applier { child, log, metrics_port }
    }

    /// The sum of every sample of `name` in its metrics.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let (status, text) = request(self.metrics_port, "GET", "/_/varz", b"").expect("applier metrics");
        assert_eq!(status, 200, "{text}");
        metric_sum(&text, name)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        self.child.signal(signal).unwrap();
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
    }
}

/// An open transaction holding a `mode` lock (`ACCESS EXCLUSIVE`, `EXCLUSIVE`, …) on `table`;
/// released on drop.
pub fn lock_table(target: &Target, table: &str, mode: &str) -> Blocker {
    let url = target.url();
    let sql = format!("BEGIN; LOCK TABLE {table} IN {mode} MODE");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = wharf_targetdb::connect(&url).await.unwrap();
            client.batch_execute(&sql).await.unwrap();
            locked_tx.send(()).unwrap();
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
            client.batch_execute("COMMIT").await.unwrap();
        });
    });
    locked_rx.recv().unwrap();
    Blocker { release: Some(tx), thread: Some(thread) }
}

pub struct Blocker {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Blocker {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A PostgreSQL cluster with database `app` holding the fixtures' schema (PostGIS included).
pub struct Target {
    pub pg: LocalPg,
    pub rt: tokio::runtime::Runtime,
}

impl Target {
    pub fn start() -> Target {
        let pg = LocalPg::start().expect("start PostgreSQL");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let t = Target { pg, rt };
        t.execute("postgres", "CREATE DATABASE app");
        t.execute("app", "CREATE EXTENSION postgis");
        let schema = std::fs::read_to_string(fixtures_dir().join("schema.postgres.sql")).unwrap();
        t.execute("app", &schema);
        t
    }

    pub fn url(&self) -> String {
        self.pg.url("app")
    }

    pub fn execute(&self, db: &str, sql: &str) {
        let url = self.pg.url(db);
        self.rt.block_on(async {
            let client = wharf_targetdb::connect(&url).await.expect("connect");
            client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        });
    }

    /// Every row of `sql` as text columns (NULL as None), with the session in UTC.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let url = self.url();
        self.rt.block_on(async {
            let client = wharf_targetdb::connect(&url).await.expect("connect");
            client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
            let rows = client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            rows.iter().map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()).collect()
        })
    }

    /// The applied checkpoint of `app.public`, if any.
    pub fn checkpoint(&self) -> Option<String> {
        if self.query("SELECT to_regclass('_replicator.checkpoints')::text") == [[None]] {
            return None;
        }
        let rows = self.query("SELECT resolved FROM _replicator.checkpoints WHERE partition = 'app.public'");
        rows.first().and_then(|r| r[0].clone())
    }
}

/// A running `wharf-ingest start` process.
pub struct Ingest {
    pub child: Process,
    /// Where stderr goes when captured (see [`Ingest::start_logged`]).
    pub log: Option<PathBuf>,
    pub port: u16,
    pub journal: PathBuf,
}

impl Ingest {
    pub fn start(target_url: &str, journal: &Path, extra: &[&str]) -> Ingest {
        Self::start_on(free_port().unwrap(), target_url, journal, extra)
    }

    pub fn start_on(port: u16, target_url: &str, journal: &Path, extra: &[&str]) -> Ingest {
        Self::start_checked(port, target_url, journal, extra, |port| {
            request(port, "GET", "/_/healthz", b"").is_ok_and(|(status, _)| status == 200)
        })
    }

    /// Starts on `port` and waits until `healthy(port)` holds (e.g. a health check over TLS).
    pub fn start_checked(
        port: u16,
        target_url: &str,
        journal: &Path,
        extra: &[&str],
        healthy: impl Fn(u16) -> bool,
    ) -> Ingest {
        let mut args = vec!["--disableAuthentication"];
        args.extend_from_slice(extra);
        Self::spawn(port, target_url, journal, &args, None, healthy)
    }

    /// Starts on `port` without authentication, stderr written to `log`.
    pub fn start_logged_on(port: u16, target_url: &str, journal: &Path, extra: &[&str], log: &Path) -> Ingest {
        let mut args = vec!["--disableAuthentication"];
        args.extend_from_slice(extra);
        Self::spawn(port, target_url, journal, &args, Some(log), |port| {
            request(port, "GET", "/_/healthz", b"").is_ok_and(|(status, _)| status == 200)
        })
    }

    /// Starts with JWT authentication on, stderr written to `log`.
    pub fn start_logged(target_url: &str, journal: &Path, extra: &[&str], log: &Path) -> Ingest {
        let port = free_port().unwrap();
        Self::spawn(port, target_url, journal, extra, Some(log), |port| {
            request(port, "GET", "/_/healthz", b"").is_ok_and(|(status, _)| status == 200)
        })
    }

    fn spawn(
        port: u16,
        target_url: &str,
        journal: &Path,
        extra: &[&str],
        log: Option<&Path>,
        healthy: impl Fn(u16) -> bool,
    ) -> Ingest {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = Process::spawn(
            Command::new(env!("CARGO_BIN_EXE_wharf-ingest"))
                .args(["start", "--bindAddr", &format!("127.0.0.1:{port}"), "--targetConn", target_url])
                .arg("--journalDir")
                .arg(journal)
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(stderr),
        )
        .expect("spawn wharf-ingest");
        let mut ingest = Ingest { child, port, journal: journal.to_owned(), log: log.map(Path::to_owned) };
        ingest.wait_healthy(healthy);
        ingest
    }

    /// Waits until `healthy(port)` holds; fails at once, with the log, if the process exits first.
    fn wait_healthy(&mut self, healthy: impl Fn(u16) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !healthy(self.port) {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
                panic!("wharf-ingest exited with {status} before it was healthy\n{log}");
            }
            assert!(std::time::Instant::now() < deadline, "wharf-ingest not healthy after 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn post(&self, path: &str, body: &[u8]) -> (u16, String) {
        request(self.port, "POST", path, body).expect("request")
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
    }

    /// Sends SIGHUP (re-read JWT keys).
    pub fn hangup(&self) {
        self.child.signal("HUP").unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.child.terminate().unwrap()
    }
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    request_with(port, method, path, &[], body)
}

/// Like [`request`], with extra headers.
pub fn request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    send(stream, method, path, headers, body)
}

/// One HTTP/1.1 request over an established stream (plain or TLS); returns status and body.
pub fn request_on(stream: impl Read + Write, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    send(stream, method, path, &[], body)
}

fn send(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The sum of every sample of `name` (any labels) in a Prometheus exposition.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .map(|l| l.rsplit_once(' ').expect("a value").1.parse::<f64>().expect("a number"))
        .sum()
}
