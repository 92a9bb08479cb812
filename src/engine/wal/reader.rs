//! Replaying the log, and telling a torn tail from corruption.
//!
//! A damaged record counts as a torn tail (an append cut short by a crash)
//! only if it is in the last segment and no valid record follows it. Damage
//! anywhere else, an LSN that does not follow its predecessor, or a missing
//! segment is corruption: recovery stops with an error naming the file, the
//! offset and the LSN, and changes nothing.
//!
//! Replay reports the bytes it reads to a [`Tracker`] and stops with
//! [`EngineError::Cancelled`] when asked, but only before it changes a
//! file: every cut, removal or rename is preceded by
//! [`Tracker::begin_changes`].

use std::borrow::Cow;
use std::path::Path;

use super::list_segments;
use super::record::{self, Fragment, HeaderProblem, RECORD_HEADER, SEGMENT_HEADER};
use crate::engine::error::EngineError;
use crate::engine::storage::Storage;
use crate::engine::storage::progress::{PROGRESS_STEP, Tracker};

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

/// What opening a store found and did. Replay fills the log fields; the
/// opener adds the snapshot fields and the time taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// The snapshot recovery started from, and the LSN it covers.
    pub snapshot: Option<String>,
    pub snapshot_lsn: u64,
    /// Snapshots that could not be used (newest first), and why.
    pub skipped_snapshots: Vec<(String, String)>,
    /// Log segments read.
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
    pub seconds: f64,
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
pub(crate) fn valid_record_after(bytes: &[u8], offset: usize, next_lsn: u64) -> bool {
    let last_start = bytes.len().saturating_sub(RECORD_HEADER);
    (offset + 1..=last_start).any(|pos| {
        let lsn = u64::from_le_bytes(bytes[pos + 8..pos + 16].try_into().expect("8 bytes"));
        // Cheap filter before the checksum: a plausible LSN.
        lsn >= next_lsn && lsn - next_lsn < 1 << 32 && record::parse(bytes, pos).is_ok()
    })
}

/// Index of the segment holding LSN `after_lsn + 1` (the first one replay
/// needs), given segments as (first LSN, name) in order.
pub fn first_needed_segment(segments: &[(u64, String)], after_lsn: u64) -> usize {
    segments
        .iter()
        .rposition(|(first, _)| *first <= after_lsn + 1)
        .unwrap_or(0)
}

/// The bytes of the log segments in `dir` that replay after `after_lsn`
/// reads (an estimate for progress: a file that cannot be measured counts
/// as empty, and replay reports the real error).
pub fn log_bytes(storage: &dyn Storage, dir: &Path, after_lsn: u64) -> u64 {
    let Ok(segments) = list_segments(storage, dir) else {
        return 0;
    };
    let first = first_needed_segment(&segments, after_lsn);
    segments[first..]
        .iter()
        .map(|(_, name)| storage.size(&dir.join(name)).unwrap_or(0))
        .sum()
}

struct Group {
    lsn: u64,
    kind: u8,
    offset: usize,
    payload: Vec<u8>,
}

/// Replays the segments in `dir` in LSN order, calling `apply(lsn, kind,
/// payload)` for each complete op after `options.after_lsn`. An error from
/// `apply` is reported as corruption at that record. Each segment read
/// counts its whole length as done in `progress`.
pub fn replay(
    storage: &dyn Storage,
    dir: &Path,
    options: ReplayOptions,
    progress: Tracker<'_>,
    mut apply: impl FnMut(u64, u8, &[u8]) -> Result<(), String>,
) -> Result<RecoveryReport, EngineError> {
    let mut segments = list_segments(storage, dir)?;
    // Segments whose records the snapshot covers are not read (they are
    // kept only as the older snapshot's fallback): start at the last one
    // whose first LSN is at most the first LSN needed.
    let skip = first_needed_segment(&segments, options.after_lsn);
    segments.drain(..skip);
    let mut stats = RecoveryReport {
        last_lsn: options.after_lsn,
        ..RecoveryReport::default()
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
        progress.check()?;
        let bytes = storage
            .read(&path)
            .map_err(|e| EngineError::io("reading log segment", &path, &e))?;
        let first_lsn = match record::parse_segment_header(&bytes) {
            Ok(lsn) => lsn,
            Err(HeaderProblem::Version(v)) => {
                return Err(EngineError::Format {
                    file: path.display().to_string(),
                    reason: format!(
                        "log format version {v}; this metricstore reads versions {} to {}",
                        record::OLDEST_VERSION,
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
                    progress.advance(bytes.len() as u64)?;
                    if !options.readonly {
                        progress.begin_changes()?;
                        storage
                            .remove(&path)
                            .and_then(|()| storage.sync_dir(dir))
                            .map_err(|e| EngineError::io("removing torn segment", &path, &e))?;
                    }
                    break;
                }
                if options.mode == RecoveryMode::PointInTime {
                    stop_here(
                        storage,
                        dir,
                        &segments[index..],
                        options,
                        progress,
                        &mut stats,
                        reason,
                    )?;
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
        let gap = match next_lsn {
            Some(expected) if first_lsn != expected => Some(format!(
                "segment starts at LSN {first_lsn}, but LSN {expected} was next: a segment is missing"
            )),
            None if first_lsn > options.after_lsn + 1 => Some(format!(
                "the log starts at LSN {first_lsn}, but the snapshot covers only up to LSN {}",
                options.after_lsn
            )),
            _ => None,
        };
        if let Some(reason) = gap {
            if options.mode == RecoveryMode::PointInTime {
                stop_here(
                    storage,
                    dir,
                    &segments[index..],
                    options,
                    progress,
                    &mut stats,
                    reason,
                )?;
                break;
            }
            return Err(corrupt(0, Some(first_lsn), reason));
        }
        stats.segments += 1;
        let mut next = first_lsn;
        let mut offset = SEGMENT_HEADER;
        // Bytes of this segment counted in `progress` so far.
        let mut counted = 0;
        let mut group: Option<Group> = None;
        // (where the damage starts, where to look for valid data after it, why)
        let mut damage: Option<(usize, usize, String)> = None;
        while offset < bytes.len() {
            let rec = match record::parse(&bytes, offset) {
                Ok(rec) => rec,
                Err(problem) => {
                    // Inside an op's fragments the whole op goes: the cut is
                    // at its FIRST fragment; later data is searched for
                    // from the failure on.
                    let start = group.as_ref().map_or(offset, |g| g.offset);
                    damage = Some((start, offset, problem.to_string()));
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
                (Fragment::Full, None) => Some((rec.kind, Cow::Borrowed(rec.payload), offset)),
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
                        Some((g.kind, Cow::Owned(g.payload), g.offset))
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
            if offset - counted >= PROGRESS_STEP {
                progress.advance((offset - counted) as u64)?;
                counted = offset;
            }
        }
        // The rest of the segment (its last records, any damage) is read
        // too; the last chance to cancel before a cut below.
        progress.advance((bytes.len() - counted) as u64)?;
        if damage.is_none()
            && let Some(g) = group
        {
            damage = Some((
                g.offset,
                bytes.len(),
                "an op's fragments end before its LAST fragment".to_owned(),
            ));
        }
        next_lsn = Some(next);
        let Some((at, search_from, reason)) = damage else {
            continue;
        };
        let found = Damage {
            file: path.display().to_string(),
            offset: at as u64,
            bytes: (bytes.len() - at) as u64,
            reason: reason.clone(),
        };
        let torn = is_last && !valid_record_after(&bytes, search_from, next);
        match options.mode {
            RecoveryMode::PointInTime => {
                let rest = &segments[index + 1..];
                progress.skip_files(storage, dir, rest.iter().map(|(_, name)| name))?;
                if !options.readonly {
                    progress.begin_changes()?;
                    // Later segments are set aside before the damaged one is
                    // cut, so a crash in between leaves no gap: running
                    // recovery again finds the same damage at the end.
                    set_aside(storage, dir, rest, &mut stats)?;
                    cut(storage, &path, at)?;
                }
                stats.stopped = Some(found);
                break;
            }
            RecoveryMode::TolerateTail if torn => {
                if !options.readonly {
                    progress.begin_changes()?;
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

/// Point-in-time recovery stopping before `rest[0]` (a damaged header or a
/// gap): reports it and, unless read-only, sets `rest` aside.
fn stop_here(
    storage: &dyn Storage,
    dir: &Path,
    rest: &[(u64, String)],
    options: ReplayOptions,
    progress: Tracker<'_>,
    stats: &mut RecoveryReport,
    reason: String,
) -> Result<(), EngineError> {
    let path = dir.join(&rest[0].1);
    let bytes = storage
        .read(&path)
        .map(|b| b.len() as u64)
        .map_err(|e| EngineError::io("reading log segment", &path, &e))?;
    stats.stopped = Some(Damage {
        file: path.display().to_string(),
        offset: 0,
        bytes,
        reason,
    });
    progress.skip_files(storage, dir, rest.iter().map(|(_, name)| name))?;
    if !options.readonly {
        progress.begin_changes()?;
        set_aside(storage, dir, rest, stats)?;
    }
    Ok(())
}

/// Point-in-time recovery: renames `segments` to `*.broken` and syncs the
/// directory, recording them in `stats`.
fn set_aside(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[(u64, String)],
    stats: &mut RecoveryReport,
) -> Result<(), EngineError> {
    for (_, name) in segments {
        let from = dir.join(name);
        let to = dir.join(format!("{name}.broken"));
        storage
            .rename(&from, &to)
            .map_err(|e| EngineError::io("setting aside", &from, &e))?;
        stats.set_aside.push(to.display().to_string());
    }
    storage
        .sync_dir(dir)
        .map_err(|e| EngineError::io("syncing directory", dir, &e))
}

fn cut(storage: &dyn Storage, path: &Path, at: usize) -> Result<(), EngineError> {
    storage
        .truncate(path, at as u64)
        .map_err(|e| EngineError::io("truncating torn log tail", path, &e))
}
