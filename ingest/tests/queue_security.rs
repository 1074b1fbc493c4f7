//! What a client holding a certificate of the queue CA (every applier host, every `wharfctl
//! status` user) can do to the queue service, over real QUIC against a real `wharf-ingest`: only
//! what its leases allow. A report from anyone else changes nothing, and rows the changefeed was
//! answered 200 for reach the target.

mod common;

use std::time::Duration;

use common::{Applier, Ingest, QueuePki, Target, free_port, strs, wait_for};
use wharf_queue::quic::{ClientSettings, QuicClient, TlsFiles};
use wharf_queue::{ChunkLimits, Grant, Hlc, Partition, QueueClient, Release, WindowReader};

const T0: u64 = 1_732_615_200_000_000_000;

fn hlc(wall: u64) -> String {
    format!("{wall}.0000000000")
}

/// `count` rows of `public.sec_kv` from key `first`, all at `wall`.
fn rows(first: u64, count: u64, wall: u64) -> String {
    let messages: Vec<String> = (first..first + count)
        .map(|k| {
            format!(r#"{{"after":{{"k":{k},"v":"v{k}"}},"key":[{k}],"topic":"sec_kv","updated":"{}"}}"#, hlc(wall))
        })
        .collect();
    format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len())
}

struct Setup {
    target: Target,
    pki: QueuePki,
    udp: u16,
    journal: tempfile::TempDir,
    logs: tempfile::TempDir,
    ingest: Ingest,
}

impl Setup {
    fn start() -> Setup {
        let target = Target::start();
        target.execute("app", "CREATE TABLE public.sec_kv (k bigint PRIMARY KEY, v text NOT NULL)");
        let pki = QueuePki::new();
        let udp = free_port().unwrap();
        let journal = tempfile::tempdir().unwrap();
        let ingest = Ingest::start(&target.url(), journal.path(), &strs(&pki.ingest_args(udp, "10s")));
        Setup { target, pki, udp, journal, logs: tempfile::tempdir().unwrap(), ingest }
    }

    fn restart(&mut self) {
        self.ingest.kill();
        self.ingest =
            Ingest::start(&self.target.url(), self.journal.path(), &strs(&self.pki.ingest_args(self.udp, "10s")));
    }

    fn post(&self, body: &str) {
        let (status, text) = self.ingest.post("/app/public", body.as_bytes());
        assert_eq!(status, 200, "{text}");
    }

    /// A client with the applier certificate, declaring `workers` workers (0: an observer).
    fn client(&self, workers: u32) -> QuicClient {
        let tls = TlsFiles {
            certificate: self.pki.path("applier.crt").into(),
            private_key: self.pki.path("applier.key").into(),
            ca: self.pki.path("ca.crt").into(),
        };
        let addr = format!("localhost:{}", self.udp);
        QuicClient::new(ClientSettings { addr, tls, name: "attacker".into(), workers }).unwrap()
    }

    fn applier(&self) -> Applier {
        Applier::start(
            "applier",
            &format!("127.0.0.1:{}", self.udp),
            &self.target.url(),
            &self.pki,
            1,
            self.logs.path(),
        )
    }

    fn count(&self) -> String {
        self.target.query("SELECT count(*)::text FROM public.sec_kv")[0][0].clone().unwrap()
    }
}

fn grant(partition: Partition, epoch: u64) -> Grant {
    Grant { partition, epoch, upto: Hlc::ZERO, tables: Vec::new() }
}

fn app_public() -> Partition {
    Partition::new("app", "public")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Sends what `attack` sends from an observer and from a session without a lease, then checks
/// that the rows acknowledged before and after reach the target and status shows no harm.
fn attacked_without_a_lease(attack: impl AsyncFn(&QuicClient, u64)) {
    let setup = Setup::start();
    let rt = runtime();
    setup.post(&rows(0, 100, T0 + 1_000));
    setup.post(&format!(r#"{{"resolved":"{}"}}"#, hlc(T0 + 2_000)));
    rt.block_on(async {
        for workers in [0, 1] {
            let client = setup.client(workers);
            client.connect().await.unwrap();
            for epoch in [0, 1, 2] {
                attack(&client, epoch).await;
            }
            let status = client.status().await.unwrap();
            let lease = status.partitions.iter().find(|p| p.lease.partition == "app.public").expect("the partition");
            assert!(lease.lease.epoch < 10, "{lease:?}");
            assert_eq!(lease.lease.paused, None);
            assert_eq!(lease.applied, None, "nothing was applied");
        }
    });
    setup.post(&rows(100, 100, T0 + 3_000));
    setup.post(&format!(r#"{{"resolved":"{}"}}"#, hlc(T0 + 4_000)));
    let _applier = setup.applier();
    wait_for("the checkpoint", Duration::from_secs(60), || setup.target.checkpoint() == Some(hlc(T0 + 4_000)));
    assert_eq!(setup.count(), "200");
}

#[test]
fn a_commit_report_from_a_client_without_the_lease_loses_no_row() {
    attacked_without_a_lease(async |client, epoch| {
        let far = Hlc::new(i64::MAX as u64, 0);
        let kept = client.committed(0, &grant(app_public(), epoch), far, 0).await;
        assert!(matches!(kept, Ok(false)), "{kept:?}");
    });
}

#[test]
fn a_fence_or_pause_from_a_client_without_the_lease_holds_nothing_up() {
    attacked_without_a_lease(async |client, epoch| {
        for target_epoch in [1 << 63, u64::MAX] {
            let fenced = Release::Fenced { target_epoch };
            client.release(0, &grant(app_public(), epoch), fenced).await.unwrap();
        }
        let paused = Release::Paused { pause: Duration::from_secs(u64::MAX >> 20), reason: "mine".into() };
        client.release(0, &grant(app_public(), epoch), paused).await.unwrap();
    });
}

#[test]
fn an_oversized_name_on_the_wire_never_reaches_the_journal() {
    let mut setup = Setup::start();
    let rt = runtime();
    setup.post(&rows(0, 10, T0 + 1_000));
    rt.block_on(async {
        let client = setup.client(1);
        client.connect().await.unwrap();
        let long = Partition::new("x".repeat(70_000), "s");
        assert!(client.committed(0, &grant(long.clone(), 1), Hlc::new(1, 0), 0).await.is_err());
        let fenced = Release::Fenced { target_epoch: 3 };
        let _ = client.release(0, &grant(long, 1), fenced).await;
    });
    setup.restart();
    setup.post(&format!(r#"{{"resolved":"{}"}}"#, hlc(T0 + 2_000)));
    let _applier = setup.applier();
    wait_for("the checkpoint", Duration::from_secs(60), || setup.target.checkpoint() == Some(hlc(T0 + 2_000)));
    assert_eq!(setup.count(), "10");
}

#[test]
fn a_session_declaring_too_many_workers_is_refused_and_undeclared_workers_get_nothing() {
    let setup = Setup::start();
    let rt = runtime();
    setup.post(&rows(0, 10, T0 + 1_000));
    setup.post(&format!(r#"{{"resolved":"{}"}}"#, hlc(T0 + 2_000)));
    rt.block_on(async {
        let greedy = setup.client(u32::MAX);
        let refused = greedy.connect().await.unwrap_err().to_string();
        assert!(refused.contains("at most 1024 workers"), "{refused}");
        let client = setup.client(1);
        client.connect().await.unwrap();
        for worker in 1..20 {
            let got = client.acquire(worker, Duration::from_millis(10)).await.unwrap();
            assert_eq!(got, None, "worker {worker} was never declared");
        }
        let status = setup.client(0).status().await.unwrap();
        assert!(status.partitions.iter().all(|p| p.lease.holder.is_none()), "{status:?}");
    });
}

#[test]
fn a_holder_reads_no_row_above_the_resolved_timestamp() {
    let setup = Setup::start();
    let rt = runtime();
    setup.post(&rows(0, 10, T0 + 1_000));
    setup.post(&format!(r#"{{"resolved":"{}"}}"#, hlc(T0 + 2_000)));
    setup.post(&rows(10, 10, T0 + 3_000));
    rt.block_on(async {
        let client = setup.client(1);
        client.connect().await.unwrap();
        let granted = client.acquire(0, Duration::from_secs(5)).await.unwrap().expect("a grant");
        assert_eq!(granted.upto, Hlc::new(T0 + 2_000, 0));
        for upto in [Hlc::new(T0 + 5_000, 0), Hlc::new(u64::MAX, u32::MAX)] {
            let asked = Grant { upto, ..granted.clone() };
            let mut window = client.open(0, &asked, Hlc::ZERO, vec!["sec_kv".into()]).await.unwrap();
            let mut read = 0;
            loop {
                let chunk = window.next_chunk(ChunkLimits { max_rows: 1000, max_bytes: 1 << 20 }).await.unwrap();
                assert!(chunk.rows.to_rows().iter().all(|r| r.hlc <= Hlc::new(T0 + 2_000, 0)), "a row above resolved");
                read += chunk.rows.len();
                if chunk.last {
                    break;
                }
            }
            assert_eq!(read, 10, "asked up to {upto}");
        }
    });
}

/// A raw QUIC connection with the applier certificate, for what no well-behaved client sends.
async fn raw_connection(setup: &Setup, certificate: &str) -> Result<quinn::Connection, String> {
    let tls = TlsFiles {
        certificate: setup.pki.path(&format!("{certificate}.crt")).into(),
        private_key: setup.pki.path(&format!("{certificate}.key")).into(),
        ca: setup.pki.path("ca.crt").into(),
    };
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(wharf_queue::quic::tls::client_config(&tls).unwrap());
    let addr = format!("127.0.0.1:{}", setup.udp).parse().unwrap();
    endpoint.connect(addr, "localhost").unwrap().await.map_err(|e| e.to_string())
}

async fn hello(conn: &quinn::Connection) {
    use wharf_queue::wire::{Message, PROTOCOL_VERSION, encode};
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode(&Message::Hello { version: PROTOCOL_VERSION, name: "raw".into(), workers: 1 }))
        .await
        .unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 20).await.unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn oversized_requests_are_refused_before_the_service_buffers_them() {
    let setup = Setup::start();
    let rt = runtime();
    let before = rss_kib(setup.ingest.child.id());
    rt.block_on(async {
        let conn = raw_connection(&setup, "applier").await.unwrap();
        hello(&conn).await;
        // As many streams as the session may open, each sending a 200 MiB frame's length and
        // then more than the stream's receive window: the service stops each stream. Together
        // they stay inside the client's own send window (10 MB): a quinn client whose write is
        // held by that window as well as by the stream's is not woken when the stream is
        // stopped, which would hang this client, not the service.
        let mut streams = Vec::new();
        for _ in 0..8 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            streams.push(tokio::spawn(async move {
                let _keep = recv;
                send.write_all(&(200u32 << 20).to_be_bytes()).await.unwrap();
                let data = vec![7u8; 2 << 20];
                send.write_all(&data).await
            }));
        }
        for stream in streams {
            let sent = tokio::time::timeout(Duration::from_secs(30), stream).await.expect("refused in time").unwrap();
            assert!(sent.is_err(), "a 200 MiB request frame was read");
        }
        // The connection and the service still answer.
        let client = setup.client(0);
        client.status().await.unwrap();
    });
    let grown = rss_kib(setup.ingest.child.id()).saturating_sub(before);
    assert!(grown < 32 << 10, "the ingest grew by {grown} KiB");
}

#[test]
fn a_connection_that_never_says_hello_is_closed() {
    let target = Target::start();
    let pki = QueuePki::new();
    let udp = free_port().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let _ingest = Ingest::start(&target.url(), journal.path(), &strs(&pki.ingest_args(udp, "2s")));
    let setup_like = |certificate: &str| TlsFiles {
        certificate: pki.path(&format!("{certificate}.crt")).into(),
        private_key: pki.path(&format!("{certificate}.key")).into(),
        ca: pki.path("ca.crt").into(),
    };
    let rt = runtime();
    rt.block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(wharf_queue::quic::tls::client_config(&setup_like("applier")).unwrap());
        let addr = format!("127.0.0.1:{udp}").parse().unwrap();
        // The client keeps the connection alive; only the service can end it.
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(20), conn.closed()).await;
        assert!(closed.is_ok(), "a silent connection was kept");
    });
}

#[test]
fn refused_handshakes_are_logged_at_most_once_per_ten_seconds() {
    let target = Target::start();
    target.execute("app", "CREATE TABLE public.sec_kv (k bigint PRIMARY KEY, v text NOT NULL)");
    let pki = QueuePki::new();
    let udp = free_port().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("ingest.log");
    let ingest = Ingest::start_logged(&target.url(), journal.path(), &strs(&pki.ingest_args(udp, "10s")), &log);
    let other = QueuePki::new();
    std::fs::copy(other.path("applier.crt"), pki.path("intruder.crt")).unwrap();
    std::fs::copy(other.path("applier.key"), pki.path("intruder.key")).unwrap();
    let setup = Setup { target, pki, udp, journal, logs, ingest };
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..30 {
            // TLS 1.3: the client may finish its side before the server refuses its certificate.
            if let Ok(conn) = raw_connection(&setup, "intruder").await {
                let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
                assert!(closed.is_ok(), "another CA's certificate got in");
            }
        }
    });
    wait_for("the refusal logged", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("refused in the handshake")
    });
    let lines = std::fs::read_to_string(&log).unwrap().matches("refused in the handshake").count();
    assert!(lines <= 2, "{lines} log lines for 30 refused handshakes");
}

#[test]
fn a_rejected_rows_values_reach_neither_status_nor_logs() {
    let setup = Setup::start();
    setup.target.execute(
        "app",
        "CREATE TABLE public.sec_checked (k bigint PRIMARY KEY, v text NOT NULL CHECK (v <> 'secret-value-123'))",
    );
    let message = format!(
        r#"{{"after":{{"k":7,"v":"secret-value-123"}},"key":[7],"topic":"sec_checked","updated":"{}"}}"#,
        hlc(T0 + 1_000)
    );
    setup.post(&format!(r#"{{"payload":[{message}],"length":1}}"#));
    setup.post(&format!(r#"{{"resolved":"{}"}}"#, hlc(T0 + 2_000)));
    let applier = setup.applier();
    let rt = runtime();
    let observer = setup.client(0);
    let paused = rt.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = observer.status().await.unwrap();
            let lease = status.partitions.into_iter().find(|p| p.lease.partition == "app.public");
            if let Some(reason) = lease.and_then(|l| l.lease.paused) {
                return reason;
            }
            assert!(std::time::Instant::now() < deadline, "the partition was never paused");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(paused.contains("check constraint"), "{paused}");
    assert!(!paused.contains("secret-value-123"), "a row value in status: {paused}");
    assert!(!applier.log_text().contains("secret-value-123"), "a row value in the applier's log");
}
