//! What a decoded body does: rows checked against the target catalog and the drift policy,
//! then journaled (200 only once durable); a resolved timestamp recorded. The answers for what
//! goes wrong on the way (400 with the reason, 404, 503 with `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use wharf_queue::{Partition, Resolved};
use wharf_targetdb::CatalogError;
use wharf_targetdb::catalog::SchemaCatalog;

use crate::decode::{self, Body};
use crate::drift;
use crate::metrics::Refusal;
use crate::server::{Reply, State, reply, unavailable};
use crate::validate::to_rows;

pub(crate) async fn accept(
    state: &State,
    partition: &Partition,
    decoded: Result<Body<'_>, decode::DecodeError>,
) -> Reply {
    let messages = match decoded {
        Ok(Body::Empty) => return reply(StatusCode::OK, "OK"),
        Ok(Body::Resolved(hlc)) => return resolve(state, partition, hlc).await,
        Ok(Body::Rows { messages, phantoms }) => {
            if phantoms > 0 {
                state.metrics.phantoms_dropped(partition, phantoms as u64);
            }
            messages
        }
        Err(error) => return reply(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if let Some(newest) = messages.iter().map(|m| m.hlc).max()
        && let Err(why) = not_ahead(state, "a row's updated", newest)
    {
        return reply(StatusCode::BAD_REQUEST, &why);
    }
    let (catalog, findings) = match checked_catalog(state, partition, &messages).await {
        Ok(checked) => checked,
        Err(error) => return catalog_failure(state, partition, error),
    };
    group(state, partition, &catalog);
    let edits = match handle_drift(state, partition, &messages, &catalog, &findings) {
        Ok(edits) => edits,
        Err(refusal) => return reply(StatusCode::BAD_REQUEST, &refusal),
    };
    let rows = match to_rows(&messages, &partition.schema, &catalog, &edits) {
        Ok(rows) => rows,
        Err(error) => return reply(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if rows.is_empty() {
        // `{"payload":[],"length":0}` (`wharfctl changefeed --check`), only phantom deletes, or
        // only rows of ignored tables: the schema was checked, nothing to journal.
        return reply(StatusCode::OK, "OK");
    }
    let Some(journal) = &state.journal else { return reply(StatusCode::OK, "OK") };
    match journal.append_durable(partition, &rows).await {
        Ok(appended) => {
            if let Some(newest) = rows.iter().map(|r| r.hlc).max() {
                state.stalls.rows_arrived(partition, newest);
            }
            state.drift.accepted(partition, rows.iter().map(|r| r.table));
            state.metrics.journaled(partition, appended.journaled as u64);
            if appended.dropped_stale > 0 {
                warn_dropped(state, partition, journal);
            }
            reply(StatusCode::OK, "OK")
        }
        Err(error) => journal_failure(state, &error),
    }
}

/// The schema's catalog and the drift of the messages against it; the catalog is read again (at
/// most once a second) when they name something it lacks: it may have been added since.
async fn checked_catalog(
    state: &State,
    partition: &Partition,
    messages: &[decode::Message<'_>],
) -> Result<(Arc<SchemaCatalog>, Vec<drift::Finding>), CatalogError> {
    let catalog = state.target.catalog(&partition.schema, false).await?;
    let findings = drift::scan(messages, &catalog);
    if findings.is_empty() {
        return Ok((catalog, findings));
    }
    let catalog = state.target.catalog(&partition.schema, true).await?;
    let findings = drift::scan(messages, &catalog);
    Ok((catalog, findings))
}

/// Handles what the messages name that the target lacks, by policy: the 400's text if any halts,
/// else the edits that drop it. Counted and recorded either way.
fn handle_drift(
    state: &State,
    partition: &Partition,
    messages: &[decode::Message<'_>],
    catalog: &SchemaCatalog,
    findings: &[drift::Finding],
) -> Result<drift::Edits, String> {
    if findings.is_empty() {
        return Ok(drift::Edits::none(messages.len()));
    }
    let policy = |f: &drift::Finding| match f.kind {
        drift::Kind::UnknownColumn => state.drift_policies.column.of(partition),
        drift::Kind::UnknownTable => state.drift_policies.table.of(partition),
        drift::Kind::KeyArity => drift::Policy::Halt,
    };
    let halting: Vec<&drift::Finding> = findings.iter().filter(|f| policy(f) == drift::Policy::Halt).collect();
    let counted: Vec<&drift::Finding> = if halting.is_empty() { findings.iter().collect() } else { halting.clone() };
    let now = std::time::Instant::now();
    for f in counted {
        let tracked = state.drift.record(partition, f, policy(f), now);
        state.metrics.drift(partition, if tracked { &f.table } else { "_other" }, f.kind.label(), f.rows);
    }
    match halting.first() {
        Some(f) => Err(refusal(partition, f)),
        None => Ok(drift::edits(messages, catalog)),
    }
}

/// The 400's text for a halting drift: what is missing and the two ways on.
fn refusal(partition: &Partition, f: &drift::Finding) -> String {
    let index = f.index;
    match (f.kind, &f.column, f.arity) {
        (drift::Kind::UnknownColumn, Some(column), _) => format!(
            "message {index}: table {:?} has no column {column:?} (add it to the target first, or drop it: --onUnknownColumn {partition}=ignore)",
            f.table
        ),
        (drift::Kind::KeyArity, _, Some((got, want))) => {
            format!("message {index}: table {:?}: key has {got} values but the primary key has {want} columns", f.table)
        }
        _ => format!(
            "message {index}: table {:?} does not exist in target schema {:?} (create it first, or drop its rows: --onUnknownTable {partition}=ignore)",
            f.table, partition.schema
        ),
    }
}

/// 400 for a timestamp further ahead of this machine's clock than `--maxClockSkew`: CockroachDB
/// never sends one, and accepted it would hold back every row after it (as a checkpoint) for good.
fn not_ahead(state: &State, what: &str, hlc: wharf_queue::Hlc) -> Result<(), String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let limit = now.saturating_add(state.max_clock_skew).as_nanos().min(u128::from(u64::MAX)) as u64;
    if hlc.wall <= limit {
        return Ok(());
    }
    let ahead = std::time::Duration::from_nanos(hlc.wall - now.as_nanos().min(u128::from(u64::MAX)) as u64);
    Err(format!(
        "{what} timestamp {hlc} is {} ahead of this server's clock, more than --maxClockSkew ({}); check the clocks",
        humantime::format_duration(std::time::Duration::from_secs(ahead.as_secs())),
        humantime::format_duration(state.max_clock_skew)
    ))
}

pub(crate) async fn resolve(state: &State, partition: &Partition, hlc: wharf_queue::Hlc) -> Reply {
    if let Err(why) = not_ahead(state, "the resolved", hlc) {
        return reply(StatusCode::BAD_REQUEST, &why);
    }
    let catalog = match state.target.catalog(&partition.schema, false).await {
        Ok(catalog) => catalog,
        Err(error) => return catalog_failure(state, partition, error),
    };
    group(state, partition, &catalog);
    let Some(journal) = &state.journal else { return reply(StatusCode::OK, "OK") };
    match journal.resolve_durable(partition, hlc).await {
        Ok(Resolved::Advanced) => {
            state.metrics.resolved(partition, hlc);
            reply(StatusCode::OK, "OK")
        }
        Ok(Resolved::Stale { current }) => {
            tracing::debug!(%partition, %hlc, %current, "stale resolved timestamp ignored");
            state.metrics.stale_resolved(partition);
            reply(StatusCode::OK, "OK")
        }
        Err(error) => journal_failure(state, &error),
    }
}

/// Under `--partitionBy group`, gives the queue service the schema's foreign-key groups as the
/// catalog has them, before anything of the schema is journaled and at each resolved timestamp,
/// so that a changed grouping takes effect between windows (decision 0011).
fn group(state: &State, partition: &Partition, catalog: &SchemaCatalog) {
    if !state.group_partitions {
        return;
    }
    if let Some(queue) = &state.queue
        && queue.set_groups(partition, &catalog.groups)
    {
        let groups: Vec<String> = catalog.groups.iter().map(|g| g.join("+")).collect();
        tracing::info!(%partition, ?groups, "foreign-key groups of the schema");
    }
}

fn catalog_failure(state: &State, partition: &Partition, error: CatalogError) -> Reply {
    match error {
        CatalogError::NoSuchSchema(_) => reply(StatusCode::NOT_FOUND, &format!("unknown schema {partition}: {error}")),
        CatalogError::Query(_) | CatalogError::Connect(_) => {
            state.metrics.refused(Refusal::Target);
            tracing::warn!(%partition, %error, "target catalog unavailable");
            unavailable("target catalog unavailable", 1)
        }
    }
}

/// Says loudly (at most every [`DROPPED_WARNING_EVERY`] per partition) that rows at or below the
/// applied checkpoint were dropped: right for a changefeed re-emitting after a restart, data loss
/// for a second changefeed into the same schema or an ingest restarted on an emptied journal.
fn warn_dropped(state: &State, partition: &Partition, journal: &wharf_queue::Journal) {
    let mut warned = state.dropped_warned.lock().expect("warned lock");
    if warned.get(partition).is_some_and(|at| at.elapsed() < DROPPED_WARNING_EVERY) {
        return;
    }
    warned.insert(partition.clone(), std::time::Instant::now());
    let total = journal.dropped_stale().into_iter().find(|(p, _)| p == partition).map_or(0, |(_, n)| n);
    tracing::warn!(
        %partition,
        rows_dropped_total = total,
        "rows at or below the partition's applied checkpoint were acknowledged and dropped; after a changefeed restart that is expected, but if a second changefeed writes into this schema, or the journal was emptied while the target kept its checkpoint, these rows are lost (one changefeed per schema; see README, Recovering)"
    );
}

/// How often the dropped-rows warning repeats per partition.
const DROPPED_WARNING_EVERY: Duration = Duration::from_secs(10);

fn journal_failure(state: &State, error: &wharf_queue::AppendError) -> Reply {
    if let wharf_queue::AppendError::TooLarge { .. } = error {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string());
    }
    state.metrics.refused(Refusal::Journal);
    if error.is_transient() {
        tracing::warn!(%error, "journal refused a request");
    } else {
        tracing::error!(%error, "journal write failed");
    }
    unavailable(&error.to_string(), 1)
}
