//! Snapshots: the whole store in one file, so recovery replays only the log
//! written after it, and older log segments can be deleted.
//!
//! A snapshot is fuzzy, and exact after replay. Under the sequencer (the
//! only time writers wait) a checkpoint notes the last applied LSN `L`,
//! finishes the log segment so older segments hold only records up to `L`,
//! and notes how many series and metrics exist. Then, while writers go on,
//! it copies the catalog of those series (it only grows, so that part is
//! as it was at `L`) and each series under that series' own lock; a copy
//! may include writes after `L`.
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

use super::bytes::{ByteReader, put_str, put_varint};
use super::error::EngineError;
use crate::engine::memory::chunks::{CHUNK_BYTES, CHUNK_SLOTS};
use crate::engine::memory::sealed::{Damage, MappedFile, MappedIndex, MappedSeries, Sealed};
use crate::engine::memory::series::{EncodedChunk, SeriesData};
use crate::engine::model::metric::{Aggregation, MetricDef, put_unit, read_unit};
use crate::engine::parallel::Urgency;
use crate::engine::storage::progress::{Cancelled, Tracker};
use crate::engine::storage::{ImmutableBytes, Storage, crash_point};
use crate::engine::store::Store;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"MSSNAPSH";
/// The version this build writes. Versions 1 (raw chunks), 2 (a
/// fixed-size index), 3 (metrics without units) and 4 (no series
/// directory) are still read.
pub const SNAPSHOT_VERSION: u32 = 5;
/// The first version whose catalog gives each metric's unit.
const FIRST_WITH_UNITS: u32 = 4;
/// The first version with a series directory after the index, so that a
/// read-only open reads each series' index entries on its first use.
const FIRST_WITH_DIRECTORY: u32 = 5;
const HEADER: usize = 32;
const BLOCK_HEADER: usize = 12;
/// Series are packed into blocks of about this size, each with its CRC.
const BLOCK_TARGET: usize = 4 << 20;
const BLOCK_CATALOG: u8 = 1;
/// Version 1: `series u32 | chunk count u32 | (key i64, raw slots)*`.
const BLOCK_SERIES: u8 = 2;
const BLOCK_END: u8 = 3;
/// Version 2: encoded chunks back to back; the index says where each is.
const BLOCK_CHUNKS: u8 = 4;
/// Per series, its chunk count and where each chunk is; version 2 in fixed
/// 28-byte entries, version 3 in varints (see `put_index_series`).
const BLOCK_INDEX: u8 = 5;
/// Version 5: per series, where its index entries are, their CRC, and what
/// they add up to (see `put_directory_entry`).
const BLOCK_DIRECTORY: u8 = 6;
/// A version 2 index entry: key i64, offset u64, len u32, crc u32, valid u32.
const INDEX_ENTRY: usize = 28;
/// The fewest bytes a version 3 index entry takes: four one-byte varints
/// and the CRC.
const INDEX_ENTRY_MIN: usize = 8;
/// What a mapped open reads first: the header and the catalog if it fits.
const HEAD_READ: usize = 64 << 10;
/// What a mapped open of a format 5 snapshot reads before the end block:
/// the series directory if it fits (about 13 bytes a series).
const TAIL_READ: usize = 64 << 10;

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
    snapshot_version(bytes).filter(|&version| version > SNAPSHOT_VERSION)
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
        bytes += series
            .read()
            .chunk_sizes()
            .map(|(_, len)| len)
            .sum::<usize>();
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

/// A chunks block ready to write: the whole block (header included), and
/// each series' chunks in it, offsets relative to the block's start.
struct ChunksBlock {
    block: Vec<u8>,
    chunks: Vec<Vec<EncodedChunk>>,
}

/// One whole chunks block holding the chunks of `series`, each series
/// copied under its own read lock, paced as `urgency` says.
fn encode_chunks_block(series: &[Arc<RwLock<SeriesData>>], urgency: Urgency) -> ChunksBlock {
    let mut block = vec![0; BLOCK_HEADER];
    let mut chunks = Vec::with_capacity(series.len());
    let mut pacer = urgency.pacer();
    for data in series {
        let mut index = Vec::new();
        data.read().encode_chunks(0, &mut block, &mut index);
        chunks.push(index);
        pacer.pace();
    }
    let head = block_header(BLOCK_CHUNKS, &block[BLOCK_HEADER..]);
    block[..BLOCK_HEADER].copy_from_slice(&head);
    ChunksBlock { block, chunks }
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

    /// Appends whole chunks blocks, adds their chunks to `index` with
    /// offsets from the start of the file, then starts their writeback.
    fn chunks_blocks(
        &mut self,
        blocks: &[ChunksBlock],
        index: &mut Index,
    ) -> Result<(), EngineError> {
        for ChunksBlock { block, chunks } in blocks {
            let at = self.bytes;
            self.raw(block)?;
            self.blocks += 1;
            for series in chunks {
                let start = index.entries.len();
                put_index_series(&mut index.entries, at, series);
                put_directory_entry(&mut index.directory, &index.entries[start..], series);
            }
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

/// The index and series directory blocks' payloads, series by series as
/// the chunks blocks are written.
struct Index {
    entries: Vec<u8>,
    directory: Vec<u8>,
}

/// What a snapshot holds: the store as of log record `lsn`, the catalog's
/// `metrics` and series `paths`, and the series' `data` in id order.
pub(crate) struct SnapshotCut<'a> {
    pub lsn: u64,
    pub metrics: &'a [MetricDef],
    pub paths: &'a [(u32, Vec<String>)],
    pub data: &'a [Arc<RwLock<SeriesData>>],
}

impl Store {
    /// Writes a snapshot of `cut` to `temp`, its chunks encoded with the
    /// threads and pace `urgency` gives, and syncs it; returns its size.
    pub(crate) fn write_snapshot(
        &self,
        storage: &dyn Storage,
        temp: &Path,
        cut: &SnapshotCut<'_>,
        urgency: Urgency,
    ) -> Result<u64, EngineError> {
        let &SnapshotCut {
            lsn,
            metrics,
            paths,
            data,
        } = cut;
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
            put_unit(&mut catalog, def.unit.as_deref());
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

        // Chunks blocks: each series' chunks encoded (sealed ones copied as
        // they are), series by series in id order. The blocks are encoded
        // on the pool's threads a wave at a time while the previous wave is written,
        // and the kernel is asked to start writing each wave back at once so
        // the final sync has little left to do. The index follows them.
        let groups = group_series(data);
        let pool = urgency.pool();
        let wave = 2 * pool.current_num_threads().max(1);
        let encode = |wave: &[Range<usize>]| -> Vec<ChunksBlock> {
            wave.par_iter()
                .map(|ids| encode_chunks_block(&data[ids.clone()], urgency))
                .collect()
        };
        let mut index = Index {
            entries: Vec::with_capacity(data.len() * 4),
            directory: Vec::with_capacity(data.len() * 8),
        };
        pool.install(|| {
            let mut waves = groups.chunks(wave);
            let mut pending = waves.next().map(encode).unwrap_or_default();
            for next in waves {
                let (encoded, written) =
                    rayon::join(|| encode(next), || out.chunks_blocks(&pending, &mut index));
                written?;
                pending = encoded;
            }
            out.chunks_blocks(&pending, &mut index)
        })?;
        let index_at = out.bytes;
        out.block(BLOCK_INDEX, &index.entries)?;
        let directory_at = out.bytes;
        out.block(BLOCK_DIRECTORY, &index.directory)?;
        let mut end = (out.blocks + 1).to_le_bytes().to_vec();
        end.extend_from_slice(&index_at.to_le_bytes());
        end.extend_from_slice(&directory_at.to_le_bytes());
        out.block(BLOCK_END, &end)?;
        out.file
            .sync_data()
            .map_err(|e| EngineError::io("syncing snapshot", temp, &e))?;
        Ok(out.bytes)
    }

    /// Fills an empty store from the snapshot `file` (named `name`);
    /// returns the LSN it covers. The error says why the snapshot cannot be
    /// used, or that `progress` was cancelled.
    ///
    /// With `mapped` (read-only stores), a snapshot of format 2 or later is
    /// mapped: only its header, catalog, index (from format 5 its series
    /// directory instead) and end block are read and checked now; each
    /// chunk stays in the file and is checked on its first read.
    /// Otherwise every block and chunk is read and checked, and the chunks
    /// are copied into memory (still compressed). Every byte of the file
    /// counts as done in `progress` once loaded.
    pub(crate) fn load_snapshot(
        &mut self,
        file: Arc<dyn ImmutableBytes>,
        name: &str,
        mapped: bool,
        progress: Tracker<'_>,
    ) -> Result<u64, LoadError> {
        let bytes: &[u8] = &file;
        if let Some(version) = newer_version(bytes) {
            return Err(LoadError::Newer(format!(
                "snapshot format version {version} was written by a newer metricstore; \
                 this one reads version {SNAPSHOT_VERSION}: upgrade metricstore to open it"
            )));
        }
        if let Some(version @ 2..=SNAPSHOT_VERSION) = snapshot_version(bytes).filter(|_| mapped) {
            let lsn = self.map_snapshot(&file, name, version)?;
            progress.advance(bytes.len() as u64)?;
            return Ok(lsn);
        }
        let (version, lsn, series_count, blocks) = self.load_snapshot_catalog(bytes)?;
        progress.advance(blocks.first().map_or(0, |&(_, _, _, end)| end) as u64)?;
        let this: &Store = self;
        // Each block's data is loaded into chunks on all cores, then its
        // bytes are released: a mapped file need not stay resident next to
        // the chunks (it would double the peak).
        let load_block = |&(_, at, start, end): &BlockAt,
                          load: &dyn Fn(&[u8]) -> Result<(), String>|
         -> Result<(), LoadError> {
            progress.check()?;
            check_block(bytes, at)?;
            load(&bytes[start..end])?;
            file.release(at..end);
            progress.advance((end - at) as u64)?;
            Ok(())
        };
        if version == 1 {
            let series_blocks = &blocks[1..blocks.len() - 1];
            crate::engine::parallel::pool().install(|| {
                series_blocks
                    .par_iter()
                    .try_for_each(|block| load_block(block, &|payload| this.load_series(payload)))
            })?;
        } else {
            let after = index_blocks(version);
            let chunk_blocks = &blocks[1..blocks.len() - 1 - after];
            let &(_, index_at, index_start, index_end) = &blocks[blocks.len() - 1 - after];
            check_block(bytes, index_at)?;
            let index_payload = &bytes[index_start..index_end];
            let entries = read_index(index_payload, series_count, version)?;
            let mut read_to = index_end;
            if version >= FIRST_WITH_DIRECTORY {
                let (_, directory_at, start, end) = blocks[blocks.len() - 2];
                check_block(bytes, directory_at)?;
                check_directory(index_payload, &bytes[start..end], series_count)?;
                read_to = end;
            }
            let index = split_by_block(entries, chunk_blocks)?;
            progress.advance((read_to - index_at) as u64)?;
            crate::engine::parallel::pool().install(|| {
                chunk_blocks
                    .par_iter()
                    .zip(index.par_iter())
                    .try_for_each(|(block, entries)| {
                        let base = block.2;
                        load_block(block, &|payload| this.load_chunks(payload, base, entries))
                    })
            })?;
        }
        if self.catalog.read().series_count() != series_count as usize {
            return Err("series count differs from the header".to_owned().into());
        }
        let end_block = blocks.last().map_or(0, |&(_, at, _, _)| at);
        progress.advance((bytes.len() - end_block) as u64)?;
        Ok(lsn)
    }

    /// Loads a format 2 to 5 snapshot without reading its chunks: checks
    /// the header, the end block and the catalog, then hands every series
    /// its chunks as mapped ones (`sealed.rs`); returns the LSN. Up to
    /// format 4 the whole index is read and checked now; from format 5
    /// only the series directory, and each series' index entries are read
    /// and checked on its first use.
    fn map_snapshot(
        &mut self,
        file: &Arc<dyn ImmutableBytes>,
        name: &str,
        version: u32,
    ) -> Result<u64, String> {
        // The structures are copied out with small reads; the chunks stay
        // mapped, each page read when a read first needs it.
        let len = file.len();
        let read = |at: usize, n: usize| {
            file.copy(at..at + n)
                .map_err(|e| format!("reading {n} bytes at offset {at}: {e}"))
        };
        // One read for the header and (most often all of) the catalog: a
        // cold read costs its seek more than its bytes.
        let head = read(0, HEAD_READ.min(len))?;
        let (lsn, series_count) = self.check_header(&head)?;
        let catalog_end = first_block_end(&head)
            .filter(|&end| end <= len)
            .ok_or("the first block runs past the end of the file")?;
        let lazy = version >= FIRST_WITH_DIRECTORY;
        let end_at = len
            .checked_sub(BLOCK_HEADER + if lazy { 24 } else { 16 })
            .filter(|&at| at >= catalog_end)
            .ok_or("the snapshot ends before its end block (incomplete file)")?;
        // From format 5 one read for the directory (most often) and the end
        // block, which follow each other at the end of the file.
        let tail_at = if lazy {
            end_at.saturating_sub(TAIL_READ).max(catalog_end)
        } else {
            end_at
        };
        let tail = read(tail_at, len - tail_at)?;
        let end_block = &tail[end_at - tail_at..];
        let (kind, _, _) = block_bounds(end_block, 0)?;
        if kind != BLOCK_END {
            return Err("the snapshot ends before its end block (incomplete file)".to_owned());
        }
        check_block(end_block, 0)?;
        let end_u64 =
            |at: usize| u64::from_le_bytes(end_block[at..at + 8].try_into().expect("8 bytes"));
        let index_at = usize::try_from(end_u64(20))
            .ok()
            .filter(|&at| at >= catalog_end && at < end_at)
            .ok_or("the end block does not point at the index")?;
        let catalog = match head.get(HEADER..catalog_end) {
            Some(catalog) => catalog.to_vec(),
            None => read(HEADER, catalog_end - HEADER)?,
        };
        let (kind, catalog_start, _) = block_bounds(&catalog, 0)?;
        if kind != BLOCK_CATALOG {
            return Err("the first block is not the catalog".to_owned());
        }
        check_block(&catalog, 0)?;
        self.load_catalog(&catalog[catalog_start..], version)?;
        if self.catalog.read().series_count() != series_count as usize {
            return Err("series count differs from the header".to_owned());
        }
        let (ahead, source) = (Arc::clone(file), Arc::clone(file));
        let mapped_file = Arc::new(MappedFile {
            bytes: Box::new(Shared(Arc::clone(file))),
            name: name.to_owned(),
            will_need: Box::new(move |range| ahead.will_need(range)),
            read_in: Box::new(move |range| {
                // Only the page cache is wanted: the read that follows
                // meets any error again.
                let _ = source.copy(range);
            }),
        });
        if lazy {
            let directory_at = usize::try_from(end_u64(28))
                .ok()
                .filter(|&at| at >= index_at + BLOCK_HEADER && at < end_at)
                .ok_or("the end block does not point at the directory")?;
            let directory = match directory_at.checked_sub(tail_at) {
                Some(at) => tail[at..end_at - tail_at].to_vec(),
                None => read(directory_at, end_at - directory_at)?,
            };
            let lazy = LazyIndex {
                parts: Vec::new(),
                chunks: catalog_end..index_at,
                file: mapped_file,
                source: Arc::clone(file),
            };
            self.map_series_lazily(
                &directory,
                series_count,
                index_at + BLOCK_HEADER..directory_at,
                lazy,
            )?;
            return Ok(lsn);
        }
        let index = read(index_at, end_at - index_at)?;
        let (kind, index_start, index_end) = block_bounds(&index, 0)?;
        if kind != BLOCK_INDEX || index_end != index.len() {
            return Err("the end block does not point at the index".to_owned());
        }
        check_block(&index, 0)?;
        let index = Arc::new(SnapshotIndex {
            bytes: index,
            version,
            file: mapped_file,
        });
        // One pass over the index checks every entry and hands each series
        // where its entries are; its chunks are made on its first use.
        let shared: Arc<dyn MappedIndex> = index.clone();
        let bytes = &index.bytes[index_start..index_end];
        let catalog = self.catalog.get_mut();
        let mut r = ByteReader::new(bytes);
        // Chunks lie between the catalog and the index, in file order.
        let mut next = catalog_end;
        for id in 0..series_count {
            let at = index_start + (bytes.len() - r.bytes.len());
            let (mut chunk_bytes, mut valid) = (0, 0);
            let count = read_index_series(&mut r, version, id, |entry| {
                next = next_in_chunks(&entry, next, index_at, id)?;
                chunk_bytes += entry.len;
                valid += entry.valid;
                Ok(())
            })?;
            if count > 0 {
                let series = catalog.entry(id).ok_or_else(|| format!("no series {id}"))?;
                let mapped = MappedSeries::new(&self.pool, &shared, at, count, chunk_bytes);
                series.data.write().load_mapped(mapped, valid);
            }
        }
        r.finish("the index block")?;
        Ok(lsn)
    }

    /// Hands each series of a format 5 snapshot its chunks from the series
    /// `directory` block (checked here): its index entries lie in `entries`
    /// of the file, one series after another, and `index` reads and checks
    /// them on the series' first use.
    fn map_series_lazily(
        &mut self,
        directory: &[u8],
        series_count: u32,
        entries: Range<usize>,
        mut index: LazyIndex,
    ) -> Result<(), String> {
        let (kind, start, end) = block_bounds(directory, 0)?;
        if kind != BLOCK_DIRECTORY || end != directory.len() {
            return Err("the end block does not point at the directory".to_owned());
        }
        check_block(directory, 0)?;
        let mut r = ByteReader::new(&directory[start..end]);
        let mut listed = Vec::with_capacity(series_count as usize);
        let mut at = entries.start;
        for id in 0..series_count {
            let entry = read_directory_entry(&mut r, id)?;
            listed.push((at, entry));
            at = at
                .checked_add(entry.len)
                .filter(|&end| end <= entries.end)
                .ok_or_else(|| format!("the index entries of series {id} run past the index"))?;
        }
        r.finish("the directory block")?;
        if at != entries.end {
            return Err("the directory does not account for the whole index".to_owned());
        }
        index.parts = listed.iter().map(|&(at, e)| (at, e.len, e.crc)).collect();
        let shared: Arc<dyn MappedIndex> = Arc::new(index);
        let catalog = self.catalog.get_mut();
        for (id, &(_, entry)) in listed.iter().enumerate() {
            if entry.count > 0 {
                let series = catalog
                    .entry(id as u32)
                    .ok_or_else(|| format!("no series {id}"))?;
                let mapped = MappedSeries::new(&self.pool, &shared, id, entry.count, entry.bytes);
                series.data.write().load_mapped(mapped, entry.valid);
            }
        }
        Ok(())
    }

    /// Checks a snapshot's header: (LSN, series count).
    fn check_header(&self, bytes: &[u8]) -> Result<(u64, u32), String> {
        if bytes.len() < HEADER || bytes[..8] != SNAPSHOT_MAGIC {
            return Err("not a snapshot (no magic)".to_owned());
        }
        let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&bytes[..28]) {
            return Err("snapshot header checksum mismatch".to_owned());
        }
        if bytes[12] != self.unit().code() {
            return Err("snapshot time unit differs from the STORE file".to_owned());
        }
        let lsn = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let series_count = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
        Ok((lsn, series_count))
    }

    /// Checks a snapshot's header, finds its blocks (checking the end block)
    /// and loads its catalog: (version, LSN, series count, blocks), the
    /// catalog block first and the end block last.
    fn load_snapshot_catalog(
        &mut self,
        bytes: &[u8],
    ) -> Result<(u32, u64, u32, Vec<BlockAt>), String> {
        let (lsn, series_count) = self.check_header(bytes)?;
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(format!(
                "snapshot format version {version}; this metricstore reads 1 to {SNAPSHOT_VERSION}"
            ));
        }
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
        let end = &bytes[end_start..end_end];
        let end_len = match version {
            1 => 8,
            2..FIRST_WITH_DIRECTORY => 16,
            _ => 24,
        };
        if end.len() != end_len {
            return Err("end block of the wrong size".to_owned());
        }
        let count = u64::from_le_bytes(end[..8].try_into().expect("8 bytes"));
        if count != blocks.len() as u64 {
            return Err(format!(
                "end block counts {count} blocks, found {}",
                blocks.len()
            ));
        }
        match blocks.first() {
            Some(&(BLOCK_CATALOG, at, start, end)) => {
                check_block(bytes, at)?;
                self.load_catalog(&bytes[start..end], version)?;
            }
            _ => return Err("the first block is not the catalog".to_owned()),
        }
        let middle = &blocks[1..blocks.len() - 1];
        let index_pos = middle.len().checked_sub(index_blocks(version));
        let expected = |i: usize| match version {
            1 => BLOCK_SERIES,
            _ if Some(i) == index_pos => BLOCK_INDEX,
            _ if index_pos.is_some_and(|at| i > at) => BLOCK_DIRECTORY,
            _ => BLOCK_CHUNKS,
        };
        if let Some((_, &(kind, at, _, _))) =
            middle.iter().enumerate().find(|&(i, b)| b.0 != expected(i))
        {
            return Err(format!("unexpected block kind {kind} at offset {at}"));
        }
        if version >= 2 {
            let index_at = u64::from_le_bytes(end[8..16].try_into().expect("8 bytes"));
            match index_pos.map(|at| middle[at]) {
                Some((BLOCK_INDEX, at, _, _)) if at as u64 == index_at => {}
                _ => return Err("the end block does not point at the index".to_owned()),
            }
        }
        if version >= FIRST_WITH_DIRECTORY {
            let directory_at = u64::from_le_bytes(end[16..24].try_into().expect("8 bytes"));
            match middle.last() {
                Some(&(BLOCK_DIRECTORY, at, _, _)) if at as u64 == directory_at => {}
                _ => return Err("the end block does not point at the directory".to_owned()),
            }
        }
        Ok((version, lsn, series_count, blocks))
    }

    fn load_catalog(&mut self, payload: &[u8], version: u32) -> Result<(), String> {
        let mut r = ByteReader::new(payload);
        let metric_count = r.u32()?;
        for _ in 0..metric_count {
            let name = r.string()?;
            let frequency = r.i64()?;
            let code = r.u8()?;
            let aggregation = Aggregation::from_code(code)
                .ok_or_else(|| format!("unknown aggregation code {code}"))?;
            let unit = if version >= FIRST_WITH_UNITS {
                read_unit(&mut r)?
            } else {
                None
            };
            self.catalog.get_mut().define_metric(MetricDef {
                name,
                frequency,
                aggregation,
                unit,
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

    /// Loads the chunks `entries` (series id and chunk) from a chunks block
    /// whose payload, starting at file offset `base`, is `payload`.
    fn load_chunks(
        &self,
        payload: &[u8],
        base: usize,
        entries: &[(u32, IndexEntry)],
    ) -> Result<(), String> {
        let catalog = self.catalog.read();
        for &(id, entry) in entries {
            let at = entry.offset - base;
            let bytes = &payload[at..at + entry.len];
            if crc32fast::hash(bytes) != entry.crc {
                return Err(format!(
                    "chunk of series {id} at offset {} fails its checksum",
                    entry.offset
                ));
            }
            let sealed = Sealed::load(&self.pool, bytes)
                .map_err(|e| format!("series {id} at offset {}: {e}", entry.offset))?;
            if sealed.valid() != entry.valid {
                return Err(format!(
                    "chunk of series {id} at offset {} holds {} samples, the index says {}",
                    entry.offset,
                    sealed.valid(),
                    entry.valid
                ));
            }
            let series = catalog
                .entry(id)
                .ok_or_else(|| format!("data for series {id}, which the catalog lacks"))?;
            series.data.write().load_sealed(entry.key, sealed);
        }
        Ok(())
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

/// Where one chunk of a snapshot of version 2 or later is.
type IndexEntry = EncodedChunk;

/// Appends one series' index entries (version 3): its chunk count, then
/// per chunk the key (the first as a zigzag varint, then the step from the
/// previous key), the offset (the first from the start of the file, then
/// the gap after the previous chunk's end), the length, the CRC-32 (u32)
/// and the count of NaN slots. All but the CRC are varints: a chunk takes
/// about 9 bytes, and each series' entries read on their own. `chunks`
/// hold offsets relative to `base`.
fn put_index_series(index: &mut Vec<u8>, base: u64, chunks: &[EncodedChunk]) {
    put_varint(index, chunks.len() as u64);
    let mut previous: Option<(i64, u64)> = None;
    for chunk in chunks {
        let offset = base + chunk.offset as u64;
        match previous {
            None => {
                put_varint(index, ((chunk.key << 1) ^ (chunk.key >> 63)) as u64);
                put_varint(index, offset);
            }
            Some((key, end)) => {
                put_varint(index, chunk.key.abs_diff(key));
                put_varint(index, offset - end);
            }
        }
        put_varint(index, chunk.len as u64);
        index.extend_from_slice(&chunk.crc.to_le_bytes());
        put_varint(index, CHUNK_SLOTS as u64 - chunk.valid);
        previous = Some((chunk.key, offset + chunk.len as u64));
    }
}

/// Appends one series' directory entry (version 5): its chunk count, the
/// length of its index entries (`entries`, chunk count included) and their
/// CRC-32 (u32), its non-NaN slots and its chunks' bytes. All but the CRC
/// are varints.
fn put_directory_entry(directory: &mut Vec<u8>, entries: &[u8], chunks: &[EncodedChunk]) {
    put_varint(directory, chunks.len() as u64);
    put_varint(directory, entries.len() as u64);
    directory.extend_from_slice(&crc32fast::hash(entries).to_le_bytes());
    put_varint(directory, chunks.iter().map(|c| c.valid).sum());
    put_varint(directory, chunks.iter().map(|c| c.len as u64).sum());
}

/// One series' directory entry: where its index entries are and what they
/// must add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirectoryEntry {
    count: usize,
    len: usize,
    crc: u32,
    valid: u64,
    bytes: usize,
}

fn read_directory_entry(r: &mut ByteReader<'_>, id: u32) -> Result<DirectoryEntry, String> {
    let mut fields = || -> Result<_, String> {
        Ok((r.varint()?, r.varint()?, r.u32()?, r.varint()?, r.varint()?))
    };
    let (count, len, crc, valid, bytes) =
        fields().map_err(|e| format!("directory entry of series {id}: {e}"))?;
    let size = |v: u64| {
        usize::try_from(v).map_err(|_| format!("directory entry of series {id}: out of range"))
    };
    Ok(DirectoryEntry {
        count: size(count)?,
        len: size(len)?,
        crc,
        valid,
        bytes: size(bytes)?,
    })
}

/// Reads one series' index entries of an index of version 2 or later (series
/// `id`, for errors), calling `each` on every entry in order; returns
/// their count. Keys must rise; lengths and counts must fit a chunk.
fn read_index_series(
    r: &mut ByteReader<'_>,
    version: u32,
    id: u32,
    mut each: impl FnMut(IndexEntry) -> Result<(), String>,
) -> Result<usize, String> {
    let past = || format!("index entry of series {id} runs past the index");
    if version == 2 {
        let count = r.u32()? as usize;
        if count > r.bytes.len() / INDEX_ENTRY {
            return Err(past());
        }
        for _ in 0..count {
            let mut e = ByteReader::new(r.take(INDEX_ENTRY)?);
            each(IndexEntry {
                key: e.i64()?,
                offset: usize::try_from(e.u64()?).map_err(|_| "chunk offset out of range")?,
                len: e.u32()? as usize,
                crc: e.u32()?,
                valid: u64::from(e.u32()?),
            })?;
        }
        return Ok(count);
    }
    let count = usize::try_from(r.varint()?).map_err(|_| past())?;
    if count > r.bytes.len() / INDEX_ENTRY_MIN {
        return Err(past());
    }
    let bad = |what: &str| format!("index entry of series {id}: {what}");
    // A chunk's entry is five varints and a u32, read here for every chunk
    // of the file when it opens: the varints come back in registers.
    const PAST: &str = "runs past the index";
    let mut previous: Option<(i64, u64)> = None;
    for _ in 0..count {
        let entry = (|| {
            let (key, offset) = match previous {
                None => {
                    let zigzag = r.varint_or_none().ok_or(PAST)?;
                    let key = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
                    (key, r.varint_or_none().ok_or(PAST)?)
                }
                Some((key, end)) => {
                    let step = r.varint_or_none().ok_or(PAST)?;
                    let key = i64::try_from(step)
                        .ok()
                        .filter(|&step| step > 0)
                        .and_then(|step| key.checked_add(step))
                        .ok_or("chunk keys do not rise")?;
                    let gap = r.varint_or_none().ok_or(PAST)?;
                    (
                        key,
                        end.checked_add(gap).ok_or("chunk offset out of range")?,
                    )
                }
            };
            let len = r.varint_or_none().ok_or(PAST)?;
            let crc = r.bytes.first_chunk::<4>().ok_or(PAST)?;
            let crc = u32::from_le_bytes(*crc);
            r.bytes = &r.bytes[4..];
            let missing = r.varint_or_none().ok_or(PAST)?;
            if missing > CHUNK_SLOTS as u64 || len > u64::from(u32::MAX) {
                return Err("chunk length or sample count out of range");
            }
            Ok(IndexEntry {
                key,
                offset: usize::try_from(offset).map_err(|_| "chunk offset out of range")?,
                len: len as usize,
                crc,
                valid: CHUNK_SLOTS as u64 - missing,
            })
        })()
        .map_err(|what| if what == PAST { past() } else { bad(what) })?;
        previous = Some((
            entry.key,
            (entry.offset as u64).saturating_add(entry.len as u64),
        ));
        each(entry)?;
    }
    Ok(count)
}

/// Where the next chunk of a mapped snapshot may start after `entry` (of
/// series `id`), which must start at `next` or later and end by `end` (the
/// index): chunks lie in file order, none overlapping.
fn next_in_chunks(entry: &IndexEntry, next: usize, end: usize, id: u32) -> Result<usize, String> {
    if entry.offset < next || entry.offset.saturating_add(entry.len) > end {
        return Err(format!(
            "index entry of series {id} points outside the chunks (offset {})",
            entry.offset
        ));
    }
    Ok(entry.offset + entry.len)
}

/// Blocks between the last chunks block and the end block: the index, and
/// from version 5 the series directory.
fn index_blocks(version: u32) -> usize {
    if version >= FIRST_WITH_DIRECTORY {
        2
    } else {
        1
    }
}

/// Checks a version 5 series directory against the index it describes:
/// every series' entry names the length, CRC, chunk count, samples and
/// chunk bytes of its index entries, in order, and nothing is left over.
fn check_directory(index: &[u8], directory: &[u8], series_count: u32) -> Result<(), String> {
    let mut r = ByteReader::new(index);
    let mut d = ByteReader::new(directory);
    for id in 0..series_count {
        let at = index.len() - r.bytes.len();
        let (mut valid, mut bytes) = (0, 0);
        let count = read_index_series(&mut r, FIRST_WITH_DIRECTORY, id, |entry| {
            valid += entry.valid;
            bytes += entry.len;
            Ok(())
        })?;
        let entries = &index[at..index.len() - r.bytes.len()];
        let found = DirectoryEntry {
            count,
            len: entries.len(),
            crc: crc32fast::hash(entries),
            valid,
            bytes,
        };
        let listed = read_directory_entry(&mut d, id)?;
        if listed != found {
            return Err(format!(
                "the directory entry of series {id} ({listed:?}) differs from its index entries \
                 ({found:?})"
            ));
        }
    }
    r.finish("the index block")?;
    d.finish("the directory block")
}

/// The chunks a snapshot of version 2 or later's index lists, as (series id,
/// entry), in the index's order (series by series).
fn read_index(
    payload: &[u8],
    series_count: u32,
    version: u32,
) -> Result<Vec<(u32, IndexEntry)>, String> {
    let mut entries = Vec::new();
    let mut r = ByteReader::new(payload);
    for id in 0..series_count {
        read_index_series(&mut r, version, id, |entry| {
            entries.push((id, entry));
            Ok(())
        })?;
    }
    r.finish("the index block")?;
    Ok(entries)
}

/// Every chunk a snapshot of version 2 or later file lists, as (series id,
/// entry): for tests that damage chunks where the index says they are.
#[cfg(test)]
pub(crate) fn index_entries(bytes: &[u8]) -> Vec<(u32, EncodedChunk)> {
    let (version, series_count, payload) = index_payload(bytes);
    read_index(&bytes[payload], series_count, version).unwrap()
}

/// A snapshot file's version, series count and where its index block's
/// payload is (from the offset the end block gives).
#[cfg(test)]
fn index_payload(bytes: &[u8]) -> (u32, u32, Range<usize>) {
    let version = snapshot_version(bytes).expect("an intact header");
    let series_count = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    // The end block ends with a u64 offset for each block after the chunks
    // blocks (the index, then from format 5 the directory).
    let at = bytes.len() - 8 * index_blocks(version);
    let index_at = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let (_, start, end) = block_bounds(bytes, index_at).unwrap();
    (version, series_count, start..end)
}

/// Where each series' index entries lie in a snapshot file, as (offset,
/// length), in series order: for tests that damage them.
#[cfg(test)]
pub(crate) fn index_parts(bytes: &[u8]) -> Vec<(usize, usize)> {
    let (version, series_count, payload) = index_payload(bytes);
    let end = payload.end;
    let mut r = ByteReader::new(&bytes[payload]);
    let mut parts = Vec::new();
    for id in 0..series_count {
        let from = end - r.bytes.len();
        read_index_series(&mut r, version, id, |_| Ok(())).unwrap();
        parts.push((from, end - r.bytes.len() - from));
    }
    parts
}

/// A mapped snapshot's index block, kept for the series whose chunks are
/// not made yet (checked whole when the snapshot was opened).
struct SnapshotIndex {
    bytes: Vec<u8>,
    version: u32,
    file: Arc<MappedFile>,
}

impl MappedIndex for SnapshotIndex {
    fn chunks(&self, at: usize, count: usize, _: usize) -> Result<Vec<EncodedChunk>, Damage> {
        let mut chunks = Vec::with_capacity(count);
        let mut r = ByteReader::new(&self.bytes[at..]);
        read_index_series(&mut r, self.version, 0, |entry| {
            chunks.push(entry);
            Ok(())
        })
        .expect("checked when the snapshot was opened");
        Ok(chunks)
    }

    fn file(&self) -> &Arc<MappedFile> {
        &self.file
    }
}

/// A mapped format 5 snapshot's index, read series by series: each
/// series' index entries are read and checked (their CRC from the
/// directory, then each entry) when the series is first used.
struct LazyIndex {
    /// Per series: where its index entries are in the file, their length
    /// and CRC-32.
    parts: Vec<(usize, usize, u32)>,
    /// Where chunks may lie: between the catalog and the index.
    chunks: Range<usize>,
    file: Arc<MappedFile>,
    /// The same file, for reading entries with a plain read: a fault on the
    /// mapping reads the device's whole readahead window around the page
    /// (8 MB on some virtual disks), a cold read of several milliseconds.
    source: Arc<dyn ImmutableBytes>,
}

impl MappedIndex for LazyIndex {
    fn chunks(&self, id: usize, count: usize, bytes: usize) -> Result<Vec<EncodedChunk>, Damage> {
        let (at, len, crc) = self.parts[id];
        let damage = |reason: String| Damage {
            file: self.file.name.clone(),
            offset: at as u64,
            reason,
        };
        let listed = self
            .source
            .copy(at..at + len)
            .map_err(|e| damage(format!("reading the index entries of series {id}: {e}")))?;
        if crc32fast::hash(&listed) != crc {
            return Err(damage(format!(
                "index entries of series {id}: checksum mismatch"
            )));
        }
        let mut chunks = Vec::with_capacity(count);
        let mut next = self.chunks.start;
        let mut r = ByteReader::new(&listed);
        let found = read_index_series(&mut r, FIRST_WITH_DIRECTORY, id as u32, |entry| {
            next = next_in_chunks(&entry, next, self.chunks.end, id as u32)?;
            chunks.push(entry);
            Ok(())
        })
        .and_then(|found| r.finish("the series' index entries").map(|()| found))
        .map_err(damage)?;
        let total: usize = chunks.iter().map(|c| c.len).sum();
        if (found, total) != (count, bytes) {
            return Err(damage(format!(
                "index entries of series {id} list {found} chunks of {total} bytes, \
                 the directory {count} of {bytes}"
            )));
        }
        Ok(chunks)
    }

    fn file(&self) -> &Arc<MappedFile> {
        &self.file
    }
}

/// `entries` split by the chunks block holding them (in `blocks`' order).
/// Every entry must lie inside a chunks block's payload, and they must run
/// in file order, as the writer puts them.
fn split_by_block(
    entries: Vec<(u32, IndexEntry)>,
    blocks: &[BlockAt],
) -> Result<Vec<Vec<(u32, IndexEntry)>>, String> {
    let mut by_block: Vec<Vec<(u32, IndexEntry)>> = vec![Vec::new(); blocks.len()];
    let mut block = 0;
    let mut next = blocks.first().map_or(0, |b| b.2);
    for (id, entry) in entries {
        while block < blocks.len() && entry.offset >= blocks[block].3 {
            block += 1;
            next = blocks.get(block).map_or(0, |b| b.2);
        }
        let fits = block < blocks.len()
            && entry.offset >= next
            && entry
                .offset
                .checked_add(entry.len)
                .is_some_and(|e| e <= blocks[block].3);
        if !fits {
            return Err(format!(
                "index entry of series {id} points outside the chunks blocks (offset {})",
                entry.offset
            ));
        }
        next = entry.offset + entry.len;
        by_block[block].push((id, entry));
    }
    Ok(by_block)
}

/// The bytes a mapped open of `file` reads (header, catalog, and the index
/// and end block, or from format 5 the series directory and end block), if
/// it is a format 2 to 5 snapshot that can be mapped; reads only the
/// header, the catalog's block header and the end block.
pub fn mapped_bytes(file: &dyn ImmutableBytes) -> Option<u64> {
    let len = file.len();
    let head = file.copy(0..(HEADER + BLOCK_HEADER).min(len)).ok()?;
    let version = snapshot_version(&head)?;
    if !(2..=SNAPSHOT_VERSION).contains(&version) {
        return None;
    }
    let catalog_end = first_block_end(&head)?;
    // The end block's payload ends with the offset of the index, or from
    // format 5 of the directory: the open reads from there to the end.
    let end = file.copy(len.checked_sub(8)?..len).ok()?;
    let read_from = u64::from_le_bytes(end.try_into().ok()?);
    let tail = (len as u64).checked_sub(read_from)?;
    Some(catalog_end as u64 + tail)
}

/// Where the first block (the catalog) ends, from the header and that
/// block's header at the start of `head`.
fn first_block_end(head: &[u8]) -> Option<usize> {
    let len = head.get(HEADER..HEADER + 4)?;
    Some(HEADER + BLOCK_HEADER + u32::from_le_bytes(len.try_into().ok()?) as usize)
}

/// A snapshot's format version, if its header is intact.
fn snapshot_version(bytes: &[u8]) -> Option<u32> {
    let intact = bytes.len() >= HEADER
        && bytes[..8] == SNAPSHOT_MAGIC
        && u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"))
            == crc32fast::hash(&bytes[..28]);
    intact.then(|| u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")))
}

/// A mapped snapshot kept alive by the chunks that read from it.
struct Shared(Arc<dyn ImmutableBytes>);

impl std::ops::Deref for Shared {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(key: i64, offset: usize, len: usize, valid: u64) -> EncodedChunk {
        let crc = (key as u32).wrapping_mul(2_654_435_761) ^ len as u32;
        EncodedChunk {
            key,
            offset,
            len,
            crc,
            valid,
        }
    }

    #[test]
    fn version_3_index_entries_read_back_exactly_at_the_extremes() {
        // Offsets relative to a base, as a chunks block gives them; series
        // apart, negative and huge keys, gaps between series, empty series.
        let base = 5_000_000_000u64;
        let series = [
            vec![
                chunk(i64::MIN / 2048, 0, 4, 0),
                chunk(-1, 4, 4100, 1024),
                chunk(0, 4104, 300, 17),
            ],
            vec![],
            vec![chunk(i64::MAX / 2048, 9000, 8, 1)],
        ];
        let mut index = Vec::new();
        for chunks in &series {
            put_index_series(&mut index, base, chunks);
        }
        let entries = read_index(&index, 3, 3).unwrap();
        let expected: Vec<(u32, EncodedChunk)> = series
            .iter()
            .enumerate()
            .flat_map(|(id, chunks)| {
                chunks.iter().map(move |c| {
                    let offset = c.offset + base as usize;
                    (id as u32, EncodedChunk { offset, ..*c })
                })
            })
            .collect();
        assert_eq!(entries, expected);
        // About 9 bytes a chunk where keys step by one and chunks touch.
        let steady: Vec<EncodedChunk> = (0..1000)
            .map(|k| chunk(166_000 + k, 3000 * k as usize, 3000, 1024))
            .collect();
        let mut index = Vec::new();
        put_index_series(&mut index, 64, &steady);
        assert!(index.len() <= 9 * 1000 + 8, "{}", index.len());
    }

    #[test]
    fn a_directory_must_describe_its_index_exactly() {
        let series = [
            vec![chunk(-3, 0, 4, 0), chunk(7, 4, 4100, 1024)],
            vec![],
            vec![chunk(1 << 40, 9000, 8, 1)],
        ];
        let (mut index, mut directory) = (Vec::new(), Vec::new());
        for chunks in &series {
            let start = index.len();
            put_index_series(&mut index, 64, chunks);
            put_directory_entry(&mut directory, &index[start..], chunks);
        }
        check_directory(&index, &directory, 3).unwrap();
        let mut r = ByteReader::new(&directory);
        let first = read_directory_entry(&mut r, 0).unwrap();
        let len = directory.len() - r.bytes.len();
        assert_eq!((first.count, first.valid, first.bytes), (2, 1024, 4104));
        // The second series' entry: no chunks, its count's one byte.
        let second = read_directory_entry(&mut r, 1).unwrap();
        assert_eq!((second.count, second.len, second.bytes), (0, 1, 0));
        // Samples other than the entries hold: refused, naming the series.
        let mut more = directory.clone();
        more[len - 3] += 1; // valid 1024 -> 1152 (two bytes; then bytes, two)
        let err = check_directory(&index, &more, 3).unwrap_err();
        assert!(err.starts_with("the directory entry of series 0 "), "{err}");
        // A series left out, or one too many.
        let err = check_directory(&index, &directory[..len], 3).unwrap_err();
        assert!(err.contains("series 1"), "{err}");
        let mut extra = directory.clone();
        extra.extend_from_slice(&directory[len..]);
        let err = check_directory(&index, &extra, 3).unwrap_err();
        assert!(err.contains("directory block"), "{err}");
    }

    #[test]
    fn a_version_3_index_whose_keys_do_not_rise_is_refused() {
        let mut index = Vec::new();
        put_index_series(&mut index, 0, &[chunk(5, 0, 10, 3), chunk(6, 10, 10, 3)]);
        // The second key's step (1) becomes 0: the same key twice.
        let mut same = index.clone();
        let step = 1 + 1 + 1 + 1 + 4 + 2; // count, key, offset, len, crc, missing
        assert_eq!(same[step], 1);
        same[step] = 0;
        let err = read_index(&same, 1, 3).unwrap_err();
        assert_eq!(err, "index entry of series 0: chunk keys do not rise");
        // A count past what the bytes could hold.
        let err = read_index(&[0x7F], 1, 3).unwrap_err();
        assert_eq!(err, "index entry of series 0 runs past the index");
        assert_eq!(read_index(&index, 1, 3).unwrap().len(), 2);
    }
}
