//! Ingesting InfluxDB line protocol in cc-backend's dialect.
//!
//! A line is `<metric>[,<tag>=<value>]... value=<v> [<timestamp>]`. The tags
//! `cluster`, `hostname` (or `host`), `type`, `type-id`, `stype` and
//! `stype-id` place the sample at the path
//! `cluster/host[/<type><type-id>[/<stype><stype-id>]]`; `type=node` means
//! the host itself; other tags are ignored. The timestamp's precision
//! (s, ms, us or ns) is told from its magnitude, as cc-backend does, and a
//! line without one gets the call's `now`.
//!
//! Unlike cc-backend, a bad line never affects the others: it is reported
//! with its line number and reason, and the accepted lines of a call are
//! written as one `WritePoints` op (one log record; the series they create
//! are logged before it, together, as one record).

use std::borrow::Cow;
use std::collections::HashMap;

use parking_lot::RwLock;

use crate::engine::error::EngineError;
use crate::engine::memory::catalog::SeriesId;
/// The hasher of series keys, also used by `ccbackend/` from here.
pub(crate) use crate::engine::model::keys::KeyHasher;
use crate::engine::model::keys::{BuildKeyHasher, SeriesKeys};
use crate::engine::model::names::validate_path;
use crate::engine::model::time::{TimeUnit, nearest_slot};
use crate::engine::store::Store;

/// What [`Ingester::ingest`] did with each line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Lines that were not blank or comments.
    pub lines: u64,
    /// Lines written.
    pub accepted: u64,
    /// Each line not written: its number (from 1) and why.
    pub rejected: Vec<(u64, String)>,
    /// Lines of metrics the store does not define, left out without a
    /// reason each (when the call asked to skip them).
    pub skipped: u64,
    /// Series the call created.
    pub series_created: u64,
}

/// A line split at its first unescaped space, with its field and
/// timestamp parsed; its tags are parsed only for a key not seen before.
struct Sample<'a> {
    /// The measurement and tags as written: lines with the same key go to
    /// the same series.
    key: &'a [u8],
    value: f32,
    /// In the store's unit; None means "now".
    timestamp: Option<i64>,
}

/// Where a series key's lines go.
struct SeriesKey<'a> {
    metric: Cow<'a, str>,
    path: Vec<Cow<'a, str>>,
}

/// A series and its metric's frequency.
type Target = (SeriesId, i64);

type KeyMap = HashMap<Box<[u8]>, Target, BuildKeyHasher>;

/// Line-protocol ingest into one store. It remembers the series keys it
/// has resolved, per default cluster: series are never removed and metrics
/// never change, so an entry stays right for the life of the store. Use
/// one `Ingester` per store, beside it.
#[derive(Default)]
pub struct Ingester {
    by_default_cluster: RwLock<HashMap<Option<String>, KeyMap>>,
}

/// Splits `text` at the first `stop` byte not escaped by a backslash.
fn split_unescaped(text: &[u8], stop: u8) -> (&[u8], Option<u8>, &[u8]) {
    let mut from = 0;
    while let Some(found) = memchr::memchr2(stop, b'\\', &text[from..]) {
        let i = from + found;
        if text[i] == stop {
            return (&text[..i], Some(stop), &text[i + 1..]);
        }
        from = i + 2;
        if from >= text.len() {
            break;
        }
    }
    (text, None, &[])
}

/// A name with its backslash escapes removed, as UTF-8.
fn unescape<'a>(raw: &'a [u8], what: &str) -> Result<Cow<'a, str>, String> {
    let text = std::str::from_utf8(raw).map_err(|_| format!("syntax: {what} is not UTF-8"))?;
    if !text.contains('\\') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '=' | ' ' | '\\' | '"')) => out.push(next),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

/// Converts a line-protocol timestamp to ticks of `unit`, telling its
/// precision from its magnitude: seconds while it would fit in int64 as
/// nanoseconds, else milliseconds, microseconds, nanoseconds. That choice
/// keeps the time in nanoseconds within int64, so every unit fits.
fn convert_timestamp(ts: i64, unit: TimeUnit) -> i64 {
    let magnitude = ts.unsigned_abs();
    let ns_per_unit: i128 = if magnitude <= (i64::MAX / 1_000_000_000) as u64 {
        1_000_000_000
    } else if magnitude <= (i64::MAX / 1_000_000) as u64 {
        1_000_000
    } else if magnitude <= (i64::MAX / 1_000) as u64 {
        1_000
    } else {
        1
    };
    let ns_per_tick: i128 = match unit {
        TimeUnit::Seconds => 1_000_000_000,
        TimeUnit::Milliseconds => 1_000_000,
        TimeUnit::Microseconds => 1_000,
        TimeUnit::Nanoseconds => 1,
    };
    // Coarser store units truncate towards the past, as cc-backend does.
    ((i128::from(ts) * ns_per_unit).div_euclid(ns_per_tick)) as i64
}

/// The sample of a `value=` field: a float, or an integer with `i` or `u`.
fn parse_value(raw: &[u8]) -> Result<f32, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "bad value: not UTF-8".to_owned())?;
    if text.starts_with('"') {
        return Err("bad value: a string; value must be a number".to_owned());
    }
    let number = match text.as_bytes().last() {
        Some(b'i') => text[..text.len() - 1].parse::<i64>().map(|v| v as f64).ok(),
        Some(b'u') => text[..text.len() - 1].parse::<u64>().map(|v| v as f64).ok(),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse::<f64>().ok()
        }
        _ => None,
    };
    let Some(number) = number else {
        return Err(format!("bad value: {text:?} is not a number"));
    };
    if number.abs() > f64::from(f32::MAX) {
        return Err(format!("bad value: {text} is out of the float32 range"));
    }
    Ok(number as f32)
}

/// Splits one line (no newline, not blank) into its key, value and time.
fn split_line(line: &[u8], unit: TimeUnit) -> Result<Sample<'_>, String> {
    let (key, stop, rest) = split_unescaped(line, b' ');
    if stop.is_none() {
        return Err("syntax: no field set (expected \"value=<number>\")".to_owned());
    }
    let rest = rest.trim_ascii_start();
    let (fields, _, timestamp) = split_unescaped(rest, b' ');
    let mut value = None;
    let mut fields = fields;
    while !fields.is_empty() {
        let (field, _, after) = split_unescaped(fields, b',');
        fields = after;
        let (name, eq, raw) = split_unescaped(field, b'=');
        if eq.is_none() {
            let shown = String::from_utf8_lossy(field);
            return Err(format!("syntax: field {shown:?} has no '='"));
        }
        if name != b"value" {
            let shown = String::from_utf8_lossy(name);
            return Err(format!(
                "bad field: only \"value\" is allowed, got {shown:?}"
            ));
        }
        value = Some(parse_value(raw)?);
    }
    let Some(value) = value else {
        return Err("syntax: no field set (expected \"value=<number>\")".to_owned());
    };
    let timestamp = timestamp.trim_ascii();
    let timestamp = if timestamp.is_empty() {
        None
    } else {
        let ts = std::str::from_utf8(timestamp)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| {
                let shown = String::from_utf8_lossy(timestamp);
                format!("bad timestamp: {shown:?} is not an integer")
            })?;
        Some(convert_timestamp(ts, unit))
    };
    Ok(Sample {
        key,
        value,
        timestamp,
    })
}

/// Parses a key (measurement and tags) into its metric and path.
fn parse_key<'a>(key: &'a [u8], default_cluster: Option<&'a str>) -> Result<SeriesKey<'a>, String> {
    let (measurement, mut sep, mut tags) = split_unescaped(key, b',');
    let metric = unescape(measurement, "the metric name")?;
    if metric.is_empty() {
        return Err("syntax: the line has no metric name".to_owned());
    }
    let (mut cluster, mut host) = (None, None);
    let (mut kind, mut kind_id, mut sub, mut sub_id) = (None, None, None, None);
    while sep == Some(b',') {
        let (tag, next, after) = split_unescaped(tags, b',');
        (sep, tags) = (next, after);
        let (name, eq, value) = split_unescaped(tag, b'=');
        if eq.is_none() {
            let shown = String::from_utf8_lossy(tag);
            return Err(format!("bad tag: {shown:?} has no '='"));
        }
        let value = unescape(value, "a tag value")?;
        match name {
            b"cluster" => cluster = Some(value),
            b"hostname" | b"host" => host = Some(value),
            b"type" => kind = Some(value),
            b"type-id" => kind_id = Some(value),
            b"stype" => sub = Some(value),
            b"stype-id" => sub_id = Some(value),
            _ => {}
        }
    }

    let cluster = match cluster {
        Some(c) => c,
        None => Cow::Borrowed(
            default_cluster
                .ok_or("no cluster: the line has no cluster tag and the call no default_cluster")?,
        ),
    };
    let host = host.ok_or("no host: the line has no hostname (or host) tag")?;
    let mut path = vec![cluster, host];
    match (kind, kind_id) {
        (None, None) => {}
        (None, Some(_)) => return Err("bad tag: type-id without type".to_owned()),
        (Some(k), _) if k == "node" => {}
        (Some(k), None) => return Err(format!("bad tag: type={k} needs a type-id")),
        (Some(k), Some(id)) => path.push(Cow::Owned(format!("{k}{id}"))),
    }
    match (sub, sub_id) {
        (None, None) => {}
        (None, Some(_)) => return Err("bad tag: stype-id without stype".to_owned()),
        (Some(s), _) if path.len() < 3 => {
            return Err(format!("bad tag: stype={s} needs a type other than node"));
        }
        (Some(s), None) => return Err(format!("bad tag: stype={s} needs an stype-id")),
        (Some(s), Some(id)) => path.push(Cow::Owned(format!("{s}{id}"))),
    }
    Ok(SeriesKey { metric, path })
}

impl Ingester {
    /// Writes the lines of `text` into `store` (see the module docs); lines
    /// without a cluster tag go to `default_cluster`, lines without a
    /// timestamp to `now` (ticks of the store unit). Lines of a metric the
    /// store does not define are rejected, or, with `skip_unknown`, only
    /// counted (collectors send more metrics than a store keeps). Fails as
    /// a whole only for a bad `default_cluster` or when the write itself
    /// fails (I/O, closed).
    pub fn ingest(
        &self,
        store: &Store,
        text: &[u8],
        default_cluster: Option<&str>,
        now: i64,
        skip_unknown: bool,
    ) -> Result<IngestReport, EngineError> {
        if let Some(cluster) = default_cluster {
            validate_path(&[cluster], "default_cluster").map_err(|e| match e {
                EngineError::InvalidName { value, reason, .. } => EngineError::argument(
                    "default_cluster",
                    format!("{value:?} is not a valid path name: {reason}"),
                ),
                other => other,
            })?;
        }
        let unit = store.unit();
        let mut report = IngestReport::default();
        let (mut series, mut timestamps, mut values) = (Vec::new(), Vec::new(), Vec::new());
        // Lines whose key the cache does not hold yet: their place in
        // `series` (a placeholder until resolved), line number and key.
        let mut unresolved: Vec<(usize, u64, &[u8])> = Vec::new();
        {
            // A read lock: concurrent calls parse in parallel, and a steady
            // collector finds every key here.
            let cache = self.by_default_cluster.read();
            let known = cache.get(&default_cluster.map(str::to_owned));
            let mut rest = text;
            let mut index = 0u64;
            while !rest.is_empty() {
                let (raw, after) = match memchr::memchr(b'\n', rest) {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &[][..]),
                };
                rest = after;
                index += 1;
                let line = raw.strip_suffix(b"\r").unwrap_or(raw).trim_ascii();
                if line.is_empty() || line.starts_with(b"#") {
                    continue;
                }
                report.lines += 1;
                let number = index;
                let sample = match split_line(line, unit) {
                    Ok(sample) => sample,
                    Err(reason) => {
                        report.rejected.push((number, reason));
                        continue;
                    }
                };
                let ts = sample.timestamp.unwrap_or(now);
                match known.and_then(|known| known.get(sample.key)) {
                    Some(&(id, frequency)) => {
                        if let Err(e) = nearest_slot(ts, frequency, "timestamp") {
                            report
                                .rejected
                                .push((number, format!("bad timestamp: {e}")));
                            continue;
                        }
                        series.push(id);
                    }
                    None => {
                        unresolved.push((series.len(), number, sample.key));
                        series.push(SeriesId::MAX);
                    }
                }
                timestamps.push(ts);
                values.push(sample.value);
            }
        }
        if !unresolved.is_empty() {
            let dropped = self.resolve(
                store,
                default_cluster,
                skip_unknown,
                &unresolved,
                &mut series,
                &timestamps,
                &mut report,
            )?;
            if dropped.contains(&true) {
                keep_undropped(&mut series, &dropped);
                keep_undropped(&mut timestamps, &dropped);
                keep_undropped(&mut values, &dropped);
            }
            // Lines of both passes, reported in line order.
            report.rejected.sort_by_key(|&(number, _)| number);
        }
        if !series.is_empty() {
            store.write_points(&series, &timestamps, &values)?;
        }
        report.accepted = series.len() as u64;
        Ok(report)
    }
}

impl Ingester {
    /// The handles of the lines in `unresolved` (see [`Ingester::ingest`]),
    /// under the cache's write lock: keys another call resolved meanwhile
    /// are found, the others looked up in the store or created together
    /// (one record, one sync). Returns, per place in `series`, whether its
    /// line was rejected or skipped after all.
    #[allow(clippy::too_many_arguments)]
    fn resolve(
        &self,
        store: &Store,
        default_cluster: Option<&str>,
        skip_unknown: bool,
        unresolved: &[(usize, u64, &[u8])],
        series: &mut [SeriesId],
        timestamps: &[i64],
        report: &mut IngestReport,
    ) -> Result<Vec<bool>, EngineError> {
        let mut dropped = vec![false; series.len()];
        // Keys with no series yet: created together after the loop, then
        // the accepted lines that wait for them (their place in `series`,
        // their key) get their handles.
        let mut new_keys = SeriesKeys::new();
        let mut new: HashMap<Box<[u8]>, (usize, i64), BuildKeyHasher> = HashMap::default();
        let mut waiting: Vec<(usize, usize)> = Vec::new();
        let mut cache = self.by_default_cluster.write();
        let known = cache.entry(default_cluster.map(str::to_owned)).or_default();
        for &(at, number, key) in unresolved {
            // The new key this line waits for, if any.
            let mut waits = None;
            let (id, frequency) = match known.get(key) {
                Some(&target) => target,
                None => match new.get(key) {
                    Some(&(new_key, frequency)) => {
                        waits = Some(new_key);
                        (SeriesId::MAX, frequency)
                    }
                    None => match ingest_series(store, key, default_cluster)? {
                        Ok(Resolved::Existing(target)) => {
                            known.insert(key.into(), target);
                            target
                        }
                        Ok(Resolved::Unknown(_)) if skip_unknown => {
                            report.skipped += 1;
                            dropped[at] = true;
                            continue;
                        }
                        Ok(Resolved::Unknown(metric)) => {
                            report
                                .rejected
                                .push((number, format!("unknown metric {metric:?}")));
                            dropped[at] = true;
                            continue;
                        }
                        Ok(Resolved::New(line, frequency)) => {
                            let new_key = new_keys.len();
                            new_keys.push(&line.metric, &line.path);
                            new.insert(key.into(), (new_key, frequency));
                            waits = Some(new_key);
                            (SeriesId::MAX, frequency)
                        }
                        Err(reason) => {
                            report.rejected.push((number, reason));
                            dropped[at] = true;
                            continue;
                        }
                    },
                },
            };
            if let Err(e) = nearest_slot(timestamps[at], frequency, "timestamp") {
                report
                    .rejected
                    .push((number, format!("bad timestamp: {e}")));
                dropped[at] = true;
                continue;
            }
            match waits {
                Some(new_key) => waiting.push((at, new_key)),
                None => series[at] = id,
            }
        }
        // Only keys some accepted line uses (a line rejected after its key
        // was resolved, for its timestamp, creates nothing).
        if !new_keys.is_empty() {
            let used: Vec<usize> = {
                let mut used = vec![false; new_keys.len()];
                waiting.iter().for_each(|&(_, key)| used[key] = true);
                (0..new_keys.len()).filter(|&k| used[k]).collect()
            };
            let names = new_keys.names();
            let all = new_keys.keys(&names);
            let mut keys = SeriesKeys::new();
            for &k in &used {
                keys.push(all[k].metric, all[k].path);
            }
            // Two spellings of one key (tags in another order) are one
            // series: count the handles that are new.
            let before = store.series_count() as SeriesId;
            let ids = store.series_many(&keys)?;
            let mut created: Vec<SeriesId> =
                ids.iter().copied().filter(|&id| id >= before).collect();
            created.sort_unstable();
            created.dedup();
            report.series_created += created.len() as u64;
            let mut id_of = vec![SeriesId::MAX; new_keys.len()];
            for (&k, id) in used.iter().zip(ids) {
                id_of[k] = id;
            }
            for (at, key) in waiting {
                series[at] = id_of[key];
            }
            for (raw, (key, frequency)) in new {
                if id_of[key] != SeriesId::MAX {
                    known.insert(raw, (id_of[key], frequency));
                }
            }
        }
        Ok(dropped)
    }
}

/// Removes the elements whose place `dropped` marks.
fn keep_undropped<T>(items: &mut Vec<T>, dropped: &[bool]) {
    let mut at = 0;
    items.retain(|_| {
        at += 1;
        !dropped[at - 1]
    });
}

/// The series of a line's key, if it exists yet.
enum Resolved<'a> {
    Existing(Target),
    /// Not yet: its (checked) key, and its metric's frequency.
    New(SeriesKey<'a>, i64),
    /// The store does not define its metric (named).
    Unknown(Cow<'a, str>),
}

/// The series of a parsed line and its frequency, or its key to create;
/// Err(reason) rejects the line, a returned error fails the call.
fn ingest_series<'a>(
    store: &Store,
    key: &'a [u8],
    default_cluster: Option<&'a str>,
) -> Result<Result<Resolved<'a>, String>, EngineError> {
    let line = match parse_key(key, default_cluster) {
        Ok(line) => line,
        Err(reason) => return Ok(Err(reason)),
    };
    let Some(frequency) = store.frequency_of(&line.metric) else {
        return Ok(Ok(Resolved::Unknown(line.metric)));
    };
    if let Err(e) = validate_path(&line.path, "path") {
        let reason = match e {
            EngineError::InvalidName { value, reason, .. } => {
                format!("path name not allowed: {value:?}: {reason}")
            }
            other => format!("path name not allowed: {other}"),
        };
        return Ok(Err(reason));
    }
    Ok(Ok(match store.find_series(&line.metric, &line.path)? {
        Some(id) => Resolved::Existing((id, frequency)),
        None => Resolved::New(line, frequency),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Aggregation, Target};

    fn store() -> Store {
        let store = Store::new(TimeUnit::Seconds);
        store
            .define_metric("cpu_load", 10, Aggregation::Avg)
            .unwrap();
        store
            .define_metric("flops_any", 10, Aggregation::Sum)
            .unwrap();
        store
    }

    fn at(store: &Store, metric: &str, path: &[&str], t: i64) -> f32 {
        let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        let target = Target::Path {
            metric,
            path: &path,
        };
        store.read(target, t, t + 1).unwrap().values[0]
    }

    #[test]
    fn tags_build_the_path_in_any_order() {
        let store = store();
        let text = "\
cpu_load,cluster=emmy,hostname=e01 value=1.5 1700000000
cpu_load,host=e02,cluster=emmy,type=node value=2 1700000000
flops_any,cluster=emmy,hostname=e01,type=cpu,type-id=3 value=7i 1700000000
flops_any,type-id=1,type=socket,stype-id=4,stype=core,hostname=e01,cluster=emmy value=8u 1700000000
flops_any,cluster=emmy,hostname=e01,type=accelerator,type-id=00000000:3B:00.0,unit=F value=9 1700000000
";
        let report = Ingester::default()
            .ingest(&store, text.as_bytes(), None, 0, false)
            .unwrap();
        assert_eq!(report.rejected, vec![]);
        assert_eq!(
            (report.lines, report.accepted, report.series_created),
            (5, 5, 5)
        );
        let t = 1_700_000_000;
        assert_eq!(at(&store, "cpu_load", &["emmy", "e01"], t), 1.5);
        assert_eq!(at(&store, "cpu_load", &["emmy", "e02"], t), 2.0);
        assert_eq!(at(&store, "flops_any", &["emmy", "e01", "cpu3"], t), 7.0);
        assert_eq!(
            at(&store, "flops_any", &["emmy", "e01", "socket1", "core4"], t),
            8.0
        );
        assert_eq!(
            at(
                &store,
                "flops_any",
                &["emmy", "e01", "accelerator00000000:3B:00.0"],
                t
            ),
            9.0
        );
    }

    #[test]
    fn the_new_series_of_one_call_are_one_record_and_only_for_accepted_lines() {
        use crate::engine::{OpenOptions, SyncMode, op_kind};
        let dir = std::env::temp_dir().join(format!(
            "metricstore-ingest-test-{}-new-series",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let options = OpenOptions {
            sync: SyncMode::Always,
            checkpoint_every: None,
            checkpoint_log_bytes: None,
            ..OpenOptions::default()
        };
        let (store, _) = Store::open(&dir, &options).unwrap();
        store
            .define_metric("cpu_load", 10, Aggregation::Avg)
            .unwrap();
        // Line 2 has no timestamp and `now` is NaT: rejected after its key
        // was resolved, so its series (host b) must not be created. Line 5
        // spells line 4's key with its tags in another order.
        let text = "\
cpu_load,cluster=emmy,hostname=a value=1 1700000000
cpu_load,cluster=emmy,hostname=b value=2
cpu_load,cluster=emmy,hostname=a value=3 1700000010
cpu_load,cluster=emmy,hostname=c value=4 1700000000
cpu_load,hostname=c,cluster=emmy value=5 1700000020
";
        let report = Ingester::default()
            .ingest(&store, text.as_bytes(), None, i64::MIN, false)
            .unwrap();
        assert_eq!(
            (report.lines, report.accepted, report.series_created),
            (5, 4, 2)
        );
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].0, 2);
        let t = 1_700_000_000;
        assert_eq!(at(&store, "cpu_load", &["emmy", "a"], t), 1.0);
        assert_eq!(at(&store, "cpu_load", &["emmy", "a"], t + 10), 3.0);
        assert_eq!(at(&store, "cpu_load", &["emmy", "c"], t), 4.0);
        assert_eq!(at(&store, "cpu_load", &["emmy", "c"], t + 20), 5.0);
        assert_eq!(store.series_count(), 2);
        assert_eq!(store.find_series("cpu_load", &["emmy", "b"]), Ok(None));
        store.close().unwrap();
        let (_, found) = Store::inspect(&dir).unwrap();
        let kinds: Vec<(u8, u64)> = found.segments[0]
            .ops_by_kind
            .iter()
            .map(|(&k, &n)| (k, n))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (op_kind::WRITE_POINTS, 1),
                (op_kind::CREATE_SERIES_MANY, 1),
                (op_kind::DEFINE_METRIC_UNIT, 1)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_of_cached_and_new_keys_keep_their_order() {
        // The first call caches the key "cpu_load,cluster=c,hostname=h";
        // in the second, lines of that cached spelling are placed at once
        // and lines of another spelling of the same series (tags swapped)
        // only after a lookup under the write lock. The later line of a
        // slot still wins, and bad lines of both kinds are reported in
        // line order.
        let store = store();
        let ingester = Ingester::default();
        let first = "cpu_load,cluster=c,hostname=h value=1 100\n";
        assert_eq!(
            ingester
                .ingest(&store, first.as_bytes(), None, 0, false)
                .unwrap()
                .accepted,
            1
        );
        let text = "\
cpu_load,hostname=h,cluster=c value=2 110
cpu_load,cluster=c,hostname=h value=3 110
cpu_load,cluster=c,hostname=h value=4 120
cpu_load,hostname=h,cluster=c value=5 120
nope,cluster=c,hostname=h value=6 120
cpu_load,cluster=c,hostname=h value=x 120
cpu_load,hostname=h,cluster=c value=7 130
";
        let report = ingester
            .ingest(&store, text.as_bytes(), None, 0, false)
            .unwrap();
        assert_eq!((report.lines, report.accepted), (7, 5));
        let numbers: Vec<u64> = report.rejected.iter().map(|r| r.0).collect();
        assert_eq!(numbers, [5, 6]);
        assert_eq!(report.series_created, 0);
        let got: Vec<f32> = [100, 110, 120, 130]
            .iter()
            .map(|&t| at(&store, "cpu_load", &["c", "h"], t))
            .collect();
        assert_eq!(got, [1.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn precision_is_told_from_magnitude() {
        let t = 1_700_000_000i64;
        for (ts, unit, want) in [
            (t, TimeUnit::Seconds, t),
            (t * 1_000 + 999, TimeUnit::Seconds, t),
            (t * 1_000_000 + 1, TimeUnit::Milliseconds, t * 1_000),
            (
                t * 1_000_000_000 + 5,
                TimeUnit::Nanoseconds,
                t * 1_000_000_000 + 5,
            ),
            (t, TimeUnit::Microseconds, t * 1_000_000),
            (-1, TimeUnit::Milliseconds, -1_000),
            (
                i64::MAX / 1_000_000_000,
                TimeUnit::Seconds,
                i64::MAX / 1_000_000_000,
            ),
            (
                i64::MAX / 1_000_000_000 + 1,
                TimeUnit::Seconds,
                i64::MAX / 1_000_000_000 / 1_000,
            ),
        ] {
            assert_eq!(convert_timestamp(ts, unit), want, "{ts} in {unit:?}");
        }
        let last_ns = convert_timestamp(i64::MAX, TimeUnit::Nanoseconds);
        assert_eq!(last_ns, i64::MAX);
    }

    #[test]
    fn each_bad_line_is_reported_and_the_others_are_written() {
        let store = store();
        let text = "\
# a comment

cpu_load,cluster=c,hostname=h value=1 100
mem_used,cluster=c,hostname=h value=1 100
cpu_load,cluster=c,hostname=.. value=1 100
cpu_load,cluster=c,hostname=h value=\"x\" 100
cpu_load,cluster=c,hostname=h temp=1 100
cpu_load,cluster=c,hostname=h value=1 soon
cpu_load,cluster=c,type=cpu,type-id=1 value=1 100
cpu_load,cluster=c,hostname=h,type=cpu value=1 100
cpu_load,cluster=c,hostname=h,stype=core,stype-id=1 value=1 100
cpu_load,hostname=h value=1 100
cpu_load,cluster=c,hostname=h value=1e39 100
cpu_load,cluster=c,hostname=h
cpu_load,cluster=c,hostname=h value=2 110\r
";
        let report = Ingester::default()
            .ingest(&store, text.as_bytes(), None, 0, false)
            .unwrap();
        assert_eq!((report.lines, report.accepted), (13, 2));
        let lines: Vec<u64> = report.rejected.iter().map(|r| r.0).collect();
        assert_eq!(lines, (4..=14).collect::<Vec<u64>>());
        let reasons: Vec<&str> = report
            .rejected
            .iter()
            .map(|r| r.1.split(':').next().unwrap())
            .collect();
        assert_eq!(
            reasons,
            [
                "unknown metric \"mem_used\"",
                "path name not allowed",
                "bad value",
                "bad field",
                "bad timestamp",
                "no host",
                "bad tag",
                "bad tag",
                "no cluster",
                "bad value",
                "syntax"
            ]
        );
        assert_eq!(at(&store, "cpu_load", &["c", "h"], 100), 1.0);
        assert_eq!(at(&store, "cpu_load", &["c", "h"], 110), 2.0);
        assert_eq!(store.stats().samples, 2);
    }

    #[test]
    fn lines_of_undefined_metrics_can_be_skipped_and_counted() {
        let store = store();
        let text = "\
mem_used,cluster=c,hostname=h value=1 100
cpu_load,cluster=c,hostname=h value=5 100
mem_used,cluster=c,hostname=h value=2 110
cpu_load,cluster=c,hostname=h value=oops 110
";
        let report = Ingester::default()
            .ingest(&store, text.as_bytes(), None, 0, true)
            .unwrap();
        assert_eq!((report.lines, report.accepted, report.skipped), (4, 1, 2));
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].0, 4);
        assert_eq!(at(&store, "cpu_load", &["c", "h"], 100), 5.0);
        assert_eq!(store.series_count(), 1);
    }

    #[test]
    fn defaults_fill_the_cluster_and_the_time() {
        let store = store();
        let text = b"cpu_load,hostname=h value=3\ncpu_load,cluster=x,hostname=h value=4";
        let report = Ingester::default()
            .ingest(&store, text, Some("dflt"), 500, false)
            .unwrap();
        assert_eq!(report.accepted, 2);
        assert_eq!(at(&store, "cpu_load", &["dflt", "h"], 500), 3.0);
        assert_eq!(at(&store, "cpu_load", &["x", "h"], 500), 4.0);
        let e = Ingester::default()
            .ingest(&store, text, Some("a/b"), 0, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("default_cluster:"), "{e}");
        assert_eq!(store.stats().samples, 2, "a refused call wrote nothing");
    }

    #[test]
    fn escapes_in_names_are_undone() {
        let store = store();
        let text = br"cpu_load,cluster=my\ cluster,hostname=a\,b value=1 100";
        let report = Ingester::default()
            .ingest(&store, text, None, 0, false)
            .unwrap();
        assert_eq!(report.accepted, 1, "{:?}", report.rejected);
        assert_eq!(at(&store, "cpu_load", &["my cluster", "a,b"], 100), 1.0);
    }
}
