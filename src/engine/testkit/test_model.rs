//! The workload model shared by the crash test suites (test builds only).
//!
//! A workload is a list of [`Step`]s, each one op (one log record). The
//! model computes, independently of the engine, what a store holds after the
//! first `k` steps: the metrics, the series and the value bits of every grid
//! slot in a [`Window`] covering every write. Tests compare a recovered
//! store's [`store_state`] with [`model_state`] bit for bit.

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::testkit::sim_storage::{KeepPolicy, Rng, SimStorage};
use crate::engine::{
    Aggregation, EngineError, OpenOptions, RecoveryMode, SeriesKeys, Store, SyncMode, Target,
};

pub(crate) const DIR: &str = "/store";
pub(crate) const SEGMENT_BYTES: u64 = 4096;
pub(crate) const NAN_BITS: u32 = 0x7FC0_0000;

/// How the crash suites open a store: small segments, so workloads rotate,
/// and no background checkpoints, so every checkpoint is a workload step.
pub(crate) fn options(sync: SyncMode) -> OpenOptions {
    OpenOptions {
        sync,
        recovery: RecoveryMode::TolerateTail,
        segment_bytes: SEGMENT_BYTES,
        checkpoint_every: None,
        checkpoint_log_bytes: None,
        ..OpenOptions::default()
    }
}

pub(crate) fn dir() -> &'static Path {
    Path::new(DIR)
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Define {
        name: &'static str,
        frequency: i64,
        aggregation: Aggregation,
    },
    Series {
        metric: &'static str,
        path: Vec<String>,
        id: u32,
    },
    /// New series of one metric created by one call (one record): handles
    /// `first`, `first + 1`, ... in the order of `paths`.
    SeriesMany {
        metric: &'static str,
        paths: Vec<Vec<String>>,
        first: u32,
    },
    Block {
        series: u32,
        start: i64,
        values: Vec<f32>,
    },
    Tick {
        timestamp: i64,
        series: Vec<u32>,
        values: Vec<f32>,
    },
    Points {
        series: Vec<u32>,
        timestamps: Vec<i64>,
        values: Vec<f32>,
    },
    DropBefore {
        before: i64,
    },
    DropSeriesBefore {
        series: Vec<u32>,
        before: i64,
    },
}

/// A random value: NaN, a special float, or any other bit pattern.
fn value(rng: &mut Rng) -> f32 {
    match rng.below(10) {
        0 => f32::NAN,
        1 => {
            const SPECIAL: [f32; 7] = [
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE,
                1e-45,
                f32::MAX,
            ];
            SPECIAL[rng.below(SPECIAL.len() as u64) as usize]
        }
        _ => loop {
            let v = f32::from_bits(rng.next_u64() as u32);
            if !v.is_nan() {
                break v;
            }
        },
    }
}

pub(crate) fn values(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| value(rng)).collect()
}

/// The slot of `ts` on the grid of frequency `f`: floor((ts + f/2) / f).
fn slot(ts: i64, f: i64) -> i64 {
    (i128::from(ts) + i128::from(f / 2)).div_euclid(i128::from(f)) as i64
}

pub(crate) fn frequencies(steps: &[Step]) -> Vec<i64> {
    let mut metric_freq = BTreeMap::new();
    let mut out = Vec::new();
    for step in steps {
        match step {
            Step::Define {
                name, frequency, ..
            } => {
                metric_freq.insert(*name, *frequency);
            }
            Step::Series { metric, id, .. } => {
                assert_eq!(*id as usize, out.len());
                out.push(metric_freq[metric]);
            }
            Step::SeriesMany {
                metric,
                paths,
                first,
            } => {
                assert_eq!(*first as usize, out.len());
                out.extend(paths.iter().map(|_| metric_freq[metric]));
            }
            _ => {}
        }
    }
    out
}

/// The (series, slot, value bits) a write stores, in order.
fn cells(step: &Step, freqs: &[i64]) -> Vec<(u32, i64, u32)> {
    match step {
        Step::Block {
            series,
            start,
            values,
        } => {
            let first = slot(*start, freqs[*series as usize]);
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (*series, first + i as i64, v.to_bits()))
                .collect()
        }
        Step::Tick {
            timestamp,
            series,
            values,
        } => series
            .iter()
            .zip(values)
            .map(|(&s, v)| (s, slot(*timestamp, freqs[s as usize]), v.to_bits()))
            .collect(),
        Step::Points {
            series,
            timestamps,
            values,
        } => series
            .iter()
            .zip(timestamps)
            .zip(values)
            .map(|((&s, &ts), v)| (s, slot(ts, freqs[s as usize]), v.to_bits()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Slots `lo..hi` covering every write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) lo: i64,
    pub(crate) hi: i64,
}

pub(crate) fn window(steps: &[Step]) -> Window {
    let freqs = frequencies(steps);
    let mut w = Window { lo: 0, hi: 1 };
    for step in steps {
        for (_, s, _) in cells(step, &freqs) {
            w.lo = w.lo.min(s);
            w.hi = w.hi.max(s + 1);
        }
    }
    w
}

/// Everything recovery must restore.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct State {
    pub(crate) metrics: Vec<(String, i64, Aggregation)>,
    pub(crate) series: Vec<(String, Vec<String>)>,
    /// Per series, the value bits of the window's slots.
    pub(crate) values: Vec<Vec<u32>>,
    pub(crate) samples: u64,
}

/// 1 if `bits` is a sample (not NaN), else 0.
fn sample(bits: u32) -> u64 {
    u64::from(!f32::from_bits(bits).is_nan())
}

/// Applies one op to a model state (the window must cover every write).
pub(crate) fn model_apply(state: &mut State, step: &Step, freqs: &[i64], w: Window) {
    let len = (w.hi - w.lo) as usize;
    match step {
        Step::Define {
            name,
            frequency,
            aggregation,
        } => state
            .metrics
            .push(((*name).to_owned(), *frequency, *aggregation)),
        Step::Series { metric, path, .. } => {
            state.series.push(((*metric).to_owned(), path.clone()));
            state.values.push(vec![NAN_BITS; len]);
        }
        Step::SeriesMany { metric, paths, .. } => {
            for path in paths {
                state.series.push(((*metric).to_owned(), path.clone()));
                state.values.push(vec![NAN_BITS; len]);
            }
        }
        Step::DropBefore { .. } | Step::DropSeriesBefore { .. } => {
            let (before, only) = match step {
                Step::DropBefore { before } => (before, None),
                Step::DropSeriesBefore { series, before } => (before, Some(series)),
                _ => unreachable!(),
            };
            for (s, row) in state.values.iter_mut().enumerate() {
                if only.is_some_and(|only| !only.contains(&(s as u32))) {
                    continue;
                }
                let f = freqs[s];
                for (i, bits) in row.iter_mut().enumerate() {
                    // Slot k holds time k * f; it goes if that is before.
                    if i128::from(w.lo + i as i64) * i128::from(f) < i128::from(*before) {
                        state.samples -= sample(*bits);
                        *bits = NAN_BITS;
                    }
                }
            }
        }
        write => {
            for (s, k, bits) in cells(write, freqs) {
                let old =
                    std::mem::replace(&mut state.values[s as usize][(k - w.lo) as usize], bits);
                state.samples = state.samples + sample(bits) - sample(old);
            }
        }
    }
}

pub(crate) fn empty_state() -> State {
    State {
        metrics: Vec::new(),
        series: Vec::new(),
        values: Vec::new(),
        samples: 0,
    }
}

/// The model after the first `k` ops.
pub(crate) fn model_state(steps: &[Step], k: usize, w: Window) -> State {
    let freqs = frequencies(steps);
    let mut state = empty_state();
    for step in &steps[..k] {
        model_apply(&mut state, step, &freqs, w);
    }
    state
}

pub(crate) fn store_state(store: &Store, w: Window) -> State {
    let metrics: Vec<(String, i64, Aggregation)> = store
        .metrics()
        .into_iter()
        .map(|m| (m.name, m.frequency, m.aggregation))
        .collect();
    let mut series = Vec::new();
    let mut values = Vec::new();
    for (index, (id, metric, path)) in store.list_series().into_iter().enumerate() {
        assert_eq!(id as usize, index, "series handles are dense");
        let f = metrics
            .iter()
            .find(|m| m.0 == metric)
            .expect("a series' metric is defined")
            .1;
        let read = store.read(Target::Series(id), w.lo * f, w.hi * f).unwrap();
        assert_eq!(read.start, w.lo * f);
        values.push(read.values.iter().map(|v| v.to_bits()).collect());
        series.push((metric, path));
    }
    State {
        metrics,
        series,
        values,
        samples: store.stats().samples,
    }
}

/// Panics with the first difference between two states.
pub(crate) fn assert_same(got: &State, want: &State, w: Window, context: &str) {
    if got == want {
        return;
    }
    assert_eq!(got.metrics, want.metrics, "{context}: metrics");
    assert_eq!(got.series, want.series, "{context}: series");
    for (s, (g, m)) in got.values.iter().zip(&want.values).enumerate() {
        if let Some(i) = (0..g.len()).find(|&i| g[i] != m[i]) {
            panic!(
                "{context}: series {s} slot {} holds bits {:#010x}, expected {:#010x}",
                w.lo + i as i64,
                g[i],
                m[i]
            );
        }
    }
    assert_eq!(got.samples, want.samples, "{context}: samples");
}

pub(crate) fn apply(store: &Store, step: &Step) -> Result<(), EngineError> {
    match step {
        Step::Define {
            name,
            frequency,
            aggregation,
        } => store.define_metric(name, *frequency, *aggregation),
        Step::Series { metric, path, id } => {
            let got = store.series(metric, path)?;
            assert_eq!(got, *id, "series handle of {metric}/{path:?}");
            Ok(())
        }
        Step::SeriesMany {
            metric,
            paths,
            first,
        } => {
            let mut keys = SeriesKeys::new();
            for path in paths {
                keys.push(metric, path);
            }
            let got = store.series_many(&keys)?;
            let want: Vec<u32> = (*first..).take(paths.len()).collect();
            assert_eq!(got, want, "series handles of {metric}/{paths:?}");
            Ok(())
        }
        Step::Block {
            series,
            start,
            values,
        } => store.write_block(*series, *start, values),
        Step::Tick {
            timestamp,
            series,
            values,
        } => store.write_tick(*timestamp, series, values),
        Step::Points {
            series,
            timestamps,
            values,
        } => store.write_points(series, timestamps, values),
        Step::DropBefore { before } => store.drop_before(*before),
        Step::DropSeriesBefore { series, before } => store.drop_series_before(series, *before),
    }
}

/// Simulates a power cut (or process crash) under a live store, and
/// brings the machine back up with no faults armed.
pub(crate) fn crash(sim: &SimStorage, store: Option<Store>, policy: KeepPolicy) {
    if !sim.is_down() {
        sim.crash(policy);
    }
    drop(store);
    sim.clear_faults();
    sim.reboot();
}
