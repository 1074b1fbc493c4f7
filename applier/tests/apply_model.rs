//! Property test of the apply path against a real PostgreSQL: random streams with duplicates,
//! re-ordering, re-emission, deletes and resolved timestamps. The target must equal the model at
//! the last resolved timestamp, and nothing later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats};
use wharf_queue::{DEFAULT_LEASE_TIMEOUT, Hlc, Journal, JournalConfig, LocalClient, Partition, QueueService, Row};
use wharf_testkit::LocalPg;

#[derive(Clone, Debug)]
enum Op {
    /// Write key `k` (None deletes it); `same_txn` keeps the previous timestamp.
    Write {
        k: u8,
        v: Option<u16>,
        same_txn: bool,
    },
    Resolve,
    /// Re-send every row since the previous resolved timestamp, shuffled (a changefeed restart).
    Reemit,
    /// Re-send an old row (a late duplicate, possibly at or below an applied checkpoint).
    Duplicate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..12, proptest::option::weighted(0.8, any::<u16>()), proptest::bool::weighted(0.2)).prop_map(|(k, v, same_txn)| Op::Write { k, v, same_txn }),
        2 => Just(Op::Resolve),
        1 => Just(Op::Reemit),
        1 => any::<usize>().prop_map(Op::Duplicate),
    ]
}

fn row(hlc: Hlc, k: u8, v: Option<u16>) -> Row {
    Row {
        hlc,
        table: "kv".into(),
        key: format!("[{k}]").into_bytes(),
        after: v.map(|v| format!("{{\"k\":{k},\"v\":\"v{v}\",\"n\":{v}}}").into_bytes()),
    }
}

struct Fixture {
    pg: LocalPg,
    rt: tokio::runtime::Runtime,
    case: AtomicUsize,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pg = LocalPg::start().expect("start PostgreSQL");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let c = wharf_targetdb::connect(&pg.url("postgres")).await.unwrap();
            c.batch_execute("CREATE DATABASE app").await.unwrap();
        });
        Fixture { pg, rt, case: AtomicUsize::new(0) }
    })
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fx = fixture();
    let schema = format!("p{}", fx.case.fetch_add(1, Ordering::SeqCst));
    let url = fx.pg.url("app");
    fx.rt.block_on(async {
        let client = wharf_targetdb::connect(&url).await.unwrap();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema}; CREATE TABLE {schema}.kv (k integer PRIMARY KEY, v text NOT NULL, n integer)"
            ))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
        let partition = Partition::new("app", &schema);
        let stop = CancellationToken::new();
        let config =
            // Tiny chunks and transactions: windows split into several commits, and timestamps
            // larger than a chunk are streamed table by table.
            ApplierConfig { chunk_rows: 3, chunk_bytes: 1 << 20, commit_rows: 5, ..ApplierConfig::new(&url, "_replicator", 2) };
        let queue = LocalClient::new(QueueService::new(journal.clone(), DEFAULT_LEASE_TIMEOUT), "test", 2);
        let applier = tokio::spawn(wharf_applier::run(config, queue, Arc::new(ApplyStats::default()), stop.clone()));

        let mut wall = 0u64;
        let mut history: Vec<Row> = Vec::new();
        let mut since_resolved: Vec<Row> = Vec::new();
        let mut resolved = Hlc::ZERO;
        let mut rng_state = 0x9e3779b97f4a7c15u64;
        for op in ops {
            match op {
                Op::Write { k, v, same_txn } => {
                    // A resolved timestamp R promises no more rows at or below R, so a write
                    // after it always starts a new timestamp (as CockroachDB's do).
                    if !same_txn || wall == 0 || Hlc::new(wall, 0) <= resolved {
                        wall += 1;
                    }
                    let r = row(Hlc::new(wall, 0), k, v);
                    journal.append_durable(&partition, std::slice::from_ref(&r)).await.unwrap();
                    // A transaction emits only the last write of each row (as CockroachDB does), so
                    // an earlier write of this key at this timestamp is never sent again.
                    let same_row = |o: &Row| o.hlc == r.hlc && o.key == r.key;
                    history.retain(|o| !same_row(o));
                    since_resolved.retain(|o| !same_row(o));
                    history.push(r.clone());
                    since_resolved.push(r);
                }
                Op::Resolve => {
                    let hlc = Hlc::new(wall, 0);
                    journal.resolve_durable(&partition, hlc).await.unwrap();
                    resolved = resolved.max(hlc);
                    since_resolved.clear();
                }
                Op::Reemit => {
                    let mut batch = since_resolved.clone();
                    for i in (1..batch.len()).rev() {
                        rng_state ^= rng_state << 13;
                        rng_state ^= rng_state >> 7;
                        rng_state ^= rng_state << 17;
                        batch.swap(i, (rng_state % (i as u64 + 1)) as usize);
                    }
                    journal.append_durable(&partition, &batch).await.unwrap();
                }
                Op::Duplicate(i) if !history.is_empty() => {
                    let r = history[i % history.len()].clone();
                    journal.append_durable(&partition, &[r]).await.unwrap();
                }
                Op::Duplicate(_) => {}
            }
        }
        // The model: the last version of each key at or below the last resolved timestamp.
        let mut model: BTreeMap<u8, Option<u16>> = BTreeMap::new();
        for r in history.iter().filter(|r| r.hlc <= resolved) {
            let k: u8 = std::str::from_utf8(&r.key).unwrap().trim_matches(|c| c == '[' || c == ']').parse().unwrap();
            let v = r.after.as_ref().map(|a| {
                let text = std::str::from_utf8(a).unwrap();
                text.rsplit(':').next().unwrap().trim_end_matches('}').parse::<u16>().unwrap()
            });
            model.insert(k, v);
        }
        let want: Vec<(i32, String, i32)> =
            model.into_iter().filter_map(|(k, v)| v.map(|v| (k as i32, format!("v{v}"), v as i32))).collect();
        let key = partition.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        if resolved > Hlc::ZERO {
            loop {
                let row = client
                    .query_opt("SELECT resolved FROM _replicator.checkpoints WHERE partition = $1", &[&key])
                    .await;
                if row.ok().flatten().map(|r| r.get::<_, String>(0)) == Some(resolved.to_string()) {
                    break;
                }
                assert!(Instant::now() < deadline, "checkpoint {resolved} never applied");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        stop.cancel();
        applier.await.unwrap();
        let got: Vec<(i32, String, i32)> = client
            .query(&format!("SELECT k, v, n FROM {schema}.kv ORDER BY k"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        prop_assert_eq!(got, want);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 200, ..ProptestConfig::default() })]
    #[test]
    fn target_equals_the_model_at_the_last_resolved_timestamp(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(ops)?;
    }
}
