//! Checkpoints: a snapshot of the store, then the log segments and older
//! snapshots it makes unneeded are deleted (the protocol is in
//! `snapshot/mod.rs`'s module docs; the bytes in docs/format.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::engine::durable::Durable;
use crate::engine::error::EngineError;
use crate::engine::memory::series::SeriesData;
use crate::engine::parallel::Urgency;
use crate::engine::snapshot::{SnapshotCut, list_snapshots, snapshot_name};
use crate::engine::storage::{Storage, crash_point};
use crate::engine::store::CheckpointInfo;
use crate::engine::store::Store;
use crate::engine::wal::list_segments;

/// Series whose paths a checkpoint copies under one read lock of the
/// catalog.
const CATALOG_RANGE: usize = 16_384;

impl Durable {
    /// Writes a snapshot of `store` and deletes what it makes unneeded,
    /// keeping the newest `keep` snapshots (see `remove_unneeded`), with
    /// the threads and pace `urgency` gives.
    pub(crate) fn checkpoint_store(
        &self,
        store: &Store,
        keep: usize,
        urgency: Urgency,
    ) -> Result<CheckpointInfo, EngineError> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        self.check_writable()?;
        let started = Instant::now();
        // Writers wait only for the cut: the LSN, a new log segment, the
        // staged ticks written out, and how many series and metrics there
        // are. The catalog only ever grows (series and metrics are
        // appended, never changed or removed), so the first `series` of it
        // are copied afterwards, a range at a time, while writers go on.
        let (lsn, metrics, series) = {
            let _order = store.lock_sequencer();
            if self.is_closed() {
                return Err(EngineError::Closed);
            }
            let lsn = self.wal.start_segment()? - 1;
            self.checkpointed_at_bytes.store(
                self.wal.appended_bytes(),
                std::sync::atomic::Ordering::Relaxed,
            );
            // Ticks logged before `lsn` may still be staged.
            let catalog = store.settled_catalog();
            (lsn, catalog.metrics().to_vec(), catalog.series_count())
        };
        let writers_held_seconds = started.elapsed().as_secs_f64();
        let mut paths = Vec::with_capacity(series);
        let mut data: Vec<Arc<RwLock<SeriesData>>> = Vec::with_capacity(series);
        let mut pacer = urgency.pacer();
        for first in (0..series).step_by(CATALOG_RANGE) {
            pacer.pace();
            crash_point!(self.storage.as_ref(), CHECKPOINT_CATALOG);
            // A short read lock per range: a writer creating series waits
            // for one range at most.
            let catalog = store.catalog.read();
            let ids = first..(first + CATALOG_RANGE).min(series);
            paths.extend(catalog.series_paths_in(ids.clone()));
            data.extend(catalog.entries()[ids].iter().map(|e| Arc::clone(&e.data)));
        }
        let storage = self.storage.as_ref();
        let dir = self.dir.as_path();
        let name = snapshot_name(lsn);
        let path = dir.join(&name);
        let temp = dir.join(format!("{name}.tmp"));
        let _ = storage.remove(&temp);
        let cut = SnapshotCut {
            lsn,
            metrics: &metrics,
            paths: &paths,
            data: &data,
        };
        let written = store.write_snapshot(storage, &temp, &cut, urgency);
        let bytes = match written.and_then(|bytes| {
            crash_point!(storage, SNAPSHOT_SYNCED);
            storage
                .rename(&temp, &path)
                .map_err(|e| EngineError::io("renaming snapshot", &temp, &e))?;
            crash_point!(storage, SNAPSHOT_RENAMED);
            storage
                .sync_dir(dir)
                .map_err(|e| EngineError::io("syncing directory", dir, &e))?;
            Ok(bytes)
        }) {
            Ok(bytes) => bytes,
            Err(error) => {
                // The log is untouched and still has everything.
                let _ = storage.remove(&temp);
                return Err(error);
            }
        };
        crash_point!(storage, SNAPSHOT_PUBLISHED);
        let (removed_segments, removed_snapshots) = remove_unneeded(storage, dir, keep)?;
        Ok(CheckpointInfo {
            lsn,
            file: path.display().to_string(),
            bytes,
            series: paths.len(),
            removed_segments,
            removed_snapshots,
            writers_held_seconds,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Deletes snapshots beyond the newest `keep`, and log segments whose
/// records the oldest kept snapshot covers. Returns (segments, snapshots)
/// removed. Checkpoints keep two, so that a damaged newest snapshot falls
/// back to the older one and the log; a closing store keeps one, so that
/// the directory holds its data once.
pub(crate) fn remove_unneeded(
    storage: &dyn Storage,
    dir: &Path,
    keep: usize,
) -> Result<(usize, usize), EngineError> {
    let snapshots = list_snapshots(storage, dir)?;
    let mut removed_snapshots = 0;
    for (_, name) in snapshots.iter().skip(keep) {
        let path = dir.join(name);
        crash_point!(storage, LOG_TRUNCATING);
        storage
            .remove(&path)
            .map_err(|e| EngineError::io("removing old snapshot", &path, &e))?;
        removed_snapshots += 1;
    }
    let mut removed_segments = 0;
    // With fewer snapshots than `keep`, keep the whole log: the fallback.
    if let Some(&(older, _)) = snapshots.get(keep.max(1) - 1) {
        let segments = list_segments(storage, dir)?;
        for pair in segments.windows(2) {
            let (_, name) = &pair[0];
            let (next_first, _) = pair[1];
            // Segment records run up to the next segment's first LSN - 1.
            if next_first.saturating_sub(1) <= older {
                let path = dir.join(name);
                crash_point!(storage, LOG_TRUNCATING);
                storage
                    .remove(&path)
                    .map_err(|e| EngineError::io("removing log segment", &path, &e))?;
                removed_segments += 1;
            }
        }
    }
    if removed_segments + removed_snapshots > 0 {
        crash_point!(storage, LOG_TRUNCATED);
        storage
            .sync_dir(dir)
            .map_err(|e| EngineError::io("syncing directory", dir, &e))?;
    }
    Ok((removed_segments, removed_snapshots))
}
