//! Engine errors to Python exceptions. The classes are defined in
//! `metricstore/exceptions.py` (so they pickle under their public name and
//! can also be ValueError, KeyError or OSError); this picks the class and
//! the constructor arguments for each variant.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::engine::EngineError;

/// The class in `metricstore.exceptions` and its arguments; `None` means a
/// plain ValueError with the message.
fn class_and_args<'py>(
    py: Python<'py>,
    error: &EngineError,
    message: String,
) -> PyResult<Option<(&'static str, Bound<'py, PyTuple>)>> {
    let simple = |name| Ok(Some((name, PyTuple::new(py, [message.clone()])?)));
    match error {
        EngineError::InvalidArgument { .. } => Ok(None),
        EngineError::InvalidName { .. } => simple("InvalidNameError"),
        EngineError::UnknownMetric { .. } => simple("UnknownMetricError"),
        EngineError::MetricConflict { .. } => simple("MetricConflictError"),
        EngineError::UnknownSeries { .. } => simple("UnknownSeriesError"),
        EngineError::NoAggregation { .. } => simple("AggregationError"),
        EngineError::Closed => simple("ClosedError"),
        EngineError::Poisoned { .. } => simple("PoisonedError"),
        EngineError::WrongProcess { .. } => simple("WrongProcessError"),
        EngineError::ReadOnly => simple("ReadOnlyError"),
        EngineError::Cancelled => simple("OpenCancelledError"),
        EngineError::Corruption {
            file, offset, lsn, ..
        } => Ok(Some((
            "CorruptionError",
            (message, file.clone(), *offset, *lsn).into_pyobject(py)?,
        ))),
        EngineError::Format { file, .. } => Ok(Some((
            "FormatError",
            (message, file.clone()).into_pyobject(py)?,
        ))),
        EngineError::Locked { path, pid } => Ok(Some((
            "LockedError",
            (message, path.clone(), *pid).into_pyobject(py)?,
        ))),
        EngineError::Io {
            action,
            path,
            errno,
            message: detail,
        } => Ok(Some((
            "StoreIOError",
            match errno {
                // OSError(errno, strerror, filename) sets .errno and friends.
                Some(errno) => {
                    (*errno, format!("{action}: {detail}"), path.clone()).into_pyobject(py)?
                }
                None => PyTuple::new(py, [message])?,
            },
        ))),
    }
}

/// The exception for `error` with `note` after its message (as "message;
/// note"): a hint only the binding can give.
pub fn with_note(error: EngineError, note: &str) -> PyErr {
    exception(&error, format!("{error}; {note}"))
}

impl From<EngineError> for PyErr {
    fn from(error: EngineError) -> PyErr {
        let message = error.to_string();
        exception(&error, message)
    }
}

/// The exception of `error`'s class, carrying `message`.
fn exception(error: &EngineError, message: String) -> PyErr {
    Python::attach(|py| {
        let made = class_and_args(py, error, message.clone()).and_then(|found| {
            let Some((name, args)) = found else {
                return Ok(PyValueError::new_err(message.clone()));
            };
            let class = py.import("metricstore.exceptions")?.getattr(name)?;
            Ok(PyErr::from_value(class.call1(args)?))
        });
        made.unwrap_or_else(|err| err)
    })
}
