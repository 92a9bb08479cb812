//! Replaying the log, and telling a torn tail from corruption.
//!
//! A damaged record counts as a torn tail (an append cut short by a crash)
//! only if it is in the last segment and no valid record follows it. Damage
//! anywhere else, an LSN that does not follow its predecessor, or a missing
//! segment is corruption: recovery stops with an error naming the file, the
//! offset and the LSN, and changes nothing.

use std::path::Path;

use super::list_segments;
use super::record::{self, Fragment, HeaderProblem, RECORD_HEADER, SEGMENT_HEADER};
use crate::engine::error::EngineError;
use crate::engine::storage::Storage;

/// What recovery does with a damaged log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// A torn tail of the last segment is cut off and reported; any other
    /// damage is an error.
    TolerateTail,
    /// Any damage, a torn tail included, is an error.
    Strict,
    /// Replay stops at the first damage wherever it is; what follows is set
    /// aside (`.broken` files) and reported.
    PointInTime,
}

impl RecoveryMode {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        match text {
            "tolerate_tail" => Ok(RecoveryMode::TolerateTail),
            "strict" => Ok(RecoveryMode::Strict),
            "point_in_time" => Ok(RecoveryMode::PointInTime),
            other => Err(EngineError::argument(
                "recovery",
                format!(
                    "unknown recovery mode {other:?}; use \"tolerate_tail\", \"strict\" or \
                     \"point_in_time\""
                ),
            )),
        }
    }
}

/// Where replay stopped early, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub offset: u64,
    /// Bytes from `offset` to the end of the file (what was dropped).
    pub bytes: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub segments: usize,
    /// Ops applied (records after the snapshot's LSN).
    pub records: u64,
    /// Bytes of the records applied.
    pub bytes: u64,
    /// The LSN of the last complete record in the log (0 if none).
    pub last_lsn: u64,
    /// A torn tail that was cut off (or, read-only, ignored).
    pub torn: Option<Damage>,
    /// Point-in-time recovery: where it stopped, and the files set aside.
    pub stopped: Option<Damage>,
    pub set_aside: Vec<String>,
}

/// How replay treats the files.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    pub mode: RecoveryMode,
    /// Read-only: never truncate, remove or rename; a torn tail (a writer
    /// may be mid-append) just ends the replay.
    pub readonly: bool,
    /// Ops with LSN up to this are in the snapshot: checked, not applied.
    pub after_lsn: u64,
}

/// Whether a valid record with an LSN at or after `next_lsn` starts anywhere
/// after `offset` (then the damage at `offset` is not a torn tail).
fn valid_record_after(bytes: &[u8], offset: usize, next_lsn: u64) -> bool {
    let last_start = bytes.len().saturating_sub(RECORD_HEADER);
    (offset + 1..=last_start).any(|pos| {
        let lsn = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().expect("8 bytes"));
        // Cheap filter before the checksum: a plausible LSN.
        lsn >= next_lsn && lsn - next_lsn < 1 << 32 && record::parse(bytes, pos).is_ok()
    })
}

struct Group {
    lsn: u64,
    kind: u8,
    offset: usize,
    payload: Vec<u8>,
}

/// Replays the segments in `dir` in LSN order, calling `apply(lsn, kind,
/// payload)` for each complete op after `options.after_lsn`. An error from
/// `apply` is reported as corruption at that record.
pub fn replay(
    storage: &dyn Storage,
    dir: &Path,
    options: ReplayOptions,
    mut apply: impl FnMut(u64, u8, &[u8]) -> Result<(), String>,
) -> Result<ReplayStats, EngineError> {
    let segments = list_segments(storage, dir)?;
    let mut stats = ReplayStats {
        last_lsn: options.after_lsn,
        ..ReplayStats::default()
    };
    let mut next_lsn: Option<u64> = None;
    for (index, (name_lsn, name)) in segments.iter().enumerate() {
        let path = dir.join(name);
        let is_last = index + 1 == segments.len();
        let corrupt = |offset: usize, lsn: Option<u64>, reason: String| EngineError::Corruption {
            file: path.display().to_string(),
            offset: offset as u64,
            lsn,
            reason,
        };
        let bytes = storage
            .read(&path)
            .map_err(|e| EngineError::io("reading log segment", &path, &e))?;
        let first_lsn = match record::parse_segment_header(&bytes) {
            Ok(lsn) => lsn,
            Err(HeaderProblem::Version(v)) => {
                return Err(EngineError::Format {
                    file: path.display().to_string(),
                    reason: format!(
                        "log format version {v}; this metricstore reads version {}",
                        record::FORMAT_VERSION
                    ),
                });
            }
            Err(problem) => {
                let reason = match problem {
                    HeaderProblem::Short => "segment header cut short".to_owned(),
                    HeaderProblem::Bad(why) => why,
                    HeaderProblem::Version(_) => unreachable!("handled above"),
                };
                // A segment whose header never fully reached the disk holds
                // no acknowledged record: a torn tail if it is the last one.
                if is_last && bytes.len() <= SEGMENT_HEADER && options.mode != RecoveryMode::Strict
                {
                    stats.torn = Some(Damage {
                        file: path.display().to_string(),
                        offset: 0,
                        bytes: bytes.len() as u64,
                        reason,
                    });
                    if !options.readonly {
                        storage
                            .remove(&path)
                            .and_then(|()| storage.sync_dir(dir))
                            .map_err(|e| EngineError::io("removing torn segment", &path, &e))?;
                    }
                    break;
                }
                return Err(corrupt(0, None, reason));
            }
        };
        if first_lsn != *name_lsn {
            return Err(corrupt(
                0,
                Some(first_lsn),
                format!("header says first LSN {first_lsn} but the file name says {name_lsn}"),
            ));
        }
        match next_lsn {
            Some(expected) if first_lsn != expected => {
                return Err(corrupt(
                    0,
                    Some(first_lsn),
                    format!(
                        "segment starts at LSN {first_lsn}, but LSN {expected} was next: a segment is missing"
                    ),
                ));
            }
            None if first_lsn > options.after_lsn + 1 => {
                return Err(corrupt(
                    0,
                    Some(first_lsn),
                    format!(
                        "the log starts at LSN {first_lsn}, but the snapshot covers only up to LSN {}",
                        options.after_lsn
                    ),
                ));
            }
            _ => {}
        }
        stats.segments += 1;
        let mut next = first_lsn;
        let mut offset = SEGMENT_HEADER;
        let mut group: Option<Group> = None;
        let mut damage: Option<(usize, String)> = None;
        while offset < bytes.len() {
            let rec = match record::parse(&bytes, offset) {
                Ok(rec) => rec,
                Err(problem) => {
                    damage = Some((offset, problem.to_string()));
                    break;
                }
            };
            let expected = group.as_ref().map_or(next, |g| g.lsn);
            if rec.lsn != expected {
                return Err(corrupt(
                    offset,
                    Some(rec.lsn),
                    format!("LSN {} where LSN {expected} was expected", rec.lsn),
                ));
            }
            let complete = match (rec.fragment, group.take()) {
                (Fragment::Full, None) => Some((rec.kind, rec.payload.to_vec(), offset)),
                (Fragment::First, None) => {
                    group = Some(Group {
                        lsn: rec.lsn,
                        kind: rec.kind,
                        offset,
                        payload: rec.payload.to_vec(),
                    });
                    None
                }
                (Fragment::Middle | Fragment::Last, Some(mut g)) if g.kind == rec.kind => {
                    g.payload.extend_from_slice(rec.payload);
                    if rec.fragment == Fragment::Last {
                        Some((g.kind, g.payload, g.offset))
                    } else {
                        group = Some(g);
                        None
                    }
                }
                (fragment, _) => {
                    return Err(corrupt(
                        offset,
                        Some(rec.lsn),
                        format!("{fragment:?} fragment out of order"),
                    ));
                }
            };
            if let Some((kind, payload, start)) = complete {
                if rec.lsn > options.after_lsn {
                    apply(rec.lsn, kind, &payload)
                        .map_err(|reason| corrupt(start, Some(rec.lsn), reason))?;
                    stats.records += 1;
                    stats.bytes += (rec.end - start) as u64;
                }
                stats.last_lsn = stats.last_lsn.max(rec.lsn);
                next = rec.lsn + 1;
            }
            offset = rec.end;
        }
        if damage.is_none()
            && let Some(g) = group
        {
            damage = Some((
                g.offset,
                "an op's fragments end before its LAST fragment".to_owned(),
            ));
        }
        next_lsn = Some(next);
        let Some((at, reason)) = damage else {
            continue;
        };
        let found = Damage {
            file: path.display().to_string(),
            offset: at as u64,
            bytes: (bytes.len() - at) as u64,
            reason: reason.clone(),
        };
        let torn = is_last && !valid_record_after(&bytes, at, next);
        match options.mode {
            RecoveryMode::PointInTime => {
                if !options.readonly {
                    cut(storage, &path, at)?;
                    for (_, later) in &segments[index + 1..] {
                        let from = dir.join(later);
                        let to = dir.join(format!("{later}.broken"));
                        storage
                            .rename(&from, &to)
                            .map_err(|e| EngineError::io("setting aside", &from, &e))?;
                        stats.set_aside.push(to.display().to_string());
                    }
                    storage
                        .sync_dir(dir)
                        .map_err(|e| EngineError::io("syncing directory", dir, &e))?;
                }
                stats.stopped = Some(found);
                break;
            }
            RecoveryMode::TolerateTail if torn => {
                if !options.readonly {
                    cut(storage, &path, at)?;
                }
                stats.torn = Some(found);
            }
            RecoveryMode::Strict if torn && options.readonly => stats.torn = Some(found),
            _ => {
                let lsn = (!torn).then_some(next);
                return Err(corrupt(
                    at,
                    lsn,
                    if torn {
                        format!("{reason} (a torn tail; strict recovery refuses it)")
                    } else {
                        format!("{reason}, and valid records follow it")
                    },
                ));
            }
        }
    }
    Ok(stats)
}

fn cut(storage: &dyn Storage, path: &Path, at: usize) -> Result<(), EngineError> {
    storage
        .truncate(path, at as u64)
        .map_err(|e| EngineError::io("truncating torn log tail", path, &e))
}
