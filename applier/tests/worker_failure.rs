//! A worker task that panics mid-window is noticed: the failure is counted, its partition is given
//! back (so nobody has to be fenced to get it), a new worker takes its place, and the window is
//! applied once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wharf_applier::{ApplierConfig, ApplyStats};
use wharf_queue::{
    DEFAULT_LEASE_TIMEOUT, Grant, Hlc, Journal, JournalConfig, LocalClient, Partition, QueueClient, QueueError,
    QueueService, Release, Row,
};
use wharf_testkit::LocalPg;

/// The in-process client, except that the first window it opens panics.
#[derive(Clone)]
struct PanicOnce {
    inner: LocalClient,
    panicked: Arc<AtomicBool>,
}

impl QueueClient for PanicOnce {
    type Window = <LocalClient as QueueClient>::Window;

    async fn acquire(&self, worker: u32, wait: Duration) -> Result<Option<Grant>, QueueError> {
        self.inner.acquire(worker, wait).await
    }

    async fn open(
        &self,
        worker: u32,
        grant: &Grant,
        after: Hlc,
        tables: Vec<String>,
    ) -> Result<Self::Window, QueueError> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("injected worker failure");
        }
        self.inner.open(worker, grant, after, tables).await
    }

    async fn committed(&self, worker: u32, grant: &Grant, checkpoint: Hlc, rows: u64) -> Result<bool, QueueError> {
        self.inner.committed(worker, grant, checkpoint, rows).await
    }

    async fn release(&self, worker: u32, grant: &Grant, how: Release) -> Result<(), QueueError> {
        self.inner.release(worker, grant, how).await
    }
}

#[test]
fn a_panicking_worker_is_replaced_and_its_partition_released() {
    let pg = LocalPg::start().expect("start PostgreSQL");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = wharf_targetdb::connect(&pg.url("postgres")).await.unwrap();
        admin.batch_execute("CREATE DATABASE app").await.unwrap();
        let url = pg.url("app");
        let client = wharf_targetdb::connect(&url).await.unwrap();
        client.batch_execute("CREATE TABLE public.kv (k integer PRIMARY KEY, v text NOT NULL)").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&JournalConfig::scratch(dir.path())).unwrap();
        let partition = Partition::new("app", "public");
        let rows: Vec<Row> = (0..5)
            .map(|k| Row {
                hlc: Hlc::new(100 + k, 0),
                table: "kv".into(),
                key: format!("[{k}]").into_bytes(),
                after: Some(format!("{{\"k\":{k},\"v\":\"v{k}\"}}").into_bytes()),
            })
            .collect();
        journal.append_durable(&partition, &rows).await.unwrap();
        journal.resolve_durable(&partition, Hlc::new(104, 0)).await.unwrap();
        let service = QueueService::new(journal, DEFAULT_LEASE_TIMEOUT);
        let queue = PanicOnce { inner: LocalClient::new(service.clone(), "test", 1), panicked: Arc::default() };
        let stats = Arc::new(ApplyStats::default());
        let stop = CancellationToken::new();
        let applier = tokio::spawn(wharf_applier::run(
            ApplierConfig::new(&url, "_replicator", 1),
            queue,
            stats.clone(),
            stop.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let row = client.query_opt("SELECT resolved FROM _replicator.checkpoints", &[]).await.ok().flatten();
            if row.is_some_and(|r| r.get::<_, String>(0) == "104.0000000000") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "window not applied after the worker failed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        applier.await.unwrap();
        assert_eq!(stats.worker_failures.load(Ordering::SeqCst), 1);
        assert_eq!(
            service.stats().fenced.load(Ordering::SeqCst),
            0,
            "the partition was released, not taken by fencing"
        );
        let got: Vec<(i32, String)> = client
            .query("SELECT k, v FROM kv ORDER BY k", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(got, (0..5).map(|k| (k, format!("v{k}"))).collect::<Vec<_>>());
        assert_eq!(stats.rows.load(Ordering::SeqCst), 5, "every row applied once");
    });
}
