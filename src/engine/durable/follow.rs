//! A read-only store following the writer of its directory: `follow`
//! applies the log records written since the last LSN the store holds,
//! without reading its snapshot again.
//!
//! Invariant: the store's contents are its snapshot plus every op up to
//! `after_lsn`, so applying the ops after it, in order and with no gap,
//! gives what a fresh read-only open would. When the records right after
//! `after_lsn` are gone (the writer wrote a snapshot and deleted the
//! segments that held them), following is impossible and the caller
//! opens the directory again.

use std::path::Path;
use std::time::Instant;

use crate::engine::error::EngineError;
use crate::engine::storage::Storage;
use crate::engine::storage::progress::Tracker;
use crate::engine::store::Store;
use crate::engine::wal::list_segments;
use crate::engine::wal::reader::{self, RecoveryMode, RecoveryReport, ReplayOptions};

impl Store {
    /// Applies the ops logged in `dir` after `after_lsn` to this read-only
    /// store. Returns what it replayed (`last_lsn` is where the next call
    /// starts), or None when the log no longer holds the op after
    /// `after_lsn`: then only a new open sees the writer's data. A torn
    /// tail (the writer mid-append) ends the replay and is left alone.
    pub fn follow(
        &self,
        storage: &dyn Storage,
        dir: &Path,
        after_lsn: u64,
    ) -> Result<Option<RecoveryReport>, EngineError> {
        if !self.is_readonly() {
            return Err(EngineError::argument(
                "store",
                "only a read-only store follows a writer; a writable one holds every write already",
            ));
        }
        let started = Instant::now();
        let segments = list_segments(storage, dir)?;
        let needed = reader::first_needed_segment(&segments, after_lsn);
        match segments.get(needed) {
            Some((first, _)) if *first <= after_lsn + 1 => {}
            // No log at all: nothing new unless a snapshot covers more.
            None if !newer_snapshot(storage, dir, after_lsn)? => {
                return Ok(Some(RecoveryReport {
                    last_lsn: after_lsn,
                    snapshot_lsn: after_lsn,
                    ..RecoveryReport::default()
                }));
            }
            _ => return Ok(None),
        }
        let options = ReplayOptions {
            mode: RecoveryMode::TolerateTail,
            readonly: true,
            after_lsn,
        };
        let report = reader::replay(
            storage,
            dir,
            options,
            Tracker::new(None),
            |_, kind, payload| self.replay(kind, payload),
        )?;
        Ok(Some(RecoveryReport {
            snapshot_lsn: after_lsn,
            seconds: started.elapsed().as_secs_f64(),
            ..report
        }))
    }
}

fn newer_snapshot(storage: &dyn Storage, dir: &Path, lsn: u64) -> Result<bool, EngineError> {
    Ok(crate::engine::snapshot::list_snapshots(storage, dir)?
        .iter()
        .any(|(covered, _)| *covered > lsn))
}
