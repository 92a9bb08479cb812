//! Snapshots: the whole store in one file, so recovery replays only the log
//! written after it, and older log segments can be deleted.
//!
//! A snapshot is fuzzy, and exact after replay. Under the sequencer (the
//! only time writers wait) a checkpoint notes the last applied LSN `L`,
//! finishes the log segment so older segments hold only records up to `L`,
//! and copies the catalog. Then it copies each series under that series'
//! own lock, while writers go on; a copy may include writes after `L`.
//! Every op only overwrites slots, so replaying the log from `L + 1` over
//! such a copy gives exactly the live state.
//!
//! Files are written as `snapshot-<L>.snap.tmp`, synced, renamed, and the
//! directory synced. The newest two snapshots are kept; a log segment is
//! deleted only when the older kept snapshot covers all its records, so a
//! damaged newest snapshot falls back to the older one plus the log.
//! Layout: docs/format.md.
//!
//! This module owns the format (write a store's series, load them back);
//! the checkpoint that decides when, and what a snapshot makes unneeded,
//! is `durable/checkpoint.rs`.
//!
//! Uses: `storage/`, `store/`, `memory/`, `model/`.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use rayon::prelude::*;

use super::bytes::{ByteReader, put_str};
use super::error::EngineError;
use crate::engine::memory::chunks::CHUNK_BYTES;
use crate::engine::memory::series::SeriesData;
use crate::engine::model::metric::{Aggregation, MetricDef};
use crate::engine::storage::progress::{Cancelled, Tracker};
use crate::engine::storage::{ImmutableBytes, Storage, crash_point};
use crate::engine::store::Store;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"MSSNAPSH";
pub const SNAPSHOT_VERSION: u32 = 1;
const HEADER: usize = 32;
const BLOCK_HEADER: usize = 12;
/// Series are packed into blocks of about this size, each with its CRC.
const BLOCK_TARGET: usize = 4 << 20;
const BLOCK_CATALOG: u8 = 1;
const BLOCK_SERIES: u8 = 2;
const BLOCK_END: u8 = 3;

pub fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

/// The snapshots in `dir` as (LSN, file name), newest first.
pub fn list_snapshots(
    storage: &dyn Storage,
    dir: &Path,
) -> Result<Vec<(u64, String)>, EngineError> {
    let mut found: Vec<(u64, String)> = storage
        .list(dir)
        .map_err(|e| EngineError::io("listing", dir, &e))?
        .into_iter()
        .filter_map(|name| parse_snapshot_name(&name).map(|lsn| (lsn, name)))
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    Ok(found)
}

/// A block found in a snapshot: (kind, offset, payload start, payload end).
type BlockAt = (u8, usize, usize, usize);

/// Why a snapshot was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadError {
    /// The snapshot cannot be used (damaged, or another version or unit);
    /// the reason. Recovery falls back to an older snapshot.
    Unusable(String),
    /// The open was cancelled while loading.
    Cancelled,
    /// A newer metricstore wrote the snapshot (the reason says which
    /// version). Recovery stops rather than fall back: the older snapshot
    /// and the log may not hold what the newer one does.
    Newer(String),
}

impl From<String> for LoadError {
    fn from(reason: String) -> LoadError {
        LoadError::Unusable(reason)
    }
}

impl From<Cancelled> for LoadError {
    fn from(_: Cancelled) -> LoadError {
        LoadError::Cancelled
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unusable(reason) => f.write_str(reason),
            LoadError::Cancelled => f.write_str("loading was cancelled"),
            LoadError::Newer(reason) => f.write_str(reason),
        }
    }
}

/// The format version of a snapshot with an intact header, if it is newer
/// than this build reads.
fn newer_version(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < HEADER || bytes[..8] != SNAPSHOT_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&bytes[..28]) {
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    (version > SNAPSHOT_VERSION).then_some(version)
}

/// A block header: `len u32 | crc u32 | kind u8 | 3 zero bytes`, the CRC
/// over the length, kind, padding and `payload`.
fn block_header(kind: u8, payload: &[u8]) -> [u8; BLOCK_HEADER] {
    let mut head = [0u8; BLOCK_HEADER];
    head[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[8] = kind;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[0..4]);
    hasher.update(&head[8..12]);
    hasher.update(payload);
    head[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    head
}

/// Splits the series into runs of consecutive ids of about
/// [`BLOCK_TARGET`] bytes each (by their size now; they may grow).
fn group_series(data: &[Arc<RwLock<SeriesData>>]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (id, series) in data.iter().enumerate() {
        bytes += 8 + series.read().chunk_count() * (8 + CHUNK_BYTES);
        if bytes >= BLOCK_TARGET {
            groups.push(start..id + 1);
            (start, bytes) = (id + 1, 0);
        }
    }
    if start < data.len() {
        groups.push(start..data.len());
    }
    groups
}

/// One whole series block (header included) holding `series`, whose first
/// id is `first_id`.
fn encode_series_block(series: &[Arc<RwLock<SeriesData>>], first_id: usize) -> Vec<u8> {
    let mut block = vec![0; BLOCK_HEADER];
    for (i, data) in series.iter().enumerate() {
        block.extend_from_slice(&((first_id + i) as u32).to_le_bytes());
        data.read().encode_chunks(&mut block);
    }
    let head = block_header(BLOCK_SERIES, &block[BLOCK_HEADER..]);
    block[..BLOCK_HEADER].copy_from_slice(&head);
    block
}

/// Writes a snapshot file: the header, then blocks as they fill.
struct BlockWriter<'a> {
    #[cfg_attr(not(any(test, feature = "crash-points")), allow(dead_code))]
    storage: &'a dyn Storage,
    file: Box<dyn crate::engine::storage::StorageFile>,
    path: &'a Path,
    blocks: u64,
    bytes: u64,
}

impl BlockWriter<'_> {
    /// Appends a block: its header, then the payload as it is (no copy).
    fn block(&mut self, kind: u8, payload: &[u8]) -> Result<(), EngineError> {
        self.raw(&block_header(kind, payload))?;
        self.raw(payload)?;
        self.blocks += 1;
        crash_point!(self.storage, SNAPSHOT_BLOCK);
        Ok(())
    }

    /// Appends whole blocks (header and payload), then starts their
    /// writeback.
    fn encoded_blocks(&mut self, blocks: &[Vec<u8>]) -> Result<(), EngineError> {
        for block in blocks {
            self.raw(block)?;
            self.blocks += 1;
            crash_point!(self.storage, SNAPSHOT_BLOCK);
        }
        self.file
            .start_writeback()
            .map_err(|e| EngineError::io("writing snapshot", self.path, &e))
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.file
            .append(bytes)
            .map_err(|e| EngineError::io("writing snapshot", self.path, &e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

impl Store {
    /// Writes a snapshot of `lsn` (the catalog's `metrics` and `paths`,
    /// the series `data`) to `temp` and syncs it; returns its size.
    pub(crate) fn write_snapshot(
        &self,
        storage: &dyn Storage,
        temp: &Path,
        lsn: u64,
        metrics: &[MetricDef],
        paths: &[(u32, Vec<String>)],
        data: &[Arc<RwLock<SeriesData>>],
    ) -> Result<u64, EngineError> {
        let file = storage
            .create(temp)
            .map_err(|e| EngineError::io("creating snapshot", temp, &e))?;
        let mut out = BlockWriter {
            storage,
            file,
            path: temp,
            blocks: 0,
            bytes: 0,
        };
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(&SNAPSHOT_MAGIC);
        header.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        header.extend_from_slice(&[self.unit().code(), 0, 0, 0]);
        header.extend_from_slice(&lsn.to_le_bytes());
        header.extend_from_slice(&(paths.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        out.raw(&header)?;

        let mut catalog = Vec::new();
        catalog.extend_from_slice(&(metrics.len() as u32).to_le_bytes());
        for def in metrics {
            put_str(&mut catalog, &def.name);
            catalog.extend_from_slice(&def.frequency.to_le_bytes());
            catalog.push(def.aggregation.code());
        }
        catalog.extend_from_slice(&(paths.len() as u32).to_le_bytes());
        for (metric, path) in paths {
            catalog.extend_from_slice(&metric.to_le_bytes());
            catalog.push(path.len() as u8);
            for name in path {
                put_str(&mut catalog, name);
            }
        }
        out.block(BLOCK_CATALOG, &catalog)?;

        // Series blocks: `series u32 | chunk count u32 | (key i64, slots)*`,
        // each series copied under its own read lock. The blocks are encoded
        // on all cores a wave at a time while the previous wave is written,
        // and the kernel is asked to start writing each wave back at once so
        // the final sync has little left to do.
        let groups = group_series(data);
        let pool = super::parallel::pool();
        let wave = 2 * pool.current_num_threads().max(1);
        let encode = |wave: &[Range<usize>]| -> Vec<Vec<u8>> {
            wave.par_iter()
                .map(|ids| encode_series_block(&data[ids.clone()], ids.start))
                .collect()
        };
        pool.install(|| {
            let mut waves = groups.chunks(wave);
            let mut pending = waves.next().map(encode).unwrap_or_default();
            for next in waves {
                let (encoded, written) =
                    rayon::join(|| encode(next), || out.encoded_blocks(&pending));
                written?;
                pending = encoded;
            }
            out.encoded_blocks(&pending)
        })?;
        let end = (out.blocks + 1).to_le_bytes();
        out.block(BLOCK_END, &end)?;
        out.file
            .sync_data()
            .map_err(|e| EngineError::io("syncing snapshot", temp, &e))?;
        Ok(out.bytes)
    }

    /// Fills an empty store from snapshot bytes; returns the LSN it covers.
    /// The error says why the snapshot cannot be used, or that `progress`
    /// was cancelled. Every byte of the file counts as done in `progress`
    /// once loaded: the header and catalog first, then each series block.
    pub(crate) fn load_snapshot(
        &mut self,
        file: &dyn ImmutableBytes,
        progress: Tracker<'_>,
    ) -> Result<u64, LoadError> {
        let bytes: &[u8] = file;
        if let Some(version) = newer_version(bytes) {
            return Err(LoadError::Newer(format!(
                "snapshot format version {version} was written by a newer metricstore; \
                 this one reads version {SNAPSHOT_VERSION}: upgrade metricstore to open it"
            )));
        }
        let (lsn, series_count, blocks) = self.load_snapshot_catalog(bytes)?;
        progress.advance(blocks.first().map_or(0, |&(_, _, _, end)| end) as u64)?;
        let series_blocks = &blocks[1..blocks.len() - 1];
        let this: &Store = self;
        super::parallel::pool().install(|| {
            series_blocks
                .par_iter()
                .try_for_each(|&(_, at, start, end)| -> Result<(), LoadError> {
                    progress.check()?;
                    check_block(bytes, at)?;
                    this.load_series(&bytes[start..end])?;
                    // Copied into chunks: a mapped file need not stay
                    // resident next to them (it would double the peak).
                    file.release(at..end);
                    progress.advance((end - at) as u64)?;
                    Ok(())
                })
        })?;
        if self.catalog.read().series_count() != series_count as usize {
            return Err("series count differs from the header".to_owned().into());
        }
        let end_block = blocks.last().map_or(0, |&(_, at, _, _)| at);
        progress.advance((bytes.len() - end_block) as u64)?;
        Ok(lsn)
    }

    /// Checks a snapshot's header, finds its blocks (checking the end block)
    /// and loads its catalog: (LSN, series count, blocks), the catalog
    /// block first and the end block last.
    fn load_snapshot_catalog(&mut self, bytes: &[u8]) -> Result<(u64, u32, Vec<BlockAt>), String> {
        if bytes.len() < HEADER || bytes[..8] != SNAPSHOT_MAGIC {
            return Err("not a snapshot (no magic)".to_owned());
        }
        let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&bytes[..28]) {
            return Err("snapshot header checksum mismatch".to_owned());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != SNAPSHOT_VERSION {
            return Err(format!(
                "snapshot format version {version}; this metricstore reads {SNAPSHOT_VERSION}"
            ));
        }
        if bytes[12] != self.unit().code() {
            return Err("snapshot time unit differs from the STORE file".to_owned());
        }
        let lsn = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let series_count = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        // Find the blocks (headers only); the series blocks are checked and
        // decoded by the caller, on all cores, as they are independent.
        let mut blocks = Vec::new();
        let mut offset = HEADER;
        while offset < bytes.len() {
            let (kind, start, end) = block_bounds(bytes, offset)?;
            blocks.push((kind, offset, start, end));
            offset = end;
            if kind == BLOCK_END {
                break;
            }
        }
        if offset != bytes.len() {
            return Err(format!("bytes after the end block at offset {offset}"));
        }
        let Some(&(BLOCK_END, end_at, end_start, end_end)) = blocks.last() else {
            return Err("the snapshot ends before its end block (incomplete file)".to_owned());
        };
        check_block(bytes, end_at)?;
        let count = u64::from_le_bytes(
            bytes[end_start..end_end]
                .try_into()
                .map_err(|_| "end block of the wrong size".to_owned())?,
        );
        if count != blocks.len() as u64 {
            return Err(format!(
                "end block counts {count} blocks, found {}",
                blocks.len()
            ));
        }
        match blocks.first() {
            Some(&(BLOCK_CATALOG, at, start, end)) => {
                check_block(bytes, at)?;
                self.load_catalog(&bytes[start..end])?;
            }
            _ => return Err("the first block is not the catalog".to_owned()),
        }
        let series_blocks = &blocks[1..blocks.len() - 1];
        if let Some(&(kind, at, _, _)) = series_blocks.iter().find(|b| b.0 != BLOCK_SERIES) {
            return Err(format!("unexpected block kind {kind} at offset {at}"));
        }
        Ok((lsn, series_count, blocks))
    }

    fn load_catalog(&mut self, payload: &[u8]) -> Result<(), String> {
        let mut r = ByteReader::new(payload);
        let metric_count = r.u32()?;
        for _ in 0..metric_count {
            let name = r.string()?;
            let frequency = r.i64()?;
            let code = r.u8()?;
            let aggregation = Aggregation::from_code(code)
                .ok_or_else(|| format!("unknown aggregation code {code}"))?;
            self.catalog.get_mut().define_metric(MetricDef {
                name,
                frequency,
                aggregation,
            });
        }
        let series_count = r.u32()?;
        for expected in 0..series_count {
            let metric = r.u32()?;
            if metric >= metric_count {
                return Err(format!(
                    "series {expected} names metric {metric}, which does not exist"
                ));
            }
            let depth = r.u8()? as usize;
            let path = (0..depth)
                .map(|_| r.string())
                .collect::<Result<Vec<_>, _>>()?;
            let catalog = self.catalog.get_mut();
            if catalog.find_series(metric, &path).is_some() {
                return Err(format!("series {expected} appears twice"));
            }
            catalog.create_series(metric, &path);
        }
        r.finish("the catalog block")
    }

    fn load_series(&self, payload: &[u8]) -> Result<(), String> {
        let pool = &self.pool;
        let catalog = self.catalog.read();
        let mut r = ByteReader::new(payload);
        while !r.bytes.is_empty() {
            let id = r.u32()?;
            let entry = catalog
                .entry(id)
                .ok_or_else(|| format!("data for series {id}, which the catalog lacks"))?;
            let mut data = entry.data.write();
            let chunks = r.u32()?;
            for _ in 0..chunks {
                let key = r.i64()?;
                data.load_chunk(pool, key, r.take(CHUNK_BYTES)?);
            }
        }
        Ok(())
    }
}

/// The block at `offset`: (kind, payload start, payload end), with its
/// length checked against the file but its CRC not yet checked.
fn block_bounds(bytes: &[u8], offset: usize) -> Result<(u8, usize, usize), String> {
    let head = bytes
        .get(offset..offset + BLOCK_HEADER)
        .ok_or_else(|| format!("block header cut short at offset {offset}"))?;
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let start = offset + BLOCK_HEADER;
    if bytes.len() - start < len {
        return Err(format!(
            "block at offset {offset} runs past the end of the file"
        ));
    }
    Ok((head[8], start, start + len))
}

/// Checks the CRC of the block at `offset` (bounds already checked).
fn check_block(bytes: &[u8], offset: usize) -> Result<(), String> {
    let head = &bytes[offset..offset + BLOCK_HEADER];
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let payload = &bytes[offset + BLOCK_HEADER..offset + BLOCK_HEADER + len];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[0..4]);
    hasher.update(&head[8..12]);
    hasher.update(payload);
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if crc != hasher.finalize() {
        return Err(format!("block checksum mismatch at offset {offset}"));
    }
    Ok(())
}
