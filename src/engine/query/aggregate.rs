//! Combining several series into one for reads above the stored level.
//!
//! Sums run in f64 over the sources in catalog order (path name order), so
//! the result is the same whatever order the series were written in. NaN is
//! skipped: a slot is NaN only when no source has a value there, or fewer
//! than the read's `min_count`. The number of sources with a value in each
//! slot (its count) is the coverage a read reports; it costs nothing extra,
//! as `avg` needs it anyway.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::memory::sealed::Damage;
use crate::engine::memory::series::SeriesData;
use crate::engine::model::metric::Aggregation;

/// Fills `out` with the combination of slots `first .. first + out.len()` of
/// `sources`, and `count` with how many sources hold a value in each slot.
/// `out` must be NaN-filled and `count` zeroed, of the same length; a slot
/// with fewer than `min_count` values stays NaN (its count is kept). Sources
/// hold their locks one at a time, so a large aggregation never stalls
/// writers of other series.
pub fn combine(
    sources: &[Arc<RwLock<SeriesData>>],
    first: i64,
    aggregation: Aggregation,
    out: &mut [f32],
    count: &mut [u32],
    min_count: u32,
) -> Result<(), Damage> {
    debug_assert_eq!(out.len(), count.len());
    // -0.0 is the identity of IEEE addition that keeps every value's bits
    // (+0.0 + -0.0 is +0.0), so a slot with one value sums to that value.
    let mut sum = vec![-0.0f64; out.len()];
    for source in sources {
        source
            .read()
            .for_each_piece(first, out.len(), |offset, values| {
                let sum = &mut sum[offset..offset + values.len()];
                let count = &mut count[offset..offset + values.len()];
                for ((s, c), v) in sum.iter_mut().zip(count.iter_mut()).zip(values) {
                    if !v.is_nan() {
                        *s += f64::from(*v);
                        *c += 1;
                    }
                }
            })?;
    }
    let needed = min_count.max(1);
    for ((o, s), c) in out.iter_mut().zip(&sum).zip(count.iter()) {
        if *c >= needed {
            *o = match aggregation {
                Aggregation::Avg => (*s / f64::from(*c)) as f32,
                Aggregation::Sum | Aggregation::None => *s as f32,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::chunks::ChunkPool;

    fn source(pool: &Arc<ChunkPool>, values: &[f32]) -> Arc<RwLock<SeriesData>> {
        let mut data = SeriesData::default();
        data.write(pool, 0, values);
        Arc::new(RwLock::new(data))
    }

    #[test]
    fn a_slot_with_one_value_combines_to_exactly_that_value() {
        let pool = Arc::new(ChunkPool::default());
        let one = source(&pool, &[-0.0, 1.5, f32::NAN]);
        let none = source(&pool, &[f32::NAN, f32::NAN, f32::NAN]);
        for aggregation in [Aggregation::Sum, Aggregation::Avg] {
            let mut out = [f32::NAN; 3];
            let mut count = [0; 3];
            let sources = [none.clone(), one.clone()];
            combine(&sources, 0, aggregation, &mut out, &mut count, 0).unwrap();
            assert_eq!(out[0].to_bits(), (-0.0f32).to_bits(), "{aggregation:?}");
            assert_eq!(out[1], 1.5);
            assert!(out[2].is_nan());
            assert_eq!(count, [1, 1, 0]);
        }
    }

    #[test]
    fn slots_with_fewer_values_than_min_count_are_nan_and_keep_their_count() {
        let pool = Arc::new(ChunkPool::default());
        let a = source(&pool, &[1.0, 2.0, f32::NAN, 4.0]);
        let b = source(&pool, &[10.0, f32::NAN, f32::NAN, 40.0]);
        let c = source(&pool, &[100.0, f32::NAN, 3.0, f32::NAN]);
        let sources = [a, b, c];
        let mut out = [f32::NAN; 4];
        let mut count = [0; 4];
        combine(&sources, 0, Aggregation::Sum, &mut out, &mut count, 2).unwrap();
        assert_eq!(count, [3, 1, 1, 2]);
        assert_eq!(out[0], 111.0);
        assert!(out[1].is_nan() && out[2].is_nan());
        assert_eq!(out[3], 44.0);
        let mut out = [f32::NAN; 4];
        let mut count = [0; 4];
        combine(&sources, 0, Aggregation::Avg, &mut out, &mut count, 3).unwrap();
        assert_eq!(out[0], 37.0);
        assert!(out[1..].iter().all(|v| v.is_nan()));
    }
}
