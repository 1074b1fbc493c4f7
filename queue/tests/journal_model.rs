//! Model-based property test: the journal against a plain in-memory model, with reopen steps.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use wharf_queue::journal::Tables;
use wharf_queue::{ChunkLimits, Hlc, Journal, JournalConfig, Partition, Resolved, Row, WindowCursor};

#[derive(Clone, Debug)]
enum Op {
    Append(usize, Vec<(u64, u8, u8, Option<u8>)>),
    Resolve(usize, u64),
    MarkApplied(usize, u64),
    Reopen,
}

type Entries = BTreeMap<(Hlc, String, Vec<u8>), Option<Vec<u8>>>;

#[derive(Default)]
struct Model {
    entries: HashMap<usize, Entries>,
    resolved: HashMap<usize, Hlc>,
    applied: HashMap<usize, Hlc>,
}

fn partition(i: usize) -> Partition {
    Partition::new("db", format!("s{i}"))
}

fn row((wall, table, key, value): (u64, u8, u8, Option<u8>)) -> Row {
    Row {
        hlc: Hlc::new(wall, 0),
        table: format!("t{table}"),
        key: format!("[{key}]").into_bytes(),
        after: value.map(|v| format!("{{\"v\":{v}}}").into_bytes()),
    }
}

fn op() -> impl Strategy<Value = Op> {
    let row = (1u64..40, 0u8..3, 0u8..5, proptest::option::of(any::<u8>()));
    prop_oneof![
        4 => (0usize..2, proptest::collection::vec(row, 0..8)).prop_map(|(p, rows)| Op::Append(p, rows)),
        2 => (0usize..2, 1u64..40).prop_map(|(p, t)| Op::Resolve(p, t)),
        1 => (0usize..2, 1u64..40).prop_map(|(p, t)| Op::MarkApplied(p, t)),
        1 => Just(Op::Reopen),
    ]
}

/// Parent-first table order the reader is given: `t2` is the parent of `t1`, `t1` of `t0`.
const TABLE_ORDER: [&str; 3] = ["t2", "t1", "t0"];
const MAX_ROWS: usize = 3;

/// Reads a window chunk by chunk and checks what every chunk promises: at most [`MAX_ROWS`] rows,
/// timestamps never go back, `complete_through` covers exactly the rows delivered so far, and a
/// timestamp served in several chunks comes as deletes children-first, then upserts parents-first.
/// With `only`, the window of those tables alone (a foreign-key group's).
fn read_all(journal: &Journal, p: &Partition, after: Hlc, upto: Hlc, only: Option<&[&str]>) -> Vec<Row> {
    let order: Vec<String> = TABLE_ORDER.iter().map(|t| t.to_string()).collect();
    let mut cursor = WindowCursor::new(after, upto, order);
    if let Some(only) = only {
        cursor = cursor.only(Tables::new(only.iter().map(|t| t.to_string()).collect()));
    }
    let limits = ChunkLimits { max_rows: MAX_ROWS, max_bytes: 1 << 20 };
    let mut out: Vec<Row> = Vec::new();
    let mut split: Vec<Hlc> = Vec::new();
    loop {
        let chunk = journal.read_chunk(p, &mut cursor, limits).unwrap();
        assert!(chunk.rows.len() <= MAX_ROWS, "chunk of {} rows", chunk.rows.len());
        out.extend(chunk.rows.to_rows());
        match chunk.complete_through {
            Some(t) => assert!(out.iter().all(|r| r.hlc <= t), "rows above complete_through {t}"),
            None => split.extend(out.last().map(|r| r.hlc)),
        }
        if chunk.last {
            assert_eq!(chunk.complete_through, Some(upto));
            break;
        }
    }
    assert!(out.windows(2).all(|w| w[0].hlc <= w[1].hlc), "timestamps went back");
    let rank = |t: &str| TABLE_ORDER.iter().position(|x| *x == t).unwrap() as i64;
    let apply_order = |r: &Row| match r.after {
        None => (0, -rank(&r.table), r.key.clone()),
        Some(_) => (1, rank(&r.table), r.key.clone()),
    };
    for hlc in split {
        let group: Vec<&Row> = out.iter().filter(|r| r.hlc == hlc).collect();
        assert!(
            group.windows(2).all(|w| apply_order(w[0]) <= apply_order(w[1])),
            "large timestamp {hlc} out of FK order"
        );
    }
    out.sort_by(|a, b| (a.hlc, &a.table, &a.key).cmp(&(b.hlc, &b.table, &b.key)));
    out
}

/// Bytes of the segment files in `dir`.
fn segment_bytes_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn check(journal: &Journal, model: &Model) {
    for i in 0..2 {
        let p = partition(i);
        let applied = model.applied.get(&i).copied().unwrap_or(Hlc::ZERO);
        let resolved = model.resolved.get(&i).copied().unwrap_or(Hlc::ZERO);
        assert_eq!(journal.resolved(&p).unwrap_or(Hlc::ZERO).max(applied), resolved.max(applied));
        let got = read_all(journal, &p, applied, resolved, None);
        let want: Vec<Row> = model
            .entries
            .get(&i)
            .map(|e| {
                e.iter()
                    .filter(|((h, _, _), _)| *h > applied && *h <= resolved)
                    .map(|((hlc, table, key), after)| Row {
                        hlc: *hlc,
                        table: table.clone(),
                        key: key.clone(),
                        after: after.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, want, "window ({applied}, {resolved}] of {p}");
        // Groups' windows: each its tables' rows, the same as the whole window's (`T2` as the
        // catalog may spell a table the feed sends in lower case).
        for group in [&["t0", "t1"][..], &["T2"][..]] {
            let got = read_all(journal, &p, applied, resolved, Some(group));
            let mine = |r: &&Row| group.iter().any(|t| t.eq_ignore_ascii_case(&r.table));
            let want: Vec<Row> = want.iter().filter(mine).cloned().collect();
            assert_eq!(got, want, "window ({applied}, {resolved}] of {p}, tables {group:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn journal_matches_model_across_reopens(
        ops in proptest::collection::vec(op(), 1..40),
        // Tiny segments exercise closing, the marks at a segment's start and deleting applied ones.
        segment_bytes in prop_oneof![Just(200u64), Just(2_000), Just(wharf_queue::journal::DEFAULT_SEGMENT_BYTES)],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig { segment_bytes, ..JournalConfig::scratch(dir.path()) };
        let mut journal = Journal::open(&config).unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(i, rows) => {
                    let rows: Vec<Row> = rows.into_iter().map(row).collect();
                    let applied = model.applied.get(&i).copied().unwrap_or(Hlc::ZERO);
                    let out = rt.block_on(journal.append_durable(&partition(i), &rows)).unwrap();
                    prop_assert_eq!(out.dropped_stale, rows.iter().filter(|r| r.hlc <= applied).count());
                    for r in rows.into_iter().filter(|r| r.hlc > applied) {
                        model.entries.entry(i).or_default().insert((r.hlc, r.table, r.key), r.after);
                    }
                }
                Op::Resolve(i, wall) => {
                    let hlc = Hlc::new(wall, 0);
                    let floor = model.resolved.get(&i).copied().unwrap_or(Hlc::ZERO).max(model.applied.get(&i).copied().unwrap_or(Hlc::ZERO));
                    let out = rt.block_on(journal.resolve_durable(&partition(i), hlc)).unwrap();
                    if hlc > floor {
                        prop_assert_eq!(out, Resolved::Advanced);
                        model.resolved.insert(i, hlc);
                    } else {
                        prop_assert_eq!(out, Resolved::Stale { current: floor });
                    }
                }
                Op::MarkApplied(i, wall) => {
                    // The applier only marks what a resolved timestamp covered.
                    let resolved = model.resolved.get(&i).copied().unwrap_or(Hlc::ZERO);
                    let hlc = Hlc::new(wall, 0).min(resolved);
                    journal.mark_applied(&partition(i), hlc).unwrap();
                    let applied = model.applied.entry(i).or_default();
                    *applied = (*applied).max(hlc);
                    let applied = *applied;
                    model.entries.entry(i).or_default().retain(|(h, _, _), _| *h > applied);
                }
                Op::Reopen => {
                    drop(journal);
                    journal = Journal::open(&config).unwrap();
                    journal.verified().unwrap();
                }
            }
            rt.block_on(journal.wait_written());
            check(&journal, &model);
            prop_assert_eq!(journal.disk_bytes(), segment_bytes_on_disk(dir.path()));
        }
    }
}
