//! Mutations of a store. Each public write call is exactly one [`Op`]: the
//! unit the write-ahead log records and replays, applied whole or not at
//! all. This module also holds the op payload codec (docs/format.md).

use crate::engine::bytes::{ByteReader, put_all, put_str};
use crate::engine::memory::catalog::SeriesId;
use crate::engine::model::keys::{SeriesKeys, SeriesName};
use crate::engine::model::metric::{Aggregation, MetricDef, put_unit, read_unit};

#[derive(Debug, Clone, PartialEq)]
pub enum Op<'a> {
    /// Defines a metric (idempotent for an identical definition).
    DefineMetric(MetricDef),
    /// Creates the series (metric, path), with the next free handle.
    CreateSeries { metric: String, path: Vec<String> },
    /// Creates the series of every key that has none, in order, with the
    /// next free handles: all of them or none. A key may repeat or name an
    /// existing series; only the distinct new ones are logged.
    CreateSeriesMany { keys: &'a [SeriesName<'a>] },
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
    /// Drops every slot before `before` from every series (retention, the
    /// memory limit, or an explicit cut).
    DropBefore { before: i64 },
    /// Drops every slot before `before` from each of `series` (a host's
    /// buffers freed by the network API's `/api/free`).
    DropSeriesBefore { series: &'a [SeriesId], before: i64 },
}

/// Record kinds in the log (one per op variant).
pub mod kind {
    /// A definition without a unit: what log formats 1 and 2 wrote; read
    /// as a metric with no unit.
    pub const DEFINE_METRIC: u8 = 1;
    pub const CREATE_SERIES: u8 = 2;
    pub const WRITE_BLOCK: u8 = 3;
    pub const WRITE_TICK: u8 = 4;
    pub const WRITE_POINTS: u8 = 5;
    pub const DROP_BEFORE: u8 = 6;
    /// Log format 2 and later.
    pub const CREATE_SERIES_MANY: u8 = 7;
    /// A definition with its unit (log format 3 and later), written for
    /// every definition, with or without a unit.
    pub const DEFINE_METRIC_UNIT: u8 = 8;
    /// A cut of some series only (log format 4 and later).
    pub const DROP_SERIES_BEFORE: u8 = 9;
}

/// An op decoded from the log, owning its arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedOp {
    DefineMetric(MetricDef),
    /// `id` is the handle the series got when it was logged; replay checks it.
    CreateSeries {
        id: SeriesId,
        metric: String,
        path: Vec<String>,
    },
    /// `first` is the handle the first key got; the others follow it.
    CreateSeriesMany {
        first: SeriesId,
        keys: SeriesKeys,
    },
    WriteBlock {
        series: SeriesId,
        start: i64,
        values: Vec<f32>,
    },
    WriteTick {
        timestamp: i64,
        series: Vec<SeriesId>,
        values: Vec<f32>,
    },
    WritePoints {
        series: Vec<SeriesId>,
        timestamps: Vec<i64>,
        values: Vec<f32>,
    },
    DropBefore {
        before: i64,
    },
    DropSeriesBefore {
        series: Vec<SeriesId>,
        before: i64,
    },
}

impl OwnedOp {
    /// Calls `f` with the op this holds, borrowed.
    pub fn with_op<R>(&self, f: impl FnOnce(&Op<'_>) -> R) -> R {
        if let OwnedOp::CreateSeriesMany { keys, .. } = self {
            let names = keys.names();
            let keys = keys.keys(&names);
            return f(&Op::CreateSeriesMany { keys: &keys });
        }
        f(&self.as_plain_op())
    }

    fn as_plain_op(&self) -> Op<'_> {
        match self {
            OwnedOp::DefineMetric(def) => Op::DefineMetric(def.clone()),
            OwnedOp::CreateSeriesMany { .. } => unreachable!("borrowed by with_op"),
            OwnedOp::CreateSeries { metric, path, .. } => Op::CreateSeries {
                metric: metric.clone(),
                path: path.clone(),
            },
            OwnedOp::WriteBlock {
                series,
                start,
                values,
            } => Op::WriteBlock {
                series: *series,
                start: *start,
                values,
            },
            OwnedOp::WriteTick {
                timestamp,
                series,
                values,
            } => Op::WriteTick {
                timestamp: *timestamp,
                series,
                values,
            },
            OwnedOp::WritePoints {
                series,
                timestamps,
                values,
            } => Op::WritePoints {
                series,
                timestamps,
                values,
            },
            OwnedOp::DropBefore { before } => Op::DropBefore { before: *before },
            OwnedOp::DropSeriesBefore { series, before } => Op::DropSeriesBefore {
                series,
                before: *before,
            },
        }
    }
}

/// Appends the payload of `op` to `out` and returns its record kind.
/// `created` is the handle a `CreateSeries` op is about to get, or the
/// first of those a `CreateSeriesMany` op's keys (all new) get.
pub fn encode(op: &Op<'_>, created: Option<SeriesId>, out: &mut Vec<u8>) -> u8 {
    match op {
        Op::DefineMetric(def) => {
            put_str(out, &def.name);
            out.extend_from_slice(&def.frequency.to_le_bytes());
            out.push(def.aggregation.code());
            put_unit(out, def.unit.as_deref());
            kind::DEFINE_METRIC_UNIT
        }
        Op::CreateSeries { metric, path } => {
            let id = created.expect("a logged CreateSeries knows its handle");
            out.extend_from_slice(&id.to_le_bytes());
            put_str(out, metric);
            out.push(path.len() as u8);
            for name in path {
                put_str(out, name);
            }
            kind::CREATE_SERIES
        }
        Op::CreateSeriesMany { keys } => {
            let first = created.expect("a logged CreateSeriesMany knows its first handle");
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
            for key in *keys {
                put_str(out, key.metric);
                out.push(key.path.len() as u8);
                for name in key.path {
                    put_str(out, name);
                }
            }
            kind::CREATE_SERIES_MANY
        }
        Op::WriteBlock {
            series,
            start,
            values,
        } => {
            out.extend_from_slice(&series.to_le_bytes());
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            put_all(out, values);
            kind::WRITE_BLOCK
        }
        Op::WriteTick {
            timestamp,
            series,
            values,
        } => {
            out.extend_from_slice(&timestamp.to_le_bytes());
            out.extend_from_slice(&(series.len() as u64).to_le_bytes());
            put_all(out, series);
            put_all(out, values);
            kind::WRITE_TICK
        }
        Op::WritePoints {
            series,
            timestamps,
            values,
        } => {
            out.extend_from_slice(&(series.len() as u64).to_le_bytes());
            put_all(out, series);
            put_all(out, timestamps);
            put_all(out, values);
            kind::WRITE_POINTS
        }
        Op::DropBefore { before } => {
            out.extend_from_slice(&before.to_le_bytes());
            kind::DROP_BEFORE
        }
        Op::DropSeriesBefore { series, before } => {
            out.extend_from_slice(&before.to_le_bytes());
            out.extend_from_slice(&(series.len() as u64).to_le_bytes());
            put_all(out, series);
            kind::DROP_SERIES_BEFORE
        }
    }
}

/// Decodes a payload of record kind `kind`; the error says what is wrong.
pub fn decode(kind: u8, payload: &[u8]) -> Result<OwnedOp, String> {
    let mut r = ByteReader::new(payload);
    let op = match kind {
        kind::DEFINE_METRIC | kind::DEFINE_METRIC_UNIT => {
            let name = r.string()?;
            let frequency = r.i64()?;
            let code = r.u8()?;
            let aggregation = Aggregation::from_code(code)
                .ok_or_else(|| format!("unknown aggregation code {code}"))?;
            let unit = match kind {
                kind::DEFINE_METRIC_UNIT => read_unit(&mut r)?,
                _ => None,
            };
            OwnedOp::DefineMetric(MetricDef {
                name,
                frequency,
                aggregation,
                unit,
            })
        }
        kind::CREATE_SERIES => {
            let id = r.u32()?;
            let metric = r.string()?;
            let depth = r.u8()? as usize;
            let path = (0..depth)
                .map(|_| r.string())
                .collect::<Result<Vec<_>, _>>()?;
            OwnedOp::CreateSeries { id, metric, path }
        }
        kind::CREATE_SERIES_MANY => {
            let first = r.u32()?;
            let n = r.u32()? as usize;
            // Each key takes at least 3 bytes (an empty metric, depth 0):
            // a damaged count fails here instead of sizing anything.
            if n.saturating_mul(3) > r.bytes.len() {
                return Err(format!(
                    "count {n} needs more bytes than the {} left",
                    r.bytes.len()
                ));
            }
            let mut keys = SeriesKeys::with_capacity(n, 3 * n, r.bytes.len());
            for _ in 0..n {
                keys.push_metric(r.str()?);
                for _ in 0..r.u8()? {
                    keys.push_name(r.str()?);
                }
            }
            OwnedOp::CreateSeriesMany { first, keys }
        }
        kind::WRITE_BLOCK => {
            let series = r.u32()?;
            let start = r.i64()?;
            let n = r.count(4)?;
            OwnedOp::WriteBlock {
                series,
                start,
                values: r.f32s(n)?,
            }
        }
        kind::WRITE_TICK => {
            let timestamp = r.i64()?;
            let n = r.count(8)?;
            OwnedOp::WriteTick {
                timestamp,
                series: r.u32s(n)?,
                values: r.f32s(n)?,
            }
        }
        kind::WRITE_POINTS => {
            let n = r.count(16)?;
            OwnedOp::WritePoints {
                series: r.u32s(n)?,
                timestamps: r.i64s(n)?,
                values: r.f32s(n)?,
            }
        }
        kind::DROP_BEFORE => OwnedOp::DropBefore { before: r.i64()? },
        kind::DROP_SERIES_BEFORE => {
            let before = r.i64()?;
            let n = r.count(4)?;
            OwnedOp::DropSeriesBefore {
                series: r.u32s(n)?,
                before,
            }
        }
        other => return Err(format!("unknown record kind {other}")),
    };
    r.finish("the payload")?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(op: Op<'_>, created: Option<SeriesId>) -> OwnedOp {
        let mut payload = Vec::new();
        let kind = encode(&op, created, &mut payload);
        let decoded = decode(kind, &payload).unwrap();
        decoded.with_op(|back| assert_eq!(*back, op));
        decoded
    }

    #[test]
    fn every_op_round_trips_through_its_payload() {
        for unit in [None, Some("GF/s".to_owned())] {
            round_trip(
                Op::DefineMetric(MetricDef {
                    name: "cpu_load".into(),
                    frequency: 60,
                    aggregation: Aggregation::Avg,
                    unit,
                }),
                None,
            );
        }
        let created = round_trip(
            Op::CreateSeries {
                metric: "cpu_load".into(),
                path: vec!["emmy".into(), "e0102".into()],
            },
            Some(7),
        );
        assert!(matches!(created, OwnedOp::CreateSeries { id: 7, .. }));
        round_trip(
            Op::WriteBlock {
                series: 3,
                start: -5,
                values: &[1.0, f32::NEG_INFINITY, -0.0],
            },
            None,
        );
        round_trip(
            Op::WriteTick {
                timestamp: 1_608_923_076,
                series: &[0, 9],
                values: &[0.5, 2.5],
            },
            None,
        );
        round_trip(Op::DropBefore { before: -7 }, None);
        round_trip(
            Op::DropSeriesBefore {
                series: &[3, 0, 7],
                before: 1_700_000_000,
            },
            None,
        );
        round_trip(
            Op::DropSeriesBefore {
                series: &[],
                before: -1,
            },
            None,
        );
        let mut keys = SeriesKeys::new();
        keys.push("cpu_load", &["emmy", "e0102"]);
        keys.push("mem", &["emmy"]);
        let names = keys.names();
        let created = round_trip(
            Op::CreateSeriesMany {
                keys: &keys.keys(&names),
            },
            Some(40),
        );
        assert_eq!(created, OwnedOp::CreateSeriesMany { first: 40, keys });
        round_trip(
            Op::WritePoints {
                series: &[1, 1],
                timestamps: &[i64::MIN + 1, i64::MAX],
                values: &[3.0, 4.0],
            },
            None,
        );
    }

    #[test]
    fn a_cut_or_lying_batch_of_new_series_fails_without_allocating() {
        let mut keys = SeriesKeys::new();
        keys.push("m", &["c", "h0"]);
        keys.push("m", &["c", "h1"]);
        let names = keys.names();
        let mut payload = Vec::new();
        let kind = encode(
            &Op::CreateSeriesMany {
                keys: &keys.keys(&names),
            },
            Some(0),
            &mut payload,
        );
        assert_eq!(kind, kind::CREATE_SERIES_MANY);
        for cut in 0..payload.len() {
            assert!(decode(kind, &payload[..cut]).is_err(), "cut {cut}");
        }
        let mut lying = payload.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(kind, &lying).unwrap_err().contains("count"));
        let mut longer = payload;
        longer.push(0);
        assert!(decode(kind, &longer).unwrap_err().contains("left over"));
    }

    #[test]
    fn a_definition_logged_before_units_reads_without_one() {
        // Kind 1 as log formats 1 and 2 wrote it: name, frequency, aggregation.
        let mut payload = Vec::new();
        put_str(&mut payload, "mem_used");
        payload.extend_from_slice(&60i64.to_le_bytes());
        payload.push(Aggregation::Sum.code());
        let expected = MetricDef {
            name: "mem_used".into(),
            frequency: 60,
            aggregation: Aggregation::Sum,
            unit: None,
        };
        assert_eq!(
            decode(kind::DEFINE_METRIC, &payload),
            Ok(OwnedOp::DefineMetric(expected.clone()))
        );
        // The same bytes under kind 8 lack the unit field: cut, not guessed.
        assert!(decode(kind::DEFINE_METRIC_UNIT, &payload).is_err());
        let mut with_unit = Vec::new();
        let kind = encode(
            &Op::DefineMetric(MetricDef {
                unit: Some("GB".into()),
                ..expected
            }),
            None,
            &mut with_unit,
        );
        assert_eq!(kind, kind::DEFINE_METRIC_UNIT);
        assert_eq!(&with_unit[..payload.len()], &payload[..]);
        assert_eq!(&with_unit[payload.len()..], b"\x02\x00GB");
    }

    #[test]
    fn nan_payload_bits_survive_the_codec() {
        let odd_nan = f32::from_bits(0x7fc0_1234);
        let decoded = round_trip_bits(&[odd_nan]);
        assert_eq!(decoded[0].to_bits(), 0x7fc0_1234);
    }

    fn round_trip_bits(values: &[f32]) -> Vec<f32> {
        let mut payload = Vec::new();
        let kind = encode(
            &Op::WriteBlock {
                series: 0,
                start: 0,
                values,
            },
            None,
            &mut payload,
        );
        match decode(kind, &payload).unwrap() {
            OwnedOp::WriteBlock { values, .. } => values,
            other => panic!("decoded {other:?}"),
        }
    }

    #[test]
    fn lying_counts_and_truncated_payloads_fail_without_allocating() {
        let mut payload = Vec::new();
        encode(
            &Op::WriteTick {
                timestamp: 0,
                series: &[1, 2],
                values: &[1.0, 2.0],
            },
            None,
            &mut payload,
        );
        let mut lying = payload.clone();
        lying[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            decode(kind::WRITE_TICK, &lying)
                .unwrap_err()
                .contains("count")
        );
        for cut in 0..payload.len() {
            assert!(
                decode(kind::WRITE_TICK, &payload[..cut]).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert!(
            decode(kind::WRITE_TICK, &longer)
                .unwrap_err()
                .contains("left over")
        );
        assert!(
            decode(99, &payload)
                .unwrap_err()
                .contains("unknown record kind")
        );
    }
}
