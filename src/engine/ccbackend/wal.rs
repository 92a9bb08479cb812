//! cc-backend's log (`current.wal`): parsing, and replaying it into a store
//! after a host's snapshots the way cc-backend's startup replays it.
//!
//! The layout (all little-endian):
//!
//! ```text
//! u32 file magic 0xCC1DA701, then records:
//! u32 0xCC1DA7A1 | u32 payload_len | payload | u32 CRC32-IEEE(payload)
//! payload := i64 ts | u16 name_len, metric | u8 selector_count
//!            | {u8 len, bytes} x selector_count | u32 f32 bits
//! ```
//!
//! Parsing stops at the first record that is cut short, has a bad magic,
//! length or CRC, or does not parse, like cc-backend's replay; the records
//! before it are kept and the place and reason are reported.
//!
//! Replay rules (the same as `metricstore.ccbackend`'s docstring states):
//! - records before the load's `since` are left out;
//! - a record cc-backend's replay drops as "from the past" (older than the
//!   start of the series' head buffer: the newest snapshot block, or the
//!   buffer the log itself opened, `ts - f/2` with 512 slots, when a record
//!   falls past the head's capacity) is dropped and counted;
//! - a metric the store does not know is counted, not loaded; a series the
//!   store cannot name is reported once per host and skipped;
//! - every other record is written at its time (the store's nearest slot),
//!   later records winning a slot.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::snapshot::{CcDamage, HostLoad, Unnamed, grouped};
use crate::engine::error::EngineError;
use crate::engine::ingest::lineproto::KeyHasher;
use crate::engine::model::time::nearest_slot;
use crate::engine::store::{SeriesId, Store};

pub const WAL_FILE_MAGIC: u32 = 0xCC1D_A701;
pub const WAL_RECORD_MAGIC: u32 = 0xCC1D_A7A1;
/// cc-backend's reader refuses longer payloads.
const MAX_PAYLOAD: usize = 1 << 20;
/// ts, name length, selector count, value.
const MIN_PAYLOAD: usize = 8 + 2 + 1 + 4;
/// cc-backend's `BufferCap`: the slots of a buffer the log opens.
const NEW_BUFFER_SLOTS: i128 = 512;

/// A key's `(metric, selectors)`; None where a name is not UTF-8.
type Names = Option<(String, Vec<String>)>;

/// A distinct key of the log: its names and the length of its bytes in a
/// payload.
#[derive(Debug)]
struct WalKey {
    names: Names,
    length: usize,
}

/// One record: its key's index, its time and value.
#[derive(Debug, Clone, Copy)]
struct Record {
    key: u32,
    ts: i64,
    value: f32,
}

/// The valid records of a log, in file order.
#[derive(Debug, Default)]
struct Parsed {
    keys: Vec<WalKey>,
    records: Vec<Record>,
    /// Where and why the log stops before its end.
    damage: Option<CcDamage>,
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// The names of a key, `u16 name_len, name | u8 count | {u8 len, bytes} x
/// count`, at the start of `key` (a payload after its timestamp), and their
/// length in bytes. The f32 value must fit after them.
fn parse_key(key: &[u8]) -> Result<(Names, usize), String> {
    let end = key.len();
    if end < 2 {
        return Err("the metric name's length overflows the payload".into());
    }
    let length = u16::from_le_bytes([key[0], key[1]]) as usize;
    let mut at = 2;
    if at + length > end {
        return Err("the metric name overflows the payload".into());
    }
    let mut raw: Vec<&[u8]> = vec![&key[at..at + length]];
    at += length;
    if at >= end {
        return Err("the selector count overflows the payload".into());
    }
    let count = key[at];
    at += 1;
    for i in 0..count {
        if at >= end {
            return Err(format!("selector {i}'s length overflows the payload"));
        }
        let length = key[at] as usize;
        at += 1;
        if at + length > end {
            return Err(format!("selector {i} overflows the payload"));
        }
        raw.push(&key[at..at + length]);
        at += length;
    }
    if at + 4 > end {
        return Err("the value overflows the payload".into());
    }
    let names: Option<Vec<String>> = raw
        .iter()
        .map(|r| std::str::from_utf8(r).ok().map(str::to_owned))
        .collect();
    let names = names.map(|mut names| {
        let metric = names.remove(0);
        (metric, names)
    });
    Ok((names, at))
}

type KeyIndex = HashMap<Box<[u8]>, u32, BuildHasherDefault<KeyHasher>>;

/// Parses a log. A bad file header is damage of the whole file (`Err`);
/// a bad record ends the log there (`Parsed::damage`).
fn parse_wal(data: &[u8]) -> Result<Parsed, CcDamage> {
    let size = data.len();
    let mut parsed = Parsed::default();
    if size == 0 {
        return Ok(parsed);
    }
    if size < 4 {
        return Err(CcDamage::at(
            0,
            format!("the file ends inside the 4-byte file header ({size} bytes)"),
        ));
    }
    let magic = u32_at(data, 0);
    if magic != WAL_FILE_MAGIC {
        return Err(CcDamage::at(
            0,
            format!("magic 0x{magic:08X} is not a log's 0x{WAL_FILE_MAGIC:08X}"),
        ));
    }
    // A record of the usual size per ~40 bytes.
    parsed.records.reserve(size / 40);
    let mut index = KeyIndex::default();
    let mut offset = 4;
    let stop = |offset: usize, reason: String| Some(CcDamage::at(offset, reason));
    while offset < size {
        if offset + 8 > size {
            parsed.damage = stop(
                offset,
                format!("a torn record: {} of its 8 header bytes", size - offset),
            );
            break;
        }
        let magic = u32_at(data, offset);
        let length = u32_at(data, offset + 4) as usize;
        if magic != WAL_RECORD_MAGIC {
            parsed.damage = stop(
                offset,
                format!("record magic 0x{magic:08X}, not 0x{WAL_RECORD_MAGIC:08X}"),
            );
            break;
        }
        if length > MAX_PAYLOAD {
            parsed.damage = stop(
                offset,
                format!(
                    "a payload length of {} bytes (the limit is 1 MiB)",
                    grouped(length as u64)
                ),
            );
            break;
        }
        let payload = offset + 8;
        let end = payload + length;
        if end + 4 > size {
            parsed.damage = stop(
                offset,
                format!(
                    "a torn record: {} of its {} bytes",
                    size - offset,
                    length + 12
                ),
            );
            break;
        }
        let body = &data[payload..end];
        if crc32fast::hash(body) != u32_at(data, end) {
            parsed.damage = stop(
                offset,
                "the record's CRC32 does not match its payload".into(),
            );
            break;
        }
        if length < MIN_PAYLOAD {
            parsed.damage = stop(
                offset,
                format!("a payload of {length} bytes is too short for a record"),
            );
            break;
        }
        // Records of one key share their bytes between the timestamp and
        // the last four: the key is parsed once.
        let raw = &body[8..length - 4];
        let key = match index.get(raw) {
            Some(&key) => key,
            None => match parse_key(&body[8..]) {
                Ok((names, key_length)) => {
                    let key = parsed.keys.len() as u32;
                    parsed.keys.push(WalKey {
                        names,
                        length: key_length,
                    });
                    index.insert(raw.into(), key);
                    key
                }
                Err(reason) => {
                    parsed.damage = stop(offset, reason);
                    break;
                }
            },
        };
        let at = 8 + parsed.keys[key as usize].length;
        parsed.records.push(Record {
            key,
            ts: i64::from_le_bytes(body[..8].try_into().expect("8 bytes")),
            value: f32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes")),
        });
        offset = end + 4;
    }
    Ok(parsed)
}

/// What replaying one log did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WalLoad {
    /// Valid records (before the damage, if any).
    pub records: u64,
    /// Where and why the log stops before its end.
    pub damage: Option<CcDamage>,
    /// Records written.
    pub written: u64,
    /// Non-NaN values written.
    pub values: u64,
    /// Records cc-backend's replay drops as older than their head buffer.
    pub stale: u64,
    /// Non-NaN values of metrics the store does not know, by metric.
    pub unknown: Vec<(String, u64)>,
    /// Distinct keys (with records at or after `since`) whose names are
    /// not UTF-8.
    pub not_utf8: u64,
    /// Records whose time has no slot on their metric's grid (i64::MIN,
    /// or the slot's time is out of range): not written.
    pub untimed: u64,
    /// Series first found unnameable in this log.
    pub unnamed: Vec<Unnamed>,
}

/// cc-backend's head buffer of a series while the log replays, in i128 so
/// that `ts - start` and `ts - f/2` never overflow.
#[derive(Debug, Clone, Copy)]
struct Buffer {
    start: i128,
    capacity: i128,
    step: i128,
}

/// How a key of the log resolves.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// No record at or after `since`.
    Unused,
    /// Not written (not UTF-8, unknown metric, unnameable).
    Skipped,
    Series {
        handle: SeriesId,
        frequency: i64,
        head: Option<Buffer>,
    },
}

/// A parsed log, waiting for its host's snapshots before it replays.
#[derive(Debug)]
pub struct ScannedLog(Parsed);

impl HostLoad {
    /// Parses `data` as a `current.wal` before the host's snapshots load,
    /// and learns from it each series' sample phase (the most common of its
    /// records' times at or after `since`, modulo its metric's frequency;
    /// the earliest on a tie), by which the snapshots' blocks are then
    /// placed. A bad file header is damage of the whole log.
    pub fn scan_wal(&mut self, data: &[u8]) -> Result<ScannedLog, CcDamage> {
        /// Distinct phases counted per key; a key with more is jitter, and
        /// the first ones seen decide.
        const PHASES: usize = 8;
        let parsed = parse_wal(data)?;
        let since = self.since.unwrap_or(i64::MIN);
        let frequencies: Vec<Option<i64>> = parsed
            .keys
            .iter()
            .map(|key| {
                let (metric, _) = key.names.as_ref()?;
                self.known.get(metric.as_str()).copied()
            })
            .collect();
        let mut phases: Vec<Vec<(i64, u64)>> = vec![Vec::new(); parsed.keys.len()];
        for record in parsed.records.iter().filter(|r| r.ts >= since) {
            let Some(frequency) = frequencies[record.key as usize] else {
                continue;
            };
            let phase = record.ts.rem_euclid(frequency);
            let counts = &mut phases[record.key as usize];
            match counts.iter().position(|(p, _)| *p == phase) {
                Some(i) => counts[i].1 += 1,
                None if counts.len() < PHASES => counts.push((phase, 1)),
                None => {}
            }
        }
        for (key, counts) in parsed.keys.iter().zip(&phases) {
            let Some((metric, below)) = &key.names else {
                continue;
            };
            // The first of the most common (max_by_key keeps the last).
            let Some(&(phase, _)) = counts.iter().rev().max_by_key(|(_, n)| *n) else {
                continue;
            };
            self.set_key(metric, below);
            let state = self.state();
            self.series[state].log_phase = Some(phase);
        }
        Ok(ScannedLog(parsed))
    }

    /// Parses `data` as a `current.wal` and replays it: [`Self::scan_wal`]
    /// then [`Self::replay_wal`]. A bad file header writes nothing
    /// (`Ok(Err)`).
    pub fn load_wal(
        &mut self,
        store: &Store,
        data: &[u8],
    ) -> Result<Result<WalLoad, CcDamage>, EngineError> {
        match self.scan_wal(data) {
            Ok(log) => self.replay_wal(store, log).map(Ok),
            Err(damage) => Ok(Err(damage)),
        }
    }

    /// Replays a scanned log into `store` after the snapshots this load
    /// has seen; the records before a bad one are kept. An error of the
    /// store stops the load with what was written so far.
    pub fn replay_wal(&mut self, store: &Store, log: ScannedLog) -> Result<WalLoad, EngineError> {
        let parsed = log.0;
        let mut load = WalLoad {
            records: parsed.records.len() as u64,
            damage: parsed.damage,
            ..WalLoad::default()
        };
        let since = self.since.unwrap_or(i64::MIN);
        // Per key: kept records and their non-NaN values.
        let mut kept = vec![(0u64, 0u64); parsed.keys.len()];
        for record in parsed.records.iter().filter(|r| r.ts >= since) {
            let k = &mut kept[record.key as usize];
            k.0 += 1;
            k.1 += u64::from(!record.value.is_nan());
        }
        // Keys resolve in the order they first appear in the file.
        let mut unknown: HashMap<&str, u64> = HashMap::new();
        let mut targets = Vec::with_capacity(parsed.keys.len());
        for (key, &(records, values)) in parsed.keys.iter().zip(&kept) {
            if records == 0 {
                targets.push(Target::Unused);
                continue;
            }
            let Some((metric, below)) = &key.names else {
                load.not_utf8 += 1;
                targets.push(Target::Skipped);
                continue;
            };
            let Some(&frequency) = self.known.get(metric.as_str()) else {
                *unknown.entry(metric).or_default() += values;
                targets.push(Target::Skipped);
                continue;
            };
            self.set_key(metric, below);
            let state = self.state();
            let Some(handle) = self.made(state, store, metric, below, &mut load.unnamed)? else {
                targets.push(Target::Skipped);
                continue;
            };
            let head = self.series[state].head.map(|h| Buffer {
                start: i128::from(h.start),
                capacity: i128::from(h.capacity),
                step: i128::from(h.frequency),
            });
            targets.push(Target::Series {
                handle,
                frequency,
                head,
            });
        }
        load.unknown = unknown
            .into_iter()
            .map(|(metric, n)| (metric.to_owned(), n))
            .collect();
        load.unknown.sort();
        // Replay, following each series' head buffer record by record, and
        // group the accepted records by series (file order within one).
        let mut accepted = vec![false; parsed.records.len()];
        let mut per_key = vec![0usize; parsed.keys.len()];
        for (record, accept) in parsed.records.iter().zip(accepted.iter_mut()) {
            if record.ts < since {
                continue;
            }
            let target = &mut targets[record.key as usize];
            let Target::Series {
                frequency, head, ..
            } = target
            else {
                continue;
            };
            let ts = i128::from(record.ts);
            let buffer = head.get_or_insert_with(|| {
                let step = i128::from(*frequency);
                Buffer {
                    start: ts - step / 2,
                    capacity: NEW_BUFFER_SLOTS,
                    step,
                }
            });
            if ts < buffer.start {
                load.stale += 1;
                continue;
            }
            if (ts - buffer.start) / buffer.step >= buffer.capacity {
                buffer.start = ts - buffer.step / 2;
                buffer.capacity = NEW_BUFFER_SLOTS;
            }
            if nearest_slot(record.ts, *frequency, "timestamps").is_err() {
                load.untimed += 1;
                continue;
            }
            *accept = true;
            per_key[record.key as usize] += 1;
        }
        // A counting sort by key: where each key's records begin.
        let mut begin = Vec::with_capacity(per_key.len());
        let mut total = 0;
        for n in &per_key {
            begin.push(total);
            total += n;
        }
        let mut series = vec![0 as SeriesId; total];
        let mut times = vec![0i64; total];
        let mut values = vec![0f32; total];
        for (record, _) in parsed
            .records
            .iter()
            .zip(&accepted)
            .filter(|(_, accept)| **accept)
        {
            let Target::Series { handle, .. } = targets[record.key as usize] else {
                unreachable!("accepted records have a series");
            };
            let at = &mut begin[record.key as usize];
            series[*at] = handle;
            times[*at] = record.ts;
            values[*at] = record.value;
            *at += 1;
        }
        if total > 0 {
            store.write_points(&series, &times, &values)?;
        }
        load.written = total as u64;
        load.values = values.iter().filter(|v| !v.is_nan()).count() as u64;
        Ok(load)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::engine::{Aggregation, Target as ReadTarget, TimeUnit};

    /// A log writer independent of the parser.
    fn record(ts: i64, metric: &str, selectors: &[&[u8]], value: f32) -> Vec<u8> {
        let mut body = ts.to_le_bytes().to_vec();
        body.extend_from_slice(&(metric.len() as u16).to_le_bytes());
        body.extend_from_slice(metric.as_bytes());
        body.push(selectors.len() as u8);
        for s in selectors {
            body.push(s.len() as u8);
            body.extend_from_slice(s);
        }
        body.extend_from_slice(&value.to_le_bytes());
        let mut out = WAL_RECORD_MAGIC.to_le_bytes().to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out
    }

    fn log(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = WAL_FILE_MAGIC.to_le_bytes().to_vec();
        for r in records {
            out.extend_from_slice(r);
        }
        out
    }

    fn store() -> Store {
        let store = Store::new(TimeUnit::Seconds);
        store.define_metric("ipc", 10, Aggregation::Sum).unwrap();
        store
    }

    fn host(store: &Store, since: Option<i64>) -> HostLoad {
        let known: HashMap<String, i64> = store
            .metrics()
            .into_iter()
            .map(|m| (m.name, m.frequency))
            .collect();
        HostLoad::new("c", "h", known, since)
    }

    fn read(store: &Store, path: &[&str], start: i64, n: i64) -> Vec<f32> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let target = ReadTarget::Path {
            metric: "ipc",
            path: &path,
        };
        store.read(target, start, start + n * 10).unwrap().values
    }

    #[test]
    fn a_log_cut_anywhere_keeps_the_records_before_the_cut() {
        let records: Vec<Vec<u8>> = (0..4)
            .map(|i| record(1000 + 10 * i, "ipc", &[b"cpu0"], i as f32))
            .collect();
        let data = log(&records);
        let size = records[0].len();
        for cut in 4..data.len() {
            let parsed = parse_wal(&data[..cut]).unwrap();
            let whole = (cut - 4) / size;
            assert_eq!(parsed.records.len(), whole, "cut at {cut}");
            let damage = parsed.damage;
            if (cut - 4) % size == 0 {
                assert_eq!(damage, None, "cut at {cut}");
            } else {
                let damage = damage.unwrap();
                assert_eq!(damage.offset as usize, 4 + whole * size);
                assert!(damage.reason.starts_with("a torn record"), "{damage:?}");
            }
        }
        assert_eq!(
            parse_wal(&data[..3]).unwrap_err(),
            CcDamage::at(0, "the file ends inside the 4-byte file header (3 bytes)")
        );
        assert_eq!(
            parse_wal(&data[4..]).unwrap_err(),
            CcDamage::at(0, "magic 0xCC1DA7A1 is not a log's 0xCC1DA701")
        );
    }

    #[test]
    fn bad_records_end_the_log_with_their_reason() {
        let good = record(1000, "ipc", &[], 1.0);
        let mut bad_crc = record(1010, "ipc", &[], 2.0);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        let mut overflow = record(1010, "ipc", &[b"cpu0"], 2.0);
        overflow[8 + 8 + 2 + 3 + 1] = 200; // the selector's length
        let n = overflow.len();
        let crc = crc32fast::hash(&overflow[8..n - 4]);
        overflow[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let mut magic = record(1010, "ipc", &[], 2.0);
        magic[0] = 0;
        let cases = [
            (bad_crc, "the record's CRC32 does not match its payload"),
            (overflow, "selector 0 overflows the payload"),
            (magic, "record magic 0xCC1DA700, not 0xCC1DA7A1"),
        ];
        for (bad, reason) in cases {
            let parsed = parse_wal(&log(&[good.clone(), bad, good.clone()])).unwrap();
            assert_eq!(parsed.records.len(), 1);
            assert_eq!(parsed.damage, Some(CcDamage::at(4 + good.len(), reason)));
        }
    }

    #[test]
    fn replay_drops_what_cc_backend_drops_and_later_records_win() {
        let store = store();
        let mut host = host(&store, Some(900));
        // The head buffer a snapshot left: start 1000, 3 slots.
        host.set_key("ipc", &[] as &[&str]);
        let state = host.state();
        host.series[state].head = Some(super::super::Head {
            start: 1000,
            capacity: 3,
            frequency: 10,
        });
        let records = [
            record(800, "ipc", &[], 8.0),  // before since: left out
            record(990, "ipc", &[], 9.0),  // before the head: stale
            record(1010, "ipc", &[], 1.0), //
            record(1010, "ipc", &[], 2.0), // the later record wins
            record(1100, "ipc", &[], 3.0), // past 3 slots: a new buffer at 1095
            record(1020, "ipc", &[], 4.0), // before the new buffer: stale
            record(1030, "zz", &[], 5.0),  // unknown metric
            record(1030, "zz", &[], f32::NAN),
            record(1040, "ipc", &[b"\xff"], 6.0), // not UTF-8
            record(1040, "ipc", &[b".."], 7.0),   // unnameable
        ];
        let load = host.load_wal(&store, &log(&records)).unwrap().unwrap();
        assert_eq!(
            (load.records, load.written, load.values, load.stale),
            (10, 3, 3, 2)
        );
        assert_eq!(load.unknown, vec![("zz".to_owned(), 1)]);
        assert_eq!(load.not_utf8, 1);
        assert_eq!(load.unnamed.len(), 1);
        assert_eq!(load.unnamed[0].below, vec![".."]);
        let got = read(&store, &["c", "h"], 1000, 11);
        let mut expected = [f32::NAN; 11];
        expected[1] = 2.0;
        expected[10] = 3.0;
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_series_without_a_snapshot_opens_its_buffer_at_its_first_record() {
        let store = store();
        let mut host = host(&store, None);
        let records = [
            record(1000, "ipc", &[b"cpu1"], 1.0),
            record(996, "ipc", &[b"cpu1"], 2.0), // after 1000 - 5: kept
            record(994, "ipc", &[b"cpu1"], 3.0), // before it: stale
        ];
        let load = host.load_wal(&store, &log(&records)).unwrap().unwrap();
        assert_eq!((load.written, load.stale), (2, 1));
        assert_eq!(read(&store, &["c", "h", "cpu1"], 1000, 1), vec![2.0]);
    }
}
