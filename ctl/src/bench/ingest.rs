//! The ingest phase: the `--discard` reference first and last, the durable ingest before and after
//! the same run with JWT authentication and one with gzip bodies (`compression = 'gzip'`), and a
//! last durable run as the backlog of the second separate apply. Each durable run without gzip
//! leaves its journal for the apply phase.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tempfile::TempDir;

use super::feed::send_all;
use crate::cpu_cost::Busy;
use crate::harness::{InProcessIngest, IngestOptions};
use crate::http::Sender;
use crate::own_memory::{PhaseMemory, measure};

/// What the ingest phase measured.
pub struct IngestRuns {
    /// The `--discard` reference, first and last.
    pub discard: [Duration; 2],
    /// The durable ingest without authentication, before and after the JWT run.
    pub durable: [Duration; 2],
    pub durable_jwt: Duration,
    pub durable_gzip: Duration,
    /// Bytes on the wire of all bodies, plain and gzip.
    pub wire_bytes: (usize, usize),
    /// CPU seconds of the two durable runs without authentication.
    pub durable_busy: Vec<Option<f64>>,
    /// wharfctl's memory in each run, in the order they ran.
    pub memory: Vec<Value>,
    pub journals: Journals,
}

/// The journals the durable runs filled (each holds every row, unresolved).
pub struct Journals {
    pub durable: TempDir,
    pub jwt: TempDir,
    pub durable_again: TempDir,
    pub extra: TempDir,
}

/// What every ingest run sends, and where.
pub struct Feed<'a> {
    pub url: &'a str,
    pub database: &'a str,
    pub bodies: &'a [Bytes],
    pub rows: usize,
    pub senders: usize,
}

/// Runs the phase against `bench.rows`; the JWT run's key is stored into `jwt_key` as soon as it
/// is inserted, so the caller can remove it whatever happens next.
pub async fn measure_ingest(
    feed: &Feed<'_>,
    client: &tokio_postgres::Client,
    jwt_key: &mut Option<String>,
) -> anyhow::Result<IngestRuns> {
    let &Feed { url, database, bodies, rows, senders } = feed;
    let mut memory = Vec::new();
    let (discard_first, used) = measure(discard_run(url, database, bodies, senders)).await;
    memory.push(PhaseMemory::json("discard (first)", used));
    let discard_first = discard_first?;

    let durable_dir = tempfile::tempdir()?;
    let busy = Busy::start();
    let (durable, used) = measure(durable_run(url, database, bodies, senders, durable_dir.path())).await;
    memory.push(PhaseMemory::json("durable", used));
    let mut durable_busy = vec![busy.and_then(Busy::seconds)];
    let durable = durable?;
    eprintln!("bench: durable ingest {:.0} rows/s", rows as f64 / durable.as_secs_f64());

    // The same durable run with JWT authentication on (ES256), into a fresh journal.
    let (token, key_id) = install_jwt_key(client).await?;
    *jwt_key = Some(key_id);
    let jwt_dir = tempfile::tempdir()?;
    let options = IngestOptions { authenticate: true, ..IngestOptions::default() };
    let (durable_jwt, used) = measure(async {
        let ingest = InProcessIngest::start(url, jwt_dir.path(), options).await?;
        let sender = Sender::new(ingest.base_url(database, "bench")).with_token(&token);
        let took = send_all(&sender, bodies, senders).await?;
        ingest.stop().await?;
        anyhow::Ok(took)
    })
    .await;
    memory.push(PhaseMemory::json("durable, JWT", used));
    let durable_jwt = durable_jwt?;
    eprintln!("bench: durable ingest with JWT {:.0} rows/s", rows as f64 / durable_jwt.as_secs_f64());
    let (durable_gzip, wire_bytes) = gzip_run(feed).await?;
    eprintln!("bench: durable ingest of gzip bodies {:.0} rows/s", rows as f64 / durable_gzip.as_secs_f64());
    // Phases run later are slower on this machine (disk writeback of earlier phases), so the
    // open run is repeated after the JWT run and the JWT figure is compared with their mean.
    let again_dir = tempfile::tempdir()?;
    let busy = Busy::start();
    let (durable_again, used) = measure(durable_run(url, database, bodies, senders, again_dir.path())).await;
    memory.push(PhaseMemory::json("durable (again)", used));
    durable_busy.push(busy.and_then(Busy::seconds));
    let durable_again = durable_again?;

    let (discard_last, used) = measure(discard_run(url, database, bodies, senders)).await;
    memory.push(PhaseMemory::json("discard (last)", used));
    let discard_last = discard_last?;
    // A fourth backlog, for the second separate apply.
    let extra_dir = tempfile::tempdir()?;
    durable_run(url, database, bodies, senders, extra_dir.path()).await?;
    Ok(IngestRuns {
        discard: [discard_first, discard_last],
        durable: [durable, durable_again],
        durable_jwt,
        durable_gzip,
        wire_bytes,
        durable_busy,
        memory,
        journals: Journals { durable: durable_dir, jwt: jwt_dir, durable_again: again_dir, extra: extra_dir },
    })
}

/// One durable run of the bodies gzipped as CockroachDB does (its default level), into a journal
/// of its own; returns the time and the bytes on the wire, plain and gzip.
async fn gzip_run(feed: &Feed<'_>) -> anyhow::Result<(Duration, (usize, usize))> {
    use std::io::Write as _;
    let gzip = |body: &Bytes| -> std::io::Result<Bytes> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body)?;
        Ok(Bytes::from(encoder.finish()?))
    };
    let compressed: Vec<Bytes> = feed.bodies.iter().map(gzip).collect::<std::io::Result<_>>()?;
    let wire = (feed.bodies.iter().map(Bytes::len).sum(), compressed.iter().map(Bytes::len).sum());
    let dir = tempfile::tempdir()?;
    let ingest = InProcessIngest::start(feed.url, dir.path(), IngestOptions::default()).await?;
    let sender = Sender::new(ingest.base_url(feed.database, "bench")).with_content_encoding("gzip");
    let took = send_all(&sender, &compressed, feed.senders).await;
    ingest.stop().await?;
    Ok((took?, wire))
}

/// One durable run into the journal at `dir`.
async fn durable_run(
    url: &str,
    database: &str,
    bodies: &[Bytes],
    senders: usize,
    dir: &std::path::Path,
) -> anyhow::Result<Duration> {
    let ingest = InProcessIngest::start(url, dir, IngestOptions::default()).await?;
    let took = send_all(&Sender::new(ingest.base_url(database, "bench")), bodies, senders).await;
    ingest.stop().await?;
    took
}

/// One run of the reference: the same server in `--discard` mode.
async fn discard_run(url: &str, database: &str, bodies: &[Bytes], senders: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let options = IngestOptions { discard: true, ..IngestOptions::default() };
    let ingest = InProcessIngest::start(url, dir.path(), options).await?;
    let took = send_all(&Sender::new(ingest.base_url(database, "bench")), bodies, senders).await;
    ingest.stop().await?;
    took
}

/// Creates the key tables, inserts a fresh ES256 public key and returns a token it signed and
/// the key's id.
async fn install_jwt_key(client: &tokio_postgres::Client) -> anyhow::Result<(String, String)> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS _replicator;
             CREATE TABLE IF NOT EXISTS _replicator.jwt_public_keys (
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(), public_key text NOT NULL, active bool NOT NULL DEFAULT true);
             CREATE TABLE IF NOT EXISTS _replicator.jwt_revoked_ids (id text PRIMARY KEY);",
        )
        .await?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let id: String = client
        .query_one(
            "INSERT INTO _replicator.jwt_public_keys (public_key) VALUES ($1) RETURNING id::text",
            &[&key.public_key_pem()],
        )
        .await?
        .get(0);
    let claims =
        serde_json::json!({"jti": "bench", wharf_ingest::auth::jwt::CLAIM_NAMESPACE: {"schemas": [["*", "bench"]]}});
    Ok((wharf_ingest::auth::sign::SigningKey::from_pem(&key.serialize_pem())?.sign(&claims)?, id))
}
