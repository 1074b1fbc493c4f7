//! The ingest side's view of the target: its database name, schema catalogs (cached), health.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use wharf_targetdb::catalog::{CatalogError, SchemaCatalog, discover};
use wharf_targetdb::{ConnectError, connect};

/// A catalog is re-read at most this often when a row names something unknown (and after
/// `--catalogRefresh` in any case).
const CATALOG_MIN_REFRESH: Duration = Duration::from_secs(1);
/// How long a health check's answer is reused: health endpoints need no token, so callers must
/// not be able to send the target a query each.
const HEALTH_MAX_AGE: Duration = Duration::from_secs(1);
/// How long a count of quarantined rows is reused by `/_/readyz`.
const QUARANTINE_MAX_AGE: Duration = Duration::from_secs(10);

pub struct Target {
    conn: String,
    pub database: String,
    client: RwLock<Arc<Client>>,
    catalogs: Mutex<HashMap<String, (Instant, Arc<SchemaCatalog>)>>,
    /// `--catalogRefresh`: the oldest catalog used.
    catalog_max_age: Duration,
    /// The last health check and its answer; one check at a time.
    health: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Health checks sent to the target (for `/_/varz`).
    pub health_checks: std::sync::atomic::AtomicU64,
    /// The last count of quarantined row versions per partition, and when it was read.
    quarantined: tokio::sync::Mutex<Option<(Instant, Quarantined)>>,
}

/// Row versions quarantined per partition.
type Quarantined = Vec<(String, u64)>;

impl Target {
    pub async fn connect(conn: &str, catalog_max_age: Duration) -> Result<Target, crate::StartError> {
        let client = connect(conn).await?;
        let database: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .map_err(|e| crate::StartError::Target(wharf_targetdb::describe_pg(&e)))?
            .get(0);
        Ok(Target {
            conn: conn.to_owned(),
            database,
            client: RwLock::new(Arc::new(client)),
            catalogs: Mutex::new(HashMap::new()),
            catalog_max_age,
            health: tokio::sync::Mutex::new(None),
            health_checks: std::sync::atomic::AtomicU64::new(0),
            quarantined: tokio::sync::Mutex::new(None),
        })
    }

    /// The cached catalog of `schema`, re-read when old or when `refresh` asks and it is not too fresh.
    pub async fn catalog(&self, schema: &str, refresh: bool) -> Result<Arc<SchemaCatalog>, CatalogError> {
        if let Some((at, catalog)) = self.catalogs.lock().expect("catalog lock").get(schema) {
            let age = at.elapsed();
            if age < self.catalog_max_age && (!refresh || age < CATALOG_MIN_REFRESH) {
                return Ok(catalog.clone());
            }
        }
        let client = self.client().await?;
        let catalog = Arc::new(discover(&client, schema).await?);
        self.catalogs.lock().expect("catalog lock").insert(schema.to_owned(), (Instant::now(), catalog.clone()));
        Ok(catalog)
    }

    /// Whether the target answered a trivial query within the last [`HEALTH_MAX_AGE`] (asked
    /// again when older; callers meanwhile wait for that one answer).
    pub async fn is_healthy(&self) -> bool {
        let mut last = self.health.lock().await;
        if let Some((at, healthy)) = *last
            && at.elapsed() < HEALTH_MAX_AGE
        {
            return healthy;
        }
        self.health_checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let healthy = match self.client().await {
            Ok(client) => tokio::time::timeout(Duration::from_secs(2), client.simple_query("SELECT 1"))
                .await
                .is_ok_and(|r| r.is_ok()),
            Err(_) => false,
        };
        *last = Some((Instant::now(), healthy));
        healthy
    }

    /// Row versions quarantined per partition (`--onApplyError quarantine`), read again when
    /// older than [`QUARANTINE_MAX_AGE`]; the last answer when the target does not give one.
    pub async fn quarantined(&self, staging_schema: &str) -> Quarantined {
        let mut last = self.quarantined.lock().await;
        if let Some((at, counts)) = &*last
            && at.elapsed() < QUARANTINE_MAX_AGE
        {
            return counts.clone();
        }
        let read = match self.client().await {
            Ok(client) => tokio::time::timeout(
                Duration::from_secs(2),
                wharf_targetdb::staging::quarantine_counts(&client, staging_schema),
            )
            .await
            .ok()
            .and_then(Result::ok),
            Err(_) => None,
        };
        let counts = read.unwrap_or_else(|| last.as_ref().map(|(_, c)| c.clone()).unwrap_or_default());
        *last = Some((Instant::now(), counts.clone()));
        counts
    }

    async fn client(&self) -> Result<Arc<Client>, ConnectError> {
        let current = self.client.read().expect("client lock").clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = Arc::new(connect(&self.conn).await?);
        *self.client.write().expect("client lock") = fresh.clone();
        Ok(fresh)
    }
}
