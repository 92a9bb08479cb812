//! cc-backend's checkpoint files written from a store: one host's series
//! as a binary snapshot (`<from>.bin`, the layout `snapshot.rs` parses) or
//! a JSON checkpoint (`<from>.json`).
//!
//! Rules (the same as `metricstore.ccbackend.write_checkpoints` states):
//! - each series is written from its first to its last value in
//!   `[from, to)` (NaN between); a series with none is left out;
//! - the host's own series are the top level, the series below it nest by
//!   their path; at every level metrics and children are sorted by name;
//! - JSON values are the float64 of each float32 in the shortest form that
//!   reads back to it (cc-backend writes one decimal digit; this keeps every
//!   bit), `null` for NaN; keys in the order metrics, children, from, to.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::snapshot::SNAPSHOT_MAGIC;
use crate::engine::error::EngineError;
use crate::engine::query::read::Target;
use crate::engine::store::{SeriesId, Store};

/// Which file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    Bin,
    Json,
}

/// A series of the host: its metric and its path below the host.
#[derive(Debug, Clone)]
pub struct HostSeries {
    pub id: SeriesId,
    pub metric: String,
    pub below: Vec<String>,
}

/// One host's checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedHost {
    pub bytes: Vec<u8>,
    /// Series written.
    pub series: u64,
    /// Non-NaN values written.
    pub values: u64,
}

#[derive(Debug, Default)]
struct Level {
    /// metric: (frequency, start, values)
    metrics: BTreeMap<String, (i64, i64, Vec<f32>)>,
    children: BTreeMap<String, Level>,
}

/// Reads each series in `[from, to)`, trims it, and encodes the host's file;
/// None if no series has a value there.
pub fn encode_host(
    store: &Store,
    from: i64,
    to: i64,
    members: &[HostSeries],
    format: CheckpointFormat,
) -> Result<Option<EncodedHost>, EngineError> {
    let mut top = Level::default();
    let (mut series, mut values) = (0, 0);
    for member in members {
        let data = store.read(Target::Series(member.id), from, to)?;
        let Some(first) = data.values.iter().position(|v| !v.is_nan()) else {
            continue;
        };
        let last = data.values.iter().rposition(|v| !v.is_nan()).expect("one");
        let block = data.values[first..=last].to_vec();
        values += block.iter().filter(|v| !v.is_nan()).count() as u64;
        series += 1;
        let mut node = &mut top;
        for name in &member.below {
            node = node.children.entry(name.clone()).or_default();
        }
        let start = data.start + first as i64 * data.step;
        node.metrics
            .insert(member.metric.clone(), (data.step, start, block));
    }
    if series == 0 {
        return Ok(None);
    }
    let bytes = match format {
        CheckpointFormat::Bin => encode_snapshot(from, to, &top),
        CheckpointFormat::Json => encode_json(from, to, &top),
    };
    Ok(Some(EncodedHost {
        bytes,
        series,
        values,
    }))
}

fn name16(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn encode_snapshot(from: i64, to: i64, top: &Level) -> Vec<u8> {
    let mut out = SNAPSHOT_MAGIC.to_le_bytes().to_vec();
    out.extend_from_slice(&from.to_le_bytes());
    out.extend_from_slice(&to.to_le_bytes());
    // An explicit stack, as the parser keeps one: pre-order, each level's
    // metrics and child count before its children.
    let mut stack: Vec<(Option<&str>, &Level)> = vec![(None, top)];
    while let Some((name, level)) = stack.pop() {
        if let Some(name) = name {
            name16(&mut out, name);
        }
        out.extend_from_slice(&(level.metrics.len() as u32).to_le_bytes());
        for (metric, (frequency, start, values)) in &level.metrics {
            name16(&mut out, metric);
            out.extend_from_slice(&frequency.to_le_bytes());
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            out.reserve(4 * values.len());
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&(level.children.len() as u32).to_le_bytes());
        stack.extend(
            level
                .children
                .iter()
                .rev()
                .map(|(name, child)| (Some(name.as_str()), child)),
        );
    }
    out
}

/// `s` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float32 as JSON: the shortest decimal of its float64 that reads back
/// to it, `null` for NaN. (An infinity cannot be stored.)
fn json_value(out: &mut String, v: f32) {
    if v.is_nan() {
        out.push_str("null");
    } else {
        let _ = write!(out, "{:?}", f64::from(v));
    }
}

fn json_level(out: &mut String, level: &Level, from: i64, to: i64) {
    out.push_str("{\"metrics\":{");
    for (i, (metric, (frequency, start, values))) in level.metrics.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, metric);
        let _ = write!(
            out,
            ":{{\"frequency\":{frequency},\"start\":{start},\"data\":["
        );
        for (j, v) in values.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_value(out, *v);
        }
        out.push_str("]}");
    }
    out.push_str("},\"children\":{");
    for (i, (name, child)) in level.children.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, name);
        out.push(':');
        // Paths are at most 14 names below the host: recursion is bounded.
        json_level(out, child, from, to);
    }
    let _ = write!(out, "}},\"from\":{from},\"to\":{to}}}");
}

fn encode_json(from: i64, to: i64, top: &Level) -> Vec<u8> {
    let mut out = String::new();
    json_level(&mut out, top, from, to);
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ccbackend::snapshot::parse_snapshot;
    use crate::engine::{Aggregation, TimeUnit};

    fn store() -> (Store, Vec<HostSeries>) {
        let store = Store::new(TimeUnit::Seconds);
        store.define_metric("ipc", 10, Aggregation::Sum).unwrap();
        store.define_metric("mem", 60, Aggregation::Sum).unwrap();
        let mut members = Vec::new();
        for (metric, path, start, values) in [
            ("mem", vec!["c", "h"], 1200, vec![1.5, f32::NAN, -0.0]),
            ("ipc", vec!["c", "h", "socket0", "core1"], 1010, vec![0.1]),
            (
                "ipc",
                vec!["c", "h", "cpu\"3"],
                1000,
                vec![f32::NAN, 1e-7, 3.4e38],
            ),
            ("ipc", vec!["c", "h", "empty"], 1000, vec![f32::NAN]),
        ] {
            let id = store.series(metric, &path).unwrap();
            store.write_block(id, start, &values).unwrap();
            let below = path[2..].iter().map(|s| s.to_string()).collect();
            members.push(HostSeries {
                id,
                metric: metric.to_owned(),
                below,
            });
        }
        (store, members)
    }

    #[test]
    fn a_host_encodes_as_a_snapshot_the_parser_reads_back() {
        let (store, members) = store();
        let host = encode_host(&store, 1000, 1400, &members, CheckpointFormat::Bin)
            .unwrap()
            .unwrap();
        assert_eq!((host.series, host.values), (3, 5));
        let parsed = parse_snapshot(&host.bytes).unwrap();
        assert_eq!((parsed.from, parsed.to, parsed.trailing), (1000, 1400, 0));
        // Pre-order, names sorted: the host, cpu"3, socket0, socket0/core1.
        let blocks: Vec<(Vec<&str>, &str, i64, i64, usize)> = parsed
            .blocks()
            .map(|(below, metric, f, start, n)| (below.to_vec(), metric, f, start, n))
            .collect();
        assert_eq!(
            blocks,
            vec![
                (vec![], "mem", 60, 1200, 3),
                (vec!["cpu\"3"], "ipc", 10, 1010, 2),
                (vec!["socket0", "core1"], "ipc", 10, 1010, 1),
            ]
        );
        assert!(
            encode_host(&store, 2000, 2100, &members, CheckpointFormat::Bin)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn json_keeps_every_bit_and_escapes_names() {
        let (store, members) = store();
        let host = encode_host(&store, 1000, 1400, &members, CheckpointFormat::Json)
            .unwrap()
            .unwrap();
        let text = String::from_utf8(host.bytes).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"metrics":{"mem":{"frequency":60,"start":1200,"data":[1.5,null,-0.0]}},"#,
                r#""children":{"cpu\"3":{"metrics":{"ipc":{"frequency":10,"start":1010,"#,
                r#""data":[1.0000000116860974e-7,3.3999999521443642e38]}},"children":{},"#,
                r#""from":1000,"to":1400},"socket0":{"metrics":{},"children":{"core1":"#,
                r#"{"metrics":{"ipc":{"frequency":10,"start":1010,"#,
                r#""data":[0.10000000149011612]}},"children":{},"from":1000,"to":1400}},"#,
                r#""from":1000,"to":1400}},"from":1000,"to":1400}"#,
                "\n"
            )
        );
    }
}
