//! Foreign-key groups as lease units (decision 0011): two groups of one schema are granted to two
//! workers with their tables, each reads only its tables, and the journal compacts the schema only
//! up to the slower group's checkpoint; a regrouping ends the old units' leases and forgets their
//! progress.

use std::time::Duration;

use wharf_queue::lease::WorkerId;
use wharf_queue::{ChunkLimits, Hlc, Journal, JournalConfig, Partition, QueueService, Row};

fn row(wall: u64, table: &str, key: u64) -> Row {
    Row {
        hlc: Hlc::new(wall, 0),
        table: table.into(),
        key: format!("[{key}]").into_bytes(),
        after: Some(b"{\"v\":1}".to_vec()),
    }
}

#[test]
fn groups_are_leased_read_and_compacted_on_their_own() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
        let schema = Partition::new("app", "public");
        let rows = vec![row(10, "customers", 1), row(10, "orders", 1), row(10, "events", 1), row(20, "events", 2)];
        journal.append_durable(&schema, &rows).await.unwrap();
        journal.resolve_durable(&schema, Hlc::new(30, 0)).await.unwrap();
        journal.wait_written().await;
        let service = QueueService::new(journal, Duration::from_secs(10));
        let groups = [vec!["customers".to_string(), "orders".to_string()], vec!["events".to_string()]];
        assert!(service.set_groups(&schema, &groups));

        let session = service.open_session("test", 2, false);
        let (w0, w1) = (WorkerId { session, index: 0 }, WorkerId { session, index: 1 });
        let g0 = service.acquire(w0, Duration::ZERO).await.unwrap().expect("a group for worker 0");
        let g1 = service.acquire(w1, Duration::ZERO).await.unwrap().expect("a group for worker 1");
        let mut granted = [g0.partition.to_string(), g1.partition.to_string()];
        granted.sort();
        assert_eq!(granted, ["app.public/customers", "app.public/events"]);
        assert_eq!((g0.upto, g1.upto), (Hlc::new(30, 0), Hlc::new(30, 0)));
        let mut tables = [g0.tables.join(","), g1.tables.join(",")];
        tables.sort();
        assert_eq!(tables, ["customers,orders", "events"]);

        let limits = ChunkLimits { max_rows: 100, max_bytes: 1 << 20 };
        for (worker, grant) in [(w0, &g0), (w1, &g1)] {
            let cursor =
                service.open_window(worker, &grant.partition, grant.epoch, Hlc::ZERO, grant.upto, Vec::new()).unwrap();
            let (_, chunk) = service.read(grant.partition.clone(), cursor, limits).await.unwrap();
            let mut tables: Vec<String> = chunk.rows.to_rows().into_iter().map(|r| r.table).collect();
            tables.sort();
            let want: &[&str] = if grant.partition.group.as_deref() == Some("events") {
                &["events", "events"]
            } else {
                &["customers", "orders"]
            };
            assert_eq!(tables, want, "{}", grant.partition);
            assert!(chunk.last);
        }

        // One group commits: the schema keeps its rows for the other.
        let events = if g0.partition.group.as_deref() == Some("events") { (w0, &g0) } else { (w1, &g1) };
        let customers = if events.1.partition == g0.partition { (w1, &g1) } else { (w0, &g0) };
        service.committed(events.0, &events.1.partition, events.1.epoch, Hlc::new(30, 0), 2).await.unwrap();
        assert_eq!(service.journal().applied(&schema), None);
        service.committed(customers.0, &customers.1.partition, customers.1.epoch, Hlc::new(10, 0), 2).await.unwrap();
        assert_eq!(service.journal().applied(&schema), Some(Hlc::new(10, 0)));
        // The same grouping again changes nothing; a merge ends both leases.
        assert!(!service.set_groups(&schema, &groups));
        let merged = [vec!["customers".to_string(), "events".to_string(), "orders".to_string()]];
        assert!(service.set_groups(&schema, &merged));
        let stale = service.open_window(w0, &g0.partition, g0.epoch, Hlc::ZERO, g0.upto, Vec::new());
        assert!(stale.is_none(), "an old unit's window is refused");
        assert!(!service.committed(w1, &g1.partition, g1.epoch, Hlc::new(30, 0), 0).await.unwrap());
        assert_eq!(service.journal().applied(&schema), Some(Hlc::new(10, 0)), "no old report compacts");
        let merged_grant = service.acquire(w0, Duration::ZERO).await.unwrap().expect("the merged group");
        assert_eq!(merged_grant.partition, schema.group("customers"));
        assert_eq!(merged_grant.tables, merged[0]);
        assert!(merged_grant.epoch > g0.epoch.min(g1.epoch));
    });
}

/// A restarted service (same journal, empty memory) grants each group above every epoch granted
/// before, so the target's fence never refuses a group's first claim after a restart.
#[test]
fn a_group_is_granted_above_its_last_epoch_after_a_restart() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = Partition::new("app", "public");
    let groups = [vec!["customers".to_string()], vec!["events".to_string()]];
    let mut last = Vec::new();
    for round in 0..3 {
        let granted = rt.block_on(async {
            let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
            journal
                .append_durable(&schema, &[row(10 + round, "customers", 1), row(10 + round, "events", 1)])
                .await
                .unwrap();
            journal.resolve_durable(&schema, Hlc::new(20 + round, 0)).await.unwrap();
            let service = QueueService::new(journal, Duration::from_secs(10));
            service.set_groups(&schema, &groups);
            let session = service.open_session("test", 2, false);
            let mut granted = Vec::new();
            for index in 0..2 {
                let grant =
                    service.acquire(WorkerId { session, index }, Duration::ZERO).await.unwrap().expect("a group");
                granted.push((grant.partition.to_string(), grant.epoch));
            }
            service.journal().wait_written().await;
            granted.sort();
            granted
        });
        let names: Vec<&str> = granted.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["app.public/customers", "app.public/events"]);
        let highest_before = last.iter().map(|(_, epoch)| *epoch).max().unwrap_or(0);
        for (name, epoch) in &granted {
            assert!(*epoch > highest_before, "round {round}: {name} granted epoch {epoch}, not above {highest_before}");
        }
        last = granted;
    }
}
