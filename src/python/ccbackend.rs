//! `metricstore._core.CcHost`: one host's load of cc-backend snapshots and
//! log (see `engine::ccbackend`), driven file by file by `metricstore.ccbackend`;
//! and `cc_encode_host`, one host's checkpoint file for `write_checkpoints`.

use std::collections::HashMap;

use parking_lot::Mutex;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::store::PyStore;
use crate::engine::{
    CheckpointFormat, HostLoad, HostSeries, ScannedLog, SeriesId, Unnamed, encode_host,
};

/// `[(metric, below, message)]`.
fn unnamed(py: Python<'_>, all: Vec<Unnamed>) -> PyResult<Vec<Bound<'_, PyTuple>>> {
    all.into_iter()
        .map(|u| {
            let below = PyTuple::new(py, u.below)?;
            (u.metric, below, u.message).into_pyobject(py)
        })
        .collect()
}

#[pyclass(frozen, module = "metricstore._core", name = "CcHost")]
pub struct PyCcHost {
    /// One Python thread loads one host; the lock only makes that safe.
    inner: Mutex<HostLoad>,
    /// The host's log, scanned before its snapshots, replayed after them.
    log: Mutex<Option<ScannedLog>>,
}

#[pymethods]
impl PyCcHost {
    /// `known`: the frequency of each metric the store defines; `since`:
    /// snapshots whose `to` is before it are left out.
    #[new]
    #[pyo3(signature = (cluster, host, known, since = None))]
    fn new(cluster: &str, host: &str, known: HashMap<String, i64>, since: Option<i64>) -> Self {
        PyCcHost {
            inner: Mutex::new(HostLoad::new(cluster, host, known, since)),
            log: Mutex::new(None),
        }
    }

    /// Loads one binary snapshot's bytes into `store`, without the GIL.
    /// Returns a dict: `damage` (None or (offset, reason): nothing was
    /// loaded), `from`, `to`, `before_since`, `values`, `regridded`,
    /// `trailing`, `unknown` ({metric: values}), `unnamed` ([(metric, below,
    /// message)]).
    fn load_snapshot<'py>(
        &self,
        py: Python<'py>,
        store: &Bound<'py, PyStore>,
        data: &[u8],
    ) -> PyResult<Bound<'py, PyDict>> {
        let store = store.get().store()?;
        let outcome = py.detach(|| self.inner.lock().load_snapshot(&store, data))?;
        let dict = PyDict::new(py);
        match outcome {
            Err(damage) => {
                dict.set_item("damage", (damage.offset, damage.reason))?;
            }
            Ok(load) => {
                dict.set_item("damage", py.None())?;
                dict.set_item("from", load.from)?;
                dict.set_item("to", load.to)?;
                dict.set_item("before_since", load.before_since)?;
                dict.set_item("values", load.values)?;
                dict.set_item("regridded", load.regridded)?;
                dict.set_item("by_phase", load.by_phase)?;
                dict.set_item("by_rounding", load.by_rounding)?;
                dict.set_item("trailing", load.trailing)?;
                dict.set_item(
                    "unknown",
                    load.unknown.into_iter().collect::<HashMap<_, _>>(),
                )?;
                dict.set_item("unnamed", unnamed(py, load.unnamed)?)?;
            }
        }
        Ok(dict)
    }

    /// Parses `data` as a `current.wal` before the host's snapshots load,
    /// without the GIL; each series' sample phase then places their blocks.
    /// Returns None, or (offset, reason) of a bad file header (the log is
    /// then not replayed).
    fn scan_wal(&self, py: Python<'_>, data: &[u8]) -> Option<(u64, String)> {
        match py.detach(|| self.inner.lock().scan_wal(data)) {
            Ok(log) => {
                *self.log.lock() = Some(log);
                None
            }
            Err(damage) => Some((damage.offset, damage.reason)),
        }
    }

    /// Replays the scanned log into `store` after the snapshots loaded so
    /// far, without the GIL (None if no log was scanned). Returns a dict:
    /// `records` (valid records), `stop` (None or (offset, reason) of the
    /// first bad record: the records before it were kept), `written`,
    /// `values`, `stale`, `unknown` ({metric: values}), `not_utf8` (keys),
    /// `untimed`, `unnamed` ([(metric, below, message)]).
    fn replay_wal<'py>(
        &self,
        py: Python<'py>,
        store: &Bound<'py, PyStore>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let store = store.get().store()?;
        let Some(log) = self.log.lock().take() else {
            return Ok(None);
        };
        let load = py.detach(|| self.inner.lock().replay_wal(&store, log))?;
        let dict = PyDict::new(py);
        dict.set_item("records", load.records)?;
        dict.set_item("stop", load.damage.map(|d| (d.offset, d.reason)))?;
        dict.set_item("written", load.written)?;
        dict.set_item("values", load.values)?;
        dict.set_item("stale", load.stale)?;
        dict.set_item(
            "unknown",
            load.unknown.into_iter().collect::<HashMap<_, _>>(),
        )?;
        dict.set_item("not_utf8", load.not_utf8)?;
        dict.set_item("untimed", load.untimed)?;
        dict.set_item("unnamed", unnamed(py, load.unnamed)?)?;
        Ok(Some(dict))
    }

    /// The handle of (metric, below the host), made the first time: (None,
    /// message) the first time the store refuses the name, (None, None) after.
    fn handle(
        &self,
        py: Python<'_>,
        store: &Bound<'_, PyStore>,
        metric: &str,
        below: Vec<String>,
    ) -> PyResult<(Option<SeriesId>, Option<String>)> {
        let store = store.get().store()?;
        Ok(py.detach(|| self.inner.lock().handle(&store, metric, &below))?)
    }

    /// The newest snapshot block of a series as (start, capacity, frequency),
    /// or None.
    fn head(&self, metric: &str, below: Vec<String>) -> Option<(i64, i64, i64)> {
        self.inner
            .lock()
            .head(metric, &below)
            .map(|h| (h.start, h.capacity, h.frequency))
    }
}

/// One host's cc-backend checkpoint file of `store`'s series `members`
/// ([(handle, metric, below the host)]) in `[since, until)`, encoded as
/// `format` ("bin" or "json") without the GIL: (bytes, series, values), or
/// None if no series has a value there.
#[pyfunction]
pub fn cc_encode_host<'py>(
    py: Python<'py>,
    store: &Bound<'py, PyStore>,
    since: i64,
    until: i64,
    members: Vec<(SeriesId, String, Vec<String>)>,
    format: &str,
) -> PyResult<Option<(Bound<'py, PyBytes>, u64, u64)>> {
    let format = match format {
        "bin" => CheckpointFormat::Bin,
        "json" => CheckpointFormat::Json,
        other => {
            return Err(PyValueError::new_err(format!(
                "format: expected 'bin' or 'json', got {other:?}"
            )));
        }
    };
    let store = store.get().store()?;
    let members: Vec<HostSeries> = members
        .into_iter()
        .map(|(id, metric, below)| HostSeries { id, metric, below })
        .collect();
    let host = py.detach(|| encode_host(&store, since, until, &members, format))?;
    Ok(host.map(|h| (PyBytes::new(py, &h.bytes), h.series, h.values)))
}
