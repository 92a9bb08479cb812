//! Sealed chunks: chunks no longer being written, their slots compressed
//! with `codec.rs`.
//!
//! A sealed chunk decodes on every read (the codec decodes faster than the
//! memory it saves could be read raw) and is unsealed, decoded back into a
//! raw chunk, when a write lands in it. Its bytes are what a snapshot stores
//! for it, so a checkpoint copies them as they are.
//!
//! Invariants: the bytes decode to exactly `CHUNK_SLOTS` slots (checked
//! when a chunk is sealed or loaded, so decoding never fails later), and
//! `valid` is the number of them that are not NaN. The pool counts the
//! bytes of every live sealed chunk.

use std::sync::Arc;

use crate::engine::memory::chunks::{CHUNK_SLOTS, ChunkPool};
use crate::engine::memory::codec;

pub struct Sealed {
    bytes: Box<[u8]>,
    valid: u32,
    pool: Arc<ChunkPool>,
}

impl Sealed {
    /// Compresses one chunk's slots.
    pub fn seal(pool: &Arc<ChunkPool>, slots: &[f32], valid: u64) -> Sealed {
        debug_assert_eq!(slots.len(), CHUNK_SLOTS);
        let mut bytes = Vec::with_capacity(256);
        codec::encode(slots, &mut bytes);
        Sealed::counted(pool, bytes.into_boxed_slice(), valid)
    }

    /// A chunk from encoded bytes read back (a snapshot), checked by
    /// decoding them: the error says why they are not a chunk.
    pub fn load(pool: &Arc<ChunkPool>, bytes: &[u8]) -> Result<Sealed, String> {
        let mut slots = [0f32; CHUNK_SLOTS];
        codec::decode(bytes, &mut slots).map_err(|e| format!("chunk: {e}"))?;
        let valid = slots.iter().filter(|v| !v.is_nan()).count() as u64;
        Ok(Sealed::counted(pool, bytes.into(), valid))
    }

    fn counted(pool: &Arc<ChunkPool>, bytes: Box<[u8]>, valid: u64) -> Sealed {
        pool.count_sealed(bytes.len() as isize);
        Sealed {
            bytes,
            valid: valid as u32,
            pool: Arc::clone(pool),
        }
    }

    /// Writes the chunk's `CHUNK_SLOTS` slots into `out`.
    pub fn decode_into(&self, out: &mut [f32]) {
        codec::decode(&self.bytes, out).expect("sealed chunks are checked when made");
    }

    /// The encoded bytes (what a snapshot stores).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn valid(&self) -> u64 {
        u64::from(self.valid)
    }
}

impl Drop for Sealed {
    fn drop(&mut self) {
        self.pool.count_sealed(-(self.bytes.len() as isize));
    }
}
