//! Sealed chunks: chunks no longer being written, their slots compressed
//! with `codec.rs`.
//!
//! A sealed chunk decodes on every read (about 0.7-1.6 G slots/s on one
//! core, by chunk shape; nothing decoded is cached) and is unsealed,
//! decoded back into a raw chunk, when a write lands in it. Its bytes are what a snapshot stores
//! for it, so a checkpoint copies them as they are.
//!
//! The bytes are held in memory, or stay in a snapshot file mapped by a
//! read-only store (opening then reads only the snapshot's index, or from
//! format 5 its series directory, each series' index entries read when the
//! series is first used). A mapped chunk is checked against its CRC on its
//! first read; one that fails reads as [`Damage`], which names the file and
//! offset, as do all reads of a series whose index entries fail theirs.
//!
//! Invariants: the bytes of a chunk in memory decode to exactly
//! `CHUNK_SLOTS` slots (checked when it is sealed or loaded, so decoding
//! never fails later), and `valid` is the number of them that are not NaN.
//! The pool counts the bytes of every live sealed chunk, in memory and
//! mapped apart.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use crate::engine::memory::chunks::{self, CHUNK_SLOTS, ChunkPool};
use crate::engine::memory::codec;

/// A snapshot file mapped into memory, shared by the chunks it holds.
pub struct MappedFile {
    pub bytes: Box<dyn Deref<Target = [u8]> + Send + Sync>,
    /// Its path, for errors.
    pub name: String,
    /// Asks for a byte range to be read in ahead of a read that will need
    /// all of it (the mapping is read window by window otherwise).
    pub will_need: Box<dyn Fn(std::ops::Range<usize>) + Send + Sync>,
    /// Reads a small byte range into the page cache now, with a plain
    /// read: a fault on a page of the mapping that is not in memory reads
    /// the device's whole readahead window around it (8 MB on some virtual
    /// disks: milliseconds before a one-chunk read of a cold file returns).
    pub read_in: Box<dyn Fn(std::ops::Range<usize>) + Send + Sync>,
}

/// A chunk as a snapshot stores it: its key, its encoded bytes' place (in
/// the output being written, or in the file), their CRC-32, and its count
/// of non-NaN slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedChunk {
    pub key: i64,
    pub offset: usize,
    pub len: usize,
    pub crc: u32,
    pub valid: u64,
}

/// The index of a mapped snapshot, which lists each series' chunks.
pub trait MappedIndex: Send + Sync {
    /// The `count` chunks, of `bytes` in all, listed at `at` (a place the
    /// snapshot gave when it was opened). An index whose entries are read
    /// and checked only now (format 5) fails here if they are damaged.
    fn chunks(&self, at: usize, count: usize, bytes: usize) -> Result<Vec<EncodedChunk>, Damage>;
    /// The file the chunks lie in.
    fn file(&self) -> &Arc<MappedFile>;
}

/// One series' chunks in a mapped snapshot, not yet made: opening a
/// snapshot reads and checks its index but makes a series' chunks only
/// when the series is first used, so that the first query of a large
/// store does not wait for every chunk of the file. Its chunks count in
/// the pool as mapped ones from the start.
pub struct MappedSeries {
    index: Arc<dyn MappedIndex>,
    at: usize,
    count: usize,
    bytes: usize,
    pool: Arc<ChunkPool>,
    /// Set once `chunks` made them: they count themselves from then on.
    made: AtomicBool,
    /// Why the chunks could not be made, if their index entries are
    /// damaged: every read of the series reports it.
    damage: OnceLock<Damage>,
}

impl MappedSeries {
    /// The series whose `count` chunks, of `bytes` in all, `index` lists
    /// at `at`.
    pub fn new(
        pool: &Arc<ChunkPool>,
        index: &Arc<dyn MappedIndex>,
        at: usize,
        count: usize,
        bytes: usize,
    ) -> MappedSeries {
        pool.count_sealed_many(true, count as isize, bytes as isize);
        MappedSeries {
            index: Arc::clone(index),
            at,
            count,
            bytes,
            pool: Arc::clone(pool),
            made: AtomicBool::new(false),
            damage: OnceLock::new(),
        }
    }

    /// Makes the chunks, keyed, in key order; each is checked on its first
    /// read. Called once. If the index entries are damaged there are none,
    /// and [`MappedSeries::damage`] says why from then on.
    pub fn chunks(&self) -> Vec<(i64, Sealed)> {
        let file = self.index.file();
        let entries = match self.index.chunks(self.at, self.count, self.bytes) {
            Ok(entries) => entries,
            Err(damage) => {
                let _ = self.damage.set(damage);
                self.pool
                    .count_sealed_many(true, -(self.count as isize), -(self.bytes as isize));
                self.made.store(true, Ordering::Release);
                return Vec::new();
            }
        };
        let made = entries
            .into_iter()
            .map(|c| {
                let bytes = Bytes::Mapped {
                    file: Arc::clone(file),
                    offset: c.offset,
                    len: c.len,
                    crc: c.crc,
                    state: AtomicU8::new(UNCHECKED),
                };
                let sealed = Sealed {
                    bytes,
                    valid: c.valid as u32,
                    pool: Arc::clone(&self.pool),
                };
                (c.key, sealed)
            })
            .collect();
        self.made.store(true, Ordering::Release);
        made
    }

    /// (chunks, bytes) listed.
    pub fn size(&self) -> (usize, usize) {
        (self.count, self.bytes)
    }

    /// Why the chunks could not be made, once [`MappedSeries::chunks`]
    /// found their index entries damaged.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.get()
    }
}

impl Drop for MappedSeries {
    fn drop(&mut self) {
        if !self.made.load(Ordering::Acquire) {
            self.pool
                .count_sealed_many(true, -(self.count as isize), -(self.bytes as isize));
        }
    }
}

/// A chunk that cannot be read: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub offset: u64,
    pub reason: String,
}

const UNCHECKED: u8 = 0;
const GOOD: u8 = 1;
const BAD: u8 = 2;

enum Bytes {
    Owned(Box<[u8]>),
    Mapped {
        file: Arc<MappedFile>,
        offset: usize,
        len: usize,
        crc: u32,
        /// UNCHECKED until first read, then GOOD or BAD.
        state: AtomicU8,
    },
}

pub struct Sealed {
    bytes: Bytes,
    valid: u32,
    pool: Arc<ChunkPool>,
}

impl Sealed {
    /// Compresses one chunk's slots.
    pub fn seal(pool: &Arc<ChunkPool>, slots: &[f32], valid: u64) -> Sealed {
        debug_assert_eq!(slots.len(), CHUNK_SLOTS);
        // Room for the largest result (raw plus the header): growing a buffer from 256 bytes
        // copied what was written at each step. The slack is cut off in place below.
        let mut bytes = Vec::with_capacity(codec::HEADER_LEN + 4 * slots.len());
        codec::encode(slots, &mut bytes);
        Sealed::counted(pool, Bytes::Owned(bytes.into_boxed_slice()), valid)
    }

    /// A chunk from encoded bytes read back (a snapshot), checked by
    /// decoding them: the error says why they are not a chunk.
    pub fn load(pool: &Arc<ChunkPool>, bytes: &[u8]) -> Result<Sealed, String> {
        let mut slots = [0f32; CHUNK_SLOTS];
        codec::decode(bytes, &mut slots).map_err(|e| format!("chunk: {e}"))?;
        let valid = slots.iter().filter(|v| !v.is_nan()).count() as u64;
        Ok(Sealed::counted(pool, Bytes::Owned(bytes.into()), valid))
    }

    fn counted(pool: &Arc<ChunkPool>, bytes: Bytes, valid: u64) -> Sealed {
        let sealed = Sealed {
            bytes,
            valid: valid as u32,
            pool: Arc::clone(pool),
        };
        pool.count_sealed(sealed.is_mapped(), sealed.bytes().len() as isize);
        sealed
    }

    /// Writes the chunk's `CHUNK_SLOTS` slots into `out`.
    pub fn decode_into(&self, out: &mut [f32]) -> Result<(), Damage> {
        let bytes = self.checked_bytes()?;
        codec::decode(bytes, out).map_err(|e| self.damage(format!("chunk: {e}")))
    }

    /// Writes slots `range` of the chunk into `out` (as long as `range`),
    /// decoding only what they need (the whole chunk: a plain decode).
    pub fn decode_range_into(
        &self,
        range: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<(), Damage> {
        let bytes = self.checked_bytes()?;
        let decoded = if range == (0..CHUNK_SLOTS) {
            codec::decode(bytes, out)
        } else {
            codec::decode_range(bytes, CHUNK_SLOTS, range, out)
        };
        decoded.map_err(|e| self.damage(format!("chunk: {e}")))
    }

    /// `decode_range_into` into slots that need not be initialised: all of
    /// `out` is written if it succeeds, and none is read before it is
    /// written (`codec::decode_range_uninit`).
    pub fn decode_range_uninit(
        &self,
        range: std::ops::Range<usize>,
        out: &mut [std::mem::MaybeUninit<f32>],
    ) -> Result<(), Damage> {
        let bytes = self.checked_bytes()?;
        codec::decode_range_uninit(bytes, CHUNK_SLOTS, range, out)
            .map_err(|e| self.damage(format!("chunk: {e}")))
    }

    /// The encoded bytes, their checksum checked on the first read of a
    /// mapped chunk (chunks made in memory are checked when made).
    fn checked_bytes(&self) -> Result<&[u8], Damage> {
        let bytes = self.bytes();
        if let Bytes::Mapped { crc, state, .. } = &self.bytes {
            match state.load(Ordering::Acquire) {
                GOOD => {}
                BAD => return Err(self.damage("chunk checksum mismatch".to_owned())),
                _ if crc32fast::hash(bytes) != *crc => {
                    state.store(BAD, Ordering::Release);
                    return Err(self.damage("chunk checksum mismatch".to_owned()));
                }
                _ => state.store(GOOD, Ordering::Release),
            }
        }
        Ok(bytes)
    }

    /// Damage to this chunk, for `reason`. A chunk made in memory is never
    /// damaged: its bytes were decoded when it was made.
    fn damage(&self, reason: String) -> Damage {
        match &self.bytes {
            Bytes::Mapped { file, offset, .. } => Damage {
                file: file.name.clone(),
                offset: *offset as u64,
                reason,
            },
            Bytes::Owned(_) => panic!("a chunk checked when made failed to decode: {reason}"),
        }
    }

    /// Asks the CPU to start loading the encoded bytes into its caches
    /// (a hint: bytes of a mapped page not yet faulted in are not loaded).
    pub fn prefetch(&self) {
        let bytes = self.bytes();
        let start = bytes.as_ptr() as usize;
        for line in (start & !63..start + bytes.len()).step_by(64) {
            chunks::prefetch(line);
        }
    }

    /// The encoded bytes (what a snapshot stores).
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Owned(bytes) => bytes,
            Bytes::Mapped {
                file, offset, len, ..
            } => &file.bytes[*offset..*offset + *len],
        }
    }

    /// The file and byte range of a mapped chunk.
    pub fn mapped_range(&self) -> Option<(&Arc<MappedFile>, std::ops::Range<usize>)> {
        match &self.bytes {
            Bytes::Mapped {
                file, offset, len, ..
            } => Some((file, *offset..*offset + *len)),
            Bytes::Owned(_) => None,
        }
    }

    /// Whether the bytes stay in a mapped snapshot and were never read.
    pub fn is_unread(&self) -> bool {
        matches!(&self.bytes, Bytes::Mapped { state, .. } if state.load(Ordering::Relaxed) == UNCHECKED)
    }

    /// Whether the bytes stay in a mapped snapshot.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped { .. })
    }

    pub fn valid(&self) -> u64 {
        u64::from(self.valid)
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        self.pool
            .count_sealed(self.is_mapped(), -(self.bytes().len() as isize));
    }
}
