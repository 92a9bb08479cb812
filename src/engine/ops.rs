//! Mutations of a store. Each public write call is exactly one `Op`, which
//! is what the write-ahead log will record and replay; an op is applied
//! whole or not at all.

use super::catalog::SeriesId;
use super::metric::MetricDef;

#[derive(Debug, Clone, PartialEq)]
pub enum Op<'a> {
    /// Defines a metric (idempotent for an identical definition).
    DefineMetric(MetricDef),
    /// Creates the series (metric, path), with the next free handle.
    CreateSeries { metric: String, path: Vec<String> },
    /// Consecutive samples of one series from the slot nearest `start`.
    WriteBlock {
        series: SeriesId,
        start: i64,
        values: &'a [f32],
    },
    /// One timestamp, one value for each of many series.
    WriteTick {
        timestamp: i64,
        series: &'a [SeriesId],
        values: &'a [f32],
    },
    /// Independent samples; a slot written twice in one op keeps the later one.
    WritePoints {
        series: &'a [SeriesId],
        timestamps: &'a [i64],
        values: &'a [f32],
    },
}
