//! The pure-Rust core of metricstore: metrics, the series tree, chunked
//! float32 buffers on an epoch-aligned grid, range reads with aggregation,
//! and the write-ahead log and snapshots that make a store durable.
//!
//! Nothing in here knows about Python. The binding layer in `src/python/`
//! converts arguments and maps [`EngineError`] to exceptions.
//!
//! The subsystems, one folder each, in the order data flows through them
//! (a write: binding -> store -> log -> memory; a read: binding -> query ->
//! memory). Each may use only those listed after it, never one before:
//!
//! - `ccbackend/`  cc-backend's files, translated into store ops;
//! - `ingest/`     line protocol, parsed into store ops;
//! - `durable/`    a store on a directory: open and recovery, sync modes,
//!   checkpoints, inspect, a reader following its writer; implements the
//!   store's `Journal`;
//! - `snapshot/`   the snapshot format: write a store's state, load it back;
//! - `wal/`        the write-ahead log: records, segments, replay;
//! - `storage/`    the file-system seam, its fault hooks, open progress;
//! - `query/`      range reads, aggregation, resampling, stats, health;
//! - `store/`      ops and applying them in one order: the in-memory state
//!   machine, which sees its log only through the `Journal` trait;
//! - `memory/`     chunks, series, staged ticks and the catalog;
//! - `model/`      metrics, names, time units and the grid;
//! - `error.rs`, `bytes.rs`, `parallel.rs`, `json.rs` (JSON float arrays in
//!   cc-metric-store's number format): leaves every folder may use.
//!
//! `testkit/` (simulated storage, the workload model, crash suites) is
//! compiled only for tests. docs/architecture.md draws the same map with
//! the threads and the lock order.
//!
//! Invariants the rest of the crate relies on:
//! - every mutation is an [`Op`]; an op is validated completely before any of
//!   it is applied, so it is applied whole or not at all;
//! - ops are applied one at a time in the order the store's sequencer gives
//!   them (under it, or in `always` mode for data ops on the apply thread, in
//!   that order), so the memory state always equals applying the ops in
//!   their sequence order (the order the write-ahead log records);
//! - a series of frequency `f` stores the sample for time `k * f` in slot `k`;
//!   all series of one frequency therefore share one grid.

mod bytes;
mod ccbackend;
mod durable;
mod error;
mod ingest;
mod json;
mod memory;
mod model;
mod parallel;
mod query;
mod snapshot;
mod storage;
mod store;
#[cfg(test)]
mod testkit;
mod wal;

pub use ccbackend::{
    CcDamage, CheckpointFormat, EncodedHost, Head, HostLoad, HostSeries, ScannedLog, SnapshotLoad,
    Unnamed, WalLoad, encode_host,
};
pub use durable::inspect::{Inspection, SegmentInfo, SnapshotInfo};
pub use durable::{OpenOptions, SyncMode};
pub use error::EngineError;
pub use ingest::{IngestReport, Ingester};
pub use json::{MAX_DECIMALS, float_array, float_rows, float_rows_into, float64_array};
pub use memory::chunks::{CHUNK_BYTES, CHUNK_SLOTS, PoolUsage, SLAB_BYTES};
pub use model::metric::{Aggregation, MetricDef};
pub use model::names::{MAX_NAME_LEN, MAX_PATH_DEPTH, is_pattern};
pub use model::time::{MAX_READ_SLOTS, TimeUnit};
pub use query::read::{Matrix, RangeData, Target};
pub use query::resample::{Method, Stats};
pub use query::{Freshness, STALE_PERIODS, Sampled};
pub use storage::progress::{OpenPhase, OpenProgress, PROGRESS_STEP};
pub use storage::{FsStorage, ImmutableBytes, Storage, StorageFile, crash_points};
pub use store::ops::{Op, kind as op_kind};
pub use store::{CheckpointInfo, SeriesId, SeriesKeys, SeriesName, Store, StoreStats};
pub use wal::reader::{Damage, RecoveryMode, RecoveryReport};
pub use wal::record::{MAX_FRAGMENT, RECORD_HEADER, SEGMENT_HEADER};
pub use wal::segment_name;
