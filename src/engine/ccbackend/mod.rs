//! cc-backend's files, read and written the way cc-backend does.
//!
//! Today that is its binary snapshots (`snapshot.rs`): parsing, and loading
//! a host's snapshots into a store. The Python package plans loads, reads
//! the JSON checkpoints and the log, and writes checkpoints back.
//!
//! Uses: `store/` (its public API), `ingest/` (line-protocol keys),
//! `model/`.

pub(crate) mod snapshot;

pub use snapshot::{CcDamage, Head, HostLoad, SnapshotLoad, Unnamed};
