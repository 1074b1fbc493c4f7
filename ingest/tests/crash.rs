//! Fault tests with real signals: SIGKILL of `wharf-ingest` under 16 concurrent senders loses no
//! acknowledged row; SIGTERM finishes in-flight requests and exits cleanly.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Ingest, QueuePki, Target, journal_only, request, strs, wait_for};

const T0: u64 = 1_732_615_200_000_000_000;
const SENDERS: u64 = 16;
const REQUESTS_PER_SENDER: u64 = 60;
const KEYS_PER_REQUEST: u64 = 20;

/// The body of sender `s`'s request `n`: keys `s*1000 + (n*7+i) % 50`, value `n`, one timestamp.
fn body(s: u64, n: u64) -> (u64, String, Vec<(u64, u64)>) {
    let wall = T0 + n * 1_000_000 + s;
    let rows: Vec<(u64, u64)> = (0..KEYS_PER_REQUEST).map(|i| (s * 1000 + (n * 7 + i) % 50, n)).collect();
    let messages: Vec<String> = rows
        .iter()
        .map(|(k, v)| format!("{{\"after\": {{\"k\": {k}, \"v\": \"{v}\"}}, \"key\": [{k}], \"topic\": \"crash_kv\", \"updated\": \"{wall}.0000000000\"}}"))
        .collect();
    (wall, format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), messages.len()), rows)
}

/// Sends until a 2xx, as CockroachDB does; returns only once acknowledged.
fn send_until_ok(port: &AtomicU64, body: &[u8]) {
    loop {
        if let Ok((200, _)) = request(port.load(Ordering::SeqCst) as u16, "POST", "/app/public", body) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigkill_during_concurrent_ingest_loses_no_acknowledged_row() {
    let target = Target::start();
    target.execute("app", "CREATE TABLE public.crash_kv (k bigint PRIMARY KEY, v text NOT NULL)");
    let journal = tempfile::tempdir().unwrap();
    let mut ingest = Ingest::start(&target.url(), journal.path(), &[]);
    let port = Arc::new(AtomicU64::new(ingest.port as u64));
    let acked = Arc::new(AtomicU64::new(0));
    let model: Arc<Mutex<HashMap<u64, (u64, u64)>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (port, acked, model) = (port.clone(), acked.clone(), model.clone());
            std::thread::spawn(move || {
                for n in 0..REQUESTS_PER_SENDER {
                    let (wall, text, rows) = body(s, n);
                    send_until_ok(&port, text.as_bytes());
                    let mut model = model.lock().unwrap();
                    for (k, v) in rows {
                        let entry = model.entry(k).or_insert((0, 0));
                        if wall >= entry.0 {
                            *entry = (wall, v);
                        }
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let total = SENDERS * REQUESTS_PER_SENDER;
    for kill in 1..=4u64 {
        let threshold = total * kill / 5;
        wait_for("senders to make progress", Duration::from_secs(120), || acked.load(Ordering::SeqCst) >= threshold);
        ingest.kill();
        ingest = Ingest::start_on(ingest.port, &target.url(), journal.path(), &[]);
    }
    for s in senders {
        s.join().unwrap();
    }
    let resolved = format!("{}.0000000000", T0 + REQUESTS_PER_SENDER * 1_000_000);
    send_until_ok(&port, format!("{{\"resolved\":\"{resolved}\"}}").as_bytes());
    wait_for("final checkpoint", Duration::from_secs(60), || target.checkpoint().as_deref() == Some(resolved.as_str()));
    let got = target.query("SELECT k::text, v FROM public.crash_kv ORDER BY crash_kv.k");
    let model = model.lock().unwrap();
    let mut want: Vec<(u64, u64)> = model.iter().map(|(k, (_, v))| (*k, *v)).collect();
    want.sort();
    let want: Vec<Vec<Option<String>>> =
        want.into_iter().map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())]).collect();
    assert_eq!(got.len(), SENDERS as usize * 50);
    assert_eq!(got, want);
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let target = Target::start();
    target.execute("app", "CREATE TABLE public.crash_kv (k bigint PRIMARY KEY, v text NOT NULL)");
    let journal = tempfile::tempdir().unwrap();
    let pki = QueuePki::new();
    let mut ingest = Ingest::start(&target.url(), journal.path(), &strs(&journal_only(&pki)));
    let port = ingest.port;
    let acked = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for n in 0..REQUESTS_PER_SENDER * 10 {
                    let (wall, text, rows) = body(s, n);
                    match request(port, "POST", "/app/public", text.as_bytes()) {
                        Ok((200, _)) => {
                            ok.push((wall, rows));
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                ok
            })
        })
        .collect();
    wait_for("some acknowledged requests", Duration::from_secs(60), || acked.load(Ordering::SeqCst) >= 20);
    let status = ingest.terminate();
    assert!(status.success(), "wharf-ingest exited with {status:?}");
    let mut model: HashMap<u64, (u64, u64)> = HashMap::new();
    for sender in senders {
        for (wall, rows) in sender.join().unwrap() {
            for (k, v) in rows {
                let entry = model.entry(k).or_insert((0, 0));
                if wall >= entry.0 {
                    *entry = (wall, v);
                }
            }
        }
    }
    // Every acknowledged request is in the journal: restart, resolve everything, compare exactly.
    let ingest = Ingest::start_on(port, &target.url(), journal.path(), &[]);
    let resolved = format!("{}.0000000000", T0 + REQUESTS_PER_SENDER * 10 * 1_000_000);
    assert_eq!(ingest.post("/app/public", format!("{{\"resolved\":\"{resolved}\"}}").as_bytes()).0, 200);
    wait_for("final checkpoint", Duration::from_secs(60), || target.checkpoint().as_deref() == Some(resolved.as_str()));
    let got = target.query("SELECT k::text, v FROM public.crash_kv ORDER BY crash_kv.k");
    let mut want: Vec<(u64, u64)> = model.iter().map(|(k, (_, v))| (*k, *v)).collect();
    want.sort();
    let want: Vec<Vec<Option<String>>> =
        want.into_iter().map(|(k, v)| vec![Some(k.to_string()), Some(v.to_string())]).collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}
