//! A store backed by a directory: opening (lock, metadata, recovery),
//! sync modes, flush and close; checkpoints (`checkpoint.rs`),
//! `inspect`/`verify` (`inspect.rs`), and a read-only store following its
//! writer (`follow.rs`).
//!
//! [`Durable`] is the store's [`Journal`]: recovery fills a fresh store
//! from the newest usable snapshot and replays the log after it through
//! the store's own API, then hands it the journal, which logs every later
//! op before the store applies it.
//!
//! Uses: `snapshot/`, `wal/`, `storage/`, `store/`, `memory/`, `model/`.
//!
//! Directory layout (docs/format.md):
//!     STORE                  format version and time unit, written once
//!     LOCK                   flock'ed by the one writer; holds its pid
//!     wal-<first LSN>.log    log segments
//!
//! Durability contract (docs/guarantees.md): every write call is appended
//! to the log, handed to the operating system, and only then applied to
//! memory and acknowledged. `always` also waits for fdatasync (shared by
//! concurrent writers); `interval` syncs in the background every N ms;
//! `none` syncs only at segment rotation, `flush()` and `close()`.

pub(crate) mod checkpoint;
pub(crate) mod follow;
pub(crate) mod inspect;

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::EngineError;
use super::wal::reader::{self, RecoveryMode, RecoveryReport, ReplayOptions};
use super::wal::writer::WalWriter;
use super::wal::{list_segments, segment_name};
use crate::engine::durable::inspect::{Inspection, inspect};
use crate::engine::model::time::TimeUnit;
use crate::engine::parallel::Urgency;
use crate::engine::snapshot::{LoadError, list_snapshots, mapped_bytes};
use crate::engine::storage::progress::{OpenPhase, OpenProgress, Tracker};
use crate::engine::storage::{FsStorage, Storage, crash_point};
use crate::engine::store::applier::Applier;
use crate::engine::store::ops::{Op, encode};
use crate::engine::store::{CheckpointInfo, Journal};
use crate::engine::store::{SeriesId, Store};
use checkpoint::remove_unneeded;

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Each write returns after fdatasync; concurrent writers share one.
    Always,
    /// A background thread syncs every interval. A killed process loses
    /// nothing acknowledged; a power cut loses at most the last interval.
    Interval(Duration),
    /// Sync only at segment rotation, flush and close.
    None,
}

#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The unit of a new store; an existing store must match if given.
    pub unit: Option<TimeUnit>,
    pub sync: SyncMode,
    pub recovery: RecoveryMode,
    pub readonly: bool,
    /// Size at which a log segment is finished and a new one started.
    pub segment_bytes: u64,
    /// Background checkpoints: after this long since the last one...
    pub checkpoint_every: Option<Duration>,
    /// ...or once the log has grown this much since the last one.
    pub checkpoint_log_bytes: Option<u64>,
    /// Where the open reports the bytes it reads, and where another thread
    /// can cancel it (see `storage/progress.rs` for what a cancel can stop).
    pub progress: Option<Arc<OpenProgress>>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            unit: None,
            sync: SyncMode::Interval(Duration::from_millis(200)),
            recovery: RecoveryMode::TolerateTail,
            readonly: false,
            segment_bytes: 64 << 20,
            checkpoint_every: Some(Duration::from_secs(600)),
            checkpoint_log_bytes: Some(512 << 20),
            progress: None,
        }
    }
}

const META_FILE: &str = "STORE";
const META_MAGIC: &[u8; 8] = b"MSSTORE\0";
const META_VERSION: u32 = 1;
const LOCK_FILE: &str = "LOCK";

fn encode_meta(unit: TimeUnit) -> Vec<u8> {
    let mut out = META_MAGIC.to_vec();
    out.extend_from_slice(&META_VERSION.to_le_bytes());
    out.push(unit.code());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_meta(bytes: &[u8], file: &Path) -> Result<TimeUnit, EngineError> {
    let bad = |reason: &str| EngineError::Corruption {
        file: file.display().to_string(),
        offset: 0,
        lsn: None,
        reason: reason.to_owned(),
    };
    if bytes.len() != 17 || &bytes[..8] != META_MAGIC {
        return Err(bad("not a metricstore STORE file"));
    }
    let crc = u32::from_le_bytes(bytes[13..17].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[..13]) {
        return Err(bad("STORE file checksum mismatch"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != META_VERSION {
        return Err(EngineError::Format {
            file: file.display().to_string(),
            reason: format!(
                "store format version {version}; this metricstore reads {META_VERSION}"
            ),
        });
    }
    TimeUnit::from_code(bytes[12]).ok_or_else(|| bad("unknown time unit code"))
}

/// The unit of the store in `dir`, creating its STORE file if it has none.
fn store_unit(
    storage: &dyn Storage,
    dir: &Path,
    wanted: Option<TimeUnit>,
    readonly: bool,
    progress: Tracker<'_>,
) -> Result<TimeUnit, EngineError> {
    let path = dir.join(META_FILE);
    let unit = match storage.read(&path) {
        Ok(bytes) => decode_meta(&bytes, &path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !readonly => {
            progress.begin_changes()?;
            let unit = wanted.unwrap_or(TimeUnit::Seconds);
            let temp = dir.join(format!("{META_FILE}.tmp"));
            let _ = storage.remove(&temp);
            let file = storage
                .create(&temp)
                .map_err(|e| EngineError::io("creating", &temp, &e))?;
            file.append(&encode_meta(unit))
                .and_then(|()| file.sync_data())
                .map_err(|e| EngineError::io("writing", &temp, &e))?;
            storage
                .rename(&temp, &path)
                .and_then(|()| storage.sync_dir(dir))
                .map_err(|e| EngineError::io("renaming", &temp, &e))?;
            return Ok(unit);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EngineError::argument(
                "path",
                format!(
                    "{} is not a metricstore directory (no STORE file)",
                    dir.display()
                ),
            ));
        }
        Err(e) => return Err(EngineError::io("reading", &path, &e)),
    };
    if let Some(wanted) = wanted
        && wanted != unit
    {
        return Err(EngineError::argument(
            "unit",
            format!(
                "the store at {} uses {:?}, not {:?}",
                dir.display(),
                unit.as_str(),
                wanted.as_str()
            ),
        ));
    }
    Ok(unit)
}

/// Removes what an interrupted write left: `*.tmp` files (a snapshot or
/// STORE file never renamed into place).
fn remove_temporary_files(storage: &dyn Storage, dir: &Path) -> Result<(), EngineError> {
    let names = storage
        .list(dir)
        .map_err(|e| EngineError::io("listing", dir, &e))?;
    for name in names.iter().filter(|n| n.ends_with(".tmp")) {
        let path = dir.join(name);
        storage
            .remove(&path)
            .map_err(|e| EngineError::io("removing", &path, &e))?;
    }
    Ok(())
}

/// What a snapshot that recovery could not use is renamed to.
const SET_ASIDE_SUFFIX: &str = ".broken";

/// Renames the snapshots recovery skipped to `<name>.broken`, so that no
/// later checkpoint counts a damaged snapshot as one of the two it keeps
/// (it would delete the good older one, and the log behind it, next).
fn set_aside(
    storage: &dyn Storage,
    dir: &Path,
    skipped: &[(String, String)],
) -> Result<(), EngineError> {
    for (file, _) in skipped {
        let path = Path::new(file);
        let aside = PathBuf::from(format!("{file}{SET_ASIDE_SUFFIX}"));
        storage
            .rename(path, &aside)
            .map_err(|e| EngineError::io("setting aside damaged snapshot", path, &e))?;
    }
    if !skipped.is_empty() {
        storage
            .sync_dir(dir)
            .map_err(|e| EngineError::io("syncing directory", dir, &e))?;
    }
    Ok(())
}

/// A recovery error, with the damaged snapshots (skipped now or set aside
/// by an earlier open) named: they are usually why the log does not reach
/// back far enough.
fn naming_damaged_snapshots(
    error: EngineError,
    storage: &dyn Storage,
    dir: &Path,
    skipped: &[(String, String)],
) -> EngineError {
    let EngineError::Corruption {
        file,
        offset,
        lsn,
        reason,
    } = error
    else {
        return error;
    };
    let mut damaged: Vec<String> = skipped.iter().map(|(f, _)| f.clone()).collect();
    if let Ok(names) = storage.list(dir) {
        let mut aside: Vec<String> = names
            .into_iter()
            .filter(|n| n.ends_with(SET_ASIDE_SUFFIX))
            .map(|n| dir.join(n).display().to_string())
            .collect();
        aside.sort();
        damaged.extend(aside);
    }
    let reason = if damaged.is_empty() {
        reason
    } else {
        format!(
            "{reason}; damaged snapshots, set aside or skipped: {}",
            damaged.join(", ")
        )
    };
    EngineError::Corruption {
        file,
        offset,
        lsn,
        reason,
    }
}

/// The exclusive lock of a store directory, held while a writer is open.
///
/// Two `flock`s: on the directory itself, which nothing can unlink from
/// under the writer (deleting `LOCK` while a writer held only that let a
/// second writer in), and on `LOCK`, which holds the writer's pid for the
/// error a second writer gets. A file system that cannot lock a directory
/// (NFS emulates `flock` with POSIX locks, which need a file open for
/// writing) falls back to `LOCK` alone.
struct DirLock {
    _dir: Option<File>,
    _file: File,
}

/// Takes an exclusive `flock` on `file` without waiting: Ok(true) if taken,
/// Ok(false) if another open file description holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // flock locks belong to the open file description, so a second open in
    // this same process conflicts too.
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let locked = unsafe {
        use std::os::fd::AsRawFd;
        libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)
    };
    if locked == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(error)
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, EngineError> {
        let path = dir.join(LOCK_FILE);
        let mut file = FsOpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| EngineError::io("opening", &path, &e))?;
        let locked = |file: &mut File| {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            EngineError::Locked {
                path: dir.display().to_string(),
                pid: text.trim().parse().ok(),
            }
        };
        let dir_file = File::open(dir).map_err(|e| EngineError::io("opening", dir, &e))?;
        let dir_lock = match try_flock(&dir_file) {
            Ok(true) => Some(dir_file),
            Ok(false) => return Err(locked(&mut file)),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EBADF | libc::ENOLCK | libc::EINVAL | libc::EOPNOTSUPP)
                ) =>
            {
                None
            }
            Err(e) => return Err(EngineError::io("locking", dir, &e)),
        };
        match try_flock(&file) {
            Ok(true) => {}
            Ok(false) => return Err(locked(&mut file)),
            Err(e) => return Err(EngineError::io("locking", &path, &e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(|e| EngineError::io("writing", &path, &e))?;
        Ok(DirLock {
            _dir: dir_lock,
            _file: file,
        })
    }
}

/// The background sync thread of `interval` mode. (In `always` mode each
/// writer syncs its own record, sharing the sync with concurrent writers,
/// while the apply thread applies its op: see `store/applier.rs`.)
struct SyncShared {
    /// Whether to stop.
    stop: Mutex<bool>,
    /// Wakes the sync thread to stop.
    wake: Condvar,
}

impl SyncShared {
    /// Starts the thread syncing every `every`; returns what stops it.
    fn start(wal: Arc<WalWriter>, every: Duration) -> (Arc<SyncShared>, JoinHandle<()>) {
        let shared = Arc::new(SyncShared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("metricstore-sync".to_owned())
            .spawn(move || {
                let mut stop = worker.stop.lock();
                loop {
                    if *stop {
                        return;
                    }
                    worker.wake.wait_for(&mut stop, every);
                    if *stop {
                        return;
                    }
                    drop(stop);
                    // A failure poisons the log; writers see it.
                    let failed = wal.written_lsn() > wal.synced_lsn() && wal.sync_all().is_err();
                    if failed {
                        return;
                    }
                    stop = worker.stop.lock();
                }
            })
            .expect("spawning the sync thread");
        (shared, thread)
    }

    /// Stops the thread and joins it.
    fn stop(&self, thread: JoinHandle<()>) {
        *self.stop.lock() = true;
        self.wake.notify_all();
        let _ = thread.join();
    }
}

/// The background checkpoint thread: its stop flag and handle.
type Checkpointer = (Arc<(Mutex<bool>, Condvar)>, JoinHandle<()>);

/// The writer side of a store directory.
pub(crate) struct Durable {
    pub(crate) wal: Arc<WalWriter>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    /// Checkpoints run one at a time.
    pub(crate) checkpoint_lock: Mutex<()>,
    /// `appended_bytes` of the log when the last checkpoint started.
    pub(crate) checkpointed_at_bytes: AtomicU64,
    checkpointer: Mutex<Option<Checkpointer>>,
    /// Background checkpoints that failed, and the last error.
    pub(crate) failed_checkpoints: AtomicU64,
    pub(crate) last_checkpoint_error: Mutex<Option<String>>,
    sync: SyncMode,
    pub(crate) owner_pid: u32,
    closed: AtomicBool,
    lock: Mutex<Option<DirLock>>,
    /// Stops the sync thread (interval mode).
    syncer: Option<Arc<SyncShared>>,
    sync_thread: Mutex<Option<JoinHandle<()>>>,
    /// `always` mode: applies data ops while their writer syncs.
    pub(crate) applier: Option<Arc<Applier>>,
}

impl Durable {
    /// A checkpoint keeping two snapshots, then a seal pass (what the
    /// snapshot holds need not stay raw in memory), both at `urgency`.
    fn checkpoint_then_seal(
        &self,
        store: &Store,
        urgency: Urgency,
    ) -> Result<CheckpointInfo, EngineError> {
        let info = self.checkpoint_store(store, 2, urgency)?;
        store.seal_at(urgency);
        Ok(info)
    }

    /// Stops the background checkpoint thread and waits for it, unless
    /// called on that thread (which then simply ends after this call).
    fn stop_checkpointer(&self) {
        let Some((stop, thread)) = self.checkpointer.lock().take() else {
            return;
        };
        *stop.0.lock() = true;
        stop.1.notify_all();
        if thread.thread().id() != std::thread::current().id() {
            let _ = thread.join();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn last_snapshot_lsn(&self) -> Result<u64, EngineError> {
        Ok(list_snapshots(self.storage.as_ref(), &self.dir)?
            .first()
            .map_or(0, |(lsn, _)| *lsn))
    }

    pub(crate) fn check_writable(&self) -> Result<(), EngineError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        let current = std::process::id();
        if current != self.owner_pid {
            return Err(EngineError::WrongProcess {
                owner: self.owner_pid,
                current,
            });
        }
        if let Some(reason) = self.wal.poisoned() {
            return Err(EngineError::Poisoned { reason });
        }
        Ok(())
    }
}

impl Journal for Durable {
    fn check_writable(&self) -> Result<(), EngineError> {
        Durable::check_writable(self)
    }

    fn record(&self, op: &Op<'_>, created: Option<SeriesId>) -> Result<u64, EngineError> {
        self.wal.append(|buf| encode(op, created, buf))
    }

    fn applier(&self) -> Option<&Applier> {
        // A forked child has no apply thread, and never queued anything.
        self.applier
            .as_deref()
            .filter(|_| self.owner_pid == std::process::id())
    }

    /// In `always` mode, that the record is synced (concurrent writers
    /// share one sync: see `WalWriter::sync_through`).
    fn acknowledge(&self, lsn: u64) -> Result<(), EngineError> {
        if self.sync != SyncMode::Always {
            return Ok(());
        }
        self.wal.sync_through(lsn)
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.check_writable()?;
        self.wal.sync_all()
    }

    fn checkpoint(&self, store: &Store) -> Result<CheckpointInfo, EngineError> {
        self.checkpoint_then_seal(store, Urgency::Now)
    }

    fn close(&self, store: &Store, checkpoint: bool) -> Result<(), EngineError> {
        // A closing store keeps one snapshot and only the log after it:
        // the directory then holds the data once. If that fails, the store
        // closes all the same (the log holds every acknowledged write, and
        // the next open replays it) and the failure is reported after: a
        // store left open and locked by a failed close would keep the
        // directory from its next writer for as long as the object lives.
        let checkpointed = if checkpoint
            && !self.closed.load(Ordering::Acquire)
            && std::process::id() == self.owner_pid
            && self.wal.poisoned().is_none()
        {
            self.last_snapshot_lsn().and_then(|snapshot| {
                if self.wal.written_lsn() > snapshot {
                    self.checkpoint_store(store, 1, Urgency::Now).map(|_| ())
                } else {
                    let _one_at_a_time = self.checkpoint_lock.lock();
                    // The newest snapshot may be one whose directory sync
                    // failed after its rename: make its name durable
                    // before deleting the log it covers.
                    self.storage
                        .sync_dir(&self.dir)
                        .map_err(|e| EngineError::io("syncing directory", &self.dir, &e))?;
                    remove_unneeded(self.storage.as_ref(), &self.dir, 1).map(|_| ())
                }
            })
        } else {
            Ok(())
        };
        // No background checkpoint may run once the directory is released:
        // stop the thread and wait for a checkpoint in flight, before
        // taking the sequencer (a checkpoint takes it too).
        if std::process::id() == self.owner_pid {
            self.stop_checkpointer();
        }
        let _order = store.lock_sequencer();
        if std::process::id() != self.owner_pid {
            // A forked child closing its inherited copy: the parent owns the
            // log and its sync thread; leave both alone.
            self.closed.store(true, Ordering::Release);
            std::mem::forget(self.sync_thread.lock().take());
            return Ok(());
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return checkpointed;
        }

        if let (Some(syncer), Some(thread)) = (&self.syncer, self.sync_thread.lock().take()) {
            syncer.stop(thread);
        }
        if let Some(applier) = &self.applier {
            applier.stop();
        }
        let synced = if self.wal.poisoned().is_some() {
            Ok(())
        } else {
            self.wal.sync_all()
        };
        self.lock.lock().take();
        checkpointed.and(synced)
    }

    fn start_checkpoints(
        self: Arc<Self>,
        store: Weak<Store>,
        every: Option<Duration>,
        log_bytes: Option<u64>,
    ) {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let durable = Arc::downgrade(&self);
        // Checking often enough to notice the log growing.
        let poll = every
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(50));
        let thread = std::thread::Builder::new()
            .name("metricstore-checkpoint".to_owned())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    {
                        let mut stopped = signal.0.lock();
                        if *stopped {
                            return;
                        }
                        signal.1.wait_for(&mut stopped, poll);
                        if *stopped {
                            return;
                        }
                    }
                    let (Some(store), Some(durable)) = (store.upgrade(), durable.upgrade()) else {
                        return;
                    };
                    let grown = durable.wal.appended_bytes()
                        - durable.checkpointed_at_bytes.load(Ordering::Relaxed);
                    let due = every.is_some_and(|e| last.elapsed() >= e)
                        || log_bytes.is_some_and(|b| grown >= b);
                    if !due || grown == 0 {
                        continue;
                    }
                    last = Instant::now();
                    match durable.checkpoint_then_seal(&store, Urgency::Background) {
                        Ok(_) => {}
                        Err(EngineError::Closed) => return,
                        Err(error) => {
                            durable.failed_checkpoints.fetch_add(1, Ordering::Relaxed);
                            *durable.last_checkpoint_error.lock() = Some(error.to_string());
                        }
                    }
                }
            })
            .expect("spawning the checkpoint thread");
        *self.checkpointer.lock() = Some((stop, thread));
    }

    fn checkpoint_failures(&self) -> (u64, Option<String>) {
        (
            self.failed_checkpoints.load(Ordering::Relaxed),
            self.last_checkpoint_error.lock().clone(),
        )
    }

    fn sync_name(&self) -> &'static str {
        match self.sync {
            SyncMode::Always => "always",
            SyncMode::Interval(_) => "interval",
            SyncMode::None => "none",
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Dropped without close(): stop the sync thread and sync what was
        // written, as closing a file does; errors have no one to go to.
        if std::process::id() == self.owner_pid {
            self.stop_checkpointer();
        } else {
            std::mem::forget(self.checkpointer.get_mut().take());
        }
        let thread = self.sync_thread.get_mut().take();
        if std::process::id() != self.owner_pid {
            // A forked child: the sync thread exists only in the parent.
            std::mem::forget(thread);
            return;
        }
        if let (Some(syncer), Some(thread)) = (&self.syncer, thread) {
            syncer.stop(thread);
        }
        if let Some(applier) = &self.applier {
            applier.stop();
        }
        if !self.closed.load(Ordering::Acquire) && self.wal.poisoned().is_none() {
            let _ = self.wal.sync_all();
        }
    }
}

impl Store {
    /// Opens (or creates) the store in directory `dir` on the real file
    /// system, taking its lock unless read-only.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<(Store, RecoveryReport), EngineError> {
        let progress = Tracker::new(options.progress.as_deref());
        progress.start();
        progress.check()?;
        let lock = if options.readonly {
            None
        } else {
            FsStorage
                .create_dir_all(dir)
                .map_err(|e| EngineError::io("creating", dir, &e))?;
            Some(DirLock::acquire(dir)?)
        };
        Store::open_with(Arc::new(FsStorage), dir, options, lock)
    }

    /// Opens a store on any storage (tests use a simulated one).
    pub fn open_on(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: &OpenOptions,
    ) -> Result<(Store, RecoveryReport), EngineError> {
        let progress = Tracker::new(options.progress.as_deref());
        progress.start();
        progress.check()?;
        if !options.readonly {
            storage
                .create_dir_all(dir)
                .map_err(|e| EngineError::io("creating", dir, &e))?;
        }
        Store::open_with(storage, dir, options, None)
    }

    /// Opening, in two phases (see `storage/progress.rs`): reading, which changes
    /// no file and stops when `options.progress` is cancelled, then
    /// changing, which runs to the end once begun.
    fn open_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: &OpenOptions,
        lock: Option<DirLock>,
    ) -> Result<(Store, RecoveryReport), EngineError> {
        let started = Instant::now();
        let progress = Tracker::new(options.progress.as_deref());
        let unit = store_unit(
            storage.as_ref(),
            dir,
            options.unit,
            options.readonly,
            progress,
        )?;
        let mut store = Store::new(unit);
        let mut skipped_snapshots = Vec::new();
        let mut snapshot = None;
        // Bytes of the snapshots tried so far (each counts as done).
        let mut tried = 0;
        for (lsn, name) in list_snapshots(storage.as_ref(), dir)? {
            let path = dir.join(&name);
            let loaded = match storage.read_immutable(&path) {
                Err(e) => Err(LoadError::Unusable(e.to_string())),
                Ok(bytes) => {
                    if progress.watched() {
                        let log = reader::log_bytes(storage.as_ref(), dir, lsn);
                        progress.set_total(tried + bytes.len() as u64 + log);
                    }
                    progress.enter(OpenPhase::Snapshot);
                    let mut candidate = Store::new(unit);
                    tried += bytes.len() as u64;
                    let name = path.display().to_string();
                    candidate
                        .load_snapshot(Arc::from(bytes), &name, options.readonly, progress)
                        .map(|lsn| (candidate, lsn))
                }
            };
            match loaded {
                Ok((candidate, lsn)) => {
                    store = candidate;
                    snapshot = Some((path.display().to_string(), lsn));
                    break;
                }
                Err(LoadError::Cancelled) => return Err(EngineError::Cancelled),
                Err(LoadError::Newer(reason)) => {
                    return Err(EngineError::Format {
                        file: path.display().to_string(),
                        reason,
                    });
                }
                Err(LoadError::Unusable(reason)) => {
                    progress.set_done(tried);
                    skipped_snapshots.push((path.display().to_string(), reason));
                }
            }
        }
        let snapshot_lsn = snapshot.as_ref().map_or(0, |(_, lsn)| *lsn);
        if snapshot.is_none() && progress.watched() {
            progress.set_total(tried + reader::log_bytes(storage.as_ref(), dir, 0));
        }
        crash_point!(storage.as_ref(), RECOVERY_LOADED);
        progress.enter(OpenPhase::Log);
        let replay = ReplayOptions {
            mode: options.recovery,
            readonly: options.readonly,
            after_lsn: snapshot_lsn,
        };
        let replayed = reader::replay(
            storage.as_ref(),
            dir,
            replay,
            progress,
            |_, kind, payload| store.replay(kind, payload),
        )
        .map_err(|e| naming_damaged_snapshots(e, storage.as_ref(), dir, &skipped_snapshots))?;
        let report = RecoveryReport {
            snapshot: snapshot.map(|(file, _)| file),
            snapshot_lsn,
            skipped_snapshots,
            seconds: started.elapsed().as_secs_f64(),
            ..replayed
        };
        if options.readonly {
            store.set_readonly();
            progress.enter(OpenPhase::Done);
            return Ok((store, report));
        }
        progress.begin_changes()?;
        // Only now: recovery never reads them, and cancelling must find
        // the directory unchanged.
        remove_temporary_files(storage.as_ref(), dir)?;
        set_aside(storage.as_ref(), dir, &report.skipped_snapshots)?;
        crash_point!(storage.as_ref(), RECOVERY_REPLAYED);
        // What was replayed may be only in the page cache (the last writer
        // was killed before syncing): make it durable before anything is
        // written after it, or a power cut could keep the new segment and
        // lose the end of the old one, leaving a gap.
        for (_, name) in list_segments(storage.as_ref(), dir)? {
            let path = dir.join(&name);
            storage
                .sync_file(&path)
                .map_err(|e| EngineError::io("syncing log segment", &path, &e))?;
        }
        crash_point!(storage.as_ref(), RECOVERY_SYNCED);
        // A segment named after the next LSN holds no complete record (else
        // replay would have seen it): an empty or cut segment. Replace it.
        let next_segment = dir.join(segment_name(report.last_lsn + 1));
        match storage.remove(&next_segment) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io("removing empty segment", &next_segment, &e)),
        }
        let wal = Arc::new(WalWriter::create(
            Arc::clone(&storage),
            dir,
            report.last_lsn + 1,
            options.segment_bytes,
        )?);
        let (syncer, sync_thread) = match options.sync {
            SyncMode::Interval(every) => {
                let (shared, thread) = SyncShared::start(Arc::clone(&wal), every);
                (Some(shared), Some(thread))
            }
            SyncMode::Always | SyncMode::None => (None, None),
        };
        let applier = match options.sync {
            SyncMode::Always => Some(
                Applier::start().map_err(|e| EngineError::io("starting a thread for", dir, &e))?,
            ),
            _ => None,
        };
        // A store with a log seals what each checkpoint saved (its snapshot
        // encodes the same chunks), not in passes beside its writers: a
        // bulk load ran at 600 MB/s with background passes, 850 without.
        store.set_seal_after(None);
        store.set_journal(Arc::new(Durable {
            wal,
            storage,
            dir: dir.to_owned(),
            checkpoint_lock: Mutex::new(()),
            checkpointed_at_bytes: AtomicU64::new(0),
            checkpointer: Mutex::new(None),
            failed_checkpoints: AtomicU64::new(0),
            last_checkpoint_error: Mutex::new(None),
            sync: options.sync,
            owner_pid: std::process::id(),
            closed: AtomicBool::new(false),
            lock: Mutex::new(lock),
            syncer,
            sync_thread: Mutex::new(sync_thread),
            applier,
        }));
        progress.enter(OpenPhase::Done);
        Ok((store, report))
    }

    /// About how many bytes opening the store in `dir` reads: the newest
    /// snapshot (a `readonly` open maps a snapshot of format 2 or later and
    /// reads only its catalog and index, from format 5 its catalog and
    /// series directory) and the log after it (0 if `dir` cannot be
    /// read; `open` then says why). Cheap: it lists the directory and
    /// measures files.
    pub fn recovery_bytes(dir: &Path, readonly: bool) -> u64 {
        let storage = FsStorage;
        let Ok(snapshots) = list_snapshots(&storage, dir) else {
            return 0;
        };
        let (lsn, snapshot) = snapshots.first().map_or((0, 0), |(lsn, name)| {
            let path = dir.join(name);
            let mapped = readonly
                .then(|| storage.read_immutable(&path).ok())
                .flatten()
                .and_then(|file| mapped_bytes(file.as_ref()));
            let whole = || storage.size(&path).unwrap_or(0);
            (*lsn, mapped.unwrap_or_else(whole))
        });
        snapshot + reader::log_bytes(&storage, dir, lsn)
    }

    /// Reads every log segment and snapshot of the store in `dir` without
    /// changing anything (what `inspect` and `verify` report).
    pub fn inspect(dir: &Path) -> Result<(TimeUnit, Inspection), EngineError> {
        let unit = store_unit(&FsStorage, dir, None, true, Tracker::new(None))?;
        Ok((unit, inspect(&FsStorage, dir, unit)?))
    }
}

#[cfg(test)]
#[path = "durable_tests.rs"]
pub(crate) mod tests;
