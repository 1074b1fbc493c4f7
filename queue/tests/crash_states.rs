//! Power cuts at every step of a journal's life, on the power-cut filesystem, with what a real
//! disk may leave of the unsynced writes (torn pages and sectors, grown lengths of zeros, a prefix
//! of each directory's operations): appends in groups, rotation, deletion of applied segments, a
//! reopen. After each cut the journal opens (no false alarm), holds every acknowledged row and
//! resolved timestamp and nothing never sent; a second cut during that open's recovery changes
//! nothing of it.

mod on_powercut;

use std::path::Path;

use on_powercut::{Ack, Acks, Disk, p, row, runtime};
use wharf_powercut::Chooser;
use wharf_queue::{Hlc, Journal, JournalConfig, Row};

fn config(dir: &Path) -> JournalConfig {
    // Tiny segments: rotation and deletion happen every few requests.
    JournalConfig { segment_bytes: 600, ..JournalConfig::scratch(dir) }
}

/// Appends rows of partition `i` as one request and notes what was acknowledged.
async fn append(journal: &Journal, disk: &Disk, acks: &std::sync::Mutex<Acks>, i: u8, rows: Vec<Row>) {
    acks.lock().unwrap().sent.extend(rows.iter().map(|r| (p(i), r.clone())));
    journal.append_durable(&p(i), &rows).await.unwrap();
    acks.lock().unwrap().acked.push((disk.cut.ops(), Ack::Rows(p(i), rows)));
}

async fn resolve(journal: &Journal, disk: &Disk, acks: &std::sync::Mutex<Acks>, i: u8, wall: u64) {
    journal.resolve_durable(&p(i), Hlc::new(wall, 0)).await.unwrap();
    acks.lock().unwrap().acked.push((disk.cut.ops(), Ack::Resolved(p(i), Hlc::new(wall, 0))));
}

fn rows(wall: u64, keys: std::ops::Range<u64>) -> Vec<Row> {
    keys.map(|k| row(wall, k)).collect()
}

/// A journal's life: concurrent requests of two partitions, resolved timestamps, applied marks
/// that let segments go, a reopen and more of the same.
fn life(dir: &Path, disk: &Disk) -> Acks {
    let rt = runtime();
    let acks = std::sync::Mutex::new(Acks::default());
    for life in 0..2u64 {
        let journal = Journal::open(&config(dir)).unwrap();
        for round in 1..=4u64 {
            let wall = life * 100 + round * 10;
            let keys = wall * 10..wall * 10 + 3;
            rt.block_on(async {
                tokio::join!(
                    append(&journal, disk, &acks, 1, rows(wall, keys.clone())),
                    append(&journal, disk, &acks, 2, rows(wall, keys.clone())),
                );
                resolve(&journal, disk, &acks, 1, wall).await;
                resolve(&journal, disk, &acks, 2, wall).await;
            });
            // The appliers commit what was resolved a round before.
            for i in [1, 2] {
                acks.lock().unwrap().reported.push((disk.cut.ops(), p(i), Hlc::new(wall - 10, 0)));
                journal.mark_applied(&p(i), Hlc::new(wall - 10, 0)).unwrap();
            }
        }
        drop(journal);
    }
    acks.into_inner().unwrap()
}

/// Opens after a cut and checks against what was acknowledged before operation `crash`.
fn open_and_check(dir: &Path, acks: &Acks, crash: u64, context: &str) -> Journal {
    let journal = Journal::open(&config(dir)).unwrap_or_else(|e| panic!("{context}: refused after a power cut: {e}"));
    journal.verified().unwrap_or_else(|e| panic!("{context}: failed its check after a power cut: {e}"));
    acks.check(&journal, crash, context);
    journal
}

#[test]
fn a_power_cut_at_any_step_loses_nothing_acknowledged_and_refuses_nothing() {
    let mut disk = Disk::mount();
    // A dry run counts the steps.
    let start = disk.cut.ops();
    life(&disk.path("dry"), &disk);
    let steps = disk.cut.ops() - start;
    std::fs::remove_dir_all(disk.path("dry")).unwrap();
    assert!(steps > 100, "{steps} steps");
    let seeds: u64 = std::env::var("WHARF_CRASH_SEEDS").map_or(2, |v| v.parse().expect("WHARF_CRASH_SEEDS"));
    let mut runs = 0;
    for step in 0..steps + 10 {
        for seed in 0..seeds {
            runs += 1;
            let dir = disk.path(&format!("run-{runs}"));
            let base = disk.cut.ops();
            let chooser = if seed == 0 { Chooser::strict() } else { Chooser::new(step * 1000 + seed) };
            disk.cut.arm_crash(base + step, chooser.clone());
            let acks = life(&dir, &disk);
            disk.cut.restore_crash().unwrap();
            let context = format!("step {step}, seed {seed} ({chooser:?})");
            let journal = open_and_check(&dir, &acks, base + step, &context);
            drop(journal);
            // And a second cut somewhere in the next open's recovery.
            let recovery = disk.cut.ops();
            disk.cut.arm_crash(recovery + (step * 7 + seed) % 12, Chooser::new(step ^ seed));
            drop(open_and_check(&dir, &acks, base + step, &context));
            disk.cut.restore_crash().unwrap();
            drop(open_and_check(&dir, &acks, base + step, &format!("{context}, cut during recovery")));
            // Each crash copies the whole filesystem: keep it small.
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    eprintln!("{runs} power cuts over {steps} steps");
}

#[derive(Clone, Debug)]
enum Step {
    Append(u8, Vec<(u64, u64)>),
    Resolve(u8, u64),
    MarkApplied(u8, u64),
    Reopen,
    /// A power cut with these choices, right now.
    Cut(u64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1u8..=2, proptest::collection::vec((1u64..40, 0u64..6), 1..5)).prop_map(|(i, r)| Step::Append(i, r)),
        2 => (1u8..=2, 1u64..40).prop_map(|(i, t)| Step::Resolve(i, t)),
        1 => (1u8..=2, 1u64..40).prop_map(|(i, t)| Step::MarkApplied(i, t)),
        1 => Just(Step::Reopen),
        1 => any::<u64>().prop_map(Step::Cut),
    ]
}

/// The journal model test's steps with power cuts among them: what was acknowledged stays.
#[test]
fn journal_matches_what_was_acknowledged_across_power_cuts() {
    use proptest::prelude::*;
    let disk = std::cell::RefCell::new(Disk::mount());
    let case = std::cell::Cell::new(0);
    let config = ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() };
    proptest::test_runner::TestRunner::new(config)
        .run(&proptest::collection::vec(step(), 1..30), |steps| {
            case.set(case.get() + 1);
            let mut disk = disk.borrow_mut();
            let dir = disk.path(&format!("case-{}", case.get()));
            run_steps(&mut disk, &dir, steps);
            std::fs::remove_dir_all(&dir).unwrap();
            Ok(())
        })
        .unwrap();
}

fn run_steps(disk: &mut Disk, dir: &Path, steps: Vec<Step>) {
    let rt = runtime();
    let mut acks = Acks::default();
    let mut journal = Some(Journal::open(&config(dir)).unwrap());
    let mut version: u64 = 0;
    for step in steps {
        let j = journal.as_ref().unwrap();
        match step {
            Step::Append(i, keys) => {
                version += 1;
                let rows: Vec<Row> = keys
                    .into_iter()
                    .map(|(wall, key)| {
                        let mut r = row(wall, key);
                        r.after = Some(format!("{{\"v\":{version}}}").into_bytes());
                        r
                    })
                    .collect();
                acks.sent.extend(rows.iter().map(|r| (p(i), r.clone())));
                rt.block_on(j.append_durable(&p(i), &rows)).unwrap();
                acks.acked.push((disk.cut.ops(), Ack::Rows(p(i), rows)));
            }
            Step::Resolve(i, wall) => {
                rt.block_on(j.resolve_durable(&p(i), Hlc::new(wall, 0))).unwrap();
                acks.acked.push((disk.cut.ops(), Ack::Resolved(p(i), Hlc::new(wall, 0))));
            }
            Step::MarkApplied(i, wall) => {
                let upto = j.resolved(&p(i)).unwrap_or(Hlc::ZERO).min(Hlc::new(wall, 0));
                acks.reported.push((disk.cut.ops(), p(i), upto));
                j.mark_applied(&p(i), upto).unwrap();
            }
            Step::Reopen => {
                drop(journal.take());
                journal = Some(Journal::open(&config(dir)).unwrap());
            }
            Step::Cut(seed) => {
                disk.cut.arm_crash(disk.cut.ops(), Chooser::new(seed));
                drop(journal.take());
                disk.cut.restore_crash().unwrap();
                journal = Some(Journal::open(&config(dir)).unwrap_or_else(|e| panic!("refused after a cut: {e}")));
            }
        }
        let j = journal.as_ref().unwrap();
        j.verified().unwrap();
        check_newest(j, &acks);
    }
}

/// The newest acknowledged version of every key above the applied checkpoint is what the
/// journal holds (older versions of a key may be merged away).
fn check_newest(journal: &Journal, acks: &Acks) {
    for partition in [p(1), p(2)] {
        let applied = journal.applied(&partition).unwrap_or(Hlc::ZERO).max(acks.reported_before(&partition, u64::MAX));
        let mut want: std::collections::BTreeMap<(Hlc, Vec<u8>), Row> = Default::default();
        for (_, ack) in &acks.acked {
            if let Ack::Rows(q, rows) = ack
                && *q == partition
            {
                for r in rows.iter().filter(|r| r.hlc > applied) {
                    want.insert((r.hlc, r.key.clone()), r.clone());
                }
            }
        }
        let mut got: Vec<Row> = on_powercut::rows_above_applied(journal, &partition);
        got.retain(|r| r.hlc > applied);
        let want: Vec<Row> = want.into_values().collect();
        assert_eq!(got, want, "{partition} above {applied}");
        let newest_resolved = acks
            .acked
            .iter()
            .filter_map(|(_, a)| match a {
                Ack::Resolved(q, h) if *q == partition => Some(*h),
                _ => None,
            })
            .max();
        assert!(journal.resolved(&partition).max(Some(applied)) >= newest_resolved.max(Some(Hlc::ZERO)));
    }
}
