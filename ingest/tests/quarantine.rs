//! `--onApplyError quarantine` against a real PostgreSQL and the real binaries: a row the target
//! refuses goes to `_replicator.quarantine` while the rest of its window commits; the key's later
//! versions (and a child row that needs it) follow it there; `wharfctl dlq replay` applies them
//! exactly once, in order, after the target is fixed (an audit trigger sees every version once);
//! `wharfctl dlq discard` lets newer versions apply again. Quarantine rows are fenced with the
//! checkpoint: an applier stopped past its lease writes none.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Applier, Ingest, QueuePki, Target, free_port, lock_table, metric_sum, request, strs, wait_for};

const T: u64 = 1732615200000000000;

fn at(ms: u64) -> String {
    format!("{}.0000000000", T + ms * 1_000_000)
}

fn customer(id: u64, name: &str, ms: u64) -> String {
    format!(
        r#"{{"after": {{"created_at": "2024-11-26T10:00:01Z", "email": "c{id}@example.com", "id": {id}, "name": "{name}"}}, "key": [{id}], "topic": "customers", "updated": "{}"}}"#,
        at(ms)
    )
}

fn order(customer: u64, no: u64, ms: u64) -> String {
    format!(
        r#"{{"after": {{"customer_id": {customer}, "order_no": {no}, "total": "1.00", "placed_at": "2024-11-26T10:00:01"}}, "key": [{customer}, {no}], "topic": "orders", "updated": "{}"}}"#,
        at(ms)
    )
}

fn body(messages: &[String]) -> Vec<u8> {
    format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len()).into_bytes()
}

fn wharfctl(args: &[&str]) -> (bool, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_wharf-ingest")).with_file_name("wharfctl");
    assert!(bin.exists(), "{} is not built: run `cargo test --workspace`", bin.display());
    let out = Command::new(bin).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

struct Setup {
    target: Target,
    _journal: tempfile::TempDir,
    ingest: Ingest,
}

impl Setup {
    fn send(&self, messages: &[String], resolved_ms: u64) {
        assert_eq!(self.ingest.post("/app/public", &body(messages)).0, 200);
        let resolved = format!(r#"{{"resolved":"{}"}}"#, at(resolved_ms));
        assert_eq!(self.ingest.post("/app/public", resolved.as_bytes()).0, 200);
        wait_for("the window applied", Duration::from_secs(30), || {
            self.target.checkpoint().as_deref() == Some(at(resolved_ms).as_str())
        });
    }

    fn customers(&self) -> Vec<Vec<Option<String>>> {
        self.target.query("SELECT c.id::text, c.name FROM public.customers c ORDER BY c.id")
    }

    /// (table, key, version, sqlstate) of each quarantined version, oldest first.
    fn quarantine(&self) -> Vec<Vec<Option<String>>> {
        self.target.query(
            "SELECT table_name, key, version, sqlstate FROM _replicator.quarantine ORDER BY version_wall, version_logical, id",
        )
    }

    fn quarantined_metric(&self) -> f64 {
        let (_, text) = request(self.ingest.port, "GET", "/_/varz", b"").unwrap();
        metric_sum(&text, "wharf_quarantined_rows_total")
    }
}

fn row(cells: &[&str]) -> Vec<Option<String>> {
    cells.iter().map(|c| if *c == "NULL" { None } else { Some((*c).to_owned()) }).collect()
}

#[test]
fn refused_rows_are_quarantined_with_their_later_versions_and_replayed_exactly_once_in_order() {
    let target = Target::start();
    target.execute(
        "app",
        "ALTER TABLE public.customers ADD CONSTRAINT no_bad CHECK (name <> 'bad');
         CREATE TABLE public.audit (n bigserial, id bigint, op text, name text);
         CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.audit (id, op, name) VALUES (COALESCE(NEW.id, OLD.id), TG_OP, NEW.name); RETURN NULL; END $$;
         CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON public.customers FOR EACH ROW EXECUTE FUNCTION public.audit();",
    );
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--appliers", "1", "--onApplyError", "quarantine"]);
    let s = Setup { target, _journal: journal, ingest };
    let url = s.target.url();

    // Window 1: customer 13 breaks the CHECK, and its order needs it; the rest commits.
    s.send(
        &[customer(1, "C 1", 1000), customer(2, "C 2", 1000), customer(13, "bad", 1000), customer(3, "C 3", 1000)],
        1100,
    );
    assert_eq!(s.customers(), [row(&["1", "C 1"]), row(&["2", "C 2"]), row(&["3", "C 3"])]);
    s.send(&[order(13, 1, 1200), order(1, 1, 1200)], 1300);
    // Window 2: a good later version of 13 waits behind the bad one; other keys apply.
    s.send(&[customer(13, "C 13 v2", 2000), customer(2, "C 2 v2", 2000)], 2500);
    s.send(&[customer(13, "C 13 v3", 3000)], 3500);
    assert_eq!(s.customers(), [row(&["1", "C 1"]), row(&["2", "C 2 v2"]), row(&["3", "C 3"])]);
    assert_eq!(s.target.query("SELECT customer_id::text FROM public.orders"), [row(&["1"])]);
    assert_eq!(
        s.quarantine(),
        [
            row(&["customers", "[13]", &at(1000), "23514"]),
            row(&["orders", "[13,1]", &at(1200), "23503"]),
            row(&["customers", "[13]", &at(2000), "NULL"]),
            row(&["customers", "[13]", &at(3000), "NULL"]),
        ]
    );
    assert_eq!(s.quarantined_metric(), 4.0);
    // Readiness stays 200 and says so (the count is read again at most every 10 s).
    wait_for("readiness to warn of the quarantine", Duration::from_secs(30), || {
        let (status, text) = request(s.ingest.port, "GET", "/_/readyz", b"").unwrap();
        assert_eq!(status, 200, "quarantine does not block: {text}");
        text.contains("warning: app.public: 4 row versions quarantined")
    });

    let (ok, listed) = wharfctl(&["dlq", "list", "--targetConn", &url, "--json"]);
    assert!(ok, "{listed}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["op"], "upsert");
    assert!(listed[0]["message"].as_str().unwrap().contains(r#"violates check constraint "no_bad""#), "{listed}");

    // Replayed before the fix: both keys refused again (the order still lacks its customer),
    // nothing applied, the errors recorded.
    let (ok, text) = wharfctl(&["dlq", "replay", "--targetConn", &url]);
    assert!(!ok && text.contains("applied 0") && text.contains("23514") && text.contains("23503"), "{text}");
    assert!(text.contains("2 later version(s)") && text.contains("2 key(s) stay quarantined"), "{text}");
    assert_eq!(s.quarantine().len(), 4);
    let tried = "SELECT key, sqlstate FROM _replicator.quarantine WHERE last_tried IS NOT NULL ORDER BY id";
    assert_eq!(s.target.query(tried), [row(&["[13]", "23514"]), row(&["[13,1]", "23503"])]);

    s.target.execute("app", "ALTER TABLE public.customers DROP CONSTRAINT no_bad");
    // Two replays at once: the versions are applied once between them.
    let replays: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new(Path::new(env!("CARGO_BIN_EXE_wharf-ingest")).with_file_name("wharfctl"))
                .args(["dlq", "replay", "--targetConn", &url])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied: Vec<String> = replays
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8_lossy(&out.stdout).lines().next().unwrap().to_owned()
        })
        .collect();
    applied.sort();
    assert_eq!(applied, ["applied 0 quarantined version(s)", "applied 4 quarantined version(s)"]);
    assert!(s.quarantine().is_empty());
    assert_eq!(s.customers(), [row(&["1", "C 1"]), row(&["2", "C 2 v2"]), row(&["3", "C 3"]), row(&["13", "C 13 v3"])]);
    assert_eq!(s.target.query("SELECT customer_id::text FROM public.orders ORDER BY 1"), [row(&["1"]), row(&["13"])]);
    // A second replay finds nothing: each version was applied once.
    let (ok, text) = wharfctl(&["dlq", "replay", "--targetConn", &url]);
    assert!(ok && text.contains("applied 0"), "{text}");
    assert_eq!(
        s.target.query("SELECT id::text, op, name FROM public.audit ORDER BY n"),
        [
            row(&["1", "INSERT", "C 1"]),
            row(&["2", "INSERT", "C 2"]),
            row(&["3", "INSERT", "C 3"]),
            row(&["2", "UPDATE", "C 2 v2"]),
            row(&["13", "INSERT", "bad"]),
            row(&["13", "UPDATE", "C 13 v2"]),
            row(&["13", "UPDATE", "C 13 v3"]),
        ]
    );

    // After a replay the key is free: its next version applies in its window.
    s.send(&[customer(13, "C 13 v4", 4000)], 4500);
    assert_eq!(s.customers()[3], row(&["13", "C 13 v4"]));

    // Discard: a refused version and the one behind it are dropped; newer versions apply again.
    s.target.execute("app", "ALTER TABLE public.customers ADD CONSTRAINT no_bad CHECK (name <> 'bad') NOT VALID");
    s.send(&[customer(14, "bad", 5000)], 5100);
    s.send(&[customer(14, "C 14 v2", 5200)], 5300);
    assert_eq!(s.quarantine().len(), 2);
    let (ok, text) = wharfctl(&["dlq", "discard", "--targetConn", &url]);
    assert!(!ok && text.contains("--all"), "discard needs a filter: {text}");
    let (ok, text) = wharfctl(&["dlq", "discard", "--targetConn", &url, "--table", "customers", "--key", "14"]);
    assert!(ok && text.contains("discarded 2"), "{text}");
    s.send(&[customer(14, "C 14 v3", 6000)], 6500);
    assert_eq!(s.customers()[4], row(&["14", "C 14 v3"]));
    assert!(s.quarantine().is_empty());
}

#[test]
fn a_few_refused_rows_among_thousands_at_distinct_timestamps_are_found_and_the_rest_commits() {
    let target = Target::start();
    target.execute("app", "ALTER TABLE public.customers ADD CONSTRAINT no_bad CHECK (name <> 'bad')");
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &["--appliers", "1", "--onApplyError", "quarantine"]);
    let s = Setup { target, _journal: journal, ingest };
    let bad = [17, 2500, 4999];
    let messages: Vec<String> =
        (1..=5000).map(|id| customer(id, if bad.contains(&id) { "bad" } else { "ok" }, 1000 + id)).collect();
    let started = std::time::Instant::now();
    s.send(&messages, 7000);
    println!("5,000 rows at 5,000 timestamps, 3 refused: applied in {:.2} s", started.elapsed().as_secs_f64());
    let counts =
        s.target.query("SELECT count(*)::text, count(*) FILTER (WHERE name = 'ok')::text FROM public.customers");
    assert_eq!(counts, [row(&["4997", "4997"])]);
    let quarantined: Vec<Vec<Option<String>>> =
        bad.iter().map(|id| row(&["customers", &format!("[{id}]"), &at(1000 + id), "23514"])).collect();
    assert_eq!(s.quarantine(), quarantined);
}

#[test]
fn a_full_quarantine_halts_the_partition_instead_of_taking_more_keys() {
    let target = Target::start();
    target.execute("app", "ALTER TABLE public.customers ADD CONSTRAINT no_bad CHECK (name <> 'bad')");
    let journal = tempfile::tempdir().unwrap();
    let args = ["--appliers", "1", "--onApplyError", "quarantine", "--quarantineMaxKeys", "2"];
    let ingest = Ingest::start(&target.url(), journal.path(), &args);
    let s = Setup { target, _journal: journal, ingest };
    let messages =
        [customer(1, "bad", 1000), customer(2, "bad", 1000), customer(3, "bad", 1000), customer(4, "ok", 1000)];
    assert_eq!(s.ingest.post("/app/public", &body(&messages)).0, 200);
    assert_eq!(s.ingest.post("/app/public", format!(r#"{{"resolved":"{}"}}"#, at(1100)).as_bytes()).0, 200);
    wait_for("readiness to say the apply is blocked", Duration::from_secs(30), || {
        let (status, text) = request(s.ingest.port, "GET", "/_/readyz", b"").unwrap();
        status == 503 && text.contains("apply blocked")
    });
    let (_, text) = request(s.ingest.port, "GET", "/_/readyz", b"").unwrap();
    assert!(text.contains("holds 2 keys (--quarantineMaxKeys)") && text.contains("key [3]"), "{text}");
    // The window's transaction rolled back whole: nothing applied, nothing quarantined.
    assert!(s.customers().is_empty());
    assert!(s.quarantine().is_empty());
    assert_eq!(s.target.checkpoint(), Some("0.0000000000".into()));
}

#[test]
fn quarantine_rows_commit_with_the_fenced_checkpoint_so_a_stopped_applier_past_its_lease_writes_none() {
    let target = Target::start();
    target.execute(
        "app",
        "ALTER TABLE public.customers ADD CONSTRAINT no_bad CHECK (name <> 'bad');
         CREATE TABLE public.audit (n bigserial, id bigint, op text, app text);
         CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.audit (id, op, app) VALUES (NEW.id, TG_OP, current_setting('application_name')); RETURN NULL; END $$;
         CREATE TRIGGER audit AFTER INSERT OR UPDATE ON public.customers FOR EACH ROW EXECUTE FUNCTION public.audit();",
    );
    let pki = QueuePki::new();
    let udp = free_port().unwrap();
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &strs(&pki.ingest_args(udp, "2s")));
    let logs = tempfile::tempdir().unwrap();
    let queue = format!("localhost:{udp}");
    let flags = ["--onApplyError", "quarantine"];
    let a = Applier::start_flags("applier_a", &queue, (&target.url(), &pki, logs.path()), &flags);
    wait_for("the quarantine table", Duration::from_secs(30), || {
        target.query("SELECT to_regclass('_replicator.quarantine')::text") != [[None]]
    });
    // Applier A gets through its careful pass and waits to write the quarantine row.
    let blocker = lock_table(&target, "_replicator.quarantine", "EXCLUSIVE");
    let s = Setup { target, _journal: journal, ingest };
    let messages = [customer(1, "C 1", 1000), customer(13, "bad", 1000), customer(2, "C 2", 1000)];
    assert_eq!(s.ingest.post("/app/public", &body(&messages)).0, 200);
    assert_eq!(s.ingest.post("/app/public", format!(r#"{{"resolved":"{}"}}"#, at(1100)).as_bytes()).0, 200);
    let waiting = |app: &str| {
        let sql =
            format!("SELECT 'x' FROM pg_stat_activity WHERE application_name = '{app}' AND wait_event_type = 'Lock'");
        !s.target.query(&sql).is_empty()
    };
    wait_for("applier_a to wait on the quarantine table", Duration::from_secs(30), || waiting("applier_a"));
    a.signal("STOP");
    // Past the lease, B claims a newer epoch and waits on A's uncommitted rows.
    let _b = Applier::start_flags("applier_b", &queue, (&s.target.url(), &pki, logs.path()), &flags);
    wait_for("applier_b to wait on applier_a", Duration::from_secs(60), || waiting("applier_b"));
    drop(blocker);
    a.signal("CONT");
    wait_for("the window applied", Duration::from_secs(60), || {
        s.target.checkpoint().as_deref() == Some(at(1100).as_str())
    });
    wait_for("applier_a to report the fencing", Duration::from_secs(30), || a.log_text().contains("taken over"));
    assert_eq!(s.quarantine(), [row(&["customers", "[13]", &at(1000), "23514"])]);
    assert_eq!(s.customers(), [row(&["1", "C 1"]), row(&["2", "C 2"])]);
    let audit = s.target.query("SELECT id::text, op, app FROM public.audit ORDER BY n");
    assert_eq!(audit, [row(&["1", "INSERT", "applier_b"]), row(&["2", "INSERT", "applier_b"])]);
}
