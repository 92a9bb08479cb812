//! The store: applies ops in one total order and answers range reads.
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
//! (`stage.rs`); whoever reads series data, or changes it by another op,
//! first writes staged ticks out (`Store::settle`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::aggregate::combine;
pub use super::catalog::SeriesId;
use super::catalog::{Catalog, MetricId, write_each};
use super::chunks::{CHUNK_BYTES, CHUNK_SLOTS, ChunkPool};
use super::durable::Durable;
use super::error::EngineError;
use super::metric::{Aggregation, MetricDef};
use super::names::{display_path, validate_metric_name, validate_path};
use super::ops::{Op, OwnedOp, decode, encode};
use super::series::SeriesData;
use super::stage::{SeriesMemory, Stage};
use super::time::{TimeUnit, check_slot_run, first_slot_at_or_after, nearest_slot, read_slots};

/// A read of one series or one aggregated path: `values[i]` is the slot at
/// time `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeData {
    pub start: i64,
    pub step: i64,
    pub values: Vec<f32>,
}

/// A read of several rows on one time axis, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub start: i64,
    pub step: i64,
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

/// What one row of a read refers to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A series by handle.
    Series(SeriesId),
    /// A metric at a path: the series there, or the aggregate below it.
    Path { metric: &'a str, path: &'a [String] },
}

/// Counters and sizes, for `stats()` and `repr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub metrics: usize,
    pub series: usize,
    pub nodes: usize,
    pub chunks: usize,
    /// Bytes of the chunks holding series data.
    pub data_bytes: usize,
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

pub struct Store {
    unit: TimeUnit,
    /// Bytes of chunk data above which the oldest data is dropped; 0 = none.
    memory_limit: std::sync::atomic::AtomicUsize,
    /// Ticks of data kept before the wall clock; 0 = all.
    retention: std::sync::atomic::AtomicI64,
    last_retention_cut: Mutex<Option<std::time::Instant>>,
    /// The log and everything about the store directory; `None` for a
    /// purely in-memory store.
    pub(crate) durable: Option<Durable>,
    readonly: bool,
    pub(super) pool: Arc<ChunkPool>,
    sequencer: Mutex<()>,
    /// Ticks applied but not yet written into their series (`stage.rs`).
    stage: Mutex<Stage>,
    pub(super) catalog: RwLock<Catalog>,
    counters: Counters,
    /// Line-protocol series keys already resolved (see `lineproto`).
    pub(super) ingest_cache: Mutex<super::lineproto::IngestCache>,
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

/// A resolved read target: where its values come from.
pub(super) struct Source {
    pub(super) frequency: i64,
    pub(super) aggregation: Aggregation,
    pub(super) series: Vec<Arc<RwLock<SeriesData>>>,
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
            durable: None,
            readonly: false,
            pool: Arc::default(),
            sequencer: Mutex::new(()),
            stage: Mutex::default(),
            catalog: RwLock::new(Catalog::new()),
            counters: Counters::default(),
            ingest_cache: Mutex::default(),
        }
    }

    pub fn unit(&self) -> TimeUnit {
        self.unit
    }

    fn check_writable(&self) -> Result<(), EngineError> {
        if self.readonly {
            return Err(EngineError::ReadOnly);
        }
        match &self.durable {
            Some(durable) => durable.check_writable(),
            None => Ok(()),
        }
    }

    pub(crate) fn set_readonly(&mut self) {
        self.readonly = true;
    }

    /// Holding this, no op is being applied, and every logged op is in
    /// memory.
    pub(crate) fn lock_sequencer(&self) -> parking_lot::MutexGuard<'_, ()> {
        let order = self.sequencer.lock();
        // (A forked child has no apply thread to wait for, and never
        // queued anything itself.)
        if let Some(durable) = &self.durable
            && let Some(applier) = &durable.applier
            && durable.owner_pid == std::process::id()
        {
            applier.drain();
        }
        order
    }

    /// Applies one op: checks all of it, logs it (if the store has a log),
    /// then changes memory; then, for writes, keeps the memory limit.
    /// Returns the handle for `CreateSeries`.
    pub fn apply(&self, op: &Op<'_>) -> Result<Option<SeriesId>, EngineError> {
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
        }
        Ok(result)
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
            lsn = match &self.durable {
                Some(durable) => {
                    let created = match plan {
                        Plan::Create(id) => Some(id),
                        _ => None,
                    };
                    Some(durable.wal.append(|buf| encode(op, created, buf))?)
                }
                None => None,
            };
            let applier = self.durable.as_ref().and_then(|d| d.applier.as_ref());
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
        if let (Some(durable), Some(lsn)) = (&self.durable, lsn) {
            durable.after_append(lsn)?;
        }
        Ok(result)
    }

    /// Drops every slot before `before` from every series (one logged op).
    pub fn drop_before(&self, before: i64) -> Result<(), EngineError> {
        self.apply(&Op::DropBefore { before }).map(|_| ())
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
        let in_use = self.pool.usage().in_use;
        if in_use <= limit {
            return Ok(());
        }
        let target = limit / 10 * 9;
        let mut ends: Vec<i128> = Vec::new();
        for entry in self.settled_catalog().entries() {
            let span = i128::from(entry.frequency) * CHUNK_SLOTS as i128;
            let data = entry.data.read();
            ends.extend(
                data.chunk_starts()
                    .map(|slot| i128::from(slot) * i128::from(entry.frequency) + span),
            );
        }
        ends.sort_unstable();
        let excess = (in_use - target).div_ceil(CHUNK_BYTES);
        let Some(&cut) = ends.get(excess.saturating_sub(1)) else {
            return Ok(());
        };
        let before = cut.clamp(i128::from(i64::MIN) + 1, i128::from(i64::MAX)) as i64;
        self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        self.apply_logged(&Op::DropBefore { before }).map(|_| ())
    }

    /// Applies an op read back from the log during recovery.
    pub(crate) fn replay(&self, kind: u8, payload: &[u8]) -> Result<(), String> {
        let owned = decode(kind, payload)?;
        let op = owned.as_op();
        let plan = self
            .plan(&op)
            .map_err(|e| format!("the logged op is invalid: {e}"))?;
        if let OwnedOp::CreateSeries { id, .. } = owned {
            match plan {
                Plan::Create(new) if new == id => {}
                other => {
                    return Err(format!(
                        "the log created series {id} here, but replay gives {other:?}"
                    ));
                }
            }
        }
        self.execute(&op, &plan);
        Ok(())
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
                if catalog.check_definition(def)? {
                    Plan::Nothing
                } else {
                    Plan::Define
                }
            }
            Op::CreateSeries { metric, path } => {
                let metric_id = catalog.metric_id(metric)?;
                validate_path(path, "path")?;
                if path.is_empty() {
                    return Err(EngineError::argument(
                        "path",
                        "a series needs a path of at least one name",
                    ));
                }
                match catalog.find_series(metric_id, path) {
                    Some(id) => Plan::Existing(id),
                    None => Plan::Create(catalog.series_count() as SeriesId),
                }
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
                    let first_kept = first_slot_at_or_after(*before, entry.frequency)
                        .clamp(i128::from(i64::MIN), i128::from(i64::MAX))
                        as i64;
                    freed += entry.data.write().drop_before(first_kept);
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

    /// Writes staged ticks into their series (`stage.rs`). Whoever reads
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
    ) -> Result<&'c super::catalog::SeriesEntry, EngineError> {
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

    pub fn define_metric(
        &self,
        name: &str,
        frequency: i64,
        aggregation: Aggregation,
    ) -> Result<(), EngineError> {
        self.apply(&Op::DefineMetric(MetricDef {
            name: name.to_owned(),
            frequency,
            aggregation,
        }))
        .map(|_| ())
    }

    pub fn metrics(&self) -> Vec<MetricDef> {
        self.catalog.read().metrics().to_vec()
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

    pub(super) fn resolve(
        &self,
        catalog: &Catalog,
        target: Target<'_>,
    ) -> Result<Source, EngineError> {
        match target {
            Target::Series(id) => {
                let entry = catalog.entry(id).ok_or_else(|| {
                    EngineError::argument(
                        "series",
                        format!("{id} is not a series handle of this store"),
                    )
                })?;
                Ok(Source {
                    frequency: entry.frequency,
                    aggregation: catalog.aggregation(entry.metric),
                    series: vec![entry.data.clone()],
                })
            }
            Target::Path { metric, path } => {
                validate_path(path, "path")?;
                let metric_id: MetricId = catalog.metric_id(metric)?;
                let ids = catalog.sources(metric_id, path)?;
                let aggregation = catalog.aggregation(metric_id);
                if ids.len() > 1 && aggregation == Aggregation::None {
                    return Err(EngineError::NoAggregation {
                        metric: metric.to_owned(),
                        path: display_path(path),
                        count: ids.len(),
                    });
                }
                Ok(Source {
                    frequency: catalog.metric(metric_id).frequency,
                    aggregation,
                    series: ids
                        .iter()
                        .map(|&id| catalog.entries()[id as usize].data.clone())
                        .collect(),
                })
            }
        }
    }

    pub(super) fn fill(source: &Source, first: i64, out: &mut [f32]) {
        match source.series.as_slice() {
            [one] => one.read().read_into(first, out),
            many => combine(many, first, source.aggregation, out),
        }
    }

    pub(super) fn count_read(&self, samples: usize) {
        self.counters.read_calls.fetch_add(1, Ordering::Relaxed);
        self.counters
            .samples_read
            .fetch_add(samples as u64, Ordering::Relaxed);
    }

    /// Reads `[start, stop)` of one target, NaN-padded to the whole range.
    pub fn read(
        &self,
        target: Target<'_>,
        start: i64,
        stop: i64,
    ) -> Result<RangeData, EngineError> {
        let source = self.resolve(&self.settled_catalog(), target)?;
        let (first, len) = read_slots(start, stop, source.frequency)?;
        let mut values = vec![f32::NAN; len];
        Self::fill(&source, first, &mut values);
        self.count_read(len);
        Ok(RangeData {
            start: first * source.frequency,
            step: source.frequency,
            values,
        })
    }

    /// Reads `[start, stop)` of several targets of one frequency into rows
    /// of a matrix, in the order given.
    pub fn read_many(
        &self,
        targets: &[Target<'_>],
        start: i64,
        stop: i64,
    ) -> Result<Matrix, EngineError> {
        if targets.is_empty() {
            return Err(EngineError::argument(
                "series",
                "is empty; name at least one series",
            ));
        }
        let sources = {
            let catalog = self.settled_catalog();
            targets
                .iter()
                .map(|&t| self.resolve(&catalog, t))
                .collect::<Result<Vec<Source>, EngineError>>()?
        };
        let frequency = sources[0].frequency;
        if let Some(i) = sources.iter().position(|s| s.frequency != frequency) {
            return Err(EngineError::argument(
                "series",
                format!(
                    "element {i} has frequency {} but element 0 has {frequency}; \
                     rows of one read share one time axis, so read them separately",
                    sources[i].frequency
                ),
            ));
        }
        let (first, cols) = read_slots(start, stop, frequency)?;
        let cells = cols
            .checked_mul(sources.len())
            .filter(|&n| n as i64 <= super::time::MAX_READ_SLOTS);
        let Some(cells) = cells else {
            return Err(EngineError::argument(
                "stop",
                format!(
                    "{} rows of {cols} slots exceed the limit of {} values per read",
                    sources.len(),
                    super::time::MAX_READ_SLOTS
                ),
            ));
        };
        let mut values = vec![f32::NAN; cells];
        if cols > 0 {
            for (source, row) in sources.iter().zip(values.chunks_mut(cols)) {
                Self::fill(source, first, row);
            }
        }
        self.count_read(cells);
        Ok(Matrix {
            start: first * frequency,
            step: frequency,
            rows: sources.len(),
            cols,
            values,
        })
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
            stats.chunks += data.chunk_count();
            stats.samples += data.valid();
        }
        if let Some(durable) = &self.durable {
            stats.failed_checkpoints = durable.failed_checkpoints.load(Ordering::Relaxed);
            stats.last_checkpoint_error = durable.last_checkpoint_error.lock().clone();
        }
        let usage = self.pool.usage();
        stats.data_bytes = usage.in_use;
        stats.reserved_bytes = usage.reserved;
        stats
    }
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
