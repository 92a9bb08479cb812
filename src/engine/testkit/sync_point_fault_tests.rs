//! An I/O error at every sync point, in order (docs/guarantees.md,
//! "Failures").
//!
//! A clean run of a workload (open, writes, flushes, checkpoints, a closing
//! checkpoint) on [`SimStorage`] is traced: every storage operation that
//! writes or syncs (creating a file, appending, syncing a file or a
//! directory, renaming, removing, truncating), with the call it belongs to.
//! Then, for every k, the same workload runs again with the k-th of those
//! operations failing once with EIO, and the test checks what the contract
//! says of that moment:
//! - in an op, a flush, or the log's part of a checkpoint (finishing the
//!   current segment and starting the next), the call raises the I/O error
//!   and the store is poisoned: every later write, flush and checkpoint is
//!   refused;
//! - in the snapshot's part of a checkpoint (its temporary file, the rename,
//!   the directory sync after it, removing what it made unneeded), the call
//!   raises the I/O error and the store stays writable: every later call
//!   succeeds;
//! - and in every case nothing acknowledged is lost: reopening after a
//!   process crash, and after a power cut, recovers exactly a prefix of the
//!   ops that holds every acknowledged op (every durable one, after a power
//!   cut), bit for bit.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::engine::storage::{Storage, StorageFile};
use crate::engine::testkit::sim_storage::{EIO, KeepPolicy, OpKind, Rng, SimStorage};
use crate::engine::testkit::test_model::{
    Step, apply, assert_same, dir, model_state, options, store_state, values, window,
};
use crate::engine::{Aggregation, EngineError, RecoveryReport, Store, SyncMode};

// ---------------------------------------------------------------------------
// The workload.

/// One call of a workload.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    Op(Step),
    Flush,
    Checkpoint,
}

/// Two metrics with two series each, then `writes` random writes with a
/// flush and checkpoints among them: enough log for several segments of
/// [`SEGMENT_BYTES`], and three checkpoints, so the last ones delete an old
/// snapshot and old segments.
pub(crate) fn mixed_workload(seed: u64, writes: usize) -> Vec<Call> {
    let mut rng = Rng::new(seed);
    let mut calls = Vec::new();
    let mut id = 0;
    for (name, frequency, aggregation) in
        [("cpu", 10, Aggregation::Sum), ("mem", 7, Aggregation::Avg)]
    {
        calls.push(Call::Op(Step::Define {
            name,
            frequency,
            aggregation,
        }));
        for host in ["h0", "h1"] {
            calls.push(Call::Op(Step::Series {
                metric: name,
                path: vec![host.to_owned(), name.to_owned()],
                id,
            }));
            id += 1;
        }
    }
    let pick = |rng: &mut Rng| rng.below(4) as u32;
    for w in 1..=writes {
        let step = match rng.below(3) {
            0 => {
                let len = if rng.chance(1, 4) {
                    rng.range(100, 300)
                } else {
                    rng.range(1, 30)
                };
                Step::Block {
                    series: pick(&mut rng),
                    start: rng.range(-200, 3000),
                    values: values(&mut rng, len as usize),
                }
            }
            1 => {
                let n = rng.range(1, 4) as usize;
                Step::Tick {
                    timestamp: rng.range(-200, 3000),
                    series: (0..n).map(|_| pick(&mut rng)).collect(),
                    values: values(&mut rng, n),
                }
            }
            _ => {
                let n = rng.range(1, 10) as usize;
                Step::Points {
                    series: (0..n).map(|_| pick(&mut rng)).collect(),
                    timestamps: (0..n).map(|_| rng.range(-200, 3000)).collect(),
                    values: values(&mut rng, n),
                }
            }
        };
        calls.push(Call::Op(step));
        if w == writes / 5 || w == writes * 3 / 5 {
            calls.push(Call::Flush);
        }
        if w == writes / 4 || w == writes / 2 || w == writes * 3 / 4 {
            calls.push(Call::Checkpoint);
        }
    }
    calls
}

pub(crate) fn ops_of(calls: &[Call]) -> Vec<Step> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Op(step) => Some(step.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// A storage that traces the operations that write or sync, and fails one.

/// Which call of the workload an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Call `i` of the workload.
    Call(usize),
    /// `close_with(true)`: the closing checkpoint, then the last sync.
    Close,
    /// After the test is done with the store (dropping it).
    After,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Point {
    kind: OpKind,
    path: String,
    phase: Phase,
}

struct TraceState {
    points: Vec<Point>,
    phase: Phase,
    /// The index (in `points`) of the operation to fail with EIO.
    fail_at: Option<usize>,
    failed: Option<Point>,
}

#[derive(Clone)]
struct Traced {
    sim: Arc<SimStorage>,
    state: Arc<Mutex<TraceState>>,
}

impl Traced {
    fn new(sim: Arc<SimStorage>, fail_at: Option<usize>) -> Traced {
        Traced {
            sim,
            state: Arc::new(Mutex::new(TraceState {
                points: Vec::new(),
                phase: Phase::Open,
                fail_at,
                failed: None,
            })),
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.state.lock().phase = phase;
    }

    /// Records an operation; fails it if it is the one chosen.
    fn point(&self, kind: OpKind, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let point = Point {
            kind,
            path: path.display().to_string(),
            phase: state.phase,
        };
        let index = state.points.len();
        state.points.push(point.clone());
        if state.fail_at == Some(index) {
            state.failed = Some(point);
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }
}

struct TracedFile {
    inner: Box<dyn StorageFile>,
    path: PathBuf,
    traced: Traced,
}

impl StorageFile for TracedFile {
    fn append(&self, data: &[u8]) -> io::Result<()> {
        self.traced.point(OpKind::Append, &self.path)?;
        self.inner.append(data)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.traced.point(OpKind::SyncData, &self.path)?;
        self.inner.sync_data()
    }
}

impl Storage for Traced {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.point(OpKind::CreateDirAll, dir)?;
        self.sim.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.sim.list(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.point(OpKind::Create, path)?;
        Ok(Box::new(TracedFile {
            inner: self.sim.create(path)?,
            path: path.to_owned(),
            traced: self.clone(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.sim.read(path)
    }

    fn size(&self, path: &Path) -> io::Result<u64> {
        self.sim.size(path)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.point(OpKind::SyncData, path)?;
        self.sim.sync_file(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.point(OpKind::Truncate, path)?;
        self.sim.truncate(path, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.point(OpKind::Rename, from)?;
        self.sim.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.point(OpKind::Remove, path)?;
        self.sim.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.point(OpKind::SyncDir, dir)?;
        self.sim.sync_dir(dir)
    }
}

// ---------------------------------------------------------------------------
// Running the workload.

/// What one run was told.
struct Run {
    open: Result<(), EngineError>,
    /// The result of each call that ran.
    results: Vec<Result<(), EngineError>>,
    close: Option<Result<(), EngineError>>,
    /// A flush after a close that failed: a failed close closes too.
    flush_after_close: Option<Result<(), EngineError>>,
    points: Vec<Point>,
    failed: Option<Point>,
}

fn run(sim: &Arc<SimStorage>, sync: SyncMode, calls: &[Call], fail_at: Option<usize>) -> Run {
    let traced = Traced::new(Arc::clone(sim), fail_at);
    let mut out = Run {
        open: Ok(()),
        results: Vec::new(),
        close: None,
        flush_after_close: None,
        points: Vec::new(),
        failed: None,
    };
    match Store::open_on(Arc::new(traced.clone()), dir(), &options(sync)) {
        Err(e) => out.open = Err(e),
        Ok((store, _)) => {
            for (i, call) in calls.iter().enumerate() {
                traced.set_phase(Phase::Call(i));
                out.results.push(match call {
                    Call::Op(step) => apply(&store, step),
                    Call::Flush => store.flush(),
                    Call::Checkpoint => store.checkpoint().map(|_| ()),
                });
            }
            traced.set_phase(Phase::Close);
            out.close = Some(store.close_with(true));
            traced.set_phase(Phase::After);
            if out.close.as_ref().is_some_and(Result::is_err) {
                out.flush_after_close = Some(store.flush());
            }
            drop(store);
        }
    }
    let state = traced.state.lock();
    out.points = state.points.clone();
    out.failed = state.failed.clone();
    out
}

fn is_eio(result: &Result<(), EngineError>) -> bool {
    matches!(
        result,
        Err(EngineError::Io {
            errno: Some(EIO),
            ..
        })
    )
}

/// Whether the operation at `index` writes or syncs the log itself: a
/// segment's creation, header, records or sync, or the directory sync that
/// makes a new segment's name durable. (A checkpoint does these when it
/// finishes the current segment; removing old segments is not one.)
fn is_log_operation(points: &[Point], index: usize) -> bool {
    let on_segment = |p: &Point| {
        matches!(p.kind, OpKind::Create | OpKind::Append | OpKind::SyncData)
            && p.path.ends_with(".log")
    };
    on_segment(&points[index])
        || points[index].kind == OpKind::SyncDir
            && index.checked_sub(1).is_some_and(|i| on_segment(&points[i]))
}

/// A name for the kind of sync point, to show every kind was swept.
fn what(points: &[Point], index: usize) -> &'static str {
    let p = &points[index];
    let previous = index.checked_sub(1).map(|i| &points[i]);
    match p.kind {
        OpKind::Append if p.path.ends_with(".log") => "log append",
        OpKind::SyncData if p.path.ends_with(".log") => "log sync",
        OpKind::Create if p.path.ends_with(".log") => "segment creation",
        OpKind::SyncDir if is_log_operation(points, index) => {
            "directory sync after segment creation"
        }
        OpKind::Create | OpKind::Append | OpKind::SyncData if p.path.ends_with(".snap.tmp") => {
            "snapshot write"
        }
        OpKind::Rename if p.path.ends_with(".snap.tmp") => "snapshot rename",
        OpKind::SyncDir if previous.is_some_and(|q| q.kind == OpKind::Rename) => {
            "directory sync after rename"
        }
        OpKind::Remove if !p.path.ends_with(".tmp") => "removing an old file",
        OpKind::SyncDir if previous.is_some_and(|q| q.kind == OpKind::Remove) => {
            "directory sync after removing"
        }
        _ => "other",
    }
}

/// Reopens and checks the state is the model after `k` ops for some `k`
/// in `lo..=hi`; returns `k`.
fn check_recovery(
    sim: &Arc<SimStorage>,
    ops: &[Step],
    lo: usize,
    hi: usize,
    context: &str,
) -> usize {
    let (store, report): (Store, RecoveryReport) =
        match Store::open_on(sim.clone(), dir(), &options(SyncMode::None)) {
            Ok(opened) => opened,
            Err(e) => panic!("{context}: reopening failed: {e}"),
        };
    let k = report.last_lsn as usize;
    assert!(
        lo <= k && k <= hi,
        "{context}: recovered {k} ops, expected {lo}..={hi}\n{report:?}"
    );
    assert!(
        report.skipped_snapshots.is_empty(),
        "{context}: a failure left an unusable snapshot: {:?}",
        report.skipped_snapshots
    );
    let w = window(ops);
    assert_same(
        &store_state(&store, w),
        &model_state(ops, k, w),
        w,
        &format!("{context}: after {k} ops"),
    );
    store.close().unwrap();
    k
}

#[test]
fn an_io_error_at_every_sync_point_in_order_loses_nothing_acknowledged() {
    let calls = mixed_workload(21, 40);
    let ops = ops_of(&calls);
    let mut swept: std::collections::BTreeMap<&str, usize> = Default::default();
    for sync in [
        SyncMode::Always,
        SyncMode::Interval(Duration::from_secs(3600)),
        SyncMode::None,
    ] {
        let clean = run(&Arc::new(SimStorage::new()), sync, &calls, None);
        assert!(clean.open.is_ok() && clean.results.iter().all(Result::is_ok));
        assert_eq!(clean.close.as_ref().map(Result::is_ok), Some(true));
        let points = clean.points;
        for (k, point) in points.iter().enumerate() {
            if point.phase == Phase::After {
                continue;
            }
            let context = format!(
                "{sync:?}: EIO at sync point {k} ({:?} {}, in {:?})",
                point.kind, point.path, point.phase
            );
            let sim = Arc::new(SimStorage::new());
            let got = run(&sim, sync, &calls, Some(k));
            // The runs are deterministic: the same operation failed.
            assert_eq!(got.failed.as_ref(), Some(point), "{context}");
            assert_eq!(&got.points[..=k], &points[..=k], "{context}");
            *swept.entry(what(&points, k)).or_default() += 1;

            // Removing a leftover temporary file that is not there: its
            // failure changes nothing and is ignored.
            let ignored = point.kind == OpKind::Remove && point.path.ends_with(".tmp");
            let failing_call = match point.phase {
                _ if ignored => None,
                Phase::Open => {
                    assert!(is_eio(&got.open), "{context}: open gave {:?}", got.open);
                    check_recovery(&sim, &ops, 0, 0, &format!("{context}, reopened"));
                    continue;
                }
                Phase::Call(i) => Some(i),
                Phase::Close | Phase::After => None,
            };
            assert!(got.open.is_ok(), "{context}: open gave {:?}", got.open);
            // A failure of the log poisons; one of a checkpoint's
            // snapshot, its rename or its clean-up does not.
            let poisons = match point.phase {
                _ if ignored => false,
                Phase::Call(i) if !matches!(calls[i], Call::Checkpoint) => true,
                _ => is_log_operation(&points, k),
            };
            // The calls' results: Ok before the failing call, its I/O
            // error, then refusals (poisoned) or successes (writable).
            let mut acked = 0;
            let mut durable = 0;
            let mut op_failed = false;
            for (i, (call, result)) in calls.iter().zip(&got.results).enumerate() {
                let ctx = format!("{context}: call {i} ({call:?})");
                match failing_call {
                    Some(f) if i == f => {
                        assert!(is_eio(result), "{ctx} gave {result:?}");
                        op_failed = matches!(call, Call::Op(_));
                        continue;
                    }
                    Some(f) if i > f && poisons => {
                        let refused = matches!(result, Err(EngineError::Poisoned { reason }) if reason.contains("os error 5"))
                            || matches!(
                                (call, result),
                                (
                                    Call::Op(Step::Series { .. }),
                                    Err(EngineError::UnknownMetric { .. })
                                )
                            );
                        assert!(refused, "{ctx} after the failure gave {result:?}");
                        continue;
                    }
                    _ => assert!(result.is_ok(), "{ctx} gave {result:?}"),
                }
                match call {
                    Call::Op(_) => acked += 1,
                    Call::Flush | Call::Checkpoint => durable = acked,
                }
            }
            let close = got.close.as_ref().expect("the store opened");
            if point.phase == Phase::Close && !ignored {
                assert!(is_eio(close), "{context}: close gave {close:?}");
                // Closed all the same, and released.
                let after = got.flush_after_close.as_ref().expect("flushed after");
                assert!(
                    matches!(after, Err(EngineError::Closed)),
                    "{context}: a flush after the failed close gave {after:?}"
                );
                if !poisons {
                    // The closing checkpoint failed, the log did not: the
                    // close synced it.
                    durable = acked;
                }
            } else if !poisons {
                assert!(close.is_ok(), "{context}: close gave {close:?}");
                durable = acked;
            }
            if !poisons {
                assert_eq!(
                    acked,
                    ops.len(),
                    "{context}: the store did not stay writable"
                );
            }
            let hi = acked + usize::from(op_failed);
            let lo_power_cut = if sync == SyncMode::Always {
                acked
            } else {
                durable
            };
            // A killed process: the kernel kept everything written.
            let k_live = check_recovery(
                &Arc::new(sim.fork()),
                &ops,
                acked,
                hi,
                &format!("{context}, process crash"),
            );
            if !poisons {
                assert_eq!(k_live, ops.len(), "{context}");
            }
            // A power cut: only what was synced.
            sim.crash(KeepPolicy::Synced);
            sim.reboot();
            check_recovery(
                &sim,
                &ops,
                lo_power_cut,
                hi,
                &format!("{context}, power cut"),
            );
        }
    }
    for kind in [
        "log append",
        "log sync",
        "segment creation",
        "directory sync after segment creation",
        "snapshot write",
        "snapshot rename",
        "directory sync after rename",
        "removing an old file",
        "directory sync after removing",
    ] {
        assert!(
            swept.get(kind).copied().unwrap_or(0) > 0,
            "no failure at {kind}: {swept:?}"
        );
    }
}
