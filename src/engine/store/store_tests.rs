//! Store-level guarantees: ops apply whole or not at all, aggregation does
//! not depend on creation order, and concurrent writers leave the same state
//! as applying their ops one by one.

use std::sync::Arc;

use super::*;
use crate::engine::testkit::sim_storage::Rng;
use crate::engine::testkit::test_model::{
    Step, apply, assert_same, empty_state, frequencies, model_apply, store_state, values, window,
};
use crate::engine::{CHUNK_BYTES, Target};

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn store_with(metrics: &[(&str, i64, Aggregation)]) -> Store {
    let store = Store::new(TimeUnit::Seconds);
    for &(name, frequency, aggregation) in metrics {
        store.define_metric(name, frequency, aggregation).unwrap();
    }
    store
}

fn read(store: &Store, id: SeriesId, start: i64, stop: i64) -> Vec<f32> {
    store.read(Target::Series(id), start, stop).unwrap().values
}

#[test]
fn a_tick_with_one_bad_handle_applies_nothing() {
    let store = store_with(&[("m", 10, Aggregation::Sum)]);
    let a = store.series("m", &["a"]).unwrap();
    let b = store.series("m", &["b"]).unwrap();
    let err = store
        .write_tick(100, &[a, b, 9], &[1.0, 2.0, 3.0])
        .unwrap_err();
    assert!(
        err.to_string().starts_with("series: element 2 is 9"),
        "{err}"
    );
    assert!(read(&store, a, 100, 110)[0].is_nan());
    assert!(read(&store, b, 100, 110)[0].is_nan());
    assert_eq!(store.stats().samples, 0);
    assert_eq!(store.stats().write_calls, 0);
}

#[test]
fn a_tick_puts_each_series_in_the_nearest_slot_of_its_own_frequency() {
    let store = store_with(&[("ten", 10, Aggregation::Sum), ("six", 6, Aggregation::Sum)]);
    let a = store.series("ten", &["a"]).unwrap();
    let b = store.series("six", &["b"]).unwrap();
    let c = store.series("ten", &["c"]).unwrap();
    // 44 is slot 4 (40) at frequency 10 and slot 7 (42) at frequency 6;
    // the frequencies alternate, so no slot may be carried across them.
    store.write_tick(44, &[a, b, c], &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(bits(&read(&store, a, 40, 50)), bits(&[1.0]));
    assert_eq!(bits(&read(&store, b, 42, 48)), bits(&[2.0]));
    assert_eq!(bits(&read(&store, c, 40, 50)), bits(&[3.0]));
    // One frequency: one shared slot (46 is slot 5 at frequency 10).
    store.write_tick(46, &[c, a], &[5.0, 4.0]).unwrap();
    assert_eq!(bits(&read(&store, a, 40, 60)), bits(&[1.0, 4.0]));
    assert_eq!(bits(&read(&store, c, 40, 60)), bits(&[3.0, 5.0]));
    assert!(read(&store, b, 36, 42)[0].is_nan());
    assert_eq!(store.stats().samples, 5);
}

#[test]
fn points_with_one_timestamp_out_of_range_apply_nothing() {
    let store = store_with(&[("m", 16, Aggregation::Sum)]);
    let a = store.series("m", &["a"]).unwrap();
    let err = store
        .write_points(&[a, a], &[0, i64::MAX], &[1.0, 2.0])
        .unwrap_err();
    assert!(
        err.to_string().starts_with("timestamps: element 1:"),
        "{err}"
    );
    assert!(read(&store, a, 0, 16)[0].is_nan());
}

#[test]
fn the_later_point_wins_within_one_call() {
    let store = store_with(&[("m", 10, Aggregation::Sum)]);
    let a = store.series("m", &["a"]).unwrap();
    let b = store.series("m", &["b"]).unwrap();
    store
        .write_points(&[a, b, a], &[20, 20, 21], &[1.0, 5.0, 2.0])
        .unwrap();
    assert_eq!(read(&store, a, 20, 30), vec![2.0]);
    assert_eq!(read(&store, b, 20, 30), vec![5.0]);
}

#[test]
fn aggregation_does_not_depend_on_creation_or_write_order() {
    // Values chosen so float additions in another order give other bits.
    let values: [(&str, f32); 4] = [("h1", 1e8), ("h2", 1.0), ("h3", -1e8), ("h4", 0.3)];
    let build = |order: &[usize]| {
        let store = store_with(&[("m", 1, Aggregation::Sum), ("n", 1, Aggregation::Avg)]);
        for &i in order {
            let (host, value) = values[i];
            for metric in ["m", "n"] {
                let id = store.series(metric, &["c", host]).unwrap();
                store.write_block(id, 0, &[value, f32::NAN, value]).unwrap();
            }
        }
        let target = |metric| Target::Path { metric, path: &[] };
        let sum = store.read(target("m"), 0, 3).unwrap().values;
        let avg = store.read(target("n"), 0, 3).unwrap().values;
        (bits(&sum), bits(&avg))
    };
    let reference = build(&[0, 1, 2, 3]);
    for order in [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]] {
        assert_eq!(build(&order), reference, "order {order:?}");
    }
    // Sum in path order in f64: ((1e8 + 1) - 1e8) + 0.3, rounded once to f32;
    // the average divides the same f64 sum by the four values present.
    let sum = ((1e8f64 + 1.0) - 1e8) + f64::from(0.3f32);
    assert_eq!(reference.0[0], (sum as f32).to_bits());
    assert_eq!(reference.1[0], ((sum / 4.0) as f32).to_bits());
    assert!(
        f32::from_bits(reference.0[1]).is_nan(),
        "no source has slot 1"
    );
}

#[test]
fn a_level_holding_the_metric_hides_its_descendants() {
    let store = store_with(&[("m", 1, Aggregation::Sum)]);
    let host = store.series("m", &["c", "h1"]).unwrap();
    let cpu = store.series("m", &["c", "h1", "cpu0"]).unwrap();
    let other = store.series("m", &["c", "h2", "cpu0"]).unwrap();
    store.write_block(host, 0, &[10.0]).unwrap();
    store.write_block(cpu, 0, &[1.0]).unwrap();
    store.write_block(other, 0, &[100.0]).unwrap();
    let cluster = store
        .read(
            Target::Path {
                metric: "m",
                path: &["c".to_owned()],
            },
            0,
            1,
        )
        .unwrap();
    assert_eq!(cluster.values, vec![110.0]);
}

#[test]
fn concurrent_writers_leave_the_state_of_their_ops_applied_in_order() {
    let store = Arc::new(store_with(&[("m", 1, Aggregation::Sum)]));
    let ids: Vec<SeriesId> = (0..8)
        .map(|i| store.series("m", &[format!("s{i}")]).unwrap())
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            let ids = ids.clone();
            std::thread::spawn(move || {
                for round in 0..200i64 {
                    // Every thread writes every series, each in its own slots.
                    let ts = round * 4 + t;
                    let values: Vec<f32> = ids
                        .iter()
                        .map(|&id| (id as i64 * 1000 + ts) as f32)
                        .collect();
                    store.write_tick(ts, &ids, &values).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for &id in &ids {
        let expected: Vec<f32> = (0..800).map(|ts| (id as i64 * 1000 + ts) as f32).collect();
        assert_eq!(bits(&read(&store, id, 0, 800)), bits(&expected));
    }
    assert_eq!(store.stats().samples, 8 * 800);
}

#[test]
fn the_memory_limit_drops_the_oldest_data_first_across_series() {
    let store = store_with(&[("m", 1, Aggregation::Sum), ("n", 2, Aggregation::Sum)]);
    let old = store.series("m", &["old"]).unwrap();
    let new = store.series("n", &["new"]).unwrap();
    // "old" holds 8 chunks of slots 0..8192 (time 0..8192); "new" holds 8
    // chunks from time 16384 on (frequency 2). 16 chunks = 64 KiB.
    store.write_block(old, 0, &vec![1.0; 8 * 1024]).unwrap();
    store.write_block(new, 16384, &vec![2.0; 8 * 1024]).unwrap();
    assert_eq!(store.stats().data_bytes, 16 * CHUNK_BYTES);
    store.set_memory_limit(Some(10 * CHUNK_BYTES)).unwrap();
    let stats = store.stats();
    // Down to at most 90% of the limit: 9 chunks; the 7 oldest went, all
    // from "old" (its data ends earliest).
    assert_eq!(stats.data_bytes, 9 * CHUNK_BYTES);
    assert_eq!((stats.evictions, stats.dropped_chunks), (1, 7));
    let kept = read(&store, old, 0, 8192);
    assert!(kept[..7 * 1024].iter().all(|v| v.is_nan()));
    assert!(kept[7 * 1024..].iter().all(|&v| v == 1.0));
    assert_eq!(
        read(&store, new, 16384, 16384 + 2 * 8 * 1024),
        vec![2.0; 8 * 1024]
    );
    // A write that passes the limit again evicts again.
    store.write_block(new, 40000, &vec![3.0; 2048]).unwrap();
    assert!(store.stats().data_bytes <= 9 * CHUNK_BYTES);
    assert_eq!(store.stats().evictions, 2);
}

#[test]
fn retention_keeps_only_data_newer_than_the_window() {
    let store = store_with(&[("m", 1, Aggregation::Sum)]);
    let a = store.series("m", &["a"]).unwrap();
    let now = TimeUnit::Seconds.now();
    store.write_block(a, now - 5000, &vec![1.0; 5000]).unwrap();
    store.set_retention(Some(1000)).unwrap();
    let values = read(&store, a, now - 5000, now);
    let kept = values.iter().filter(|v| !v.is_nan()).count();
    // The cut is at "now - 1000" as of the cut; allow the clock a second.
    assert!((999..=1001).contains(&kept), "kept {kept}");
    assert!(values[..3900].iter().all(|v| v.is_nan()));
    assert!(store.set_retention(Some(0)).is_err());
}

/// A workload of mostly stageable ticks (slots counting up, over six series
/// lists taken in turns: more than are staged at once, some sharing
/// series, one naming series twice, one of another frequency), with
/// everything that must write staged rows out mixed in: a slot not after
/// the last, a list of mixed frequencies, blocks, points and cuts on staged
/// series; also NaN, and slots across chunk boundaries.
fn staging_workload(seed: u64) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = vec![
        Step::Define {
            name: "a",
            frequency: 10,
            aggregation: Aggregation::Sum,
        },
        Step::Define {
            name: "b",
            frequency: 30,
            aggregation: Aggregation::Avg,
        },
    ];
    for id in 0..48u32 {
        steps.push(Step::Series {
            metric: if id < 40 { "a" } else { "b" },
            path: vec![format!("s{id}")],
            id,
        });
    }
    let lists: Vec<Vec<u32>> = vec![
        (0..40).collect(),
        vec![5, 5, 9, 1, 9, 30, 2, 5],
        (40..48).collect(),
        (0..10).collect(),
        (30..40).collect(),
        (10..20).rev().collect(),
    ];
    let mixed: Vec<u32> = vec![0, 41, 3, 47];
    let mut list = 0;
    let mut slot: i64 = 1000;
    for _ in 0..1500 {
        match rng.below(100) {
            0..=79 => {
                slot += match rng.below(40) {
                    0 => 0,
                    1 => -rng.range(1, 70),
                    2 => rng.range(2, 1100),
                    _ => 1,
                };
                slot = slot.clamp(0, 4000);
                if rng.chance(3, 10) {
                    list = rng.below(lists.len() as u64) as usize;
                }
                // Series of "b" (frequency 30) take every third slot.
                let f = if list == 2 { 30 } else { 10 };
                steps.push(Step::Tick {
                    // Anywhere that rounds to the slot of time `slot * 10`.
                    timestamp: slot * 10 / f * f + rng.range(-f / 2, f / 2 - 1),
                    values: values(&mut rng, lists[list].len()),
                    series: lists[list].clone(),
                });
            }
            80..=84 => steps.push(Step::Tick {
                timestamp: slot * 10,
                series: lists[0].clone(),
                values: values(&mut rng, lists[0].len()),
            }),
            85..=88 => steps.push(Step::Tick {
                timestamp: slot * 10,
                series: mixed.clone(),
                values: values(&mut rng, mixed.len()),
            }),
            89..=92 => {
                let n = rng.range(1, 80) as usize;
                steps.push(Step::Block {
                    series: rng.below(40) as u32,
                    start: rng.range(slot - 100, slot + 10).max(0) * 10,
                    values: values(&mut rng, n),
                });
            }
            93..=96 => {
                let series: Vec<u32> = (0..5).map(|_| rng.below(48) as u32).collect();
                let timestamps = (0..5)
                    .map(|_| rng.range(slot - 70, slot).max(0) * 10)
                    .collect();
                steps.push(Step::Points {
                    values: values(&mut rng, series.len()),
                    series,
                    timestamps,
                });
            }
            _ => steps.push(Step::DropBefore {
                before: rng.range(slot - 300, slot - 50) * 10,
            }),
        }
    }
    steps
}

#[test]
fn staged_ticks_leave_exactly_the_state_of_direct_writes() {
    for seed in 0..6 {
        let steps = staging_workload(seed);
        let (w, freqs) = (window(&steps), frequencies(&steps));
        let store = Store::new(TimeUnit::Seconds);
        let mut model = empty_state();
        let mut rng = Rng::new(seed + 100);
        for (k, step) in steps.iter().enumerate() {
            apply(&store, step).unwrap();
            model_apply(&mut model, step, &freqs, w);
            // Reads at random points see every tick applied before them.
            if rng.chance(1, 60) {
                let context = format!("seed {seed}, after op {k}");
                assert_same(&store_state(&store, w), &model, w, &context);
            }
        }
        assert_same(
            &store_state(&store, w),
            &model,
            w,
            &format!("seed {seed}, end"),
        );
    }
}

#[test]
fn series_many_creates_none_when_one_key_is_bad_and_all_in_order_otherwise() {
    let store = store_with(&[("m", 10, Aggregation::Sum)]);
    let old = store.series("m", &["c", "old"]).unwrap();
    let keys = |list: &[(&str, &[&str])]| {
        let mut keys = SeriesKeys::new();
        for (metric, path) in list {
            keys.push(metric, path);
        }
        keys
    };
    let bad = [
        keys(&[("m", &["c", "a"]), ("nope", &["c", "b"])]),
        keys(&[("m", &["c", "a"]), ("m", &["c", ".."])]),
        keys(&[("m", &["c", "a"]), ("m", &[])]),
    ];
    for keys in &bad {
        assert!(store.series_many(keys).is_err(), "{keys:?}");
        assert_eq!(store.series_count(), 1, "{keys:?} created a series");
    }
    let keys = keys(&[
        ("m", &["c", "b"]),
        ("m", &["c", "old"]),
        ("m", &["c", "a"]),
        ("m", &["c", "b"]),
    ]);
    let ids = store.series_many(&keys).unwrap();
    assert_eq!(ids, vec![1, old, 2, 1]);
    assert_eq!(
        store.series_key(2).unwrap(),
        ("m".to_owned(), vec!["c".to_owned(), "a".to_owned()])
    );
    assert_eq!(store.series_many(&keys).unwrap(), ids);
}

#[test]
fn sealed_chunks_read_and_take_writes_exactly_as_raw_ones() {
    // The staging workload (every kind of write, over and between chunks,
    // NaN, special floats and random bits), with seal passes at random
    // points: reads of sealed, raw and unsealed-then-written chunks must
    // match the model bit for bit.
    for seed in 0..4 {
        let steps = staging_workload(seed);
        let (w, freqs) = (window(&steps), frequencies(&steps));
        let store = Store::new(TimeUnit::Seconds);
        store.set_seal_after(None);
        let mut model = empty_state();
        let mut rng = Rng::new(seed + 200);
        let mut sealed = 0;
        for (k, step) in steps.iter().enumerate() {
            apply(&store, step).unwrap();
            model_apply(&mut model, step, &freqs, w);
            if rng.chance(1, 25) {
                sealed += store.seal();
            }
            if rng.chance(1, 60) {
                let context = format!("seed {seed}, after op {k}");
                assert_same(&store_state(&store, w), &model, w, &context);
            }
        }
        // Two passes: the first leaves each series' newest chunk raw (it was
        // written since the last pass), the second seals it.
        sealed += store.seal() + store.seal();
        let context = format!("seed {seed}, end ({sealed} chunks sealed)");
        assert_same(&store_state(&store, w), &model, w, &context);
        assert!(sealed > 50, "{context}");
        let stats = store.stats();
        assert_eq!(stats.raw_chunks, 0, "{context}: two passes seal everything");
        assert_eq!(
            stats.data_bytes, stats.sealed_bytes,
            "{context}: the data is its sealed bytes"
        );
    }
}

#[test]
fn the_memory_limit_counts_the_bytes_sealed_chunks_hold() {
    let store = store_with(&[("m", 1, Aggregation::Sum)]);
    store.set_seal_after(None);
    let a = store.series("m", &["a"]).unwrap();
    // Eight chunks of one value each seal to a few bytes apiece.
    store.write_block(a, 0, &vec![1.0; 8 * 1024]).unwrap();
    assert_eq!(store.stats().data_bytes, 8 * CHUNK_BYTES);
    assert_eq!(store.seal(), 7); // the newest was just written
    assert_eq!(store.seal(), 1);
    let stats = store.stats();
    assert_eq!((stats.raw_chunks, stats.sealed_chunks), (0, 8));
    assert!(stats.data_bytes < 8 * 64, "{stats:?}");
    // A limit far below the raw size but above the sealed one drops nothing.
    store.set_memory_limit(Some(CHUNK_BYTES)).unwrap();
    assert_eq!(store.stats().evictions, 0);
    assert_eq!(read(&store, a, 0, 8 * 1024), vec![1.0; 8 * 1024]);
}

#[test]
fn every_reader_sees_a_tick_that_is_still_staged() {
    let store = store_with(&[("a", 10, Aggregation::Sum)]);
    let ids: Vec<SeriesId> = (0..3)
        .map(|i| store.series("a", &[format!("s{i}")]).unwrap())
        .collect();
    let write = |slot: i64, value: f32| {
        store
            .write_tick(slot * 10, &ids, &[value, value + 1.0, value + 2.0])
            .unwrap();
    };
    // Each check writes one more tick, which is staged, then reads.
    write(0, 1.0);
    assert_eq!(bits(&read(&store, ids[2], 0, 10)), bits(&[3.0]));
    write(1, 4.0);
    let matrix = store
        .read_many(&[Target::Series(ids[0]), Target::Series(ids[1])], 0, 20, 0)
        .unwrap();
    assert_eq!(bits(&matrix.values), bits(&[1.0, 4.0, 2.0, 5.0]));
    write(2, 7.0);
    assert_eq!(store.extent(None).unwrap(), Some((0, 30)));
    write(3, 10.0);
    let stats = store.stats();
    assert_eq!((stats.samples, stats.chunks), (12, 3));
    write(4, 13.0);
    let sampled = store
        .read_resampled(
            Target::Series(ids[0]),
            0,
            50,
            50,
            crate::engine::Method::Max,
            0,
        )
        .unwrap();
    assert_eq!(sampled.values, vec![13.0]);
    write(5, 16.0);
    let path = vec!["s1".to_owned()];
    assert_eq!(
        store.health(&path, &["a"], 60).unwrap(),
        Some(vec![crate::engine::Freshness::Fresh])
    );
    // Other ops write the rows out first: a cut before slot 7 leaves only
    // the tick written after it (written out after the cut, tick 6 would
    // come back).
    write(6, 19.0);
    store.drop_before(70).unwrap();
    write(7, 22.0);
    assert_eq!(store.stats().samples, 3);
}

#[test]
fn the_outline_counts_series_per_metric_and_lists_hosts_in_name_order() {
    let store = store_with(&[
        ("load", 10, Aggregation::Avg),
        ("mem", 10, Aggregation::Sum),
    ]);
    store
        .define(MetricDef {
            name: "flops".into(),
            frequency: 10,
            aggregation: Aggregation::Sum,
            unit: Some("GF/s".into()),
        })
        .unwrap();
    for path in [
        ["emmy", "e0103", "cpu1"],
        ["emmy", "e0102", "cpu0"],
        ["fritz", "f01", "cpu0"],
    ] {
        store.series("load", &path).unwrap();
    }
    store.series("load", &["emmy", "e0102", "cpu1"]).unwrap();
    store.series("mem", &["emmy", "e0102"]).unwrap();
    store.series("mem", &["lab"]).unwrap(); // one level only: not a host
    assert_eq!(
        store.outline(),
        (
            vec![4, 2, 0],
            vec![
                "emmy/e0102".to_owned(),
                "emmy/e0103".to_owned(),
                "fritz/f01".to_owned()
            ]
        )
    );
    assert_eq!(store.metrics()[2].unit.as_deref(), Some("GF/s"));
    let flops = [Target::Path {
        metric: "flops",
        path: &[],
    }];
    assert_eq!(store.unit_of(&flops), Some("GF/s".to_owned()));
    let mixed = [flops[0], Target::Series(0)];
    assert_eq!(store.unit_of(&mixed), None);
    assert_eq!(store.unit_of(&[]), None);
}
