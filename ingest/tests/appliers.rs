//! Separate `wharf-applier` processes over the QUIC queue service: real processes, real QUIC with
//! mutual TLS, a real PostgreSQL, real signals. Every test ends with the target equal to the
//! model and an audit trail (a trigger on every target table) showing no row version applied
//! twice.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Applier, Ingest, QueuePki, Target, free_port, lock_table, strs, wait_for};

const PARTITIONS: usize = 8;
const T0: u64 = 1_732_615_200_000_000_000;
const LONG: Duration = Duration::from_secs(120);

/// Per partition `s{n}`: `parent (id, v)` and `child (id, parent_id → parent, v)`; an audit row
/// for every row version a trigger sees, with the applier's `application_name`.
fn prepare(target: &Target) {
    let mut sql = String::from(
        "CREATE TABLE public.audit (n bigserial, schema text, tbl text, op text, row_id bigint, v text, app text);
         CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF TG_OP = 'DELETE' THEN
             INSERT INTO public.audit (schema, tbl, op, row_id, v, app)
               VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, OLD.id, OLD.v, current_setting('application_name'));
           ELSE
             INSERT INTO public.audit (schema, tbl, op, row_id, v, app)
               VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, NEW.id, NEW.v, current_setting('application_name'));
           END IF;
           RETURN NULL;
         END $$;",
    );
    for p in 0..PARTITIONS {
        sql.push_str(&format!(
            "CREATE SCHEMA s{p};
             CREATE TABLE s{p}.parent (id bigint PRIMARY KEY, v text NOT NULL);
             CREATE TABLE s{p}.child (id bigint PRIMARY KEY, parent_id bigint NOT NULL REFERENCES s{p}.parent (id), v text NOT NULL);
             CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON s{p}.parent FOR EACH ROW EXECUTE FUNCTION public.audit_row();
             CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON s{p}.child FOR EACH ROW EXECUTE FUNCTION public.audit_row();"
        ));
    }
    target.execute("app", &sql);
}

/// A changefeed into the 8 partitions and what the target must hold once everything is resolved.
/// Every write carries a value used once, so a row version applied twice shows in the audit.
struct Feed {
    wall: u64,
    writes: u64,
    model: BTreeMap<(usize, &'static str, i64), String>,
    resolved: u64,
}

const PARENTS: i64 = 5;
const CHILDREN: i64 = 40;

impl Feed {
    fn new() -> Feed {
        Feed { wall: T0, writes: 0, model: BTreeMap::new(), resolved: 0 }
    }

    fn hlc(wall: u64) -> String {
        format!("{wall}.0000000000")
    }

    /// One body per partition: on the first round the parents and children together (one
    /// timestamp, children first in journal order), later `rows` child writes and deletes.
    fn round(&mut self, ingest: &Ingest, rows: usize) {
        for p in 0..PARTITIONS {
            self.wall += 1_000;
            let hlc = Self::hlc(self.wall);
            let mut messages = Vec::new();
            if !self.model.keys().any(|(q, t, _)| *q == p && *t == "parent") {
                for id in 0..PARENTS {
                    messages.push(self.upsert(p, "parent", id, None, &hlc));
                }
            }
            for i in 0..rows {
                let id = ((self.writes as i64) * 7 + i as i64) % CHILDREN;
                if (self.writes + i as u64) % 5 == 4 {
                    self.model.remove(&(p, "child", id));
                    messages.push(format!(r#"{{"after": null, "key": [{id}], "topic": "child", "updated": "{hlc}"}}"#));
                } else {
                    messages.push(self.upsert(p, "child", id, Some(id % PARENTS), &hlc));
                }
            }
            let body = format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len());
            let (status, text) = ingest.post(&format!("/app/s{p}"), body.as_bytes());
            assert_eq!(status, 200, "{text}");
        }
    }

    fn upsert(&mut self, p: usize, table: &'static str, id: i64, parent: Option<i64>, hlc: &str) -> String {
        self.writes += 1;
        let v = format!("{table}{id}-w{}", self.writes);
        self.model.insert((p, table, id), v.clone());
        let parent = parent.map(|q| format!(r#", "parent_id": {q}"#)).unwrap_or_default();
        format!(
            r#"{{"after": {{"id": {id}{parent}, "v": "{v}"}}, "key": [{id}], "topic": "{table}", "updated": "{hlc}"}}"#
        )
    }

    /// Resolves everything sent so far in every partition.
    fn resolve(&mut self, ingest: &Ingest) {
        self.resolved = self.wall;
        for p in 0..PARTITIONS {
            let body = format!(r#"{{"resolved":"{}"}}"#, Self::hlc(self.wall));
            assert_eq!(ingest.post(&format!("/app/s{p}"), body.as_bytes()).0, 200);
        }
    }

    fn applied_everywhere(&self, target: &Target) -> bool {
        if target.query("SELECT to_regclass('_replicator.checkpoints')::text") == [[None]] {
            return false;
        }
        let want = Self::hlc(self.resolved);
        let rows = target.query("SELECT resolved FROM _replicator.checkpoints WHERE partition LIKE 'app.s%'");
        rows.len() == PARTITIONS && rows.iter().all(|r| r[0].as_deref() == Some(want.as_str()))
    }

    /// The target equals the model, and no row version was applied twice.
    fn check(&self, target: &Target) {
        wait_for("every partition applied up to the last resolved timestamp", LONG, || self.applied_everywhere(target));
        let mut got = BTreeMap::new();
        for p in 0..PARTITIONS {
            for table in ["parent", "child"] {
                for row in target.query(&format!("SELECT id::text, v FROM s{p}.{table}")) {
                    let id: i64 = row[0].as_deref().unwrap().parse().unwrap();
                    got.insert((p, table, id), row[1].clone().unwrap());
                }
            }
        }
        assert_eq!(got, self.model, "target differs from the model");
        let twice = target.query(
            "SELECT schema, tbl, row_id::text, v, count(*)::text FROM public.audit WHERE op <> 'DELETE'
             GROUP BY 1, 2, 3, 4 HAVING count(*) > 1 LIMIT 5",
        );
        assert!(twice.is_empty(), "row versions applied more than once: {twice:?}");
    }
}

/// Waits until the queue service opened a session for each of `names` (the ingest logs it).
fn wait_connected(ingest: &Ingest, names: &[&str]) {
    let log = ingest.log.clone().expect("a logged ingest");
    wait_for("the appliers to connect", LONG, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let opened: Vec<&str> = text.lines().filter(|l| l.contains("applier session opened")).collect();
        names.iter().all(|n| opened.iter().any(|l| l.contains(&format!("\"{n}\""))))
    });
}

fn appliers_seen(target: &Target) -> Vec<String> {
    target
        .query("SELECT DISTINCT app FROM public.audit ORDER BY app")
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect()
}

struct Setup {
    target: Target,
    pki: QueuePki,
    journal: tempfile::TempDir,
    logs: tempfile::TempDir,
    udp: u16,
}

impl Setup {
    fn new() -> Setup {
        let target = Target::start();
        prepare(&target);
        Setup {
            target,
            pki: QueuePki::new(),
            journal: tempfile::tempdir().unwrap(),
            logs: common::logs_dir("wharf-appliers-"),
            udp: free_port().unwrap(),
        }
    }

    fn ingest(&self, lease_timeout: &str) -> Ingest {
        let args = self.pki.ingest_args(self.udp, lease_timeout);
        let log = self.logs.path().join(format!("ingest-{}.log", free_port().unwrap()));
        let mut all = vec!["--disableAuthentication".to_owned()];
        all.extend(args);
        Ingest::start_logged(&self.target.url(), self.journal.path(), &strs(&all), &log)
    }

    fn queue_addr(&self) -> String {
        format!("127.0.0.1:{}", self.udp)
    }

    fn applier(&self, name: &str, workers: u32) -> Applier {
        Applier::start(name, &self.queue_addr(), &self.target.url(), &self.pki, workers, self.logs.path())
    }

    fn logs(&self) -> &Path {
        self.logs.path()
    }
}

#[test]
fn two_then_three_applier_processes_apply_eight_partitions_exactly_once() {
    let setup = Setup::new();
    let ingest = setup.ingest("10s");
    let mut feed = Feed::new();
    let a = setup.applier("applier_a", 2);
    let b = setup.applier("applier_b", 2);
    for _ in 0..3 {
        feed.round(&ingest, 30);
        feed.resolve(&ingest);
    }
    feed.check(&setup.target);
    // A third process joins: partitions are handed over between windows and it gets work.
    let c = setup.applier("applier_c", 2);
    for _ in 0..20 {
        feed.round(&ingest, 30);
        feed.resolve(&ingest);
        if appliers_seen(&setup.target).len() == 3 {
            break;
        }
        wait_for("the round to be applied", LONG, || feed.applied_everywhere(&setup.target));
    }
    feed.check(&setup.target);
    assert_eq!(appliers_seen(&setup.target), ["applier_a", "applier_b", "applier_c"]);
    // Each process counts its own transactions; the queue service counts every reported commit
    // (a report follows its commit, so the two meet a moment later).
    let counts = || {
        let transactions: f64 = [&a, &b, &c].iter().map(|p| p.metric_sum("apply_duration_seconds_count")).sum();
        let (_, ingest_metrics) = common::request(ingest.port, "GET", "/_/varz", b"").unwrap();
        (transactions, common::metric_sum(&ingest_metrics, "wharf_apply_commits_total"))
    };
    wait_for("the appliers' transactions to match the commits reported", LONG, || {
        let (transactions, commits) = counts();
        commits > 0.0 && transactions == commits
    });
}

#[test]
fn a_worker_killed_mid_window_loses_nothing_and_applies_nothing_twice() {
    let setup = Setup::new();
    let ingest = setup.ingest("2s");
    let mut feed = Feed::new();
    for _ in 0..10 {
        feed.round(&ingest, 400);
    }
    let mut a = setup.applier("applier_a", 2);
    let _b = setup.applier("applier_b", 2);
    wait_connected(&ingest, &["applier_a", "applier_b"]);
    // The audit table held: each window writes its first row, then waits inside its transaction
    // on the audit trigger's insert, so a window of applier_a can be caught there however fast
    // the machine is.
    let blocker = lock_table(&setup.target, "public.audit", "ACCESS EXCLUSIVE");
    feed.resolve(&ingest);
    // Kill one process inside a window: its transaction has written rows, not committed yet.
    wait_for("applier_a to be inside a window", LONG, || {
        !setup
            .target
            .query(
                "SELECT 'x' FROM pg_stat_activity WHERE application_name = 'applier_a' \
                 AND backend_xid IS NOT NULL AND wait_event_type = 'Lock'",
            )
            .is_empty()
    });
    a.kill();
    drop(blocker);
    feed.round(&ingest, 50);
    feed.resolve(&ingest);
    feed.check(&setup.target);
}

#[test]
fn a_stopped_worker_past_its_lease_is_fenced_when_it_wakes() {
    let setup = Setup::new();
    let ingest = setup.ingest("2s");
    let mut feed = Feed::new();
    feed.round(&ingest, 10);
    // Hold s0's child table so applier_a's first window (s0, the first partition) blocks inside
    // its transaction.
    let blocker = lock_table(&setup.target, "s0.child", "ACCESS EXCLUSIVE");
    let a = setup.applier("applier_a", 1);
    feed.resolve(&ingest);
    wait_for("applier_a to wait on the lock", LONG, || {
        !setup
            .target
            .query("SELECT 'x' FROM pg_stat_activity WHERE application_name = 'applier_a' AND wait_event_type = 'Lock'")
            .is_empty()
    });
    let held_by_a = setup
        .target
        .query("SELECT p.partition, p.lease_epoch::text FROM _replicator.checkpoints p WHERE p.lease_epoch > 0");
    a.signal("STOP");
    // Past the lease: another process takes the partitions over and claims a newer epoch.
    let _b = setup.applier("applier_b", 1);
    wait_for("applier_b to claim applier_a's partition", LONG, || {
        let now = setup
            .target
            .query("SELECT partition, lease_epoch::text FROM _replicator.checkpoints WHERE lease_epoch > 0");
        held_by_a.iter().all(|old| {
            now.iter().any(|n| {
                n[0] == old[0]
                    && n[1].as_deref().unwrap().parse::<u64>().unwrap() > old[1].as_deref().unwrap().parse().unwrap()
            })
        })
    });
    drop(blocker);
    a.signal("CONT");
    feed.check(&setup.target);
    wait_for("applier_a to report the fencing", LONG, || a.log_text().contains("taken over"));
    let s0 = setup.target.query("SELECT DISTINCT app FROM public.audit WHERE schema = 's0'");
    assert_eq!(s0, [[Some("applier_b".to_owned())]], "applier_a's fenced transaction must have rolled back");
    // The fenced process gave the partition up and fences nobody back: both keep working.
    feed.round(&ingest, 10);
    feed.resolve(&ingest);
    feed.check(&setup.target);
}

#[test]
fn appliers_reconnect_when_the_ingest_is_killed_and_continue() {
    let setup = Setup::new();
    let mut ingest = setup.ingest("2s");
    let mut feed = Feed::new();
    let mut a = setup.applier("applier_a", 2);
    let mut b = setup.applier("applier_b", 2);
    for _ in 0..3 {
        feed.round(&ingest, 200);
        feed.resolve(&ingest);
    }
    wait_for("some partition applied", LONG, || {
        !setup.target.query("SELECT 'x' FROM _replicator.checkpoints WHERE resolved_wall > 0").is_empty()
    });
    ingest.kill();
    let ingest = Ingest::start_on(
        ingest.port,
        &setup.target.url(),
        setup.journal.path(),
        &strs(&setup.pki.ingest_args(setup.udp, "2s")),
    );
    for _ in 0..2 {
        feed.round(&ingest, 50);
        feed.resolve(&ingest);
    }
    feed.check(&setup.target);
    assert!(
        a.child.try_wait().unwrap().is_none() && b.child.try_wait().unwrap().is_none(),
        "appliers must survive the ingest restart"
    );
    assert!(
        a.log_text().contains("connected to the queue service")
            && b.log_text().contains("connected to the queue service")
    );
    // SIGTERM: partitions given back, clean exit.
    a.signal("TERM");
    b.signal("TERM");
    assert!(a.child.wait().unwrap().success());
    assert!(b.child.wait().unwrap().success());
    assert!(a.log_text().contains("partitions were given back"));
}

#[test]
fn an_applier_with_a_certificate_from_another_ca_gets_no_lease() {
    let setup = Setup::new();
    let ingest = setup.ingest("2s");
    let mut feed = Feed::new();
    feed.round(&ingest, 5);
    feed.resolve(&ingest);
    // Another CA's applier certificate, with the right CA to verify the server.
    let other = QueuePki::new();
    std::fs::copy(other.path("applier.crt"), setup.pki.path("intruder.crt")).unwrap();
    std::fs::copy(other.path("applier.key"), setup.pki.path("intruder.key")).unwrap();
    let intruder = Applier::start_with(
        "intruder",
        &setup.queue_addr(),
        &setup.target.url(),
        &setup.pki,
        "intruder",
        1,
        setup.logs(),
    );
    let ingest_log = ingest.log.clone().unwrap();
    wait_for("the ingest to refuse the handshake", LONG, || {
        std::fs::read_to_string(&ingest_log).unwrap_or_default().contains("refused in the handshake")
    });
    let staging = setup.target.query("SELECT to_regclass('_replicator.checkpoints')::text");
    assert_eq!(staging, [[None]], "no applier may have reached the target");
    assert!(appliers_seen(&setup.target).is_empty());
    assert!(intruder.log_text().contains("queue service not reachable yet"), "{}", intruder.log_text());
    // The right certificate is served at once.
    let _good = setup.applier("applier_a", 1);
    feed.check(&setup.target);
}

#[test]
fn a_protocol_version_mismatch_is_a_clear_error_on_both_sides() {
    use wharf_queue::wire::{self, Message};
    let setup = Setup::new();
    let ingest = setup.ingest("2s");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let files = wharf_queue::quic::TlsFiles {
        certificate: setup.pki.path("applier.crt").into(),
        private_key: setup.pki.path("applier.key").into(),
        ca: setup.pki.path("ca.crt").into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reply = rt.block_on(async {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(wharf_queue::quic::tls::client_config(&files).unwrap());
        let addr = setup.queue_addr().parse().unwrap();
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = Message::Hello { version: 999, name: "future".into(), workers: 1 };
        send.write_all(&wire::encode(&hello)).await.unwrap();
        send.finish().unwrap();
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.unwrap();
        let mut body = vec![0u8; wire::frame_len(prefix).unwrap()];
        recv.read_exact(&mut body).await.unwrap();
        wire::decode(&body).unwrap()
    });
    let Message::Error { code, message } = reply else { panic!("expected an error frame, got {reply:?}") };
    assert_eq!(code, wire::code::VERSION);
    assert!(
        message.contains("version mismatch")
            && message.contains(&format!("speaks version {}", wire::PROTOCOL_VERSION))
            && message.contains("999"),
        "{message}"
    );
    let log = std::fs::read_to_string(ingest.log.as_ref().unwrap()).unwrap();
    assert!(log.contains("queue protocol version mismatch"), "{log}");
}

/// A UDP relay between one client and the queue service; the test cuts and heals it.
struct UdpRelay {
    port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpRelay {
    fn start(upstream: &str) -> UdpRelay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(upstream).unwrap();
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        }
        let port = front.local_addr().unwrap().port();
        let (cut, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        let (cut2, stop2, client2) = (cut.clone(), stop.clone(), client.clone());
        let up = std::thread::spawn({
            let (cut, stop) = (cut.clone(), stop.clone());
            move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        if !cut.load(Ordering::SeqCst) {
                            let _ = back.send(&buf[..n]);
                        }
                    }
                }
            }
        });
        let down = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::SeqCst) {
                if let Ok(n) = back2.recv(&mut buf) {
                    let to = *client2.lock().unwrap();
                    if let (false, Some(to)) = (cut2.load(Ordering::SeqCst), to) {
                        let _ = front2.send_to(&buf[..n], to);
                    }
                }
            }
        });
        UdpRelay { port, cut, stop, threads: vec![up, down] }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn audit_mark(target: &Target) -> i64 {
    target.query("SELECT coalesce(max(n), 0)::text FROM public.audit")[0][0].as_deref().unwrap().parse().unwrap()
}

#[test]
fn a_network_cut_moves_partitions_to_another_worker_and_the_first_rejoins_when_it_heals() {
    let setup = Setup::new();
    let ingest = setup.ingest("2s");
    let relay = UdpRelay::start(&setup.queue_addr());
    let mut feed = Feed::new();
    let a = Applier::start(
        "applier_a",
        &format!("127.0.0.1:{}", relay.port),
        &setup.target.url(),
        &setup.pki,
        1,
        setup.logs(),
    );
    let _b = setup.applier("applier_b", 1);
    feed.round(&ingest, 20);
    feed.resolve(&ingest);
    feed.check(&setup.target);

    relay.set_cut(true);
    let ingest_log = ingest.log.clone().unwrap();
    wait_for("the queue service to drop applier_a's session", LONG, || {
        std::fs::read_to_string(&ingest_log).unwrap_or_default().contains("applier connection closed")
    });
    let cut_at = audit_mark(&setup.target);
    for _ in 0..2 {
        feed.round(&ingest, 20);
        feed.resolve(&ingest);
    }
    feed.check(&setup.target);
    let during = setup.target.query(&format!("SELECT DISTINCT app FROM public.audit WHERE n > {cut_at}"));
    assert_eq!(during, [[Some("applier_b".to_owned())]], "only applier_b can reach the queue during the cut");

    relay.set_cut(false);
    let healed_at = audit_mark(&setup.target);
    wait_for("applier_a to reconnect", LONG, || a.log_text().matches("connected to the queue service").count() >= 2);
    for _ in 0..30 {
        feed.round(&ingest, 20);
        feed.resolve(&ingest);
        feed.check(&setup.target);
        let apps =
            setup.target.query(&format!("SELECT DISTINCT app FROM public.audit WHERE n > {healed_at} ORDER BY app"));
        if apps.len() == 2 {
            break;
        }
    }
    let after =
        setup.target.query(&format!("SELECT DISTINCT app FROM public.audit WHERE n > {healed_at} ORDER BY app"));
    assert_eq!(
        after,
        [[Some("applier_a".to_owned())], [Some("applier_b".to_owned())]],
        "applier_a rejoins after the cut heals"
    );
}

#[test]
fn an_applier_meeting_another_protocol_version_stops_with_a_clear_error() {
    use wharf_queue::wire::{self, Message};
    let pki = QueuePki::new();
    let logs = tempfile::tempdir().unwrap();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let files = wharf_queue::quic::TlsFiles {
        certificate: pki.path("queue.crt").into(),
        private_key: pki.path("queue.key").into(),
        ca: pki.path("ca.crt").into(),
    };
    // A queue service of a later release: it welcomes with the next version.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = wharf_queue::quic::tls::server_config(&files, None, Duration::from_secs(10)).unwrap();
    let endpoint = rt.block_on(async { quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap() });
    let addr = format!("127.0.0.1:{}", endpoint.local_addr().unwrap().port());
    rt.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let Ok((mut send, mut recv)) = conn.accept_bi().await else { continue };
            let mut prefix = [0u8; 4];
            if recv.read_exact(&mut prefix).await.is_err() {
                continue;
            }
            let mut body = vec![0u8; wire::frame_len(prefix).unwrap()];
            let _ = recv.read_exact(&mut body).await;
            let welcome =
                Message::Welcome { version: wire::PROTOCOL_VERSION + 1, session: 1, lease_timeout_ms: 10_000 };
            let _ = send.write_all(&wire::encode(&welcome)).await;
            let _ = send.finish();
            let _ = conn.closed().await;
        }
    });
    let mut applier = Applier::start("applier_a", &addr, "postgresql://127.0.0.1:1/unused", &pki, 1, logs.path());
    let mut status = None;
    wait_for("wharf-applier to stop", LONG, || {
        status = applier.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success(), "a version mismatch must stop the process with an error");
    let log = applier.log_text();
    let (ours, theirs) = (wire::PROTOCOL_VERSION, wire::PROTOCOL_VERSION + 1);
    let expected = format!("queue protocol version mismatch: this client speaks version {ours}, the service {theirs}");
    assert!(log.contains(&expected), "{log}");
}

#[test]
fn a_queue_address_in_use_stops_the_start_with_an_error_not_a_panic() {
    let setup = Setup::new();
    let taken = UdpSocket::bind(("127.0.0.1", setup.udp)).unwrap();
    let mut args = vec!["--disableAuthentication".to_owned()];
    args.extend(setup.pki.ingest_args(setup.udp, "10s"));
    let log = setup.logs.path().join("ingest-taken.log");
    let mut child = wharf_testkit::Process::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf-ingest"))
            .args(["start", "--bindAddr", &format!("127.0.0.1:{}", free_port().unwrap())])
            .args(["--targetConn", &setup.target.url()])
            .arg("--journalDir")
            .arg(setup.journal.path())
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    )
    .unwrap();
    let mut status = None;
    wait_for("wharf-ingest to stop", Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    drop(taken);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{text}");
    assert!(text.contains(&format!("cannot listen for the queue service on UDP 127.0.0.1:{}", setup.udp)), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
