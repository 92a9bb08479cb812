//! Sealed chunks: chunks no longer being written, their slots compressed
//! with `codec.rs`.
//!
//! A sealed chunk decodes on every read (about 0.7-1.6 G slots/s on one
//! core, by chunk shape; nothing decoded is cached) and is unsealed,
//! decoded back into a raw chunk, when a write lands in it. Its bytes are what a snapshot stores
//! for it, so a checkpoint copies them as they are.
//!
//! The bytes are held in memory, or stay in a snapshot file mapped by a
//! read-only store (opening then reads only the snapshot's index). A mapped
//! chunk is checked against its CRC on its first read; one that fails reads
//! as [`Damage`], which names the file and offset.
//!
//! Invariants: the bytes of a chunk in memory decode to exactly
//! `CHUNK_SLOTS` slots (checked when it is sealed or loaded, so decoding
//! never fails later), and `valid` is the number of them that are not NaN.
//! The pool counts the bytes of every live sealed chunk, in memory and
//! mapped apart.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::engine::memory::chunks::{CHUNK_SLOTS, ChunkPool};
use crate::engine::memory::codec;

/// A snapshot file mapped into memory, shared by the chunks it holds.
pub struct MappedFile {
    pub bytes: Box<dyn Deref<Target = [u8]> + Send + Sync>,
    /// Its path, for errors.
    pub name: String,
    /// Asks for a byte range to be read in ahead of a read that will need
    /// all of it (the mapping is read window by window otherwise).
    pub will_need: Box<dyn Fn(std::ops::Range<usize>) + Send + Sync>,
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
        let mut bytes = Vec::with_capacity(256);
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

    /// A chunk left in a mapped snapshot at `offset..offset + len`, whose
    /// CRC and sample count the snapshot's index gives; checked on first
    /// read.
    pub fn mapped(
        pool: &Arc<ChunkPool>,
        file: &Arc<MappedFile>,
        offset: usize,
        len: usize,
        crc: u32,
        valid: u64,
    ) -> Sealed {
        let bytes = Bytes::Mapped {
            file: Arc::clone(file),
            offset,
            len,
            crc,
            state: AtomicU8::new(UNCHECKED),
        };
        Sealed::counted(pool, bytes, valid)
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
        match &self.bytes {
            Bytes::Owned(bytes) => {
                codec::decode(bytes, out).expect("chunks in memory are checked when made");
                Ok(())
            }
            Bytes::Mapped {
                file,
                offset,
                crc,
                state,
                ..
            } => {
                let bytes = self.bytes();
                let damage = |reason: String| Damage {
                    file: file.name.clone(),
                    offset: *offset as u64,
                    reason,
                };
                match state.load(Ordering::Acquire) {
                    GOOD => {}
                    BAD => return Err(damage("chunk checksum mismatch".to_owned())),
                    _ if crc32fast::hash(bytes) != *crc => {
                        state.store(BAD, Ordering::Release);
                        return Err(damage("chunk checksum mismatch".to_owned()));
                    }
                    _ => state.store(GOOD, Ordering::Release),
                }
                codec::decode(bytes, out).map_err(|e| damage(format!("chunk: {e}")))
            }
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
