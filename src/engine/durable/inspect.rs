//! Looking at a store directory without changing it: what `python -m
//! metricstore inspect` prints and `verify` judges.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::engine::error::EngineError;
use crate::engine::model::time::TimeUnit;
use crate::engine::snapshot::list_snapshots;
use crate::engine::storage::Storage;
use crate::engine::storage::progress::Tracker;
use crate::engine::store::Store;
use crate::engine::wal::list_segments;
use crate::engine::wal::reader::{first_needed_segment, valid_record_after};
use crate::engine::wal::record::{self, Fragment, SEGMENT_HEADER};

/// One log segment as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub file: String,
    /// The first LSN its name announces.
    pub first_lsn: u64,
    /// Whether recovery reads it (otherwise the newest usable snapshot
    /// covers all its records and it is kept only as a fallback).
    pub needed: bool,
    pub bytes: u64,
    /// LSNs of the first and last complete op (None if it holds none).
    pub lsns: Option<(u64, u64)>,
    /// Complete ops by record kind.
    pub ops_by_kind: BTreeMap<u8, u64>,
    /// Where reading stopped before the end of the file, and why.
    pub damage: Option<(u64, String)>,
    /// Whether no valid record follows the damage (in the last segment,
    /// that makes it a torn tail that recovery cuts off).
    pub damage_ends_file: bool,
}

/// One snapshot file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub file: String,
    pub bytes: u64,
    pub lsn: u64,
    /// Why it cannot be loaded, if it cannot.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub segments: Vec<SegmentInfo>,
    pub snapshots: Vec<SnapshotInfo>,
    /// Problems between files: LSN gaps, a log that starts after the
    /// newest usable snapshot.
    pub gaps: Vec<String>,
}

impl Inspection {
    /// Whether recovery in the default mode would refuse this directory:
    /// damage in a segment it reads, other than at the end of the last
    /// segment, or a gap.
    pub fn corrupt(&self) -> bool {
        let last = self.segments.len().saturating_sub(1);
        !self.gaps.is_empty()
            || self
                .segments
                .iter()
                .enumerate()
                .any(|(i, s)| s.needed && s.damage.is_some() && !(i == last && s.damage_ends_file))
    }
}

fn scan_segment(file: String, first_lsn: u64, bytes: &[u8]) -> SegmentInfo {
    let mut info = SegmentInfo {
        file,
        first_lsn,
        needed: true,
        damage_ends_file: false,
        bytes: bytes.len() as u64,
        lsns: None,
        ops_by_kind: BTreeMap::new(),
        damage: None,
    };
    if let Err(problem) = record::parse_segment_header(bytes) {
        info.damage = Some((0, format!("segment header: {problem:?}")));
        return info;
    }
    let mut offset = SEGMENT_HEADER;
    while offset < bytes.len() {
        match record::parse(bytes, offset) {
            Ok(rec) => {
                if matches!(rec.fragment, Fragment::Full | Fragment::Last) {
                    *info.ops_by_kind.entry(rec.kind).or_default() += 1;
                    let first = info.lsns.map_or(rec.lsn, |(first, _)| first);
                    info.lsns = Some((first, rec.lsn));
                }
                offset = rec.end;
            }
            Err(problem) => {
                let next = info.lsns.map_or(first_lsn, |(_, last)| last + 1);
                info.damage = Some((offset as u64, problem.to_string()));
                info.damage_ends_file = !valid_record_after(bytes, offset, next);
                break;
            }
        }
    }
    info
}

/// Reads every segment and snapshot in `dir`; changes nothing.
pub fn inspect(
    storage: &dyn Storage,
    dir: &Path,
    unit: TimeUnit,
) -> Result<Inspection, EngineError> {
    let listed = list_segments(storage, dir)?;
    let mut segments = Vec::new();
    for (first_lsn, name) in &listed {
        let path = dir.join(name);
        let bytes = storage
            .read(&path)
            .map_err(|e| EngineError::io("reading", &path, &e))?;
        segments.push(scan_segment(path.display().to_string(), *first_lsn, &bytes));
    }
    let mut snapshots = Vec::new();
    for (lsn, name) in list_snapshots(storage, dir)? {
        let path = dir.join(&name);
        let bytes = storage
            .read(&path)
            .map_err(|e| EngineError::io("reading", &path, &e))?;
        let size = bytes.len() as u64;
        let name = path.display().to_string();
        let problem = Store::new(unit)
            .load_snapshot(Arc::new(bytes), &name, false, Tracker::new(None))
            .err()
            .map(|e| e.to_string());
        snapshots.push(SnapshotInfo {
            file: path.display().to_string(),
            bytes: size,
            lsn,
            problem,
        });
    }
    let mut gaps = Vec::new();
    let covered = snapshots
        .iter()
        .find(|s| s.problem.is_none())
        .map_or(0, |s| s.lsn);
    let first_needed = first_needed_segment(&listed, covered);
    for segment in &mut segments[..first_needed] {
        segment.needed = false;
    }
    if let Some(first) = segments.get(first_needed).map(|s| s.first_lsn)
        && first > covered + 1
    {
        gaps.push(format!(
            "the log starts at LSN {first}, but the newest usable snapshot covers only up to LSN {covered}"
        ));
    }
    for pair in segments[first_needed..].windows(2) {
        if let (Some((_, last)), Some((next, _))) = (pair[0].lsns, pair[1].lsns)
            && next != last + 1
        {
            gaps.push(format!(
                "{} ends at LSN {last} but {} starts at LSN {next}",
                pair[0].file, pair[1].file
            ));
        }
    }
    Ok(Inspection {
        segments,
        snapshots,
        gaps,
    })
}
