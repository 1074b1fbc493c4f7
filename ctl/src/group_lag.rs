//! The group-lag phase of `wharfctl bench` (issue 21): a steady feed into one schema of 8
//! independent tables under `--partitionBy group`, the lag of 7 groups sampled while the eighth
//! applies too, then while its table is locked in the target: a blocked group must not hold the
//! others.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use wharf_queue::Hlc;

use crate::cluster::{Certs, IngestProcess, start_applier};
use crate::http::Sender;
use crate::scaling::TABLES;

/// The lag of the idle groups, unlocked and while one group's table is locked.
pub struct GroupLag {
    pub offered_rows_per_s: f64,
    pub p99_ms_free: f64,
    pub p99_ms_locked: f64,
    pub max_ms_locked: f64,
    /// The locked group's own lag when the lock is let go (about the locked half's length).
    pub locked_group_ms: f64,
}

/// Rows per table in each tick of the lag feed, and the tick.
const LAG_ROWS: usize = 250;
const TICK: Duration = Duration::from_millis(100);

/// `seconds` of a steady feed with nothing locked, then `seconds` with `t0` locked.
pub async fn measure(url: &str, database: &str, seconds: u64) -> anyhow::Result<GroupLag> {
    let client = wharf_targetdb::connect(url).await?;
    let mut ddl = format!(
        "DROP SCHEMA IF EXISTS bench_lag CASCADE; CREATE SCHEMA bench_lag;
         DELETE FROM _replicator.checkpoints WHERE split_part(partition, '/', 1) = '{database}.bench_lag';"
    );
    (0..TABLES)
        .for_each(|i| ddl.push_str(&format!("CREATE TABLE bench_lag.t{i} (id bigint PRIMARY KEY, payload text);")));
    client.batch_execute(&ddl).await?;
    let certs = Certs::new()?;
    let journal = tempfile::tempdir()?;
    let ingest = IngestProcess::start_with(url, journal.path(), &certs, &["--partitionBy", "group"]).await?;
    let applier = start_applier(&ingest.queue_addr, url, &certs, TABLES, "group-lag")?;
    let sender = Sender::new(ingest.base_url(database, "bench_lag"));
    let mut feed = LagFeed { sender, wall: 0, sent: 0 };
    let idle: Vec<String> = (1..TABLES).map(|i| format!("{database}.bench_lag/t{i}")).collect();
    // Until every group applied once: the units exist and have claimed their rows.
    let deadline = Instant::now() + Duration::from_secs(60);
    while lags(&client, &idle).await.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the groups of bench_lag were not applied within 60 s");
        feed.tick().await?;
        tokio::time::sleep(TICK).await;
    }
    let started = Instant::now();
    let free = feed.run(&client, &idle, seconds).await?;
    let locker = wharf_targetdb::connect(url).await?;
    locker.batch_execute("BEGIN; LOCK TABLE bench_lag.t0 IN ACCESS EXCLUSIVE MODE").await?;
    let locked = feed.run(&client, &idle, seconds).await?;
    let held = [format!("{database}.bench_lag/t0")];
    let locked_group_ms = lags(&client, &held).await.and_then(|l| l.first().copied()).unwrap_or(f64::NAN);
    locker.batch_execute("ROLLBACK").await?;
    let offered_rows_per_s = feed.sent as f64 / started.elapsed().as_secs_f64();
    applier.stop()?;
    ingest.process.stop()?;
    Ok(GroupLag {
        offered_rows_per_s,
        p99_ms_free: percentile(&free, 0.99),
        p99_ms_locked: percentile(&locked, 0.99),
        max_ms_locked: locked.iter().copied().fold(0.0, f64::max),
        locked_group_ms,
    })
}

struct LagFeed {
    sender: Sender,
    wall: u64,
    sent: usize,
}

impl LagFeed {
    /// One tick's body: `LAG_ROWS` updates per table at a timestamp near the clock, and then a
    /// resolved timestamp (sent as a second body by [`LagFeed::tick`]).
    fn body(&mut self) -> Bytes {
        self.wall = (self.wall + 1).max(now_ns());
        let hlc = Hlc::new(self.wall, 0);
        let mut messages = Vec::with_capacity(LAG_ROWS * TABLES);
        for t in 0..TABLES {
            for k in 0..LAG_ROWS {
                let id = (self.sent + k) % 1000;
                messages.push(format!(
                    "{{\"after\": {{\"id\": {id}, \"payload\": \"p{}\"}}, \"key\": [{id}], \"topic\": \"t{t}\", \"updated\": \"{hlc}\"}}",
                    self.sent + k
                ));
            }
        }
        self.sent += messages.len();
        Bytes::from(format!("{{\"payload\":[{}],\"length\":{}}}", messages.join(","), messages.len()))
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        let body = self.body();
        self.sender.post(body).await?;
        self.wall = (self.wall + 1).max(now_ns());
        self.sender.post(Bytes::from(format!("{{\"resolved\":\"{}\"}}", Hlc::new(self.wall, 0)))).await
    }

    /// Feeds for `seconds`, sampling the idle groups' lag (ms) once per tick.
    async fn run(
        &mut self,
        client: &tokio_postgres::Client,
        idle: &[String],
        seconds: u64,
    ) -> anyhow::Result<Vec<f64>> {
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut samples = Vec::new();
        let mut next = tokio::time::Instant::now();
        while Instant::now() < until {
            self.tick().await?;
            samples.extend(lags(client, idle).await.unwrap_or_default());
            // The feed's pace: one tick per TICK, whatever the sampling took.
            next += TICK;
            tokio::time::sleep_until(next).await;
        }
        Ok(samples)
    }
}

/// Milliseconds from each unit's checkpoint to now; `None` until every unit has one.
async fn lags(client: &tokio_postgres::Client, units: &[String]) -> Option<Vec<f64>> {
    let rows = client
        .query("SELECT resolved_wall FROM _replicator.checkpoints WHERE partition = ANY($1) AND NOT retired", &[&units])
        .await
        .ok()?;
    let now = now_ns();
    let lags: Vec<f64> = rows.iter().map(|r| now.saturating_sub(r.get::<_, i64>(0) as u64) as f64 / 1e6).collect();
    (lags.len() == units.len() && lags.iter().all(|l| *l < 1e9)).then_some(lags)
}

fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
