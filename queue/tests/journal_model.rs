//! Model-based property test: the journal against a plain in-memory model, with reopen steps.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use wharf_queue::{Hlc, Journal, JournalConfig, Partition, Resolved, Row, WindowCursor};

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

fn read_all(journal: &Journal, p: &Partition, after: Hlc, upto: Hlc) -> Vec<Row> {
    let mut cursor = WindowCursor::new(after, upto);
    let mut out = Vec::new();
    while !cursor.is_done() {
        out.extend(journal.read_chunk(p, &mut cursor, 3).unwrap());
    }
    out
}

fn check(journal: &Journal, model: &Model) {
    for i in 0..2 {
        let p = partition(i);
        let applied = model.applied.get(&i).copied().unwrap_or(Hlc::ZERO);
        let resolved = model.resolved.get(&i).copied().unwrap_or(Hlc::ZERO);
        assert_eq!(journal.resolved(&p).unwrap_or(Hlc::ZERO).max(applied), resolved.max(applied));
        let got = read_all(journal, &p, applied, resolved);
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
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn journal_matches_model_across_reopens(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig::new(dir.path());
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
                }
            }
            rt.block_on(journal.wait_indexed());
            check(&journal, &model);
        }
    }
}
