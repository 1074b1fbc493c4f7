//! What a power cut leaves of the unsynced layer.
//!
//! The strict cut ([`Model::cut`]) keeps exactly what was synced. A real disk may keep more, in
//! any order (LazyFS's torn writes, ALICE's reorderings): [`Model::cut_with`] lets a seeded
//! [`Chooser`] decide, for every file with unsynced changes, a length anywhere between the synced
//! and the written one, and for every unsynced unit (a 4 KiB page or a 512-byte sector) whether
//! the written bytes reached the disk (else the synced bytes, or zeros under a grown size); and for
//! every directory, how long a prefix of its unsynced operations (new names, removals, renames, in
//! the order made) survived. Synced data and synced entries always survive.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::{Body, CutReport, Dir, DirOp, File, Model, PAGE};

/// The unit in which unsynced data survives or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// 4 KiB pages, as the page cache writes back.
    Page,
    /// 512-byte sectors, as a disk without atomic 4 KiB writes may tear a page.
    Sector,
}

impl Granularity {
    fn bytes(self) -> u64 {
        match self {
            Granularity::Page => PAGE,
            Granularity::Sector => 512,
        }
    }
}

/// The choices of one power cut, from a seed (splitmix64), or none at all ([`Chooser::strict`]).
#[derive(Debug, Clone)]
pub struct Chooser {
    state: u64,
    strict: bool,
    pub granularity: Granularity,
}

impl Chooser {
    /// Choices drawn from `seed`; the granularity too.
    pub fn new(seed: u64) -> Chooser {
        let mut chooser = Chooser { state: seed, strict: false, granularity: Granularity::Page };
        if chooser.coin() {
            chooser.granularity = Granularity::Sector;
        }
        chooser
    }

    /// Keeps exactly what was synced.
    pub fn strict() -> Chooser {
        Chooser { state: 0, strict: true, granularity: Granularity::Page }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// A number in `0..=n`, the ends more often than the middle.
    fn upto(&mut self, n: u64) -> u64 {
        if self.strict || n == 0 {
            return 0;
        }
        match self.next() % 4 {
            0 => 0,
            1 => n,
            _ => self.next() % (n + 1),
        }
    }

    /// How a file's unsynced units survive: all, none, or each by a coin.
    fn survival(&mut self) -> Survival {
        if self.strict {
            return Survival::None;
        }
        match self.next() % 4 {
            0 => Survival::All,
            1 => Survival::None,
            _ => Survival::Each,
        }
    }
}

#[derive(Clone, Copy)]
enum Survival {
    All,
    None,
    Each,
}

impl Model {
    /// The power cut of the strictest reading of POSIX: every unsynced change is gone.
    pub fn cut(&mut self) -> CutReport {
        self.cut_with(&mut Chooser::strict())
    }

    /// A power cut that keeps what `chooser` decides of the unsynced changes (see the module).
    pub fn cut_with(&mut self, chooser: &mut Chooser) -> CutReport {
        let mut report = CutReport::default();
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let node = self.nodes.get_mut(&ino).expect("listed");
            match &mut node.body {
                Body::File(f) => {
                    let left = crash_file(f, chooser);
                    if left != f.current {
                        report.files_reverted += 1;
                    }
                    *f = File { current: left.clone(), durable: left, dirty: Default::default() };
                }
                Body::Dir(d) => {
                    let left = crash_dir(d, chooser);
                    if left != d.current {
                        report.dirs_reverted += 1;
                    }
                    *d = Dir { current: left.clone(), durable: left, unsynced: Vec::new() };
                }
            }
        }
        let reachable = self.reachable();
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reachable.contains(ino));
        report.inodes_forgotten = before - self.nodes.len();
        report
    }
}

/// The content a cut leaves of one file.
fn crash_file(f: &File, chooser: &mut Chooser) -> Vec<u8> {
    let (synced, written) = (f.durable.len() as u64, f.current.len() as u64);
    if f.dirty.is_empty() && synced == written {
        return f.durable.clone();
    }
    let len = if written >= synced {
        synced + chooser.upto(written - synced)
    } else if chooser.upto(1) == 1 {
        written
    } else {
        synced
    };
    let mut out = vec![0u8; len as usize];
    let keep_synced = synced.min(len) as usize;
    out[..keep_synced].copy_from_slice(&f.durable[..keep_synced]);
    let unit = chooser.granularity.bytes();
    let survival = chooser.survival();
    let mut start = 0;
    while start < len {
        let end = (start + unit).min(len);
        let changed = start >= synced || f.dirty.contains(&(start / PAGE));
        let kept = match survival {
            Survival::All => true,
            Survival::None => false,
            Survival::Each => chooser.coin(),
        };
        if changed && kept {
            for at in start..end {
                out[at as usize] = f.current.get(at as usize).copied().unwrap_or(0);
            }
        }
        start = end;
    }
    out
}

/// The entries a cut leaves of one directory: the synced ones and a prefix of the changes since.
fn crash_dir(d: &Dir, chooser: &mut Chooser) -> BTreeMap<OsString, u64> {
    let kept = chooser.upto(d.unsynced.len() as u64) as usize;
    let mut entries = d.durable.clone();
    for op in &d.unsynced[..kept] {
        match op {
            DirOp::Insert(name, ino) => {
                entries.insert(name.clone(), *ino);
            }
            DirOp::Remove(name) => {
                entries.remove(name);
            }
            DirOp::Rename { from, to, ino } => {
                entries.remove(from);
                entries.insert(to.clone(), *ino);
            }
        }
    }
    entries
}
