//! The data model: metric definitions, names and paths, time units and the
//! epoch-aligned grid every series lives on.
//!
//! Invariants: a name is non-empty UTF-8 without `/` or NUL and not `.` or
//! `..`; a series of frequency `f` keeps the sample for time `k * f` in
//! slot `k`, the nearest slot taking a sample between two.
//!
//! Uses: `error.rs` only. Everything else builds on it.

pub(crate) mod keys;
pub(crate) mod metric;
pub(crate) mod names;
pub(crate) mod time;
