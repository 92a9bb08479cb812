//! The pure-Rust core of metricstore: metrics, the series tree, chunked
//! float32 buffers on an epoch-aligned grid, and range reads with
//! aggregation.
//!
//! Nothing in here knows about Python. The binding layer in `src/python/`
//! converts arguments and maps [`EngineError`] to exceptions.
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

mod aggregate;
mod applier;
mod bytes;
mod catalog;
mod ccbackend;
#[cfg(test)]
mod checkpoint_crash_tests;
mod chunks;
#[cfg(test)]
mod crash_tests;
mod durable;
mod error;
mod inspect;
mod lineproto;
mod metric;
mod names;
mod ops;
mod parallel;
mod progress;
mod query;
mod resample;
mod series;
#[cfg(test)]
mod sim_storage;
mod snapshot;
mod stage;
mod storage;
mod store;
#[cfg(test)]
mod test_model;
mod time;
mod wal;

pub use ccbackend::{CcDamage, Head, HostLoad, SnapshotLoad, Unnamed};
pub use chunks::{CHUNK_BYTES, CHUNK_SLOTS, PoolUsage, SLAB_BYTES};
pub use durable::{OpenOptions, SyncMode};
pub use error::EngineError;
pub use inspect::{Inspection, SegmentInfo, SnapshotInfo};
pub use lineproto::IngestReport;
pub use metric::{Aggregation, MetricDef};
pub use names::{MAX_NAME_LEN, MAX_PATH_DEPTH, is_pattern};
pub use ops::{Op, kind as op_kind};
pub use progress::{OpenPhase, OpenProgress, PROGRESS_STEP};
pub use query::{Freshness, STALE_PERIODS, Sampled};
pub use resample::{Method, Stats};
pub use snapshot::CheckpointInfo;
pub use storage::{FsStorage, ImmutableBytes, Storage, StorageFile, crash_points};
pub use store::{Matrix, RangeData, SeriesId, Store, StoreStats, Target};
pub use time::{MAX_READ_SLOTS, TimeUnit};
pub use wal::reader::{Damage, RecoveryMode, RecoveryReport};
pub use wal::record::{MAX_FRAGMENT, RECORD_HEADER, SEGMENT_HEADER};
pub use wal::segment_name;
