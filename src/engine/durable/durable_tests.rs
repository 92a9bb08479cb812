//! Durable stores on the real file system: what was acknowledged is what
//! reopening recovers, and damage is classified as the contract says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::engine::snapshot::{self, index_entries, mapped_bytes};
use crate::engine::{Aggregation, CHUNK_BYTES, Target};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("metricstore-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(sync: SyncMode) -> OpenOptions {
    OpenOptions {
        sync,
        ..OpenOptions::default()
    }
}

fn read_only() -> OpenOptions {
    OpenOptions {
        readonly: true,
        ..options(SyncMode::None)
    }
}

fn bits(store: &Store, id: u32, start: i64, stop: i64) -> Vec<u32> {
    let values = store.read(Target::Series(id), start, stop).unwrap().values;
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_kind_of_write_survives_close_and_reopen() {
    let dir = TempDir::new();
    let (store, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.records, 0);
    store.define_metric("m", 10, Aggregation::Sum).unwrap();
    let a = store.series("m", &["c", "a"]).unwrap();
    let b = store.series("m", &["c", "b"]).unwrap();
    store.write_block(a, 0, &[1.0, f32::NAN, -0.0]).unwrap();
    store.write_tick(20, &[a, b], &[5.0, 6.0]).unwrap();
    store.write_points(&[b, b], &[0, 10], &[7.0, 8.0]).unwrap();
    let before = (bits(&store, a, 0, 40), bits(&store, b, 0, 40));
    store.close().unwrap();
    drop(store);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    // define, two creates, block, tick, points
    assert_eq!((report.records, report.last_lsn, report.torn), (6, 6, None));
    assert_eq!((bits(&again, a, 0, 40), bits(&again, b, 0, 40)), before);
    assert_eq!(again.series("m", &["c", "b"]).unwrap(), b);
    assert_eq!(again.stats().samples, 5);
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    let Err(err) = Store::open(dir.path(), &options(SyncMode::None)) else {
        panic!("a second writer opened the store");
    };
    assert_eq!(
        err,
        EngineError::Locked {
            path: dir.path().display().to_string(),
            pid: Some(std::process::id()),
        }
    );
    store.close().unwrap();
    drop(store);
    assert!(Store::open(dir.path(), &options(SyncMode::None)).is_ok());
}

#[test]
fn deleting_lock_while_a_writer_holds_it_lets_no_second_writer_in() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &[1.0, 2.0]).unwrap();
    std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
    let Err(err) = Store::open(dir.path(), &options(SyncMode::None)) else {
        panic!("a second writer opened the store after LOCK was deleted");
    };
    assert!(matches!(err, EngineError::Locked { .. }), "{err:?}");
    store.write_block(a, 2, &[3.0]).unwrap();
    store.close().unwrap();
    drop(store);
    let (again, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(bits(&again, a, 0, 3), [1.0f32, 2.0, 3.0].map(f32::to_bits));
}

#[test]
fn creating_a_store_creates_its_missing_parent_directories() {
    let dir = TempDir::new();
    let nested = dir.path().join("a").join("b").join("store");
    let (store, _) = Store::open(&nested, &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    store.close().unwrap();
    assert!(nested.join(META_FILE).is_file());
}

#[test]
fn checkpoint_of_a_read_only_store_is_refused_as_read_only() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    store.close().unwrap();
    drop(store);
    let read_only = read_only();
    let (reader, _) = Store::open(dir.path(), &read_only).unwrap();
    assert_eq!(reader.checkpoint().unwrap_err(), EngineError::ReadOnly);
}

#[test]
fn a_snapshot_from_a_newer_format_stops_the_open_with_a_format_error() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &[1.0]).unwrap();
    let file = store.checkpoint().unwrap().file;
    store.close().unwrap();
    drop(store);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let Err(err) = Store::open(dir.path(), &options(SyncMode::None)) else {
        panic!("a snapshot of format 99 was skipped or loaded");
    };
    let EngineError::Format {
        file: named,
        reason,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(named, file);
    assert!(
        reason.contains("version 99") && reason.contains("newer"),
        "{reason}"
    );
    // Nothing was changed: the snapshot is still there, not set aside.
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
}

#[test]
fn concurrent_writers_to_the_same_slots_recover_bit_for_bit() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::Always)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let ids: Vec<u32> = (0..4)
        .map(|i| store.series("m", &[format!("s{i}")]).unwrap())
        .collect();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            let ids = ids.clone();
            std::thread::spawn(move || {
                for round in 0..100 {
                    // All threads write the same slots: the log order decides.
                    let values = vec![(t * 1000 + round) as f32; ids.len()];
                    store.write_tick(round as i64 % 10, &ids, &values).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let live: Vec<Vec<u32>> = ids.iter().map(|&id| bits(&store, id, 0, 10)).collect();
    store.close().unwrap();
    drop(store);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.records, 1 + 4 + 400);
    let recovered: Vec<Vec<u32>> = ids.iter().map(|&id| bits(&again, id, 0, 10)).collect();
    assert_eq!(recovered, live);
}

fn everything(store: &Store, ids: &[u32], stop: i64) -> Vec<Vec<u32>> {
    ids.iter().map(|&id| bits(store, id, -5000, stop)).collect()
}

#[test]
fn a_checkpoint_makes_reopening_replay_only_the_log_after_it() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 10, Aggregation::Avg).unwrap();
    let a = store.series("m", &["c", "a"]).unwrap();
    let values: Vec<f32> = (0..5000).map(|i| i as f32 * 0.25).collect();
    store.write_block(a, -3000, &values).unwrap();
    let info = store.checkpoint().unwrap();
    assert_eq!((info.lsn, info.series), (3, 1));
    let b = store.series("m", &["c", "b"]).unwrap();
    store.write_tick(0, &[a, b], &[f32::NAN, 7.0]).unwrap();
    let live = everything(&store, &[a, b], 60_000);
    store.close().unwrap();
    drop(store);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.snapshot_lsn, 3);
    assert!(
        report
            .snapshot
            .unwrap()
            .ends_with("snapshot-00000000000000000003.snap")
    );
    assert_eq!((report.records, report.last_lsn), (2, 5));
    assert_eq!(everything(&again, &[a, b], 60_000), live);
    assert_eq!(again.stats().samples, 5000 - 1 + 1);
}

#[test]
fn a_snapshot_of_many_blocks_written_in_parallel_reloads_exactly() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    // 1,500 series of three or four chunks: about 20 MB, so five blocks and
    // more waves of parallel encoding than one.
    let ids: Vec<u32> = (0..1500)
        .map(|i| {
            store
                .series("m", &["c".to_owned(), format!("s{i}")])
                .unwrap()
        })
        .collect();
    // Random bits (never NaN), so that compression cannot shrink them.
    let mut x = 0x9E37_79B9u32;
    for &id in &ids {
        let values: Vec<f32> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                f32::from_bits(x & 0x3FFF_FFFF)
            })
            .collect();
        store
            .write_block(id, i64::from(id) - 1500, &values)
            .unwrap();
    }
    let info = store.checkpoint().unwrap();
    let live = everything(&store, &ids, 6000);
    store.close_with(false).unwrap();
    drop(store);
    let (_, inspection) = Store::inspect(dir.path()).unwrap();
    let snapshot = &inspection.snapshots[0];
    assert_eq!(
        (snapshot.lsn, snapshot.problem.as_deref()),
        (info.lsn, None)
    );
    assert!(info.bytes > 16 << 20, "{} bytes", info.bytes);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!((report.snapshot_lsn, report.records), (info.lsn, 0));
    assert_eq!(everything(&again, &ids, 6000), live);
    assert_eq!(again.stats().samples, 1500 * 3000);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_older_one_and_the_log() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    let mut names = Vec::new();
    for round in 0..3 {
        store
            .write_block(a, round * 10, &[round as f32; 10])
            .unwrap();
        names.push(store.checkpoint().unwrap().file);
    }
    store.write_block(a, 30, &[9.0; 5]).unwrap();
    let live = everything(&store, &[a], 100);
    store.close().unwrap();
    drop(store);
    // Two snapshots are kept; the first was removed with the log it needed.
    assert!(!Path::new(&names[0]).exists());
    let newest = Path::new(&names[2]);
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(newest, bytes).unwrap();
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.snapshot.as_deref(), Some(names[1].as_str()));
    assert_eq!(report.skipped_snapshots.len(), 1);
    assert_eq!(report.skipped_snapshots[0].0, names[2]);
    assert!(
        report.skipped_snapshots[0].1.contains("checksum mismatch"),
        "{report:?}"
    );
    assert_eq!(everything(&again, &[a], 100), live);
}

/// Flips one bit in the middle of `file`.
fn damage(file: &str) {
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn after_a_fallback_the_next_damaged_snapshot_still_falls_back() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &[1.0; 10]).unwrap();
    let first = store.checkpoint().unwrap().file;
    store.write_block(a, 10, &[2.0; 10]).unwrap();
    let second = store.checkpoint().unwrap().file;
    store.close().unwrap();
    drop(store);
    damage(&second);
    let (store, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.snapshot.as_deref(), Some(first.as_str()));
    // The damaged snapshot is set aside, so no checkpoint counts it as one
    // of the two kept.
    let aside = format!("{second}.broken");
    assert!(!Path::new(&second).exists() && Path::new(&aside).exists());
    store.write_block(a, 20, &[3.0; 10]).unwrap();
    let third = store.checkpoint().unwrap().file;
    let live = everything(&store, &[a], 40);
    store.close().unwrap();
    drop(store);
    assert!(
        Path::new(&first).exists(),
        "the good older snapshot was deleted"
    );
    damage(&third);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.snapshot.as_deref(), Some(first.as_str()));
    assert_eq!(everything(&again, &[a], 40), live);
}

#[test]
fn a_log_gap_behind_damaged_snapshots_names_them_in_the_error() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    let mut files = Vec::new();
    for round in 0..3 {
        store.write_block(a, round * 10, &[1.0; 10]).unwrap();
        files.push(store.checkpoint().unwrap().file);
    }
    store.close().unwrap();
    drop(store);
    // The first snapshot and the log it covered are gone; damage both kept.
    damage(&files[1]);
    damage(&files[2]);
    let Err(err) = Store::open(dir.path(), &options(SyncMode::None)) else {
        panic!("opened without a usable snapshot or the log before it");
    };
    let EngineError::Corruption { reason, .. } = err else {
        panic!("{err:?}");
    };
    assert!(
        reason.contains(&files[1]) && reason.contains(&files[2]),
        "{reason}"
    );
}

#[test]
fn writes_racing_a_checkpoint_are_in_the_snapshot_or_the_log() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let ids: Vec<u32> = (0..50)
        .map(|i| store.series("m", &[format!("s{i}")]).unwrap())
        .collect();
    let store = Arc::new(store);
    let writer = {
        let store = Arc::clone(&store);
        let ids = ids.clone();
        std::thread::spawn(move || {
            for round in 0..2000i64 {
                let values = vec![round as f32; ids.len()];
                // Overwrites the same ten slots again and again.
                store.write_tick(round % 10, &ids, &values).unwrap();
            }
        })
    };
    for _ in 0..5 {
        store.checkpoint().unwrap();
    }
    writer.join().unwrap();
    let live = everything(&store, &ids, 10);
    store.close().unwrap();
    drop(store);
    let (again, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(everything(&again, &ids, 10), live);
}

#[test]
fn a_checkpoint_holds_ticks_still_staged_when_it_begins() {
    // Ticks are staged and written into their series in batches
    // (stage.rs); the ones logged before the checkpoint's position are not
    // replayed after it, so the snapshot must hold them.
    for sync in [SyncMode::None, SyncMode::Always] {
        let dir = TempDir::new();
        let (store, _) = Store::open(dir.path(), &options(sync)).unwrap();
        store.define_metric("m", 10, Aggregation::Sum).unwrap();
        let ids: Vec<u32> = (0..100)
            .map(|i| store.series("m", &[format!("s{i}")]).unwrap())
            .collect();
        for t in 0..70 {
            let values: Vec<f32> = (0..ids.len()).map(|i| (t * 1000 + i) as f32).collect();
            store.write_tick(t as i64 * 10, &ids, &values).unwrap();
        }
        let info = store.checkpoint().unwrap();
        assert_eq!(info.lsn, 1 + 100 + 70, "{sync:?}");
        store.close_with(false).unwrap();
        drop(store);
        let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
        assert_eq!(
            (report.snapshot_lsn, report.records),
            (info.lsn, 0),
            "{sync:?}"
        );
        for (i, &id) in ids.iter().enumerate() {
            let expected: Vec<u32> = (0..70).map(|t| ((t * 1000 + i) as f32).to_bits()).collect();
            assert_eq!(bits(&again, id, 0, 700), expected, "{sync:?}: series {i}");
        }
    }
}

#[test]
fn in_always_mode_a_checkpoint_holds_every_op_logged_before_it() {
    // In `always` mode an op is applied on the apply thread after it is
    // logged and the sequencer released. A checkpoint noting the log
    // position must wait for it, or an op before the position would be in
    // neither the snapshot nor the replayed log. The op here is long to
    // apply (6,000,000 points over 30,000 series, interleaved so each point takes
    // its series' lock), and the checkpoint starts once the op's record
    // is reaching the log (the directory's files grow), so the sequencer
    // orders it after the op however slowly the writer thread started.
    let dir = TempDir::new();
    let ids: Vec<u32> = {
        let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
        store.define_metric("m", 1, Aggregation::Sum).unwrap();
        let ids = (0..30_000)
            .map(|i| store.series("m", &[format!("s{i}")]).unwrap())
            .collect();
        store.close_with(false).unwrap();
        ids
    };
    let (store, _) = Store::open(dir.path(), &options(SyncMode::Always)).unwrap();
    let rounds = 200usize;
    let series: Vec<u32> = (0..rounds).flat_map(|_| ids.iter().copied()).collect();
    let timestamps: Vec<i64> = (0..rounds as i64)
        .flat_map(|r| std::iter::repeat_n(r, ids.len()))
        .collect();
    let values: Vec<f32> = (0..series.len()).map(|i| i as f32).collect();
    let store = Arc::new(store);
    let before = file_bytes(dir.path());
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.write_points(&series, &timestamps, &values).unwrap())
    };
    while file_bytes(dir.path()) == before && !writer.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let info = store.checkpoint().unwrap();
    writer.join().unwrap();
    // LSN 1 defined the metric, the next 30,000 created the series.
    assert_eq!(
        info.lsn,
        2 + ids.len() as u64,
        "the checkpoint came before the write"
    );
    let live = everything(&store, &ids, rounds as i64);
    for (i, series) in live.iter().enumerate() {
        let expected: Vec<u32> = (0..rounds)
            .map(|r| ((r * ids.len() + i) as f32).to_bits())
            .collect();
        assert_eq!(series[5000..], expected[..], "series {i} live");
    }
    // Closing without a checkpoint: the reopened store is that snapshot
    // plus nothing, as the log after it is empty.
    store.close().unwrap();
    drop(store);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!((report.snapshot_lsn, report.records), (info.lsn, 0));
    assert!(
        everything(&again, &ids, rounds as i64) == live,
        "the snapshot missed data"
    );
}

#[test]
fn close_with_checkpoint_leaves_nothing_to_replay() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &[1.0, 2.0]).unwrap();
    store.close_with(true).unwrap();
    drop(store);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!((report.snapshot_lsn, report.records), (3, 0));
    assert_eq!(
        bits(&again, a, 0, 2),
        vec![1.0f32.to_bits(), 2.0f32.to_bits()]
    );
}

#[test]
fn closing_leaves_one_snapshot_and_none_of_the_log_it_covers() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &[1.0; 3000]).unwrap();
    store.checkpoint().unwrap();
    store.write_block(a, 3000, &[2.0; 10]).unwrap();
    store.checkpoint().unwrap();
    store.write_block(a, 3010, &[3.0; 10]).unwrap();
    let live = bits(&store, a, 0, 3100);
    store.close_with(true).unwrap();
    drop(store);
    assert_eq!(snapshot_count(dir.path()), 1);
    let (_, inspection) = Store::inspect(dir.path()).unwrap();
    let snapshot_lsn = inspection.snapshots[0].lsn;
    // Only segments after the snapshot are left, and they hold no record.
    assert!(
        inspection
            .segments
            .iter()
            .all(|s| s.first_lsn > snapshot_lsn && s.lsns.is_none()),
        "{inspection:?}"
    );
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(bits(&again, a, 0, 3100), live);
    again.close_with(true).unwrap();
    drop(again);
    // Closing again with nothing new keeps it so.
    assert_eq!(snapshot_count(dir.path()), 1);
}

#[test]
fn a_snapshot_keeps_sealed_chunks_sealed_and_reopens_them_sealed() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.set_seal_after(None);
    store.define_metric("m", 60, Aggregation::Avg).unwrap();
    let mut ids = Vec::new();
    let mut walk = 20.0f32;
    let mut x = 12345u32;
    for host in 0..20 {
        let id = store
            .series("m", &["c".to_owned(), format!("h{host}")])
            .unwrap();
        // A day of a metric with two decimals and gaps, as collectors send.
        let values: Vec<f32> = (0..1441)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                walk += ((x >> 16) % 201) as f32 / 100.0 - 1.0;
                if (x >> 8).is_multiple_of(20) {
                    f32::NAN
                } else {
                    (walk * 100.0).round() / 100.0
                }
            })
            .collect();
        store
            .write_block(id, 60 * i64::from(host), &values)
            .unwrap();
        ids.push(id);
    }
    assert_eq!(store.seal() + store.seal(), 40);
    let stats = store.stats();
    assert_eq!((stats.raw_chunks, stats.sealed_chunks), (0, 40));
    let live = everything(&store, &ids, 60 * 1500);
    let info = store.checkpoint().unwrap();
    store.close_with(false).unwrap();
    drop(store);
    // Two chunks per series, each far below its 4 KiB raw.
    assert!(
        info.bytes < 40 * CHUNK_BYTES as u64 / 2,
        "{} bytes",
        info.bytes
    );
    assert!(info.bytes as usize - stats.sealed_bytes < 16 << 10);
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.records, 0);
    let reopened = again.stats();
    assert_eq!((reopened.raw_chunks, reopened.sealed_chunks), (0, 40));
    assert_eq!(reopened.sealed_bytes, stats.sealed_bytes);
    assert_eq!(everything(&again, &ids, 60 * 1500), live);
}

#[test]
fn a_read_only_open_maps_the_snapshot_and_reads_each_chunk_when_asked() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    let b = store.series("m", &["b"]).unwrap();
    let walk: Vec<f32> = (0..5000).map(|i| ((i * 37) % 101) as f32 / 4.0).collect();
    store.write_block(a, 0, &walk).unwrap();
    store.write_block(b, 0, &walk[..2000]).unwrap();
    let live = everything(&store, &[a, b], 6000);
    let info = store.checkpoint().unwrap();
    store.close_with(false).unwrap();
    drop(store);
    let read_only = read_only();
    // A read-only open reads the catalog and index, not the chunks.
    let whole = Store::recovery_bytes(dir.path(), false);
    let mapped = Store::recovery_bytes(dir.path(), true);
    let snapshot = std::fs::read(&info.file).unwrap();
    assert_eq!(
        whole - mapped,
        info.bytes - mapped_bytes(&snapshot).unwrap()
    );
    assert!(mapped < info.bytes / 2, "{whole} {mapped}");
    // Read through a real mapping (small ranges by pread), the same.
    let file = FsStorage.read_immutable(Path::new(&info.file)).unwrap();
    assert_eq!(mapped_bytes(file.as_ref()), mapped_bytes(&snapshot));
    let (reader, _) = Store::open(dir.path(), &read_only).unwrap();
    let stats = reader.stats();
    assert_eq!(
        (stats.mapped_chunks, stats.sealed_chunks, stats.raw_chunks),
        (7, 0, 0)
    );
    assert_eq!(stats.samples, 7000);
    assert_eq!(everything(&reader, &[a, b], 6000), live);
    drop(reader);

    // Damage one chunk of series a (its third): the reader still opens,
    // reads of that chunk name the file and offset, the rest reads fine.
    let bytes = std::fs::read(&info.file).unwrap();
    let (_, inspection) = Store::inspect(dir.path()).unwrap();
    assert_eq!(inspection.snapshots[0].problem, None);
    let (series, third) = index_entries(&bytes)[2]; // series a: chunks 0, 1, 2
    assert_eq!(series, a);
    let offset = third.offset as u64;
    let mut damaged = bytes.clone();
    damaged[offset as usize + 5] ^= 0x40;
    std::fs::write(&info.file, &damaged).unwrap();
    let (reader, _) = Store::open(dir.path(), &read_only).unwrap();
    let err = reader.read(Target::Series(a), 2048, 2100).unwrap_err();
    assert_eq!(
        err,
        EngineError::Corruption {
            file: info.file.clone(),
            offset,
            lsn: None,
            reason: "chunk checksum mismatch".to_owned(),
        }
    );
    assert_eq!(bits(&reader, a, 0, 2048), live[0][5000..7048]);
    assert_eq!(bits(&reader, b, 0, 6000)[..], live[1][5000..11000]);
    drop(reader);
    // A writable open checks every chunk: it skips this snapshot and
    // replays the whole log, which it kept (one snapshot only).
    let (writer, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.snapshot, None);
    assert_eq!(report.skipped_snapshots[0].0, info.file);
    assert_eq!(everything(&writer, &[a, b], 6000), live);
}

#[test]
fn damaged_index_entries_fail_the_reads_of_their_series_only() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    let empty = store.series("m", &["empty"]).unwrap();
    let b = store.series("m", &["b"]).unwrap();
    let walk: Vec<f32> = (0..5000).map(|i| ((i * 37) % 101) as f32 / 4.0).collect();
    store.write_block(a, 0, &walk).unwrap();
    store.write_block(b, 100, &walk[..2000]).unwrap();
    let info = store.checkpoint().unwrap();
    // The log tail writes into series a after the snapshot.
    store.write_block(a, 10, &[8.0; 5]).unwrap();
    let live = everything(&store, &[a, empty, b], 6000);
    store.close_with(false).unwrap();
    drop(store);
    let read_only = read_only();
    let bytes = std::fs::read(&info.file).unwrap();
    // A read-only open reads the header, catalog, directory and end block:
    // the index entries (about 9 bytes a chunk) are not among them.
    let parts = snapshot::index_parts(&bytes);
    let catalog_and_directory = mapped_bytes(&bytes).unwrap();
    let index: usize = parts.iter().map(|p| p.1).sum();
    assert!(catalog_and_directory < (bytes.len() - index - 12) as u64 / 10);

    // One flipped bit in series a's index entries.
    let (at, len) = parts[a as usize];
    let mut damaged = bytes.clone();
    damaged[at + len / 2] ^= 0x10;
    std::fs::write(&info.file, &damaged).unwrap();
    let (reader, report) = Store::open(dir.path(), &read_only).unwrap();
    assert_eq!(report.snapshot.as_deref(), Some(info.file.as_str()));
    assert_eq!(report.records, 1);
    // Stats count the directory's 7,000 samples and the tail's five writes
    // (which found no chunk of a to land in); a's reads name the damage.
    assert_eq!(reader.stats().samples, 7005);
    let expected = EngineError::Corruption {
        file: info.file.clone(),
        offset: at as u64,
        lsn: None,
        reason: format!("index entries of series {a}: checksum mismatch"),
    };
    assert_eq!(reader.read(Target::Series(a), 0, 10).unwrap_err(), expected);
    assert_eq!(
        reader.extent(Some(Target::Series(a))).unwrap_err(),
        expected
    );
    assert_eq!(bits(&reader, b, -5000, 6000), live[2]);
    assert_eq!(bits(&reader, empty, -5000, 6000), live[1]);
    drop(reader);
    // A writable open reads the whole index, whose block checksum fails:
    // it skips this snapshot and replays the whole log, which it kept.
    let index_at = u64::from_le_bytes(bytes[bytes.len() - 16..][..8].try_into().unwrap());
    let (_, inspection) = Store::inspect(dir.path()).unwrap();
    assert_eq!(
        inspection.snapshots[0].problem.as_deref(),
        Some(format!("block checksum mismatch at offset {index_at}").as_str())
    );
    let (writer, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(report.snapshot, None);
    assert_eq!(report.skipped_snapshots[0].0, info.file);
    assert_eq!(everything(&writer, &[a, empty, b], 6000), live);
    writer.close_with(false).unwrap();
    drop(writer);

    // A damaged directory: the read-only open cannot use the snapshot.
    let directory_at = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
    let mut damaged = bytes.clone();
    damaged[directory_at as usize + 14] ^= 0x01;
    let snapshots: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    for snapshot in snapshots {
        std::fs::remove_file(snapshot).unwrap();
    }
    std::fs::write(&info.file, &damaged).unwrap();
    let (reader, report) = Store::open(dir.path(), &read_only).unwrap();
    assert_eq!(report.snapshot, None);
    assert_eq!(report.skipped_snapshots[0].0, info.file);
    assert!(
        report.skipped_snapshots[0].1.contains("checksum"),
        "{:?}",
        report.skipped_snapshots
    );
    assert_eq!(everything(&reader, &[a, empty, b], 6000), live);
}

#[test]
fn a_log_tail_that_writes_into_a_damaged_mapped_chunk_leaves_it_reported() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &[7.0; 3000]).unwrap();
    let info = store.checkpoint().unwrap();
    // The log tail writes into the first two chunks.
    store.write_block(a, 10, &[8.0; 5]).unwrap();
    store.write_block(a, 1030, &[9.0; 5]).unwrap();
    store.close_with(false).unwrap();
    drop(store);
    let mut bytes = std::fs::read(&info.file).unwrap();
    for (_, chunk) in &index_entries(&bytes.clone())[..2] {
        bytes[chunk.offset + 5] ^= 0x40;
    }
    std::fs::write(&info.file, &bytes).unwrap();
    let read_only = read_only();
    // Replaying the tail meets both damaged chunks: no panic, and reads of
    // them name the damage; the third chunk reads exactly.
    let (reader, report) = Store::open(dir.path(), &read_only).unwrap();
    assert_eq!(report.records, 2);
    for start in [0, 1024] {
        let err = reader
            .read(Target::Series(a), start, start + 10)
            .unwrap_err();
        assert!(
            matches!(&err, EngineError::Corruption { file, .. } if *file == info.file),
            "{err:?}"
        );
    }
    assert_eq!(bits(&reader, a, 2048, 3000), vec![7.0f32.to_bits(); 952]);
}

/// The bytes of the files directly in `dir`.
fn file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn snapshot_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".snap")
        })
        .count()
}

#[test]
fn a_background_checkpoint_follows_log_growth() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    let store = Arc::new(store);
    store.start_checkpoints(None, Some(64 << 10));
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    assert_eq!(snapshot_count(dir.path()), 0);
    store.write_block(a, 0, &vec![1.5; 32 << 10]).unwrap(); // 128 KiB of log
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while snapshot_count(dir.path()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.stats().failed_checkpoints, 0);
    store.close().unwrap();
    let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!((report.snapshot_lsn, report.records), (3, 0));
    assert_eq!(again.stats().samples, 32 << 10);
}

#[test]
fn closing_during_background_checkpoints_leaves_one_consistent_directory() {
    for round in 0..5 {
        let dir = TempDir::new();
        let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
        let store = Arc::new(store);
        // A checkpoint after every few KiB of log: they run all the time.
        store.start_checkpoints(None, Some(1));
        store.define_metric("m", 1, Aggregation::Sum).unwrap();
        let a = store.series("m", &["a"]).unwrap();
        // Writing goes on until a checkpoint has finished (on a loaded
        // machine the checkpoint thread may get no time at first).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut i = 0;
        while i < 200 || snapshot_count(dir.path()) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint ran while writing: {:?}",
                store.stats()
            );
            store.write_block(a, i % 200 * 8, &[i as f32; 8]).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
            i += 1;
        }
        let live = bits(&store, a, 0, 1600);
        store.close().unwrap();
        // The lock is free and nothing writes any more: a new writer opens
        // and sees exactly what the old one had.
        let (again, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
        assert_eq!(bits(&again, a, 0, 1600), live, "round {round}");
    }
}

#[test]
fn cuts_of_old_data_are_logged_and_replayed_exactly() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = store.series("m", &["a"]).unwrap();
    store.write_block(a, 0, &vec![1.0; 4096]).unwrap();
    store.drop_before(1500).unwrap();
    store.set_memory_limit(Some(3 * CHUNK_BYTES)).unwrap();
    store.write_block(a, 4096, &vec![2.0; 2048]).unwrap(); // over the limit
    let live = bits(&store, a, 0, 8192);
    assert!(store.stats().evictions >= 1);
    store.close().unwrap();
    drop(store);
    let (again, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    assert_eq!(bits(&again, a, 0, 8192), live);
}

#[test]
fn a_cut_of_some_series_is_logged_and_replayed_exactly() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    store.define_metric("m", 10, Aggregation::Sum).unwrap();
    let a = store.series("m", &["c", "a"]).unwrap();
    let b = store.series("m", &["c", "b"]).unwrap();
    let c = store.series("m", &["c", "c"]).unwrap();
    let values: Vec<f32> = (0..3000).map(|i| i as f32).collect();
    for id in [a, b, c] {
        store.write_block(id, 0, &values).unwrap();
    }
    // A whole chunk and part of the next go from a and c; b keeps all.
    store.drop_series_before(&[a, c], 12_345).unwrap();
    assert!(store.drop_series_before(&[a, 99], 10).is_err());
    assert!(store.drop_series_before(&[a], i64::MIN).is_err());
    let cut: Vec<u32> = (0..3000)
        .map(|i| if i < 1235 { f32::NAN } else { i as f32 }.to_bits())
        .collect();
    let whole: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits(&store, a, 0, 30_000), cut);
    assert_eq!(bits(&store, b, 0, 30_000), whole);
    assert_eq!(bits(&store, c, 0, 30_000), cut);
    store.close_with(false).unwrap();
    drop(store);
    // Replayed from the log (no snapshot), then from the snapshot the
    // first reopen wrote.
    for from_snapshot in [false, true] {
        let (again, report) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
        assert_eq!(report.snapshot_lsn > 0, from_snapshot);
        assert_eq!(bits(&again, a, 0, 30_000), cut);
        assert_eq!(bits(&again, b, 0, 30_000), whole);
        assert_eq!(bits(&again, c, 0, 30_000), cut);
        if !from_snapshot {
            again.checkpoint().unwrap();
        }
        again.close().unwrap();
    }
}

#[test]
fn a_reader_follows_its_writer_until_checkpoints_remove_the_log_it_needs() {
    let dir = TempDir::new();
    let (writer, _) = Store::open(dir.path(), &options(SyncMode::None)).unwrap();
    writer.define_metric("m", 1, Aggregation::Sum).unwrap();
    let a = writer.series("m", &["c", "a"]).unwrap();
    writer.write_block(a, 0, &[1.0, 2.0]).unwrap();
    writer.flush().unwrap();
    let read_only = OpenOptions {
        readonly: true,
        ..OpenOptions::default()
    };
    let (reader, opened) = Store::open(dir.path(), &read_only).unwrap();
    assert_eq!(opened.last_lsn, 3);
    assert!(writer.follow(&FsStorage, dir.path(), 3).is_err());

    writer.write_block(a, 2, &[3.0]).unwrap();
    writer.write_block(a, 0, &[-0.0]).unwrap();
    writer.flush().unwrap();
    let followed = reader.follow(&FsStorage, dir.path(), 3).unwrap().unwrap();
    assert_eq!((followed.records, followed.last_lsn), (2, 5));
    assert_eq!(bits(&reader, a, 0, 3), bits(&writer, a, 0, 3));
    let again = reader.follow(&FsStorage, dir.path(), 5).unwrap().unwrap();
    assert_eq!((again.records, again.last_lsn), (0, 5));

    // Two checkpoints: the segments before the older one's LSN go, and
    // with them the records after LSN 5.
    writer.write_block(a, 3, &[4.0]).unwrap();
    writer.checkpoint().unwrap();
    writer.write_block(a, 4, &[5.0]).unwrap();
    writer.checkpoint().unwrap();
    assert_eq!(reader.follow(&FsStorage, dir.path(), 5).unwrap(), None);
    writer.close().unwrap();
}

/// The real file system, except that the first passage of one crash point
/// reports itself and waits until the test lets it go on.
struct PauseAt {
    point: &'static str,
    reached: parking_lot::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    go: parking_lot::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl crate::engine::storage::Storage for PauseAt {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        FsStorage.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        FsStorage.list(dir)
    }
    fn create(&self, path: &Path) -> std::io::Result<Box<dyn crate::engine::storage::StorageFile>> {
        FsStorage.create(path)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        FsStorage.read(path)
    }
    fn size(&self, path: &Path) -> std::io::Result<u64> {
        FsStorage.size(path)
    }
    fn sync_file(&self, path: &Path) -> std::io::Result<()> {
        FsStorage.sync_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> std::io::Result<()> {
        FsStorage.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        FsStorage.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        FsStorage.sync_dir(dir)
    }
    fn crash_point(&self, name: &'static str) {
        if name != self.point {
            return;
        }
        if let Some(reached) = self.reached.lock().take() {
            reached.send(()).unwrap();
            self.go.lock().recv().unwrap();
        }
    }
}

#[test]
fn writes_are_acknowledged_while_a_checkpoint_copies_the_catalog() {
    use crate::engine::crash_points::CHECKPOINT_CATALOG;
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let dir = TempDir::new();
    let (reached, at_point) = channel();
    let (go, paused) = channel();
    let storage = Arc::new(PauseAt {
        point: CHECKPOINT_CATALOG,
        reached: parking_lot::Mutex::new(Some(reached)),
        go: parking_lot::Mutex::new(paused),
    });
    let (store, _) = Store::open_on(storage, dir.path(), &options(SyncMode::Always)).unwrap();
    store.define_metric("m", 10, Aggregation::Sum).unwrap();
    let a = store.series("m", &["c", "a"]).unwrap();
    store.write_block(a, 0, &[1.0, 2.0]).unwrap();
    let store = Arc::new(store);
    let checkpointing = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.checkpoint())
    };
    at_point.recv().unwrap();
    // The checkpoint has fixed its LSN and waits at the point. A write to
    // an existing series and a new series with its write must be
    // acknowledged now; a checkpoint that held writers until it finished
    // would keep them waiting until it is let go below, which happens only
    // after the writes or the (generous) deadlock guard.
    let (done, written) = channel();
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.write_block(a, 20, &[3.0]).unwrap();
            let b = store.series("m", &["c", "b"]).unwrap();
            store.write_block(b, 0, &[4.0]).unwrap();
            done.send(b).unwrap();
        })
    };
    let outcome = written.recv_timeout(std::time::Duration::from_secs(300));
    go.send(()).unwrap();
    let b = match outcome {
        Ok(b) => b,
        Err(RecvTimeoutError::Timeout) => panic!("the writes waited for the checkpoint"),
        Err(RecvTimeoutError::Disconnected) => panic!("the writer failed"),
    };
    writer.join().unwrap();
    let info = checkpointing.join().unwrap().unwrap();
    // The snapshot is of the cut: the one series that existed then.
    assert_eq!(info.series, 1);
    assert!(info.writers_held_seconds <= info.seconds);
    store.close_with(false).unwrap();
    drop(store);
    let (store, report) = Store::open(dir.path(), &options(SyncMode::Always)).unwrap();
    assert_eq!(report.snapshot_lsn, info.lsn);
    assert_eq!(
        bits(&store, a, 0, 30),
        [1.0f32, 2.0, 3.0].map(f32::to_bits).to_vec()
    );
    assert_eq!(bits(&store, b, 0, 10), vec![4.0f32.to_bits()]);
    store.close().unwrap();
}
