//! Schema drift: what a payload names that the target lacks (a table, a column) or shapes
//! otherwise (a key of another arity); the policy for it (`--onUnknownColumn`,
//! `--onUnknownTable`); and the record of it that metrics, `/_/readyz` and `wharfctl status`
//! show while it lasts.
//!
//! [`scan`] and [`edits`] are pure; [`DriftWatch`] keeps what was seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use wharf_queue::{DriftStatus, Partition};
use wharf_targetdb::catalog::SchemaCatalog;

use crate::decode::{Key, Message};

/// What to do with a payload column or table the target lacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Refuse the request (400): nothing is lost, and CockroachDB retries until the target has it.
    #[default]
    Halt,
    /// Drop the column (or the table's rows) before journaling, count it, and go on.
    Ignore,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Halt => "halt",
            Policy::Ignore => "ignore",
        }
    }
}

/// A policy, and the schemas (`db.schema`) that have another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    default: Policy,
    by_schema: Vec<(String, Policy)>,
}

impl Policies {
    /// Reads `halt`, `ignore` and `db.schema=halt|ignore`, each value of `flag` in turn.
    pub fn parse(values: &[String], flag: &str) -> Result<Policies, String> {
        let mut policies = Policies::default();
        for value in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
            let policy = |text: &str| match text {
                "halt" => Ok(Policy::Halt),
                "ignore" => Ok(Policy::Ignore),
                other => Err(format!("{flag} {other:?}: expected halt, ignore or db.schema=halt|ignore")),
            };
            match value.split_once('=') {
                Some((schema, p)) if schema.contains('.') => policies.by_schema.push((schema.to_owned(), policy(p)?)),
                Some(_) => return Err(format!("{flag} {value:?}: name the schema as db.schema=halt|ignore")),
                None => policies.default = policy(value)?,
            }
        }
        Ok(policies)
    }

    /// The policy for `partition` (the last per-schema value that names it, else the default).
    pub fn of(&self, partition: &Partition) -> Policy {
        let name = partition.to_string();
        self.by_schema.iter().rev().find(|(s, _)| *s == name).map_or(self.default, |(_, p)| *p)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    UnknownColumn,
    UnknownTable,
    KeyArity,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::UnknownColumn => "unknown_column",
            Kind::UnknownTable => "unknown_table",
            Kind::KeyArity => "key_arity",
        }
    }
}

/// One kind of drift in a body: the first message that shows it, and how many rows do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub index: usize,
    pub table: String,
    pub column: Option<String>,
    pub kind: Kind,
    pub rows: u64,
    /// For [`Kind::KeyArity`]: the values sent and the target's primary-key columns.
    pub arity: Option<(usize, usize)>,
}

/// Every drift in `messages` against `catalog`, one finding per table, column and kind, in order.
pub fn scan(messages: &[Message<'_>], catalog: &SchemaCatalog) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let mut note = |index: usize, table: &str, column: Option<&str>, kind: Kind, arity: Option<(usize, usize)>| {
        let same = |f: &&mut Finding| f.kind == kind && f.table == table && f.column.as_deref() == column;
        match found.iter_mut().find(|f| same(f)) {
            Some(f) => f.rows += 1,
            None => found.push(Finding {
                index,
                table: table.to_owned(),
                column: column.map(str::to_owned),
                kind,
                rows: 1,
                arity,
            }),
        }
    };
    for (index, m) in messages.iter().enumerate() {
        let Some(table) = catalog.table(&m.table) else {
            note(index, &m.table, None, Kind::UnknownTable, None);
            continue;
        };
        let want = table.primary_key.len();
        let got = match &m.key {
            Key::Array { values, .. } => values.len(),
            Key::Columns(props) => props.0.len(),
            Key::Row => want,
        };
        if got != want {
            note(index, &table.name, None, Kind::KeyArity, Some((got, want)));
        }
        if let Some((_, props)) = &m.after {
            for (column, _) in props.0.iter().filter(|(c, _)| table.column_index(c).is_none()) {
                note(index, &table.name, Some(column), Kind::UnknownColumn, None);
            }
        }
    }
    found
}

/// What ignoring drift changes in a body: messages dropped (unknown tables) and `after` objects
/// rewritten without the unknown columns.
#[derive(Debug, Default)]
pub struct Edits {
    pub skip: Vec<bool>,
    pub after: Vec<Option<String>>,
}

impl Edits {
    pub fn none(count: usize) -> Edits {
        Edits { skip: vec![false; count], after: vec![None; count] }
    }
}

/// The edits that ignore the unknown tables and columns of `messages` (under an `ignore` policy).
pub fn edits(messages: &[Message<'_>], catalog: &SchemaCatalog) -> Edits {
    let mut edits = Edits::none(messages.len());
    for (index, m) in messages.iter().enumerate() {
        let Some(table) = catalog.table(&m.table) else {
            edits.skip[index] = true;
            continue;
        };
        let Some((_, props)) = &m.after else { continue };
        if props.0.iter().all(|(c, _)| table.column_index(c).is_some()) {
            continue;
        }
        let kept: Vec<String> = props
            .0
            .iter()
            .filter(|(c, _)| table.column_index(c).is_some())
            .map(|(c, v)| format!("{}:{}", serde_json::Value::String(c.to_string()), v.get()))
            .collect();
        edits.after[index] = Some(format!("{{{}}}", kept.join(",")));
    }
    edits
}

/// A drift is forgotten after this long without being seen (a changefeed dropped or fixed at the
/// source); a halted one also ends as soon as a request for its table is accepted.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// At most this many drifts are tracked (table names come from payloads).
const MAX_TRACKED: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Subject {
    partition: Partition,
    table: String,
    column: Option<String>,
    kind: Kind,
}

#[derive(Clone, Debug)]
struct Seen {
    policy: Policy,
    since: SystemTime,
    last: Instant,
    /// Requests refused (halt) and rows changed or dropped (ignore).
    refused: u64,
    dropped: u64,
}

/// The drifts seen, for `/_/readyz`, `wharfctl status` and the logs.
#[derive(Default)]
pub struct DriftWatch {
    seen: Mutex<HashMap<Subject, Seen>>,
}

impl DriftWatch {
    /// Notes `finding` in `partition`, handled by `policy`; logs it when it is new. `false` when
    /// the table is beyond what is tracked (count it under another label).
    pub fn record(&self, partition: &Partition, finding: &Finding, policy: Policy, now: Instant) -> bool {
        let subject = Subject {
            partition: partition.clone(),
            table: finding.table.clone(),
            column: finding.column.clone(),
            kind: finding.kind,
        };
        let mut seen = self.seen.lock().expect("drift lock");
        seen.retain(|_, s| now.duration_since(s.last) < FORGET_AFTER);
        if !seen.contains_key(&subject) {
            if seen.len() >= MAX_TRACKED {
                return false;
            }
            tracing::warn!(%partition, table = %finding.table, column = finding.column.as_deref(), kind = finding.kind.label(), policy = policy.name(), "{}", explain(partition, finding, policy));
        }
        let entry =
            seen.entry(subject).or_insert(Seen { policy, since: SystemTime::now(), last: now, refused: 0, dropped: 0 });
        entry.policy = policy;
        entry.last = now;
        match policy {
            Policy::Halt => entry.refused += 1,
            Policy::Ignore => entry.dropped += finding.rows,
        }
        true
    }

    /// Rows of `tables` were accepted into `partition`: their halted drifts are over.
    pub fn accepted<'t>(&self, partition: &Partition, tables: impl IntoIterator<Item = &'t str>) {
        let mut seen = self.seen.lock().expect("drift lock");
        if seen.is_empty() {
            return;
        }
        for table in tables {
            seen.retain(|s, e| !(e.policy == Policy::Halt && s.partition == *partition && s.table == table));
        }
    }

    /// One line per drift that halts a feed (`halt`) or is being ignored, at `now`.
    pub fn lines(&self, now: Instant) -> (Vec<String>, Vec<String>) {
        let seen = self.seen.lock().expect("drift lock");
        let mut halted = Vec::new();
        let mut ignored = Vec::new();
        for (s, e) in seen.iter().filter(|(_, e)| now.duration_since(e.last) < FORGET_AFTER) {
            let what = describe(&s.partition, &s.table, s.column.as_deref(), s.kind);
            match e.policy {
                Policy::Halt => halted.push(format!("{what}: {} requests refused", e.refused)),
                Policy::Ignore => ignored.push(format!("{what}: ignored in {} rows", e.dropped)),
            }
        }
        halted.sort();
        ignored.sort();
        (halted, ignored)
    }

    /// The drifts for `wharfctl status`.
    pub fn status(&self, now: Instant) -> Vec<DriftStatus> {
        let seen = self.seen.lock().expect("drift lock");
        let mut out: Vec<DriftStatus> = seen
            .iter()
            .filter(|(_, e)| now.duration_since(e.last) < FORGET_AFTER)
            .map(|(s, e)| DriftStatus {
                partition: s.partition.to_string(),
                table: s.table.clone(),
                column: s.column.clone(),
                kind: s.kind.label().to_owned(),
                policy: e.policy.name().to_owned(),
                since_unix_s: e.since.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                refused: e.refused,
                dropped: e.dropped,
            })
            .collect();
        out.sort_by(|a, b| (&a.partition, &a.table, &a.column).cmp(&(&b.partition, &b.table, &b.column)));
        out
    }
}

fn describe(partition: &Partition, table: &str, column: Option<&str>, kind: Kind) -> String {
    match (kind, column) {
        (Kind::UnknownColumn, Some(column)) => format!("{partition}: table {table:?} has no column {column:?}"),
        (Kind::UnknownTable, _) => format!("{partition}: no table {table:?}"),
        _ => format!("{partition}: table {table:?}: the key's arity differs from the primary key"),
    }
}

/// What the log says when a drift starts.
fn explain(partition: &Partition, finding: &Finding, policy: Policy) -> String {
    let what = describe(partition, &finding.table, finding.column.as_deref(), finding.kind);
    match (finding.kind, policy) {
        (Kind::UnknownColumn, Policy::Halt) => format!(
            "schema drift: {what}; requests carrying it are refused (400) until the target has it: add it to the target, or drop it with --onUnknownColumn {partition}=ignore"
        ),
        (Kind::UnknownTable, Policy::Halt) => format!(
            "schema drift: {what}; requests carrying it are refused (400) until the target has it: create it, or drop its rows with --onUnknownTable {partition}=ignore"
        ),
        (Kind::UnknownColumn, Policy::Ignore) => {
            format!(
                "schema drift: {what}; the column is dropped before journaling (--onUnknownColumn ignore) until the target has it"
            )
        }
        (Kind::UnknownTable, Policy::Ignore) => {
            format!("schema drift: {what}; its rows are dropped (--onUnknownTable ignore) until the target has it")
        }
        (Kind::KeyArity, _) => {
            format!("schema drift: {what}; requests are refused (400): make the target's primary key the source's")
        }
    }
}

#[cfg(test)]
mod tests;
