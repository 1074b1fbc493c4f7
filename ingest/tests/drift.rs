//! Schema drift during a live migration, against a real PostgreSQL and the real binary: a source
//! column or table the target lacks under `halt` (refused, and said so in the 400, `/_/readyz`,
//! metrics and `wharfctl status`'s data, until the target has it) and under `ignore` (dropped,
//! counted, applied once the target has it); and a target-side type change while a feed runs.

mod common;

use std::time::Duration;

use common::{Ingest, QueuePki, Target, free_port, request, strs, wait_for};
use wharf_queue::quic::{ClientSettings, QuicClient, TlsFiles};

const T: u64 = 1732615200000000000;

fn customer(id: u64, extra: &str, at_ms: u64) -> String {
    format!(
        r#"{{"after": {{"created_at": "2024-11-26T10:00:01Z", "email": "c{id}@example.com", "id": {id}, "name": "C {id}"{extra}}}, "key": [{id}], "topic": "customers", "updated": "{}.0000000000"}}"#,
        T + at_ms * 1_000_000
    )
}

fn body(messages: &[String]) -> Vec<u8> {
    format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len()).into_bytes()
}

fn resolved(at_ms: u64) -> Vec<u8> {
    format!(r#"{{"resolved":"{}.0000000000"}}"#, T + at_ms * 1_000_000).into_bytes()
}

/// An ingest with one embedded applier and the queue service on (for the status data).
struct Setup {
    target: Target,
    pki: QueuePki,
    udp: u16,
    _journal: tempfile::TempDir,
    ingest: Ingest,
}

impl Setup {
    fn start(extra: &[&str]) -> Setup {
        let target = Target::start();
        let pki = QueuePki::new();
        let udp = free_port().unwrap();
        let journal = tempfile::tempdir().unwrap();
        let mut args = pki.ingest_args(udp, "10s");
        args[1] = "1".into(); // one embedded applier beside the queue service
        let mut args = strs(&args);
        args.extend_from_slice(extra);
        let ingest = Ingest::start(&target.url(), journal.path(), &args);
        Setup { target, pki, udp, _journal: journal, ingest }
    }

    fn get(&self, path: &str) -> (u16, String) {
        request(self.ingest.port, "GET", path, b"").unwrap()
    }

    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let (_, text) = self.get("/_/varz");
        text.lines().find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
    }

    fn status(&self) -> wharf_queue::ServiceStatus {
        let tls = TlsFiles {
            certificate: self.pki.path("applier.crt").into(),
            private_key: self.pki.path("applier.key").into(),
            ca: self.pki.path("ca.crt").into(),
        };
        let settings =
            ClientSettings { addr: format!("localhost:{}", self.udp), tls, name: "status".into(), workers: 0 };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { QuicClient::new(settings).unwrap().status().await.unwrap() })
    }

    fn customers(&self) -> Vec<Vec<Option<String>>> {
        self.target.query("SELECT id::text, name FROM public.customers ORDER BY id")
    }
}

#[test]
fn a_new_source_column_halts_visibly_until_the_target_has_it_then_everything_applies() {
    let s = Setup::start(&[]);
    let row = body(&[customer(1, r#", "loyalty": 7"#, 1000)]);
    let (status, text) = s.ingest.post("/app/public", &row);
    assert_eq!(
        (status, text.trim()),
        (
            400,
            r#"message 0: table "customers" has no column "loyalty" (add it to the target first, or drop it: --onUnknownColumn app.public=ignore)"#
        )
    );
    // Visible at once, from the first refused request: no resolved timestamp has been sent, so well
    // within one resolved interval.
    let (status, text) = s.get("/_/readyz");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains(r#"app.public: table "customers" has no column "loyalty": 1 requests refused"#), "{text}");
    let drift = r#"wharf_schema_drift_total{schema="app.public",table="customers",kind="unknown_column"}"#;
    assert_eq!(s.metric(drift), Some(1.0));
    let status = s.status();
    assert_eq!(status.drift.len(), 1, "{:?}", status.drift);
    let d = &status.drift[0];
    assert_eq!(
        (d.partition.as_str(), d.table.as_str(), d.column.as_deref(), d.kind.as_str(), d.policy.as_str(), d.refused),
        ("app.public", "customers", Some("loyalty"), "unknown_column", "halt", 1)
    );

    s.target.execute("app", "ALTER TABLE public.customers ADD COLUMN loyalty integer");
    // The catalog is read again at most once a second when a payload names something unknown.
    wait_for("the retried request accepted", Duration::from_secs(10), || s.ingest.post("/app/public", &row).0 == 200);
    assert_eq!(s.get("/_/readyz").0, 200);
    assert_eq!(s.ingest.post("/app/public", &resolved(2000)).0, 200);
    wait_for("the row applied", Duration::from_secs(30), || {
        s.target.query("SELECT loyalty::text FROM public.customers WHERE id = 1") == [[Some("7".to_owned())]]
    });
    assert!(s.status().drift.is_empty());
}

#[test]
fn an_unknown_table_halts_with_its_name() {
    let s = Setup::start(&[]);
    let message =
        r#"{"after": {"id": 1}, "key": [1], "topic": "coupons", "updated": "1732615201000000000.0000000000"}"#;
    let (status, text) = s.ingest.post("/app/public", &body(&[message.to_owned(), customer(1, "", 1000)]));
    assert_eq!(
        (status, text.trim()),
        (
            400,
            r#"message 0: table "coupons" does not exist in target schema "public" (create it first, or drop its rows: --onUnknownTable app.public=ignore)"#
        )
    );
    let (status, text) = s.get("/_/readyz");
    assert!(status == 503 && text.contains(r#"app.public: no table "coupons": 1 requests refused"#), "{text}");
    assert!(s.customers().is_empty());
}

#[test]
fn under_ignore_unknown_columns_and_tables_are_dropped_counted_and_a_column_added_later_applies() {
    let s = Setup::start(&["--onUnknownColumn", "app.public=ignore", "--onUnknownTable", "ignore"]);
    let coupon = r#"{"after": {"id": 1}, "key": [1], "topic": "coupons", "updated": "1732615201000000000.0000000000"}"#;
    let rows =
        body(&[customer(1, r#", "loyalty": 7"#, 1000), coupon.to_owned(), customer(2, r#", "loyalty": 8"#, 1000)]);
    assert_eq!(s.ingest.post("/app/public", &rows).0, 200);
    let (status, text) = s.get("/_/readyz");
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"warning: schema drift ignored: app.public: table "customers" has no column "loyalty": ignored in 2 rows"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"warning: schema drift ignored: app.public: no table "coupons": ignored in 1 rows"#),
        "{text}"
    );
    let column = r#"wharf_schema_drift_total{schema="app.public",table="customers",kind="unknown_column"}"#;
    let table = r#"wharf_schema_drift_total{schema="app.public",table="coupons",kind="unknown_table"}"#;
    assert_eq!((s.metric(column), s.metric(table)), (Some(2.0), Some(1.0)));
    assert_eq!(s.ingest.post("/app/public", &resolved(2000)).0, 200);
    wait_for("both customers applied", Duration::from_secs(30), || s.customers().len() == 2);

    // Once the target has the column, it is applied from then on.
    s.target.execute("app", "ALTER TABLE public.customers ADD COLUMN loyalty integer");
    let mut id = 10;
    wait_for("a row applied with its loyalty", Duration::from_secs(30), || {
        id += 1;
        let at = 3000 + 10 * id;
        assert_eq!(s.ingest.post("/app/public", &body(&[customer(id, &format!(r#", "loyalty": {id}"#), at)])).0, 200);
        assert_eq!(s.ingest.post("/app/public", &resolved(at + 1)).0, 200);
        wait_for("the row", Duration::from_secs(30), || {
            s.target.query(&format!("SELECT count(*)::text FROM public.customers WHERE id = {id}"))
                == [[Some("1".into())]]
        });
        s.target.query(&format!("SELECT loyalty::text FROM public.customers WHERE id = {id}"))
            == [[Some(id.to_string())]]
    });
    let loyalty = s.target.query("SELECT loyalty::text FROM public.customers WHERE id <= 2 ORDER BY id");
    assert_eq!(loyalty, [[None], [None]], "rows journaled while ignored keep the column's default");
}

#[test]
fn a_column_type_changed_in_the_target_while_a_feed_runs_is_picked_up_at_the_next_window() {
    let s = Setup::start(&[]);
    let event = |id: u64, at: u64| {
        format!(
            r#"{{"after": {{"id": {id}, "kind": "click", "amount": "1.50", "tags": null}}, "key": [{id}], "topic": "events", "updated": "{}.0000000000"}}"#,
            T + at * 1_000_000
        )
    };
    assert_eq!(s.ingest.post("/app/public", &body(&[event(1, 1000)])).0, 200);
    assert_eq!(s.ingest.post("/app/public", &resolved(1500)).0, 200);
    wait_for("the first event", Duration::from_secs(30), || {
        s.target.query("SELECT count(*)::text FROM public.events") == [[Some("1".into())]]
    });
    // The applier's cached statements cast `kind` to text; the column becomes an enum.
    s.target.execute(
        "app",
        "CREATE TYPE public.event_kind AS ENUM ('click', 'view');
         ALTER TABLE public.events ALTER COLUMN kind TYPE public.event_kind USING kind::public.event_kind",
    );
    assert_eq!(s.ingest.post("/app/public", &body(&[event(2, 2000), event(1, 2000)])).0, 200);
    assert_eq!(s.ingest.post("/app/public", &resolved(2500)).0, 200);
    // Well inside the minute a failed window would pause the partition for.
    wait_for("the second window applied", Duration::from_secs(20), || {
        s.target.checkpoint().as_deref() == Some("1732615202500000000.0000000000")
    });
    let rows = s.target.query("SELECT id::text, kind::text FROM public.events ORDER BY id");
    assert_eq!(rows, [[Some("1".into()), Some("click".into())], [Some("2".into()), Some("click".into())]]);
}

#[test]
fn a_row_the_target_rejects_under_halt_names_table_key_and_sqlstate_until_the_target_is_fixed() {
    let s = Setup::start(&[]);
    s.target.execute("app", "ALTER TABLE public.customers ADD CONSTRAINT not_13 CHECK (id <> 13)");
    assert_eq!(s.ingest.post("/app/public", &body(&[customer(1, "", 1000), customer(13, "", 1000)])).0, 200);
    assert_eq!(s.ingest.post("/app/public", &resolved(1500)).0, 200);
    wait_for("readiness to say the apply is blocked", Duration::from_secs(30), || {
        let (status, text) = s.get("/_/readyz");
        status == 503 && text.contains("apply blocked") && text.contains("app.public: ")
    });
    let (_, text) = s.get("/_/readyz");
    assert!(text.contains(r#"violates check constraint "not_13" (SQLSTATE 23514)"#), "{text}");
    assert!(text.contains(r#"relation "customers""#), "{text}");
    // The refused row is found (a CHECK violation's message names no key) and named.
    assert!(text.contains("table customers, key [13], version 1732615201000000000.0000000000"), "{text}");
    let lease = s.status().partitions.into_iter().find(|p| p.lease.partition == "app.public").unwrap().lease;
    assert!(lease.blocked.as_deref().is_some_and(|b| b.contains("SQLSTATE 23514")), "{lease:?}");
    assert_eq!(s.metric(r#"wharf_partition_blocked{schema="app.public"}"#), Some(1.0));
    assert!(s.customers().is_empty(), "nothing of the window is applied");

    s.target.execute("app", "ALTER TABLE public.customers DROP CONSTRAINT not_13");
    // The partition is retried when its one-minute pause ends.
    wait_for("the window applied after the fix", Duration::from_secs(120), || {
        s.target.checkpoint().as_deref() == Some("1732615201500000000.0000000000")
    });
    assert_eq!(s.customers().len(), 2);
    wait_for("readiness back", Duration::from_secs(10), || s.get("/_/readyz").0 == 200);
    assert_eq!(s.metric(r#"wharf_partition_blocked{schema="app.public"}"#), Some(0.0));
    assert_eq!(s.status().partitions[0].lease.blocked, None);
}
