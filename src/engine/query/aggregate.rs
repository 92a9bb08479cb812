//! Combining several series into one for reads above the stored level.
//!
//! Sums run in f64 over the sources in catalog order (path name order), so
//! the result is the same whatever order the series were written in. NaN is
//! skipped: a slot is NaN only when no source has a value there.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::memory::sealed::Damage;
use crate::engine::memory::series::SeriesData;
use crate::engine::model::metric::Aggregation;

/// Fills `out` with the combination of slots `first .. first + out.len()` of
/// `sources`. `out` must be NaN-filled; sources hold their locks one at a
/// time, so a large aggregation never stalls writers of other series.
pub fn combine(
    sources: &[Arc<RwLock<SeriesData>>],
    first: i64,
    aggregation: Aggregation,
    out: &mut [f32],
) -> Result<(), Damage> {
    // -0.0 is the identity of IEEE addition that keeps every value's bits
    // (+0.0 + -0.0 is +0.0), so a slot with one value sums to that value.
    let mut sum = vec![-0.0f64; out.len()];
    let mut count = vec![0u32; out.len()];
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
    for ((o, s), c) in out.iter_mut().zip(&sum).zip(&count) {
        if *c > 0 {
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
            combine(&[none.clone(), one.clone()], 0, aggregation, &mut out).unwrap();
            assert_eq!(out[0].to_bits(), (-0.0f32).to_bits(), "{aggregation:?}");
            assert_eq!(out[1], 1.5);
            assert!(out[2].is_nan());
        }
    }
}
