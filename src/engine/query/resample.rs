//! Coarser views of a read (resampling) and summary statistics.
//!
//! A resampled read covers buckets of `factor` consecutive grid slots, each
//! starting at a multiple of the resolution, so bucket `j` of a read holds
//! the slots whose times lie in `[j * resolution, (j + 1) * resolution)`.
//! NaN (no sample) is skipped everywhere; a bucket with no sample is NaN.
//!
//! Coverage: a bucket's count is the number of samples behind its value:
//! the sum of its slots' counts (for an aggregated path, the series with a
//! sample in each slot), so a full bucket of `n` series counts `n * factor`.
//! A bucket whose count is below `min_count` is NaN, as in pandas'
//! `resample(...).sum(min_count=k)` for one series.

use crate::engine::error::EngineError;

/// How a bucket of slots becomes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The mean of the samples (summed in f64).
    Avg,
    Min,
    Max,
    /// Largest-Triangle-Three-Buckets: one real sample per bucket (the
    /// first and last samples always), chosen to keep the shape of a plot.
    Lttb,
}

impl Method {
    /// The name [`Method::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Method::Avg => "avg",
            Method::Min => "min",
            Method::Max => "max",
            Method::Lttb => "lttb",
        }
    }

    pub fn parse(text: &str) -> Result<Method, EngineError> {
        match text {
            "avg" => Ok(Method::Avg),
            "min" => Ok(Method::Min),
            "max" => Ok(Method::Max),
            "lttb" => Ok(Method::Lttb),
            other => Err(EngineError::argument(
                "method",
                format!("expected \"avg\", \"min\", \"max\" or \"lttb\", got {other:?}"),
            )),
        }
    }
}

/// Summary of the samples of a range; NaN and zero count when it has none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    /// The mean, summed in f64.
    pub avg: f64,
    /// Slots holding a sample (not NaN).
    pub count: u64,
}

pub fn stats(values: &[f32]) -> Stats {
    let mut out = Stats {
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
        avg: 0.0,
        count: 0,
    };
    let mut sum = 0.0f64;
    for &v in values.iter().filter(|v| !v.is_nan()) {
        out.min = out.min.min(v);
        out.max = out.max.max(v);
        sum += f64::from(v);
        out.count += 1;
    }
    if out.count == 0 {
        return Stats {
            min: f32::NAN,
            max: f32::NAN,
            avg: f64::NAN,
            count: 0,
        };
    }
    out.avg = sum / out.count as f64;
    out
}

/// The resampling factor `resolution / frequency`, checked.
pub fn factor(resolution: i64, frequency: i64) -> Result<usize, EngineError> {
    if resolution <= 0 {
        return Err(EngineError::argument(
            "resolution",
            format!("must be positive, got {resolution}"),
        ));
    }
    if resolution % frequency != 0 {
        return Err(EngineError::argument(
            "resolution",
            format!(
                "{resolution} is not a multiple of the series' frequency {frequency}; \
                 a bucket must hold whole slots"
            ),
        ));
    }
    Ok((resolution / frequency) as usize)
}

/// One value per bucket of `factor` slots (`values.len()` is a multiple of
/// `factor`) for avg, min and max, appended to `out`, and each bucket's
/// count appended to `out_counts`: the sum of `counts` over its slots, or
/// its slots holding a value when `counts` is None (one series). A bucket
/// counting fewer than `min_count` is NaN.
pub fn buckets(
    values: &[f32],
    counts: Option<&[u32]>,
    factor: usize,
    method: Method,
    min_count: u32,
    out: &mut Vec<f32>,
    out_counts: &mut Vec<u32>,
) {
    debug_assert!(factor > 0 && values.len().is_multiple_of(factor));
    for (i, bucket) in values.chunks_exact(factor).enumerate() {
        let s = stats(bucket);
        let count = match counts {
            Some(counts) => counts[i * factor..(i + 1) * factor]
                .iter()
                .fold(0u32, |a, &c| a.saturating_add(c)),
            None => u32::try_from(s.count).unwrap_or(u32::MAX),
        };
        let value = match method {
            _ if count < min_count => f32::NAN,
            Method::Avg => s.avg as f32,
            Method::Min => s.min,
            Method::Max => s.max,
            Method::Lttb => unreachable!("lttb picks points, see lttb()"),
        };
        out.push(value);
        out_counts.push(count);
    }
}

/// Largest-Triangle-Three-Buckets over the samples of `values` (NaN
/// skipped), keeping `target` points, or every sample when there are no more
/// than that: the indices into `values` of the points kept, in order. The
/// first and last samples are always kept, so two buckets keep just those
/// and one bucket keeps the first sample (no triangle to compare).
pub fn lttb(values: &[f32], target: usize) -> Vec<usize> {
    let points: Vec<usize> = (0..values.len()).filter(|&i| !values[i].is_nan()).collect();
    let n = points.len();
    if target >= n {
        return points;
    }
    match target {
        0 => return Vec::new(),
        1 => return vec![points[0]],
        2 => return vec![points[0], points[n - 1]],
        _ => {}
    }
    let x = |k: usize| points[k] as f64;
    let y = |k: usize| f64::from(values[points[k]]);
    // The n - 2 inner points fall into target - 2 buckets of equal width.
    let width = (n - 2) as f64 / (target - 2) as f64;
    let bounds = |b: usize| {
        let lo = 1 + (b as f64 * width) as usize;
        let hi = (1 + ((b + 1) as f64 * width) as usize).min(n - 1);
        (lo, hi)
    };
    let mut kept = Vec::with_capacity(target);
    kept.push(points[0]);
    let mut a = 0;
    for b in 0..target - 2 {
        let (lo, hi) = bounds(b);
        // The mean point of the next bucket (the last point after the last).
        let (next_lo, next_hi) = if b + 1 < target - 2 {
            bounds(b + 1)
        } else {
            (n - 1, n)
        };
        let m = (next_hi - next_lo) as f64;
        let mx = (next_lo..next_hi).map(x).sum::<f64>() / m;
        let my = (next_lo..next_hi).map(y).sum::<f64>() / m;
        let (ax, ay) = (x(a), y(a));
        let mut best = (lo, -1.0);
        for k in lo..hi {
            let area = ((ax - mx) * (y(k) - ay) - (ax - x(k)) * (my - ay)).abs();
            if area > best.1 {
                best = (k, area);
            }
        }
        kept.push(points[best.0]);
        a = best.0;
    }
    kept.push(points[n - 1]);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f32 = f32::NAN;

    #[test]
    fn stats_skip_nan_and_sum_in_f64() {
        let s = stats(&[NAN, 3.0, -1.0, NAN, 16_777_216.0, 1.0]);
        assert_eq!((s.min, s.max, s.count), (-1.0, 16_777_216.0, 4));
        // In f32, 16777216 + 1 would round back to 16777216.
        assert_eq!(s.avg, (3.0 - 1.0 + 16_777_216.0 + 1.0) / 4.0);
        let empty = stats(&[NAN, NAN]);
        assert!(empty.min.is_nan() && empty.max.is_nan() && empty.avg.is_nan());
        assert_eq!(empty.count, 0);
    }

    fn reduce(
        values: &[f32],
        counts: Option<&[u32]>,
        method: Method,
        k: u32,
    ) -> (Vec<f32>, Vec<u32>) {
        let (mut out, mut out_counts) = (Vec::new(), Vec::new());
        buckets(values, counts, 3, method, k, &mut out, &mut out_counts);
        (out, out_counts)
    }

    #[test]
    fn buckets_reduce_each_run_of_slots() {
        let v = [1.0, 2.0, NAN, 4.0, NAN, NAN, -3.0, 9.0, 0.5];
        let (avg, counts) = reduce(&v, None, Method::Avg, 0);
        assert_eq!(avg, vec![1.5, 4.0, (-3.0f64 + 9.0 + 0.5) as f32 / 3.0]);
        assert_eq!(counts, vec![2, 1, 3]);
        assert_eq!(reduce(&v, None, Method::Min, 0).0, vec![1.0, 4.0, -3.0]);
        assert_eq!(reduce(&v, None, Method::Max, 0).0, vec![2.0, 4.0, 9.0]);
        let (all_nan, counts) = reduce(&[NAN; 3], None, Method::Avg, 0);
        assert!(all_nan[0].is_nan());
        assert_eq!(counts, vec![0]);
    }

    #[test]
    fn a_bucket_counts_the_samples_of_its_slots_and_needs_min_count() {
        let v = [1.0, 2.0, NAN, 4.0, NAN, NAN, -3.0, 9.0, 0.5];
        let slot_counts = [3, 1, 0, 2, 0, 0, 1, 1, 1];
        let (max, counts) = reduce(&v, Some(&slot_counts), Method::Max, 3);
        assert_eq!(counts, vec![4, 2, 3]);
        assert_eq!(max[0], 2.0);
        assert!(max[1].is_nan());
        assert_eq!(max[2], 9.0);
    }

    #[test]
    fn a_resolution_must_be_a_positive_multiple_of_the_frequency() {
        assert_eq!(factor(60, 10).unwrap(), 6);
        for bad in [0, -10, 25] {
            let e = factor(bad, 10).unwrap_err().to_string();
            assert!(e.starts_with("resolution:"), "{e}");
        }
        assert!(
            factor(25, 10)
                .unwrap_err()
                .to_string()
                .contains("frequency 10")
        );
    }

    /// Worked by hand: 8 points into 4 keeps the ends and, from the inner
    /// buckets {1,2,3} and {4,5,6}, the points making the largest triangle
    /// with the last kept point and the mean of the next bucket.
    #[test]
    fn lttb_matches_a_hand_checked_example() {
        let v = [0.0, 1.0, 5.0, 0.0, 0.0, -4.0, 0.0, 0.0];
        // Bucket 0 = points 1..4 (width 6/2 = 3); next bucket mean is
        // x = 5, y = -4/3. From a = (0, 0): area(k) = |(0-5)(y_k) - (0-k)(-4/3)|
        // k=1: |-5 - 4/3| = 6.33; k=2: |-25 - 8/3| = 27.67; k=3: |0 - 4| = 4.
        // Bucket 1 = points 4..7; next "bucket" is the last point (7, 0).
        // From a = (2, 5): area(k) = |(2-7)(y_k-5) - (2-k)(0-5)|
        // k=4: |25 - 10| = 15; k=5: |45 - 15| = 30; k=6: |25 - 20| = 5.
        assert_eq!(lttb(&v, 4), vec![0, 2, 5, 7]);
    }

    #[test]
    fn lttb_skips_nan_and_keeps_everything_when_asked_for_as_many() {
        let v = [NAN, 1.0, NAN, 2.0, 3.0, NAN];
        assert_eq!(lttb(&v, 10), vec![1, 3, 4]);
        assert_eq!(lttb(&v, 3), vec![1, 3, 4]);
    }

    #[test]
    fn lttb_keeps_one_point_per_bucket_below_three_buckets() {
        let v = [NAN, 1.0, NAN, 2.0, 3.0, 9.0, NAN];
        assert_eq!(lttb(&v, 2), vec![1, 5]);
        assert_eq!(lttb(&v, 1), vec![1]);
        assert_eq!(lttb(&v, 0), Vec::<usize>::new());
        let long: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32).collect();
        let kept = lttb(&long, 50);
        assert_eq!(kept.len(), 50);
        assert_eq!((kept[0], kept[49]), (0, 999));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
    }
}
