//! `GET /_/varz` (or `--metricsAddr`): Prometheus exposition through the `prometheus-client`
//! library. MOLT Replicator's names are kept where the concept is the same; wharf's own metrics
//! start with `wharf_`. No token is needed and nothing secret is shown; every label is bounded (a
//! status code, a refusal reason, or a partition that exists in the target).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use wharf_base::metrics::{SchemaLabel, latency_histogram};
use wharf_queue::Partition;

use crate::server::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabel {
    schema: String,
    table: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

/// Why a request got 503 before its rows were journaled.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Refusal {
    ShuttingDown,
    MaxRequests,
    InflightBytes,
    Journal,
    Target,
}

impl Refusal {
    const ALL: [Refusal; 5] =
        [Refusal::ShuttingDown, Refusal::MaxRequests, Refusal::InflightBytes, Refusal::Journal, Refusal::Target];

    fn label(self) -> &'static str {
        match self {
            Refusal::ShuttingDown => "shutting_down",
            Refusal::MaxRequests => "max_requests",
            Refusal::InflightBytes => "inflight_bytes",
            Refusal::Journal => "journal",
            Refusal::Target => "target",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type Seconds = Gauge<f64, AtomicU64>;

/// Every metric of the ingest process (embedded appliers register theirs in the same registry).
pub struct IngestMetrics {
    registry: Registry,
    http_codes: Family<CodeLabel, Counter>,
    http_latency: Histogram,
    mutations_received: Family<SchemaLabel, Counter>,
    source_lag: Family<SchemaLabel, Seconds>,
    stale_resolved: Family<SchemaLabel, Counter>,
    phantoms_dropped: Family<SchemaLabel, Counter>,
    drift: Family<DriftLabel, Counter>,
    refusals: Family<ReasonLabel, Counter>,
    /// Refreshed from their owners at every scrape (under the lock, so deltas are not counted twice).
    scraped: Mutex<Scraped>,
}

#[derive(Default)]
struct Scraped {
    journal_bytes: Gauge,
    sessions: Gauge,
    leases_held: Gauge,
    partitions_paused: Gauge,
    blocked: Family<SchemaLabel, Gauge>,
    dropped_stale: Family<SchemaLabel, Counter>,
    apply_rows: Counter,
    apply_commits: Counter,
    apply_fenced: Counter,
    jwt_refresh_failures: Counter,
    jwt_malformed_keys: Gauge,
    jwt_last_refresh: Seconds,
    target_health_checks: Counter,
}

impl IngestMetrics {
    /// The registry with wharf's metrics, the journal's sync metrics and `extra` (embedded appliers).
    pub fn new(journal: Option<&wharf_queue::Journal>, extra: impl FnOnce(&mut Registry)) -> IngestMetrics {
        let mut registry = Registry::default();
        let metrics = IngestMetrics {
            http_codes: Family::default(),
            http_latency: latency_histogram(),
            mutations_received: Family::default(),
            source_lag: Family::default(),
            stale_resolved: Family::default(),
            phantoms_dropped: Family::default(),
            drift: Family::default(),
            refusals: Family::default(),
            scraped: Mutex::new(Scraped::default()),
            registry: Registry::default(),
        };
        metrics.register_own(&mut registry);
        // Every reason shows from the start, at 0, so rate() and alerts see the series.
        for why in Refusal::ALL {
            drop(metrics.refusals.get_or_create(&ReasonLabel { reason: why.label() }));
        }
        if let Some(journal) = journal {
            journal.sync_metrics().register(&mut registry);
        }
        extra(&mut registry);
        IngestMetrics { registry, ..metrics }
    }

    fn register_own(&self, r: &mut Registry) {
        r.register("http_status_codes", "Responses by HTTP status code", self.http_codes.clone());
        r.register("http_latency_seconds", "Time from request to response", self.http_latency.clone());
        r.register("mutations_received", "Rows made durable in the journal", self.mutations_received.clone());
        r.register(
            "source_lag_seconds",
            "Age of the newest resolved timestamp when it arrived (how far the changefeed is behind)",
            self.source_lag.clone(),
        );
        r.register(
            "wharf_resolved_stale",
            "Resolved timestamps at or below the partition's newest, answered 200 and ignored (CockroachDB can send them after a restart)",
            self.stale_resolved.clone(),
        );
        r.register(
            "wharf_phantom_deletes_dropped",
            "Query-feed deletes with neither after nor before (of a row the query never emitted), dropped",
            self.phantoms_dropped.clone(),
        );
        r.register(
            "wharf_schema_drift",
            "Rows naming a table or column the target lacks, or a key of another arity (kind), refused or dropped by policy",
            self.drift.clone(),
        );
        r.register(
            "wharf_backpressure_refusals",
            "Requests answered 503 before journaling, by reason",
            self.refusals.clone(),
        );
        let s = self.scraped.lock().expect("metrics lock");
        r.register("wharf_journal_bytes", "Journal size on disk", s.journal_bytes.clone());
        r.register(
            "wharf_applier_sessions",
            "Applier sessions connected (embedded ones count as one)",
            s.sessions.clone(),
        );
        r.register("wharf_lease_holders", "Partitions currently leased by an applier worker", s.leases_held.clone());
        r.register(
            "wharf_partitions_paused",
            "Partitions paused after a permanent apply error",
            s.partitions_paused.clone(),
        );
        r.register(
            "wharf_partition_blocked",
            "1 while the partition's apply fails for good (a row the target rejects, …): from its first pause until a window commits rows",
            s.blocked.clone(),
        );
        r.register(
            "wharf_rows_dropped_stale",
            "Rows at or below their partition's applied checkpoint, acknowledged and dropped",
            s.dropped_stale.clone(),
        );
        r.register("wharf_apply_rows", "Rows applied, as reported by every applier", s.apply_rows.clone());
        r.register("wharf_apply_commits", "Target transactions committed with a checkpoint", s.apply_commits.clone());
        r.register("wharf_apply_fenced", "Commits refused because another applier took over", s.apply_fenced.clone());
        r.register("wharf_jwt_refresh_failures", "JWT key refreshes that failed", s.jwt_refresh_failures.clone());
        r.register(
            "wharf_jwt_malformed_keys",
            "Active rows of jwt_public_keys skipped at the last load because they do not parse",
            s.jwt_malformed_keys.clone(),
        );
        r.register(
            "jwt_last_refresh_time",
            "When JWT keys were last loaded (Unix seconds)",
            s.jwt_last_refresh.clone(),
        );
        r.register(
            "wharf_target_health_checks",
            "Queries sent to the target by health checks (at most one a second, however many probes)",
            s.target_health_checks.clone(),
        );
    }

    pub fn response(&self, status: u16, seconds: f64) {
        self.http_codes.get_or_create(&CodeLabel { code: status }).inc();
        self.http_latency.observe(seconds);
    }

    pub fn journaled(&self, partition: &Partition, rows: u64) {
        self.mutations_received.get_or_create(&SchemaLabel::of(partition)).inc_by(rows);
    }

    pub fn resolved(&self, partition: &Partition, hlc: wharf_queue::Hlc) {
        let age = now_seconds() - hlc.wall as f64 / 1e9;
        self.source_lag.get_or_create(&SchemaLabel::of(partition)).set(age.max(0.0));
    }

    /// A resolved timestamp that moved nothing.
    pub fn stale_resolved(&self, partition: &Partition) {
        self.stale_resolved.get_or_create(&SchemaLabel::of(partition)).inc();
    }

    /// Query-feed phantom deletes dropped from a request.
    pub fn phantoms_dropped(&self, partition: &Partition, count: u64) {
        self.phantoms_dropped.get_or_create(&SchemaLabel::of(partition)).inc_by(count);
    }

    /// Rows with schema drift of `kind` in `table`.
    pub fn drift(&self, partition: &Partition, table: &str, kind: &'static str, rows: u64) {
        let label = DriftLabel { schema: partition.to_string(), table: table.to_owned(), kind };
        self.drift.get_or_create(&label).inc_by(rows);
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals.get_or_create(&ReasonLabel { reason: why.label() }).inc();
    }
}

/// The exposition text (OpenMetrics, ending in `# EOF`).
pub fn render(state: &State) -> String {
    let metrics = &state.metrics;
    {
        let s = metrics.scraped.lock().expect("metrics lock");
        refresh(&s, state);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &metrics.registry).expect("writing to a String");
    out
}

fn refresh(s: &Scraped, state: &State) {
    if let Some(journal) = &state.journal {
        s.journal_bytes.set(journal.disk_bytes() as i64);
        for partition in journal.partitions() {
            drop(s.dropped_stale.get_or_create(&SchemaLabel::of(&partition)));
        }
        for (partition, count) in journal.dropped_stale() {
            raise(&s.dropped_stale.get_or_create(&SchemaLabel::schema(partition.to_string())), count);
        }
    }
    if let Some(queue) = &state.queue {
        let (sessions, held, paused) = queue.lease_summary();
        s.sessions.set(sessions as i64);
        s.leases_held.set(held as i64);
        s.partitions_paused.set(paused as i64);
        let blocked = queue.blocked();
        for partition in state.journal.iter().flat_map(|j| j.partitions()) {
            // The schema, or one of its foreign-key groups (readiness and status name which).
            let name = partition.to_string();
            let group_prefix = format!("{name}/");
            let is_blocked = blocked.iter().any(|(p, _)| *p == name || p.starts_with(&group_prefix));
            s.blocked.get_or_create(&SchemaLabel::schema(name)).set(i64::from(is_blocked));
        }
        let stats = queue.stats();
        raise(&s.apply_rows, stats.rows_applied.load(Ordering::Relaxed));
        raise(&s.apply_commits, stats.commits.load(Ordering::Relaxed));
        raise(&s.apply_fenced, stats.fenced.load(Ordering::Relaxed));
    }
    raise(&s.target_health_checks, state.target.health_checks.load(Ordering::Relaxed));
    if let Some(auth) = &state.auth {
        raise(&s.jwt_refresh_failures, auth.refresh_failures.load(Ordering::Relaxed));
        s.jwt_malformed_keys.set(auth.malformed_keys.load(Ordering::Relaxed) as i64);
        s.jwt_last_refresh.set(auth.last_refresh.load(Ordering::Relaxed) as f64);
    }
}

/// Moves a counter up to `total` (counts kept elsewhere as plain atomics).
fn raise(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
