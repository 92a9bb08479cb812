//! Store-level guarantees: ops apply whole or not at all, aggregation does
//! not depend on creation order, and concurrent writers leave the same state
//! as applying their ops one by one.

use std::sync::Arc;

use super::*;
use crate::engine::CHUNK_BYTES;

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
