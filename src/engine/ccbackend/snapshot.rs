//! cc-backend's binary snapshots (`<from>.bin`): parsing, and loading a
//! host's snapshots into a store the way cc-backend's startup loads them.
//!
//! The layout (all little-endian):
//!
//! ```text
//! u32 magic 0xCC5B0001 | i64 from | i64 to | Level
//! Level := u32 num_metrics
//!          {u16 name_len, name, i64 frequency, i64 start, u32 n, n x f32} x num_metrics
//!          u32 num_children
//!          {u16 name_len, name, Level} x num_children
//! ```
//!
//! The Python package plans a load (which hosts, which files, in which
//! order), parses JSON checkpoints and cc-backend's log, and reports; this
//! module does the per-block work, where the bytes are, without the GIL.
//! One [`HostLoad`] follows one host through its files: it keeps the
//! handles it made and each series' newest block (cc-backend's head buffer,
//! which decides which log records replay accepts).
//!
//! Rules (the same as `metricstore.ccbackend`'s docstring states):
//! - value `i` of a block goes to the slot of its sample's time,
//!   `start + d + i * frequency`. A block that starts at its series' first
//!   write (its start is not the file's `from`) has `d = 0`. A block that
//!   starts at the checkpoint's clock time `from` takes `d` from its
//!   series' sample phase ([`phase_offset`]): the phase of the newest such
//!   first-write block loaded before it, else of the series' first log
//!   record. Without either, `d = 0`: the label's nearest slot (counted as
//!   placed by rounding);
//! - NaN at either end of a block is not written, so it never erases a value
//!   loaded before it; NaN inside is written as missing;
//! - a block whose frequency differs from the metric's is written point by
//!   point at its own times (the store puts each in the nearest grid slot);
//! - a metric the store does not know is counted, not loaded;
//! - a series the store cannot name is reported once per host and skipped.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::engine::error::EngineError;
use crate::engine::ingest::lineproto::KeyHasher;
use crate::engine::model::names::MAX_PATH_DEPTH;
use crate::engine::store::{SeriesId, Store};

pub const SNAPSHOT_MAGIC: u32 = 0xCC5B_0001;
const HEADER: usize = 20;
/// `i64 frequency | i64 start | u32 n` after a metric's name.
const BLOCK_HEADER: usize = 20;
/// Names below the host the store can take (cluster and host come first).
const DEEPEST: usize = MAX_PATH_DEPTH - 2;

/// Where and why a snapshot does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcDamage {
    pub offset: u64,
    pub reason: String,
}

impl CcDamage {
    pub(super) fn at(offset: usize, reason: impl Into<String>) -> Self {
        CcDamage {
            offset: offset as u64,
            reason: reason.into(),
        }
    }
}

/// One metric of one level: its values are `4 * n` little-endian bytes.
#[derive(Debug)]
struct Block<'a> {
    level: usize,
    metric: &'a str,
    frequency: i64,
    start: i64,
    values: &'a [u8],
}

/// A parsed snapshot, borrowing the file's bytes.
#[derive(Debug)]
pub struct Snapshot<'a> {
    pub from: i64,
    pub to: i64,
    /// The path below the host of each level, in file order (the host
    /// first), cut after [`DEEPEST`] names: deeper levels share the path of
    /// their ancestor at that depth (the store cannot name any of them), so
    /// a crafted deep tree costs linear memory.
    levels: Vec<Vec<&'a str>>,
    blocks: Vec<Block<'a>>,
    /// Bytes after the level tree (cc-backend ignores them).
    pub trailing: usize,
}

impl Snapshot<'_> {
    /// Each block as (path below the host, metric, frequency, start, value
    /// count), in file order.
    #[cfg(test)]
    pub(super) fn blocks(&self) -> impl Iterator<Item = (&[&str], &str, i64, i64, usize)> {
        self.blocks.iter().map(|b| {
            let below = &self.levels[b.level];
            (
                below.as_slice(),
                b.metric,
                b.frequency,
                b.start,
                b.values.len() / 4,
            )
        })
    }
}

/// `'name'`, as the Python side quotes names in its reasons.
fn quoted(name: &str) -> String {
    format!("'{}'", name.escape_debug())
}

/// 1234567 as "1,234,567".
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A cursor that turns "the bytes end here" into a [`CcDamage`].
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn fits(&self, n: usize) -> bool {
        self.data.len() - self.at >= n
    }

    fn u16_at(&self, at: usize) -> usize {
        u16::from_le_bytes(self.data[at..at + 2].try_into().expect("2 bytes")) as usize
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.data[at..at + 4].try_into().expect("4 bytes"))
    }

    fn i64_at(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.data[at..at + 8].try_into().expect("8 bytes"))
    }

    fn count(&mut self, what: &str) -> Result<u32, CcDamage> {
        if !self.fits(4) {
            return Err(CcDamage::at(
                self.at,
                format!("the file ends before a level's {what} count"),
            ));
        }
        let count = self.u32_at(self.at);
        self.at += 4;
        Ok(count)
    }

    fn name(&self, begin: usize, end: usize, what: &str) -> Result<&'a str, CcDamage> {
        let raw = &self.data[begin..end];
        std::str::from_utf8(raw).map_err(|_| {
            CcDamage::at(
                begin,
                format!("{what} b'{}' is not UTF-8", raw.escape_ascii()),
            )
        })
    }

    /// A level's metrics (appended to `blocks`) and its child count.
    fn level(&mut self, level: usize, blocks: &mut Vec<Block<'a>>) -> Result<u32, CcDamage> {
        let count = self.count("metric")?;
        for _ in 0..count {
            let at = self.at;
            if !self.fits(2) {
                return Err(CcDamage::at(
                    at,
                    "the file ends inside a metric name's length",
                ));
            }
            let begin = at + 2;
            let end = begin + self.u16_at(at);
            if end + BLOCK_HEADER > self.data.len() {
                return Err(CcDamage::at(
                    at,
                    "the file ends inside a metric's name or header",
                ));
            }
            let metric = self.name(begin, end, "metric name")?;
            let frequency = self.i64_at(end);
            let start = self.i64_at(end + 8);
            let n = self.u32_at(end + 16);
            let values_at = end + BLOCK_HEADER;
            let values_end = values_at + 4 * n as usize;
            if values_end > self.data.len() {
                return Err(CcDamage::at(
                    at,
                    format!(
                        "the file ends inside the {} values of metric {}",
                        grouped(u64::from(n)),
                        quoted(metric)
                    ),
                ));
            }
            if frequency <= 0 {
                return Err(CcDamage::at(
                    at,
                    format!("metric {} has frequency {frequency}", quoted(metric)),
                ));
            }
            // The loader computes the time of every value: all must fit.
            let last = i64::from(n.max(1) - 1)
                .checked_mul(frequency)
                .and_then(|span| start.checked_add(span));
            if last.is_none() {
                return Err(CcDamage::at(
                    at,
                    format!(
                        "the values of metric {} run past the int64 range of times",
                        quoted(metric)
                    ),
                ));
            }
            blocks.push(Block {
                level,
                metric,
                frequency,
                start,
                values: &self.data[values_at..values_end],
            });
            self.at = values_end;
        }
        self.count("child")
    }
}

/// Parses a binary snapshot. A file that ends early or holds an impossible
/// field is damaged at the offset of the item it breaks.
pub fn parse_snapshot(data: &[u8]) -> Result<Snapshot<'_>, CcDamage> {
    if data.len() < HEADER {
        return Err(CcDamage::at(
            0,
            format!("the file ends inside the {HEADER}-byte header"),
        ));
    }
    let mut cursor = Cursor { data, at: HEADER };
    let magic = cursor.u32_at(0);
    if magic != SNAPSHOT_MAGIC {
        return Err(CcDamage::at(
            0,
            format!("magic 0x{magic:08X} is not a binary snapshot's 0x{SNAPSHOT_MAGIC:08X}"),
        ));
    }
    let mut snapshot = Snapshot {
        from: cursor.i64_at(4),
        to: cursor.i64_at(12),
        levels: vec![Vec::new()],
        blocks: Vec::new(),
        trailing: 0,
    };
    // An explicit stack of (level, children left), not recursion: a crafted
    // file cannot exhaust the thread's stack.
    let children = cursor.level(0, &mut snapshot.blocks)?;
    let mut stack = vec![(0usize, children)];
    while let Some((level, remaining)) = stack.last_mut() {
        if *remaining == 0 {
            stack.pop();
            continue;
        }
        *remaining -= 1;
        let parent = *level;
        let at = cursor.at;
        if !cursor.fits(2) {
            return Err(CcDamage::at(
                at,
                "the file ends inside a child name's length",
            ));
        }
        let end = at + 2 + cursor.u16_at(at);
        if end > data.len() {
            return Err(CcDamage::at(at, "the file ends inside a child name"));
        }
        let child = cursor.name(at + 2, end, "child name")?;
        cursor.at = end;
        let mut path = snapshot.levels[parent].clone();
        if path.len() <= DEEPEST {
            path.push(child);
        }
        snapshot.levels.push(path);
        let index = snapshot.levels.len() - 1;
        let children = cursor.level(index, &mut snapshot.blocks)?;
        stack.push((index, children));
    }
    snapshot.trailing = data.len() - cursor.at;
    Ok(snapshot)
}

/// cc-backend's head buffer of a series, as far as log replay needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub start: i64,
    /// Slots (the newest block's value count).
    pub capacity: i64,
    pub frequency: i64,
}

/// A series' handle, made when its first value is loaded.
#[derive(Debug, Clone, Copy, Default)]
pub(super) enum Handle {
    #[default]
    Unmade,
    Made(SeriesId),
    /// The store cannot name it (reported when first refused).
    Refused,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SeriesState {
    pub(super) handle: Handle,
    pub(super) head: Option<Head>,
    /// The sample phase (a time modulo the metric's frequency) of the
    /// series' first block that starts at its first write, if one loaded.
    pub(super) anchor: Option<i64>,
    /// The sample phase of the series' first log record at or after
    /// `since`, if the log has one (known before any snapshot loads).
    pub(super) log_phase: Option<i64>,
}

/// Where value 0 of a block labelled `label` was sampled, relative to the
/// label, for a series whose samples have phase `phase` (modulo `f`).
///
/// cc-backend's buffer slot `k` holds the sample at `first + k*f` and covers
/// `[first + k*f - f/2, first + (k+1)*f - f/2)`; a snapshot's value `i` is the
/// slot that contains `label + i*f`. So the sample lies in
/// `(label - (f - f/2), label + f/2]`, at the one time of that window with the
/// series' phase.
pub fn phase_offset(label: i64, phase: i64, f: i64) -> i64 {
    let r = (i128::from(phase) - i128::from(label)).rem_euclid(i128::from(f)) as i64;
    if r <= f / 2 { r } else { r - f }
}

/// A series the store refused to name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unnamed {
    pub metric: String,
    pub below: Vec<String>,
    pub message: String,
}

/// What loading one snapshot did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotLoad {
    pub from: i64,
    pub to: i64,
    /// The snapshot ends before the load's `since`: nothing was loaded.
    pub before_since: bool,
    /// Non-NaN values written.
    pub values: u64,
    /// Blocks whose frequency differs from their metric's.
    pub regridded: u64,
    /// Blocks written at their samples' times: the block starts at its
    /// first write (its start is a sample time), or its series' sample
    /// phase is known (from such a block or from the log).
    pub by_phase: u64,
    /// Blocks written at the nearest slot of their clock-time labels: the
    /// phase is not known (or the block is regridded).
    pub by_rounding: u64,
    pub trailing: usize,
    /// Non-NaN values of metrics the store does not know, by metric.
    pub unknown: Vec<(String, u64)>,
    /// Series first found unnameable in this file.
    pub unnamed: Vec<Unnamed>,
}

/// Decodes little-endian float32 `bytes` into `out` and returns how many
/// are not NaN (one pass).
fn decode(bytes: &[u8], out: &mut Vec<f32>) -> usize {
    out.clear();
    out.resize(bytes.len() / 4, 0.0);
    let mut present = 0;
    for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *value = f32::from_le_bytes(raw.try_into().expect("4 bytes"));
        present += usize::from(!value.is_nan());
    }
    present
}

/// `u16 len | bytes` per name: a collision-free key for (metric, path).
fn push_key(key: &mut Vec<u8>, name: &str) {
    key.extend_from_slice(&(name.len() as u16).to_le_bytes());
    key.extend_from_slice(name.as_bytes());
}

type IndexMap = HashMap<Box<[u8]>, usize, BuildHasherDefault<KeyHasher>>;

/// One host's load, file by file in cc-backend's order.
pub struct HostLoad {
    cluster: String,
    host: String,
    /// The frequency of each metric the store knows.
    pub(super) known: HashMap<String, i64, BuildHasherDefault<KeyHasher>>,
    pub(super) since: Option<i64>,
    /// Where each series' state is in `series`, by its key.
    index: IndexMap,
    pub(super) series: Vec<SeriesState>,
    key: Vec<u8>,
    values: Vec<f32>,
    times: Vec<i64>,
}

impl HostLoad {
    pub fn new(cluster: &str, host: &str, known: HashMap<String, i64>, since: Option<i64>) -> Self {
        HostLoad {
            cluster: cluster.to_owned(),
            host: host.to_owned(),
            known: known.into_iter().collect(),
            since,
            index: IndexMap::default(),
            series: Vec::new(),
            key: Vec::new(),
            values: Vec::new(),
            times: Vec::new(),
        }
    }

    pub(super) fn set_key<S: AsRef<str>>(&mut self, metric: &str, below: &[S]) {
        self.key.clear();
        push_key(&mut self.key, metric);
        for name in below {
            push_key(&mut self.key, name.as_ref());
        }
    }

    /// The index of the state of the series whose key is in `self.key`.
    pub(super) fn state(&mut self) -> usize {
        if let Some(&i) = self.index.get(self.key.as_slice()) {
            return i;
        }
        self.series.push(SeriesState::default());
        self.index
            .insert(self.key.as_slice().into(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// The handle of series `state`, made the first time; `None` if the
    /// store cannot name it (added to `unnamed` when first refused). Other
    /// errors of the store stop the load.
    pub(super) fn made<S: AsRef<str>>(
        &mut self,
        state: usize,
        store: &Store,
        metric: &str,
        below: &[S],
        unnamed: &mut Vec<Unnamed>,
    ) -> Result<Option<SeriesId>, EngineError> {
        match self.series[state].handle {
            Handle::Made(id) => return Ok(Some(id)),
            Handle::Refused => return Ok(None),
            Handle::Unmade => {}
        }
        let refused = |message: String| Unnamed {
            metric: metric.to_owned(),
            below: below.iter().map(|s| s.as_ref().to_owned()).collect(),
            message,
        };
        let handle = if below.len() > DEEPEST {
            unnamed.push(refused(format!(
                "the path below the host has more than {DEEPEST} names; \
                 a store path holds {MAX_PATH_DEPTH} with cluster and host"
            )));
            Handle::Refused
        } else {
            let mut path = Vec::with_capacity(below.len() + 2);
            path.push(self.cluster.as_str());
            path.push(self.host.as_str());
            path.extend(below.iter().map(AsRef::as_ref));
            match store.series(metric, &path) {
                Ok(id) => Handle::Made(id),
                Err(error @ EngineError::InvalidName { .. }) => {
                    unnamed.push(refused(error.to_string()));
                    Handle::Refused
                }
                Err(error) => return Err(error),
            }
        };
        self.series[state].handle = handle;
        Ok(match handle {
            Handle::Made(id) => Some(id),
            _ => None,
        })
    }

    /// The handle of a series (made the first time), for the log's records:
    /// `(None, Some(message))` the first time the store refuses its name,
    /// `(None, None)` after that.
    pub fn handle<S: AsRef<str>>(
        &mut self,
        store: &Store,
        metric: &str,
        below: &[S],
    ) -> Result<(Option<SeriesId>, Option<String>), EngineError> {
        self.set_key(metric, below);
        let state = self.state();
        let mut unnamed = Vec::new();
        let handle = self.made(state, store, metric, below, &mut unnamed)?;
        Ok((handle, unnamed.pop().map(|u| u.message)))
    }

    /// The series' newest snapshot block, if a snapshot of this load had one.
    pub fn head<S: AsRef<str>>(&mut self, metric: &str, below: &[S]) -> Option<Head> {
        self.set_key(metric, below);
        let state = *self.index.get(self.key.as_slice())?;
        self.series[state].head
    }

    /// Parses `data` as a binary snapshot and writes its blocks into `store`.
    /// A damaged file writes nothing; an error of the store (a poisoned log,
    /// say) stops the load with what was written so far kept.
    pub fn load_snapshot(
        &mut self,
        store: &Store,
        data: &[u8],
    ) -> Result<Result<SnapshotLoad, CcDamage>, EngineError> {
        let snapshot = match parse_snapshot(data) {
            Ok(snapshot) => snapshot,
            Err(damage) => return Ok(Err(damage)),
        };
        let mut load = SnapshotLoad {
            from: snapshot.from,
            to: snapshot.to,
            trailing: snapshot.trailing,
            ..SnapshotLoad::default()
        };
        if let Some(since) = self.since
            && snapshot.to != 0
            && snapshot.to < since
        {
            load.before_since = true;
            return Ok(Ok(load));
        }
        let mut unknown: HashMap<&str, u64> = HashMap::new();
        for block in &snapshot.blocks {
            let present = decode(block.values, &mut self.values);
            let Some(&frequency) = self.known.get(block.metric) else {
                *unknown.entry(block.metric).or_default() += present as u64;
                continue;
            };
            let below = &snapshot.levels[block.level];
            self.set_key(block.metric, below);
            let state = self.state();
            // cc-backend appends each block as the series' new head buffer, full.
            self.series[state].head = Some(Head {
                start: block.start,
                capacity: (block.values.len() / 4) as i64,
                frequency: block.frequency,
            });
            // A block that does not start at the file's `from` starts at its
            // series' first write (cc-backend's read clamps to it): a sample
            // time, which anchors the blocks after it.
            if block.start != snapshot.from && block.frequency == frequency {
                self.series[state].anchor = Some(block.start.rem_euclid(frequency));
            }
            if present == 0 {
                continue;
            }
            let made = self.made(state, store, block.metric, below, &mut load.unnamed)?;
            let Some(handle) = made else {
                continue;
            };
            let first = self.values.iter().position(|v| !v.is_nan()).expect("one");
            let last = self.values.iter().rposition(|v| !v.is_nan()).expect("one");
            let values = &self.values[first..=last];
            let start = block.start + first as i64 * block.frequency;
            if block.frequency == frequency {
                let series = &self.series[state];
                let shift = if block.start != snapshot.from {
                    Some(0)
                } else {
                    series
                        .anchor
                        .or(series.log_phase)
                        .map(|phase| phase_offset(block.start, phase, frequency))
                };
                match shift.and_then(|d| start.checked_add(d)) {
                    Some(at) => {
                        store.write_block(handle, at, values)?;
                        load.by_phase += 1;
                    }
                    None => {
                        store.write_block(handle, start, values)?;
                        load.by_rounding += 1;
                    }
                }
            } else {
                self.times.clear();
                self.times
                    .extend((0..values.len() as i64).map(|i| start + i * block.frequency));
                store.write_points(&vec![handle; values.len()], &self.times, values)?;
                load.regridded += 1;
                load.by_rounding += 1;
            }
            load.values += present as u64;
        }
        load.unknown = unknown
            .into_iter()
            .map(|(metric, n)| (metric.to_owned(), n))
            .collect();
        load.unknown.sort();
        Ok(Ok(load))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Aggregation, Target, TimeUnit};

    /// A snapshot writer independent of the parser: levels as nested tuples.
    struct Level {
        metrics: Vec<(&'static str, i64, i64, Vec<f32>)>,
        children: Vec<(&'static str, Level)>,
    }

    fn encode_level(out: &mut Vec<u8>, level: &Level) {
        out.extend_from_slice(&(level.metrics.len() as u32).to_le_bytes());
        for (name, frequency, start, values) in &level.metrics {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&frequency.to_le_bytes());
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out.extend_from_slice(&(level.children.len() as u32).to_le_bytes());
        for (name, child) in &level.children {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            encode_level(out, child);
        }
    }

    fn snapshot(from: i64, to: i64, top: &Level) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_le_bytes().to_vec();
        out.extend_from_slice(&from.to_le_bytes());
        out.extend_from_slice(&to.to_le_bytes());
        encode_level(&mut out, top);
        out
    }

    fn leaf(metrics: Vec<(&'static str, i64, i64, Vec<f32>)>) -> Level {
        Level {
            metrics,
            children: Vec::new(),
        }
    }

    fn node() -> Level {
        Level {
            metrics: vec![("mem_used", 60, 1200, vec![1.0, 2.0])],
            children: vec![
                (
                    "socket0",
                    Level {
                        metrics: vec![("power", 60, 1200, vec![3.0])],
                        children: vec![("core1", leaf(vec![("ipc", 10, 1210, vec![4.0, 5.0])]))],
                    },
                ),
                ("cpu3", leaf(vec![("ipc", 10, 1200, vec![6.0])])),
            ],
        }
    }

    fn store() -> Store {
        let store = Store::new(TimeUnit::Seconds);
        for (name, frequency) in [("mem_used", 60), ("power", 60), ("ipc", 10)] {
            store
                .define_metric(name, frequency, Aggregation::Sum)
                .unwrap();
        }
        store
    }

    fn known(store: &Store) -> HashMap<String, i64> {
        store
            .metrics()
            .into_iter()
            .map(|m| (m.name, m.frequency))
            .collect()
    }

    fn read(store: &Store, metric: &str, path: &[&str], start: i64, n: i64, step: i64) -> Vec<f32> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let path = path.as_slice();
        store
            .read(Target::Path { metric, path }, start, start + n * step)
            .unwrap()
            .values
    }

    fn same(got: &[f32], expected: &[f32]) -> bool {
        got.len() == expected.len()
            && got
                .iter()
                .zip(expected)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }

    #[test]
    fn every_level_of_the_tree_lands_at_its_path() {
        let store = store();
        let mut host = HostLoad::new("c", "h", known(&store), None);
        let load = host
            .load_snapshot(&store, &snapshot(1200, 1800, &node()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (load.from, load.to, load.values, load.trailing),
            (1200, 1800, 6, 0)
        );
        assert!(same(
            &read(&store, "mem_used", &["c", "h"], 1200, 2, 60),
            &[1.0, 2.0]
        ));
        let power = read(&store, "power", &["c", "h", "socket0"], 1200, 1, 60);
        assert!(same(&power, &[3.0]));
        let ipc = read(&store, "ipc", &["c", "h", "socket0", "core1"], 1200, 3, 10);
        assert!(ipc[0].is_nan() && ipc[1..] == [4.0, 5.0], "{ipc:?}");
        assert!(same(
            &read(&store, "ipc", &["c", "h", "cpu3"], 1200, 1, 10),
            &[6.0]
        ));
        assert_eq!(store.series_count(), 4);
    }

    #[test]
    fn nan_at_the_ends_of_a_block_never_erases_an_earlier_value() {
        let store = store();
        let mut host = HostLoad::new("c", "h", known(&store), None);
        let first = leaf(vec![("ipc", 10, 1000, vec![1.0, 2.0, 3.0, 4.0])]);
        let second = leaf(vec![(
            "ipc",
            10,
            1000,
            vec![f32::NAN, 20.0, f32::NAN, f32::NAN],
        )]);
        host.load_snapshot(&store, &snapshot(1000, 0, &first))
            .unwrap()
            .unwrap();
        let load = host
            .load_snapshot(&store, &snapshot(1000, 0, &second))
            .unwrap()
            .unwrap();
        assert_eq!(load.values, 1);
        let got = read(&store, "ipc", &["c", "h"], 1000, 4, 10);
        assert_eq!(got, vec![1.0, 20.0, 3.0, 4.0]);
        // Inside a block NaN is written as missing.
        let third = leaf(vec![("ipc", 10, 1000, vec![7.0, f32::NAN, 9.0])]);
        host.load_snapshot(&store, &snapshot(1000, 0, &third))
            .unwrap()
            .unwrap();
        let got = read(&store, "ipc", &["c", "h"], 1000, 4, 10);
        assert!(same(&got, &[7.0, f32::NAN, 9.0, 4.0]));
        // The head is the newest block, NaN and all.
        let head = host.head("ipc", &[] as &[&str]).unwrap();
        assert_eq!(
            head,
            Head {
                start: 1000,
                capacity: 3,
                frequency: 10
            }
        );
    }

    #[test]
    fn unknown_metrics_are_counted_and_other_frequencies_regridded() {
        let store = store();
        let mut host = HostLoad::new("c", "h", known(&store), None);
        let top = leaf(vec![
            ("gpu_temp", 10, 1000, vec![1.0, f32::NAN, 2.0]),
            ("ipc", 20, 1000, vec![1.5, 2.5]),
            ("zz_unknown", 10, 1000, vec![f32::NAN]),
        ]);
        let load = host
            .load_snapshot(&store, &snapshot(1000, 0, &top))
            .unwrap()
            .unwrap();
        assert_eq!(
            load.unknown,
            vec![("gpu_temp".to_owned(), 2), ("zz_unknown".to_owned(), 0)]
        );
        assert_eq!((load.regridded, load.values), (1, 2));
        let got = read(&store, "ipc", &["c", "h"], 1000, 4, 10);
        assert!(same(&got, &[1.5, f32::NAN, 2.5, f32::NAN]));
    }

    #[test]
    fn a_series_the_store_cannot_name_is_reported_once_and_skipped() {
        let store = store();
        let mut host = HostLoad::new("c", "h", known(&store), None);
        let top = Level {
            metrics: vec![("ipc", 10, 1000, vec![1.0])],
            children: vec![("..", leaf(vec![("ipc", 10, 1000, vec![2.0])]))],
        };
        let data = snapshot(1000, 0, &top);
        let load = host.load_snapshot(&store, &data).unwrap().unwrap();
        assert_eq!(load.values, 1);
        assert_eq!(load.unnamed.len(), 1);
        assert_eq!(load.unnamed[0].metric, "ipc");
        assert_eq!(load.unnamed[0].below, vec![".."]);
        assert!(
            load.unnamed[0].message.contains(".."),
            "{}",
            load.unnamed[0].message
        );
        let again = host.load_snapshot(&store, &data).unwrap().unwrap();
        assert!(again.unnamed.is_empty());
        assert_eq!(host.handle(&store, "ipc", &[".."]).unwrap(), (None, None));
        let (handle, message) = host.handle(&store, "ipc", &["cpu0"]).unwrap();
        assert_eq!(
            (handle, message),
            (store.find_series("ipc", &["c", "h", "cpu0"]).unwrap(), None)
        );
        assert!(handle.is_some());
    }

    #[test]
    fn a_snapshot_before_since_is_left_out_but_one_without_to_is_not() {
        let store = store();
        let top = leaf(vec![("ipc", 10, 1000, vec![1.0])]);
        let mut host = HostLoad::new("c", "h", known(&store), Some(2000));
        let load = host
            .load_snapshot(&store, &snapshot(1000, 1999, &top))
            .unwrap()
            .unwrap();
        assert!(load.before_since && load.values == 0 && store.series_count() == 0);
        let load = host
            .load_snapshot(&store, &snapshot(1000, 0, &top))
            .unwrap()
            .unwrap();
        assert!(!load.before_since && load.values == 1);
    }

    #[test]
    fn a_file_cut_anywhere_is_damaged_where_the_cut_item_begins() {
        let data = snapshot(1200, 1800, &node());
        // Offsets of the items, from the layout: header 20, count 4,
        // "mem_used" block 2+8+20+8 = 38, child count 4, "socket0" name 2+7, ...
        let expected = |cut: usize| -> usize {
            match cut {
                0..20 => 0,
                20..24 => 20,
                24..62 => 24,
                62..66 => 62,
                66..75 => 66,
                _ => usize::MAX,
            }
        };
        for cut in 0..75 {
            let damage = parse_snapshot(&data[..cut]).unwrap_err();
            assert_eq!(
                damage.offset as usize,
                expected(cut),
                "cut at {cut}: {damage:?}"
            );
            assert!(damage.reason.starts_with("the file ends"), "{damage:?}");
        }
        for cut in 75..data.len() {
            let damage = parse_snapshot(&data[..cut]).unwrap_err();
            assert!(
                damage.offset as usize <= cut && damage.offset >= 75,
                "{cut}: {damage:?}"
            );
        }
        assert_eq!(parse_snapshot(&data).unwrap().blocks.len(), 4);
    }

    #[test]
    fn impossible_fields_and_bad_names_are_damage_with_their_offset() {
        let mut data = snapshot(1200, 1800, &node());
        data[0] = 2;
        let damage = parse_snapshot(&data).unwrap_err();
        assert_eq!(
            damage,
            CcDamage::at(0, "magic 0xCC5B0002 is not a binary snapshot's 0xCC5B0001")
        );
        let past_int64 = snapshot(0, 0, &leaf(vec![("ipc", 1 << 62, 1 << 62, vec![1.0; 3])]));
        assert_eq!(
            parse_snapshot(&past_int64).unwrap_err(),
            CcDamage::at(
                24,
                "the values of metric 'ipc' run past the int64 range of times"
            )
        );
        let last_fits = snapshot(
            0,
            0,
            &leaf(vec![("ipc", 1 << 62, (1 << 62) - 1, vec![1.0; 2])]),
        );
        assert_eq!(parse_snapshot(&last_fits).unwrap().blocks.len(), 1);
        let bad_frequency = snapshot(0, 0, &leaf(vec![("ipc", 0, 0, vec![1.0])]));
        assert_eq!(
            parse_snapshot(&bad_frequency).unwrap_err(),
            CcDamage::at(24, "metric 'ipc' has frequency 0")
        );
        let mut bad_name = snapshot(0, 0, &leaf(vec![("ipc", 10, 0, vec![1.0])]));
        bad_name[26] = 0xFF;
        assert_eq!(
            parse_snapshot(&bad_name).unwrap_err(),
            CcDamage::at(26, "metric name b'\\xffpc' is not UTF-8")
        );
        // A huge count in a short file fails without allocating for it.
        let mut huge = snapshot(0, 0, &leaf(vec![("ipc", 10, 0, vec![1.0])]));
        huge[45..49].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse_snapshot(&huge).unwrap_err(),
            CcDamage::at(
                24,
                "the file ends inside the 4,294,967,295 values of metric 'ipc'"
            )
        );
        let mut trailing = snapshot(0, 0, &node());
        trailing.extend_from_slice(&[0, 0, 0]);
        assert_eq!(parse_snapshot(&trailing).unwrap().trailing, 3);
    }

    #[test]
    fn deep_trees_do_not_recurse() {
        let mut data = SNAPSHOT_MAGIC.to_le_bytes().to_vec();
        data.extend_from_slice(&[0; 16]);
        let depth = 100_000;
        for _ in 0..depth {
            data.extend_from_slice(&0u32.to_le_bytes()); // no metrics
            data.extend_from_slice(&1u32.to_le_bytes()); // one child
            data.extend_from_slice(&1u16.to_le_bytes());
            data.push(b'x');
        }
        data.extend_from_slice(&[0; 8]);
        let parsed = parse_snapshot(&data).unwrap();
        assert_eq!((parsed.levels.len(), parsed.trailing), (depth + 1, 0));
        assert_eq!(parsed.levels[depth].len(), DEEPEST + 1);
    }

    #[test]
    fn a_path_deeper_than_the_store_allows_is_reported_not_fatal() {
        let store = store();
        let mut top = leaf(vec![("ipc", 10, 1000, vec![9.0])]);
        for _ in 0..20 {
            top = Level {
                metrics: vec![("ipc", 10, 1000, vec![1.0])],
                children: vec![("x", top)],
            };
        }
        let mut host = HostLoad::new("c", "h", known(&store), None);
        let load = host
            .load_snapshot(&store, &snapshot(1000, 0, &top))
            .unwrap()
            .unwrap();
        // The host level and 14 below it load; the 6 deeper ones are one
        // unnameable series.
        assert_eq!((load.values, store.series_count()), (15, 15));
        assert_eq!(load.unnamed.len(), 1);
        assert_eq!(load.unnamed[0].below, vec!["x"; DEEPEST + 1]);
        let deep = vec!["x"; 30];
        let (handle, message) = host.handle(&store, "ipc", &deep).unwrap();
        assert!(handle.is_none() && message.unwrap().contains("more than 14 names"));
    }

    #[test]
    fn a_label_maps_to_the_one_sample_time_of_its_window() {
        // f = 60: the sample of label L lies in (L - 30, L + 30].
        for (label, phase, offset) in [
            (1237, 37, 0),
            (1237, 7, 30),  // exactly f/2 later: inside
            (1237, 6, 29),  //
            (1237, 8, -29), // 31 later is outside: 29 earlier
            (-1, 0, 1),
            (i64::MIN, 52, 0), // -2^63 is 52 modulo 60
            (i64::MIN, 0, 8),
            (i64::MAX, 0, -7), // 2^63 - 1 is 7 modulo 60
            (i64::MAX, 37, 30),
        ] {
            let d = phase_offset(label, phase, 60);
            assert_eq!(d, offset, "label {label}, phase {phase}");
        }
        // f = 3 (odd, f/2 = 1): the window is (L - 2, L + 1].
        let offsets: Vec<i64> = (0..3).map(|p| phase_offset(0, p, 3)).collect();
        assert_eq!(offsets, vec![0, 1, -1]);
    }

    #[test]
    fn a_block_at_a_clock_time_goes_where_its_series_phase_puts_it() {
        let store = store();
        let mut host = HostLoad::new("c", "h", known(&store), None);
        // The first write at 1205 (its own start): phase 5 of f = 10; its
        // samples 1205, 1215 and 1225 go to the slots of 1210, 1220, 1230.
        let first = leaf(vec![("ipc", 10, 1205, vec![1.0, 2.0, 3.0])]);
        let load = host
            .load_snapshot(&store, &snapshot(1200, 1230, &first))
            .unwrap()
            .unwrap();
        assert_eq!((load.by_phase, load.by_rounding), (1, 0));
        // Labelled 1230, cc-backend's buffer slots (from 1200) hold the
        // samples of 1235 and 1245: rounding the label would put 4.0 over
        // 3.0 at 1230.
        let second = leaf(vec![("ipc", 10, 1230, vec![4.0, 5.0])]);
        let load = host
            .load_snapshot(&store, &snapshot(1230, 1250, &second))
            .unwrap()
            .unwrap();
        assert_eq!((load.by_phase, load.by_rounding), (1, 0));
        let got = read(&store, "ipc", &["c", "h"], 1210, 5, 10);
        assert_eq!(got, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        // Another series, phase unknown: its label's nearest slot.
        let other = Level {
            metrics: Vec::new(),
            children: vec![("cpu0", leaf(vec![("ipc", 10, 1230, vec![5.0])]))],
        };
        let load = host
            .load_snapshot(&store, &snapshot(1230, 1250, &other))
            .unwrap()
            .unwrap();
        assert_eq!((load.by_phase, load.by_rounding), (0, 1));
        assert!(same(
            &read(&store, "ipc", &["c", "h", "cpu0"], 1230, 1, 10),
            &[5.0]
        ));
    }

    #[test]
    fn grouped_numbers_read_like_python() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_234_567, "1,234,567"),
        ];
        for (n, text) in cases {
            assert_eq!(grouped(n), text);
        }
    }
}
