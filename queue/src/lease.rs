//! Leases: which worker applies which partition. Pure state, driven by the queue service.
//!
//! - A partition has at most one holder, a worker `(session, index)`. A session is one applier
//!   process (or the ingest process's embedded workers) and lives while it heartbeats; a session
//!   silent for the lease timeout, or whose connection closed, loses every lease at once.
//! - Every grant to a new holder raises the partition's epoch; re-granting to the holder keeps
//!   it. The epoch goes into the target with each commit, which is what fences an old holder
//!   (see `wharf_targetdb::checkpoint`): this table only decides who *should* work.
//! - A worker holds at most `ceil(P / N)` partitions (`P` partitions known, `N` workers of all
//!   live sessions). Holding more (a worker joined) it hands the surplus back between windows.
//! - A partition whose apply failed permanently is paused for a while (at most
//!   [`MAX_PAUSE`]).
//! - Nothing here trusts a worker further than its lease: a worker index must be one its session
//!   declared (at most [`MAX_WORKERS`]), only the holder may release or report a fence, epochs
//!   stay below `i64::MAX` (the target stores them as `bigint`), and a holder that makes no
//!   progress on a partition with work for the progress timeout loses it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::record::Partition;

/// Most workers one session may declare: far above any real applier process, far below what
/// makes the quota arithmetic meaningless.
pub const MAX_WORKERS: u32 = 1024;
/// Longest a partition stays paused after a failed apply.
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// The highest epoch ever granted: the target keeps epochs in a `bigint`.
pub const MAX_EPOCH: u64 = i64::MAX as u64;

/// One worker task of one session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId {
    pub session: u64,
    pub index: u32,
}

/// A partition leased to a worker (the queue service turns it into the worker's `Grant`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub partition: Partition,
    pub epoch: u64,
    /// A new holder, so a new epoch (the service keeps it in the journal); else the holder asked
    /// again for a partition it holds.
    pub new_epoch: bool,
}

/// The partitions a session may lease: `db.schema` patterns, `*` for every schema of a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope(Vec<(String, String)>);

impl Scope {
    /// From `db.schema` patterns; one without a dot allows nothing.
    pub fn parse(patterns: &[&str]) -> Scope {
        Scope(
            patterns
                .iter()
                .filter_map(|p| p.split_once('.'))
                .map(|(db, schema)| (db.to_owned(), schema.to_owned()))
                .collect(),
        )
    }

    /// Whether `partition` matches a pattern (names exactly, as the target's catalog spells them);
    /// a schema's foreign-key groups are allowed with their schema.
    pub fn allows(&self, partition: &Partition) -> bool {
        self.0.iter().any(|(db, schema)| *db == partition.database && (schema == "*" || *schema == partition.schema))
    }
}

#[derive(Debug)]
struct Session {
    name: String,
    workers: u32,
    /// `None`: every partition.
    scope: Option<Scope>,
    last_seen: Instant,
    /// In-process sessions live as long as their process.
    expires: bool,
}

#[derive(Debug, Default)]
struct Slot {
    holder: Option<WorkerId>,
    epoch: u64,
    granted_at: Option<Instant>,
    /// The holder's last sign of progress: a grant, a chunk read, a commit (or no work to do).
    progress_at: Option<Instant>,
    paused_until: Option<Instant>,
    pause_reason: Option<String>,
    /// Why its apply last failed for good, until a window of it commits rows again.
    blocked: Option<String>,
}

/// The lease table of one queue service.
#[derive(Debug)]
pub struct LeaseTable {
    timeout: Duration,
    /// A holder with work and no progress for this long loses the partition.
    progress_timeout: Duration,
    next_session: u64,
    sessions: HashMap<u64, Session>,
    slots: BTreeMap<Partition, Slot>,
}

/// A partition's lease as `wharfctl status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseInfo {
    pub partition: String,
    pub holder: Option<String>,
    pub epoch: u64,
    pub paused: Option<String>,
    /// Why the partition's apply fails for good (a row the target rejects, …), from its first
    /// pause until a window of it commits rows again: pauses end, this does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Seconds since the holder last made progress, while it has a holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_s: Option<u64>,
}

/// A connected session as `wharfctl status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    pub session: u64,
    pub name: String,
    pub workers: u32,
    pub leases: usize,
}

impl LeaseTable {
    pub fn new(timeout: Duration) -> Self {
        let progress_timeout = (timeout * 30).max(Duration::from_secs(300));
        LeaseTable { timeout, progress_timeout, next_session: 1, sessions: HashMap::new(), slots: BTreeMap::new() }
    }

    /// How long a holder with work may go without progress (default: 30 lease timeouts, at
    /// least 5 minutes: a window of one large timestamp commits only at its end).
    pub fn with_progress_timeout(mut self, progress_timeout: Duration) -> Self {
        self.progress_timeout = progress_timeout;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Registers a session of `workers` workers (1 to [`MAX_WORKERS`]); `expires: false` for
    /// in-process workers.
    pub fn open_session(&mut self, name: &str, workers: u32, expires: bool, now: Instant) -> u64 {
        self.open_scoped_session(name, workers, expires, now, None)
    }

    /// [`LeaseTable::open_session`] of a session that may lease only what `scope` allows.
    pub fn open_scoped_session(
        &mut self,
        name: &str,
        workers: u32,
        expires: bool,
        now: Instant,
        scope: Option<Scope>,
    ) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        let workers = workers.clamp(1, MAX_WORKERS);
        let session = Session { name: name.to_owned(), workers, scope, last_seen: now, expires };
        self.sessions.insert(id, session);
        id
    }

    /// Ends a session (its connection closed); its partitions are free at once.
    pub fn close_session(&mut self, session: u64) {
        if self.sessions.remove(&session).is_some() {
            self.free_where(|w| w.session == session);
        }
    }

    /// Renews a session's leases; `false` if it already expired.
    pub fn heartbeat(&mut self, session: u64, now: Instant) -> bool {
        self.expire(now);
        match self.sessions.get_mut(&session) {
            Some(s) => {
                s.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// Makes `partition` known, with the newest epoch ever issued for it.
    pub fn add_partition(&mut self, partition: &Partition, stored_epoch: u64) {
        if !self.slots.contains_key(partition) {
            self.slots.insert(partition.clone(), Slot { epoch: stored_epoch, ..Slot::default() });
        }
    }

    /// Forgets the partitions `keep` refuses (units of a grouping that was replaced), with their
    /// leases: a holder's next window or commit finds it no longer holds them.
    pub fn retain(&mut self, keep: impl Fn(&Partition) -> bool) {
        self.slots.retain(|partition, _| keep(partition));
    }

    pub fn knows(&self, partition: &Partition) -> bool {
        self.slots.contains_key(partition)
    }

    /// Most partitions one worker should hold: `ceil(P / N)`.
    pub fn quota(&self) -> usize {
        self.slots.len().div_ceil(self.worker_count().max(1)).max(1)
    }

    /// Fewest partitions a worker should hold once spread evenly: `floor(P / N)`.
    fn fair_floor(&self) -> usize {
        self.slots.len() / self.worker_count().max(1)
    }

    fn worker_count(&self) -> usize {
        self.sessions.values().map(|s| s.workers as usize).sum()
    }

    /// Whether some live worker holds fewer than its even share (it joined, or lost partitions).
    fn someone_below_floor(&self) -> bool {
        let floor = self.fair_floor();
        if floor == 0 {
            return false;
        }
        let mut held: HashMap<WorkerId, usize> = HashMap::new();
        for worker in self.slots.values().filter_map(|s| s.holder) {
            *held.entry(worker).or_default() += 1;
        }
        let workers_at_floor = held.values().filter(|n| **n >= floor).count();
        workers_at_floor < self.worker_count()
    }

    /// Whether `worker` is one its session declared.
    pub fn is_worker(&self, worker: WorkerId) -> bool {
        self.sessions.get(&worker.session).is_some_and(|s| worker.index < s.workers)
    }

    /// A partition for `worker` to apply next, between its windows: a free one with work while it
    /// is under its quota, else the one it holds that has waited longest for its turn.
    pub fn acquire(&mut self, worker: WorkerId, now: Instant, has_work: impl Fn(&Partition) -> bool) -> Option<Lease> {
        self.expire(now);
        if !self.is_worker(worker) {
            return None;
        }
        self.revoke_stalled(now, &has_work);
        let scope = self.sessions.get(&worker.session).and_then(|s| s.scope.clone());
        let allowed = |p: &Partition| scope.as_ref().is_none_or(|s| s.allows(p));
        self.hand_back_surplus(worker, &has_work);
        let held = self.held_by(worker);
        // While some worker holds less than its even share, free partitions go to such workers.
        let may_take = held < self.quota() && (held < self.fair_floor() || !self.someone_below_floor());
        if may_take
            && let Some((partition, slot)) = self.slots.iter_mut().find(|(p, s)| {
                s.holder.is_none()
                    && s.paused_until.is_none_or(|until| now >= until)
                    && s.epoch < MAX_EPOCH
                    && allowed(p)
                    && has_work(p)
            })
        {
            slot.holder = Some(worker);
            slot.epoch += 1;
            slot.granted_at = Some(now);
            slot.progress_at = Some(now);
            slot.paused_until = None;
            slot.pause_reason = None;
            return Some(Lease { partition: partition.clone(), epoch: slot.epoch, new_epoch: true });
        }
        let (partition, slot) = self
            .slots
            .iter_mut()
            .filter(|(p, s)| s.holder == Some(worker) && has_work(p))
            .min_by_key(|(_, s)| s.granted_at)?;
        slot.granted_at = Some(now);
        slot.progress_at = Some(now);
        Some(Lease { partition: partition.clone(), epoch: slot.epoch, new_epoch: false })
    }

    /// Notes progress of the holder of `partition` at `epoch` (a chunk read); `false` if `worker`
    /// does not hold it.
    pub fn progress(&mut self, worker: WorkerId, partition: &Partition, epoch: u64, now: Instant) -> bool {
        match self.slots.get_mut(partition) {
            Some(slot) if slot.holder == Some(worker) && slot.epoch == epoch => {
                slot.progress_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Frees partitions with work whose holder made no progress for the progress timeout (a
    /// client that takes leases and never commits would otherwise hold them, and the journal
    /// behind them, for as long as it heartbeats).
    fn revoke_stalled(&mut self, now: Instant, has_work: &impl Fn(&Partition) -> bool) {
        let limit = self.progress_timeout;
        let mut revoked = Vec::new();
        for (partition, slot) in self.slots.iter_mut().filter(|(_, s)| s.holder.is_some()) {
            if !has_work(partition) {
                slot.progress_at = Some(now);
            } else if slot.progress_at.is_some_and(|at| now.duration_since(at) > limit) {
                revoked.push((partition.clone(), slot.holder.take()));
            }
        }
        for (partition, holder) in revoked {
            let holder = holder.map(|w| self.worker_name(w)).unwrap_or_default();
            tracing::warn!(%partition, %holder, seconds = limit.as_secs(), "lease revoked: its holder made no progress on waiting work for the progress timeout");
        }
    }

    /// Whether `worker` holds `partition` at `epoch`.
    pub fn holds(&self, worker: WorkerId, partition: &Partition, epoch: u64) -> bool {
        self.slots.get(partition).is_some_and(|s| s.holder == Some(worker) && s.epoch == epoch)
    }

    /// After a commit: whether `worker` keeps `partition` (false: it was taken, or it is surplus
    /// now that more workers share the partitions; a surplus one is freed here).
    pub fn keep_after_commit(&mut self, worker: WorkerId, partition: &Partition, epoch: u64) -> bool {
        if !self.progress(worker, partition, epoch, Instant::now()) {
            return false;
        }
        let held = self.held_by(worker);
        if held > self.quota() || (held > self.fair_floor() && self.someone_below_floor()) {
            self.free(partition);
            return false;
        }
        true
    }

    /// The worker gives `partition` up; with `pause`, nobody gets it before the pause ends.
    pub fn release(
        &mut self,
        worker: WorkerId,
        partition: &Partition,
        epoch: u64,
        pause: Option<(Instant, String)>,
    ) -> bool {
        if !self.holds(worker, partition, epoch) {
            return false;
        }
        self.free(partition);
        if let (Some((until, reason)), Some(slot)) = (pause, self.slots.get_mut(partition)) {
            slot.paused_until = Some(until);
            slot.blocked = Some(reason.clone());
            slot.pause_reason = Some(reason);
        }
        true
    }

    /// A window of `partition` committed rows: it is no longer blocked.
    pub fn unblock(&mut self, partition: &Partition) {
        if let Some(slot) = self.slots.get_mut(partition) {
            slot.blocked = None;
        }
    }

    /// The holder of `partition` at `epoch` found the target at epoch `seen` (it was fenced): it
    /// gives the partition up, and the next grant goes above `seen`. Anyone else's report, or an
    /// epoch the target cannot hold, changes nothing (`false`).
    pub fn fenced(&mut self, worker: WorkerId, partition: &Partition, epoch: u64, seen: u64) -> bool {
        if !self.holds(worker, partition, epoch) || seen >= MAX_EPOCH {
            return false;
        }
        self.free(partition);
        if let Some(slot) = self.slots.get_mut(partition) {
            slot.epoch = slot.epoch.max(seen);
        }
        true
    }

    pub fn epoch(&self, partition: &Partition) -> u64 {
        self.slots.get(partition).map_or(0, |s| s.epoch)
    }

    pub fn leases(&self, now: Instant) -> Vec<LeaseInfo> {
        self.slots
            .iter()
            .map(|(p, s)| LeaseInfo {
                partition: p.to_string(),
                holder: s.holder.map(|w| self.worker_name(w)),
                epoch: s.epoch,
                paused: s.paused_until.filter(|until| now < *until).map(|until| {
                    format!("{} (for {} s more)", s.pause_reason.clone().unwrap_or_default(), (until - now).as_secs())
                }),
                blocked: s.blocked.clone(),
                idle_s: s.holder.and(s.progress_at).map(|at| now.saturating_duration_since(at).as_secs()),
            })
            .collect()
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(id, s)| SessionInfo {
                session: *id,
                name: s.name.clone(),
                workers: s.workers,
                leases: self.slots.values().filter(|slot| slot.holder.is_some_and(|w| w.session == *id)).count(),
            })
            .collect();
        out.sort_by_key(|s| s.session);
        out
    }

    fn worker_name(&self, worker: WorkerId) -> String {
        let name = self.sessions.get(&worker.session).map_or("?", |s| s.name.as_str());
        format!("{name}/{}", worker.index)
    }

    fn held_by(&self, worker: WorkerId) -> usize {
        self.slots.values().filter(|s| s.holder == Some(worker)).count()
    }

    /// Frees idle partitions first, then busy ones, until `worker` holds at most `ceil(P / N)`,
    /// and one more while it holds more than `floor(P / N)` and another worker holds fewer.
    fn hand_back_surplus(&mut self, worker: WorkerId, has_work: &impl Fn(&Partition) -> bool) {
        let mut held: Vec<(bool, Partition)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.holder == Some(worker))
            .map(|(p, _)| (has_work(p), p.clone()))
            .collect();
        held.sort();
        let mut surplus = held.len().saturating_sub(self.quota());
        if surplus == 0 && held.len() > self.fair_floor() && self.someone_below_floor() {
            surplus = 1;
        }
        for (_, partition) in held.into_iter().take(surplus) {
            self.free(&partition);
        }
    }

    fn free(&mut self, partition: &Partition) {
        if let Some(slot) = self.slots.get_mut(partition) {
            slot.holder = None;
        }
    }

    fn free_where(&mut self, pred: impl Fn(WorkerId) -> bool) {
        for slot in self.slots.values_mut() {
            if slot.holder.is_some_and(&pred) {
                slot.holder = None;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.timeout;
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires && now.duration_since(s.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::warn!(session = id, name = %self.sessions[&id].name, "applier session missed its lease timeout; its partitions are free");
            self.close_session(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u32) -> Partition {
        Partition::new("app", format!("s{n}"))
    }

    fn table(partitions: u32) -> (LeaseTable, Instant) {
        let mut t = LeaseTable::new(Duration::from_secs(10));
        for n in 0..partitions {
            t.add_partition(&p(n), 0);
        }
        (t, Instant::now())
    }

    #[test]
    fn one_holder_per_partition_and_epochs_grow_per_new_holder() {
        let (mut t, now) = table(1);
        let a = WorkerId { session: t.open_session("a", 1, true, now), index: 0 };
        let b = WorkerId { session: t.open_session("b", 1, true, now), index: 0 };
        let g = t.acquire(a, now, |_| true).unwrap();
        assert_eq!((g.epoch, g.new_epoch), (1, true));
        assert_eq!(t.acquire(b, now, |_| true), None);
        let again = t.acquire(a, now, |_| true).unwrap();
        assert_eq!((again.epoch, again.new_epoch), (1, false));
        assert!(t.release(a, &p(0), 1, None));
        assert_eq!(t.acquire(b, now, |_| true).unwrap().epoch, 2);
    }

    #[test]
    fn a_silent_session_loses_its_leases_after_the_timeout() {
        let (mut t, now) = table(1);
        let a = WorkerId { session: t.open_session("a", 1, true, now), index: 0 };
        let b = WorkerId { session: t.open_session("b", 1, true, now), index: 0 };
        t.acquire(a, now, |_| true).unwrap();
        let later = now + Duration::from_secs(11);
        assert!(t.heartbeat(b.session, now + Duration::from_secs(5)));
        assert!(t.heartbeat(b.session, later));
        let g = t.acquire(b, later, |_| true).unwrap();
        assert_eq!(g.epoch, 2);
        assert!(!t.heartbeat(a.session, later), "the expired session is gone");
        assert!(!t.keep_after_commit(a, &p(0), 1));
    }

    #[test]
    fn partitions_spread_over_workers_and_rebalance_when_one_joins() {
        let (mut t, now) = table(8);
        let a = WorkerId { session: t.open_session("a", 1, true, now), index: 0 };
        let mut held = 0;
        while let Some(g) = t.acquire(a, now, |_| true) {
            if !g.new_epoch {
                break;
            }
            held += 1;
        }
        assert_eq!(held, 8);
        let b = WorkerId { session: t.open_session("b", 1, true, now), index: 0 };
        assert_eq!(t.quota(), 4);
        // a hands back its surplus between windows; b then takes it.
        t.acquire(a, now, |_| true);
        let mut b_held = 0;
        while t.acquire(b, now, |_| true).is_some_and(|g| g.new_epoch) {
            b_held += 1;
        }
        assert_eq!(b_held, 4);
        assert_eq!(t.sessions().iter().map(|s| s.leases).collect::<Vec<_>>(), [4, 4]);
    }

    #[test]
    fn a_joining_worker_gets_partitions_even_when_the_others_are_at_their_ceiling() {
        // 8 partitions over 4 workers (2 each); two more join: 8 / 6 → shares of 2, 2, 1, 1, 1, 1.
        let (mut t, now) = table(8);
        let a = t.open_session("a", 4, false, now);
        for index in 0..4 {
            for _ in 0..2 {
                assert!(t.acquire(WorkerId { session: a, index }, now, |_| true).unwrap().new_epoch);
            }
        }
        let c = t.open_session("c", 2, false, now);
        for index in 0..4 {
            t.acquire(WorkerId { session: a, index }, now, |_| true);
        }
        for index in 0..2 {
            assert!(t.acquire(WorkerId { session: c, index }, now, |_| true).is_some_and(|g| g.new_epoch));
        }
        assert_eq!(t.sessions().iter().map(|s| s.leases).collect::<Vec<_>>(), [4, 2]);
        // The two partitions still free go to whoever asks next; nobody hands back again.
        for index in 0..4 {
            t.acquire(WorkerId { session: a, index }, now, |_| true);
        }
        assert_eq!(t.sessions().iter().map(|s| s.leases).collect::<Vec<_>>(), [6, 2]);
    }

    #[test]
    fn a_paused_partition_is_not_granted_until_the_pause_ends() {
        let (mut t, now) = table(1);
        let a = WorkerId { session: t.open_session("a", 1, false, now), index: 0 };
        t.acquire(a, now, |_| true).unwrap();
        assert!(t.release(a, &p(0), 1, Some((now + Duration::from_secs(60), "bad row".into()))));
        assert_eq!(t.acquire(a, now + Duration::from_secs(59), |_| true), None);
        assert!(t.acquire(a, now + Duration::from_secs(61), |_| true).is_some());
    }

    #[test]
    fn a_fenced_worker_report_moves_the_next_epoch_above_the_target() {
        let (mut t, now) = table(1);
        let a = WorkerId { session: t.open_session("a", 1, true, now), index: 0 };
        assert_eq!(t.acquire(a, now, |_| true).unwrap().epoch, 1);
        assert!(t.fenced(a, &p(0), 1, 41));
        assert_eq!(t.acquire(a, now, |_| true).unwrap().epoch, 42);
    }

    #[test]
    fn only_the_holder_reports_a_fence_and_epochs_stay_below_the_targets_limit() {
        let (mut t, now) = table(1);
        let a = WorkerId { session: t.open_session("a", 1, true, now), index: 0 };
        let b = WorkerId { session: t.open_session("b", 1, true, now), index: 0 };
        assert_eq!(t.acquire(a, now, |_| true).unwrap().epoch, 1);
        assert!(!t.fenced(b, &p(0), 1, 1 << 63), "not the holder");
        assert!(!t.release(b, &p(0), 1, Some((now + Duration::from_secs(60), "x".into()))));
        assert!(!t.fenced(a, &p(0), 1, u64::MAX), "no epoch the target cannot store");
        assert!(t.fenced(a, &p(0), 1, MAX_EPOCH - 1));
        assert_eq!(t.acquire(b, now, |_| true).unwrap().epoch, MAX_EPOCH);
        assert!(t.release(b, &p(0), MAX_EPOCH, None));
        assert_eq!(t.acquire(a, now, |_| true), None, "no epoch left to grant: never one above the limit");
    }

    #[test]
    fn a_scoped_session_leases_only_what_its_scope_allows() {
        let (mut t, now) = table(3);
        let scope = Some(Scope::parse(&["app.s1", "other.*"]));
        let s = t.open_scoped_session("scoped", 1, true, now, scope);
        let worker = WorkerId { session: s, index: 0 };
        let mut got = Vec::new();
        while let Some(g) = t.acquire(worker, now, |_| true).filter(|g| g.new_epoch) {
            got.push(g.partition);
        }
        assert_eq!(got, vec![p(1)]);
    }

    #[test]
    fn a_scope_allows_the_groups_of_its_schemas_and_no_other_schemas_groups() {
        let scope = Scope::parse(&["app.s1"]);
        assert!(scope.allows(&Partition::new("app", "s1").group("customers")));
        assert!(!scope.allows(&Partition::new("app", "s2").group("customers")));
        assert!(!scope.allows(&Partition::new("other", "s1").group("customers")));
    }

    #[test]
    fn a_worker_index_the_session_did_not_declare_gets_nothing() {
        let (mut t, now) = table(4);
        let s = t.open_session("a", 1, true, now);
        assert!(t.acquire(WorkerId { session: s, index: 0 }, now, |_| true).is_some());
        for index in 1..10 {
            assert_eq!(t.acquire(WorkerId { session: s, index }, now, |_| true), None, "index {index}");
        }
        let huge = t.open_session("b", u32::MAX, true, now);
        assert_eq!(t.sessions().iter().find(|x| x.session == huge).unwrap().workers, MAX_WORKERS);
    }

    #[test]
    fn a_holder_that_makes_no_progress_on_waiting_work_loses_the_partition() {
        let (t, now) = table(1);
        let mut t = t.with_progress_timeout(Duration::from_secs(60));
        let grabber = WorkerId { session: t.open_session("grab", 1, false, now), index: 0 };
        let worker = WorkerId { session: t.open_session("w", 1, false, now), index: 0 };
        assert!(t.acquire(grabber, now, |_| true).is_some());
        // Idle partitions are not revoked, however long: the clock starts with work.
        assert_eq!(t.acquire(worker, now + Duration::from_secs(600), |_| false), None);
        assert_eq!(t.acquire(worker, now + Duration::from_secs(630), |_| true), None);
        assert!(t.leases(now + Duration::from_secs(630))[0].idle_s.is_some());
        let g = t.acquire(worker, now + Duration::from_secs(700), |_| true).expect("revoked from the grabber");
        assert_eq!(g.epoch, 2);
        assert!(!t.keep_after_commit(grabber, &p(0), 1));
        // Reading chunks is progress.
        assert!(t.progress(worker, &p(0), 2, now + Duration::from_secs(750)));
        assert!(t.acquire(grabber, now + Duration::from_secs(800), |_| true).is_none());
    }
}
