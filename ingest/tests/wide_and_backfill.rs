//! Shapes a migration brings, against a real PostgreSQL and the real binary: a table of 1,000
//! columns applied in windows of 10,000 rows (inserts, then updates of every row), and a
//! schema-change backfill (every row re-sent in the new shape at one timestamp, a body of it sent
//! twice) applied once per row.

mod common;

use std::time::Duration;

use common::{Ingest, Target, wait_for};

const T: u64 = 1732615200000000000;
const COLUMNS: usize = 1000;
const ROWS: usize = 10_000;

fn hlc(at_ms: u64) -> String {
    format!("{}.0000000000", T + at_ms * 1_000_000)
}

fn post(ingest: &Ingest, messages: &[String]) {
    let body = format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len());
    let (status, text) = ingest.post("/app/public", body.as_bytes());
    assert_eq!(status, 200, "{text}");
}

fn resolve(ingest: &Ingest, target: &Target, at_ms: u64) {
    let (status, text) = ingest.post("/app/public", format!(r#"{{"resolved":"{}"}}"#, hlc(at_ms)).as_bytes());
    assert_eq!(status, 200, "{text}");
    let want = hlc(at_ms);
    wait_for("the window applied", Duration::from_secs(180), || target.checkpoint().as_deref() == Some(want.as_str()));
}

/// Row `id` of the wide table at `version`: column cN holds id * N + version.
fn wide_row(id: usize, version: usize, at_ms: u64) -> String {
    let mut after = format!(r#""id": {id}"#);
    for c in 1..COLUMNS {
        after.push_str(&format!(r#", "c{c}": {}"#, id * c + version));
    }
    format!(r#"{{"after": {{{after}}}, "key": [{id}], "topic": "wide", "updated": "{}"}}"#, hlc(at_ms))
}

#[test]
fn a_thousand_column_table_applies_in_ten_thousand_row_windows() {
    let target = Target::start();
    let columns: Vec<String> = (1..COLUMNS).map(|c| format!("c{c} bigint")).collect();
    target.execute("app", &format!("CREATE TABLE public.wide (id bigint PRIMARY KEY, {})", columns.join(", ")));
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    for (version, at) in [(0, 1000), (7, 3000)] {
        for chunk in (0..ROWS).collect::<Vec<_>>().chunks(500) {
            let messages: Vec<String> = chunk.iter().map(|&id| wide_row(id, version, at)).collect();
            post(&ingest, &messages);
        }
        resolve(&ingest, &target, at + 1000);
        // Every cell holds id * N + version: the sums say so exactly.
        let n = ROWS as u64;
        let ids: u64 = n * (n - 1) / 2;
        let want = |c: u64| (ids * c + n * version as u64).to_string();
        let got =
            target.query("SELECT count(*)::text, sum(c1)::text, sum(c500)::text, sum(c999)::text FROM public.wide");
        assert_eq!(got, [[Some(n.to_string()), Some(want(1)), Some(want(500)), Some(want(999))]], "version {version}");
    }
}

#[test]
fn a_backfill_of_the_whole_table_at_one_timestamp_applies_each_row_once() {
    const EVENTS: usize = 20_000;
    let target = Target::start();
    target.execute(
        "app",
        "CREATE TABLE public.event_audit (id bigint NOT NULL, note text);
         CREATE FUNCTION public.audit_event() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.event_audit VALUES (NEW.id, NEW.note); RETURN NEW; END $$;",
    );
    let journal = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(&target.url(), journal.path(), &[]);
    let event = |id: usize, note: Option<&str>, at: u64| {
        let note = note.map(|n| format!(r#", "note": "{n}{id}""#)).unwrap_or_default();
        format!(
            r#"{{"after": {{"amount": "{}.25", "id": {id}, "kind": "k{}", "tags": ["a"]{note}}}, "key": [{id}], "topic": "events", "updated": "{}"}}"#,
            id % 100,
            id % 7,
            hlc(at)
        )
    };
    let ids: Vec<usize> = (0..EVENTS).collect();
    for chunk in ids.chunks(1000) {
        post(&ingest, &chunk.iter().map(|&id| event(id, None, 1000)).collect::<Vec<_>>());
    }
    resolve(&ingest, &target, 1500);

    // ALTER TABLE events ADD COLUMN note … at the source and the target: CockroachDB re-sends the
    // whole table in the new shape, every row at the schema change's timestamp.
    target.execute(
        "app",
        "ALTER TABLE public.events ADD COLUMN note text;
         CREATE TRIGGER audit AFTER UPDATE ON public.events FOR EACH ROW EXECUTE FUNCTION public.audit_event();",
    );
    let chunks: Vec<&[usize]> = ids.chunks(1000).collect();
    // The ingest reads its catalog again at most once a second: until it has, the new column gets
    // 400 and CockroachDB retries, as here.
    let first: Vec<String> = chunks[0].iter().map(|&id| event(id, Some("n"), 2000)).collect();
    let body = format!(r#"{{"payload":[{}],"length":{}}}"#, first.join(","), first.len());
    wait_for("the new column accepted", Duration::from_secs(10), || {
        ingest.post("/app/public", body.as_bytes()).0 == 200
    });
    for (i, chunk) in chunks.iter().enumerate().skip(1) {
        let messages: Vec<String> = chunk.iter().map(|&id| event(id, Some("n"), 2000)).collect();
        post(&ingest, &messages);
        if i == 3 {
            post(&ingest, &messages); // a retry of a body whose answer was lost
        }
    }
    resolve(&ingest, &target, 2500);
    let got = target.query("SELECT count(*)::text, count(DISTINCT id)::text, count(*) FILTER (WHERE note = 'n' || id)::text FROM public.event_audit");
    let n = Some(EVENTS.to_string());
    assert_eq!(got, [[n.clone(), n.clone(), n.clone()]], "every row updated exactly once, in the new shape");
    let rows = target.query("SELECT count(*)::text, count(note)::text FROM public.events");
    assert_eq!(rows, [[n.clone(), n]]);
}
