//! Crash, damage and fault tests of the durable store on [`SimStorage`].
//!
//! Every test drives a real store through `Store::open_on` with a workload
//! of ops (metric definitions, series creations, blocks, ticks and points),
//! keeps what was acknowledged, breaks the storage (power cut, process
//! crash, damaged bytes, failing operations), reopens, and compares the
//! recovered state bit for bit with an independent model replaying a prefix
//! of the workload. Each op is one log record, so op `i` (0-based) has LSN
//! `i + 1` and a recovery whose `last_lsn` is `k` must equal the model after
//! the first `k` ops.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::testkit::sim_storage::{
    EIO, ENOSPC, Fault, KeepPolicy, OpKind, Rng, SimStorage,
};
use crate::engine::testkit::test_model::{
    SEGMENT_BYTES, Step, apply, assert_same, crash, dir, frequencies, model_state, store_state,
    values, window,
};
use crate::engine::{
    Aggregation, EngineError, MAX_FRAGMENT, OpenOptions, RECORD_HEADER, RecoveryMode,
    RecoveryReport, SEGMENT_HEADER, Store, SyncMode, Target, op_kind, segment_name,
};

// ---------------------------------------------------------------------------
// Largest single allocation, per thread: damage must never make recovery
// size a buffer by a damaged length field.

struct TrackingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = TRACKING.try_with(|on| {
        if on.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the
// bookkeeping touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAlloc = TrackingAlloc;

/// Runs `f` and returns its result and the largest single allocation it
/// made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    TRACKING.with(|on| on.set(true));
    let out = f();
    TRACKING.with(|on| on.set(false));
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------
// The workload and its model.

const METRICS: [(&str, i64, Aggregation); 2] =
    [("cpu", 10, Aggregation::Sum), ("mem", 7, Aggregation::Avg)];
const SERIES: [(&str, &[&str]); 4] = [
    ("cpu", &["h0", "a"]),
    ("cpu", &["h1"]),
    ("mem", &["h0"]),
    ("mem", &["h1", "x"]),
];
/// Series of "cpu" a workload creates in one call, after those above.
const SERIES_OF_ONE_CALL: [&[&str]; 3] = [&["h2", "a"], &["h2", "b"], &["h3"]];

fn timestamp(rng: &mut Rng) -> i64 {
    rng.range(-400, 2400)
}

/// A deterministic workload: the setup ops interleaved with `writes` random
/// writes. Series handles are 0.. in the order the Series steps come.
fn workload(seed: u64, writes: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut setup: VecDeque<Step> = VecDeque::new();
    let mut next_id = 0;
    for (name, frequency, aggregation) in METRICS {
        setup.push_back(Step::Define {
            name,
            frequency,
            aggregation,
        });
        for (metric, path) in SERIES {
            if metric == name {
                setup.push_back(Step::Series {
                    metric,
                    path: path.iter().map(|s| (*s).to_owned()).collect(),
                    id: next_id,
                });
                next_id += 1;
            }
        }
    }

    let mut steps: Vec<Step> = setup.drain(..2).collect();
    let mut available = 1u32;
    let mut done = 0;
    while done < writes || !setup.is_empty() {
        if !setup.is_empty() && (done >= writes || rng.chance(1, 5)) {
            let step = setup.pop_front().expect("not empty");
            if matches!(step, Step::Series { .. }) {
                available += 1;
            }
            steps.push(step);
            continue;
        }
        let pick = |rng: &mut Rng| rng.below(u64::from(available)) as u32;
        let step = match rng.below(3) {
            0 => {
                let len = if rng.chance(1, 5) {
                    rng.range(100, 200)
                } else {
                    rng.range(1, 40)
                };
                Step::Block {
                    series: pick(&mut rng),
                    start: timestamp(&mut rng),
                    values: values(&mut rng, len as usize),
                }
            }
            1 => {
                let n = rng.range(1, i64::from(available) + 1) as usize;
                Step::Tick {
                    timestamp: timestamp(&mut rng),
                    series: (0..n).map(|_| pick(&mut rng)).collect(),
                    values: values(&mut rng, n),
                }
            }
            _ => {
                let n = rng.range(1, 16) as usize;
                let mut timestamps: Vec<i64> = Vec::with_capacity(n);
                for _ in 0..n {
                    let ts = if !timestamps.is_empty() && rng.chance(1, 4) {
                        timestamps[rng.below(timestamps.len() as u64) as usize]
                    } else {
                        timestamp(&mut rng)
                    };
                    timestamps.push(ts);
                }
                Step::Points {
                    series: (0..n).map(|_| pick(&mut rng)).collect(),
                    timestamps,
                    values: values(&mut rng, n),
                }
            }
        };
        steps.push(step);
        done += 1;
    }
    // Last, a collector's first tick: the new series of one call (one
    // record), then a tick over them and an older series.
    let paths: Vec<Vec<String>> = SERIES_OF_ONE_CALL
        .iter()
        .map(|path| path.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    let created = paths.len() as u32;
    steps.push(Step::SeriesMany {
        metric: "cpu",
        paths,
        first: next_id,
    });
    steps.push(Step::Tick {
        timestamp: timestamp(&mut rng),
        series: (next_id..next_id + created).chain([0]).collect(),
        values: values(&mut rng, created as usize + 1),
    });
    steps
}

/// Asserts the store holds exactly the state after the first `k` steps.
fn assert_state(store: &Store, steps: &[Step], k: usize, context: &str) {
    let w = window(steps);
    assert_same(
        &store_state(store, w),
        &model_state(steps, k, w),
        w,
        &format!("{context}: after {k} ops"),
    );
}

/// What a workload run was told.
#[derive(Debug)]
struct Run {
    results: Vec<Result<(), EngineError>>,
    /// Ops acknowledged (they form a prefix of the steps).
    acked: usize,
    /// Ops acknowledged before the last flush that returned Ok.
    flushed: usize,
    /// Whether some op returned an error (it may or may not be recovered).
    failed: bool,
}

/// Runs the steps, calling `flush()` whenever `flush_at` holds the number
/// of steps run so far (0..=steps.len()).
fn run_steps(store: &Store, steps: &[Step], flush_at: &[usize]) -> Run {
    let mut run = Run {
        results: Vec::with_capacity(steps.len()),
        acked: 0,
        flushed: 0,
        failed: false,
    };
    for i in 0..=steps.len() {
        if flush_at.contains(&i) && store.flush().is_ok() {
            run.flushed = run.acked;
        }
        if let Some(step) = steps.get(i) {
            let result = apply(store, step);
            if result.is_ok() && !run.failed {
                run.acked += 1;
            }
            run.failed |= result.is_err();
            run.results.push(result);
        }
    }
    run
}

/// Checks the shape of a run's errors: acknowledged ops are a prefix, the
/// first error passes `first_ok`, and every later call is refused because
/// the store is poisoned (a step creating series of a metric that never got
/// defined may instead find no metric).
fn check_errors(run: &Run, steps: &[Step], first_ok: impl Fn(&EngineError) -> bool, context: &str) {
    let Some(first) = run.results.iter().position(Result::is_err) else {
        return;
    };
    let error = run.results[first].as_ref().unwrap_err();
    assert!(first_ok(error), "{context}: first error {error:?}");
    for (i, result) in run.results.iter().enumerate().skip(first + 1) {
        match (result, &steps[i]) {
            (Err(EngineError::Poisoned { .. }), _) => {}
            (
                Err(EngineError::UnknownMetric { .. }),
                Step::Series { .. } | Step::SeriesMany { .. },
            ) => {}
            (other, _) => panic!("{context}: step {i} after a failure gave {other:?}"),
        }
    }
}

fn is_io(errno: i32) -> impl Fn(&EngineError) -> bool {
    move |e| matches!(e, EngineError::Io { errno: Some(n), .. } if *n == errno)
}

/// An I/O error with `errno`, or the poison an earlier one left (a failed
/// flush or background sync, which no write step saw).
fn is_io_or_its_poison(errno: i32) -> impl Fn(&EngineError) -> bool {
    move |e| match e {
        EngineError::Poisoned { reason } => reason.contains(&format!("(os error {errno})")),
        other => is_io(errno)(other),
    }
}

fn options(sync: SyncMode, recovery: RecoveryMode) -> OpenOptions {
    OpenOptions {
        sync,
        recovery,
        segment_bytes: SEGMENT_BYTES,
        ..OpenOptions::default()
    }
}

fn open(
    sim: &Arc<SimStorage>,
    sync: SyncMode,
    recovery: RecoveryMode,
) -> Result<(Store, RecoveryReport), EngineError> {
    Store::open_on(sim.clone(), dir(), &options(sync, recovery))
}

fn open_ok(
    sim: &Arc<SimStorage>,
    recovery: RecoveryMode,
    context: &str,
) -> (Store, RecoveryReport) {
    match open(sim, SyncMode::None, recovery) {
        Ok(opened) => opened,
        Err(e) => panic!(
            "{context}: reopening failed: {e}\ncrashes: {:?}",
            sim.crash_log()
        ),
    }
}

/// A store closed cleanly after running the whole workload in `sync` mode.
fn closed_store(steps: &[Step], sync: SyncMode, segment_bytes: u64) -> Arc<SimStorage> {
    let sim = Arc::new(SimStorage::new());
    let opts = OpenOptions {
        sync,
        segment_bytes,
        ..OpenOptions::default()
    };
    let (store, _) = Store::open_on(sim.clone(), dir(), &opts).unwrap();
    let run = run_steps(&store, steps, &[]);
    assert_eq!(run.acked, steps.len(), "{:?}", run.results.last());
    store.close().unwrap();
    sim
}

// ---------------------------------------------------------------------------
// An independent reader of the log format (docs: record.rs).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    offset: usize,
    end: usize,
    lsn: u64,
    kind: u8,
    fragment: u8,
}

/// The records of a segment, or where and why the first one fails.
fn parse_segment(bytes: &[u8]) -> Result<(u64, Vec<Rec>), (usize, String)> {
    if bytes.len() < SEGMENT_HEADER {
        return Err((0, "short header".to_owned()));
    }
    let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    if &bytes[0..8] != b"MSWALSEG"
        || !(1..=4).contains(&le32(&bytes[8..12]))
        || le32(&bytes[20..24]) != crc32fast::hash(&bytes[0..20])
    {
        return Err((0, "bad header".to_owned()));
    }
    let first = le64(&bytes[12..20]);
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER;
    while offset < bytes.len() {
        let head = bytes
            .get(offset..offset + RECORD_HEADER)
            .ok_or((offset, "short record header".to_owned()))?;
        let len = le32(&head[0..4]) as usize;
        let end = offset + RECORD_HEADER + len;
        if len > MAX_FRAGMENT || end > bytes.len() {
            return Err((offset, format!("length {len}")));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head[0..4]);
        hasher.update(&head[8..20]);
        hasher.update(&bytes[offset + RECORD_HEADER..end]);
        if hasher.finalize() != le32(&head[4..8]) || head[17] > 3 || head[18..20] != [0, 0] {
            return Err((offset, "checksum".to_owned()));
        }
        records.push(Rec {
            offset,
            end,
            lsn: le64(&head[8..16]),
            kind: head[16],
            fragment: head[17],
        });
        offset = end;
    }
    Ok((first, records))
}

/// The log segments in `/store`, in log order, with their bytes.
fn segments(sim: &SimStorage) -> Vec<(String, Vec<u8>)> {
    sim.files(dir())
        .into_iter()
        .filter(|n| n.starts_with("wal-") && n.ends_with(".log"))
        .map(|n| {
            let bytes = sim.bytes(&dir().join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// Asserts every segment parses completely with LSNs 1, 2, ... in order
/// (no torn or damaged record remains) and returns the number of ops.
fn clean_log(sim: &SimStorage, context: &str) -> u64 {
    let mut next = 1;
    for (name, bytes) in segments(sim) {
        let (first, records) = parse_segment(&bytes)
            .unwrap_or_else(|e| panic!("{context}: {name} is damaged after recovery: {e:?}"));
        assert_eq!(name, segment_name(first), "{context}");
        assert_eq!(first, next, "{context}: {name} does not continue the log");
        for rec in records {
            assert_eq!(rec.lsn, next, "{context}: {name} at {}", rec.offset);
            if rec.fragment == 0 || rec.fragment == 3 {
                next += 1;
            }
        }
    }
    next - 1
}

fn path_of(name: &str) -> String {
    dir().join(name).display().to_string()
}

/// Recovers after a crash and checks the result is exactly a prefix of
/// `lo..=hi` ops; returns the prefix length.
fn check_recovery(
    sim: &Arc<SimStorage>,
    steps: &[Step],
    lo: usize,
    hi: usize,
    context: &str,
) -> usize {
    check_recovery_report(sim, steps, lo, hi, context).last_lsn as usize
}

/// `check_recovery`, returning the whole report.
fn check_recovery_report(
    sim: &Arc<SimStorage>,
    steps: &[Step],
    lo: usize,
    hi: usize,
    context: &str,
) -> RecoveryReport {
    let (store, report) = open_ok(sim, RecoveryMode::TolerateTail, context);
    let k = report.last_lsn as usize;
    assert!(
        lo <= k && k <= hi,
        "{context}: recovered {k} ops, expected {lo}..={hi}\ncrashes: {:?}",
        sim.crash_log()
    );
    assert_eq!(report.records as usize, k, "{context}");
    assert_state(&store, steps, k, context);
    assert_eq!(clean_log(sim, context) as usize, k, "{context}");
    store.close().unwrap();
    report
}

// ---------------------------------------------------------------------------
// Power loss and process crashes.

/// Storage operations a whole workload makes after opening.
fn workload_ops(steps: &[Step], sync: SyncMode, flush_at: &[usize]) -> u64 {
    let sim = Arc::new(SimStorage::new());
    let (store, _) = open(&sim, sync, RecoveryMode::TolerateTail).unwrap();
    let before = sim.op_count();
    let run = run_steps(&store, steps, flush_at);
    assert_eq!(run.acked, steps.len());
    let ops = sim.op_count() - before;
    drop(store);
    ops
}

#[test]
fn always_mode_power_loss_keeps_every_acknowledged_write() {
    let mut rotated = 0;
    let mut partly = 0;
    for seed in 0..200u64 {
        let steps = workload(seed, 50);
        let total = workload_ops(&steps, SyncMode::Always, &[]);
        let mut rng = Rng::new(seed * 7 + 1);
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, SyncMode::Always, RecoveryMode::TolerateTail).unwrap();
        let policy = match seed % 10 {
            0 => KeepPolicy::Synced,
            1 => KeepPolicy::Everything,
            _ => KeepPolicy::Random(seed),
        };
        let context = format!("seed {seed}, {policy:?}");
        if seed % 5 == 4 {
            // A crash between calls: in `always` mode nothing is pending,
            // so exactly the acknowledged ops come back.
            let cut = rng.below(steps.len() as u64 + 1) as usize;
            let run = run_steps(&store, &steps[..cut], &[]);
            assert_eq!(run.acked, cut, "{context}");
            crash(&sim, Some(store), policy);
            check_recovery(&sim, &steps, cut, cut, &context);
            continue;
        }
        let n = rng.range(1, total as i64) as u64;
        sim.inject(Fault::crash_before(None, n, policy));
        let run = run_steps(&store, &steps, &[]);
        assert!(
            sim.is_down(),
            "{context}: the crash at op {n} of {total} never came"
        );
        check_errors(&run, &steps, is_io_or_its_poison(EIO), &context);
        crash(&sim, Some(store), policy);
        let k = check_recovery(
            &sim,
            &steps,
            run.acked,
            run.acked + usize::from(run.failed),
            &context,
        );
        partly += usize::from(k > run.acked);
        // The recovered log and the open's new segment: 3 or more means
        // the crash came after a rotation.
        rotated += usize::from(segments(&sim).len() >= 3);
    }
    assert!(rotated > 50, "only {rotated} crashes came after a rotation");
    assert!(partly > 0, "no crash ever kept an unacknowledged op");
}

#[test]
fn none_mode_power_loss_keeps_everything_flushed_and_a_prefix() {
    let mut lost = 0;
    let mut torn = 0;
    for seed in 0..100u64 {
        let steps = workload(1000 + seed, 50);
        let mut rng = Rng::new(seed);
        let flush_at: Vec<usize> = (0..3)
            .map(|_| rng.below(steps.len() as u64 + 1) as usize)
            .collect();
        let total = workload_ops(&steps, SyncMode::None, &flush_at);
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, SyncMode::None, RecoveryMode::TolerateTail).unwrap();
        let policy = match seed % 10 {
            0 => KeepPolicy::Synced,
            _ => KeepPolicy::Random(seed),
        };
        let n = rng.range(1, total as i64 + 10) as u64;
        sim.inject(Fault::crash_before(None, n, policy));
        let run = run_steps(&store, &steps, &flush_at);
        let context =
            format!("seed {seed}, {policy:?}, crash at op {n} of {total}, flushes at {flush_at:?}");
        check_errors(&run, &steps, is_io_or_its_poison(EIO), &context);
        crash(&sim, Some(store), policy);
        let report = check_recovery_report(
            &sim,
            &steps,
            run.flushed,
            run.acked + usize::from(run.failed),
            &context,
        );
        lost += usize::from((report.last_lsn as usize) < run.acked);
        torn += usize::from(report.torn.is_some());
    }
    assert!(lost > 10, "only {lost} crashes lost unflushed writes");
    assert!(torn > 10, "only {torn} crashes left a torn tail");
}

#[test]
fn none_mode_loses_exactly_the_writes_after_the_last_sync() {
    let steps = workload(7, 40);
    let p = 30;
    for policy in [KeepPolicy::Synced, KeepPolicy::Everything] {
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, SyncMode::None, RecoveryMode::TolerateTail).unwrap();
        assert_eq!(run_steps(&store, &steps[..p], &[p]).flushed, p);
        let segments_at_flush = segments(&sim).len();
        // Small writes that fit in the current segment: no rotation syncs.
        let extra = [
            Step::Tick {
                timestamp: 5,
                series: vec![0],
                values: vec![1.5],
            },
            Step::Points {
                series: vec![1, 1],
                timestamps: vec![0, 0],
                values: vec![2.5, 3.5],
            },
        ];
        let mut all = steps[..p].to_vec();
        all.extend_from_slice(&extra);
        assert_eq!(run_steps(&store, &extra, &[]).acked, 2);
        assert_eq!(segments(&sim).len(), segments_at_flush);
        assert!(sim.unsynced_bytes() > 0);
        crash(&sim, Some(store), policy);
        let want = if policy == KeepPolicy::Synced {
            p
        } else {
            p + 2
        };
        check_recovery(&sim, &all, want, want, &format!("{policy:?}"));
    }
}

#[test]
fn interval_mode_syncs_in_the_background() {
    for seed in 0..5u64 {
        let steps = workload(2000 + seed, 30);
        let sim = Arc::new(SimStorage::new());
        let interval = SyncMode::Interval(Duration::from_millis(5));
        let (store, _) = open(&sim, interval, RecoveryMode::TolerateTail).unwrap();
        assert_eq!(run_steps(&store, &steps, &[]).acked, steps.len());
        let waited = Instant::now();
        while sim.unsynced_bytes() > 0 {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "the interval sync never came"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        crash(&sim, Some(store), KeepPolicy::Random(seed));
        check_recovery(
            &sim,
            &steps,
            steps.len(),
            steps.len(),
            &format!("seed {seed}"),
        );
    }
}

#[test]
fn interval_mode_power_loss_recovers_a_prefix_through_the_last_sync() {
    for seed in 0..40u64 {
        let steps = workload(3000 + seed, 40);
        let mut rng = Rng::new(seed);
        let flush_at = [rng.below(steps.len() as u64) as usize];
        let every = Duration::from_millis(if seed % 2 == 0 { 1 } else { 3_600_000 });
        let interval = SyncMode::Interval(every);
        let total = workload_ops(&steps, SyncMode::None, &flush_at);
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, interval, RecoveryMode::TolerateTail).unwrap();
        let policy = KeepPolicy::Random(seed);
        let n = rng.range(1, total as i64) as u64;
        sim.inject(Fault::crash_before(None, n, policy));
        let run = run_steps(&store, &steps, &flush_at);
        let context = format!("seed {seed}, crash at op {n}, flush at {flush_at:?}");
        // The crash may hit the background sync first: then the next
        // write is refused as poisoned.
        check_errors(&run, &steps, is_io_or_its_poison(EIO), &context);
        crash(&sim, Some(store), policy);
        check_recovery(
            &sim,
            &steps,
            run.flushed,
            run.acked + usize::from(run.failed),
            &context,
        );
    }
}

#[test]
fn a_crash_during_segment_rotation_loses_nothing_acknowledged() {
    let steps = workload(11, 60);
    for sync in [SyncMode::Always, SyncMode::None] {
        // The segments a clean run creates after the first.
        let sim = closed_store(&steps, sync, SEGMENT_BYTES);
        let names: Vec<String> = segments(&sim).into_iter().skip(1).map(|s| s.0).collect();
        assert!(names.len() >= 2, "only {} rotations", names.len());
        for (r, name) in names.iter().enumerate() {
            // Faults count from when they are injected, after the open: the
            // r-th create and directory sync are the r-th rotation's.
            let r = r as u64 + 1;
            let points = [
                (
                    "before creating",
                    Fault::crash_before(Some(OpKind::Create), r, KeepPolicy::Synced),
                ),
                (
                    "before the header",
                    Fault::crash_before(Some(OpKind::Append), 1, KeepPolicy::Synced).on_path(name),
                ),
                (
                    "before syncing the header",
                    Fault::crash_before(Some(OpKind::SyncData), 1, KeepPolicy::Synced)
                        .on_path(name),
                ),
                (
                    "before syncing the directory",
                    Fault::crash_before(Some(OpKind::SyncDir), r, KeepPolicy::Synced),
                ),
                (
                    "before the first record",
                    Fault::crash_before(Some(OpKind::Append), 2, KeepPolicy::Synced).on_path(name),
                ),
            ];
            for (what, fault) in points {
                for policy in [
                    KeepPolicy::Synced,
                    KeepPolicy::Everything,
                    KeepPolicy::Random(r),
                ] {
                    let mut fault = fault.clone();
                    fault.action = crate::engine::testkit::sim_storage::FaultAction::Crash(policy);
                    let context = format!("{sync:?}, {name}, crash {what}, {policy:?}");
                    let sim = Arc::new(SimStorage::new());
                    let (store, _) = open(&sim, sync, RecoveryMode::TolerateTail).unwrap();
                    sim.inject(fault);
                    let run = run_steps(&store, &steps, &[]);
                    assert!(sim.is_down(), "{context}: no crash");
                    check_errors(&run, &steps, is_io_or_its_poison(EIO), &context);
                    crash(&sim, Some(store), policy);
                    // The op that started the rotation was never logged, and
                    // rotation synced everything before it.
                    let k = check_recovery(&sim, &steps, run.acked, run.acked, &context);
                    // The store carries on from there.
                    let (store, _) = open_ok(&sim, RecoveryMode::TolerateTail, &context);
                    assert_eq!(run_steps(&store, &steps[k..], &[]).acked, steps.len() - k);
                    store.close().unwrap();
                    drop(store);
                    check_recovery(&sim, &steps, steps.len(), steps.len(), &context);
                }
            }
        }
    }
}

#[test]
fn a_failed_directory_sync_at_rotation_poisons_and_loses_nothing() {
    let steps = workload(12, 60);
    for live in [true, false] {
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, SyncMode::Always, RecoveryMode::TolerateTail).unwrap();
        sim.inject(Fault::fail(Some(OpKind::SyncDir), 2, ENOSPC));
        let run = run_steps(&store, &steps, &[]);
        check_errors(&run, &steps, is_io(ENOSPC), "sync_dir");
        assert!(run.failed && run.acked > 0);
        assert!(matches!(store.flush(), Err(EngineError::Poisoned { .. })));
        if live {
            drop(store);
        } else {
            crash(&sim, Some(store), KeepPolicy::Synced);
        }
        check_recovery(&sim, &steps, run.acked, run.acked, &format!("live {live}"));
    }
}

// ---------------------------------------------------------------------------
// Torn tails.

/// A closed store whose last segment holds at least two records, the last
/// two small; returns it with the workload and the last segment's name.
fn torn_tail_base() -> (Arc<SimStorage>, Vec<Step>, String) {
    let mut steps = workload(21, 30);
    steps.push(Step::Block {
        series: 2,
        start: -70,
        values: vec![1.0, -2.5, f32::NAN, 0.25],
    });
    steps.push(Step::Tick {
        timestamp: 700,
        series: vec![0, 3],
        values: vec![9.0, -0.0],
    });
    let sim = closed_store(&steps, SyncMode::Always, SEGMENT_BYTES);
    let (name, bytes) = segments(&sim).pop().unwrap();
    let (_, records) = parse_segment(&bytes).unwrap();
    assert!(
        records.len() >= 2,
        "the last segment has {} records",
        records.len()
    );
    (sim, steps, name)
}

#[test]
fn a_torn_tail_is_cut_at_every_offset_of_the_last_two_records() {
    let (base, steps, name) = torn_tail_base();
    let path = dir().join(&name);
    let original = base.bytes(&path).unwrap();
    let (_, records) = parse_segment(&original).unwrap();
    let total = steps.len();
    let [.., r1, r2] = records[..] else {
        unreachable!()
    };
    assert_eq!((r2.lsn, r2.end), (total as u64, original.len()));
    let mut rng = Rng::new(5);
    // (variant, cut) -> the bytes of the damaged segment.
    for c in r1.offset..original.len() {
        let variants: [(&str, Vec<u8>); 3] = [
            ("cut", original[..c].to_vec()),
            ("zeroed", {
                let mut b = original.clone();
                b[c..].fill(0);
                b
            }),
            ("garbage", {
                let mut b = original.clone();
                b[c..].iter_mut().for_each(|x| *x = rng.next_u64() as u8);
                b
            }),
        ];
        for (variant, damaged) in variants {
            let context = format!("{variant} from offset {c}");
            // The first record the damage touches, and what survives: a cut
            // exactly between records leaves no torn tail.
            let intact = |r: Rec| {
                damaged.len() >= r.end && damaged[r.offset..r.end] == original[r.offset..r.end]
            };
            let torn_from = |r: Rec| (damaged.len() > r.offset).then_some(r.offset);
            let (k, torn_at) = if !intact(r1) {
                (total - 2, torn_from(r1))
            } else if !intact(r2) {
                (total - 1, torn_from(r2))
            } else {
                (total, None)
            };
            let sim = Arc::new(base.fork());
            sim.set_bytes(&path, damaged.clone());
            let before = sim.image();
            // Strict refuses any torn tail and changes nothing.
            match (open(&sim, SyncMode::None, RecoveryMode::Strict), torn_at) {
                (
                    Err(EngineError::Corruption {
                        file,
                        offset,
                        lsn,
                        reason,
                    }),
                    Some(at),
                ) => {
                    assert_eq!(
                        (file, offset, lsn),
                        (path_of(&name), at as u64, None),
                        "{context}"
                    );
                    assert!(reason.contains("torn tail"), "{context}: {reason}");
                    assert_eq!(sim.image(), before, "{context}: strict changed files");
                }
                (Ok((_, report)), None) => assert_eq!(report.last_lsn as usize, k, "{context}"),
                (Err(e), _) => panic!("{context}: strict gave {e}"),
                (Ok(_), Some(_)) => panic!("{context}: strict accepted a torn tail"),
            }
            // Tolerate-tail cuts it and reports it as torn; point-in-time
            // cuts it too and reports where it stopped.
            for mode in [RecoveryMode::TolerateTail, RecoveryMode::PointInTime] {
                let context = format!("{context}, {mode:?}");
                let sim = Arc::new(base.fork());
                sim.set_bytes(&path, damaged.clone());
                let (store, report) = open_ok(&sim, mode, &context);
                assert_eq!(report.last_lsn as usize, k, "{context}");
                let (reported, other) = match mode {
                    RecoveryMode::TolerateTail => (&report.torn, &report.stopped),
                    _ => (&report.stopped, &report.torn),
                };
                assert_eq!(*other, None, "{context}");
                assert!(report.set_aside.is_empty(), "{context}");
                match torn_at {
                    Some(at) => {
                        let damage = reported
                            .as_ref()
                            .unwrap_or_else(|| panic!("{context}: damage not reported"));
                        assert_eq!(
                            (damage.file.as_str(), damage.offset, damage.bytes),
                            (
                                path_of(&name).as_str(),
                                at as u64,
                                (damaged.len() - at) as u64
                            ),
                            "{context}"
                        );
                        assert_eq!(sim.bytes(&path).unwrap().len(), at, "{context}: not cut");
                    }
                    None => assert_eq!(*reported, None, "{context}"),
                }
                assert_state(&store, &steps, k, &context);
                assert_eq!(clean_log(&sim, &context) as usize, k);
                drop(store);
            }
        }
    }
}

/// The store [`batch_store`] closed, with its one segment's path and bytes,
/// and where in them the record creating the 40 new series lies.
struct Batch {
    base: Arc<SimStorage>,
    steps: Vec<Step>,
    name: String,
    path: std::path::PathBuf,
    original: Vec<u8>,
    record: Rec,
}

fn batch_base() -> Batch {
    let (base, steps, name) = batch_store();
    let path = dir().join(&name);
    let original = base.bytes(&path).unwrap();
    let (_, records) = parse_segment(&original).unwrap();
    let record = records
        .iter()
        .copied()
        .find(|r| r.kind == op_kind::CREATE_SERIES_MANY && r.lsn as usize == steps.len() - 1)
        .expect("the 40 new series are one record");
    Batch {
        base,
        steps,
        name,
        path,
        original,
        record,
    }
}

/// A workload, then one call creating 40 new series (one record), then a
/// tick over them: the closed store, the steps, and the one segment.
fn batch_store() -> (Arc<SimStorage>, Vec<Step>, String) {
    let mut steps = workload(31, 20);
    let first = frequencies(&steps).len() as u32;
    let paths: Vec<Vec<String>> = (0..40)
        .map(|i| vec!["batch".to_owned(), format!("n{i:02}")])
        .collect();
    steps.push(Step::SeriesMany {
        metric: "mem",
        paths,
        first,
    });
    steps.push(Step::Tick {
        timestamp: 70,
        series: (first..first + 40).collect(),
        values: (0..40).map(|i| i as f32 - 0.5).collect(),
    });
    let sim = closed_store(&steps, SyncMode::Always, 1 << 20);
    let mut segs = segments(&sim);
    assert_eq!(segs.len(), 1, "one segment");
    let (name, _) = segs.pop().unwrap();
    (sim, steps, name)
}

#[test]
fn a_batch_of_new_series_cut_anywhere_creates_none_of_them() {
    let Batch {
        base,
        steps,
        path,
        original,
        record: batch,
        ..
    } = batch_base();
    let before = steps.len() - 2;
    let series_before = frequencies(&steps[..before]).len();
    for cut in batch.offset..=batch.end {
        let context = format!(
            "cut at {cut} (the batch is {}..{})",
            batch.offset, batch.end
        );
        let sim = Arc::new(base.fork());
        sim.set_bytes(&path, original[..cut].to_vec());
        let (store, report) = open_ok(&sim, RecoveryMode::TolerateTail, &context);
        let k = if cut == batch.end { before + 1 } else { before };
        assert_eq!(report.last_lsn as usize, k, "{context}");
        let series = if cut == batch.end {
            series_before + 40
        } else {
            series_before
        };
        assert_eq!(store.series_count(), series, "{context}");
        assert_state(&store, &steps, k, &context);
        drop(store);
        // And the next open agrees: the cut was made for good.
        let (store, _) = open_ok(&sim, RecoveryMode::Strict, &context);
        assert_state(&store, &steps, k, &context);
    }
    let (store, _) = open_ok(&Arc::new(base.fork()), RecoveryMode::Strict, "whole");
    assert_state(&store, &steps, steps.len(), "whole");
}

#[test]
fn a_damaged_batch_of_new_series_before_other_records_is_corruption_and_creates_none() {
    let Batch {
        base,
        steps,
        name,
        path,
        original,
        record: batch,
    } = batch_base();
    let mut rng = Rng::new(77);
    for _ in 0..40 {
        let bit = batch.offset * 8 + rng.below(((batch.end - batch.offset) * 8) as u64) as usize;
        let context = format!("bit {bit} flipped");
        let sim = Arc::new(base.fork());
        let mut damaged = original.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        sim.set_bytes(&path, damaged);
        let before = sim.image();
        match open(&sim, SyncMode::None, RecoveryMode::TolerateTail) {
            Err(EngineError::Corruption { file, offset, .. }) => {
                assert_eq!(
                    (file, offset),
                    (path_of(&name), batch.offset as u64),
                    "{context}"
                );
            }
            Err(e) => panic!("{context}: {e}"),
            Ok(_) => panic!("{context}: opened"),
        }
        assert_eq!(sim.image(), before, "{context}: changed files");
        // Point-in-time recovery stops before it: none of the 40 exist.
        let (store, report) = open_ok(&sim, RecoveryMode::PointInTime, &context);
        assert_eq!(report.last_lsn as usize, steps.len() - 2, "{context}");
        assert_state(&store, &steps, steps.len() - 2, &context);
    }
}

#[test]
fn zeros_or_garbage_after_the_last_record_are_a_torn_tail() {
    let (base, steps, name) = torn_tail_base();
    let path = dir().join(&name);
    let len = base.bytes(&path).unwrap().len();
    let garbage: Vec<u8> = {
        let mut rng = Rng::new(9);
        (0..700).map(|_| rng.next_u64() as u8).collect()
    };
    for extra in [
        vec![0u8; 1],
        vec![0u8; 4096],
        garbage.clone(),
        garbage[..3].to_vec(),
    ] {
        let context = format!("{} extra bytes starting {:?}", extra.len(), &extra[..1]);
        let sim = Arc::new(base.fork());
        sim.append_at_rest(&path, &extra);
        let Err(EngineError::Corruption {
            offset, lsn: None, ..
        }) = open(&sim, SyncMode::None, RecoveryMode::Strict)
        else {
            panic!("{context}: strict did not refuse the tail");
        };
        assert_eq!(offset, len as u64);
        let (store, report) = open_ok(&sim, RecoveryMode::TolerateTail, &context);
        let torn = report.torn.unwrap();
        assert_eq!(
            (torn.offset, torn.bytes),
            (len as u64, extra.len() as u64),
            "{context}"
        );
        assert_eq!(report.last_lsn as usize, steps.len());
        assert_state(&store, &steps, steps.len(), &context);
        // Writing on after the cut, then reopening, keeps both.
        let more = Step::Block {
            series: 1,
            start: 3000,
            values: vec![4.0, 5.0],
        };
        apply(&store, &more).unwrap();
        store.close().unwrap();
        drop(store);
        let mut all = steps.clone();
        all.push(more);
        check_recovery(&sim, &all, all.len(), all.len(), &context);
    }
}

#[test]
fn a_segment_cut_inside_its_header_is_a_torn_tail_only_if_last() {
    let (base, steps, _) = torn_tail_base();
    // Opening creates an empty segment for the next op; cut its header.
    let (store, _) = open_ok(&base, RecoveryMode::TolerateTail, "base");
    store.close().unwrap();
    drop(store);
    let name = segment_name(steps.len() as u64 + 1);
    let path = dir().join(&name);
    assert_eq!(base.bytes(&path).unwrap().len(), SEGMENT_HEADER);
    for c in 0..SEGMENT_HEADER {
        let context = format!("header cut at {c}");
        let sim = Arc::new(base.fork());
        sim.cut(&path, c);
        let Err(EngineError::Corruption {
            file,
            offset: 0,
            lsn: None,
            ..
        }) = open(&sim, SyncMode::None, RecoveryMode::Strict)
        else {
            panic!("{context}: strict accepted it");
        };
        assert_eq!(file, path_of(&name));
        let (store, report) = open_ok(&sim, RecoveryMode::TolerateTail, &context);
        let torn = report.torn.unwrap();
        assert_eq!(
            (torn.file, torn.offset, torn.bytes),
            (path_of(&name), 0, c as u64)
        );
        assert_state(&store, &steps, steps.len(), &context);
        assert_eq!(clean_log(&sim, &context) as usize, steps.len());
    }
}

// ---------------------------------------------------------------------------
// Damage that cannot be a torn write.

fn broken_names(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| path_of(&format!("{n}.broken")))
        .collect()
}

#[test]
fn a_flipped_bit_in_a_middle_record_is_corruption_at_that_record() {
    let steps = workload(31, 60);
    let base = closed_store(&steps, SyncMode::None, SEGMENT_BYTES);
    let segs = segments(&base);
    assert!(segs.len() >= 3, "{} segments", segs.len());
    // A record in the middle of the second segment, and the first record of
    // the last segment (valid records follow both).
    let second = parse_segment(&segs[1].1).unwrap().1;
    let last = parse_segment(&segs[segs.len() - 1].1).unwrap().1;
    assert!(second.len() >= 3 && last.len() >= 2);
    let targets = [(1, second[second.len() / 2]), (segs.len() - 1, last[0])];
    for (index, rec) in targets {
        let (name, original) = &segs[index];
        let path = dir().join(name);
        let later: Vec<String> = segs[index + 1..].iter().map(|s| s.0.clone()).collect();
        let payload_bits = (rec.end - rec.offset - RECORD_HEADER) * 8;
        let bits = (0..RECORD_HEADER * 8)
            .chain((0..payload_bits).step_by(13).map(|b| b + RECORD_HEADER * 8));
        for bit in bits {
            let field = match bit / 8 {
                0..4 => "length",
                4..8 => "crc",
                8..16 => "lsn",
                16..20 => "kind/fragment/reserved",
                _ => "payload",
            };
            let context = format!(
                "{name} record at {} (LSN {}), {field} bit {bit}",
                rec.offset, rec.lsn
            );
            let damaged = |sim: &SimStorage| sim.flip_bit(&path, rec.offset * 8 + bit);
            for mode in [RecoveryMode::TolerateTail, RecoveryMode::Strict] {
                let sim = Arc::new(base.fork());
                damaged(&sim);
                let before = sim.image();
                let (result, largest) = largest_allocation(|| open(&sim, SyncMode::None, mode));
                let Err(EngineError::Corruption {
                    file,
                    offset,
                    lsn,
                    reason,
                }) = result
                else {
                    panic!(
                        "{context}, {mode:?}: not corruption: {:?}",
                        result.map(|r| r.1)
                    );
                };
                assert_eq!(
                    (file, offset, lsn),
                    (path_of(name), rec.offset as u64, Some(rec.lsn)),
                    "{context}, {mode:?}: {reason}"
                );
                if field == "length" && bit >= 22 {
                    assert!(reason.contains("exceeds"), "{context}: {reason}");
                }
                assert!(largest < 64 << 20, "{context}: allocated {largest} bytes");
                assert_eq!(sim.image(), before, "{context}, {mode:?}: changed files");
            }
            // Point in time: exactly the ops before the damaged one.
            let sim = Arc::new(base.fork());
            damaged(&sim);
            let (store, report) = open_ok(&sim, RecoveryMode::PointInTime, &context);
            let k = rec.lsn as usize - 1;
            assert_eq!(report.last_lsn as usize, k, "{context}");
            let stopped = report.stopped.as_ref().unwrap();
            assert_eq!(
                (stopped.file.as_str(), stopped.offset, stopped.bytes),
                (
                    path_of(name).as_str(),
                    rec.offset as u64,
                    (original.len() - rec.offset) as u64
                ),
                "{context}"
            );
            assert_eq!(report.torn, None);
            assert_eq!(report.set_aside, broken_names(&later), "{context}");
            for n in &later {
                assert!(
                    sim.bytes(&dir().join(n)).is_none(),
                    "{context}: {n} still there"
                );
                assert_eq!(
                    sim.bytes(&dir().join(format!("{n}.broken"))).as_ref(),
                    segs.iter().find(|s| &s.0 == n).map(|s| &s.1)
                );
            }
            assert_state(&store, &steps, k, &context);
            assert_eq!(clean_log(&sim, &context) as usize, k);
            if bit % 16 == 0 {
                // The recovered store reopens as it is and takes new writes.
                apply(&store, &steps[k]).unwrap();
                store.close().unwrap();
                drop(store);
                check_recovery(&sim, &steps, k + 1, k + 1, &context);
            }
        }
    }
}

#[test]
fn a_missing_segment_is_corruption_naming_the_gap() {
    let steps = workload(41, 60);
    let base = closed_store(&steps, SyncMode::None, SEGMENT_BYTES);
    let segs = segments(&base);
    assert!(segs.len() >= 3);
    let first_lsn = |i: usize| parse_segment(&segs[i].1).unwrap().0;
    for missing in 0..segs.len() - 1 {
        let after = &segs[missing + 1].0;
        for mode in [RecoveryMode::TolerateTail, RecoveryMode::Strict] {
            let sim = Arc::new(base.fork());
            sim.delete(&dir().join(&segs[missing].0));
            let before = sim.image();
            let context = format!("{} missing, {mode:?}", segs[missing].0);
            let Err(EngineError::Corruption {
                file,
                offset,
                lsn,
                reason,
            }) = open(&sim, SyncMode::None, mode)
            else {
                panic!("{context}: no corruption");
            };
            assert_eq!(
                (file, offset, lsn),
                (path_of(after), 0, Some(first_lsn(missing + 1))),
                "{context}"
            );
            let expected = if missing == 0 {
                "the log starts at LSN".to_owned()
            } else {
                format!("LSN {} was next: a segment is missing", first_lsn(missing))
            };
            assert!(reason.contains(&expected), "{context}: {reason}");
            assert_eq!(sim.image(), before, "{context}");
        }
    }
}

#[test]
fn an_unknown_segment_format_version_is_a_format_error() {
    let steps = workload(51, 60);
    let base = closed_store(&steps, SyncMode::None, SEGMENT_BYTES);
    let segs = segments(&base);
    for (name, _) in [&segs[0], &segs[1], &segs[segs.len() - 1]] {
        for mode in [
            RecoveryMode::TolerateTail,
            RecoveryMode::Strict,
            RecoveryMode::PointInTime,
        ] {
            let sim = Arc::new(base.fork());
            sim.modify(&dir().join(name), |b| {
                b[8..12].copy_from_slice(&5u32.to_le_bytes());
                let crc = crc32fast::hash(&b[0..20]);
                b[20..24].copy_from_slice(&crc.to_le_bytes());
            });
            let before = sim.image();
            let context = format!("{name}, {mode:?}");
            let Err(EngineError::Format { file, reason }) = open(&sim, SyncMode::None, mode) else {
                panic!("{context}: no format error");
            };
            assert_eq!(file, path_of(name), "{context}");
            assert!(reason.contains("version 5"), "{context}: {reason}");
            assert_eq!(sim.image(), before, "{context}");
        }
    }
}

// ---------------------------------------------------------------------------
// Failing storage operations.

#[test]
fn every_injected_io_failure_ends_cleanly_and_recovers_a_prefix() {
    let steps = workload(61, 25);
    let flush_at = [steps.len() / 2, steps.len()];
    let mut runs = 0;
    for sync in [SyncMode::Always, SyncMode::None] {
        for forever in [false, true] {
            for errno in [EIO, ENOSPC] {
                for n in 1.. {
                    let context = format!("{sync:?}, op {n} fails with {errno}, forever {forever}");
                    let sim = Arc::new(SimStorage::new());
                    sim.inject(if forever {
                        Fault::fail_forever(None, n, errno)
                    } else {
                        Fault::fail(None, n, errno)
                    });
                    let mut run = Run {
                        results: Vec::new(),
                        acked: 0,
                        flushed: 0,
                        failed: false,
                    };
                    match open(&sim, sync, RecoveryMode::TolerateTail) {
                        Err(e) => assert!(is_io(errno)(&e), "{context}: open gave {e:?}"),
                        Ok((store, _)) => {
                            run = run_steps(&store, &steps, &flush_at);
                            check_errors(&run, &steps, is_io_or_its_poison(errno), &context);
                            if run.failed {
                                let flushed = store.flush();
                                assert!(
                                    matches!(flushed, Err(EngineError::Poisoned { ref reason }) if reason.contains(&format!("os error {errno}"))),
                                    "{context}: flush after a failure gave {flushed:?}"
                                );
                            }
                            match store.close() {
                                Ok(()) => {}
                                Err(e) => assert!(is_io(errno)(&e), "{context}: close gave {e:?}"),
                            }
                        }
                    }
                    runs += 1;
                    let fired = sim.fired() > 0;
                    sim.clear_faults();
                    let hi = run.acked + usize::from(run.failed);
                    // A killed process: the kernel kept everything.
                    let live = Arc::new(sim.fork());
                    check_recovery(&live, &steps, run.acked, hi, &format!("{context}, live"));
                    // A power cut.
                    sim.crash(KeepPolicy::Synced);
                    sim.reboot();
                    let lo = match sync {
                        SyncMode::Always => run.acked,
                        _ => run.flushed,
                    };
                    check_recovery(&sim, &steps, lo, hi, &format!("{context}, power cut"));
                    if !fired {
                        assert_eq!(run.acked, steps.len(), "{context}");
                        break;
                    }
                }
            }
        }
    }
    assert!(runs > 200, "only {runs} runs");
}

#[test]
fn a_short_write_poisons_the_store_and_the_partial_record_is_cut() {
    let steps = workload(71, 30);
    let appends = {
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, SyncMode::Always, RecoveryMode::TolerateTail).unwrap();
        let before = sim.op_count_of(OpKind::Append);
        run_steps(&store, &steps, &[]);
        sim.op_count_of(OpKind::Append) - before
    };
    let mut torn_seen = 0;
    for j in 1..=appends {
        for keep in [0, 1, 13, RECORD_HEADER, RECORD_HEADER + 1, 33, 1 << 20] {
            let context = format!("append {j} keeps {keep} bytes");
            let sim = Arc::new(SimStorage::new());
            let (store, _) = open(&sim, SyncMode::Always, RecoveryMode::TolerateTail).unwrap();
            sim.inject(Fault::short_write(j, keep));
            let run = run_steps(&store, &steps, &[]);
            assert!(run.failed, "{context}");
            check_errors(&run, &steps, is_io_or_its_poison(EIO), &context);
            assert!(
                matches!(store.flush(), Err(EngineError::Poisoned { .. })),
                "{context}"
            );
            let (last, bytes) = segments(&sim).pop().unwrap();
            drop(store);
            // Process crash: the partial bytes are in the file.
            let live = Arc::new(sim.fork());
            let (store, report) = open_ok(&live, RecoveryMode::TolerateTail, &context);
            let k = report.last_lsn as usize;
            if keep < RECORD_HEADER {
                assert_eq!(k, run.acked, "{context}");
            } else {
                assert!(k == run.acked || k == run.acked + 1, "{context}: {k}");
            }
            match &report.torn {
                Some(torn) => {
                    torn_seen += 1;
                    assert_eq!(k, run.acked, "{context}");
                    assert!(
                        keep <= bytes.len(),
                        "{context}: torn tail after a full write"
                    );
                    assert_eq!(
                        (torn.file.clone(), torn.offset, torn.bytes),
                        (path_of(&last), (bytes.len() - keep) as u64, keep as u64),
                        "{context}"
                    );
                }
                None => assert!(
                    keep == 0 || keep >= RECORD_HEADER,
                    "{context}: no torn tail"
                ),
            }
            assert_state(&store, &steps, k, &context);
            assert_eq!(clean_log(&live, &context) as usize, k);
            drop(store);
            // Power cut: the partial record was never synced.
            sim.crash(KeepPolicy::Synced);
            sim.reboot();
            check_recovery(
                &sim,
                &steps,
                run.acked,
                run.acked,
                &format!("{context}, power cut"),
            );
        }
    }
    assert!(
        torn_seen as u64 > appends * 3,
        "only {torn_seen} torn tails"
    );
}

#[test]
fn a_failure_or_crash_during_recovery_recovers_the_same_prefix() {
    // A store whose last segment has a torn tail.
    let steps = workload(81, 50);
    let sim = Arc::new(SimStorage::new());
    let (store, _) = open(&sim, SyncMode::None, RecoveryMode::TolerateTail).unwrap();
    run_steps(&store, &steps, &[]);
    let (last, _) = segments(&sim).pop().unwrap();
    crash(&sim, Some(store), KeepPolicy::Everything);
    sim.modify(&dir().join(&last), |b| b.truncate(b.len() - 5));
    let base = sim;
    let k0 = {
        let sim = Arc::new(base.fork());
        let (_, report) = open_ok(&sim, RecoveryMode::TolerateTail, "clean recovery");
        assert!(report.torn.is_some());
        report.last_lsn as usize
    };
    for n in 1.. {
        let mut fired = false;
        for (i, fault) in [
            Fault::fail(None, n, EIO),
            Fault::crash_before(None, n, KeepPolicy::Synced),
            Fault::crash_before(None, n, KeepPolicy::Random(n)),
        ]
        .into_iter()
        .enumerate()
        {
            let context = format!("recovery op {n}, fault {i}");
            let sim = Arc::new(base.fork());
            sim.inject(fault);
            match open(&sim, SyncMode::None, RecoveryMode::TolerateTail) {
                Ok((store, report)) => {
                    assert_eq!(report.last_lsn as usize, k0, "{context}");
                    assert_state(&store, &steps, k0, &context);
                }
                Err(e) => assert!(is_io(EIO)(&e), "{context}: {e:?}"),
            }
            fired |= sim.fired() > 0;
            sim.clear_faults();
            sim.reboot();
            check_recovery(&sim, &steps, k0, k0, &context);
        }
        if !fired {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// Recovery is repeatable.

#[test]
fn recovering_twice_gives_the_same_state_and_the_same_files() {
    for seed in 0..30u64 {
        let steps = workload(4000 + seed, 40);
        let total = workload_ops(&steps, SyncMode::None, &[]);
        let sim = Arc::new(SimStorage::new());
        let (store, _) = open(&sim, SyncMode::None, RecoveryMode::TolerateTail).unwrap();
        let mut rng = Rng::new(seed);
        sim.inject(Fault::crash_before(
            None,
            rng.range(1, total as i64) as u64,
            KeepPolicy::Random(seed),
        ));
        run_steps(&store, &steps, &[]);
        crash(&sim, Some(store), KeepPolicy::Random(seed));
        let context = format!("seed {seed}");
        let w = window(&steps);
        let (store, first) = open_ok(&sim, RecoveryMode::TolerateTail, &context);
        let state = store_state(&store, w);
        store.close().unwrap();
        drop(store);
        let image = sim.image();
        for again in 0..2 {
            if again == 1 {
                // A power cut right after a recovery changes nothing either.
                sim.crash(KeepPolicy::Synced);
                sim.reboot();
            }
            let (store, report) = open_ok(&sim, RecoveryMode::TolerateTail, &context);
            assert_eq!(
                (
                    report.last_lsn,
                    report.records,
                    report.torn.clone(),
                    report.stopped.clone()
                ),
                (first.last_lsn, first.records, None, None),
                "{context}"
            );
            assert_eq!(store_state(&store, w), state, "{context}");
            store.close().unwrap();
            drop(store);
            assert_eq!(sim.image(), image, "{context}: recovery changed files");
        }
    }
}

// ---------------------------------------------------------------------------
// Regression tests for library bugs this suite found. Each failed on
// commit 5c1a104 (the reader as first written).

/// A torn tail inside the LAST fragment of a fragmented op (> MAX_FRAGMENT
/// bytes) must be cut at the op's FIRST fragment. The reader used to cut at
/// the damaged fragment and keep the FIRST one; once a new segment followed
/// it, the next open found "an op's fragments end before its LAST fragment"
/// in a segment that is not the last, and refused the store as corrupt.
#[test]
fn a_torn_fragmented_op_is_cut_whole_so_recovery_can_run_again() {
    let sim = Arc::new(SimStorage::new());
    let opts = OpenOptions {
        sync: SyncMode::None,
        ..OpenOptions::default()
    };
    let (store, _) = Store::open_on(sim.clone(), dir(), &opts).unwrap();
    store.define_metric("m", 1, Aggregation::Sum).unwrap();
    let id = store.series("m", &["a"]).unwrap();
    store.write_block(id, 0, &[1.0, 2.0]).unwrap();
    let big: Vec<f32> = (0..MAX_FRAGMENT / 4 + 100)
        .map(|i| i as f32 + 0.5)
        .collect();
    store.write_block(id, 10, &big).unwrap();
    store.close().unwrap();
    drop(store);
    let (name, bytes) = segments(&sim).pop().unwrap();
    let (_, records) = parse_segment(&bytes).unwrap();
    let [.., first, last] = records[..] else {
        unreachable!()
    };
    assert_eq!(
        (first.fragment, last.fragment, first.lsn, last.lsn),
        (1, 3, 4, 4)
    );
    // A power cut tore the LAST fragment.
    sim.cut(&dir().join(&name), last.offset + 30);
    let (store, report) = Store::open_on(sim.clone(), dir(), &opts).unwrap();
    assert_eq!(report.last_lsn, 3);
    let values = store.read(Target::Series(id), 0, 12).unwrap().values;
    assert_eq!(values[..2], [1.0, 2.0]);
    assert!(values[10].is_nan());
    store.close().unwrap();
    drop(store);
    let torn = report.torn.unwrap();
    let again = Store::open_on(sim.clone(), dir(), &opts).map(|r| r.1.last_lsn);
    assert_eq!(
        (torn.offset, again.clone()),
        (first.offset as u64, Ok(3)),
        "the torn op starts at {} (FIRST fragment) but the tail was cut at {}; reopening gave {again:?}",
        first.offset,
        torn.offset
    );
}

/// Point-in-time recovery interrupted at any operation (a failure, or a
/// crash that keeps any part of what it had done) can be run again and
/// recovers the same prefix. The reader used to cut the damaged segment
/// before setting the later ones aside; a crash in between left a gap that
/// every recovery mode refused.
#[test]
fn an_interrupted_point_in_time_recovery_can_be_run_again() {
    let steps = workload(91, 60);
    let base = closed_store(&steps, SyncMode::None, SEGMENT_BYTES);
    let segs = segments(&base);
    assert!(segs.len() >= 3);
    let records = parse_segment(&segs[1].1).unwrap().1;
    let rec = records[records.len() / 2];
    base.flip_bit(&dir().join(&segs[1].0), rec.offset * 8 + 200);
    let k = rec.lsn as usize - 1;
    for n in 1.. {
        let mut fired = false;
        for fault in [
            Fault::fail(None, n, EIO),
            Fault::crash_before(None, n, KeepPolicy::Synced),
            Fault::crash_before(None, n, KeepPolicy::Everything),
            Fault::crash_before(None, n, KeepPolicy::Random(n)),
        ] {
            let context = format!("{:?} at recovery op {n}", fault.action);
            let sim = Arc::new(base.fork());
            sim.inject(fault);
            let first = open(&sim, SyncMode::None, RecoveryMode::PointInTime);
            fired |= sim.fired() > 0;
            match first {
                Ok((_, report)) => assert_eq!(report.last_lsn as usize, k, "{context}"),
                Err(e) => assert!(is_io(EIO)(&e), "{context}: {e:?}"),
            }
            sim.clear_faults();
            sim.reboot();
            let (store, report) = open_ok(&sim, RecoveryMode::PointInTime, &context);
            assert_eq!(report.last_lsn as usize, k, "{context}");
            assert_state(&store, &steps, k, &context);
            assert_eq!(clean_log(&sim, &context) as usize, k, "{context}");
            for (name, bytes) in &segs[2..] {
                let broken = sim.bytes(&dir().join(format!("{name}.broken")));
                assert_eq!(broken.as_ref(), Some(bytes), "{context}: {name}");
            }
        }
        if !fired {
            break;
        }
    }
}

/// docs/guarantees.md: point-in-time recovery handles "an LSN gap, a
/// missing segment" by stopping before it and renaming the later segments
/// `*.broken`. The reader used to check for gaps before it looked at the
/// recovery mode, and refused the store with `Corruption` in every mode.
#[test]
fn point_in_time_recovery_stops_before_a_missing_segment() {
    let steps = workload(101, 60);
    let base = closed_store(&steps, SyncMode::None, SEGMENT_BYTES);
    let segs = segments(&base);
    assert!(segs.len() >= 3);
    let missing_from = parse_segment(&segs[1].1).unwrap().0;
    base.delete(&dir().join(&segs[1].0));
    let sim = Arc::new(base.fork());
    let (store, report) = open_ok(&sim, RecoveryMode::PointInTime, "segment 2 missing");
    let k = missing_from as usize - 1;
    assert_eq!(report.last_lsn as usize, k);
    assert!(report.stopped.is_some());
    let later: Vec<String> = segs[2..].iter().map(|s| s.0.clone()).collect();
    assert_eq!(report.set_aside, broken_names(&later));
    assert_state(&store, &steps, k, "segment 2 missing");
}

/// A damaged header of an earlier segment is "damage in an earlier segment"
/// (docs/guarantees.md), where point-in-time recovery stops and sets the
/// rest aside ("Replay stops at the first damage wherever it is",
/// reader.rs). The reader used to return `Corruption` for header damage
/// before it looked at the recovery mode.
#[test]
fn point_in_time_recovery_stops_at_a_damaged_segment_header() {
    let steps = workload(111, 60);
    let base = closed_store(&steps, SyncMode::None, SEGMENT_BYTES);
    let segs = segments(&base);
    assert!(segs.len() >= 3);
    let first = parse_segment(&segs[1].1).unwrap().0;
    // A bit of the header's first LSN: its checksum no longer matches.
    base.flip_bit(&dir().join(&segs[1].0), 12 * 8);
    let sim = Arc::new(base.fork());
    let result = open(&sim, SyncMode::None, RecoveryMode::PointInTime);
    let Ok((store, report)) = result else {
        panic!(
            "point-in-time recovery refused the store: {:?}",
            result.err()
        );
    };
    let k = first as usize - 1;
    assert_eq!(report.last_lsn as usize, k);
    let stopped = report.stopped.as_ref().unwrap();
    assert_eq!(
        (stopped.file.clone(), stopped.offset),
        (path_of(&segs[1].0), 0)
    );
    let later: Vec<String> = segs[2..].iter().map(|s| s.0.clone()).collect();
    for name in broken_names(&later) {
        assert!(report.set_aside.contains(&name), "{name} not set aside");
    }
    assert_state(&store, &steps, k, "damaged header");
}
