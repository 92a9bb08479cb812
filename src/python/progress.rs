//! `metricstore._core.OpenProgress`: a handle on an open in progress, made
//! by Python, passed to `Store.open(..., progress=...)` and watched from
//! another thread while the open runs with the GIL released.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::engine::{OpenProgress, Store};

#[pyclass(frozen, module = "metricstore._core", name = "OpenProgress")]
pub struct PyOpenProgress {
    pub(crate) inner: Arc<OpenProgress>,
}

#[pymethods]
impl PyOpenProgress {
    #[new]
    fn new() -> Self {
        PyOpenProgress {
            inner: Arc::new(OpenProgress::new()),
        }
    }

    /// Bytes the open reads in all: snapshot and log (0 until measured).
    #[getter]
    fn total(&self) -> u64 {
        self.inner.total()
    }

    /// Bytes read so far.
    #[getter]
    fn done(&self) -> u64 {
        self.inner.done()
    }

    /// "starting", "snapshot", "log", "finishing" (no longer cancellable)
    /// or "done".
    #[getter]
    fn phase(&self) -> &'static str {
        self.inner.phase().as_str()
    }

    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Asks the open to stop; unless it already changes files, it raises
    /// OpenCancelledError and leaves the directory as it was.
    fn cancel(&self) {
        self.inner.cancel();
    }

    fn __repr__(&self) -> String {
        format!(
            "<OpenProgress {} {}/{} bytes{}>",
            self.inner.phase().as_str(),
            self.inner.done(),
            self.inner.total(),
            if self.inner.is_cancelled() {
                " cancelled"
            } else {
                ""
            }
        )
    }
}

/// About how many bytes opening the store in `path` reads (the newest
/// snapshot and the log after it); 0 if there is nothing to read.
#[pyfunction]
#[pyo3(signature = (path, readonly = false))]
pub fn recovery_bytes(py: Python<'_>, path: String, readonly: bool) -> u64 {
    let dir = std::path::PathBuf::from(path);
    py.detach(|| Store::recovery_bytes(&dir, readonly))
}
