//! Memory: where samples live. Chunks of float32 slots from shared slabs,
//! a series as a map of chunks, ticks staged as rows before they reach their
//! series, and the catalog of metrics, paths and series handles.
//!
//! Invariants: every chunk holds `CHUNK_SLOTS` consecutive slots of one
//! series, NaN where nothing was written; a series' data is behind its own
//! lock; a handle, once given, names the same series for the life of the
//! store (series are never removed).
//!
//! Uses: `model/`, `bytes.rs`. It knows nothing of ops, logs or files.

pub(crate) mod catalog;
pub(crate) mod chunks;
pub(crate) mod series;
pub(crate) mod stage;
