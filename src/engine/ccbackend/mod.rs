//! cc-backend's files, read and written the way cc-backend does.
//!
//! Its binary snapshots (`snapshot.rs`) and its log `current.wal`
//! (`wal.rs`): parsing, and loading a host's files into a store. The Python
//! package plans loads, reads the JSON checkpoints, reports, and writes
//! checkpoints back.
//!
//! Uses: `store/` (its public API), `ingest/` (line-protocol keys),
//! `model/`.

pub(crate) mod snapshot;
pub(crate) mod wal;

pub use snapshot::{CcDamage, Head, HostLoad, SnapshotLoad, Unnamed};
pub use wal::{ScannedLog, WalLoad};
