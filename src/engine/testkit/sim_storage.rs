//! A simulated [`Storage`] for crash and fault tests (test builds only).
//!
//! It models exactly the contract in `storage/mod.rs`:
//! - `append` changes a file's *live* contents (what readers see) at once;
//!   `sync_data` makes everything appended so far *durable*. Files only ever
//!   grow by appends, and `truncate` is durable at once, so a file's durable
//!   contents are always a prefix of its live contents: the simulation keeps
//!   the live bytes and the length of the durable prefix.
//! - Each directory keeps a live and a durable table of entries (name ->
//!   file identity). `create`, `rename` and `remove` change the live table;
//!   `sync_dir` copies it to the durable one. Files are identified by an
//!   inode number, so a renamed file keeps its contents and an open handle
//!   keeps writing to its file after the name is gone, as on POSIX.
//! - Directories themselves (`create_dir_all`) are durable at once: the
//!   store never syncs the parent of its directory, and the contract only
//!   speaks of the files in it.
//!
//! [`SimStorage::crash`] turns the live state into what a power cut leaves
//! (or, with [`KeepPolicy::Everything`], what a killed process leaves) and
//! marks the machine down: every operation fails with EIO until
//! [`SimStorage::reboot`], and handles opened before the crash fail forever.
//!
//! Faults ([`Fault`]) fail the Nth operation of a kind once or forever,
//! write only a prefix of an append, or crash the machine just before the
//! Nth operation runs.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::engine::storage::{Storage, StorageFile};

pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;

/// A small deterministic random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = (i128::from(hi) - i128::from(lo) + 1) as u64;
        (i128::from(lo) + i128::from(self.below(span))) as i64
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// The kinds of storage operations, for counting and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    CreateDirAll,
    List,
    Create,
    Read,
    Stat,
    Truncate,
    Rename,
    Remove,
    SyncDir,
    Append,
    SyncData,
}

/// What survives a crash of the unsynced state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepPolicy {
    /// Power cut: exactly what was synced (file data and directory entries).
    Synced,
    /// Process crash: the kernel keeps everything, synced or not.
    Everything,
    /// Power cut where the disk got part of the unsynced data: directory
    /// entries revert to what was synced; each file keeps its synced bytes
    /// plus a random prefix of its unsynced bytes (possibly cut mid-record),
    /// the last up to 512 kept bytes sometimes replaced by zeros or garbage
    /// (a torn sector), and sometimes followed by zeros (the file size
    /// reached the disk, the data did not).
    Random(u64),
}

/// The error a fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// An OS error number (`raw_os_error()` is set): EIO, ENOSPC, ...
    Errno(i32),
    /// An error of this kind with no OS error number.
    Kind(io::ErrorKind),
}

impl FaultError {
    fn make(self) -> io::Error {
        match self {
            FaultError::Errno(errno) => io::Error::from_raw_os_error(errno),
            FaultError::Kind(kind) => io::Error::new(kind, "injected fault"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// The operation does nothing and returns the error.
    Fail(FaultError),
    /// An append writes the first `keep` bytes of its data (to the live
    /// file), then returns the error. Other operations just fail.
    ShortWrite { keep: usize, error: FaultError },
    /// The machine crashes just before the operation (which fails with EIO,
    /// as does everything after it until `reboot`).
    Crash(KeepPolicy),
}

/// Fires on the `nth` (1-based) operation matching `kind` and `path_contains`
/// counted from when it was injected; with `forever`, on every later match too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `None` matches every kind.
    pub kind: Option<OpKind>,
    pub nth: u64,
    pub forever: bool,
    /// Only operations whose path contains this string count.
    pub path_contains: Option<String>,
    pub action: FaultAction,
}

impl Fault {
    /// Fails the `nth` operation of `kind` (any kind if `None`) once.
    pub fn fail(kind: Option<OpKind>, nth: u64, errno: i32) -> Fault {
        Fault {
            kind,
            nth,
            forever: false,
            path_contains: None,
            action: FaultAction::Fail(FaultError::Errno(errno)),
        }
    }

    /// Fails the `nth` operation of `kind` and every later one.
    pub fn fail_forever(kind: Option<OpKind>, nth: u64, errno: i32) -> Fault {
        Fault {
            forever: true,
            ..Fault::fail(kind, nth, errno)
        }
    }

    /// The `nth` append writes `keep` bytes, then fails with EIO.
    pub fn short_write(nth: u64, keep: usize) -> Fault {
        Fault {
            kind: Some(OpKind::Append),
            nth,
            forever: false,
            path_contains: None,
            action: FaultAction::ShortWrite {
                keep,
                error: FaultError::Errno(EIO),
            },
        }
    }

    /// Crashes the machine just before the `nth` operation of `kind`.
    pub fn crash_before(kind: Option<OpKind>, nth: u64, policy: KeepPolicy) -> Fault {
        Fault {
            kind,
            nth,
            forever: false,
            path_contains: None,
            action: FaultAction::Crash(policy),
        }
    }

    pub fn on_path(mut self, part: &str) -> Fault {
        self.path_contains = Some(part.to_owned());
        self
    }
}

struct Armed {
    fault: Fault,
    seen: u64,
    spent: bool,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    data: Vec<u8>,
    /// `data[..durable]` is what the last sync (or truncate) made durable.
    durable: usize,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    next_inode: u64,
    /// Bumped by every crash; handles of an older epoch are dead.
    epoch: u64,
    down: bool,
    faults: Vec<Armed>,
    ops: u64,
    ops_by_kind: BTreeMap<OpKind, u64>,
    fired: u64,
    crashes: Vec<String>,
    /// Crashes armed at named crash points: (point, nth passage, policy).
    point_crashes: Vec<(&'static str, u64, KeepPolicy)>,
    /// Passages through each named crash point while up.
    points: BTreeMap<&'static str, u64>,
}

fn down_error() -> io::Error {
    io::Error::from_raw_os_error(EIO)
}

fn split(path: &Path) -> (PathBuf, String) {
    let dir = path.parent().expect("a file path has a parent").to_owned();
    let name = path
        .file_name()
        .expect("a file path has a name")
        .to_string_lossy()
        .into_owned();
    (dir, name)
}

impl State {
    /// Counts an operation and applies any fault due. `Ok(Some(..))` is a
    /// short write for the caller (an append) to carry out.
    fn begin(&mut self, kind: OpKind, path: &Path) -> io::Result<Option<(usize, FaultError)>> {
        if self.down {
            return Err(down_error());
        }
        self.ops += 1;
        *self.ops_by_kind.entry(kind).or_default() += 1;
        let text = path.to_string_lossy();
        let mut action = None;
        for armed in &mut self.faults {
            let fault = &armed.fault;
            if armed.spent
                || fault.kind.is_some_and(|k| k != kind)
                || fault
                    .path_contains
                    .as_ref()
                    .is_some_and(|part| !text.contains(part.as_str()))
            {
                continue;
            }
            armed.seen += 1;
            let due = armed.seen == fault.nth || (fault.forever && armed.seen > fault.nth);
            if due && action.is_none() {
                action = Some(fault.action.clone());
                if !fault.forever || matches!(fault.action, FaultAction::Crash(_)) {
                    armed.spent = true;
                }
            }
        }
        match action {
            None => Ok(None),
            Some(action) => {
                self.fired += 1;
                match action {
                    FaultAction::Fail(error) => Err(error.make()),
                    FaultAction::ShortWrite { keep, error } if kind == OpKind::Append => {
                        Ok(Some((keep, error)))
                    }
                    FaultAction::ShortWrite { error, .. } => Err(error.make()),
                    FaultAction::Crash(policy) => {
                        let log = self.crash(policy);
                        self.crashes
                            .push(format!("before {kind:?} {}: {log}", path.display()));
                        Err(down_error())
                    }
                }
            }
        }
    }

    fn dir(&self, dir: &Path) -> io::Result<&Dir> {
        self.dirs.get(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path);
        self.dir(&dir)?.live.get(&name).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {}", path.display()),
            )
        })
    }

    fn new_inode(&mut self, inode: Inode) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, inode);
        self.next_inode
    }

    /// The crash itself; returns what it did, for failure messages.
    fn crash(&mut self, policy: KeepPolicy) -> String {
        self.epoch += 1;
        self.down = true;
        if policy == KeepPolicy::Everything {
            return "process crash: everything kept".to_owned();
        }
        let mut rng = match policy {
            KeepPolicy::Random(seed) => Some(Rng::new(seed)),
            _ => None,
        };
        for dir in self.dirs.values_mut() {
            dir.live = dir.durable.clone();
        }
        let reachable: BTreeSet<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.durable.values().copied())
            .collect();
        self.inodes.retain(|id, _| reachable.contains(id));
        let mut log = Vec::new();
        for (id, inode) in &mut self.inodes {
            let unsynced = inode.data.len() - inode.durable;
            let Some(rng) = rng.as_mut() else {
                inode.data.truncate(inode.durable);
                continue;
            };
            if unsynced == 0 {
                continue;
            }
            let keep = match rng.below(4) {
                0 => 0,
                1 => unsynced,
                _ => rng.below(unsynced as u64 + 1) as usize,
            };
            inode.data.truncate(inode.durable + keep);
            let mut what = format!(
                "inode {id}: synced {} kept {keep}/{unsynced}",
                inode.durable
            );
            if keep > 0 && rng.chance(1, 3) {
                let torn = rng.range(1, keep.min(512) as i64) as usize;
                let len = inode.data.len();
                let zeros = rng.chance(1, 2);
                for b in &mut inode.data[len - torn..] {
                    *b = if zeros { 0 } else { rng.next_u64() as u8 };
                }
                what += &format!(", last {torn} {}", if zeros { "zeroed" } else { "garbage" });
            }
            if rng.chance(1, 8) {
                let extra = rng.range(1, 512) as usize;
                inode.data.resize(inode.data.len() + extra, 0);
                what += &format!(", {extra} zeros appended");
            }
            inode.durable = inode.data.len();
            log.push(what);
        }
        log.join("; ")
    }
}

/// The simulated storage. Cheap to share: clone the `Arc` around it.
#[derive(Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    epoch: u64,
    path: PathBuf,
}

impl SimFile {
    fn check(&self, state: &State) -> io::Result<()> {
        if state.epoch != self.epoch {
            return Err(down_error());
        }
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        self.check(&state)?;
        let short = state.begin(OpKind::Append, &self.path)?;
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .expect("a live handle's inode");
        match short {
            None => {
                inode.data.extend_from_slice(data);
                Ok(())
            }
            Some((keep, error)) => {
                inode.data.extend_from_slice(&data[..keep.min(data.len())]);
                Err(error.make())
            }
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        self.check(&state)?;
        state.begin(OpKind::SyncData, &self.path)?;
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .expect("a live handle's inode");
        inode.durable = inode.data.len();
        Ok(())
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpKind::CreateDirAll, dir)?;
        for ancestor in dir.ancestors() {
            state.dirs.entry(ancestor.to_owned()).or_default();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state.lock();
        state.begin(OpKind::List, dir)?;
        Ok(state.dir(dir)?.live.keys().cloned().collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.state.lock();
        state.begin(OpKind::Create, path)?;
        let (dir, name) = split(path);
        if state.dir(&dir)?.live.contains_key(&name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        let inode = state.new_inode(Inode::default());
        state.dir_mut(&dir)?.live.insert(name, inode);
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
            epoch: state.epoch,
            path: path.to_owned(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.state.lock();
        state.begin(OpKind::Read, path)?;
        let inode = state.lookup(path)?;
        Ok(state.inodes[&inode].data.clone())
    }

    fn size(&self, path: &Path) -> io::Result<u64> {
        let mut state = self.state.lock();
        state.begin(OpKind::Stat, path)?;
        let inode = state.lookup(path)?;
        Ok(state.inodes[&inode].data.len() as u64)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpKind::SyncData, path)?;
        let id = state.lookup(path)?;
        let inode = state.inodes.get_mut(&id).expect("an entry's inode");
        inode.durable = inode.data.len();
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpKind::Truncate, path)?;
        let id = state.lookup(path)?;
        let inode = state.inodes.get_mut(&id).expect("an entry's inode");
        inode.data.resize(len as usize, 0);
        inode.durable = inode.data.len();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpKind::Rename, from)?;
        let inode = state.lookup(from)?;
        let (to_dir, to_name) = split(to);
        state.dir(&to_dir)?;
        let (from_dir, from_name) = split(from);
        state.dir_mut(&from_dir)?.live.remove(&from_name);
        state.dir_mut(&to_dir)?.live.insert(to_name, inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpKind::Remove, path)?;
        state.lookup(path)?;
        let (dir, name) = split(path);
        state.dir_mut(&dir)?.live.remove(&name);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(OpKind::SyncDir, dir)?;
        let entry = state.dir_mut(dir)?;
        entry.durable = entry.live.clone();
        Ok(())
    }

    fn crash_point(&self, name: &'static str) {
        let mut state = self.state.lock();
        if state.down {
            return;
        }
        let passed = state.points.entry(name).or_default();
        *passed += 1;
        let passed = *passed;
        let due = state
            .point_crashes
            .iter()
            .position(|&(point, nth, _)| point == name && nth == passed);
        if let Some(index) = due {
            let (_, _, policy) = state.point_crashes.remove(index);
            state.fired += 1;
            let log = state.crash(policy);
            state
                .crashes
                .push(format!("at crash point {name} (passage {passed}): {log}"));
        }
    }
}

/// Every file's live bytes and durable length, and every directory's live
/// and durable entries: equal images mean nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub files: BTreeMap<PathBuf, (Vec<u8>, usize)>,
    pub durable_entries: BTreeMap<PathBuf, Vec<String>>,
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// A deep copy of the files and directories (no faults, counters at
    /// zero, up), to run several experiments from one starting point.
    pub fn fork(&self) -> SimStorage {
        let state = self.state.lock();
        SimStorage {
            state: Arc::new(Mutex::new(State {
                inodes: state.inodes.clone(),
                dirs: state.dirs.clone(),
                next_inode: state.next_inode,
                ..State::default()
            })),
        }
    }

    /// Simulates a crash (see [`KeepPolicy`]) and leaves the machine down.
    /// Returns a description of what was kept, for failure messages.
    pub fn crash(&self, policy: KeepPolicy) -> String {
        let mut state = self.state.lock();
        let log = state.crash(policy);
        state.crashes.push(format!("explicit: {log}"));
        log
    }

    /// Brings the machine back up after a crash (a new process may open
    /// the files; handles from before the crash stay dead).
    pub fn reboot(&self) {
        self.state.lock().down = false;
    }

    pub fn is_down(&self) -> bool {
        self.state.lock().down
    }

    /// What every crash so far did.
    pub fn crash_log(&self) -> Vec<String> {
        self.state.lock().crashes.clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().faults.push(Armed {
            fault,
            seen: 0,
            spent: false,
        });
    }

    pub fn clear_faults(&self) {
        let mut state = self.state.lock();
        state.faults.clear();
        state.point_crashes.clear();
    }

    /// Crashes the machine (see [`KeepPolicy`]) at the `nth` passage
    /// through the named crash point (see `storage::crash_points`).
    pub fn crash_at_point(&self, point: &'static str, nth: u64, policy: KeepPolicy) {
        assert!(nth > 0, "passages count from 1");
        self.state.lock().point_crashes.push((point, nth, policy));
    }

    /// How many times the store passed the named crash point while up.
    pub fn passages(&self, point: &str) -> u64 {
        self.state.lock().points.get(point).copied().unwrap_or(0)
    }

    /// How many times faults fired.
    pub fn fired(&self) -> u64 {
        self.state.lock().fired
    }

    /// Operations attempted while up.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    pub fn op_count_of(&self, kind: OpKind) -> u64 {
        self.state
            .lock()
            .ops_by_kind
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }

    /// Live file names in `dir`, sorted.
    pub fn files(&self, dir: &Path) -> Vec<String> {
        let state = self.state.lock();
        state
            .dirs
            .get(dir)
            .map(|d| d.live.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Durable file names in `dir`, sorted.
    pub fn durable_files(&self, dir: &Path) -> Vec<String> {
        let state = self.state.lock();
        state
            .dirs
            .get(dir)
            .map(|d| d.durable.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The live contents of `path`, if it exists.
    pub fn bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let id = state.lookup(path).ok()?;
        Some(state.inodes[&id].data.clone())
    }

    /// Bytes appended but not synced, over all files with a live name.
    pub fn unsynced_bytes(&self) -> usize {
        let state = self.state.lock();
        let live: BTreeSet<u64> = state
            .dirs
            .values()
            .flat_map(|d| d.live.values().copied())
            .collect();
        live.iter()
            .map(|id| state.inodes[id].data.len() - state.inodes[id].durable)
            .sum()
    }

    /// Directories whose live entries differ from their durable ones.
    pub fn unsynced_dirs(&self) -> usize {
        let state = self.state.lock();
        state.dirs.values().filter(|d| d.live != d.durable).count()
    }

    pub fn image(&self) -> Image {
        let state = self.state.lock();
        let mut files = BTreeMap::new();
        let mut durable_entries = BTreeMap::new();
        for (dir, entries) in &state.dirs {
            for (name, id) in &entries.live {
                let inode = &state.inodes[id];
                files.insert(dir.join(name), (inode.data.clone(), inode.durable));
            }
            durable_entries.insert(dir.clone(), entries.durable.keys().cloned().collect());
        }
        Image {
            files,
            durable_entries,
        }
    }

    /// Damage at rest (machine off): replaces the contents of `path`,
    /// creating it durably if it does not exist.
    pub fn set_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.state.lock();
        let durable = bytes.len();
        match state.lookup(path) {
            Ok(id) => {
                state.inodes.insert(
                    id,
                    Inode {
                        data: bytes,
                        durable,
                    },
                );
            }
            Err(_) => {
                let id = state.new_inode(Inode {
                    data: bytes,
                    durable,
                });
                let (dir, name) = split(path);
                let entry = state.dirs.entry(dir).or_default();
                entry.live.insert(name.clone(), id);
                entry.durable.insert(name, id);
            }
        }
    }

    /// Damage at rest: edits the contents of `path` in place.
    pub fn modify(&self, path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = self
            .bytes(path)
            .unwrap_or_else(|| panic!("no file {}", path.display()));
        edit(&mut bytes);
        self.set_bytes(path, bytes);
    }

    /// Damage at rest: flips bit `bit` (bit 0 is the low bit of byte 0).
    pub fn flip_bit(&self, path: &Path, bit: usize) {
        self.modify(path, |b| b[bit / 8] ^= 1 << (bit % 8));
    }

    /// Damage at rest: cuts `path` to `len` bytes.
    pub fn cut(&self, path: &Path, len: usize) {
        self.modify(path, |b| b.truncate(len));
    }

    /// Damage at rest: appends `extra` to `path`.
    pub fn append_at_rest(&self, path: &Path, extra: &[u8]) {
        self.modify(path, |b| b.extend_from_slice(extra));
    }

    /// Damage at rest: deletes `path` (live and durable entries).
    pub fn delete(&self, path: &Path) {
        let mut state = self.state.lock();
        let (dir, name) = split(path);
        let entry = state.dirs.get_mut(&dir).expect("the file's directory");
        assert!(
            entry.live.remove(&name).is_some(),
            "no file {}",
            path.display()
        );
        entry.durable.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SimStorage, PathBuf) {
        let sim = SimStorage::new();
        let dir = PathBuf::from("/d");
        sim.create_dir_all(&dir).unwrap();
        (sim, dir)
    }

    #[test]
    fn only_synced_data_and_entries_survive_a_power_cut() {
        let (sim, dir) = setup();
        let a = sim.create(&dir.join("a")).unwrap();
        a.append(b"synced").unwrap();
        a.sync_data().unwrap();
        sim.sync_dir(&dir).unwrap();
        a.append(b" lost").unwrap();
        let b = sim.create(&dir.join("b")).unwrap();
        b.append(b"b").unwrap();
        b.sync_data().unwrap();
        assert_eq!(sim.bytes(&dir.join("a")).unwrap(), b"synced lost");
        assert_eq!((sim.unsynced_bytes(), sim.unsynced_dirs()), (5, 1));
        sim.crash(KeepPolicy::Synced);
        assert!(a.append(b"x").is_err(), "a handle from before the crash");
        assert_eq!(
            sim.list(&dir).unwrap_err().raw_os_error(),
            Some(EIO),
            "down until reboot"
        );
        sim.reboot();
        assert!(a.sync_data().is_err(), "still dead after reboot");
        assert_eq!(sim.list(&dir).unwrap(), vec!["a".to_owned()]);
        assert_eq!(sim.read(&dir.join("a")).unwrap(), b"synced");
    }

    #[test]
    fn renames_and_removes_are_undone_unless_the_directory_was_synced() {
        let (sim, dir) = setup();
        for name in ["x", "y"] {
            let f = sim.create(&dir.join(name)).unwrap();
            f.append(name.as_bytes()).unwrap();
            f.sync_data().unwrap();
        }
        sim.sync_dir(&dir).unwrap();
        sim.rename(&dir.join("x"), &dir.join("z")).unwrap();
        sim.remove(&dir.join("y")).unwrap();
        assert_eq!(sim.files(&dir), vec!["z".to_owned()]);
        assert_eq!(
            sim.durable_files(&dir),
            vec!["x".to_owned(), "y".to_owned()]
        );
        let kept = sim.fork();
        sim.crash(KeepPolicy::Synced);
        sim.reboot();
        assert_eq!(sim.files(&dir), vec!["x".to_owned(), "y".to_owned()]);
        assert_eq!(sim.read(&dir.join("y")).unwrap(), b"y");
        kept.sync_dir(&dir).unwrap();
        kept.crash(KeepPolicy::Synced);
        kept.reboot();
        assert_eq!(kept.files(&dir), vec!["z".to_owned()]);
        assert_eq!(kept.read(&dir.join("z")).unwrap(), b"x");
    }

    #[test]
    fn a_process_crash_keeps_everything_but_a_later_power_cut_does_not() {
        let (sim, dir) = setup();
        let f = sim.create(&dir.join("f")).unwrap();
        f.append(b"abc").unwrap();
        sim.crash(KeepPolicy::Everything);
        sim.reboot();
        assert_eq!(sim.read(&dir.join("f")).unwrap(), b"abc");
        sim.crash(KeepPolicy::Synced);
        sim.reboot();
        assert!(sim.files(&dir).is_empty());
    }

    #[test]
    fn random_crashes_keep_the_synced_bytes_and_a_prefix_or_torn_tail() {
        let mut torn = 0;
        for seed in 0..200 {
            let (sim, dir) = setup();
            let f = sim.create(&dir.join("f")).unwrap();
            f.append(&[7; 100]).unwrap();
            f.sync_data().unwrap();
            sim.sync_dir(&dir).unwrap();
            f.append(&[9; 1000]).unwrap();
            sim.crash(KeepPolicy::Random(seed));
            sim.reboot();
            let bytes = sim.read(&dir.join("f")).unwrap();
            assert!(
                bytes.len() >= 100 && bytes.len() <= 1100 + 512,
                "seed {seed}"
            );
            assert_eq!(bytes[..100], [7; 100], "seed {seed}");
            if bytes[100..].iter().any(|&b| b != 9) {
                torn += 1;
            }
        }
        assert!(torn > 20, "only {torn} torn tails in 200 crashes");
    }

    #[test]
    fn faults_fire_on_the_nth_matching_operation() {
        let (sim, dir) = setup();
        let f = sim.create(&dir.join("f")).unwrap();
        sim.inject(Fault::fail(Some(OpKind::SyncData), 2, ENOSPC));
        sim.inject(Fault::short_write(3, 2));
        f.sync_data().unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(ENOSPC));
        f.sync_data().unwrap();
        f.append(b"11").unwrap();
        f.append(b"22").unwrap();
        assert_eq!(f.append(b"3333").unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(sim.bytes(&dir.join("f")).unwrap(), b"112233");
        sim.inject(Fault::fail_forever(Some(OpKind::Read), 2, EIO));
        assert!(sim.read(&dir.join("f")).is_ok());
        assert!(sim.read(&dir.join("f")).is_err());
        assert!(sim.read(&dir.join("f")).is_err());
        assert_eq!(sim.fired(), 4);
        sim.inject(Fault {
            action: FaultAction::Fail(FaultError::Kind(io::ErrorKind::StorageFull)),
            ..Fault::fail(Some(OpKind::Create), 1, EIO).on_path("g")
        });
        assert!(sim.create(&dir.join("f2")).is_ok(), "another path");
        let error = sim.create(&dir.join("g")).err().unwrap();
        assert_eq!(
            (error.kind(), error.raw_os_error()),
            (io::ErrorKind::StorageFull, None)
        );
        sim.inject(Fault::crash_before(
            Some(OpKind::Append),
            1,
            KeepPolicy::Synced,
        ));
        assert!(f.append(b"4").is_err());
        assert!(sim.is_down());
    }
}
