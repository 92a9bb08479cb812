//! `metricstore._core.Store`: the engine store as a frozen pyclass.
//!
//! Every method that touches series data runs inside `py.detach`, and locks
//! are only taken there, so a thread waiting for a lock never holds the GIL.
//! Results go to NumPy by adopting the `Vec` the engine filled: one copy out
//! of the chunks, none at the boundary.

use std::sync::Arc;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyReadonlyArray1};
use parking_lot::{Mutex, RwLock};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use super::progress::PyOpenProgress;
use crate::engine::{
    Aggregation, Damage, EngineError, Freshness, FsStorage, Ingester, Matrix, Method, MetricDef,
    OpenOptions, RecoveryMode, RecoveryReport, SeriesId, Store, SyncMode, Target, TimeUnit,
    is_pattern,
};

use super::keys::{self, Argument, PyTarget, SeriesList};
use super::result::{Coverage, PyReadResult};

#[pyclass(frozen, module = "metricstore._core", name = "Store")]
pub struct PyStore {
    /// `None` once closed; calls then raise ClosedError.
    inner: RwLock<Option<Arc<Store>>>,
    unit: TimeUnit,
    /// `unit` as the str every read result holds.
    unit_name: Py<PyString>,
    /// The directory of a store opened with `open`; `None` in memory.
    path: Option<String>,
    readonly: bool,
    recovery: Option<RecoveryReport>,
    /// Line-protocol keys `ingest` has resolved in this store.
    ingester: Ingester,
    /// A read-only store: the last LSN it holds (`refresh` goes on from it).
    followed: Mutex<u64>,
}

fn report_dict<'py>(py: Python<'py>, report: &RecoveryReport) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("snapshot", report.snapshot.clone())?;
    dict.set_item("snapshot_lsn", report.snapshot_lsn)?;
    dict.set_item("skipped_snapshots", report.skipped_snapshots.clone())?;
    dict.set_item("segments", report.segments)?;
    dict.set_item("records", report.records)?;
    dict.set_item("bytes", report.bytes)?;
    dict.set_item("last_lsn", report.last_lsn)?;
    dict.set_item("torn", damage_dict(py, &report.torn)?)?;
    dict.set_item("stopped", damage_dict(py, &report.stopped)?)?;
    dict.set_item("set_aside", report.set_aside.clone())?;
    dict.set_item("seconds", report.seconds)?;
    Ok(dict)
}

fn damage_dict<'py>(
    py: Python<'py>,
    damage: &Option<Damage>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(damage) = damage else {
        return Ok(None);
    };
    let dict = PyDict::new(py);
    dict.set_item("file", &damage.file)?;
    dict.set_item("offset", damage.offset)?;
    dict.set_item("bytes", damage.bytes)?;
    dict.set_item("reason", &damage.reason)?;
    Ok(Some(dict))
}

type IngestResult = (u64, u64, Vec<(u64, String)>, u64, u64);

fn slice<'a, T: numpy::Element>(
    array: &'a PyReadonlyArray1<'_, T>,
    argument: &str,
) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "{argument}: the array must be C-contiguous and aligned"
        ))
    })
}

impl PyStore {
    /// A 1-D read of `series` as a ReadResult; `times` are the samples'
    /// own times where they are not on the grid (LTTB).
    #[allow(clippy::too_many_arguments)]
    fn series_result(
        &self,
        py: Python<'_>,
        series: &Bound<'_, PyAny>,
        values: Vec<f32>,
        (start, step): (i64, i64),
        times: Option<Vec<i64>>,
        counts: Option<Vec<u32>>,
        (sources, frequency): (u32, i64),
        method: Option<Method>,
        min_count: u32,
        unit: Option<String>,
    ) -> PyResult<PyReadResult> {
        let sources = match sources {
            1 => None,
            n => Some(n.into_pyobject(py)?.into_any()),
        };
        let coverage = Coverage {
            counts: counts.map(|c| c.into_pyarray(py).into_any()),
            sources,
            method: method.map(Method::name),
            frequency,
            min_count,
        };
        Ok(PyReadResult::new(
            values.into_pyarray(py).into_any(),
            start,
            step,
            self.unit_name.bind(py),
            series.clone(),
            times.map(|t| t.into_pyarray(py).into_any()),
            unit,
        )
        .with_coverage(py, coverage))
    }

    /// A 2-D read as a ReadResult: one row per key, the engine's `Vec`s
    /// adopted by NumPy without a copy.
    fn matrix_result(
        &self,
        py: Python<'_>,
        (matrix, unit): (Matrix, Option<String>),
        keys: Bound<'_, PyList>,
        (frequency, method): (i64, Option<Method>),
        min_count: u32,
    ) -> PyReadResult {
        let shape = (matrix.rows, matrix.cols);
        let array = Array2::from_shape_vec(shape, matrix.values)
            .expect("the engine returns rows * cols values");
        let counts = matrix.counts.map(|counts| {
            Array2::from_shape_vec(shape, counts)
                .expect("the engine returns rows * cols counts")
                .into_pyarray(py)
                .into_any()
        });
        let coverage = Coverage {
            counts,
            sources: Some(matrix.sources.into_pyarray(py).into_any()),
            method: method.map(Method::name),
            frequency,
            min_count,
        };
        PyReadResult::new(
            array.into_pyarray(py).into_any(),
            matrix.start,
            matrix.step,
            self.unit_name.bind(py),
            keys.into_any(),
            None,
            unit,
        )
        .with_coverage(py, coverage)
    }

    /// The keys of a multi-series read with each key whose path holds a
    /// pattern replaced by one key per stored series of its metric that
    /// matches, in path order, read by handle.
    fn expand<'py>(
        &self,
        py: Python<'py>,
        keys: Bound<'py, PyList>,
        targets: Vec<PyTarget>,
    ) -> PyResult<(Bound<'py, PyList>, Vec<PyTarget>)> {
        let selects = |target: &PyTarget| match target {
            PyTarget::Path(_, path) => path.iter().any(|name| is_pattern(name)),
            PyTarget::Handle(_) => false,
        };
        if !targets.iter().any(selects) {
            return Ok((keys, targets));
        }
        let store = self.store()?;
        let expanded = PyList::empty(py);
        let mut rows = Vec::with_capacity(targets.len());
        for (key, target) in keys.iter().zip(targets) {
            if !selects(&target) {
                expanded.append(key)?;
                rows.push(target);
                continue;
            }
            let PyTarget::Path(metric, pattern) = target else {
                unreachable!("only paths select")
            };
            let mut found = py.detach(|| store.select_series(Some(&metric), Some(&pattern)))?;
            found.sort_by(|a, b| a.2.cmp(&b.2));
            for (id, metric, path) in found {
                expanded.append((metric, PyTuple::new(py, path)?))?;
                rows.push(PyTarget::Handle(id));
            }
        }
        Ok((expanded, rows))
    }

    pub(super) fn store(&self) -> Result<Arc<Store>, EngineError> {
        self.inner.read().clone().ok_or(EngineError::Closed)
    }

    /// The start and stop of a read as given, None where left open, in
    /// this order (errors name the first bad one).
    fn range(
        &self,
        py: Python<'_>,
        start: Option<&Bound<'_, PyAny>>,
        stop: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bounds> {
        let unit = self.unit_name.bind(py);
        let convert = |value: Option<&Bound<'_, PyAny>>, argument| {
            value.map(|v| keys::ticks(v, unit, argument)).transpose()
        };
        Ok((convert(start, "start")?, convert(stop, "stop")?))
    }
}

/// A read's start and stop, None where the caller left it open.
type Bounds = (Option<i64>, Option<i64>);

/// Closes the open ends of `bounds` with `extent`, where the samples of
/// what is read lie (asked only when an end is open): an open start is the
/// first sample, an open stop one period after the last; never past the
/// other end, so a range beyond the samples is empty. With no sample
/// anywhere, the range is empty at the end given (or at 0).
fn close_bounds(
    bounds: Bounds,
    extent: impl FnOnce() -> Result<Option<(i64, i64)>, EngineError>,
) -> Result<(i64, i64), EngineError> {
    if let (Some(start), Some(stop)) = bounds {
        return Ok((start, stop));
    }
    let (start, stop) = bounds;
    Ok(match extent()? {
        None => {
            let at = start.or(stop).unwrap_or(0);
            (at, stop.unwrap_or(at))
        }
        Some((first, end)) => {
            let start = start.unwrap_or_else(|| stop.map_or(first, |stop| first.min(stop)));
            (start, stop.unwrap_or_else(|| end.max(start)))
        }
    })
}

/// Where the samples of all `targets` lie together (None: no sample).
fn extent_of(store: &Store, targets: &[Target<'_>]) -> Result<Option<(i64, i64)>, EngineError> {
    let mut all: Option<(i64, i64)> = None;
    for &target in targets {
        if let Some((start, stop)) = store.extent(Some(target))? {
            all = Some(all.map_or((start, stop), |(lo, hi)| (lo.min(start), hi.max(stop))));
        }
    }
    Ok(all)
}

/// `error` of a single-series call, with a hint when it found no series at
/// a path holding a pattern: such calls take a path literally.
fn literal_path(error: EngineError, target: Target<'_>) -> PyErr {
    let pattern = matches!(target, Target::Path { path, .. } if path.iter().any(|n| is_pattern(n)));
    if pattern && matches!(error, EngineError::UnknownSeries { .. }) {
        return super::errors::with_note(
            error,
            "a path holding * ? or [ selects series only in read_many and list_series",
        );
    }
    error.into()
}

/// A read of no rows: nothing fixes a grid, so it has no columns either; it
/// starts where the range starts, with `step` (1, or the resolution).
fn no_rows((start, stop): (i64, i64), step: i64) -> Result<Matrix, EngineError> {
    if stop < start {
        return Err(EngineError::argument(
            "stop",
            format!("stop ({stop}) is before start ({start})"),
        ));
    }
    Ok(Matrix {
        start,
        step,
        rows: 0,
        cols: 0,
        frequency: step,
        values: Vec::new(),
        counts: Some(Vec::new()),
        sources: Vec::new(),
    })
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (unit = "s"))]
    fn new(py: Python<'_>, unit: &str) -> PyResult<Self> {
        let unit = TimeUnit::parse(unit)?;
        Ok(PyStore {
            inner: RwLock::new(Some(Arc::new(Store::new(unit)))),
            unit,
            unit_name: PyString::intern(py, unit.as_str()).unbind(),
            path: None,
            readonly: false,
            recovery: None,
            ingester: Ingester::default(),
            followed: Mutex::new(0),
        })
    }

    /// Opens or creates the store in directory `path` and recovers it.
    /// `checkpoint_*` None means no background checkpoints of that kind
    /// (`metricstore.open` passes its defaults). `progress` counts the bytes
    /// read and can cancel the open from another thread (it then raises
    /// OpenCancelledError).
    #[staticmethod]
    #[pyo3(signature = (path, unit = None, sync = "interval", sync_interval_ms = 200,
                        recovery = "tolerate_tail", readonly = false, segment_bytes = 67_108_864,
                        checkpoint_interval_s = None, checkpoint_log_bytes = None,
                        progress = None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        path: String,
        unit: Option<&str>,
        sync: &str,
        sync_interval_ms: u64,
        recovery: &str,
        readonly: bool,
        segment_bytes: u64,
        checkpoint_interval_s: Option<f64>,
        checkpoint_log_bytes: Option<u64>,
        progress: Option<Bound<'_, PyOpenProgress>>,
    ) -> PyResult<Self> {
        let sync = match sync {
            "always" => SyncMode::Always,
            "interval" if sync_interval_ms > 0 => {
                SyncMode::Interval(std::time::Duration::from_millis(sync_interval_ms))
            }
            "interval" => {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "sync_interval: must be positive",
                ));
            }
            "none" => SyncMode::None,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "sync: unknown sync mode {other:?}; use \"always\", \"interval\" or \"none\""
                )));
            }
        };
        if segment_bytes < 4096 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "segment_bytes: must be at least 4096",
            ));
        }
        let checkpoint_every = match checkpoint_interval_s {
            Some(seconds) if !(seconds.is_finite() && seconds > 0.0) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "checkpoint_interval_s: must be a positive number of seconds or None, got {seconds}"
                )));
            }
            other => other.map(std::time::Duration::from_secs_f64),
        };
        let options = OpenOptions {
            unit: unit.map(TimeUnit::parse).transpose()?,
            sync,
            recovery: RecoveryMode::parse(recovery)?,
            readonly,
            segment_bytes,
            checkpoint_every,
            checkpoint_log_bytes,
            progress: progress.map(|p| Arc::clone(&p.get().inner)),
        };
        let dir = std::path::PathBuf::from(&path);
        let (store, report) = py.detach(|| Store::open(&dir, &options))?;
        let store = Arc::new(store);
        if !readonly {
            store.start_checkpoints(options.checkpoint_every, options.checkpoint_log_bytes);
        }
        Ok(PyStore {
            unit: store.unit(),
            unit_name: PyString::intern(py, store.unit().as_str()).unbind(),
            inner: RwLock::new(Some(store)),
            path: Some(path),
            readonly,
            followed: Mutex::new(report.last_lsn),
            recovery: Some(report),
            ingester: Ingester::default(),
        })
    }

    /// The store directory, or None for an in-memory store.
    #[getter]
    fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// What opening found and did, or None for an in-memory store.
    #[getter]
    fn recovery<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.recovery
            .as_ref()
            .map(|report| report_dict(py, report))
            .transpose()
    }

    /// A read-only store: applies what the writer logged since it last
    /// looked, or, when the log no longer holds that (the writer wrote a
    /// snapshot and removed the segments), opens the directory again and
    /// goes on with the new store (reads already running finish on the
    /// old one). Returns what it replayed; `snapshot` is set only when it
    /// opened again.
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Some(path) = self.path.as_ref().filter(|_| self.readonly) else {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "refresh: only a store opened with readonly=True follows a writer",
            ));
        };
        let dir = std::path::PathBuf::from(path);
        let store = self.store()?;
        let report = py.detach(|| {
            // Taken without the GIL: a second refresh waits here, not holding it.
            let mut last = self.followed.lock();
            let report = match store.follow(&FsStorage, &dir, *last) {
                Ok(Some(report)) => report,
                // Not followable, or the log changed under the replay (a
                // checkpoint removed a segment): what a new open sees.
                Ok(None) | Err(_) => {
                    let options = OpenOptions {
                        unit: Some(self.unit),
                        readonly: true,
                        ..OpenOptions::default()
                    };
                    let (fresh, report) = Store::open(&dir, &options)?;
                    let mut inner = self.inner.write();
                    if inner.is_none() {
                        return Err(EngineError::Closed);
                    }
                    *inner = Some(Arc::new(fresh));
                    report
                }
            };
            *last = report.last_lsn;
            Ok::<_, EngineError>(report)
        })?;
        report_dict(py, &report)
    }

    /// Drops every slot before `before` from every series (one logged op).
    fn drop_before(&self, py: Python<'_>, before: i64) -> PyResult<()> {
        let store = self.store()?;
        py.detach(|| store.drop_before(before))?;
        Ok(())
    }

    /// Drops every slot before `before` from each of `series` (one logged
    /// op); the other series keep theirs.
    fn drop_series_before(
        &self,
        py: Python<'_>,
        series: PyReadonlyArray1<'_, u32>,
        before: i64,
    ) -> PyResult<()> {
        let series = slice(&series, "series")?;
        let store = self.store()?;
        py.detach(|| store.drop_series_before(series, before))?;
        Ok(())
    }

    /// Limits bytes of chunk data (None: no limit); over it, the oldest data
    /// is dropped.
    #[pyo3(signature = (limit))]
    fn set_memory_limit(&self, py: Python<'_>, limit: Option<usize>) -> PyResult<()> {
        let store = self.store()?;
        py.detach(|| store.set_memory_limit(limit))?;
        Ok(())
    }

    /// Keeps only data newer than `keep` ticks before the wall clock (None:
    /// everything).
    #[pyo3(signature = (keep))]
    fn set_retention(&self, py: Python<'_>, keep: Option<i64>) -> PyResult<()> {
        let store = self.store()?;
        py.detach(|| store.set_retention(keep))?;
        Ok(())
    }

    /// Seals (compresses) the chunks no longer being written; returns how
    /// many.
    fn seal(&self, py: Python<'_>) -> PyResult<usize> {
        let store = self.store()?;
        Ok(py.detach(|| store.seal()))
    }

    /// Bytes of raw chunks added before a background seal pass starts
    /// (None: no background passes).
    #[pyo3(signature = (nbytes))]
    fn set_seal_after(&self, nbytes: Option<usize>) -> PyResult<()> {
        if nbytes == Some(0) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "nbytes: must be positive or None",
            ));
        }
        self.store()?.set_seal_after(nbytes);
        Ok(())
    }

    /// Returns once every write acknowledged before the call is durable.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.store()?;
        py.detach(|| store.flush())?;
        Ok(())
    }

    /// The store's time unit: "s", "ms", "us" or "ns".
    #[getter]
    fn unit(&self) -> &'static str {
        self.unit.as_str()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.read().is_none()
    }

    /// Writes a final snapshot (unless `checkpoint` is false or nothing
    /// changed), syncs and releases a store directory and the data; later
    /// calls raise ClosedError. Idempotent.
    #[pyo3(signature = (checkpoint = true))]
    fn close(&self, py: Python<'_>, checkpoint: bool) -> PyResult<()> {
        let store = self.inner.write().take();
        py.detach(move || match store {
            Some(store) => store.close_with(checkpoint),
            None => Ok(()),
        })?;
        Ok(())
    }

    /// Writes a snapshot and deletes the log segments and snapshots it makes
    /// unneeded; returns what it did.
    fn checkpoint<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let store = self.store()?;
        let info = py.detach(|| store.checkpoint())?;
        let dict = PyDict::new(py);
        dict.set_item("lsn", info.lsn)?;
        dict.set_item("file", info.file)?;
        dict.set_item("bytes", info.bytes)?;
        dict.set_item("series", info.series)?;
        dict.set_item("removed_segments", info.removed_segments)?;
        dict.set_item("removed_snapshots", info.removed_snapshots)?;
        dict.set_item("writers_held_seconds", info.writers_held_seconds)?;
        dict.set_item("seconds", info.seconds)?;
        Ok(dict)
    }

    #[pyo3(signature = (name, frequency, aggregation, unit = None))]
    fn define_metric(
        &self,
        py: Python<'_>,
        name: &str,
        frequency: i64,
        aggregation: &str,
        unit: Option<String>,
    ) -> PyResult<()> {
        let aggregation = Aggregation::parse(aggregation)?;
        let store = self.store()?;
        let def = MetricDef {
            name: name.to_owned(),
            frequency,
            aggregation,
            unit,
        };
        py.detach(|| store.define(def))?;
        Ok(())
    }

    /// [(name, frequency, aggregation, unit)] in definition order.
    #[allow(clippy::type_complexity)]
    fn metrics(&self) -> PyResult<Vec<(String, i64, &'static str, Option<String>)>> {
        Ok(self
            .store()?
            .metrics()
            .into_iter()
            .map(|m| (m.name, m.frequency, m.aggregation.as_str(), m.unit))
            .collect())
    }

    fn series(&self, py: Python<'_>, metric: &str, path: Vec<String>) -> PyResult<SeriesId> {
        let store = self.store()?;
        Ok(py.detach(|| store.series(metric, &path))?)
    }

    /// The handles of a write's series (handles and keys), creating the
    /// missing series of its keys together: all keys are checked first, and
    /// the new series are one log record and one sync.
    fn series_many<'py>(
        &self,
        py: Python<'py>,
        series: &SeriesList,
    ) -> PyResult<Bound<'py, numpy::PyArray1<SeriesId>>> {
        let store = self.store()?;
        let mut handles = series.handles.clone();
        if !series.keys.is_empty() {
            let ids = py.detach(|| store.series_many(&series.keys))?;
            for (&at, id) in series.at.iter().zip(ids) {
                handles[at] = id;
            }
        }
        Ok(handles.into_pyarray(py))
    }

    fn find_series(&self, metric: &str, path: Vec<String>) -> PyResult<Option<SeriesId>> {
        Ok(self.store()?.find_series(metric, &path)?)
    }

    fn series_key(&self, series: &Bound<'_, PyAny>) -> PyResult<(String, Vec<String>)> {
        let series = keys::handle(series, Argument::named("series"))?;
        Ok(self.store()?.series_key(series)?)
    }

    fn series_count(&self) -> PyResult<usize> {
        Ok(self.store()?.series_count())
    }

    /// (handle, metric, path) of the series of `metric` whose paths match
    /// the pattern `path` (None: all), in handle order.
    #[pyo3(signature = (metric = None, path = None))]
    fn list_series(
        &self,
        py: Python<'_>,
        metric: Option<String>,
        path: Option<Vec<String>>,
    ) -> PyResult<Vec<(SeriesId, String, Vec<String>)>> {
        let store = self.store()?;
        Ok(py.detach(|| store.select_series(metric.as_deref(), path.as_deref()))?)
    }

    fn write_block(
        &self,
        py: Python<'_>,
        series: SeriesId,
        start: i64,
        values: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        let values = slice(&values, "values")?;
        let store = self.store()?;
        py.detach(|| store.write_block(series, start, values))?;
        Ok(())
    }

    fn write_tick(
        &self,
        py: Python<'_>,
        timestamp: i64,
        series: PyReadonlyArray1<'_, u32>,
        values: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        let series = slice(&series, "series")?;
        let values = slice(&values, "values")?;
        let store = self.store()?;
        py.detach(|| store.write_tick(timestamp, series, values))?;
        Ok(())
    }

    fn write_points(
        &self,
        py: Python<'_>,
        series: PyReadonlyArray1<'_, u32>,
        timestamps: PyReadonlyArray1<'_, i64>,
        values: PyReadonlyArray1<'_, f32>,
    ) -> PyResult<()> {
        let series = slice(&series, "series")?;
        let timestamps = slice(&timestamps, "timestamps")?;
        let values = slice(&values, "values")?;
        let store = self.store()?;
        py.detach(|| store.write_points(series, timestamps, values))?;
        Ok(())
    }

    /// `[start, stop)` of one series (a handle or (metric, path), which
    /// may be aggregated from the series below it); an open end is the
    /// extent of its samples; NaN where fewer than `min_count` series have
    /// a sample.
    #[pyo3(signature = (series, start = None, stop = None, min_count = None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        series: &Bound<'py, PyAny>,
        start: Option<&Bound<'py, PyAny>>,
        stop: Option<&Bound<'py, PyAny>>,
        min_count: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyReadResult> {
        let bounds = self.range(py, start, stop)?;
        let target = keys::target(series, Argument::named("series"))?;
        let target = target.as_target();
        let min_count = keys::min_count(min_count)?;
        let store = self.store()?;
        let (data, unit) = py
            .detach(|| {
                let (start, stop) = close_bounds(bounds, || store.extent(Some(target)))?;
                let data = store.read_with_min_count(target, start, stop, min_count)?;
                Ok((data, store.unit_of(&[target])))
            })
            .map_err(|e| literal_path(e, target))?;
        self.series_result(
            py,
            series,
            data.values,
            (data.start, data.step),
            None,
            data.counts,
            (data.sources, data.step),
            None,
            min_count,
            unit,
        )
    }

    /// `[start, stop)` of several series into a 2-D array, one row per key
    /// in the order given; an open end is the extent of their samples.
    #[pyo3(signature = (series, start = None, stop = None, min_count = None))]
    fn read_many<'py>(
        &self,
        py: Python<'py>,
        series: &Bound<'py, PyAny>,
        start: Option<&Bound<'py, PyAny>>,
        stop: Option<&Bound<'py, PyAny>>,
        min_count: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyReadResult> {
        let (keys, targets) = keys::targets(series)?;
        let bounds = self.range(py, start, stop)?;
        let min_count = keys::min_count(min_count)?;
        let (keys, targets) = self.expand(py, keys, targets)?;
        let store = self.store()?;
        let targets: Vec<Target<'_>> = targets.iter().map(PyTarget::as_target).collect();
        let matrix = py.detach(|| {
            let range = close_bounds(bounds, || extent_of(&store, &targets))?;
            if targets.is_empty() {
                return Ok((no_rows(range, 1)?, None));
            }
            let matrix = store.read_many(&targets, range.0, range.1, min_count)?;
            Ok::<_, EngineError>((matrix, store.unit_of(&targets)))
        })?;
        let frequency = matrix.0.frequency;
        Ok(self.matrix_result(py, matrix, keys, (frequency, None), min_count))
    }

    /// One series in buckets of `resolution`; for "lttb" the result holds
    /// the kept samples' times.
    #[pyo3(signature = (series, start, stop, resolution, method, min_count = None))]
    #[allow(clippy::too_many_arguments)]
    fn read_resampled<'py>(
        &self,
        py: Python<'py>,
        series: &Bound<'py, PyAny>,
        start: Option<&Bound<'py, PyAny>>,
        stop: Option<&Bound<'py, PyAny>>,
        resolution: &Bound<'py, PyAny>,
        method: &str,
        min_count: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyReadResult> {
        let bounds = self.range(py, start, stop)?;
        let target = keys::target(series, Argument::named("series"))?;
        let target = target.as_target();
        let resolution = keys::frequency(resolution, self.unit_name.bind(py), "resolution")?;
        let store = self.store()?;
        let method = Method::parse(method)?;
        let min_count = keys::min_count(min_count)?;
        let (data, unit) = py
            .detach(|| {
                let (start, stop) = close_bounds(bounds, || store.extent(Some(target)))?;
                let data =
                    store.read_resampled(target, start, stop, resolution, method, min_count)?;
                Ok((data, store.unit_of(&[target])))
            })
            .map_err(|e| literal_path(e, target))?;
        self.series_result(
            py,
            series,
            data.values,
            (data.start, data.step),
            data.times,
            Some(data.counts),
            (data.sources, data.frequency),
            Some(method),
            min_count,
            unit,
        )
    }

    /// Several series in buckets of `resolution`, one row per key.
    #[pyo3(signature = (series, start, stop, resolution, method, min_count = None))]
    #[allow(clippy::too_many_arguments)]
    fn read_many_resampled<'py>(
        &self,
        py: Python<'py>,
        series: &Bound<'py, PyAny>,
        start: Option<&Bound<'py, PyAny>>,
        stop: Option<&Bound<'py, PyAny>>,
        resolution: &Bound<'py, PyAny>,
        method: &str,
        min_count: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<PyReadResult> {
        let (keys, targets) = keys::targets(series)?;
        let bounds = self.range(py, start, stop)?;
        let resolution = keys::frequency(resolution, self.unit_name.bind(py), "resolution")?;
        let (keys, targets) = self.expand(py, keys, targets)?;
        let store = self.store()?;
        let method = Method::parse(method)?;
        let min_count = keys::min_count(min_count)?;
        let targets: Vec<Target<'_>> = targets.iter().map(PyTarget::as_target).collect();
        let matrix = py.detach(|| {
            let range = close_bounds(bounds, || extent_of(&store, &targets))?;
            if targets.is_empty() {
                return Ok((no_rows(range, resolution)?, None));
            }
            let matrix = store
                .read_many_resampled(&targets, range.0, range.1, resolution, method, min_count)?;
            Ok::<_, EngineError>((matrix, store.unit_of(&targets)))
        })?;
        let frequency = matrix.0.frequency;
        Ok(self.matrix_result(py, matrix, keys, (frequency, Some(method)), min_count))
    }

    /// (min, max, avg, count, unit) of the samples of `[start, stop)` (an
    /// open end: all of them on that side), of the slots where at least
    /// `min_count` series have a sample.
    #[pyo3(signature = (series, start = None, stop = None, min_count = None))]
    fn read_stats<'py>(
        &self,
        py: Python<'py>,
        series: &Bound<'py, PyAny>,
        start: Option<&Bound<'py, PyAny>>,
        stop: Option<&Bound<'py, PyAny>>,
        min_count: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(f32, f32, f64, u64, Option<String>)> {
        let target = keys::target(series, Argument::named("series"))?;
        let target = target.as_target();
        let bounds = self.range(py, start, stop)?;
        let min_count = keys::min_count(min_count)?;
        let store = self.store()?;
        let (s, unit) = py
            .detach(|| {
                let (start, stop) = close_bounds(bounds, || store.extent(Some(target)))?;
                let stats = store.read_stats(target, start, stop, min_count)?;
                Ok((stats, store.unit_of(&[target])))
            })
            .map_err(|e| literal_path(e, target))?;
        Ok((s.min, s.max, s.avg, s.count, unit))
    }

    /// "fresh", "stale" or "missing" for each metric at or below `path` at
    /// `now`, or None when nothing is stored at or below `path`.
    fn health(
        &self,
        py: Python<'_>,
        path: Vec<String>,
        metrics: Vec<String>,
        now: i64,
    ) -> PyResult<Option<Vec<&'static str>>> {
        let store = self.store()?;
        let names: Vec<&str> = metrics.iter().map(String::as_str).collect();
        let states = py.detach(|| store.health(&path, &names, now))?;
        Ok(states.map(|states| {
            states
                .into_iter()
                .map(|s| match s {
                    Freshness::Fresh => "fresh",
                    Freshness::Stale => "stale",
                    Freshness::Missing => "missing",
                })
                .collect()
        }))
    }

    /// (first sample time, one period after the last) of a series key, or
    /// of the whole store for None; None when there is no sample.
    #[pyo3(signature = (series = None))]
    fn extent(
        &self,
        py: Python<'_>,
        series: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<(i64, i64)>> {
        let target = series
            .map(|key| keys::target(key, Argument::named("series")))
            .transpose()?;
        let store = self.store()?;
        Ok(py.detach(|| store.extent(target.as_ref().map(PyTarget::as_target)))?)
    }

    /// Writes line protocol; returns (lines, accepted, rejected as
    /// [(line number, reason)], series created, lines skipped for an
    /// undefined metric when `skip_unknown`).
    #[pyo3(signature = (data, default_cluster, now, skip_unknown = false))]
    fn ingest(
        &self,
        py: Python<'_>,
        data: &[u8],
        default_cluster: Option<String>,
        now: i64,
        skip_unknown: bool,
    ) -> PyResult<IngestResult> {
        let store = self.store()?;
        let report = py.detach(|| {
            self.ingester
                .ingest(&store, data, default_cluster.as_deref(), now, skip_unknown)
        })?;
        Ok((
            report.lines,
            report.accepted,
            report.rejected,
            report.series_created,
            report.skipped,
        ))
    }

    /// (series per metric in definition order, "cluster/host" paths in
    /// name order): what a store's repr lists.
    fn outline(&self, py: Python<'_>) -> PyResult<(Vec<usize>, Vec<String>)> {
        let store = self.store()?;
        Ok(py.detach(|| store.outline()))
    }

    /// Counters and sizes as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let store = self.store()?;
        let s = py.detach(|| store.stats());
        let dict = PyDict::new(py);
        dict.set_item("unit", self.unit.as_str())?;
        dict.set_item("metrics", s.metrics)?;
        dict.set_item("series", s.series)?;
        dict.set_item("nodes", s.nodes)?;
        dict.set_item("chunks", s.chunks)?;
        dict.set_item("data_bytes", s.data_bytes)?;
        dict.set_item("raw_chunks", s.raw_chunks)?;
        dict.set_item("sealed_chunks", s.sealed_chunks)?;
        dict.set_item("sealed_bytes", s.sealed_bytes)?;
        dict.set_item("mapped_chunks", s.mapped_chunks)?;
        dict.set_item("mapped_bytes", s.mapped_bytes)?;
        dict.set_item("reserved_bytes", s.reserved_bytes)?;
        dict.set_item("samples", s.samples)?;
        dict.set_item("write_calls", s.write_calls)?;
        dict.set_item("samples_written", s.samples_written)?;
        dict.set_item("read_calls", s.read_calls)?;
        dict.set_item("samples_read", s.samples_read)?;
        dict.set_item("memory_limit", s.memory_limit)?;
        dict.set_item("drops", s.drops)?;
        dict.set_item("dropped_chunks", s.dropped_chunks)?;
        dict.set_item("evictions", s.evictions)?;
        dict.set_item("failed_checkpoints", s.failed_checkpoints)?;
        dict.set_item("last_checkpoint_error", s.last_checkpoint_error)?;
        dict.set_item("sync", s.sync)?;
        Ok(dict)
    }
}

/// Every log segment and snapshot of the store in `path`, read without
/// changing anything: {"unit", "segments": [...], "snapshots": [...],
/// "gaps": [...], "corrupt": bool}.
#[pyfunction]
pub fn inspect(py: Python<'_>, path: String) -> PyResult<Bound<'_, PyDict>> {
    let dir = std::path::PathBuf::from(path);
    let (unit, found) = py.detach(|| Store::inspect(&dir))?;
    let dict = PyDict::new(py);
    dict.set_item("unit", unit.as_str())?;
    let segments = pyo3::types::PyList::empty(py);
    for s in &found.segments {
        let d = PyDict::new(py);
        d.set_item("file", &s.file)?;
        d.set_item("first_lsn", s.first_lsn)?;
        d.set_item("needed", s.needed)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("lsns", s.lsns)?;
        let kinds = PyDict::new(py);
        for (kind, count) in &s.ops_by_kind {
            kinds.set_item(op_kind_name(*kind), count)?;
        }
        d.set_item("ops", kinds)?;
        d.set_item("damage", s.damage.clone())?;
        segments.append(d)?;
    }
    dict.set_item("segments", segments)?;
    let snapshots = pyo3::types::PyList::empty(py);
    for s in &found.snapshots {
        let d = PyDict::new(py);
        d.set_item("file", &s.file)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("lsn", s.lsn)?;
        d.set_item("problem", s.problem.clone())?;
        snapshots.append(d)?;
    }
    dict.set_item("snapshots", snapshots)?;
    dict.set_item("gaps", found.gaps.clone())?;
    dict.set_item("corrupt", found.corrupt())?;
    Ok(dict)
}

fn op_kind_name(kind: u8) -> String {
    use crate::engine::op_kind;
    match kind {
        op_kind::DEFINE_METRIC_UNIT => "define_metric".to_owned(),
        op_kind::DEFINE_METRIC => "define_metric (no unit)".to_owned(),
        op_kind::CREATE_SERIES => "create_series".to_owned(),
        op_kind::WRITE_BLOCK => "write_block".to_owned(),
        op_kind::WRITE_TICK => "write_tick".to_owned(),
        op_kind::WRITE_POINTS => "write_points".to_owned(),
        op_kind::DROP_BEFORE => "drop_before".to_owned(),
        op_kind::DROP_SERIES_BEFORE => "drop_series_before".to_owned(),
        op_kind::CREATE_SERIES_MANY => "create_series_many".to_owned(),
        other => format!("kind {other}"),
    }
}
