//! Combining several series into one for reads above the stored level.
//!
//! Sums run in f64 over the sources in catalog order (path name order), so
//! the result is the same whatever order the series were written in. NaN is
//! skipped: a slot is NaN only when no source has a value there.

use std::sync::Arc;

use parking_lot::RwLock;

use super::metric::Aggregation;
use super::series::SeriesData;

/// Fills `out` with the combination of slots `first .. first + out.len()` of
/// `sources`. `out` must be NaN-filled; sources hold their locks one at a
/// time, so a large aggregation never stalls writers of other series.
pub fn combine(
    sources: &[Arc<RwLock<SeriesData>>],
    first: i64,
    aggregation: Aggregation,
    out: &mut [f32],
) {
    let mut sum = vec![0f64; out.len()];
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
            });
    }
    for ((o, s), c) in out.iter_mut().zip(&sum).zip(&count) {
        if *c > 0 {
            *o = match aggregation {
                Aggregation::Avg => (*s / f64::from(*c)) as f32,
                Aggregation::Sum | Aggregation::None => *s as f32,
            };
        }
    }
}
