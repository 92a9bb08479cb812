//! metricstore: an embedded, in-memory time-series store for metrics.
//!
//! `engine` is the pure-Rust core; `python` (feature `python`, turned on by
//! maturin) is the PyO3 binding layer and the only place that knows Python.

pub mod engine;

#[cfg(feature = "python")]
mod python;
