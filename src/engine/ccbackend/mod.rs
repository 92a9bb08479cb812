//! cc-backend's files, read and written the way cc-backend does.
//!
//! Its binary snapshots (`snapshot.rs`) and its log `current.wal`
//! (`wal.rs`): parsing, and loading a host's files into a store; and its
//! checkpoint files, binary and JSON, encoded from a store (`encode.rs`).
//! The Python package plans loads, parses the JSON checkpoints, writes the
//! files, and reports.
//!
//! Uses: `store/` (its public API), `ingest/` (line-protocol keys),
//! `model/`.

pub(crate) mod encode;
pub(crate) mod snapshot;
pub(crate) mod wal;

pub use encode::{CheckpointFormat, EncodedHost, HostSeries, encode_host};
pub use snapshot::{CcDamage, Head, HostLoad, SnapshotLoad, Unnamed};
pub use wal::{ScannedLog, WalLoad};
