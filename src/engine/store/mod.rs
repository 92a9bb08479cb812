//! The store: applies ops in one total order and answers range reads.
//!
//! It is the in-memory state machine: ops in (`ops.rs`: each checked whole
//! before any of it is applied), memory changed in sequencer order, on this
//! thread or on the apply thread (`applier.rs`). It knows nothing of files:
//! a store opened on a directory is given a [`Journal`] that logs each op
//! under the sequencer before it is applied, and owns checkpoints, flush
//! and close. Reads live in `query/`, which uses the store's catalog.
//!
//! Uses: `memory/`, `model/`. Used by everything above it.
//!
//! Locks, always taken in this order: `sequencer` (writers only; it fixes
//! the order ops are applied in, which a write-ahead log will share), then
//! `stage`, then `catalog`, then one series' data lock at a time. Readers
//! never take the sequencer, so reads proceed while other series are being
//! written. A reader may see a tick that is partly applied (series by
//! series); each series on its own is always consistent. In `always` mode
//! data ops are applied on the apply thread after the sequencer is
//! released, still in sequencer order (`applier.rs`); `lock_sequencer`
//! waits for them.
//!
//! Most ticks are staged rather than written into their series at once
//! (`memory/stage.rs`); whoever reads series data, or changes it by another op,
//! first writes staged ticks out (`Store::settle`).

pub(crate) mod applier;
pub(crate) mod ops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::error::EngineError;
pub use crate::engine::memory::catalog::SeriesId;
use crate::engine::memory::catalog::{Catalog, MetricId, write_each};
use crate::engine::memory::chunks::{CHUNK_SLOTS, ChunkPool, release_all};
use crate::engine::memory::series::SeriesData;
use crate::engine::memory::stage::{SeriesMemory, Stage};
use crate::engine::model::keys::BuildKeyHasher;
pub use crate::engine::model::keys::{SeriesKeys, SeriesName};
use crate::engine::model::metric::{Aggregation, MetricDef, validate_unit};
use crate::engine::model::names::{validate_metric_name, validate_path};
use crate::engine::model::time::{TimeUnit, check_slot_run, first_slot_at_or_after, nearest_slot};
use crate::engine::parallel::Urgency;
use crate::engine::store::applier::Applier;
use crate::engine::store::ops::{Op, OwnedOp, decode};

/// Counters and sizes, for `stats()` and `repr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub metrics: usize,
    pub series: usize,
    pub nodes: usize,
    pub chunks: usize,
    /// Bytes the series data holds: raw chunks' slots and sealed chunks'
    /// compressed bytes (what the memory limit counts).
    pub data_bytes: usize,
    /// The tiers: raw chunks (being written: `CHUNK_BYTES` each), and
    /// sealed chunks (compressed) with the bytes they hold. Each chunk
    /// stands for `CHUNK_BYTES` of raw data.
    pub raw_chunks: usize,
    pub sealed_chunks: usize,
    pub sealed_bytes: usize,
    /// Sealed chunks a read-only store left in its mapped snapshot, read
    /// (and checked) only when a read needs them.
    pub mapped_chunks: usize,
    pub mapped_bytes: usize,
    /// Bytes reserved from the system for chunks (whole slabs, including
    /// free slots); what the series data costs in memory.
    pub reserved_bytes: usize,
    /// Non-NaN samples stored.
    pub samples: u64,
    pub write_calls: u64,
    pub samples_written: u64,
    pub read_calls: u64,
    pub samples_read: u64,
    /// Cuts of old data (retention, memory limit, `drop_before`), the
    /// chunks they freed, and how many the memory limit made.
    pub drops: u64,
    pub dropped_chunks: u64,
    pub evictions: u64,
    /// The memory limit on data bytes, if any.
    pub memory_limit: Option<usize>,
    /// Background checkpoints that failed, and the last one's error.
    pub failed_checkpoints: u64,
    pub last_checkpoint_error: Option<String>,
    /// The log's sync mode ("always", "interval", "none"); None without
    /// a log.
    pub sync: Option<&'static str>,
}

#[derive(Default)]
struct Counters {
    /// DropBefore ops applied (retention, memory limit, explicit), and the
    /// chunks they freed.
    drops: AtomicU64,
    dropped_chunks: AtomicU64,
    /// Of those, the ones the memory limit made.
    evictions: AtomicU64,
    write_calls: AtomicU64,
    samples_written: AtomicU64,
    read_calls: AtomicU64,
    samples_read: AtomicU64,
}

/// What a checkpoint wrote and removed.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInfo {
    pub lsn: u64,
    pub file: String,
    pub bytes: u64,
    pub series: usize,
    pub removed_segments: usize,
    pub removed_snapshots: usize,
    /// How long writers were held (LSN, segment switch, catalog copy).
    pub writers_held_seconds: f64,
    pub seconds: f64,
}

/// What the store needs of whatever makes it durable.
///
/// The store applies ops in one order (its sequencer) and answers reads; it
/// knows nothing of files, segments or sync modes. A store opened on a
/// directory is given a [`Journal`] (the durable layer implements it over
/// the write-ahead log and snapshots), and the store calls it at the points
/// where the order of ops and the log must agree:
///
/// - under the sequencer, after an op is checked and before it is applied,
///   [`Journal::record`] logs it, so the log's order is the apply order and
///   the LSN is the op's place in it;
/// - after the sequencer is released, [`Journal::acknowledge`] waits for
///   what the sync mode promises, so concurrent writers share one sync.
///
/// Checkpoints, flush and close belong to the journal too; the store's
/// methods of those names hand themselves to it. Dependencies point one way:
/// the durable layer uses the store's API; the store sees only this trait.
pub(crate) trait Journal: Send + Sync {
    /// Why no op may be recorded now (closed, poisoned, another process),
    /// if that is so.
    fn check_writable(&self) -> Result<(), EngineError>;

    /// Logs `op` (and `created`, the handle a `CreateSeries` op gives) and
    /// returns its LSN. Called under the store's sequencer.
    fn record(&self, op: &Op<'_>, created: Option<SeriesId>) -> Result<u64, EngineError>;

    /// The thread that applies data ops while their writer waits in
    /// [`Journal::acknowledge`] (`always` mode), in the process that opened
    /// the journal only.
    fn applier(&self) -> Option<&Applier>;

    /// Returns once the record `lsn` is as durable as the sync mode promises
    /// an acknowledged write. Called outside the sequencer.
    fn acknowledge(&self, lsn: u64) -> Result<(), EngineError>;

    /// Returns once every op recorded before the call is durable.
    fn flush(&self) -> Result<(), EngineError>;

    /// Writes a snapshot of `store` and deletes what it makes unneeded.
    fn checkpoint(&self, store: &Store) -> Result<CheckpointInfo, EngineError>;

    /// Writes a final snapshot if anything was logged since the last one
    /// (when `checkpoint`), then closes, also when the snapshot fails (whose
    /// error it then returns). Idempotent.
    fn close(&self, store: &Store, checkpoint: bool) -> Result<(), EngineError>;

    /// Starts checkpointing `store` in the background: after `every` since
    /// the last checkpoint, or once the log has grown by `log_bytes`. The
    /// thread holds only weak references and ends with the store.
    fn start_checkpoints(
        self: Arc<Self>,
        store: Weak<Store>,
        every: Option<Duration>,
        log_bytes: Option<u64>,
    );

    /// Background checkpoints that failed, and the last one's error.
    fn checkpoint_failures(&self) -> (u64, Option<String>);

    /// When an acknowledged write reaches the disk: "always" (each write
    /// waits for a sync), "interval" or "none".
    fn sync_name(&self) -> &'static str;
}

pub struct Store {
    unit: TimeUnit,
    /// Bytes of chunk data above which the oldest data is dropped; 0 = none.
    memory_limit: std::sync::atomic::AtomicUsize,
    /// Ticks of data kept before the wall clock; 0 = all.
    retention: std::sync::atomic::AtomicI64,
    last_retention_cut: Mutex<Option<std::time::Instant>>,
    /// Where ops are logged before they are applied (`journal.rs`); `None`
    /// for a purely in-memory store.
    journal: Option<Arc<dyn Journal>>,
    readonly: bool,
    pub(super) pool: Arc<ChunkPool>,
    sequencer: Mutex<()>,
    /// Ticks applied but not yet written into their series (`memory/stage.rs`).
    stage: Mutex<Stage>,
    /// Seal passes (`Store::seal`).
    sealing: Arc<Sealing>,
    pub(super) catalog: RwLock<Catalog>,
    counters: Counters,
}

/// What applying a checked op will do.
#[derive(Debug)]
enum Plan {
    /// Nothing changes (a metric defined again identically).
    Nothing,
    /// The series exists already: nothing to log or change.
    Existing(SeriesId),
    Define,
    /// The series will get this handle.
    Create(SeriesId),
    /// The series of each key of a `CreateSeriesMany`, and the keys that
    /// create theirs (distinct, in order): the handles after the last.
    CreateMany {
        ids: Vec<SeriesId>,
        new: Vec<usize>,
    },
    /// A block's first slot.
    Block(i64),
    /// The slot of each element of a tick or points op.
    Slots(Slots),
    Drop,
}

/// The slots of a tick or points op's elements.
#[derive(Debug)]
enum Slots {
    /// One slot for every element: a tick whose series share a frequency
    /// (the usual case; no per-element vector to fill).
    Same(i64),
    Each(Vec<i64>),
}

impl Slots {
    fn at(&self, i: usize) -> i64 {
        match self {
            Slots::Same(slot) => *slot,
            Slots::Each(slots) => slots[i],
        }
    }
}

fn check_lengths(
    argument: &str,
    len: usize,
    expected_name: &str,
    expected: usize,
) -> Result<(), EngineError> {
    if len != expected {
        return Err(EngineError::argument(
            argument,
            format!("has {len} elements but {expected_name} has {expected}"),
        ));
    }
    Ok(())
}

impl Store {
    pub fn new(unit: TimeUnit) -> Self {
        Store {
            unit,
            memory_limit: std::sync::atomic::AtomicUsize::new(0),
            retention: std::sync::atomic::AtomicI64::new(0),
            last_retention_cut: Mutex::new(None),
            journal: None,
            readonly: false,
            pool: Arc::default(),
            sequencer: Mutex::new(()),
            stage: Mutex::default(),
            sealing: Arc::default(),
            catalog: RwLock::new(Catalog::new()),
            counters: Counters::default(),
        }
    }

    pub fn unit(&self) -> TimeUnit {
        self.unit
    }

    fn check_writable(&self) -> Result<(), EngineError> {
        if self.readonly {
            return Err(EngineError::ReadOnly);
        }
        match &self.journal {
            Some(journal) => journal.check_writable(),
            None => Ok(()),
        }
    }

    pub(crate) fn set_readonly(&mut self) {
        self.readonly = true;
    }

    pub fn is_readonly(&self) -> bool {
        self.readonly
    }

    /// From now on every op is recorded in `journal` before it is applied.
    pub(crate) fn set_journal(&mut self, journal: Arc<dyn Journal>) {
        self.journal = Some(journal);
    }

    /// Holding this, no op is being applied, and every logged op is in
    /// memory.
    pub(crate) fn lock_sequencer(&self) -> parking_lot::MutexGuard<'_, ()> {
        let order = self.sequencer.lock();
        // (A forked child has no apply thread to wait for, and never
        // queued anything itself: its journal gives none.)
        if let Some(applier) = self.journal.as_ref().and_then(|j| j.applier()) {
            applier.drain();
        }
        order
    }

    /// Applies one op: checks all of it, logs it (if the store has a log),
    /// then changes memory; then, for writes, keeps the memory limit.
    /// Returns the handle for `CreateSeries`.
    pub fn apply(&self, op: &Op<'_>) -> Result<Option<SeriesId>, EngineError> {
        if let Op::CreateSeriesMany { keys } = op {
            return self.create_many(keys).map(|_| None);
        }
        if let Op::WriteBlock { values, .. } = op
            && self.check_writable().is_ok()
        {
            // A block spans at most this many chunks; mapping memory for
            // them here, before the sequencer, lets writers map in parallel.
            self.pool.reserve(values.len() / CHUNK_SLOTS + 2);
        }
        let result = self.apply_logged(op)?;
        if matches!(
            op,
            Op::WriteBlock { .. } | Op::WriteTick { .. } | Op::WritePoints { .. }
        ) {
            self.enforce_retention()?;
            self.enforce_memory_limit()?;
            self.start_sealing_if_grown();
        }
        Ok(result)
    }

    /// Seals the chunks no longer being written, now, on this thread:
    /// every raw chunk but each series' newest, and the newest too where
    /// the series was not written since the last pass. Returns chunks
    /// sealed. Reads and writes go on meanwhile, each series waiting only
    /// while its own chunks are sealed.
    pub fn seal(&self) -> usize {
        self.seal_at(Urgency::Now)
    }

    /// `seal`, paced as `urgency` says.
    pub(crate) fn seal_at(&self, urgency: Urgency) -> usize {
        // Staged ticks first, or writing them out would unseal chunks.
        self.settle();
        let series = self.series_data();
        let sealed = seal_all(&series, &self.pool, urgency);
        self.sealing
            .raw_after
            .store(self.pool.usage().in_use, Ordering::Relaxed);
        sealed
    }

    /// Sets how many bytes of raw chunks may be added before a seal pass
    /// starts in the background (None: never; passes then run only when
    /// called, and at checkpoints).
    pub fn set_seal_after(&self, bytes: Option<usize>) {
        self.sealing
            .every
            .store(bytes.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    fn series_data(&self) -> Vec<Arc<RwLock<SeriesData>>> {
        let catalog = self.catalog.read();
        catalog
            .entries()
            .iter()
            .map(|e| Arc::clone(&e.data))
            .collect()
    }

    /// Once raw chunks have grown by `sealing.every` bytes since the last
    /// pass, starts one on the engine's thread pool (one at a time), so
    /// that writers never wait for the encoding.
    fn start_sealing_if_grown(&self) {
        let sealing = &self.sealing;
        let every = sealing.every.load(Ordering::Relaxed);
        if every == usize::MAX {
            return;
        }
        let raw = self.pool.usage().in_use;
        if raw
            < sealing
                .raw_after
                .load(Ordering::Relaxed)
                .saturating_add(every)
            || sealing.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let series = self.series_data();
        let pool = Arc::clone(&self.pool);
        let sealing = Arc::clone(sealing);
        Urgency::Background.pool().spawn(move || {
            seal_all(&series, &pool, Urgency::Background);
            sealing
                .raw_after
                .store(pool.usage().in_use, Ordering::Relaxed);
            sealing.running.store(false, Ordering::Release);
        });
    }

    /// Keeps only data newer than `keep` ticks before the wall clock (None:
    /// keep everything). Writes apply it: after a write, once a tenth of
    /// `keep` (between 1 and 60 seconds) has passed since the last cut.
    pub fn set_retention(&self, keep: Option<i64>) -> Result<(), EngineError> {
        if keep.is_some_and(|k| k <= 0) {
            return Err(EngineError::argument(
                "retention",
                "must be positive or None",
            ));
        }
        self.retention.store(keep.unwrap_or(0), Ordering::Relaxed);
        *self.last_retention_cut.lock() = None;
        self.enforce_retention()
    }

    fn enforce_retention(&self) -> Result<(), EngineError> {
        let keep = self.retention.load(Ordering::Relaxed);
        if keep == 0 {
            return Ok(());
        }
        let period = self.unit.duration(keep / 10).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        {
            let mut last = self.last_retention_cut.lock();
            if last.is_some_and(|at| at.elapsed() < period) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        let before = self.unit.now().saturating_sub(keep);
        self.apply_logged(&Op::DropBefore { before }).map(|_| ())
    }

    fn apply_logged(&self, op: &Op<'_>) -> Result<Option<SeriesId>, EngineError> {
        let lsn;
        let mut result = None;
        // An op the apply thread runs: its plan, then its ticket, which
        // borrows the plan and waits for the job when dropped (before it).
        let planned: Plan;
        let _applied;
        {
            let _order = self.sequencer.lock();
            self.check_writable()?;
            let plan = self.plan(op)?;
            if let Plan::Existing(id) = plan {
                return Ok(Some(id));
            }
            lsn = match &self.journal {
                Some(journal) => {
                    let created = match plan {
                        Plan::Create(id) => Some(id),
                        _ => None,
                    };
                    Some(journal.record(op, created)?)
                }
                None => None,
            };
            let applier = self.journal.as_ref().and_then(|j| j.applier());
            match applier {
                // Data ops go to the apply thread, in log order, while this
                // thread syncs (applier.rs). Catalog ops change what later
                // plans see, so they are applied here, after the queue.
                Some(applier)
                    if matches!(
                        op,
                        Op::WriteBlock { .. }
                            | Op::WriteTick { .. }
                            | Op::WritePoints { .. }
                            | Op::DropBefore { .. }
                            | Op::DropSeriesBefore { .. }
                    ) =>
                {
                    planned = plan;
                    let plan = &planned;
                    let job = Box::new(move || {
                        self.execute(op, plan);
                    });
                    // SAFETY: `_applied` is dropped, waiting for the job,
                    // before this function returns or unwinds, and so
                    // before `planned`, `self` and `op` go away.
                    _applied = Some(unsafe { applier.submit(job) });
                }
                Some(applier) => {
                    applier.drain();
                    result = self.execute(op, &plan);
                    _applied = None;
                }
                None => {
                    result = self.execute(op, &plan);
                    _applied = None;
                }
            }
        }
        // Outside the sequencer, so concurrent writers share one sync.
        if let (Some(journal), Some(lsn)) = (&self.journal, lsn) {
            journal.acknowledge(lsn)?;
        }
        Ok(result)
    }

    /// Drops every slot before `before` from every series (one logged op).
    pub fn drop_before(&self, before: i64) -> Result<(), EngineError> {
        self.apply(&Op::DropBefore { before }).map(|_| ())
    }

    /// Drops every slot before `before` from each of `series` only (one
    /// logged op); the other series keep theirs.
    pub fn drop_series_before(&self, series: &[SeriesId], before: i64) -> Result<(), EngineError> {
        self.apply(&Op::DropSeriesBefore { series, before })
            .map(|_| ())
    }

    /// Sets the limit on bytes of chunk data (None: no limit) and enforces it.
    pub fn set_memory_limit(&self, limit: Option<usize>) -> Result<(), EngineError> {
        if limit == Some(0) {
            return Err(EngineError::argument(
                "memory_limit",
                "must be positive or None",
            ));
        }
        self.memory_limit
            .store(limit.unwrap_or(0), Ordering::Relaxed);
        self.enforce_memory_limit()
    }

    /// Over the limit, drops the oldest chunks (across all series, by the
    /// time their data ends) until the data is at most 90% of the limit: one
    /// `DropBefore` op at the end time of the last chunk to go.
    fn enforce_memory_limit(&self) -> Result<(), EngineError> {
        let limit = self.memory_limit.load(Ordering::Relaxed);
        if limit == 0 {
            return Ok(());
        }
        let in_use = self.pool.usage().data_bytes();
        if in_use <= limit {
            return Ok(());
        }
        let target = limit / 10 * 9;
        // (end time, bytes) of every chunk: raw ones hold CHUNK_BYTES,
        // sealed ones what they compressed to.
        let mut ends: Vec<(i128, usize)> = Vec::new();
        for entry in self.settled_catalog().entries() {
            let span = i128::from(entry.frequency) * CHUNK_SLOTS as i128;
            let data = entry.data.read();
            ends.extend(data.chunk_sizes().map(|(slot, bytes)| {
                (i128::from(slot) * i128::from(entry.frequency) + span, bytes)
            }));
        }
        ends.sort_unstable();
        let excess = in_use - target;
        let mut freed = 0;
        let Some(&(cut, _)) = ends.iter().find(|&&(_, bytes)| {
            freed += bytes;
            freed >= excess
        }) else {
            return Ok(());
        };
        let before = cut.clamp(i128::from(i64::MIN) + 1, i128::from(i64::MAX)) as i64;
        self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        self.apply_logged(&Op::DropBefore { before }).map(|_| ())
    }

    /// Applies an op read back from the log during recovery.
    pub(crate) fn replay(&self, kind: u8, payload: &[u8]) -> Result<(), String> {
        let owned = decode(kind, payload)?;
        owned.with_op(|op| {
            let plan = self
                .plan(op)
                .map_err(|e| format!("the logged op is invalid: {e}"))?;
            match (&owned, &plan) {
                (OwnedOp::CreateSeries { id, .. }, Plan::Create(new)) if new == id => {}
                (OwnedOp::CreateSeries { id, .. }, other) => {
                    return Err(format!(
                        "the log created series {id} here, but replay gives {other:?}"
                    ));
                }
                // Every logged key is new, once, and gets the logged handle.
                (OwnedOp::CreateSeriesMany { first, keys }, Plan::CreateMany { ids, new })
                    if new.len() == keys.len() && ids.first().is_none_or(|id| id == first) => {}
                (OwnedOp::CreateSeriesMany { first, keys }, _) => {
                    return Err(format!(
                        "the log created {} new series from handle {first} here, but replay \
                         finds some of them existing, repeated or at another handle",
                        keys.len()
                    ));
                }
                _ => {}
            }
            self.execute(op, &plan);
            Ok(())
        })
    }

    /// Checks an op completely without changing anything.
    fn plan(&self, op: &Op<'_>) -> Result<Plan, EngineError> {
        let catalog = self.catalog.read();
        Ok(match op {
            Op::DefineMetric(def) => {
                validate_metric_name(&def.name)?;
                if def.frequency < 1 {
                    return Err(EngineError::argument(
                        "frequency",
                        format!("must be a positive number of ticks, got {}", def.frequency),
                    ));
                }
                if let Some(unit) = &def.unit {
                    validate_unit(unit)?;
                }
                if catalog.check_definition(def)? {
                    Plan::Nothing
                } else {
                    Plan::Define
                }
            }
            Op::CreateSeries { metric, path } => {
                let metric_id = catalog.metric_id(metric)?;
                check_series_path(path)?;
                match catalog.find_series(metric_id, path) {
                    Some(id) => Plan::Existing(id),
                    None => Plan::Create(catalog.series_count() as SeriesId),
                }
            }
            Op::CreateSeriesMany { keys } => {
                let next = catalog.series_count() as SeriesId;
                let mut ids = Vec::with_capacity(keys.len());
                let mut new = Vec::new();
                let mut created: HashMap<(MetricId, &[&str]), SeriesId, BuildKeyHasher> =
                    HashMap::with_capacity_and_hasher(keys.len(), BuildKeyHasher::default());
                let mut last: Option<(&str, MetricId)> = None;
                for (i, key) in keys.iter().enumerate() {
                    let metric = match last {
                        Some((name, id)) if name == key.metric => id,
                        _ => catalog.metric_id(key.metric).map_err(|e| at_index(e, i))?,
                    };
                    last = Some((key.metric, metric));
                    check_series_path(key.path).map_err(|e| at_index(e, i))?;
                    let id = match catalog.find_series(metric, key.path) {
                        Some(id) => id,
                        None => *created.entry((metric, key.path)).or_insert_with(|| {
                            new.push(i);
                            next + (new.len() - 1) as SeriesId
                        }),
                    };
                    ids.push(id);
                }
                Plan::CreateMany { ids, new }
            }
            Op::WriteBlock {
                series,
                start,
                values,
            } => {
                let entry = catalog.entry(*series).ok_or_else(|| {
                    EngineError::argument(
                        "series",
                        format!(
                            "{series} is not a series handle of this store ({} series)",
                            catalog.series_count()
                        ),
                    )
                })?;
                let first = nearest_slot(*start, entry.frequency, "start")?;
                check_slot_run(first, values.len(), entry.frequency, "values")?;
                Plan::Block(first)
            }
            Op::WriteTick {
                timestamp,
                series,
                values,
            } => {
                check_lengths("values", values.len(), "series", series.len())?;
                Plan::Slots(self.tick_slots(&catalog, *timestamp, series)?)
            }
            Op::DropBefore { before } => {
                if *before == i64::MIN {
                    return Err(EngineError::argument(
                        "before",
                        "timestamp is i64::MIN, the NaT marker",
                    ));
                }
                Plan::Drop
            }
            Op::DropSeriesBefore { series, before } => {
                if *before == i64::MIN {
                    return Err(EngineError::argument(
                        "before",
                        "timestamp is i64::MIN, the NaT marker",
                    ));
                }
                for (i, &id) in series.iter().enumerate() {
                    self.entry_at(&catalog, id, i)?;
                }
                Plan::Drop
            }
            Op::WritePoints {
                series,
                timestamps,
                values,
            } => {
                check_lengths("timestamps", timestamps.len(), "series", series.len())?;
                check_lengths("values", values.len(), "series", series.len())?;
                Plan::Slots(Slots::Each(
                    series
                        .iter()
                        .zip(timestamps.iter())
                        .enumerate()
                        .map(|(i, (&id, &ts))| {
                            let entry = self.entry_at(&catalog, id, i)?;
                            nearest_slot(ts, entry.frequency, "timestamps")
                                .map_err(|e| at_index(e, i))
                        })
                        .collect::<Result<Vec<i64>, EngineError>>()?,
                ))
            }
        })
    }

    /// Checks a tick's handles and finds each element's slot. If all its
    /// series share a frequency (the usual tick), they share one slot. When
    /// every metric has one frequency, a valid handle is all there is to
    /// check: the catalog entries are not read (the apply thread writes
    /// beside them; see applier.rs).
    fn tick_slots(
        &self,
        catalog: &Catalog,
        timestamp: i64,
        series: &[SeriesId],
    ) -> Result<Slots, EngineError> {
        let metrics = catalog.metrics();
        if let Some(first) = metrics.first()
            && metrics.iter().all(|m| m.frequency == first.frequency)
        {
            let count = catalog.series_count();
            if let Some(i) = series.iter().position(|&id| id as usize >= count) {
                self.entry_at(catalog, series[i], i)?;
            }
            if series.is_empty() {
                return Ok(Slots::Same(0));
            }
            return Ok(Slots::Same(nearest_slot(
                timestamp,
                first.frequency,
                "timestamp",
            )?));
        }
        let mut frequencies = series
            .iter()
            .enumerate()
            .map(|(i, &id)| self.entry_at(catalog, id, i).map(|e| e.frequency));
        let Some(first) = frequencies.next().transpose()? else {
            return Ok(Slots::Each(Vec::new()));
        };
        let mut uniform = true;
        for frequency in frequencies {
            uniform &= frequency? == first;
        }
        if uniform {
            return Ok(Slots::Same(nearest_slot(timestamp, first, "timestamp")?));
        }
        // Series of one frequency share the tick's slot: compute it once
        // per run of a frequency.
        let mut last: Option<(i64, i64)> = None;
        let mut slots = Vec::with_capacity(series.len());
        for entry in series.iter().map(|&id| &catalog.entries()[id as usize]) {
            let slot = match last {
                Some((f, slot)) if f == entry.frequency => slot,
                _ => nearest_slot(timestamp, entry.frequency, "timestamp")?,
            };
            last = Some((entry.frequency, slot));
            slots.push(slot);
        }
        Ok(Slots::Each(slots))
    }

    /// Changes memory as planned; cannot fail.
    fn execute(&self, op: &Op<'_>, plan: &Plan) -> Option<SeriesId> {
        match (op, plan) {
            (Op::DefineMetric(def), Plan::Define) => {
                self.catalog.write().define_metric(def.clone());
                None
            }
            (Op::CreateSeries { metric, path }, Plan::Create(_)) => {
                let mut catalog = self.catalog.write();
                let metric_id = catalog.metric_id(metric).expect("checked by plan");
                Some(catalog.create_series(metric_id, path))
            }
            (Op::CreateSeriesMany { keys }, Plan::CreateMany { new, .. }) => {
                // One hold of the catalog for all of them.
                let mut catalog = self.catalog.write();
                let mut last: Option<(&str, MetricId)> = None;
                for &i in new {
                    let key = keys[i];
                    let metric = match last {
                        Some((name, id)) if name == key.metric => id,
                        _ => catalog.metric_id(key.metric).expect("checked by plan"),
                    };
                    last = Some((key.metric, metric));
                    catalog.create_series(metric, key.path);
                }
                None
            }
            (Op::WriteTick { series, values, .. }, &Plan::Slots(Slots::Same(slot)))
                if Stage::stages(series.len()) =>
            {
                // The stage before the catalog: the lock order.
                let mut stage = self.stage.lock();
                let catalog = self.catalog.read();
                stage.stage(series, slot, values, self.series_memory(&catalog));
                self.count_write(values.len());
                None
            }
            (Op::WriteBlock { series, values, .. }, &Plan::Block(first)) => {
                self.settle();
                let catalog = self.catalog.read();
                self.data_of(&catalog, *series)
                    .write()
                    .write(&self.pool, first, values);
                self.count_write(values.len());
                None
            }
            (Op::WriteTick { series, values, .. }, Plan::Slots(slots))
            | (Op::WritePoints { series, values, .. }, Plan::Slots(slots)) => {
                self.settle();
                let catalog = self.catalog.read();
                write_each(
                    catalog.entries(),
                    series,
                    0..series.len(),
                    |i| slots.at(i),
                    |data, i| data.write_one(&self.pool, slots.at(i), values[i]),
                );
                self.count_write(values.len());
                None
            }
            (Op::DropBefore { before }, Plan::Drop) => {
                self.settle();
                let catalog = self.catalog.read();
                let mut freed = 0;
                for entry in catalog.entries() {
                    freed += self.drop_entry_before(entry, *before);
                }
                self.counters.drops.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .dropped_chunks
                    .fetch_add(freed as u64, Ordering::Relaxed);
                None
            }
            (Op::DropSeriesBefore { series, before }, Plan::Drop) => {
                self.settle();
                let catalog = self.catalog.read();
                let mut freed = 0;
                for &id in *series {
                    freed += self.drop_entry_before(&catalog.entries()[id as usize], *before);
                }
                self.counters.drops.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .dropped_chunks
                    .fetch_add(freed as u64, Ordering::Relaxed);
                None
            }
            (_, Plan::Nothing | Plan::Existing(_)) => None,
            (op, plan) => unreachable!("plan {plan:?} does not fit op {op:?}"),
        }
    }

    /// Drops the slots of one series before `before`; returns the chunks
    /// freed.
    fn drop_entry_before(
        &self,
        entry: &crate::engine::memory::catalog::SeriesEntry,
        before: i64,
    ) -> usize {
        let first_kept = first_slot_at_or_after(before, entry.frequency)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        entry.data.write().drop_before(&self.pool, first_kept)
    }

    /// Writes staged ticks into their series (`memory/stage.rs`). Whoever reads
    /// series data, or changes it by anything but a staged tick, calls this
    /// first, and never while holding the catalog.
    pub(super) fn settle(&self) {
        let mut stage = self.stage.lock();
        if !stage.is_empty() {
            let catalog = self.catalog.read();
            stage.write_out(self.series_memory(&catalog));
        }
    }

    fn series_memory<'a>(&'a self, catalog: &'a Catalog) -> SeriesMemory<'a> {
        SeriesMemory {
            entries: catalog.entries(),
            pool: &self.pool,
        }
    }

    /// The catalog, locked for reading series data: staged ticks are
    /// written out first.
    pub(super) fn settled_catalog(&self) -> parking_lot::RwLockReadGuard<'_, Catalog> {
        self.settle();
        self.catalog.read()
    }

    fn entry_at<'c>(
        &self,
        catalog: &'c Catalog,
        id: SeriesId,
        index: usize,
    ) -> Result<&'c crate::engine::memory::catalog::SeriesEntry, EngineError> {
        catalog.entry(id).ok_or_else(|| {
            EngineError::argument(
                "series",
                format!(
                    "element {index} is {id}, which is not a series handle of this store ({} series)",
                    catalog.series_count()
                ),
            )
        })
    }

    fn data_of<'c>(&self, catalog: &'c Catalog, id: SeriesId) -> &'c RwLock<SeriesData> {
        // Validated before any write is applied.
        &catalog.entries()[id as usize].data
    }

    fn count_write(&self, samples: usize) {
        self.counters.write_calls.fetch_add(1, Ordering::Relaxed);
        self.counters
            .samples_written
            .fetch_add(samples as u64, Ordering::Relaxed);
    }

    /// Defines a metric without a unit.
    pub fn define_metric(
        &self,
        name: &str,
        frequency: i64,
        aggregation: Aggregation,
    ) -> Result<(), EngineError> {
        self.define(MetricDef {
            name: name.to_owned(),
            frequency,
            aggregation,
            unit: None,
        })
    }

    /// Defines a metric; an identical definition is a no-op, any other
    /// definition of the name is a `MetricConflict`.
    pub fn define(&self, def: MetricDef) -> Result<(), EngineError> {
        self.apply(&Op::DefineMetric(def)).map(|_| ())
    }

    pub fn metrics(&self) -> Vec<MetricDef> {
        self.catalog.read().metrics().to_vec()
    }

    /// The frequency of metric `name`, if it is defined.
    pub fn frequency_of(&self, name: &str) -> Option<i64> {
        let catalog = self.catalog.read();
        let id = catalog.metric_id(name).ok()?;
        Some(catalog.metric(id).frequency)
    }

    /// The handle of (metric, path), creating the series if needed.
    pub fn series<S: AsRef<str>>(&self, metric: &str, path: &[S]) -> Result<SeriesId, EngineError> {
        if let Some(id) = self.find_series(metric, path)? {
            return Ok(id);
        }
        let op = Op::CreateSeries {
            metric: metric.to_owned(),
            path: path.iter().map(|s| s.as_ref().to_owned()).collect(),
        };
        Ok(self.apply(&op)?.expect("CreateSeries yields a handle"))
    }

    /// The handles of many (metric, path) keys, in order, creating the
    /// missing series: every key is checked before any series is created
    /// (a bad one creates none), the missing ones are created together as
    /// one op (one log record, one hold of the catalog), and the call waits
    /// once for what the sync mode promises. A collector's first tick over
    /// thousands of new keys costs one record and one sync.
    pub fn series_many(&self, keys: &SeriesKeys) -> Result<Vec<SeriesId>, EngineError> {
        let names = keys.names();
        self.create_many(&keys.keys(&names))
    }

    fn create_many(&self, keys: &[SeriesName<'_>]) -> Result<Vec<SeriesId>, EngineError> {
        let mut ids = Vec::with_capacity(keys.len());
        {
            // Without the sequencer, up to the first key with no series: a
            // call over existing series (every call after a collector's
            // first) holds up no writer.
            let catalog = self.catalog.read();
            for (i, key) in keys.iter().enumerate() {
                let metric = catalog.metric_id(key.metric).map_err(|e| at_index(e, i))?;
                match catalog.find_series(metric, key.path) {
                    Some(id) => ids.push(id),
                    None => break,
                }
            }
        }
        if ids.len() == keys.len() {
            return Ok(ids);
        }
        // Then the whole call is planned (checked) under the sequencer, so
        // that no other writer creates any of its series meanwhile.
        let op = Op::CreateSeriesMany { keys };
        let (ids, lsn) = {
            let _order = self.lock_sequencer();
            self.check_writable()?;
            let plan = self.plan(&op)?;
            let Plan::CreateMany { ids, new } = &plan else {
                unreachable!("a CreateSeriesMany plan is {plan:?}")
            };
            let ids = ids.clone();
            let Some(&first) = new.first() else {
                return Ok(ids);
            };
            let lsn = match &self.journal {
                // The log holds only the distinct new keys.
                Some(journal) => {
                    let created: Vec<SeriesName<'_>> = new.iter().map(|&k| keys[k]).collect();
                    let op = Op::CreateSeriesMany { keys: &created };
                    Some(journal.record(&op, Some(ids[first]))?)
                }
                None => None,
            };
            self.execute(&op, &plan);
            (ids, lsn)
        };
        if let (Some(journal), Some(lsn)) = (&self.journal, lsn) {
            journal.acknowledge(lsn)?;
        }
        Ok(ids)
    }

    /// The handle of (metric, path) if that series exists.
    pub fn find_series<S: AsRef<str>>(
        &self,
        metric: &str,
        path: &[S],
    ) -> Result<Option<SeriesId>, EngineError> {
        let catalog = self.catalog.read();
        let metric_id = catalog.metric_id(metric)?;
        Ok(catalog.find_series(metric_id, path))
    }

    /// The (metric, path) of a handle.
    pub fn series_key(&self, id: SeriesId) -> Result<(String, Vec<String>), EngineError> {
        let catalog = self.catalog.read();
        let entry = catalog.entry(id).ok_or_else(|| {
            EngineError::argument(
                "series",
                format!("{id} is not a series handle of this store"),
            )
        })?;
        Ok((
            catalog.metric(entry.metric).name.clone(),
            catalog.path_of(id),
        ))
    }

    /// How many series the store holds (without touching their data).
    pub fn series_count(&self) -> usize {
        self.catalog.read().series_count()
    }

    /// How many series each metric has, in definition order, and the
    /// paths two levels below the root ("cluster/host") in name order.
    pub fn outline(&self) -> (Vec<usize>, Vec<String>) {
        let catalog = self.catalog.read();
        (catalog.series_per_metric(), catalog.hosts())
    }

    /// Every series as (handle, metric, path), in handle order.
    pub fn list_series(&self) -> Vec<(SeriesId, String, Vec<String>)> {
        let catalog = self.catalog.read();
        (0..catalog.series_count() as SeriesId)
            .map(|id| {
                let metric = catalog
                    .metric(catalog.entries()[id as usize].metric)
                    .name
                    .clone();
                (id, metric, catalog.path_of(id))
            })
            .collect()
    }

    pub fn write_block(
        &self,
        series: SeriesId,
        start: i64,
        values: &[f32],
    ) -> Result<(), EngineError> {
        self.apply(&Op::WriteBlock {
            series,
            start,
            values,
        })
        .map(|_| ())
    }

    pub fn write_tick(
        &self,
        timestamp: i64,
        series: &[SeriesId],
        values: &[f32],
    ) -> Result<(), EngineError> {
        self.apply(&Op::WriteTick {
            timestamp,
            series,
            values,
        })
        .map(|_| ())
    }

    pub fn write_points(
        &self,
        series: &[SeriesId],
        timestamps: &[i64],
        values: &[f32],
    ) -> Result<(), EngineError> {
        self.apply(&Op::WritePoints {
            series,
            timestamps,
            values,
        })
        .map(|_| ())
    }

    pub(crate) fn count_read(&self, samples: usize) {
        self.counters.read_calls.fetch_add(1, Ordering::Relaxed);
        self.counters
            .samples_read
            .fetch_add(samples as u64, Ordering::Relaxed);
    }

    /// Writes a snapshot of the store and deletes what it makes unneeded.
    pub fn checkpoint(&self) -> Result<CheckpointInfo, EngineError> {
        match &self.journal {
            Some(journal) => journal.checkpoint(self),
            None if self.readonly => Err(EngineError::ReadOnly),
            None => Err(EngineError::argument(
                "store",
                "an in-memory store has nothing to checkpoint; use metricstore.open(path)",
            )),
        }
    }

    /// Starts background checkpoints for a store shared through `Arc`:
    /// after `every` since the last checkpoint, or once the log has grown
    /// by `log_bytes`. The thread holds only a weak reference and stops when
    /// the store closes or is dropped.
    pub fn start_checkpoints(self: &Arc<Store>, every: Option<Duration>, log_bytes: Option<u64>) {
        if let Some(journal) = &self.journal
            && (every.is_some() || log_bytes.is_some())
        {
            Arc::clone(journal).start_checkpoints(Arc::downgrade(self), every, log_bytes);
        }
    }

    /// Returns once every write acknowledged before the call is durable.
    pub fn flush(&self) -> Result<(), EngineError> {
        match &self.journal {
            Some(journal) => journal.flush(),
            None => Ok(()),
        }
    }

    /// Writes a final snapshot if anything was logged since the last one
    /// (when `checkpoint`), then closes; a failed snapshot is returned after
    /// closing all the same.
    pub fn close_with(&self, checkpoint: bool) -> Result<(), EngineError> {
        match &self.journal {
            Some(journal) => journal.close(self, checkpoint),
            None => Ok(()),
        }
    }

    /// Finishes the log (waiting for writes in flight), syncs it and
    /// releases the directory. Later writes raise `Closed`. Idempotent.
    pub fn close(&self) -> Result<(), EngineError> {
        self.close_with(false)
    }

    pub fn stats(&self) -> StoreStats {
        let catalog = self.settled_catalog();
        let mut stats = StoreStats {
            metrics: catalog.metrics().len(),
            series: catalog.series_count(),
            nodes: catalog.node_count() - 1,
            write_calls: self.counters.write_calls.load(Ordering::Relaxed),
            samples_written: self.counters.samples_written.load(Ordering::Relaxed),
            read_calls: self.counters.read_calls.load(Ordering::Relaxed),
            samples_read: self.counters.samples_read.load(Ordering::Relaxed),
            drops: self.counters.drops.load(Ordering::Relaxed),
            dropped_chunks: self.counters.dropped_chunks.load(Ordering::Relaxed),
            evictions: self.counters.evictions.load(Ordering::Relaxed),
            memory_limit: match self.memory_limit.load(Ordering::Relaxed) {
                0 => None,
                limit => Some(limit),
            },
            ..StoreStats::default()
        };
        for entry in catalog.entries() {
            let data = entry.data.read();
            let tiers = data.tiers();
            stats.raw_chunks += tiers.raw_chunks;
            stats.sealed_chunks += tiers.sealed_chunks;
            stats.sealed_bytes += tiers.sealed_bytes;
            stats.mapped_chunks += tiers.mapped_chunks;
            stats.mapped_bytes += tiers.mapped_bytes;
            stats.samples += data.valid();
        }
        stats.chunks = stats.raw_chunks + stats.sealed_chunks + stats.mapped_chunks;
        if let Some(journal) = &self.journal {
            (stats.failed_checkpoints, stats.last_checkpoint_error) = journal.checkpoint_failures();
            stats.sync = Some(journal.sync_name());
        }
        let usage = self.pool.usage();
        stats.data_bytes = usage.data_bytes();
        stats.reserved_bytes = usage.reserved;
        stats
    }
}

/// When seal passes run (`Store::seal`).
struct Sealing {
    /// Bytes of raw chunks that may be added before a background pass.
    every: AtomicUsize,
    /// Bytes of raw chunks when the last pass ended.
    raw_after: AtomicUsize,
    /// A background pass is running.
    running: AtomicBool,
}

/// Raw chunks added between background seal passes: 64 MiB, 16,384 chunks.
const SEAL_EVERY_BYTES: usize = 64 << 20;

impl Default for Sealing {
    fn default() -> Self {
        Sealing {
            every: AtomicUsize::new(SEAL_EVERY_BYTES),
            raw_after: AtomicUsize::new(0),
            running: AtomicBool::new(false),
        }
    }
}

/// Seals every series' chunks that are no longer being written, paced as
/// `urgency` says; the raw chunks they leave are released in batches,
/// outside the series' locks.
fn seal_all(series: &[Arc<RwLock<SeriesData>>], pool: &Arc<ChunkPool>, urgency: Urgency) -> usize {
    /// Raw chunks (4 KiB each) held for one release.
    const RELEASE_BATCH: usize = 256;
    let mut freed = Vec::with_capacity(RELEASE_BATCH);
    let mut sealed = 0;
    let mut pacer = urgency.pacer();
    for data in series {
        sealed += data.write().seal(pool, &mut freed);
        if freed.len() >= RELEASE_BATCH {
            release_all(&mut freed);
        }
        pacer.pace();
    }
    release_all(&mut freed);
    sealed
}

/// A series' path: valid names, and at least one of them.
fn check_series_path<S: AsRef<str>>(path: &[S]) -> Result<(), EngineError> {
    validate_path(path, "path")?;
    if path.is_empty() {
        return Err(EngineError::argument(
            "path",
            "a series needs a path of at least one name",
        ));
    }
    Ok(())
}

fn at_index(error: EngineError, index: usize) -> EngineError {
    match error {
        EngineError::InvalidArgument { argument, message } => EngineError::InvalidArgument {
            argument,
            message: format!("element {index}: {message}"),
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
