//! Opening with an `OpenProgress`: it counts every byte recovery reads,
//! and a cancel stops the open without changing a file or keeping the lock,
//! so the next open recovers exactly what an uncancelled one would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::engine::durable::tests::TempDir;
use crate::engine::testkit::sim_storage::SimStorage;
use crate::engine::testkit::test_model::{State, Window, dir, store_state};
use crate::engine::wal::parse_segment_name;
use crate::engine::{Aggregation, EngineError, OpenOptions, RecoveryMode, Store, SyncMode};

const SERIES: u32 = 300;
const SAMPLES: usize = 5000;
/// Slots covering everything `fill` writes.
const WINDOW: Window = Window { lo: 0, hi: 12_000 };

fn options(progress: &Arc<OpenProgress>) -> OpenOptions {
    OpenOptions {
        sync: SyncMode::None,
        segment_bytes: 4 << 20,
        progress: Some(Arc::clone(progress)),
        ..OpenOptions::default()
    }
}

fn plain() -> OpenOptions {
    OpenOptions {
        sync: SyncMode::None,
        segment_bytes: 4 << 20,
        ..OpenOptions::default()
    }
}

/// About 6 MB of series data in a snapshot (two blocks), then as much
/// again in the log after it (two segments, many progress steps), then a
/// few small writes. Returns the snapshot's LSN.
fn fill(store: &Store) -> u64 {
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let ids: Vec<u32> = (0..SERIES)
        .map(|i| store.series("m", &[format!("s{i}")]).unwrap())
        .collect();
    for &id in &ids {
        let values: Vec<f32> = (0..SAMPLES).map(|i| (id as usize * 7 + i) as f32).collect();
        store.write_block(id, 0, &values).unwrap();
    }
    let lsn = store.checkpoint().unwrap().lsn;
    for &id in &ids {
        let values: Vec<f32> = (0..SAMPLES).map(|i| -((id as usize + i) as f32)).collect();
        store
            .write_block(id, 2500 + i64::from(id), &values)
            .unwrap();
    }
    store
        .write_tick(11_000, &ids[..3], &[1.0, 2.0, 3.0])
        .unwrap();
    lsn
}

/// A store on simulated storage whose last log segment ends in a torn
/// append (garbage a crash left), so recovery would cut it.
fn torn_store() -> (Arc<SimStorage>, String) {
    let sim = Arc::new(SimStorage::new());
    let (store, _) = Store::open_on(sim.clone(), dir(), &plain()).unwrap();
    fill(&store);
    store.close().unwrap();
    let last = sim
        .files(dir())
        .into_iter()
        .rfind(|n| parse_segment_name(n).is_some())
        .unwrap();
    sim.modify(&dir().join(&last), |bytes| {
        bytes.extend_from_slice(&[0xAB; 100])
    });
    (sim, last)
}

fn recovered(sim: &Arc<SimStorage>) -> (State, crate::engine::RecoveryReport) {
    let (store, report) = Store::open_on(sim.clone(), dir(), &plain()).unwrap();
    (store_state(&store, WINDOW), report)
}

#[test]
fn progress_counts_every_byte_of_the_snapshot_and_log_it_reads() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &plain()).unwrap();
    let lsn = fill(&store);
    let live = store_state(&store, WINDOW);
    store.close().unwrap();
    drop(store);
    // What recovery must read: the snapshot and the segments after it.
    let mut expected = 0;
    let mut segments = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let len = entry.metadata().unwrap().len();
        if name.ends_with(".snap") {
            expected += len;
        } else if parse_segment_name(&name).is_some_and(|first| first > lsn) {
            expected += len;
            segments += 1;
        }
    }
    assert_eq!(segments, 2, "the log after the snapshot spans two segments");
    assert_eq!(Store::recovery_bytes(dir.path(), false), expected);
    let progress = Arc::new(OpenProgress::new());
    let (again, report) = Store::open(dir.path(), &options(&progress)).unwrap();
    assert_eq!(
        (progress.total(), progress.done(), progress.phase()),
        (expected, expected, OpenPhase::Done)
    );
    assert_eq!((report.snapshot_lsn, report.segments), (lsn, 2));
    assert_eq!(store_state(&again, WINDOW), live);
}

#[test]
fn a_skipped_damaged_snapshot_is_counted_with_the_older_one_and_the_longer_log() {
    let sim = Arc::new(SimStorage::new());
    let (store, _) = Store::open_on(sim.clone(), dir(), &plain()).unwrap();
    fill(&store);
    let newest = store.checkpoint().unwrap().file;
    store.write_tick(11_001, &[0], &[4.0]).unwrap();
    let live = store_state(&store, WINDOW);
    store.close().unwrap();
    drop(store);
    sim.modify(Path::new(&newest), |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
    });
    let sizes: u64 = sim
        .files(dir())
        .iter()
        .filter(|n| n.ends_with(".snap") || parse_segment_name(n).is_some())
        .map(|n| sim.bytes(&dir().join(n)).unwrap().len() as u64)
        .sum();
    let progress = Arc::new(OpenProgress::new());
    let (again, report) = Store::open_on(sim.clone(), dir(), &options(&progress)).unwrap();
    assert_eq!(report.skipped_snapshots.len(), 1);
    // Both snapshots and the whole log after the older one (here: all of
    // it but the segment the older snapshot's checkpoint finished).
    let before_older: u64 = sim
        .files(dir())
        .iter()
        .filter(|n| parse_segment_name(n).is_some_and(|first| first <= report.snapshot_lsn))
        .map(|n| sim.bytes(&dir().join(n)).unwrap().len() as u64)
        .sum();
    assert_eq!(progress.total(), sizes - before_older);
    assert_eq!(progress.done(), progress.total());
    assert_eq!(store_state(&again, WINDOW), live);
}

#[test]
fn a_cancel_at_any_point_changes_no_file_and_the_next_open_recovers_everything() {
    let (base, last) = torn_store();
    let (want, want_report) = recovered(&Arc::new(base.fork()));
    let torn = want_report
        .torn
        .as_ref()
        .expect("the garbage is a torn tail");
    assert!(torn.file.ends_with(&last), "{torn:?}");
    // Where an uncancelled open's counters end up.
    let probe = Arc::new(OpenProgress::new());
    let sim = Arc::new(base.fork());
    Store::open_on(sim, dir(), &options(&probe)).unwrap();
    let total = probe.total();
    assert_eq!(probe.done(), total);
    // Before anything (a flag set before the call), after the first bytes
    // (header and catalog), inside the snapshot's blocks, inside the log
    // and at its very end, where the next step would cut the torn tail.
    for cancel_at in [
        None,
        Some(1),
        Some(4 << 20),
        Some(total / 2),
        Some(total * 3 / 4),
        Some(total),
    ] {
        let sim = Arc::new(base.fork());
        let before = sim.image();
        let progress = Arc::new(OpenProgress::new());
        match cancel_at {
            None => progress.cancel(),
            Some(bytes) => progress.cancel_when_done_reaches(bytes),
        }
        let result = Store::open_on(sim.clone(), dir(), &options(&progress));
        let context = format!("cancel at {cancel_at:?} of {total} bytes");
        assert_eq!(result.err(), Some(EngineError::Cancelled), "{context}");
        assert!(progress.phase() < OpenPhase::Finishing, "{context}");
        assert!(
            progress.done() >= cancel_at.unwrap_or(0) && progress.done() <= total,
            "{context}: done {}",
            progress.done()
        );
        assert_eq!(sim.image(), before, "{context}: files changed");
        let (got, report) = recovered(&sim);
        assert_eq!(got, want, "{context}");
        assert_eq!(report.torn, want_report.torn, "{context}");
        assert_eq!(report.last_lsn, want_report.last_lsn, "{context}");
    }
}

#[test]
fn a_cancelled_point_in_time_open_neither_sets_aside_nor_cuts() {
    let (base, _) = torn_store();
    let (_, report) = recovered(&Arc::new(base.fork()));
    // Damage inside the first segment after the snapshot: point-in-time
    // recovery would set the later segments aside and cut this one.
    let first = base
        .files(dir())
        .into_iter()
        .find(|n| parse_segment_name(n).is_some_and(|lsn| lsn > report.snapshot_lsn))
        .unwrap();
    base.modify(&dir().join(&first), |bytes| bytes[100_000] ^= 1);
    let opts = |progress: &Arc<OpenProgress>| OpenOptions {
        recovery: RecoveryMode::PointInTime,
        ..options(progress)
    };
    let probe = Arc::new(OpenProgress::new());
    let (_, stopped) = Store::open_on(Arc::new(base.fork()), dir(), &opts(&probe)).unwrap();
    assert!(!stopped.set_aside.is_empty(), "{stopped:?}");
    assert_eq!(probe.done(), probe.total());
    for cancel_at in [probe.total() / 2, probe.total()] {
        let sim = Arc::new(base.fork());
        let before = sim.image();
        let progress = Arc::new(OpenProgress::new());
        progress.cancel_when_done_reaches(cancel_at);
        let result = Store::open_on(sim.clone(), dir(), &opts(&progress));
        assert_eq!(result.err(), Some(EngineError::Cancelled), "at {cancel_at}");
        assert_eq!(sim.image(), before, "at {cancel_at}");
    }
}

#[test]
fn a_cancel_after_the_changes_began_is_ignored() {
    let progress = OpenProgress::new();
    let tracker = Tracker::new(Some(&progress));
    tracker.enter(OpenPhase::Log);
    tracker.begin_changes().unwrap();
    progress.cancel();
    assert_eq!(tracker.check(), Ok(()));
    assert_eq!(tracker.advance(10), Ok(()));
    // Before the changes, the same flag stops the open.
    let early = OpenProgress::new();
    early.cancel();
    assert_eq!(Tracker::new(Some(&early)).check(), Err(Cancelled));
    assert_eq!(Tracker::new(None).check(), Ok(()));
}

/// Every file of `dir` and its bytes.
fn directory_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_cancelled_writer_open_releases_the_lock_and_leaves_the_files_as_they_were() {
    let dir = TempDir::new();
    let (store, _) = Store::open(dir.path(), &plain()).unwrap();
    fill(&store);
    let live = store_state(&store, WINDOW);
    store.close().unwrap();
    drop(store);
    // A snapshot a crash left half written: a writer's open removes it, but
    // only once it has started changing the directory.
    let stray = dir.path().join("snapshot-00000000000000999999.snap.tmp");
    std::fs::write(&stray, b"half a snapshot").unwrap();
    let before = directory_bytes(dir.path());
    for readonly in [false, true] {
        let progress = Arc::new(OpenProgress::new());
        progress.cancel_when_done_reaches(Store::recovery_bytes(dir.path(), false) / 2);
        let opts = OpenOptions {
            readonly,
            ..options(&progress)
        };
        assert_eq!(
            Store::open(dir.path(), &opts).err(),
            Some(EngineError::Cancelled)
        );
        assert_eq!(directory_bytes(dir.path()), before, "readonly {readonly}");
    }
    // The lock is free: a writer opens and finds everything.
    let (again, report) = Store::open(dir.path(), &plain()).unwrap();
    assert_eq!(report.torn, None);
    assert_eq!(store_state(&again, WINDOW), live);
    assert!(!stray.exists());
}

#[test]
fn a_reused_handle_describes_the_new_open_and_its_cancel_stops_it_first_thing() {
    let (sim, _) = torn_store();
    let progress = Arc::new(OpenProgress::new());
    let (store, _) = Store::open_on(sim.clone(), dir(), &options(&progress)).unwrap();
    store.close().unwrap();
    drop(store);
    assert_eq!(progress.phase(), OpenPhase::Done);
    let before = sim.image();
    progress.cancel();
    let result = Store::open_on(sim.clone(), dir(), &options(&progress));
    assert_eq!(result.err(), Some(EngineError::Cancelled));
    assert_eq!(
        (progress.phase(), progress.total(), progress.done()),
        (OpenPhase::Starting, 0, 0)
    );
    assert_eq!(sim.image(), before);
}
