//! Power loss: the journal lives on a FUSE filesystem that, when the power is cut, keeps what was
//! fsynced and an arbitrary part of what was not (`wharf-powercut`: torn pages and sectors, grown
//! lengths of zeros, a prefix of each directory's operations; every other cut keeps exactly what
//! was synced). 16 senders post bodies of 1 KiB to 3 MiB while a resolver sends resolved
//! timestamps; the power is cut at random moments (`WHARF_POWERCUT_CUTS`, 24 by default), a
//! third of the times after a crash and a restart that recovered from the page cache, and after
//! each restart:
//! - the last acknowledged resolved timestamp still reaches the target without being sent again;
//! - at the end, every acknowledged row is in the target with its value.
//!
//! Needs root (or fusermount3) and `/dev/fuse`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Ingest, Target, request, wait_for};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wharf_powercut::{Chooser, CutReport, PowerCut};

const T0: u64 = 1_732_615_200_000_000_000;
const SENDERS: usize = 16;
const MIN_BODY: f64 = 1024.0;
const MAX_BODY: f64 = 3.0 * 1024.0 * 1024.0;

fn hlc(wall: u64) -> String {
    format!("{wall}.0000000000")
}

/// Wall time of sender `s`'s body `n`; every body of round `n` is later than `T0 + n * 1e6`.
fn wall(s: usize, n: u64) -> u64 {
    T0 + n * 1_000_000 + s as u64 + 1
}

/// One acknowledged row: key, value, padding length.
type Row = (u64, String, usize);
/// One acknowledged body: its wall time and rows.
type Body = (u64, Vec<Row>);

/// Sender `s`'s body `n` of about `size` bytes: 1 to 30 rows over the sender's 50 keys.
fn body(s: usize, n: u64, size: usize, rng: &mut StdRng) -> (String, Vec<Row>) {
    let count = rng.random_range(1..=30usize);
    let pad = (size / count).saturating_sub(120);
    let rows: Vec<Row> =
        (0..count as u64).map(|i| (s as u64 * 1000 + (n * 7 + i) % 50, format!("{s}-{n}"), pad)).collect();
    let updated = hlc(wall(s, n));
    let filler = "x".repeat(pad);
    let messages: Vec<String> = rows
        .iter()
        .map(|(k, v, _)| {
            format!(r#"{{"after":{{"k":{k},"v":"{v}","pad":"{filler}"}},"key":[{k}],"topic":"power_kv","updated":"{updated}"}}"#)
        })
        .collect();
    (format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len()), rows)
}

/// Posts until 200, as CockroachDB does (it retries every failure).
fn send_until_ok(port: u16, body: &[u8]) {
    while !matches!(request(port, "POST", "/app/public", body), Ok((200, _))) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Feed {
    port: u16,
    stop: AtomicBool,
    /// Senders start no new body while set (in-flight bodies are still retried until 200).
    paused: AtomicBool,
    /// Per sender: how many bodies are acknowledged (the next one's number).
    acked: Vec<AtomicU64>,
    /// Per sender: the rows of each acknowledged body, in order.
    rows: Vec<Mutex<Vec<Body>>>,
    /// Held while a resolved timestamp is in flight; a cut takes it.
    resolver: Mutex<()>,
    /// Wall time of the newest resolved timestamp answered 200.
    resolved: AtomicU64,
}

impl Feed {
    fn total_acked(&self) -> u64 {
        self.acked.iter().map(|a| a.load(Ordering::SeqCst)).sum()
    }

    fn sender(&self, s: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed ^ s as u64);
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            if self.paused.load(Ordering::SeqCst) {
                // Waiting for the test's check after a cut to finish.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            // Log-uniform sizes: mostly small bodies, some near 3 MiB (several segments' worth of groups).
            let size = (MIN_BODY * (MAX_BODY / MIN_BODY).powf(rng.random::<f64>())) as usize;
            let (text, rows) = body(s, n, size, &mut rng);
            send_until_ok(self.port, text.as_bytes());
            self.rows[s].lock().unwrap().push((wall(s, n), rows));
            n += 1;
            self.acked[s].store(n, Ordering::SeqCst);
        }
    }

    /// Resolves everything below the slowest sender's next body, as a changefeed would.
    fn resolve_loop(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            {
                let _in_flight = self.resolver.lock().unwrap();
                let slowest = self.acked.iter().map(|a| a.load(Ordering::SeqCst)).min().unwrap();
                let resolved = T0 + slowest * 1_000_000;
                if resolved > self.resolved.load(Ordering::SeqCst) {
                    let body = format!(r#"{{"resolved":"{}"}}"#, hlc(resolved));
                    if let Ok((200, _)) = request(self.port, "POST", "/app/public", body.as_bytes()) {
                        self.resolved.store(resolved, Ordering::SeqCst);
                    }
                }
            }
            // The changefeed's resolved interval.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last acknowledged value of every key.
    fn model(&self) -> Vec<Vec<Option<String>>> {
        let mut newest: HashMap<u64, (u64, String, usize)> = HashMap::new();
        for sender in &self.rows {
            for (wall, rows) in sender.lock().unwrap().iter() {
                for (k, v, pad) in rows {
                    newest.insert(*k, (*wall, v.clone(), *pad));
                }
            }
        }
        let mut keys: Vec<_> = newest.into_iter().collect();
        keys.sort();
        keys.into_iter().map(|(k, (_, v, pad))| vec![Some(k.to_string()), Some(v), Some(pad.to_string())]).collect()
    }
}

fn start_ingest(port: u16, target: &Target, journal: &Path, log: &Path) -> Ingest {
    Ingest::start_logged_on(port, &target.url(), journal, &["--appliers", "2"], log)
}

#[test]
fn power_cuts_under_concurrent_ingest_lose_no_acknowledged_row() {
    let cuts: usize = std::env::var("WHARF_POWERCUT_CUTS").map_or(24, |v| v.parse().expect("WHARF_POWERCUT_CUTS"));
    let seed: u64 = std::env::var("WHARF_POWERCUT_SEED").map_or_else(|_| rand::random(), |v| v.parse().unwrap());
    eprintln!("power-cut test: {cuts} cuts, seed {seed} (WHARF_POWERCUT_SEED to repeat the bodies)");
    let target = Target::start();
    target.execute("app", "CREATE TABLE public.power_kv (k bigint PRIMARY KEY, v text NOT NULL, pad text NOT NULL)");
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("mnt")).unwrap();
    let mut disk = PowerCut::mount(&work.path().join("mnt")).expect("mount the power-cut filesystem");
    // The journal directory does not exist yet: its own directory entry must be made durable too.
    let journal = disk.path().join("journal");
    let port = common::free_port().unwrap();
    let log = |i: usize| work.path().join(format!("ingest-{i}.log"));
    let mut ingest = start_ingest(port, &target, &journal, &log(0));

    let feed = Arc::new(Feed {
        port,
        stop: AtomicBool::new(false),
        paused: AtomicBool::new(false),
        acked: (0..SENDERS).map(|_| AtomicU64::new(0)).collect(),
        rows: (0..SENDERS).map(|_| Mutex::default()).collect(),
        resolver: Mutex::new(()),
        resolved: AtomicU64::new(0),
    });
    let mut threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let feed = feed.clone();
            std::thread::spawn(move || feed.sender(s, seed))
        })
        .collect();
    let resolver_feed = feed.clone();
    threads.push(std::thread::spawn(move || resolver_feed.resolve_loop()));

    let mut rng = StdRng::seed_from_u64(seed);
    let mut lost = CutReport::default();
    for cut in 1..=cuts {
        // A random moment: after 1 to 24 more acknowledged bodies, with all senders in flight.
        let until = feed.total_acked() + rng.random_range(1..=24);
        wait_for("senders to make progress", Duration::from_secs(120), || feed.total_acked() >= until);
        let report = {
            let _no_resolved_in_flight = feed.resolver.lock().unwrap();
            // Bodies in flight are cut; no new ones start until this cut is checked.
            feed.paused.store(true, Ordering::SeqCst);
            ingest.kill();
            if cut % 3 == 0 {
                // A crash first: the restart recovers from the page cache (unsynced writes
                // included), then the power goes before any new request.
                ingest = start_ingest(port, &target, &journal, &work.path().join(format!("ingest-{cut}-crash.log")));
                ingest.kill();
            }
            let chooser = if cut % 2 == 0 { Chooser::strict() } else { Chooser::new(rng.random()) };
            let report = disk.cut_with(chooser).expect("power cut");
            ingest = start_ingest(port, &target, &journal, &log(cut));
            report
        };
        eprintln!("cut {cut}: {} bodies acknowledged so far; lost unsynced: {report:?}", feed.total_acked());
        lost.files_reverted += report.files_reverted;
        lost.dirs_reverted += report.dirs_reverted;
        lost.inodes_forgotten += report.inodes_forgotten;
        // The last acknowledged resolved timestamp survived: it reaches the target unsent.
        let resolved = hlc(feed.resolved.load(Ordering::SeqCst));
        let applied =
            || feed.resolved.load(Ordering::SeqCst) == 0 || target.checkpoint().is_some_and(|c| c >= resolved);
        if !wharf_testkit::wait_until(Duration::from_secs(120), applied) {
            let log = std::fs::read_to_string(log(cut)).unwrap_or_default();
            let tail: Vec<_> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "after cut {cut}: acknowledged resolved {resolved} not applied (checkpoint {:?}); ingest log:\n{}",
                target.checkpoint(),
                tail.join("\n")
            );
        }
        feed.paused.store(false, Ordering::SeqCst);
    }
    assert!(lost.files_reverted > 0, "no cut lost any unsynced data: the test did not test anything");

    feed.stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    let rounds = feed.acked.iter().map(|a| a.load(Ordering::SeqCst)).max().unwrap();
    let last = hlc(T0 + (rounds + 1) * 1_000_000);
    send_until_ok(port, format!(r#"{{"resolved":"{last}"}}"#).as_bytes());
    wait_for("the final checkpoint", Duration::from_secs(300), || {
        target.checkpoint().as_deref() == Some(last.as_str())
    });
    let got = target.query("SELECT k::text, v, length(pad)::text FROM public.power_kv ORDER BY power_kv.k");
    let want = feed.model();
    eprintln!("{} bodies, {} keys; unsynced data lost over {cuts} cuts: {lost:?}", feed.total_acked(), want.len());
    let got_keys: HashMap<_, _> = got.iter().map(|r| (r[0].clone(), r.clone())).collect();
    let wrong: Vec<_> = want.iter().filter(|r| got_keys.get(&r[0]) != Some(r)).collect();
    let show: Vec<_> = wrong.iter().take(5).map(|r| (r, got_keys.get(&r[0]))).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} keys missing or stale after power cuts (want, got): {show:?}",
        wrong.len(),
        want.len()
    );
    assert_eq!(got, want);
    drop(ingest);
}

/// A failed fsync of the journal: the request gets 503 (never 200), the process stops on its own
/// with an error, and the restart holds every acknowledged row and nothing of the failed request,
/// also after a power cut.
#[test]
fn a_failed_fsync_stops_the_ingest_and_the_restart_keeps_exactly_what_was_acknowledged() {
    let target = Target::start();
    target.execute("app", "CREATE TABLE public.power_kv (k bigint PRIMARY KEY, v text NOT NULL, pad text NOT NULL)");
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("mnt")).unwrap();
    let mut disk = PowerCut::mount(&work.path().join("mnt")).expect("mount the power-cut filesystem");
    let journal = disk.path().join("journal");
    let port = common::free_port().unwrap();
    let log = work.path().join("ingest.log");
    let mut ingest = start_ingest(port, &target, &journal, &log);
    let mut rng = StdRng::seed_from_u64(7);
    let (acked, _) = body(0, 1, 4096, &mut rng);
    assert_eq!(request(port, "POST", "/app/public", acked.as_bytes()).unwrap().0, 200);
    disk.inject(wharf_powercut::Fault::once(wharf_powercut::Op::Fsync, libc::EIO).on(".wal"));
    let (failed, _) = body(1, 2, 4096, &mut rng);
    let (status, text) = request(port, "POST", "/app/public", failed.as_bytes()).unwrap();
    assert_eq!(status, 503, "{text}");
    let exited = wharf_testkit::wait_until(Duration::from_secs(30), || ingest.child.try_wait().unwrap().is_some());
    assert!(exited, "the ingest must stop after a failed fsync");
    let code = ingest.child.wait().unwrap();
    assert!(!code.success(), "{code}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("journal"), "the log says why");
    for power_cut in [false, true] {
        if power_cut {
            ingest.kill();
            disk.cut().expect("power cut");
        }
        ingest = start_ingest(port, &target, &journal, &log);
        let resolved = hlc(T0 + 9_000_000 + u64::from(power_cut));
        send_until_ok(port, format!(r#"{{"resolved":"{resolved}"}}"#).as_bytes());
        wait_for("the checkpoint", Duration::from_secs(60), || {
            target.checkpoint().as_deref() == Some(resolved.as_str())
        });
        let senders: Vec<Option<String>> =
            target.query("SELECT DISTINCT split_part(v, '-', 1) FROM public.power_kv ORDER BY 1").concat();
        assert_eq!(senders, vec![Some("0".to_string())], "only the acknowledged body's rows (power cut: {power_cut})");
    }
}
