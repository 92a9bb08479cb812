//! Queries: range reads of the raw grid (`read.rs`), aggregation across
//! series (`aggregate.rs`: NaN-skipping and order-independent), resampling
//! and statistics (`resample.rs`); this file adds resampled reads, summary
//! statistics, extents, the freshness of a host's metrics (cc-backend's
//! health check) and series selected by metric and path pattern.
//!
//! Invariants: a read of `[start, stop)` returns every slot of the range,
//! NaN where nothing is stored; it sees staged ticks (the catalog it reads
//! is settled first); it never takes the sequencer, so it runs beside
//! writers.
//!
//! Uses: `store/` (its catalog and counters), `memory/`, `model/`.

pub(crate) mod aggregate;
pub(crate) mod read;
pub(crate) mod resample;

use super::error::EngineError;
use crate::engine::model::names::{path_matches, validate_path};
use crate::engine::model::time::read_slots;
use crate::engine::query::read::{Matrix, Target, damaged};
use crate::engine::query::resample::{Method, Stats};
use crate::engine::store::{SeriesId, Store};

/// A resampled read of one target. For avg, min and max, `values[i]` is the
/// bucket starting at `start + i * step`; for LTTB, the kept samples are at
/// `times[i]` (real sample times, so not on a regular grid).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub start: i64,
    pub step: i64,
    /// Ticks between the stored samples.
    pub frequency: i64,
    pub values: Vec<f32>,
    pub times: Option<Vec<i64>>,
    /// The samples behind each value: of its bucket (avg, min, max; see
    /// `resample`), or of its slot (LTTB: the series with a sample there).
    pub counts: Vec<u32>,
    /// How many stored series the read combines (1 for a series).
    pub sources: u32,
}

/// How fresh a host's metric is (see [`Store::health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Every series of the metric at or below the host has data ending at
    /// most [`STALE_PERIODS`] periods before now (see [`Store::health`]).
    Fresh,
    /// Some series of the metric has no sample in that window.
    Stale,
    /// No series of the metric exists at or below the host (or the metric
    /// is not defined).
    Missing,
}

/// A series is stale when its data ends more than this many periods
/// before now (cc-backend's `MaxMissingDataPoints`). Its data ends where its
/// last slot ends: half a period (rounded up) after that slot's time, so a
/// series turns stale once its last sample is more than 5.5 periods old.
pub const STALE_PERIODS: i64 = 5;

/// `[start, stop)` widened to whole buckets of `resolution`.
fn bucket_range(start: i64, stop: i64, resolution: i64) -> Result<(i64, i64), EngineError> {
    if stop < start {
        return Err(EngineError::argument(
            "stop",
            format!("stop ({stop}) is before start ({start})"),
        ));
    }
    let r = i128::from(resolution);
    let lo = i128::from(start).div_euclid(r) * r;
    let hi = -(-i128::from(stop)).div_euclid(r) * r;
    match (i64::try_from(lo), i64::try_from(hi)) {
        (Ok(lo), Ok(hi)) => Ok((lo, hi)),
        _ => Err(EngineError::argument(
            "stop",
            format!("[{start}, {stop}) widened to whole buckets of {resolution} leaves int64"),
        )),
    }
}

impl Store {
    /// Reads `[start, stop)` of one target in buckets of `resolution` ticks
    /// (a multiple of its frequency), widened to whole buckets aligned to
    /// multiples of `resolution`. A bucket counting fewer than `min_count`
    /// samples is NaN; LTTB picks among the slots with at least `min_count`.
    pub fn read_resampled(
        &self,
        target: Target<'_>,
        start: i64,
        stop: i64,
        resolution: i64,
        method: Method,
        min_count: u32,
    ) -> Result<Sampled, EngineError> {
        let source = self.resolve(&self.settled_catalog(), target)?;
        let f = source.frequency;
        let factor = resample::factor(resolution, f)?;
        let (lo, hi) = bucket_range(start, stop, resolution)?;
        let (first, len) = read_slots(lo, hi, f)?;
        let mut raw = Vec::with_capacity(len);
        let mut slot_counts = (source.series.len() > 1).then(|| vec![0u32; len]);
        // LTTB works on slots, so min_count applies to slots before it picks;
        // buckets apply it to their own counts.
        let slot_min = if method == Method::Lttb { min_count } else { 0 };
        Self::fill(
            &source,
            first,
            len,
            &mut raw,
            slot_counts.as_deref_mut(),
            slot_min,
        )?;
        self.count_read(len);
        let sources = u32::try_from(source.series.len()).unwrap_or(u32::MAX);
        if method == Method::Lttb {
            let kept = resample::lttb(&raw, len / factor);
            let count = |i: usize| slot_counts.as_ref().map_or(1, |c| c[i]);
            return Ok(Sampled {
                start: lo,
                step: resolution,
                frequency: f,
                values: kept.iter().map(|&i| raw[i]).collect(),
                times: Some(kept.iter().map(|&i| (first + i as i64) * f).collect()),
                counts: kept.iter().map(|&i| count(i)).collect(),
                sources,
            });
        }
        let mut values = Vec::with_capacity(len / factor);
        let mut counts = Vec::with_capacity(len / factor);
        let slot_counts = slot_counts.as_deref();
        resample::buckets(
            &raw,
            slot_counts,
            factor,
            method,
            min_count,
            &mut values,
            &mut counts,
        );
        Ok(Sampled {
            start: lo,
            step: resolution,
            frequency: f,
            values,
            times: None,
            counts,
            sources,
        })
    }

    /// [`Store::read_many`] in buckets of `resolution` (avg, min or max:
    /// LTTB keeps different times per row); `min_count` as in
    /// [`Store::read_resampled`].
    pub fn read_many_resampled(
        &self,
        targets: &[Target<'_>],
        start: i64,
        stop: i64,
        resolution: i64,
        method: Method,
        min_count: u32,
    ) -> Result<Matrix, EngineError> {
        if method == Method::Lttb {
            return Err(EngineError::argument(
                "method",
                "\"lttb\" keeps different sample times in each row; read the series one \
                 at a time, or use \"avg\", \"min\" or \"max\"",
            ));
        }
        let (lo, hi) = bucket_range(start, stop, resolution)?;
        let raw = self.read_many(targets, lo, hi, 0)?;
        let factor = resample::factor(resolution, raw.step)?;
        let cells = raw.values.len() / factor;
        let mut values = Vec::with_capacity(cells);
        let mut counts = Vec::with_capacity(cells);
        if raw.cols > 0 {
            for (r, row) in raw.values.chunks_exact(raw.cols).enumerate() {
                // A row of one series counts its samples itself.
                let row_counts = raw
                    .counts
                    .as_ref()
                    .filter(|_| raw.sources[r] > 1)
                    .map(|c| &c[r * raw.cols..(r + 1) * raw.cols]);
                resample::buckets(
                    row,
                    row_counts,
                    factor,
                    method,
                    min_count,
                    &mut values,
                    &mut counts,
                );
            }
        }
        Ok(Matrix {
            start: lo,
            step: resolution,
            rows: raw.rows,
            cols: raw.cols / factor,
            frequency: raw.step,
            values,
            counts: Some(counts),
            sources: raw.sources,
        })
    }

    /// Min, max, mean and count of the samples of `[start, stop)` of one
    /// target (an aggregated path is summarised after aggregation, over the
    /// slots where at least `min_count` series have a sample).
    pub fn read_stats(
        &self,
        target: Target<'_>,
        start: i64,
        stop: i64,
        min_count: u32,
    ) -> Result<Stats, EngineError> {
        let raw = self.read_with_min_count(target, start, stop, min_count)?;
        Ok(resample::stats(&raw.values))
    }

    /// The series of `metric` (of every metric for None) whose paths match
    /// `pattern` level by level (any path for None; see
    /// [`names::matches`](crate::engine::model::names::matches)), as (handle, metric,
    /// path) in handle order. An undefined metric is an error, as in reads.
    pub fn select_series<S: AsRef<str>>(
        &self,
        metric: Option<&str>,
        pattern: Option<&[S]>,
    ) -> Result<Vec<(SeriesId, String, Vec<String>)>, EngineError> {
        if let Some(pattern) = pattern {
            validate_path(pattern, "path")?;
        }
        if let Some(name) = metric
            && !self.metrics().iter().any(|m| m.name == name)
        {
            return Err(EngineError::UnknownMetric {
                name: name.to_owned(),
            });
        }
        let mut series = self.list_series();
        series.retain(|(_, m, path)| {
            metric.is_none_or(|name| m == name)
                && pattern.is_none_or(|pattern| path_matches(pattern, path))
        });
        Ok(series)
    }

    /// Where the samples of `target` lie, or of the whole store for `None`:
    /// the time of the first sample and the time one period after the last
    /// (so `[start, stop)` holds them all); `None` when there is no sample.
    pub fn extent(&self, target: Option<Target<'_>>) -> Result<Option<(i64, i64)>, EngineError> {
        let catalog = self.settled_catalog();
        let series: Vec<_> = match target {
            Some(target) => {
                let source = self.resolve(&catalog, target)?;
                let f = source.frequency;
                source.series.into_iter().map(|data| (data, f)).collect()
            }
            None => catalog
                .entries()
                .iter()
                .map(|entry| (entry.data.clone(), entry.frequency))
                .collect(),
        };
        drop(catalog);
        let mut extent: Option<(i128, i128)> = None;
        for (data, f) in series {
            let data = data.read();
            let first = data.first_sample_slot().map_err(damaged)?;
            let last = data.last_sample_slot().map_err(damaged)?;
            let (Some(first), Some(last)) = (first, last) else {
                continue;
            };
            let f = i128::from(f);
            let (start, stop) = (i128::from(first) * f, (i128::from(last) + 1) * f);
            extent = Some(match extent {
                Some((lo, hi)) => (lo.min(start), hi.max(stop)),
                None => (start, stop),
            });
        }
        // A sample's time fits int64; one period after the last may not.
        let clamp = |t: i128| t.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        Ok(extent.map(|(start, stop)| (clamp(start), clamp(stop))))
    }

    /// The freshness of each of `metrics` at or below the host at `path`
    /// at time `now`, or None when no series exists at or below `path`.
    ///
    /// cc-backend's rule (`isBufferHealthy`): a buffer is healthy while
    /// `now - end <= 5 * f`, where `end = start + f * len` and its `start`
    /// lies half a period before its first sample. So `end` is the end of
    /// the last slot, `t + ceil(f / 2)` for a last sample at grid time `t`,
    /// which is where a sample stops landing in that slot here too.
    pub fn health(
        &self,
        path: &[String],
        metrics: &[&str],
        now: i64,
    ) -> Result<Option<Vec<Freshness>>, EngineError> {
        let catalog = self.settled_catalog();
        if !catalog.has_path(path) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(metrics.len());
        for &name in metrics {
            let Ok(metric) = catalog.metric_id(name) else {
                out.push(Freshness::Missing);
                continue;
            };
            let Ok(series) = catalog.sources(metric, path) else {
                out.push(Freshness::Missing);
                continue;
            };
            let f = i128::from(catalog.metric(metric).frequency);
            let mut stale = false;
            for &id in &series {
                let data = catalog.entries()[id as usize].data.read();
                let last = data.last_sample_slot().map_err(damaged)?;
                stale |= last.is_none_or(|slot| {
                    let end = i128::from(slot) * f + (f + 1) / 2;
                    i128::from(now) - end > i128::from(STALE_PERIODS) * f
                });
                if stale {
                    break;
                }
            }
            out.push(if stale {
                Freshness::Stale
            } else {
                Freshness::Fresh
            });
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Aggregation, TimeUnit};

    fn store() -> Store {
        let store = Store::new(TimeUnit::Seconds);
        store.define_metric("cpu", 10, Aggregation::Sum).unwrap();
        store.define_metric("mem", 60, Aggregation::Avg).unwrap();
        store
    }

    fn path(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_extent_spans_every_sample_of_a_series_a_path_or_the_store() {
        let store = store();
        assert_eq!(store.extent(None).unwrap(), None);
        let a = store.series("cpu", &path(&["c", "h", "cpu0"])).unwrap();
        let b = store.series("cpu", &path(&["c", "h", "cpu1"])).unwrap();
        let m = store.series("mem", &path(&["c", "h"])).unwrap();
        assert_eq!(store.extent(Some(Target::Series(a))).unwrap(), None);
        store
            .write_block(a, 100, &[f32::NAN, 1.0, 2.0, f32::NAN])
            .unwrap();
        store.write_block(b, 50_000, &[3.0]).unwrap();
        store.write_block(m, -600, &[4.0]).unwrap();
        assert_eq!(
            store.extent(Some(Target::Series(a))).unwrap(),
            Some((110, 130))
        );
        let host = path(&["c", "h"]);
        let cpu = Target::Path {
            metric: "cpu",
            path: &host,
        };
        assert_eq!(store.extent(Some(cpu)).unwrap(), Some((110, 50_010)));
        assert_eq!(store.extent(None).unwrap(), Some((-600, 50_010)));
        let error = store.extent(Some(Target::Series(99))).unwrap_err();
        assert!(error.to_string().contains("99"), "{error}");
    }

    #[test]
    fn series_are_selected_by_metric_and_path_pattern() {
        let store = store();
        let a = store.series("cpu", &["c", "e0102", "cpu0"]).unwrap();
        let b = store.series("cpu", &["c", "e0201", "cpu1"]).unwrap();
        let m = store.series("mem", &["c", "e0102"]).unwrap();
        let c = store.series("cpu", &["c", "e0103", "cpu1"]).unwrap();
        let ids = |found: Vec<(SeriesId, String, Vec<String>)>| {
            found.into_iter().map(|(id, ..)| id).collect::<Vec<_>>()
        };
        let all = store.select_series::<&str>(None, None).unwrap();
        assert_eq!(ids(all), vec![a, b, m, c]);
        let cpu = store.select_series::<&str>(Some("cpu"), None).unwrap();
        assert_eq!(ids(cpu), vec![a, b, c]);
        let pattern = ["c", "e01*", "cpu*"];
        assert_eq!(
            ids(store
                .select_series(Some("cpu"), Some(&pattern[..]))
                .unwrap()),
            vec![a, c]
        );
        // One component per level: "c/*" is the hosts' level only.
        let hosts = ["c", "*"];
        assert_eq!(
            ids(store.select_series(None, Some(&hosts[..])).unwrap()),
            vec![m]
        );
        let e = store.select_series::<&str>(Some("gpu"), None).unwrap_err();
        assert_eq!(
            e,
            EngineError::UnknownMetric {
                name: "gpu".to_owned()
            }
        );
        let e = store
            .select_series(None, Some(&["c", ".."][..]))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("path: invalid path component 1"),
            "{e}"
        );
    }

    #[test]
    fn resampled_reads_cover_whole_aligned_buckets() {
        let store = store();
        let a = store.series("cpu", &["c", "h", "core0"]).unwrap();
        let b = store.series("cpu", &["c", "h", "core1"]).unwrap();
        let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
        store.write_block(a, 0, &values).unwrap();
        store.write_block(b, 0, &[100.0; 12]).unwrap();
        // [25, 95) widens to [0, 120): buckets at 0, 60.
        let got = store
            .read_resampled(Target::Series(a), 25, 95, 60, Method::Max, 0)
            .unwrap();
        assert_eq!((got.start, got.step, got.times), (0, 60, None));
        assert_eq!(got.values, vec![5.0, 11.0]);
        assert_eq!((got.counts, got.sources), (vec![6, 6], 1));
        let host = path(&["c", "h"]);
        let summed = Target::Path {
            metric: "cpu",
            path: &host,
        };
        let avg = store
            .read_resampled(summed, 0, 120, 60, Method::Avg, 0)
            .unwrap();
        assert_eq!(avg.values, vec![102.5, 108.5]);
        assert_eq!((avg.counts, avg.sources), (vec![12, 12], 2));
        let many = store
            .read_many_resampled(&[Target::Series(a), summed], 0, 60, 30, Method::Min, 0)
            .unwrap();
        assert_eq!((many.rows, many.cols, many.start, many.step), (2, 2, 0, 30));
        assert_eq!(many.values, vec![0.0, 3.0, 100.0, 103.0]);
        assert_eq!(many.counts, Some(vec![3, 3, 6, 6]));
        assert_eq!(many.sources, vec![1, 2]);
    }

    #[test]
    fn reads_count_the_series_behind_each_slot_and_honour_min_count() {
        let store = store();
        let a = store.series("cpu", &["c", "h", "core0"]).unwrap();
        let b = store.series("cpu", &["c", "h", "core1"]).unwrap();
        store.write_block(a, 0, &[1.0, 2.0, f32::NAN, 4.0]).unwrap();
        store
            .write_block(b, 0, &[10.0, f32::NAN, f32::NAN, 40.0])
            .unwrap();
        let host = path(&["c", "h"]);
        let summed = Target::Path {
            metric: "cpu",
            path: &host,
        };
        let all = store.read(summed, 0, 40).unwrap();
        assert_eq!((all.counts, all.sources), (Some(vec![2, 1, 0, 2]), 2));
        assert_eq!(all.values[..2], [11.0, 2.0]);
        let full = store.read_with_min_count(summed, 0, 40, 2).unwrap();
        assert_eq!(full.counts, Some(vec![2, 1, 0, 2]));
        assert!(full.values[1].is_nan() && full.values[3] == 44.0);
        // One series: no counts unless min_count needs them.
        assert_eq!(store.read(Target::Series(a), 0, 40).unwrap().counts, None);
        let one = store
            .read_with_min_count(Target::Series(a), 0, 40, 2)
            .unwrap();
        assert_eq!(one.counts, Some(vec![1, 1, 0, 1]));
        assert!(one.values.iter().all(|v| v.is_nan()));
        let many = store
            .read_many(&[Target::Series(a), summed], 0, 40, 0)
            .unwrap();
        assert_eq!(many.counts, Some(vec![1, 1, 0, 1, 2, 1, 0, 2]));
        assert_eq!(many.sources, vec![1, 2]);
        // LTTB picks among the slots with min_count samples.
        let kept = store
            .read_resampled(summed, 0, 40, 20, Method::Lttb, 2)
            .unwrap();
        assert_eq!(kept.times, Some(vec![0, 30]));
        assert_eq!((kept.values, kept.counts), (vec![11.0, 44.0], vec![2, 2]));
        let stats = store.read_stats(summed, 0, 40, 2).unwrap();
        assert_eq!((stats.count, stats.avg), (2, 27.5));
    }

    #[test]
    fn a_resolution_off_the_grid_or_lttb_over_rows_is_refused() {
        let store = store();
        let a = store.series("cpu", &["c", "h"]).unwrap();
        let e = store
            .read_resampled(Target::Series(a), 0, 100, 25, Method::Avg, 0)
            .unwrap_err();
        assert!(e.to_string().starts_with("resolution:"), "{e}");
        let e = store
            .read_many_resampled(&[Target::Series(a)], 0, 100, 20, Method::Lttb, 0)
            .unwrap_err();
        assert!(e.to_string().starts_with("method:"), "{e}");
    }

    #[test]
    fn lttb_reads_return_the_real_times_of_the_kept_samples() {
        let store = store();
        let a = store.series("cpu", &["c", "h"]).unwrap();
        store
            .write_block(a, 0, &[0.0, 1.0, 5.0, 0.0, 0.0, -4.0, 0.0, 0.0])
            .unwrap();
        // 8 slots of 10 s in buckets of 20 s: 4 points, as in the resample
        // module's hand-checked example.
        let got = store
            .read_resampled(Target::Series(a), 0, 80, 20, Method::Lttb, 0)
            .unwrap();
        assert_eq!(got.times, Some(vec![0, 20, 50, 70]));
        assert_eq!(got.values, vec![0.0, 5.0, -4.0, 0.0]);
        assert_eq!(got.counts, vec![1; 4]);
    }

    #[test]
    fn stats_summarise_the_raw_samples_of_a_range() {
        let store = store();
        let a = store.series("cpu", &["c", "h"]).unwrap();
        store
            .write_block(a, 0, &[4.0, f32::NAN, -2.0, 7.0])
            .unwrap();
        let s = store.read_stats(Target::Series(a), 0, 30, 0).unwrap();
        assert_eq!((s.min, s.max, s.avg, s.count), (-2.0, 4.0, 1.0, 2));
    }

    #[test]
    fn health_classifies_each_metric_of_a_host() {
        let store = store();
        let fresh = store.series("cpu", &["c", "h1", "core0"]).unwrap();
        let stale = store.series("cpu", &["c", "h1", "core1"]).unwrap();
        let mem = store.series("mem", &["c", "h1"]).unwrap();
        store.write_tick(1000, &[fresh, mem], &[1.0, 2.0]).unwrap();
        store.write_tick(930, &[stale], &[1.0]).unwrap();
        let h1 = path(&["c", "h1"]);
        // cpu data ends half a period after its last sample: at 1005
        // (fresh) and 935 (stale); 5 periods = 50 s.
        let at = |now| store.health(&h1, &["cpu", "mem", "gpu"], now).unwrap();
        use Freshness::{Fresh, Missing, Stale};
        assert_eq!(at(985), Some(vec![Fresh, Fresh, Missing]));
        assert_eq!(at(986), Some(vec![Stale, Fresh, Missing]));
        // mem's sample lands in slot 17 (1020 s), so its data ends at 1050;
        // 5 periods = 300 s.
        assert_eq!(at(1350), Some(vec![Stale, Fresh, Missing]));
        assert_eq!(at(1351), Some(vec![Stale, Stale, Missing]));
        // An odd frequency rounds the half period up, as cc-backend's
        // buffer start (first sample - f / 2, rounded down) does.
        store.define_metric("odd", 7, Aggregation::Avg).unwrap();
        let odd = store.series("odd", &["c", "h1"]).unwrap();
        store.write_tick(700, &[odd], &[1.0]).unwrap();
        let odd_at = |now| store.health(&h1, &["odd"], now).unwrap();
        assert_eq!(odd_at(700 + 4 + 35), Some(vec![Fresh]));
        assert_eq!(odd_at(700 + 4 + 36), Some(vec![Stale]));
        assert_eq!(
            store.health(&path(&["c", "h9"]), &["cpu"], 0).unwrap(),
            None
        );
    }
}
