//! Range reads of the raw grid: one target, or several on one time axis,
//! NaN-padded to the whole range; aggregated above the stored level.
//!
//! Coverage: a read also says how many series had a sample in each slot
//! (its counts), and with `min_count` leaves a slot NaN where fewer did. An
//! aggregation counts anyway (avg divides by the count), so its counts are
//! handed over as they are; a read of one stored series builds none unless
//! `min_count` needs them, since each of its slots holds one sample or none
//! and the values say which.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::engine::error::EngineError;
use crate::engine::memory::catalog::{Catalog, MetricId, SeriesId};
use crate::engine::memory::sealed::Damage;
use crate::engine::memory::series::SeriesData;
use crate::engine::model::metric::Aggregation;
use crate::engine::model::names::{display_path, validate_path};
use crate::engine::model::time::{MAX_READ_SLOTS, read_slots};
use crate::engine::query::aggregate::combine;
use crate::engine::store::Store;

/// A read of one series or one aggregated path: `values[i]` is the slot at
/// time `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeData {
    pub start: i64,
    pub step: i64,
    pub values: Vec<f32>,
    /// How many series had a sample in each slot; None for a read of one
    /// stored series without `min_count` (then 1 where `values` holds a
    /// value, 0 where it is NaN).
    pub counts: Option<Vec<u32>>,
    /// How many stored series the read combines (1 for a series).
    pub sources: u32,
}

/// A read of several rows on one time axis, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub start: i64,
    pub step: i64,
    pub rows: usize,
    pub cols: usize,
    /// Ticks between the stored samples: `step`, unless resampled.
    pub frequency: i64,
    pub values: Vec<f32>,
    /// Counts of the same shape as `values` (see [`RangeData::counts`]);
    /// None when every row is one stored series read without `min_count`.
    pub counts: Option<Vec<u32>>,
    /// How many stored series each row combines.
    pub sources: Vec<u32>,
}

/// What one row of a read refers to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A series by handle.
    Series(SeriesId),
    /// A metric at a path: the series there, or the aggregate below it.
    Path { metric: &'a str, path: &'a [String] },
}

/// A resolved read target: where its values come from.
pub(crate) struct Source {
    pub(crate) frequency: i64,
    pub(crate) aggregation: Aggregation,
    pub(crate) series: Vec<Arc<RwLock<SeriesData>>>,
}

/// A chunk that cannot be read, as the error a reader gets.
pub(crate) fn damaged(damage: Damage) -> EngineError {
    EngineError::Corruption {
        file: damage.file,
        offset: damage.offset,
        lsn: None,
        reason: damage.reason,
    }
}

impl Store {
    /// The unit the rows of a read share: the unit of every target's
    /// metric when they all have the same one, else None (also for no
    /// targets, an unknown handle or metric, or a metric without a unit).
    pub fn unit_of(&self, targets: &[Target<'_>]) -> Option<String> {
        let catalog = self.catalog.read();
        let mut shared: Option<&str> = None;
        for target in targets {
            let metric = match *target {
                Target::Series(id) => catalog.entry(id)?.metric,
                Target::Path { metric, .. } => catalog.metric_id(metric).ok()?,
            };
            let unit = catalog.metric(metric).unit.as_deref()?;
            if shared.is_some_and(|s| s != unit) {
                return None;
            }
            shared = Some(unit);
        }
        shared.map(str::to_owned)
    }

    pub(crate) fn resolve(
        &self,
        catalog: &Catalog,
        target: Target<'_>,
    ) -> Result<Source, EngineError> {
        match target {
            Target::Series(id) => {
                let entry = catalog.entry(id).ok_or_else(|| {
                    EngineError::argument(
                        "series",
                        format!("{id} is not a series handle of this store"),
                    )
                })?;
                Ok(Source {
                    frequency: entry.frequency,
                    aggregation: catalog.aggregation(entry.metric),
                    series: vec![entry.data.clone()],
                })
            }
            Target::Path { metric, path } => {
                validate_path(path, "path")?;
                let metric_id: MetricId = catalog.metric_id(metric)?;
                let ids = catalog.sources(metric_id, path)?;
                let aggregation = catalog.aggregation(metric_id);
                if ids.len() > 1 && aggregation == Aggregation::None {
                    return Err(EngineError::NoAggregation {
                        metric: metric.to_owned(),
                        path: display_path(path),
                        count: ids.len(),
                    });
                }
                Ok(Source {
                    frequency: catalog.metric(metric_id).frequency,
                    aggregation,
                    series: ids
                        .iter()
                        .map(|&id| catalog.entries()[id as usize].data.clone())
                        .collect(),
                })
            }
        }
    }

    /// Appends slots `first .. first + len` of `source` to `out`, NaN
    /// where fewer than `min_count` series have a sample (and where none
    /// has), and fills `counts` (zeroed, `len` long) with how many do; fails
    /// only on a chunk of a mapped snapshot that fails its check (`out` is
    /// then longer, by less than `len`). Callers reserve `out` without
    /// zeroing it: a buffer zeroed ahead of a long read costs a pass over
    /// memory, where the read of one series writes each slot once.
    pub(crate) fn fill(
        source: &Source,
        first: i64,
        len: usize,
        out: &mut Vec<f32>,
        counts: Option<&mut [u32]>,
        min_count: u32,
    ) -> Result<(), EngineError> {
        let start = out.len();
        match source.series.as_slice() {
            [one] => {
                one.read()
                    .read_appending(first, len, out)
                    .map_err(damaged)?;
                let out = &mut out[start..];
                if let Some(counts) = counts {
                    for (c, v) in counts.iter_mut().zip(out.iter()) {
                        *c = u32::from(!v.is_nan());
                    }
                }
                // One series gives each slot one sample at most.
                if min_count > 1 {
                    out.fill(f32::NAN);
                }
                Ok(())
            }
            many => {
                // The aggregate writes only the slots enough series cover.
                out.resize(start + len, f32::NAN);
                let out = &mut out[start..];
                let mut own;
                let counts = match counts {
                    Some(counts) => counts,
                    None => {
                        own = vec![0u32; out.len()];
                        &mut own[..]
                    }
                };
                combine(many, first, source.aggregation, out, counts, min_count).map_err(damaged)
            }
        }
    }

    /// Reads `[start, stop)` of one target, NaN-padded to the whole range.
    pub fn read(
        &self,
        target: Target<'_>,
        start: i64,
        stop: i64,
    ) -> Result<RangeData, EngineError> {
        self.read_with_min_count(target, start, stop, 0)
    }

    /// [`Store::read`], NaN where fewer than `min_count` series have a
    /// sample (0 and 1 both leave only slots without any sample NaN).
    pub fn read_with_min_count(
        &self,
        target: Target<'_>,
        start: i64,
        stop: i64,
        min_count: u32,
    ) -> Result<RangeData, EngineError> {
        let source = self.resolve(&self.settled_catalog(), target)?;
        let (first, len) = read_slots(start, stop, source.frequency)?;
        let mut values = Vec::with_capacity(len);
        let mut counts = (source.series.len() > 1 || min_count > 1).then(|| vec![0u32; len]);
        Self::fill(
            &source,
            first,
            len,
            &mut values,
            counts.as_deref_mut(),
            min_count,
        )?;
        self.count_read(len);
        Ok(RangeData {
            start: first * source.frequency,
            step: source.frequency,
            values,
            counts,
            sources: source_count(&source),
        })
    }

    /// Reads `[start, stop)` of several targets of one frequency into rows
    /// of a matrix, in the order given, NaN where fewer than `min_count`
    /// series have a sample.
    pub fn read_many(
        &self,
        targets: &[Target<'_>],
        start: i64,
        stop: i64,
        min_count: u32,
    ) -> Result<Matrix, EngineError> {
        if targets.is_empty() {
            return Err(EngineError::argument(
                "series",
                "is empty; name at least one series",
            ));
        }
        let sources = {
            let catalog = self.settled_catalog();
            targets
                .iter()
                .map(|&t| self.resolve(&catalog, t))
                .collect::<Result<Vec<Source>, EngineError>>()?
        };
        let frequency = sources[0].frequency;
        if let Some(i) = sources.iter().position(|s| s.frequency != frequency) {
            return Err(EngineError::argument(
                "series",
                format!(
                    "element {i} has frequency {} but element 0 has {frequency}; \
                     rows of one read share one time axis, so read them separately",
                    sources[i].frequency
                ),
            ));
        }
        let (first, cols) = read_slots(start, stop, frequency)?;
        let cells = cols
            .checked_mul(sources.len())
            .filter(|&n| n as i64 <= MAX_READ_SLOTS);
        let Some(cells) = cells else {
            return Err(EngineError::argument(
                "stop",
                format!(
                    "{} rows of {cols} slots exceed the limit of {} values per read",
                    sources.len(),
                    MAX_READ_SLOTS
                ),
            ));
        };
        let mut values = Vec::with_capacity(cells);
        let counted = min_count > 1 || sources.iter().any(|s| s.series.len() > 1);
        let mut counts = counted.then(|| vec![0u32; cells]);
        if cols > 0 {
            let mut count_rows = counts.as_deref_mut().map(|c| c.chunks_mut(cols));
            for source in &sources {
                let count_row = count_rows.as_mut().and_then(Iterator::next);
                Self::fill(source, first, cols, &mut values, count_row, min_count)?;
            }
        }
        self.count_read(cells);
        Ok(Matrix {
            start: first * frequency,
            step: frequency,
            rows: sources.len(),
            cols,
            frequency,
            values,
            counts,
            sources: sources.iter().map(source_count).collect(),
        })
    }
}

/// How many series `source` combines, as counts hold them (a target has
/// fewer than 2^32 series: handles are u32).
fn source_count(source: &Source) -> u32 {
    u32::try_from(source.series.len()).unwrap_or(u32::MAX)
}
