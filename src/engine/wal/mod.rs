//! The write-ahead log: numbered segment files of CRC-checked records, one
//! record (or one group of fragments) per op. `record` is the byte format,
//! `writer` appends and syncs, `reader` replays and classifies damage.
//!
//! The log knows records, not ops: a record is a kind byte and a payload
//! (the store's `ops.rs` encodes them). The LSN is the record's place in
//! the log; the writer hands it out, under the store's sequencer.
//!
//! Uses: `storage/`.

pub mod reader;
pub mod record;
pub mod writer;

use std::path::Path;

use super::error::EngineError;
use crate::engine::storage::Storage;

/// A segment's file name: the LSN of its first record, zero-padded so names
/// sort in log order.
pub fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

/// The first LSN in a segment's file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir` as (first LSN, file name), in log order.
pub fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, String)>, EngineError> {
    let mut segments: Vec<(u64, String)> = storage
        .list(dir)
        .map_err(|e| EngineError::io("listing", dir, &e))?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|lsn| (lsn, name)))
        .collect();
    segments.sort();
    Ok(segments)
}
