//! `--partitionBy group` (issue 21, decision 0011): one schema of 8 tables in 4 foreign-key groups
//! (one with `ON DELETE CASCADE`), applied by real `wharf-applier` processes or the ingest's own
//! workers into a real PostgreSQL. Every test ends with the target equal to the model and an audit
//! trail (a trigger on every table) showing no row version applied twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Applier, Ingest, QueuePki, Target, free_port, lock_table, strs, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// A foreign key: the column and the parent table.
type ForeignKey = Option<(&'static str, &'static str)>;

/// Table, its foreign key, and its group (named by its first table).
const TABLES: [(&str, ForeignKey, &str); 8] = [
    ("customers", None, "customers"),
    ("orders", Some(("customer_id", "customers")), "customers"),
    ("items", Some(("order_id", "orders")), "customers"),
    ("authors", None, "authors"),
    ("books", Some(("author_id", "authors")), "authors"),
    ("warehouses", None, "stock"),
    ("stock", Some(("warehouse_id", "warehouses")), "stock"),
    ("events", None, "events"),
];
const GROUPS: [&str; 4] = ["authors", "customers", "events", "stock"];
const PARENTS: i64 = 5;
const CHILDREN: i64 = 20;

fn group_of(table: &str) -> &'static str {
    TABLES.iter().find(|(t, _, _)| *t == table).map(|(_, _, g)| *g).unwrap()
}

/// Schema `shop` with the 8 tables (orders and items cascade from customers; `loose`, a child
/// table, without its foreign key, so it and its parent are two groups), and the audit trigger.
fn prepare(target: &Target, loose: Option<&str>) {
    let mut sql = String::from(
        "CREATE SCHEMA shop;
         CREATE TABLE public.audit (n bigserial, tbl text, op text, row_id bigint, v text, app text);
         CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF TG_OP = 'DELETE' THEN
             INSERT INTO public.audit (tbl, op, row_id, v, app)
               VALUES (TG_TABLE_NAME, TG_OP, OLD.id, OLD.v, current_setting('application_name'));
           ELSE
             INSERT INTO public.audit (tbl, op, row_id, v, app)
               VALUES (TG_TABLE_NAME, TG_OP, NEW.id, NEW.v, current_setting('application_name'));
           END IF;
           RETURN NULL;
         END $$;",
    );
    for (table, fk, _) in TABLES {
        let column = match fk {
            Some((column, _)) if loose == Some(table) => format!(", {column} bigint NOT NULL"),
            Some((column, parent)) => {
                let cascade = if group_of(table) == "customers" { " ON DELETE CASCADE" } else { "" };
                format!(", {column} bigint NOT NULL REFERENCES shop.{parent} (id){cascade}")
            }
            None => String::new(),
        };
        sql.push_str(&format!(
            "CREATE TABLE shop.{table} (id bigint PRIMARY KEY{column}, v text NOT NULL);
             CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON shop.{table}
               FOR EACH ROW EXECUTE FUNCTION public.audit_row();"
        ));
    }
    target.execute("app", &sql);
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn hlc(wall: u64) -> String {
    format!("{wall}.0000000000")
}

fn wall_of(hlc: &str) -> u64 {
    hlc.split('.').next().unwrap().parse().unwrap()
}

/// A changefeed into `app.shop` and what the target must hold once everything is resolved. Every
/// write carries a value used once, so a row version applied twice shows in the audit.
struct Feed {
    wall: u64,
    writes: u64,
    model: BTreeMap<(&'static str, i64), String>,
    resolved: u64,
}

impl Feed {
    fn new() -> Feed {
        Feed { wall: 0, writes: 0, model: BTreeMap::new(), resolved: 0 }
    }

    /// A timestamp after the last one, near the clock (the ingest refuses ones ahead of it).
    fn tick(&mut self) -> String {
        self.wall = (self.wall + 1_000).max(now_ns());
        hlc(self.wall)
    }

    /// One body per group at its own timestamp: the parents on the first round and an update of
    /// one of them later, and `rows` writes and deletes per child table and of events.
    fn round(&mut self, ingest: &Ingest, rows: usize) {
        for group in GROUPS {
            let at = self.tick();
            let mut messages = Vec::new();
            for (table, fk, _) in TABLES.iter().filter(|(_, _, g)| *g == group) {
                match fk {
                    None if *table != "events" => {
                        if !self.model.keys().any(|(t, _)| t == table) {
                            (0..PARENTS).for_each(|id| messages.push(self.upsert(table, id, None, &at)));
                        } else if let Some(id) =
                            Some(self.writes as i64 % PARENTS).filter(|id| self.model.contains_key(&(*table, *id)))
                        {
                            messages.push(self.upsert(table, id, None, &at));
                        }
                    }
                    _ => {
                        for i in 0..rows {
                            messages.extend(self.child_write(table, *fk, i, &at));
                        }
                    }
                }
            }
            self.post(ingest, &messages);
        }
    }

    /// A write of `table` (an upsert or, one time in five, a delete) whose parent exists.
    fn child_write(&mut self, table: &'static str, fk: Option<(&str, &str)>, i: usize, at: &str) -> Option<String> {
        let id = ((self.writes as i64) * 7 + i as i64) % CHILDREN;
        // Orders are never deleted but by a cascade (items refer to them).
        if table != "orders" && (self.writes + i as u64) % 5 == 4 {
            self.model.remove(&(table, id));
            self.writes += 1;
            return Some(format!(r#"{{"after": null, "key": [{id}], "topic": "{table}", "updated": "{at}"}}"#));
        }
        let parent = match fk {
            Some((column, parent)) => {
                let parent_id = id % if parent == "orders" { CHILDREN } else { PARENTS };
                if !self.model.contains_key(&(static_name(parent), parent_id)) {
                    return None;
                }
                Some((column, parent_id))
            }
            None => None,
        };
        Some(self.upsert(table, id, parent, at))
    }

    fn upsert(&mut self, table: &'static str, id: i64, parent: Option<(&str, i64)>, at: &str) -> String {
        self.writes += 1;
        let v = format!("{table}{id}-w{}", self.writes);
        self.model.insert((table, id), v.clone());
        let parent = parent.map(|(column, p)| format!(r#", "{column}": {p}"#)).unwrap_or_default();
        format!(
            r#"{{"after": {{"id": {id}{parent}, "v": "{v}"}}, "key": [{id}], "topic": "{table}", "updated": "{at}"}}"#
        )
    }

    /// Deletes customer `id` with its orders and their items at one timestamp, as a source with
    /// the same cascades emits them.
    fn delete_customer(&mut self, ingest: &Ingest, id: i64) {
        let at = self.tick();
        let orders: Vec<i64> =
            (0..CHILDREN).filter(|o| o % PARENTS == id && self.model.contains_key(&("orders", *o))).collect();
        let items: Vec<i64> = (0..CHILDREN)
            .filter(|i| orders.contains(&(i % CHILDREN)) && self.model.contains_key(&("items", *i)))
            .collect();
        let mut messages = Vec::new();
        for (table, ids) in [("items", items), ("orders", orders), ("customers", vec![id])] {
            for row in ids {
                self.model.remove(&(table, row));
                messages.push(format!(r#"{{"after": null, "key": [{row}], "topic": "{table}", "updated": "{at}"}}"#));
            }
        }
        self.post(ingest, &messages);
    }

    fn post(&self, ingest: &Ingest, messages: &[String]) {
        if messages.is_empty() {
            return;
        }
        let body = format!(r#"{{"payload":[{}],"length":{}}}"#, messages.join(","), messages.len());
        let (status, text) = ingest.post("/app/shop", body.as_bytes());
        assert_eq!(status, 200, "{text}");
    }

    fn resolve(&mut self, ingest: &Ingest) {
        self.tick();
        self.resolved = self.wall;
        let body = format!(r#"{{"resolved":"{}"}}"#, hlc(self.wall));
        let (status, text) = ingest.post("/app/shop", body.as_bytes());
        assert_eq!(status, 200, "{text}");
    }

    /// Whether every live unit of `app.shop` (`units` of them) is at the last resolved timestamp.
    fn applied(&self, target: &Target, units: usize) -> bool {
        let want = hlc(self.resolved);
        let rows = live_units(target);
        rows.len() == units && rows.values().all(|(resolved, _)| *resolved == want)
    }

    /// Rounds and resolved timestamps until the schema is the four groups, all applied: a
    /// regrouping happens at the ingest's next catalog read.
    fn until_merged(&mut self, ingest: &Ingest, target: &Target) {
        let deadline = Instant::now() + LONG;
        loop {
            self.round(ingest, 5);
            self.resolve(ingest);
            let merged = || self.applied(target, 4) && tables_of(&live_units(target)) == four_groups();
            if common::wait_until(Duration::from_secs(3), merged) {
                return;
            }
            assert!(Instant::now() < deadline, "the groups never merged: {:?}", live_units(target));
        }
    }

    /// The target equals the model, and no row version was applied twice.
    fn check(&self, target: &Target, units: usize) {
        wait_for("every unit applied up to the last resolved timestamp", LONG, || self.applied(target, units));
        let mut got = BTreeMap::new();
        for (table, _, _) in TABLES {
            for row in target.query(&format!("SELECT id::text, v FROM shop.{table}")) {
                got.insert((table, row[0].as_deref().unwrap().parse().unwrap()), row[1].clone().unwrap());
            }
        }
        assert_eq!(got, self.model, "target differs from the model");
        let twice = target.query(
            "SELECT tbl, row_id::text, v, count(*)::text FROM public.audit WHERE op <> 'DELETE'
             GROUP BY 1, 2, 3 HAVING count(*) > 1 LIMIT 5",
        );
        assert!(twice.is_empty(), "row versions applied more than once: {twice:?}");
    }
}

/// A table's name as the model keys it.
fn static_name(parent: &str) -> &'static str {
    TABLES.iter().map(|(t, _, _)| *t).find(|t| *t == parent).unwrap()
}

/// The live (not retired) checkpoint rows of `app.shop`: unit → (resolved, tables).
fn live_units(target: &Target) -> BTreeMap<String, (String, String)> {
    if target.query("SELECT to_regclass('_replicator.checkpoints')::text") == [[None]] {
        return BTreeMap::new();
    }
    target
        .query(
            "SELECT partition, resolved, coalesce(array_to_string(tables, ','), '*') FROM _replicator.checkpoints
             WHERE parent = 'app.shop' AND NOT retired",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), (r[1].clone().unwrap(), r[2].clone().unwrap())))
        .collect()
}

/// The four groups' units and tables.
fn four_groups() -> BTreeMap<String, String> {
    [
        ("app.shop/authors", "authors,books"),
        ("app.shop/customers", "customers,items,orders"),
        ("app.shop/events", "events"),
        ("app.shop/stock", "stock,warehouses"),
    ]
    .into_iter()
    .map(|(u, t)| (u.to_owned(), t.to_owned()))
    .collect()
}

fn tables_of(units: &BTreeMap<String, (String, String)>) -> BTreeMap<String, String> {
    units.iter().map(|(u, (_, t))| (u.clone(), t.clone())).collect()
}

/// Per group, the appliers whose audit rows after `since` touched its tables.
fn appliers_by_group(target: &Target, since: i64) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut by_group: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for row in target.query(&format!("SELECT DISTINCT tbl, app FROM public.audit WHERE n > {since}")) {
        by_group.entry(group_of(row[0].as_deref().unwrap())).or_default().insert(row[1].clone().unwrap());
    }
    by_group
}

fn last_audit(target: &Target) -> i64 {
    target.query("SELECT coalesce(max(n), 0)::text FROM public.audit")[0][0].as_deref().unwrap().parse().unwrap()
}

/// A target with the schema, the queue's PKI, a journal and logs for separate appliers.
struct Setup {
    target: Target,
    pki: QueuePki,
    journal: tempfile::TempDir,
    logs: tempfile::TempDir,
    udp: u16,
}

impl Setup {
    fn new(loose: Option<&str>) -> Setup {
        let target = Target::start();
        prepare(&target, loose);
        Setup {
            target,
            pki: QueuePki::new(),
            journal: tempfile::tempdir().unwrap(),
            logs: common::logs_dir("wharf-groups-"),
            udp: free_port().unwrap(),
        }
    }

    /// An ingest for separate appliers, grouping by foreign keys.
    fn ingest(&self, lease_timeout: &str) -> Ingest {
        let mut args = vec!["--disableAuthentication".to_owned(), "--partitionBy".into(), "group".into()];
        args.extend(self.pki.ingest_args(self.udp, lease_timeout));
        let log = self.logs.path().join(format!("ingest-{}.log", free_port().unwrap()));
        Ingest::start_logged(&self.target.url(), self.journal.path(), &strs(&args), &log)
    }

    /// An ingest with its own workers and `flags`.
    fn embedded(&self, flags: &[&str]) -> Ingest {
        let log = self.logs.path().join(format!("ingest-{}.log", free_port().unwrap()));
        let mut args = vec!["--disableAuthentication"];
        args.extend_from_slice(flags);
        Ingest::start_logged(&self.target.url(), self.journal.path(), &args, &log)
    }

    fn applier(&self, name: &str) -> Applier {
        let addr = format!("127.0.0.1:{}", self.udp);
        Applier::start(name, &addr, &self.target.url(), &self.pki, 1, self.logs.path())
    }

    fn logs(&self) -> &Path {
        self.logs.path()
    }

    /// `wharfctl status --json` against the queue service and the target.
    fn status(&self) -> serde_json::Value {
        let bin = Path::new(env!("CARGO_BIN_EXE_wharf-ingest")).with_file_name("wharfctl");
        let out = std::process::Command::new(bin)
            .args(["status", "--json", "--targetConn", &self.target.url(), "--queueAddr"])
            .arg(format!("127.0.0.1:{}", self.udp))
            .args(["--queueCA", &self.pki.path("ca.crt"), "--queueCertificate", &self.pki.path("applier.crt")])
            .args(["--queuePrivateKey", &self.pki.path("applier.key")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn one_two_and_four_applier_processes_share_the_groups_exactly_once_and_cascades_stay_in_their_group() {
    let setup = Setup::new(None);
    let ingest = setup.ingest("10s");
    let mut feed = Feed::new();
    let _a = setup.applier("applier_a");
    for _ in 0..3 {
        feed.round(&ingest, 10);
        feed.resolve(&ingest);
    }
    feed.check(&setup.target, 4);
    assert_eq!(tables_of(&live_units(&setup.target)), four_groups(), "one unit per foreign-key group");
    // A parent deleted with its children at one timestamp: the cascade stays in its group.
    feed.delete_customer(&ingest, 2);
    feed.round(&ingest, 10);
    feed.resolve(&ingest);
    feed.check(&setup.target, 4);
    let audit = setup
        .target
        .query("SELECT DISTINCT tbl FROM public.audit WHERE op = 'DELETE' AND tbl IN ('customers', 'orders')");
    assert_eq!(audit.len(), 2, "the customer and its orders were deleted: {audit:?}");

    // Two processes, then four: each gets a share (handed over between windows), and with four
    // each holds one group.
    let _b = setup.applier("applier_b");
    let both = converge(&setup.target, &ingest, &mut feed, |by_group| {
        by_group.values().flatten().collect::<BTreeSet<_>>().len() == 2
    });
    assert!(both, "applier_b never got a group");
    let _c = setup.applier("applier_c");
    let _d = setup.applier("applier_d");
    let one_each = converge(&setup.target, &ingest, &mut feed, |by_group| {
        let holders: BTreeSet<&String> = by_group.values().flatten().collect();
        by_group.len() == 4 && by_group.values().all(|apps| apps.len() == 1) && holders.len() == 4
    });
    assert!(one_each, "four appliers did not end up with one group each");
    feed.check(&setup.target, 4);
    // wharfctl status lists the groups with their tables, holders, epochs and checkpoints.
    let status = setup.status();
    let mut units = BTreeMap::new();
    for p in status["partitions"].as_array().unwrap() {
        let tables: Vec<&str> = p["tables"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert!(p["epoch"].as_u64().unwrap() > 0 && p["lag_s"].is_number(), "{p}");
        assert_eq!(p["applied"].as_str(), Some(hlc(feed.resolved).as_str()), "{p}");
        units.insert(p["partition"].as_str().unwrap().to_owned(), (tables.join(","), p["holder"].clone()));
    }
    assert_eq!(units.iter().map(|(u, (t, _))| (u.clone(), t.clone())).collect::<BTreeMap<_, _>>(), four_groups());
    let holders: BTreeSet<String> = units.values().map(|(_, h)| h.to_string()).collect();
    assert_eq!(holders.len(), 4, "one group per applier: {units:?}");
}

/// Feeds rounds until the appliers of one round's audit rows satisfy `done`; `false` if they never
/// do within 30 rounds.
fn converge(
    target: &Target,
    ingest: &Ingest,
    feed: &mut Feed,
    done: impl Fn(&BTreeMap<&'static str, BTreeSet<String>>) -> bool,
) -> bool {
    for _ in 0..30 {
        let since = last_audit(target);
        feed.round(ingest, 10);
        feed.resolve(ingest);
        feed.check(target, 4);
        if done(&appliers_by_group(target, since)) {
            return true;
        }
    }
    false
}

#[test]
fn killed_and_stopped_appliers_lose_nothing_and_apply_nothing_twice() {
    let setup = Setup::new(None);
    let ingest = setup.ingest("2s");
    let mut feed = Feed::new();
    for _ in 0..5 {
        feed.round(&ingest, 200);
    }
    let mut a = setup.applier("applier_a");
    let b = setup.applier("applier_b");
    // Each window waits inside its transaction on the audit trigger's insert, so a window of
    // applier_a can be caught there.
    let blocker = lock_table(&setup.target, "public.audit", "ACCESS EXCLUSIVE");
    feed.resolve(&ingest);
    wait_for("applier_a to be inside a window", LONG, || waiting(&setup.target, "applier_a"));
    a.kill();
    drop(blocker);
    feed.round(&ingest, 20);
    feed.resolve(&ingest);
    feed.check(&setup.target, 4);

    // SIGSTOP past the lease: the events group's holder waits on a lock, is stopped, another
    // process claims a newer epoch, and the stopped one's commit is fenced when it wakes.
    let c = setup.applier("applier_c");
    let blocker = lock_table(&setup.target, "shop.events", "ACCESS EXCLUSIVE");
    feed.round(&ingest, 20);
    feed.resolve(&ingest);
    let stopped = wait_for_holder_waiting(&setup.target, &[&b, &c]);
    let epoch = |t: &Target| -> u64 {
        let rows = t.query("SELECT lease_epoch::text FROM _replicator.checkpoints WHERE partition = 'app.shop/events'");
        rows[0][0].as_deref().unwrap().parse().unwrap()
    };
    let before = epoch(&setup.target);
    stopped.signal("STOP");
    wait_for("another applier to claim the events group", LONG, || epoch(&setup.target) > before);
    let since = last_audit(&setup.target);
    drop(blocker);
    stopped.signal("CONT");
    feed.check(&setup.target, 4);
    wait_for("the stopped applier to report the fencing", LONG, || stopped.log_text().contains("taken over"));
    let events =
        setup.target.query(&format!("SELECT DISTINCT app FROM public.audit WHERE tbl = 'events' AND n > {since}"));
    let other = if std::ptr::eq(stopped, &b) { "applier_c" } else { "applier_b" };
    assert_eq!(events, [[Some(other.to_owned())]], "the stopped applier's fenced transaction must have rolled back");
    feed.round(&ingest, 10);
    feed.resolve(&ingest);
    feed.check(&setup.target, 4);
}

/// Whether applier `name` waits on a lock inside a transaction that wrote.
fn waiting(target: &Target, name: &str) -> bool {
    let sql = format!(
        "SELECT 'x' FROM pg_stat_activity WHERE application_name = '{name}' AND backend_xid IS NOT NULL AND wait_event_type = 'Lock'"
    );
    !target.query(&sql).is_empty()
}

/// The applier of `candidates` that waits on a lock (the holder of the locked group).
fn wait_for_holder_waiting<'a>(target: &Target, candidates: &[&'a Applier]) -> &'a Applier {
    let sql = "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name LIKE 'applier_%'";
    let mut name = None;
    wait_for("the events group's holder to wait on the lock", LONG, || {
        name = target.query(sql).first().and_then(|r| r[0].clone());
        name.is_some()
    });
    let name = name.unwrap();
    candidates.iter().find(|a| a.log.ends_with(format!("{name}.log"))).copied().expect("a known applier")
}

#[test]
fn a_locked_group_holds_only_itself_while_the_others_keep_their_lag() {
    let setup = Setup::new(None);
    let ingest = setup.embedded(&["--appliers", "4", "--partitionBy", "group"]);
    let mut feed = Feed::new();
    feed.round(&ingest, 5);
    feed.resolve(&ingest);
    feed.check(&setup.target, 4);
    let blocker = lock_table(&setup.target, "shop.events", "ACCESS EXCLUSIVE");
    let started = Instant::now();
    let mut worst = BTreeMap::new();
    while started.elapsed() < Duration::from_secs(20) {
        feed.round(&ingest, 5);
        feed.resolve(&ingest);
        let now = now_ns();
        for (unit, (resolved, _)) in live_units(&setup.target) {
            let lag = Duration::from_nanos(now.saturating_sub(wall_of(&resolved)));
            let entry = worst.entry(unit).or_insert(Duration::ZERO);
            *entry = (*entry).max(lag);
        }
        // The feed's pace (a rate, not a wait for anything): about four resolved timestamps a second.
        std::thread::sleep(Duration::from_millis(250));
    }
    let (status, text) = common::request(ingest.port, "GET", "/_/readyz", b"").unwrap();
    drop(blocker);
    eprintln!("worst lag per group while shop.events was locked: {worst:?}");
    assert!(worst["app.shop/events"] >= Duration::from_secs(19), "the locked group cannot have moved: {worst:?}");
    for unit in ["app.shop/authors", "app.shop/customers", "app.shop/stock"] {
        assert!(worst[unit] < Duration::from_secs(2), "{unit} lagged {:?} behind the clock", worst[unit]);
    }
    assert_eq!(status, 200, "a lock is no failure: readiness stays up ({text})");
    feed.check(&setup.target, 4);
}

#[test]
fn a_foreign_key_added_between_two_groups_merges_them_at_a_resolved_boundary() {
    // stock → warehouses without its foreign key: two groups. (The child sorts before its parent,
    // so an applier ordering by a catalog without the key would insert a stock row first.)
    let setup = Setup::new(Some("stock"));
    setup.target.execute("app", "ALTER TABLE shop.stock ADD CONSTRAINT stock_not_bad CHECK (v NOT LIKE '%bad%')");
    let ingest = setup.embedded(&["--appliers", "2", "--partitionBy", "group", "--catalogRefresh", "1s"]);
    let mut feed = Feed::new();
    feed.round(&ingest, 5);
    feed.resolve(&ingest);
    feed.check(&setup.target, 5);
    assert!(live_units(&setup.target).contains_key("app.shop/warehouses"), "warehouses is a group of its own");
    // A refused row halts the stock group (the default policy); readiness names it, and the
    // warehouses group moves on.
    let at = feed.tick();
    let bad = format!(
        r#"{{"after": {{"id": 3, "warehouse_id": 1, "v": "bad"}}, "key": [3], "topic": "stock", "updated": "{at}"}}"#
    );
    feed.model.insert(("stock", 3), "bad".into());
    feed.post(&ingest, &[bad]);
    feed.round(&ingest, 5);
    feed.resolve(&ingest);
    wait_for("readiness to name the halted stock group", LONG, || {
        let (status, text) = common::request(ingest.port, "GET", "/_/readyz", b"").unwrap();
        status == 503 && text.contains("app.shop/stock")
    });
    let want = hlc(feed.resolved);
    wait_for("the warehouses group at the resolved timestamp", LONG, || {
        live_units(&setup.target).get("app.shop/warehouses").is_some_and(|(r, _)| *r == want)
    });
    let stock_at = live_units(&setup.target)["app.shop/stock"].0.clone();
    assert!(wall_of(&stock_at) < feed.resolved, "stock is behind");

    // The foreign key, and the fix: the groups merge, the merged one starting from stock's
    // checkpoint with warehouses' as a floor.
    setup.target.execute(
        "app",
        "ALTER TABLE shop.stock ADD CONSTRAINT stock_warehouse FOREIGN KEY (warehouse_id) REFERENCES shop.warehouses (id);
         ALTER TABLE shop.stock DROP CONSTRAINT stock_not_bad",
    );
    feed.until_merged(&ingest, &setup.target);
    feed.check(&setup.target, 4);
    let retired = setup.target.query(
        "SELECT partition, resolved FROM _replicator.checkpoints WHERE parent = 'app.shop' AND retired ORDER BY 1",
    );
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(retired[0][0].as_deref(), Some("app.shop/warehouses"));
    let log = std::fs::read_to_string(ingest.log.as_ref().unwrap()).unwrap();
    let seeded = log.lines().find(|l| l.contains("a regrouped unit takes its tables over")).expect("a seed in the log");
    assert!(seeded.contains("app.shop/stock") && seeded.contains(&stock_at), "{seeded}");

    // A new parent and its child at one timestamp, the child first in the body: the merged group
    // orders them by the catalog with the new key.
    let at = feed.tick();
    let child = format!(
        r#"{{"after": {{"id": 17, "warehouse_id": 9, "v": "new child"}}, "key": [17], "topic": "stock", "updated": "{at}"}}"#
    );
    let parent =
        format!(r#"{{"after": {{"id": 9, "v": "new parent"}}, "key": [9], "topic": "warehouses", "updated": "{at}"}}"#);
    feed.model.insert(("stock", 17), "new child".into());
    feed.model.insert(("warehouses", 9), "new parent".into());
    let halts = || {
        let log = std::fs::read_to_string(ingest.log.as_ref().unwrap()).unwrap();
        log.matches("apply failed permanently").count()
    };
    let before = halts();
    feed.post(&ingest, &[child, parent]);
    feed.resolve(&ingest);
    feed.check(&setup.target, 4);
    assert_eq!(halts(), before, "the merged group must not have halted on the new key");
}

#[test]
fn switching_partition_by_on_a_running_journal_and_target_applies_nothing_twice() {
    let setup = Setup::new(None);
    let mut feed = Feed::new();
    for (mode, count) in [("schema", 1), ("group", 4), ("schema", 1), ("group", 4), ("schema", 1)] {
        let mut ingest = setup.embedded(&["--appliers", "4", "--partitionBy", mode]);
        for _ in 0..3 {
            feed.round(&ingest, 20);
            feed.resolve(&ingest);
        }
        feed.check(&setup.target, count);
        let units = tables_of(&live_units(&setup.target));
        if mode == "schema" {
            assert_eq!(units, [("app.shop".to_owned(), "*".to_owned())].into());
            ingest.kill();
            continue;
        }
        assert_eq!(units, four_groups());
        // Leave the groups at different checkpoints, the events group behind: the journal keeps
        // the schema's rows from its checkpoint on, so the schema's unit reads the other groups'
        // rows since again, and must skip them.
        let blocker = lock_table(&setup.target, "shop.events", "ACCESS EXCLUSIVE");
        feed.round(&ingest, 20);
        feed.resolve(&ingest);
        let want = hlc(feed.resolved);
        wait_for("every group but events at the resolved timestamp", LONG, || {
            let units = live_units(&setup.target);
            units.values().filter(|(resolved, _)| *resolved == want).count() == 3
                && units.get("app.shop/events").is_some_and(|(resolved, _)| *resolved != want)
        });
        ingest.kill();
        drop(blocker);
    }
    let retired =
        setup.target.query("SELECT count(*)::text FROM _replicator.checkpoints WHERE parent = 'app.shop' AND retired");
    assert_eq!(retired, [[Some("4".to_owned())]], "the four groups' rows, retired by the schema's unit");
    let _ = setup.logs();
}

/// After an ingest restart, every group is granted above the epoch the target has for it: the
/// embedded workers' first claims go through, none is fenced (a fenced claim would be logged as a
/// takeover and counted in `wharf_apply_fenced_total`).
#[test]
fn a_restarted_ingest_grants_each_group_above_the_targets_epoch() {
    let setup = Setup::new(None);
    let mut feed = Feed::new();
    let mut epochs = BTreeMap::new();
    for run in 0..2 {
        let mut ingest = setup.embedded(&["--appliers", "2", "--partitionBy", "group"]);
        for _ in 0..2 {
            feed.round(&ingest, 20);
            feed.resolve(&ingest);
        }
        feed.check(&setup.target, 4);
        let (status, metrics) = common::request(ingest.port, "GET", "/_/varz", b"").unwrap();
        assert_eq!(status, 200);
        assert_eq!(common::metric_sum(&metrics, "wharf_apply_fenced_total"), 0.0, "run {run}: a claim was fenced");
        let now: BTreeMap<String, i64> = setup
            .target
            .query("SELECT partition, lease_epoch::text FROM _replicator.checkpoints WHERE parent = 'app.shop' AND NOT retired")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].as_deref().unwrap().parse().unwrap()))
            .collect();
        assert_eq!(now.len(), 4, "{now:?}");
        for (unit, epoch) in &now {
            assert!(epochs.get(unit).is_none_or(|before| epoch > before), "{unit}: epoch {epoch} after {epochs:?}");
        }
        epochs = now;
        ingest.kill();
    }
}

/// A table created in the target while the feed runs becomes a group of its own: its first claim
/// is seeded from no checkpoint row, it applies its rows once, and it stays a group across an
/// ingest restart while the four groups go on.
#[test]
fn a_table_created_while_running_becomes_a_group_of_its_own() {
    let setup = Setup::new(None);
    let mut feed = Feed::new();
    let mut ingest = setup.embedded(&["--appliers", "2", "--partitionBy", "group"]);
    feed.round(&ingest, 10);
    feed.resolve(&ingest);
    feed.check(&setup.target, 4);
    setup.target.execute(
        "app",
        "CREATE TABLE shop.notes (id bigint PRIMARY KEY, v text NOT NULL);
         CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON shop.notes
           FOR EACH ROW EXECUTE FUNCTION public.audit_row();",
    );
    let mut notes = BTreeMap::new();
    for run in 0..2 {
        if run == 1 {
            ingest.kill();
            ingest = setup.embedded(&["--appliers", "2", "--partitionBy", "group"]);
        }
        for id in 0..3 {
            let at = feed.tick();
            let v = format!("note{id}-run{run}");
            let message = format!(
                r#"{{"after": {{"id": {id}, "v": "{v}"}}, "key": [{id}], "topic": "notes", "updated": "{at}"}}"#
            );
            let body = format!(r#"{{"payload":[{message}],"length":1}}"#);
            // The ingest reads a schema's catalog again at most once a second, so the first
            // request may be refused (the changefeed retries it, as here).
            let mut last = (0, String::new());
            let accepted = common::wait_until(Duration::from_secs(10), || {
                last = ingest.post("/app/shop", body.as_bytes());
                last.0 == 200
            });
            assert!(accepted, "rows of the new table refused: {last:?}");
            notes.insert(id.to_string(), v);
        }
        feed.round(&ingest, 10);
        feed.resolve(&ingest);
        feed.check(&setup.target, 5);
        let mut want = four_groups();
        want.insert("app.shop/notes".into(), "notes".into());
        assert_eq!(tables_of(&live_units(&setup.target)), want);
        let got: BTreeMap<String, String> = setup
            .target
            .query("SELECT id::text, v FROM shop.notes")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        assert_eq!(got, notes, "run {run}");
    }
    let twice = setup
        .target
        .query("SELECT row_id::text, v FROM public.audit WHERE tbl = 'notes' GROUP BY 1, 2 HAVING count(*) > 1");
    assert!(twice.is_empty(), "notes applied more than once: {twice:?}");
}

/// Whether any log in `dir` has `text`.
fn logs_contain(dir: &Path, text: &str) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .any(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default().contains(text))
}

/// A foreign key added in the target between two groups, before the ingest's catalog read shows
/// it: a child row whose new parent the other group has not applied yet is refused by the target
/// (23503). That is not the row's fault: the child's group waits for the regrouping instead of
/// quarantining the row, and the merged group applies parent and child in order.
#[test]
fn a_row_refused_for_a_foreign_key_the_ingest_has_not_seen_waits_for_the_regrouping() {
    let setup = Setup::new(Some("stock"));
    let flags =
        ["--appliers", "2", "--partitionBy", "group", "--onApplyError", "quarantine", "--catalogRefresh", "10s"];
    let ingest = setup.embedded(&flags);
    let mut feed = Feed::new();
    feed.round(&ingest, 5);
    feed.resolve(&ingest);
    feed.check(&setup.target, 5);
    setup.target.execute(
        "app",
        "ALTER TABLE shop.stock ADD CONSTRAINT stock_warehouse FOREIGN KEY (warehouse_id) REFERENCES shop.warehouses (id)",
    );
    // Writes to warehouses wait (its group cannot apply the new warehouse); reads, and so the
    // foreign-key check of a stock row, do not.
    let blocker = lock_table(&setup.target, "shop.warehouses", "SHARE");
    let at = feed.tick();
    let messages = [
        format!(r#"{{"after": {{"id": 100, "v": "w100"}}, "key": [100], "topic": "warehouses", "updated": "{at}"}}"#),
        format!(
            r#"{{"after": {{"id": 100, "warehouse_id": 100, "v": "s100"}}, "key": [100], "topic": "stock", "updated": "{at}"}}"#
        ),
    ];
    feed.post(&ingest, &messages);
    feed.model.insert(("warehouses", 100), "w100".into());
    feed.model.insert(("stock", 100), "s100".into());
    feed.resolve(&ingest);
    let quarantined = || setup.target.query("SELECT table_name, key FROM _replicator.quarantine");
    wait_for("the stock row refused", LONG, || {
        logs_contain(setup.logs(), "a foreign key the ingest has not seen yet") || !quarantined().is_empty()
    });
    assert!(quarantined().is_empty(), "a row quarantined for a key the ingest had not seen: {:?}", quarantined());
    wait_for("readiness to say why the stock group waits", LONG, || {
        let (status, text) = common::request(ingest.port, "GET", "/_/readyz", b"").unwrap();
        status == 503 && text.contains("app.shop/stock") && text.contains("has not grouped with them yet")
    });
    drop(blocker);
    feed.until_merged(&ingest, &setup.target);
    feed.check(&setup.target, 4);
    assert!(quarantined().is_empty(), "{:?}", quarantined());
}
