//! One series' samples: fixed-size chunks of float32 slots on the grid.
//!
//! Chunk `c` holds slots `c * CHUNK_SLOTS .. (c + 1) * CHUNK_SLOTS`. Chunks
//! live in a `BTreeMap`, so writes may land anywhere (before, after or
//! between stored data) and memory grows one chunk at a time; nothing ever
//! copies a whole series. A chunk that was never written does not exist and
//! reads as NaN. Chunk memory comes from the store's [`ChunkPool`].

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::engine::bytes::put_all;
use crate::engine::memory::chunks::{CHUNK_SLOTS, Chunk, ChunkPool, copy_counting};

#[derive(Default)]
pub struct SeriesData {
    chunks: BTreeMap<i64, Chunk>,
    /// Number of non-NaN slots, kept exact on every write.
    valid: u64,
    /// The chunk written last, so that writes into it (every tick until it
    /// fills) skip the map: its node is one more cache miss per write.
    hot: Option<HotChunk>,
}

/// A chunk's key and slot memory, copied from the map. Valid while that
/// chunk stays in the map: every method that removes or replaces chunks
/// clears `SeriesData::hot`, and all of them take `&mut self`.
#[derive(Clone, Copy)]
struct HotChunk {
    key: i64,
    slots: NonNull<f32>,
}

// SAFETY: a HotChunk is only dereferenced through `&mut SeriesData`, which
// owns the chunk it points into; it is as sendable as that `Chunk`.
unsafe impl Send for HotChunk {}
unsafe impl Sync for HotChunk {}

fn split(slot: i64) -> (i64, usize) {
    let n = CHUNK_SLOTS as i64;
    (slot.div_euclid(n), slot.rem_euclid(n) as usize)
}

fn count_valid(values: &[f32]) -> u64 {
    values.iter().filter(|v| !v.is_nan()).count() as u64
}

impl SeriesData {
    /// Writes `values` into consecutive slots from `first`; returns the
    /// address of the chunk written last (0 if none), as `write_one` does.
    pub fn write(&mut self, pool: &Arc<ChunkPool>, first: i64, values: &[f32]) -> usize {
        let mut slot = first;
        let mut rest = values;
        let mut chunk = 0;
        while !rest.is_empty() {
            let (key, offset) = split(slot);
            let take = rest.len().min(CHUNK_SLOTS - offset);
            let (part, tail) = rest.split_at(take);
            chunk = self.write_in_chunk(pool, key, offset, part);
            rest = tail;
            slot += take as i64;
        }
        chunk
    }

    /// Writes one value into one slot; returns the address of the chunk
    /// written (0 if none), a prefetch hint for the series' next write.
    pub fn write_one(&mut self, pool: &Arc<ChunkPool>, slot: i64, value: f32) -> usize {
        let (key, offset) = split(slot);
        self.write_in_chunk(pool, key, offset, std::slice::from_ref(&value))
    }

    /// Writes `part` at `offset` of chunk `key`; returns the chunk's address
    /// (0 if it holds nothing and so was not kept).
    fn write_in_chunk(
        &mut self,
        pool: &Arc<ChunkPool>,
        key: i64,
        offset: usize,
        part: &[f32],
    ) -> usize {
        let slots = match self.hot {
            Some(hot) if hot.key == key => hot.slots,
            _ => match self.chunks.get_mut(&key) {
                Some(chunk) => chunk.slots(),
                None => {
                    let (chunk, added) = pool.chunk_with(offset, part);
                    // NaN means missing: writing only NaN where nothing is
                    // stored changes nothing, so the chunk goes straight back.
                    if added == 0 {
                        return 0;
                    }
                    let slots = chunk.slots();
                    self.chunks.insert(key, chunk);
                    self.valid += added;
                    self.hot = Some(HotChunk { key, slots });
                    return slots.as_ptr() as usize;
                }
            },
        };
        // SAFETY: `slots` is the memory of chunk `key`, which is in the map
        // (looked up just now, or kept as `hot`, which is cleared whenever
        // a chunk leaves the map); `&mut self` makes the access exclusive.
        let chunk = unsafe { std::slice::from_raw_parts_mut(slots.as_ptr(), CHUNK_SLOTS) };
        let target = &mut chunk[offset..offset + part.len()];
        let removed = count_valid(target);
        let added = copy_counting(target, part);
        self.valid = self.valid + added - removed;
        self.hot = Some(HotChunk { key, slots });
        slots.as_ptr() as usize
    }

    /// Copies slots `first .. first + out.len()` into `out`; slots never
    /// written are left as they are in `out` (callers pass NaN-filled buffers).
    pub fn read_into(&self, first: i64, out: &mut [f32]) {
        self.for_each_piece(first, out.len(), |offset, values| {
            out[offset..offset + values.len()].copy_from_slice(values);
        });
    }

    /// Calls `visit(offset, values)` for every stored run of slots inside
    /// `first .. first + len`, in slot order; `offset` is relative to `first`.
    pub fn for_each_piece(&self, first: i64, len: usize, mut visit: impl FnMut(usize, &[f32])) {
        if len == 0 {
            return;
        }
        let end = first + len as i64; // exclusive; read_slots bounds len
        let (first_key, _) = split(first);
        let (last_key, _) = split(end - 1);
        for (&key, chunk) in self.chunks.range(first_key..=last_key) {
            let chunk_start = key * CHUNK_SLOTS as i64;
            let from = first.max(chunk_start);
            let to = end.min(chunk_start + CHUNK_SLOTS as i64);
            let values =
                &chunk.as_slice()[(from - chunk_start) as usize..(to - chunk_start) as usize];
            visit((from - first) as usize, values);
        }
    }

    /// Appends every chunk as `key i64` and its slots' bits, in key order,
    /// after the chunk count `u32` (the snapshot's series layout).
    pub fn encode_chunks(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (key, chunk) in &self.chunks {
            out.extend_from_slice(&key.to_le_bytes());
            put_all(out, chunk.as_slice());
        }
    }

    /// Adds a whole chunk read from a snapshot, given as its little-endian
    /// bytes (replacing any chunk with its key).
    pub fn load_chunk(&mut self, pool: &Arc<ChunkPool>, key: i64, bytes: &[u8]) {
        let (chunk, valid) = pool.chunk_from_le_bytes(bytes);
        self.hot = None;
        if let Some(old) = self.chunks.insert(key, chunk) {
            self.valid -= count_valid(old.as_slice());
        }
        self.valid += valid;
    }

    /// Removes every slot before `first_kept`: whole chunks are freed, the
    /// slots of a chunk that straddles it become NaN. Returns chunks freed.
    pub fn drop_before(&mut self, first_kept: i64) -> usize {
        let (key, offset) = split(first_kept);
        self.hot = None;
        let kept = self.chunks.split_off(&key);
        let dropped = std::mem::replace(&mut self.chunks, kept);
        let freed = dropped.len();
        for chunk in dropped.values() {
            self.valid -= count_valid(chunk.as_slice());
        }
        if offset > 0
            && let Some(chunk) = self.chunks.get_mut(&key)
        {
            let head = &mut chunk.as_mut_slice()[..offset];
            self.valid -= count_valid(head);
            head.fill(f32::NAN);
        }
        freed
    }

    /// The first slot of each chunk, in order (for choosing what to evict).
    pub fn chunk_starts(&self) -> impl Iterator<Item = i64> + '_ {
        self.chunks.keys().map(|key| key * CHUNK_SLOTS as i64)
    }

    /// Non-NaN slots stored.
    pub fn valid(&self) -> u64 {
        self.valid
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The first slot holding a sample, if any.
    pub fn first_sample_slot(&self) -> Option<i64> {
        self.chunks.iter().find_map(|(key, chunk)| {
            let first = chunk.as_slice().iter().position(|v| !v.is_nan())?;
            Some(key * CHUNK_SLOTS as i64 + first as i64)
        })
    }

    /// The last slot holding a sample, if any.
    pub fn last_sample_slot(&self) -> Option<i64> {
        self.chunks.iter().rev().find_map(|(key, chunk)| {
            let last = chunk.as_slice().iter().rposition(|v| !v.is_nan())?;
            Some(key * CHUNK_SLOTS as i64 + last as i64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::chunks::CHUNK_BYTES;

    #[test]
    fn the_first_and_last_samples_are_found_past_empty_chunks_and_nan_ends() {
        let (pool, mut series) = (pool(), SeriesData::default());
        assert_eq!(series.last_sample_slot(), None);
        assert_eq!(series.first_sample_slot(), None);
        series.write(&pool, -5, &[1.0, 2.0]);
        series.write(&pool, 3000, &[f32::NAN]);
        assert_eq!(series.last_sample_slot(), Some(-4));
        assert_eq!(series.first_sample_slot(), Some(-5));
        series.write_one(&pool, 2047, 0.0);
        assert_eq!(series.last_sample_slot(), Some(2047));
        series.write_one(&pool, -5000, 1.0);
        series.write_one(&pool, -5000, f32::NAN); // a chunk left with no sample
        assert_eq!(series.first_sample_slot(), Some(-5));
    }

    #[test]
    fn writes_after_the_last_written_chunk_is_dropped_or_replaced_land_in_the_map() {
        // Each case leaves the chunk written last (the one `hot` remembers)
        // freed; the next write into its key must reach the map's chunk.
        let (pool, mut series) = (pool(), SeriesData::default());
        series.write_one(&pool, 10, 1.0);
        series.drop_before(CHUNK_SLOTS as i64);
        assert_eq!(series.chunk_count(), 0);
        series.write_one(&pool, 11, 2.0);
        assert_eq!(series.chunk_count(), 1);
        assert_eq!(bits(&read(&series, 10, 2)), bits(&[f32::NAN, 2.0]));
        assert_eq!(series.valid(), 1);

        let mut loaded = vec![f32::NAN; CHUNK_SLOTS];
        loaded[12] = 7.0;
        let bytes: Vec<u8> = loaded.iter().flat_map(|v| v.to_le_bytes()).collect();
        series.load_chunk(&pool, 0, &bytes);
        series.write_one(&pool, 13, 3.0);
        assert_eq!(bits(&read(&series, 11, 3)), bits(&[f32::NAN, 7.0, 3.0]));
        assert_eq!(series.valid(), 2);
        assert_eq!(pool.usage().in_use, CHUNK_BYTES);
    }

    fn pool() -> Arc<ChunkPool> {
        Arc::new(ChunkPool::default())
    }

    fn read(series: &SeriesData, first: i64, len: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; len];
        series.read_into(first, &mut out);
        out
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn never_written_slots_read_as_nan() {
        let series = SeriesData::default();
        assert!(read(&series, -5, 10).iter().all(|v| v.is_nan()));
        assert_eq!(series.chunk_count(), 0);
    }

    #[test]
    fn a_block_across_chunk_boundaries_reads_back_exactly() {
        let (pool, mut series) = (pool(), SeriesData::default());
        let values: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5).collect();
        series.write(&pool, -1500, &values);
        assert_eq!(bits(&read(&series, -1500, 3000)), bits(&values));
        assert_eq!(series.valid(), 3000);
        // -1500 .. 1500 touches chunks -2, -1, 0 and 1.
        assert_eq!(series.chunk_count(), 4);
        let window = read(&series, -1510, 20);
        assert!(window[..10].iter().all(|v| v.is_nan()));
        assert_eq!(bits(&window[10..]), bits(&values[..10]));
    }

    #[test]
    fn last_write_wins_and_the_valid_count_follows() {
        let (pool, mut series) = (pool(), SeriesData::default());
        series.write(&pool, 0, &[1.0, 2.0, 3.0]);
        series.write(&pool, 1, &[f32::NAN, 9.0]);
        series.write_one(&pool, 0, 7.0);
        assert_eq!(bits(&read(&series, 0, 3)), bits(&[7.0, f32::NAN, 9.0]));
        assert_eq!(series.valid(), 2);
    }

    #[test]
    fn writes_far_apart_allocate_only_their_chunks() {
        let (pool, mut series) = (pool(), SeriesData::default());
        series.write_one(&pool, 1 << 40, 1.0);
        series.write_one(&pool, -(1 << 40), 2.0);
        assert_eq!(series.chunk_count(), 2);
        assert_eq!(read(&series, 1 << 40, 1), vec![1.0]);
        assert_eq!(read(&series, -(1 << 40), 1), vec![2.0]);
    }

    #[test]
    fn dropping_before_a_slot_frees_whole_chunks_and_blanks_a_partial_one() {
        let (pool, mut series) = (pool(), SeriesData::default());
        let values: Vec<f32> = (0..3000).map(|i| i as f32).collect();
        series.write(&pool, 0, &values);
        assert_eq!(series.drop_before(1500), 1);
        assert_eq!(series.chunk_count(), 2);
        assert_eq!(series.valid(), 1500);
        let got = read(&series, 1020, 1000);
        assert!(got[..480].iter().all(|v| v.is_nan()));
        assert_eq!(got[480], 1500.0);
        assert_eq!(series.drop_before(-5), 0);
        assert_eq!(series.drop_before(1 << 20), 2);
        assert_eq!(series.valid(), 0);
    }

    #[test]
    fn writing_nan_into_empty_space_allocates_nothing() {
        let (pool, mut series) = (pool(), SeriesData::default());
        series.write(&pool, 0, &[f32::NAN; 5000]);
        assert_eq!(series.chunk_count(), 0);
        assert_eq!(series.valid(), 0);
    }
}
