//! The engine's one error type. Each variant says what went wrong in terms
//! the caller can act on; the binding layer maps variants to Python classes.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// An argument has a bad value. `argument` is the parameter's name as the
    /// public API spells it (`series`, `start`, `values`, ...); fix the value.
    #[error("{argument}: {message}")]
    InvalidArgument { argument: String, message: String },

    /// A metric name or a path component breaks the naming rules; `argument`
    /// is the parameter that held it (`name`, `path`) and `what` says which
    /// part (for example `path component 2`). Rename it.
    #[error("{argument}: invalid {what} {value:?}: {reason}")]
    InvalidName {
        argument: String,
        what: String,
        value: String,
        reason: String,
    },

    /// The metric was never defined in this store. Define it first.
    #[error("unknown metric {name:?}; define it with define_metric()")]
    UnknownMetric { name: String },

    /// A metric of this name exists with another frequency, aggregation or
    /// unit. Metrics cannot be redefined; use a new name. `existing` and
    /// `requested` are the two definitions as `frequency 60, aggregation
    /// "sum", unit "GF/s"`.
    #[error(
        "metric {name:?} is already defined with {existing}; cannot redefine it with {requested}"
    )]
    MetricConflict {
        name: String,
        existing: String,
        requested: String,
    },

    /// No series of the metric exists at or below the path. Check the path, or
    /// write to it first.
    #[error("no series of metric {metric:?} at or below path {path:?}")]
    UnknownSeries { metric: String, path: String },

    /// A read above the stored level needs aggregation, and the metric was
    /// defined with aggregation "none". Read the series one by one.
    #[error(
        "metric {metric:?} has aggregation \"none\" and path {path:?} holds {count} series \
         of it; read them individually or define the metric with sum or avg"
    )]
    NoAggregation {
        metric: String,
        path: String,
        count: usize,
    },

    /// The store was closed; open it again to use it.
    #[error("the store is closed")]
    Closed,

    /// A file of the store is damaged where damage cannot be a torn write.
    /// Nothing was changed; inspect the file (`python -m metricstore
    /// verify`), restore it, or open with a more tolerant recovery mode.
    #[error("{file}: corrupt at offset {offset}{}: {reason}", lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default())]
    Corruption {
        file: String,
        offset: u64,
        lsn: Option<u64>,
        reason: String,
    },

    /// A file was written by a format version this code does not read.
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },

    /// An operating-system call failed. `errno` is the OS error number.
    #[error("{action} {path}: {message}")]
    Io {
        action: String,
        path: String,
        errno: Option<i32>,
        message: String,
    },

    /// An earlier write or sync of the log failed, so what is on disk is
    /// unknown. Writes are refused until the store is opened again, which
    /// recovers from what is really on disk.
    #[error("the store is poisoned by an earlier failure ({reason}); close it and open it again")]
    Poisoned { reason: String },

    /// Another writer holds the store directory.
    #[error("{path} is locked by another writer{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: String, pid: Option<u32> },

    /// The store was opened for writing in another process (this one is a
    /// forked child). Open it again in this process.
    #[error("the store was opened for writing in process {owner}; this is process {current}")]
    WrongProcess { owner: u32, current: u32 },

    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,

    /// Opening was cancelled through its `OpenProgress` before it changed
    /// anything: the directory is as it was and its lock is released. Open
    /// it again to recover it.
    #[error("opening the store was cancelled; nothing in the directory was changed")]
    Cancelled,
}

impl EngineError {
    pub(crate) fn io(action: &str, path: &std::path::Path, error: &std::io::Error) -> Self {
        EngineError::Io {
            action: action.to_owned(),
            path: path.display().to_string(),
            errno: error.raw_os_error(),
            message: error.to_string(),
        }
    }

    pub(crate) fn argument(argument: &str, message: impl Into<String>) -> Self {
        EngineError::InvalidArgument {
            argument: argument.to_owned(),
            message: message.into(),
        }
    }
}
