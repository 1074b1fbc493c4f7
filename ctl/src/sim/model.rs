//! A seeded random model of a source database with a parent and a child table (foreign key), and
//! the changefeed messages its transactions produce.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use wharf_queue::Hlc;

/// DDL of the simulated schema, for a PostgreSQL target. `{schema}` is replaced.
pub const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.sim_parent (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    balance numeric(14,2) NOT NULL,
    tags text[],
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.sim_child (
    parent_id bigint NOT NULL REFERENCES {schema}.sim_parent (id),
    id bigint NOT NULL,
    qty integer NOT NULL,
    note text,
    PRIMARY KEY (parent_id, id)
);";

/// One changefeed message.
#[derive(Clone, Debug)]
pub struct Msg {
    pub hlc: Hlc,
    pub table: &'static str,
    pub key: Value,
    pub after: Option<Value>,
}

impl Msg {
    /// The message as CockroachDB's v2 webhook sink prints it (sorted keys, `", "` and `": "`).
    pub fn to_wire(&self) -> String {
        let after = self.after.as_ref().map_or("null".to_owned(), Value::to_string);
        format!(
            "{{\"after\": {after}, \"key\": {}, \"topic\": \"{}\", \"updated\": \"{}\"}}",
            self.key, self.table, self.hlc
        )
    }

    /// Identity of the row this message is about.
    pub fn row_id(&self) -> (&'static str, String) {
        (self.table, self.key.to_string())
    }
}

pub struct Model {
    rng: StdRng,
    wall: u64,
    last: Hlc,
    next_id: i64,
    pub parents: BTreeMap<i64, Value>,
    pub children: BTreeMap<(i64, i64), Value>,
}

/// Start of simulated time: 2024-11-26T10:00:00Z.
const T0: u64 = 1_732_615_200_000_000_000;

impl Model {
    pub fn new(seed: u64) -> Model {
        Model {
            rng: StdRng::seed_from_u64(seed),
            wall: T0,
            last: Hlc::new(T0, 0),
            next_id: 1,
            parents: BTreeMap::new(),
            children: BTreeMap::new(),
        }
    }

    /// The timestamp of the latest transaction.
    pub fn now(&self) -> Hlc {
        self.last
    }

    /// Runs one source transaction of 1–4 operations and returns its messages (one timestamp).
    pub fn transaction(&mut self) -> Vec<Msg> {
        self.wall += self.rng.random_range(1_000..2_000_000);
        let hlc = Hlc::new(self.wall, self.rng.random_range(0..3));
        self.last = hlc;
        let ops = self.rng.random_range(1..=4);
        let mut out = Vec::new();
        for _ in 0..ops {
            let roll = self.rng.random_range(0..100);
            match roll {
                0..35 => self.insert_parent(hlc, &mut out),
                35..55 => self.update_parent(hlc, &mut out),
                55..80 => self.insert_child(hlc, &mut out),
                80..90 => self.update_child(hlc, &mut out),
                90..96 => self.delete_child(hlc, &mut out),
                _ => self.delete_parent(hlc, &mut out),
            }
        }
        // Several writes to one row in one transaction yield only the last.
        let mut last: BTreeMap<(&'static str, String), Msg> = BTreeMap::new();
        for m in out {
            last.insert(m.row_id(), m);
        }
        last.into_values().collect()
    }

    fn parent_row(&mut self, id: i64, hlc: Hlc) -> Value {
        let cents: i64 = self.rng.random_range(-1_000_000..100_000_000);
        let tags = if self.rng.random_bool(0.2) { Value::Null } else { json!(["t", format!("g{}", id % 5), "a,b"]) };
        let sign = if cents < 0 { "-" } else { "" };
        let balance: Value =
            serde_json::from_str(&format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)).expect("decimal");
        let secs = hlc.wall / 1_000_000_000;
        json!({"balance": balance, "id": id, "name": format!("parent \"{id}\" ☃"), "tags": tags, "updated_at": format!("{}Z", iso(secs))})
    }

    fn insert_parent(&mut self, hlc: Hlc, out: &mut Vec<Msg>) {
        let id = self.next_id;
        self.next_id += 1;
        let row = self.parent_row(id, hlc);
        self.parents.insert(id, row.clone());
        out.push(Msg { hlc, table: "sim_parent", key: json!([id]), after: Some(row) });
    }

    fn update_parent(&mut self, hlc: Hlc, out: &mut Vec<Msg>) {
        let Some(id) = self.pick_parent() else { return self.insert_parent(hlc, out) };
        let row = self.parent_row(id, hlc);
        self.parents.insert(id, row.clone());
        out.push(Msg { hlc, table: "sim_parent", key: json!([id]), after: Some(row) });
    }

    fn insert_child(&mut self, hlc: Hlc, out: &mut Vec<Msg>) {
        let Some(parent) = self.pick_parent() else { return self.insert_parent(hlc, out) };
        let id = self.next_id;
        self.next_id += 1;
        self.put_child(hlc, parent, id, out);
    }

    fn put_child(&mut self, hlc: Hlc, parent: i64, id: i64, out: &mut Vec<Msg>) {
        let qty: i32 = self.rng.random_range(-5..1000);
        let note = if self.rng.random_bool(0.3) { Value::Null } else { json!(format!("note {id}\n\t\\ end")) };
        let row = json!({"id": id, "note": note, "parent_id": parent, "qty": qty});
        self.children.insert((parent, id), row.clone());
        out.push(Msg { hlc, table: "sim_child", key: json!([parent, id]), after: Some(row) });
    }

    fn update_child(&mut self, hlc: Hlc, out: &mut Vec<Msg>) {
        let Some((parent, id)) = self.pick_child() else { return self.insert_child(hlc, out) };
        self.put_child(hlc, parent, id, out);
    }

    fn delete_child(&mut self, hlc: Hlc, out: &mut Vec<Msg>) {
        let Some((parent, id)) = self.pick_child() else { return };
        self.children.remove(&(parent, id));
        out.push(Msg { hlc, table: "sim_child", key: json!([parent, id]), after: None });
    }

    /// Deletes a parent and, in the same transaction, its children first.
    fn delete_parent(&mut self, hlc: Hlc, out: &mut Vec<Msg>) {
        let Some(parent) = self.pick_parent() else { return };
        let children: Vec<(i64, i64)> =
            self.children.range((parent, i64::MIN)..=(parent, i64::MAX)).map(|(k, _)| *k).collect();
        for (p, c) in children {
            self.children.remove(&(p, c));
            out.push(Msg { hlc, table: "sim_child", key: json!([p, c]), after: None });
        }
        self.parents.remove(&parent);
        out.push(Msg { hlc, table: "sim_parent", key: json!([parent]), after: None });
    }

    fn pick_parent(&mut self) -> Option<i64> {
        if self.parents.is_empty() {
            return None;
        }
        let n = self.rng.random_range(0..self.parents.len());
        self.parents.keys().nth(n).copied()
    }

    fn pick_child(&mut self) -> Option<(i64, i64)> {
        if self.children.is_empty() {
            return None;
        }
        let n = self.rng.random_range(0..self.children.len());
        self.children.keys().nth(n).copied()
    }

    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (UTC).
fn iso(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_match_the_calendar() {
        assert_eq!(iso(1_732_615_200), "2024-11-26T10:00:00");
        assert_eq!(iso(0), "1970-01-01T00:00:00");
    }

    #[test]
    fn the_same_seed_gives_the_same_feed() {
        let (mut a, mut b) = (Model::new(7), Model::new(7));
        for _ in 0..50 {
            let (x, y) = (a.transaction(), b.transaction());
            assert_eq!(x.iter().map(Msg::to_wire).collect::<Vec<_>>(), y.iter().map(Msg::to_wire).collect::<Vec<_>>());
        }
    }
}
