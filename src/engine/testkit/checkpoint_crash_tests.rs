//! Crash tests of checkpoints, snapshot fallback, `drop_before` and the
//! memory limit on [`SimStorage`].
//!
//! A workload is a list of calls: ops (each one log record when nothing is
//! evicted) and checkpoints (no record). A run on a fresh simulated disk
//! crashes just before its Nth storage operation, for every N (or a sample);
//! the machine is rebooted and the store reopened, and the recovered state is
//! compared bit for bit with an independent model after a prefix of the ops
//! that holds every acknowledged op.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::snapshot::snapshot_name;
use crate::engine::testkit::sim_storage::{EIO, Fault, KeepPolicy, OpKind, Rng, SimStorage};
use crate::engine::testkit::test_model::{
    NAN_BITS, State, Step, apply, assert_same, crash, dir, empty_state, frequencies, model_apply,
    model_state, options, store_state, values, window,
};
use crate::engine::{Aggregation, EngineError, RecoveryReport, Store, SyncMode};

// ---------------------------------------------------------------------------
// Workload and model.

#[derive(Debug, Clone)]
enum Call {
    Op(Step),
    Checkpoint,
}

/// The setup ops: metrics (name, frequency, aggregation) and their series.
fn setup(metrics: &[(&'static str, i64, Aggregation)], per_metric: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut id = 0;
    for &(name, frequency, aggregation) in metrics {
        steps.push(Step::Define {
            name,
            frequency,
            aggregation,
        });
        for i in 0..per_metric {
            steps.push(Step::Series {
                metric: name,
                path: vec![format!("h{i}"), name.to_owned()],
                id,
            });
            id += 1;
        }
    }
    steps
}

/// A random write to `series` series with timestamps in `lo..=hi`.
fn random_write(rng: &mut Rng, series: u32, lo: i64, hi: i64) -> Step {
    let pick = |rng: &mut Rng| rng.below(u64::from(series)) as u32;
    match rng.below(3) {
        0 => {
            let len = if rng.chance(1, 5) {
                rng.range(100, 250)
            } else {
                rng.range(1, 40)
            };
            Step::Block {
                series: pick(rng),
                start: rng.range(lo, hi),
                values: values(rng, len as usize),
            }
        }
        1 => {
            let n = rng.range(1, i64::from(series) + 1) as usize;
            Step::Tick {
                timestamp: rng.range(lo, hi),
                series: (0..n).map(|_| pick(rng)).collect(),
                values: values(rng, n),
            }
        }
        _ => {
            let n = rng.range(1, 12) as usize;
            Step::Points {
                series: (0..n).map(|_| pick(rng)).collect(),
                timestamps: (0..n).map(|_| rng.range(lo, hi)).collect(),
                values: values(rng, n),
            }
        }
    }
}

const METRICS: [(&str, i64, Aggregation); 2] =
    [("cpu", 10, Aggregation::Sum), ("mem", 7, Aggregation::Avg)];

/// Setup, then `writes` random writes with checkpoints after the writes
/// numbered in `checkpoints_after`.
fn checkpoint_workload(seed: u64, writes: usize, checkpoints_after: &[usize]) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    let mut calls: Vec<Call> = setup(&METRICS, 2).into_iter().map(Call::Op).collect();
    for w in 1..=writes {
        calls.push(Call::Op(random_write(&mut rng, 4, -300, 2000)));
        if checkpoints_after.contains(&w) {
            calls.push(Call::Checkpoint);
        }
    }
    calls
}

/// The ops of a workload, in order (LSN i + 1 is op i when nothing is
/// evicted).
fn ops_of(calls: &[Call]) -> Vec<Step> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Op(step) => Some(step.clone()),
            Call::Checkpoint => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running a workload on a simulated disk.

fn open(sim: &Arc<SimStorage>, sync: SyncMode) -> Result<(Store, RecoveryReport), EngineError> {
    Store::open_on(sim.clone(), dir(), &options(sync))
}

/// What a run of calls was told.
#[derive(Debug, Default)]
struct Run {
    /// Ops acknowledged (Ok) before the first failure.
    acked: usize,
    /// Ops acknowledged before the last checkpoint that returned Ok.
    checkpointed: usize,
    /// Whether the first failure was an op (which may have been logged).
    op_failed: bool,
    /// Checkpoints that returned Ok.
    checkpoints: usize,
    /// Storage op counts around each checkpoint call: (before, after).
    checkpoint_ops: Vec<(u64, u64)>,
    /// The first error, if any.
    error: Option<EngineError>,
}

/// Opens a store on `sim` (if `memory_limit`, sets it), runs the calls,
/// stopping at the first failure, and returns the store (if it opened).
fn run_calls(
    sim: &Arc<SimStorage>,
    calls: &[Call],
    sync: SyncMode,
    memory_limit: Option<usize>,
    mut after_call: impl FnMut(usize, &Store),
) -> (Option<Store>, Run) {
    let mut run = Run::default();
    let store = match open(sim, sync) {
        Ok((store, _)) => store,
        Err(e) => {
            run.error = Some(e);
            return (None, run);
        }
    };
    if let Err(e) = store.set_memory_limit(memory_limit) {
        run.error = Some(e);
        return (Some(store), run);
    }
    for (i, call) in calls.iter().enumerate() {
        let result = match call {
            Call::Op(step) => apply(&store, step),
            Call::Checkpoint => {
                let before = sim.op_count();
                let result = store.checkpoint().map(|_| ());
                run.checkpoint_ops.push((before, sim.op_count()));
                result
            }
        };
        match (result, call) {
            (Ok(()), Call::Op(_)) => run.acked += 1,
            (Ok(()), Call::Checkpoint) => {
                run.checkpoints += 1;
                run.checkpointed = run.acked;
            }
            (Err(e), call) => {
                run.op_failed = matches!(call, Call::Op(_));
                run.error = Some(e);
                break;
            }
        }
        after_call(i, &store);
    }
    (Some(store), run)
}

/// Storage operations of a whole clean run, open included.
fn total_ops(calls: &[Call], sync: SyncMode, memory_limit: Option<usize>) -> (u64, Run) {
    let sim = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&sim, calls, sync, memory_limit, |_, _| {});
    assert!(run.error.is_none(), "clean run failed: {:?}", run.error);
    let ops = sim.op_count();
    drop(store);
    (ops, run)
}

/// Reopens after a crash; recovery must not fail.
fn recover(sim: &Arc<SimStorage>, context: &str) -> (Store, RecoveryReport) {
    match open(sim, SyncMode::None) {
        Ok(opened) => opened,
        Err(e) => panic!(
            "{context}: recovery failed: {e}\ncrashes: {:?}",
            sim.crash_log()
        ),
    }
}

/// The prefix length a recovery gives, checked to lie in `lo..=hi`, with the
/// state checked against the model.
fn check_recovery(
    sim: &Arc<SimStorage>,
    ops: &[Step],
    lo: usize,
    hi: usize,
    context: &str,
) -> (usize, RecoveryReport) {
    let (store, report) = recover(sim, context);
    let k = report.last_lsn as usize;
    assert!(
        lo <= k && k <= hi,
        "{context}: recovered {k} ops, expected {lo}..={hi}\nreport: {report:?}\ncrashes: {:?}",
        sim.crash_log()
    );
    assert!(
        report.skipped_snapshots.is_empty(),
        "{context}: a crash left an unusable snapshot: {:?}",
        report.skipped_snapshots
    );
    assert!(report.snapshot_lsn <= report.last_lsn, "{context}");
    let w = window(ops);
    assert_same(
        &store_state(&store, w),
        &model_state(ops, k, w),
        w,
        &format!("{context}: after {k} ops"),
    );
    store.close().unwrap();
    (k, report)
}

// ---------------------------------------------------------------------------
// 0. A failed directory sync after a snapshot's rename.

/// The snapshot may or may not survive a power cut (its name was never
/// synced), and either way recovery is exact: the checkpoint deleted
/// nothing it covers, the store stays writable (the log did not fail), and
/// what it deletes later it deletes only after a directory sync that
/// succeeded. `then_close`: the store is closed with its final checkpoint
/// right after, with nothing written in between (so that close writes no
/// snapshot and deletes what the unsynced one covers).
fn after_a_failed_directory_sync_of_a_snapshot(then_close: bool) {
    let context = format!("then close: {then_close}");
    let mut calls = checkpoint_workload(91, 40, &[10, 20]);
    let sim = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&sim, &calls, SyncMode::Always, None, |_, _| {});
    let store = store.expect("opened");
    assert!(run.error.is_none(), "{context}: {:?}", run.error);
    let before = sim.files(dir());
    // A checkpoint syncs the directory when it starts a log segment, then
    // after renaming its snapshot into place: fail the second.
    sim.inject(Fault::fail(Some(OpKind::SyncDir), 2, EIO));
    let failed = store.checkpoint().expect_err("the directory sync failed");
    assert!(
        failed.to_string().contains("syncing directory"),
        "{context}: {failed}"
    );
    let after = sim.files(dir());
    for name in &before {
        assert!(after.contains(name), "{context}: {name} was deleted");
    }
    let lsn = ops_of(&calls).len() as u64;
    assert!(
        after.contains(&snapshot_name(lsn)),
        "{context}: the snapshot was not renamed: {after:?}"
    );
    if then_close {
        store.close_with(true).expect("closing");
    } else {
        // Not poisoned: writes go on.
        let extra = Step::Block {
            series: 1,
            start: 30,
            values: vec![4.5, -1.0],
        };
        apply(&store, &extra).expect("a write after the failed checkpoint");
        calls.push(Call::Op(extra));
    }
    let ops = ops_of(&calls);
    crash(&sim, Some(store), KeepPolicy::Synced);
    check_recovery(&sim, &ops, ops.len(), ops.len(), &context);
}

#[test]
fn a_failed_directory_sync_after_a_snapshot_rename_deletes_nothing_it_covers() {
    after_a_failed_directory_sync_of_a_snapshot(false);
    after_a_failed_directory_sync_of_a_snapshot(true);
}

// ---------------------------------------------------------------------------
// 1. Crashes anywhere in a run with checkpoints.

#[test]
fn a_crash_at_any_point_of_a_checkpoint_recovers_the_exact_state() {
    let calls = checkpoint_workload(1, 70, &[20, 40, 55]);
    let ops = ops_of(&calls);
    let (total, clean) = total_ops(&calls, SyncMode::Always, None);
    assert_eq!(clean.checkpoints, 3);
    // The reference run really deleted a snapshot and log segments.
    {
        let sim = Arc::new(SimStorage::new());
        let (store, _) = run_calls(&sim, &calls, SyncMode::Always, None, |_, _| {});
        let files = sim.files(dir());
        let snaps = files.iter().filter(|n| n.ends_with(".snap")).count();
        assert_eq!(snaps, 2, "{files:?}");
        assert!(
            !files.iter().any(|n| n == &crate::engine::segment_name(1)),
            "the first log segment was never deleted: {files:?}"
        );
        drop(store);
    }
    // What kind of operation each crash came before: every step of a
    // checkpoint must be hit.
    let mut hit: BTreeMap<&str, usize> = BTreeMap::new();
    for n in 1..=total {
        for policy in [
            KeepPolicy::Synced,
            KeepPolicy::Everything,
            KeepPolicy::Random(n),
        ] {
            let context = format!("crash before op {n} of {total}, {policy:?}");
            let sim = Arc::new(SimStorage::new());
            sim.inject(Fault::crash_before(None, n, policy));
            let (store, run) = run_calls(&sim, &calls, SyncMode::Always, None, |_, _| {});
            assert!(sim.is_down(), "{context}: the crash never came");
            let error = run.error.as_ref().expect("a crash fails some call");
            assert!(
                matches!(
                    error,
                    EngineError::Io { errno: Some(5), .. } | EngineError::Poisoned { .. }
                ),
                "{context}: {error:?}"
            );
            let log = sim.crash_log().join("\n");
            let in_checkpoint = clean
                .checkpoint_ops
                .iter()
                .any(|&(before, after)| before < n && n <= after);
            for (what, kind, part) in [
                ("snapshot create", "Create", ".snap.tmp"),
                ("snapshot append", "Append", ".snap.tmp"),
                ("snapshot sync", "SyncData", ".snap.tmp"),
                ("snapshot rename", "Rename", ".snap.tmp"),
                ("old snapshot remove", "Remove", ".snap:"),
                ("segment remove", "Remove", ".log:"),
                ("segment create", "Create", ".log:"),
            ] {
                if in_checkpoint && log.contains(&format!("before {kind} ")) && log.contains(part) {
                    *hit.entry(what).or_default() += 1;
                }
            }
            crash(&sim, store, policy);
            // always mode: every acknowledged op is durable; the failed op
            // may or may not have been logged.
            let hi = run.acked + usize::from(run.op_failed);
            check_recovery(&sim, &ops, run.acked, hi, &context);
        }
    }
    for what in [
        "snapshot create",
        "snapshot append",
        "snapshot sync",
        "snapshot rename",
        "old snapshot remove",
        "segment remove",
        "segment create",
    ] {
        assert!(
            hit.get(what).copied().unwrap_or(0) > 0,
            "no crash at {what}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Crashes during recovery.

// Regression: recovery once replayed unsynced records from the page cache
// (a process killed before its sync) and started a new segment without
// syncing the old one, so a later power cut left a gap ("segment starts at
// LSN 22, but LSN 1 was next") and every open refused the store. Recovery
// now syncs the segments it replayed before writing after them.
#[test]
fn a_crash_during_recovery_then_recovering_again_gives_the_same_state() {
    let calls = checkpoint_workload(2, 45, &[12, 24, 36]);
    let ops = ops_of(&calls);
    // `none` mode leaves unsynced log records around when a checkpoint
    // starts, which a process crash keeps and a power cut loses.
    let sync = SyncMode::None;
    let (_, clean) = total_ops(&calls, sync, None);
    assert_eq!(clean.checkpoint_ops.len(), 3);
    // Bases: a crash before every storage op of the third checkpoint, and
    // before the first op of the first two.
    let mut crash_points: Vec<u64> = clean.checkpoint_ops[..2]
        .iter()
        .map(|&(before, _)| before + 1)
        .collect();
    let (third_start, third_end) = clean.checkpoint_ops[2];
    crash_points.extend(third_start + 1..=third_end);
    let mut runs = 0;
    for &n in &crash_points {
        for policy in [KeepPolicy::Synced, KeepPolicy::Everything] {
            let base_context = format!("checkpoint crash before op {n}, {policy:?}");
            let base = Arc::new(SimStorage::new());
            base.inject(Fault::crash_before(None, n, policy));
            let (store, run) = run_calls(&base, &calls, sync, None, |_, _| {});
            assert!(base.is_down(), "{base_context}: no crash");
            crash(&base, store, policy);
            // A checkpoint that returned Ok made its ops durable.
            let lo = run.checkpointed;
            let hi = run.acked + usize::from(run.op_failed);
            // A clean recovery, and one after a power cut at rest.
            let (k_live, _) = check_recovery(
                &Arc::new(base.fork()),
                &ops,
                lo,
                hi,
                &format!("{base_context}, clean recovery"),
            );
            let cut = Arc::new(base.fork());
            cut.crash(KeepPolicy::Synced);
            cut.reboot();
            let (k_cut, _) = check_recovery(
                &cut,
                &ops,
                lo,
                k_live,
                &format!("{base_context}, power cut at rest"),
            );
            for m in 1u64.. {
                let mut fired = false;
                // A torn power cut at every other point, to save time.
                let torn = (m % 2 == 1).then_some(KeepPolicy::Random(m));
                for second in [KeepPolicy::Synced, KeepPolicy::Everything]
                    .into_iter()
                    .chain(torn)
                {
                    let context =
                        format!("{base_context}; recovery crash before op {m}, {second:?}");
                    let sim = Arc::new(base.fork());
                    sim.inject(Fault::crash_before(None, m, second));
                    let opened = open(&sim, SyncMode::None);
                    fired |= sim.fired() > 0;
                    let store = match opened {
                        Ok((store, report)) => {
                            assert_eq!(sim.fired(), 0, "{context}: recovery hid a crash");
                            assert_eq!(report.last_lsn as usize, k_live, "{context}");
                            // The recovery completed: crash right after it.
                            Some(store)
                        }
                        Err(e) => {
                            assert!(sim.fired() > 0, "{context}: recovery failed: {e}");
                            assert!(
                                matches!(e, EngineError::Io { errno: Some(5), .. }),
                                "{context}: {e:?}"
                            );
                            None
                        }
                    };
                    crash(&sim, store, second);
                    // What a crash keeps of the unsynced data decides between
                    // the two; a process crash keeps it all.
                    let lo = if second == KeepPolicy::Everything {
                        k_live
                    } else {
                        k_cut
                    };
                    let (k, _) = check_recovery(&sim, &ops, lo, k_live, &context);
                    // And a third recovery (after a power cut) changes nothing.
                    if second == KeepPolicy::Synced {
                        sim.crash(KeepPolicy::Synced);
                        sim.reboot();
                        check_recovery(&sim, &ops, k, k, &format!("{context}, again"));
                    }
                    runs += 1;
                }
                if !fired {
                    break;
                }
            }
        }
    }
    assert!(runs > 300, "only {runs} runs");
}

// ---------------------------------------------------------------------------
// 3. A damaged newest snapshot.

#[test]
fn a_damaged_newest_snapshot_after_log_deletion_still_recovers_exactly() {
    let calls = checkpoint_workload(3, 60, &[15, 30, 45]);
    let ops = ops_of(&calls);
    let w = window(&ops);
    let base = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&base, &calls, SyncMode::Always, None, |_, _| {});
    assert!(run.error.is_none() && run.checkpoints == 3);
    crash(&base, store, KeepPolicy::Synced);
    let mut snaps: Vec<String> = base
        .durable_files(dir())
        .into_iter()
        .filter(|n| n.ends_with(".snap"))
        .collect();
    snaps.sort();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let (older, newest) = (snaps[0].clone(), snaps[1].clone());
    // The log before the older snapshot is gone: without a usable snapshot
    // the store could not be recovered, so the fallback is really used.
    assert!(
        !base.files(dir()).contains(&crate::engine::segment_name(1)),
        "no log segment was deleted"
    );
    // Undamaged, the newest snapshot is used.
    {
        let sim = Arc::new(base.fork());
        let (_, report) = check_recovery(&sim, &ops, ops.len(), ops.len(), "undamaged");
        assert_eq!(
            report.snapshot.as_deref(),
            Some(dir().join(&newest).display().to_string().as_str())
        );
    }
    let newest_path = dir().join(&newest);
    let len = base.bytes(&newest_path).unwrap().len();
    // About 80 bits spread over the whole file.
    let mut bits: Vec<usize> = (0..len * 8).step_by(len * 8 / 80 + 1).collect();
    // Header, catalog block header, the last byte (end block).
    bits.extend([0, 100, 8 * 16, 8 * 33, len * 8 - 1]);
    for bit in bits {
        let context = format!("bit {bit} of {newest} flipped");
        let sim = Arc::new(base.fork());
        sim.flip_bit(&newest_path, bit);
        let (store, report) = recover(&sim, &context);
        assert_eq!(
            report
                .skipped_snapshots
                .iter()
                .map(|s| s.0.clone())
                .collect::<Vec<_>>(),
            vec![newest_path.display().to_string()],
            "{context}: {report:?}"
        );
        assert_eq!(
            report.snapshot.as_deref(),
            Some(dir().join(&older).display().to_string().as_str()),
            "{context}"
        );
        assert_eq!(report.last_lsn as usize, ops.len(), "{context}");
        assert!(report.records > 0, "{context}: nothing replayed");
        assert_same(
            &store_state(&store, w),
            &model_state(&ops, ops.len(), w),
            w,
            &context,
        );
        drop(store);
    }
}

// ---------------------------------------------------------------------------
// 4. drop_before and the memory limit.

/// Writes marching forward in time, with `drop_before` cuts behind them and
/// a few checkpoints.
fn aging_workload(seed: u64, writes: usize) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    let metrics = [
        ("fast", 1, Aggregation::Sum),
        ("slow", 10, Aggregation::Avg),
    ];
    let mut calls: Vec<Call> = setup(&metrics, 2).into_iter().map(Call::Op).collect();
    let mut cursor = 0;
    for w in 1..=writes {
        cursor += rng.range(100, 400);
        let step = if rng.chance(1, 4) {
            let len = rng.range(200, 800) as usize;
            Step::Block {
                series: rng.below(2) as u32,
                start: cursor,
                values: values(&mut rng, len),
            }
        } else {
            random_write(&mut rng, 4, cursor - 1500, cursor + 200)
        };
        calls.push(Call::Op(step));
        if w % 12 == 0 {
            calls.push(Call::Op(Step::DropBefore {
                before: cursor - rng.range(1000, 3000),
            }));
        }
        if w % 12 == 6 {
            // A cut of some series only (the network API's /api/free).
            let series: Vec<u32> = (0..4).filter(|_| rng.chance(1, 2)).collect();
            calls.push(Call::Op(Step::DropSeriesBefore {
                series,
                before: cursor - rng.range(200, 1500),
            }));
        }
        if w % 25 == 0 {
            calls.push(Call::Checkpoint);
        }
    }
    calls
}

#[test]
fn drop_before_and_eviction_survive_crashes() {
    let calls = aging_workload(4, 70);
    let ops = ops_of(&calls);
    let w = window(&ops);
    let freqs = frequencies(&ops);
    let limit = 10 * crate::engine::CHUNK_BYTES;
    // The reference run: the live state after every LSN. A write the memory
    // limit follows with an eviction takes two LSNs; the state between them
    // is the model's (the write applied to the state before it).
    let mut states: BTreeMap<u64, State> = BTreeMap::new();
    states.insert(0, empty_state());
    let mut lsn = 0u64;
    let mut evictions = 0u64;
    let mut explicit_drops = 0;
    let sim = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&sim, &calls, SyncMode::Always, Some(limit), |i, store| {
        let Call::Op(step) = &calls[i] else {
            return;
        };
        let mut want = states[&lsn].clone();
        model_apply(&mut want, step, &freqs, w);
        let live = store_state(store, w);
        let now = store.stats().evictions;
        let context = format!("reference call {i}");
        lsn += 1;
        explicit_drops += usize::from(matches!(step, Step::DropBefore { .. }));
        if now == evictions {
            assert_same(&live, &want, w, &context);
        } else {
            assert_eq!(now, evictions + 1, "{context}: one eviction per write");
            evictions = now;
            // The eviction is a time cut: everything older than the newest
            // value it dropped is gone, nothing newer changed.
            let mut newest_dropped = None;
            for (s, (l, m)) in live.values.iter().zip(&want.values).enumerate() {
                for (i, (lb, mb)) in l.iter().zip(m).enumerate() {
                    if lb != mb {
                        assert_eq!(*lb, NAN_BITS, "{context}: eviction changed a value");
                        let t = (w.lo + i as i64) * freqs[s];
                        newest_dropped = newest_dropped.max(Some(t));
                    }
                }
            }
            let mut cut = want.clone();
            if let Some(t) = newest_dropped {
                model_apply(&mut cut, &Step::DropBefore { before: t + 1 }, &freqs, w);
            }
            assert_same(&live, &cut, w, &format!("{context}: eviction as a cut"));
            states.insert(lsn, want);
            lsn += 1;
        }
        states.insert(lsn, live);
    });
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(evictions >= 5, "only {evictions} evictions");
    assert!(explicit_drops >= 5 && run.checkpoints >= 2);
    let total = sim.op_count();
    drop(store);
    // The log holds exactly the LSNs counted.
    let (store, report) = recover(&sim, "after the reference run");
    assert_eq!(report.last_lsn, lsn);
    assert_same(
        &store_state(&store, w),
        &states[&lsn],
        w,
        "reference reopen",
    );
    drop(store);

    // LSN reached after each call of a clean run (by call index).
    let mut lsn_after_call = Vec::new();
    {
        let mut at = 0u64;
        let mut evicted = 0u64;
        let sim = Arc::new(SimStorage::new());
        let (store, _) = run_calls(&sim, &calls, SyncMode::Always, Some(limit), |i, store| {
            if let Call::Op(_) = calls[i] {
                at += 1;
            }
            let now = store.stats().evictions;
            at += now - evicted;
            evicted = now;
            lsn_after_call.push(at);
        });
        drop(store);
    }
    assert_eq!(lsn_after_call.last().copied(), Some(lsn));

    for n in (1..=total).step_by(3) {
        for policy in [
            KeepPolicy::Synced,
            KeepPolicy::Everything,
            KeepPolicy::Random(n),
        ] {
            let context = format!("crash before op {n} of {total}, {policy:?}");
            let sim = Arc::new(SimStorage::new());
            sim.inject(Fault::crash_before(None, n, policy));
            let mut done = 0usize;
            let (store, run) = run_calls(&sim, &calls, SyncMode::Always, Some(limit), |_, _| {
                done += 1;
            });
            assert!(sim.is_down(), "{context}: no crash");
            let opened = store.is_some();
            crash(&sim, store, policy);
            // Calls that returned Ok (before the first failure): their LSNs
            // are durable; the failed call's records may or may not be.
            let acked_lsn = if done == 0 {
                0
            } else {
                lsn_after_call[done - 1]
            };
            let failed_lsn = match (&run.error, calls.get(done)) {
                (Some(_), Some(Call::Op(_))) if opened => lsn_after_call[done],
                _ => acked_lsn,
            };
            let (store, report) = recover(&sim, &context);
            let k = report.last_lsn;
            assert!(
                acked_lsn <= k && k <= failed_lsn,
                "{context}: recovered LSN {k}, expected {acked_lsn}..={failed_lsn}"
            );
            assert!(report.skipped_snapshots.is_empty(), "{context}");
            assert_same(
                &store_state(&store, w),
                &states[&k],
                w,
                &format!("{context}: at LSN {k}"),
            );
            drop(store);
        }
    }
}

// The minimal form of the regression above: `always` mode promises a power
// cut loses nothing acknowledged, also right after recovering from a killed
// `none`-mode writer whose records were never synced.
#[test]
fn a_power_cut_after_recovering_from_a_process_crash_keeps_acknowledged_writes() {
    let ops = ops_of(&checkpoint_workload(5, 0, &[]));
    let sim = Arc::new(SimStorage::new());
    let (store, _) = open(&sim, SyncMode::None).unwrap();
    for step in &ops {
        apply(&store, step).unwrap();
    }
    assert!(sim.unsynced_bytes() > 0);
    // kill -9: the kernel keeps the unsynced records.
    crash(&sim, Some(store), KeepPolicy::Everything);
    let (store, report) = open(&sim, SyncMode::Always).unwrap();
    assert_eq!(report.last_lsn as usize, ops.len());
    let more = Step::Block {
        series: 0,
        start: 0,
        values: vec![1.5, 2.5],
    };
    apply(&store, &more).unwrap();
    // A power cut after the acknowledged (always mode) write.
    crash(&sim, Some(store), KeepPolicy::Synced);
    let mut all = ops.clone();
    all.push(more);
    check_recovery(&sim, &all, all.len(), all.len(), "power cut after recovery");
}

#[test]
fn the_model_agrees_with_an_in_memory_store_across_a_drop() {
    // The model's cut: slot k of frequency f goes iff k * f < before.
    let ops = vec![
        Step::Define {
            name: "m",
            frequency: 10,
            aggregation: Aggregation::Sum,
        },
        Step::Series {
            metric: "m",
            path: vec!["a".to_owned()],
            id: 0,
        },
        Step::Block {
            series: 0,
            start: 0,
            values: vec![1.0, 2.0, 3.0],
        },
        Step::DropBefore { before: 11 },
    ];
    let w = window(&ops);
    let state = model_state(&ops, ops.len(), w);
    assert_eq!(state.samples, 1);
    let store = Store::new(crate::engine::TimeUnit::Seconds);
    for step in &ops {
        apply(&store, step).unwrap();
    }
    assert_same(&store_state(&store, w), &state, w, "in memory");
}

// ---------------------------------------------------------------------------
// 7. Named crash points (storage::crash_points): a crash at each moment
// between the steps of a checkpoint, a segment rotation and a recovery.

use crate::engine::crash_points::{
    ALL, CHECKPOINT_CATALOG, LOG_TRUNCATED, LOG_TRUNCATING, RECOVERY_LOADED, RECOVERY_REPLAYED,
    RECOVERY_SYNCED, SEGMENT_CREATED, SEGMENT_HEADER_SYNCED, SNAPSHOT_BLOCK, SNAPSHOT_PUBLISHED,
    SNAPSHOT_RENAMED, SNAPSHOT_SYNCED,
};

const RECOVERY_POINTS: [&str; 3] = [RECOVERY_LOADED, RECOVERY_REPLAYED, RECOVERY_SYNCED];

/// A store left by a killed `always`-mode writer (so every op is durable)
/// whose last segment ends in garbage, and the op count it acknowledged.
fn killed_store_with_torn_tail(calls: &[Call]) -> (Arc<SimStorage>, usize) {
    let base = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&base, calls, SyncMode::Always, None, |_, _| {});
    assert!(run.error.is_none(), "{:?}", run.error);
    crash(&base, store, KeepPolicy::Everything);
    let last = base
        .files(dir())
        .into_iter()
        .rfind(|n| n.ends_with(".log"))
        .expect("a log segment");
    base.append_at_rest(&dir().join(last), &[0xAB; 37]);
    (base, run.acked)
}

#[test]
fn every_named_crash_point_is_passed_by_checkpoints_rotations_and_recovery() {
    let calls = checkpoint_workload(7, 60, &[15, 30, 45]);
    let sim = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&sim, &calls, SyncMode::Always, None, |_, _| {});
    assert!(run.error.is_none() && run.checkpoints == 3, "{run:?}");
    drop(store);
    let (base, _) = killed_store_with_torn_tail(&calls);
    let (recovered, report) = recover(&base, "recovery");
    assert!(report.torn.is_some(), "the garbage tail was not cut");
    drop(recovered);
    for point in ALL {
        let passed = if RECOVERY_POINTS.contains(&point) {
            base.passages(point)
        } else {
            sim.passages(point)
        };
        assert!(passed > 0, "{point} never passed");
    }
    // Three checkpoints write several blocks each and delete old files.
    assert!(sim.passages(SNAPSHOT_BLOCK) >= 9);
    assert_eq!(sim.passages(SNAPSHOT_PUBLISHED), 3);
    assert!(sim.passages(LOG_TRUNCATING) >= 2);
}

#[test]
fn a_crash_at_each_named_point_of_writing_recovers_the_exact_state() {
    let calls = checkpoint_workload(8, 60, &[15, 30, 45]);
    let ops = ops_of(&calls);
    let clean = Arc::new(SimStorage::new());
    let (store, run) = run_calls(&clean, &calls, SyncMode::Always, None, |_, _| {});
    assert!(run.error.is_none(), "{:?}", run.error);
    drop(store);
    let mut runs = 0;
    for point in ALL.into_iter().filter(|p| !RECOVERY_POINTS.contains(p)) {
        let total = clean.passages(point);
        for nth in 1..=total {
            for policy in [
                KeepPolicy::Synced,
                KeepPolicy::Everything,
                KeepPolicy::Random(nth),
            ] {
                let context = format!("crash at {point} (passage {nth} of {total}), {policy:?}");
                let sim = Arc::new(SimStorage::new());
                sim.crash_at_point(point, nth, policy);
                let (store, run) = run_calls(&sim, &calls, SyncMode::Always, None, |_, _| {});
                assert!(sim.is_down(), "{context}: the crash never came");
                let in_op = run.op_failed;
                crash(&sim, store, policy);
                // `always` mode: every acknowledged op is durable; the op
                // that was cut may or may not have been logged.
                let (_, report) = check_recovery(
                    &sim,
                    &ops,
                    run.acked,
                    run.acked + usize::from(in_op),
                    &context,
                );
                // Which snapshot recovery started from: the interrupted
                // checkpoint's (it covers every op acknowledged before it)
                // once its rename is durable, else the one before.
                let published = match point {
                    CHECKPOINT_CATALOG
                    | SNAPSHOT_BLOCK
                    | SNAPSHOT_SYNCED
                    | SEGMENT_CREATED
                    | SEGMENT_HEADER_SYNCED => false,
                    SNAPSHOT_RENAMED => policy == KeepPolicy::Everything,
                    SNAPSHOT_PUBLISHED | LOG_TRUNCATING | LOG_TRUNCATED => true,
                    other => unreachable!("{other}"),
                };
                let expected = if published {
                    run.acked
                } else {
                    run.checkpointed
                };
                assert_eq!(report.snapshot_lsn as usize, expected, "{context}");
                assert_eq!(
                    report.snapshot.is_some(),
                    expected > 0,
                    "{context}: {report:?}"
                );
                let files = sim.files(dir());
                assert!(
                    !files.iter().any(|n| n.ends_with(".tmp")),
                    "{context}: recovery left a temporary file: {files:?}"
                );
                runs += 1;
            }
        }
    }
    assert!(runs > 60, "only {runs} runs");
}

#[test]
fn a_crash_at_each_named_point_of_recovery_then_recovering_again_gives_the_same_state() {
    let calls = checkpoint_workload(9, 50, &[20, 35]);
    let ops = ops_of(&calls);
    let (base, acked) = killed_store_with_torn_tail(&calls);
    let (k, reference) = check_recovery(&Arc::new(base.fork()), &ops, acked, acked, "reference");
    assert!(reference.torn.is_some(), "{reference:?}");
    for point in RECOVERY_POINTS {
        for policy in [
            KeepPolicy::Synced,
            KeepPolicy::Everything,
            KeepPolicy::Random(3),
        ] {
            let context = format!("recovery crash at {point}, {policy:?}");
            let sim = Arc::new(base.fork());
            sim.crash_at_point(point, 1, policy);
            let error = open(&sim, SyncMode::None)
                .err()
                .unwrap_or_else(|| panic!("{context}: recovery did not see its crash"));
            assert!(
                matches!(error, EngineError::Io { errno: Some(5), .. }),
                "{context}: {error:?}"
            );
            assert_eq!(sim.passages(point), 1, "{context}");
            crash(&sim, None, policy);
            let (again, report) = check_recovery(&sim, &ops, k, k, &context);
            assert_eq!(again, k, "{context}");
            assert_eq!(report.snapshot_lsn, reference.snapshot_lsn, "{context}");
        }
    }
}

// ---------------------------------------------------------------------------
// 8. Named crash points in a real process on the real file system (cargo
// feature `crash-points`): the process is killed with SIGKILL at the point.

#[cfg(feature = "crash-points")]
mod real_process {
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::engine::durable::tests::TempDir;

    const CHILD: &str = "engine::testkit::checkpoint_crash_tests::real_process::crash_point_child";

    fn workload() -> Vec<Call> {
        checkpoint_workload(11, 80, &[20, 40, 60])
    }

    /// Run by the parent test in a child process: writes the workload to
    /// the directory in METRICSTORE_CRASH_DIR and prints one line per
    /// acknowledged op, until the armed crash point kills it.
    #[test]
    #[ignore = "the child half of a_real_process_killed_at_each_named_point_loses_nothing"]
    fn crash_point_child() {
        let dir = std::env::var("METRICSTORE_CRASH_DIR").expect("run by the parent test");
        let (store, _) = Store::open(Path::new(&dir), &options(SyncMode::Always)).unwrap();
        let mut out = std::io::stdout().lock();
        for call in workload() {
            match call {
                Call::Op(step) => {
                    apply(&store, &step).unwrap();
                    writeln!(out, "ack").unwrap();
                    out.flush().unwrap();
                }
                Call::Checkpoint => {
                    store.checkpoint().unwrap();
                }
            }
        }
        store.close_with(true).unwrap();
        writeln!(out, "done").unwrap();
    }

    /// Runs the child half in a new process with `point` armed; returns
    /// the ops it acknowledged and whether SIGKILL ended it.
    fn run_child(dir: &Path, point: &str) -> (usize, bool) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD, "--exact", "--ignored", "--nocapture", "-q"])
            .env("METRICSTORE_CRASH_DIR", dir)
            .env("METRICSTORE_CRASH_POINT", point)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acked = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .filter(|line| line == "ack")
            .count();
        let status = child.wait().unwrap();
        (acked, status.signal() == Some(libc::SIGKILL))
    }

    #[test]
    fn a_real_process_killed_at_each_named_point_loses_nothing() {
        let ops = ops_of(&workload());
        let w = window(&ops);
        for point in ALL {
            let context = format!("killed at {point}");
            let temp = TempDir::new();
            let acked = if RECOVERY_POINTS.contains(&point) {
                // A first child is killed as it rotates to its third
                // segment; a second one is killed recovering from that.
                let (acked, killed) = run_child(temp.path(), &format!("{SEGMENT_HEADER_SYNCED}:3"));
                assert!(
                    killed && acked > 0,
                    "{context}: the first child was not killed"
                );
                let (again, killed) = run_child(temp.path(), point);
                assert!(killed && again == 0, "{context}: recovery was not killed");
                acked
            } else {
                let nth = if point == SNAPSHOT_BLOCK { 3 } else { 1 };
                let (acked, killed) = run_child(temp.path(), &format!("{point}:{nth}"));
                assert!(killed, "{context}: the child was not killed");
                acked
            };
            let (store, report) = Store::open(temp.path(), &options(SyncMode::Always)).unwrap();
            let k = report.last_lsn as usize;
            // `always` mode: every acknowledged op is durable; the op the
            // kill cut short may or may not have been logged.
            assert!(
                k == acked || k == acked + 1,
                "{context}: recovered {k} ops, {acked} acknowledged\n{report:?}"
            );
            assert_same(
                &store_state(&store, w),
                &model_state(&ops, k, w),
                w,
                &context,
            );
            store.close_with(false).unwrap();
        }
    }
}
