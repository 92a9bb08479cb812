//! One series' samples: fixed-size chunks of float32 slots on the grid.
//!
//! Chunk `c` holds slots `c * CHUNK_SLOTS .. (c + 1) * CHUNK_SLOTS`. Chunks
//! live in a [`ChunkMap`] sorted by key, so writes may land anywhere (before,
//! after or between stored data) and memory grows one chunk at a time;
//! nothing ever copies a whole series' samples. A chunk that was never written does not exist and
//! reads as NaN. A chunk is raw (slots from the store's [`ChunkPool`],
//! written in place) or sealed (compressed, `sealed.rs`): reads decode a
//! sealed chunk, and a write into one unseals it first, so every write
//! lands in raw slots and stays bit-exact.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use crate::engine::memory::chunks::{CHUNK_SLOTS, Chunk, ChunkPool, copy_counting};
pub use crate::engine::memory::sealed::EncodedChunk;
use crate::engine::memory::sealed::{Damage, MappedSeries, Sealed};

/// Mapped chunks a read must span before their bytes are asked for in one
/// go, to arrive while the first ones decode (`read_ahead`); the bytes of
/// a read of fewer are read in first, if never read before.
const READ_AHEAD_CHUNKS: usize = 16;

/// One chunk of a series.
enum Stored {
    /// Slots written in place.
    Raw(Chunk),
    /// Compressed; decoded to be read, unsealed to be written.
    Sealed(Sealed),
}

impl Stored {
    /// Calls `visit` with slots `from..to` of the chunk (decoding those of a
    /// sealed one into `buffer`).
    fn visit<R>(
        &self,
        from: usize,
        to: usize,
        buffer: &mut [f32; CHUNK_SLOTS],
        visit: impl FnOnce(&[f32]) -> R,
    ) -> Result<R, Damage> {
        match self {
            Stored::Raw(chunk) => Ok(visit(&chunk.as_slice()[from..to])),
            Stored::Sealed(sealed) => {
                sealed.decode_range_into(from..to, &mut buffer[from..to])?;
                Ok(visit(&buffer[from..to]))
            }
        }
    }

    fn valid(&self) -> u64 {
        match self {
            Stored::Raw(chunk) => count_valid(chunk.as_slice()),
            Stored::Sealed(sealed) => sealed.valid(),
        }
    }
}

/// How a series' chunks are held: raw chunks, and sealed chunks with the
/// bytes they take, in memory and in a mapped snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tiers {
    pub raw_chunks: usize,
    pub sealed_chunks: usize,
    pub sealed_bytes: usize,
    pub mapped_chunks: usize,
    pub mapped_bytes: usize,
}

/// A series' chunks by key: a vector sorted by key, 56 bytes a chunk. A
/// B-tree node keeps room for 11 chunks where most series hold a few (a
/// job's series two or three): a read-only open of 18,432 such series held
/// about 120 bytes a chunk. Appends (ticks, bulk loads) land at the end;
/// a chunk made before others moves the entries after it (a memmove of 56
/// bytes each), which only out-of-order writes before a series' newest
/// chunk pay for.
#[derive(Default)]
struct ChunkMap(Vec<(i64, Stored)>);

impl ChunkMap {
    /// The chunks of `keys` in order, keys strictly rising; sorts them
    /// (the last of equal keys kept) if they are not.
    fn from_chunks(mut chunks: Vec<(i64, Stored)>) -> ChunkMap {
        if !chunks.windows(2).all(|w| w[0].0 < w[1].0) {
            chunks.reverse();
            chunks.sort_by_key(|(key, _)| *key); // stable: the last given comes first
            chunks.dedup_by_key(|(key, _)| *key);
        }
        ChunkMap(chunks)
    }

    fn position(&self, key: i64) -> Result<usize, usize> {
        let at = self.first_at_or_after(key);
        match self.0.get(at) {
            Some(&(k, _)) if k == key => Ok(at),
            _ => Err(at),
        }
    }

    fn range(
        &self,
        keys: std::ops::RangeInclusive<i64>,
    ) -> impl DoubleEndedIterator<Item = (&i64, &Stored)> {
        let from = self.first_at_or_after(*keys.start());
        let to = keys
            .end()
            .checked_add(1)
            .map_or(self.0.len(), |end| self.first_at_or_after(end))
            .max(from);
        self.0[from..to].iter().map(|(k, s)| (k, s))
    }

    /// Where the first chunk with a key of at least `key` is. Most series
    /// hold a run of consecutive keys, where chunk `key - first key` is the
    /// one: looked at first, as a binary search over a long series' map
    /// waits on a cache miss at each of its steps.
    fn first_at_or_after(&self, key: i64) -> usize {
        let chunks = &self.0;
        let (Some(&(first, _)), Some(&(last, _))) = (chunks.first(), chunks.last()) else {
            return 0;
        };
        if key <= first {
            return 0;
        }
        if key > last {
            return chunks.len();
        }
        if let Some(guess) = key.checked_sub(first).and_then(|d| usize::try_from(d).ok())
            && chunks.get(guess).is_some_and(|&(k, _)| k == key)
        {
            return guess;
        }
        chunks.partition_point(|(k, _)| *k < key)
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = (&i64, &Stored)> {
        self.0.iter().map(|(k, s)| (k, s))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&i64, &mut Stored)> {
        self.0.iter_mut().map(|(k, s)| (&*k, s))
    }

    fn values(&self) -> impl Iterator<Item = &Stored> {
        self.0.iter().map(|(_, s)| s)
    }

    fn get_mut(&mut self, key: i64) -> Option<&mut Stored> {
        let at = self.position(key).ok()?;
        Some(&mut self.0[at].1)
    }

    fn contains_key(&self, key: i64) -> bool {
        self.position(key).is_ok()
    }

    /// Puts `stored` at `key`; returns the chunk it replaced.
    fn insert(&mut self, key: i64, stored: Stored) -> Option<Stored> {
        match self.position(key) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, stored)),
            Err(at) => {
                self.0.insert(at, (key, stored));
                None
            }
        }
    }

    /// Removes the chunks before `key` and returns them.
    fn take_before(&mut self, key: i64) -> Vec<(i64, Stored)> {
        let at = self.0.partition_point(|(k, _)| *k < key);
        let kept = self.0.split_off(at);
        std::mem::replace(&mut self.0, kept)
    }

    fn last_key(&self) -> Option<i64> {
        self.0.last().map(|(key, _)| *key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Default)]
pub struct SeriesData {
    /// Made on first use (`map`), from `mapped` if the series lies in a
    /// mapped snapshot: a read-only open makes no chunk it does not read.
    chunks: OnceLock<ChunkMap>,
    /// Its chunks in a mapped snapshot, until `chunks` is made from them
    /// (boxed: most series are not mapped, and every series pays the field).
    mapped: Option<Box<MappedSeries>>,
    /// Number of non-NaN slots, kept exact on every write.
    valid: u64,
    /// The raw chunk written last, so that writes into it (every tick until
    /// it fills) skip the map: its node is one more cache miss per write.
    hot: Option<HotChunk>,
    /// Written since the last seal pass (`seal`): its newest chunk may
    /// still be being written, so the pass leaves it raw.
    written: bool,
}

/// A raw chunk's key and slot memory, copied from the map. Valid while that
/// chunk stays raw in the map: every method that removes, replaces or seals
/// chunks clears `SeriesData::hot`, and all of them take `&mut self`.
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
    // Counted in u32 lanes (four a register at SSE2, where u64 counts took three instructions
    // a slot, 5% of sealing a chunk), a block of up to 2^16 slots at a time.
    values
        .chunks(1 << 16)
        .map(|block| u64::from(block.iter().map(|v| u32::from(!v.is_nan())).sum::<u32>()))
        .sum()
}

/// The slot `find` picks in the first chunk of `chunks` (in their order)
/// that holds a sample.
fn edge_sample<'a>(
    chunks: impl Iterator<Item = (&'a i64, &'a Stored)>,
    find: impl Fn(&[f32]) -> Option<usize>,
) -> Result<Option<i64>, Damage> {
    let mut buffer = [0f32; CHUNK_SLOTS];
    for (key, stored) in chunks {
        if stored.valid() == 0 {
            continue;
        }
        if let Stored::Sealed(sealed) = stored
            && sealed.is_unread()
            && let Some((file, range)) = sealed.mapped_range()
        {
            (file.read_in)(range);
        }
        if let Some(slot) = stored.visit(0, CHUNK_SLOTS, &mut buffer, &find)? {
            return Ok(Some(key * CHUNK_SLOTS as i64 + slot as i64));
        }
    }
    Ok(None)
}

impl SeriesData {
    /// The chunks, made from the mapped snapshot on the first call.
    fn map(&self) -> &ChunkMap {
        self.chunks.get_or_init(|| match &self.mapped {
            Some(mapped) => ChunkMap::from_chunks(
                mapped
                    .chunks()
                    .into_iter()
                    .map(|(key, sealed)| (key, Stored::Sealed(sealed)))
                    .collect(),
            ),
            None => ChunkMap::default(),
        })
    }

    /// The chunks, or why they could not be made: a series of a format 5
    /// snapshot whose index entries fail their check on first use has no
    /// chunks, and every read of it reports that.
    fn checked_map(&self) -> Result<&ChunkMap, Damage> {
        let map = self.map();
        match self.mapped.as_deref().and_then(MappedSeries::damage) {
            Some(damage) => Err(damage.clone()),
            None => Ok(map),
        }
    }

    fn map_mut(&mut self) -> &mut ChunkMap {
        self.map();
        // Kept while it holds damage: writes (a read-only store replaying
        // its log tail) must not make the series read as if whole.
        if self.mapped.as_ref().is_some_and(|m| m.damage().is_none()) {
            self.mapped = None;
        }
        self.chunks.get_mut().expect("made just now")
    }

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
            _ => match self.map_mut().get_mut(key) {
                Some(Stored::Raw(chunk)) => chunk.slots(),
                Some(stored @ Stored::Sealed(_)) => {
                    let Stored::Sealed(sealed) = &*stored else {
                        unreachable!("matched as sealed")
                    };
                    let mut chunk = pool.chunk_with(0, &[]).0;
                    // A writable store checked every chunk when it loaded
                    // them. A read-only one replaying its log tail over a
                    // mapped snapshot can meet a damaged chunk: the chunk
                    // stays as it is, and every read of it reports the
                    // damage (the write could only be seen through it).
                    if sealed.decode_into(chunk.as_mut_slice()).is_err() {
                        return 0;
                    }
                    let slots = chunk.slots();
                    *stored = Stored::Raw(chunk);
                    slots
                }
                None => {
                    let (chunk, added) = pool.chunk_with(offset, part);
                    // NaN means missing: writing only NaN where nothing is
                    // stored changes nothing, so the chunk goes straight back.
                    if added == 0 {
                        return 0;
                    }
                    let slots = chunk.slots();
                    self.map_mut().insert(key, Stored::Raw(chunk));
                    self.valid += added;
                    self.hot = Some(HotChunk { key, slots });
                    self.written = true;
                    return slots.as_ptr() as usize;
                }
            },
        };
        // SAFETY: `slots` is the memory of raw chunk `key`, which is in the
        // map (looked up or unsealed just now, or kept as `hot`, which is
        // cleared whenever a chunk leaves the map or is sealed); `&mut self`
        // makes the access exclusive.
        let chunk = unsafe { std::slice::from_raw_parts_mut(slots.as_ptr(), CHUNK_SLOTS) };
        let target = &mut chunk[offset..offset + part.len()];
        let removed = count_valid(target);
        let added = copy_counting(target, part);
        self.valid = self.valid + added - removed;
        self.hot = Some(HotChunk { key, slots });
        self.written = true;
        slots.as_ptr() as usize
    }

    /// Appends slots `first .. first + len` to `out`, NaN where the series
    /// has no chunk. Each slot is written once: sealed chunks are decoded
    /// straight into `out`'s spare room, which nothing zeroes first (zeroing
    /// a long read's buffer ahead was a pass over memory, a tenth of reading
    /// the emmy job's series whole). Fails only on a mapped chunk that fails
    /// its check, leaving `out` longer by less than `len`.
    pub fn read_appending(&self, first: i64, len: usize, out: &mut Vec<f32>) -> Result<(), Damage> {
        if len == 0 {
            return Ok(());
        }
        let base = out.len();
        out.reserve(len);
        for (at, slots, stored) in self.chunks_read(first, len)? {
            out.resize(base + at.start, f32::NAN);
            match stored {
                Stored::Raw(chunk) => out.extend_from_slice(&chunk.as_slice()[slots]),
                Stored::Sealed(sealed) => {
                    let room = &mut out.spare_capacity_mut()[..at.len()];
                    sealed.decode_range_uninit(slots, room)?;
                    // SAFETY: the decode wrote all `at.len()` slots after the
                    // end of `out` (reserved above).
                    unsafe { out.set_len(base + at.end) };
                }
            }
        }
        out.resize(base + len, f32::NAN);
        Ok(())
    }

    /// The chunks a read of `len` (at least 1) slots from slot `first`
    /// takes slots from, in order: (where in the read, which of the chunk's
    /// slots, the chunk), their bytes asked for ahead of the read.
    fn chunks_read(
        &self,
        first: i64,
        len: usize,
    ) -> Result<impl Iterator<Item = (Range<usize>, Range<usize>, &Stored)>, Damage> {
        let map = self.checked_map()?;
        let end = first + len as i64; // exclusive; read_slots bounds len
        let (first_key, _) = split(first);
        let (last_key, _) = split(end - 1);
        self.read_ahead(first_key..=last_key);
        // A read of a few chunks at random places waits on memory: each
        // chunk's bytes, asked for all at once, arrive while the first
        // decodes.
        if last_key - first_key < READ_AHEAD_CHUNKS as i64 - 1 {
            for (_, stored) in map.range(first_key..=last_key) {
                if let Stored::Sealed(sealed) = stored {
                    sealed.prefetch();
                }
            }
        }
        Ok(map.range(first_key..=last_key).map(move |(&key, stored)| {
            let chunk_start = key * CHUNK_SLOTS as i64;
            let from = first.max(chunk_start);
            let to = end.min(chunk_start + CHUNK_SLOTS as i64);
            let at = (from - first) as usize..(to - first) as usize;
            let slots = (from - chunk_start) as usize..(to - chunk_start) as usize;
            (at, slots, stored)
        }))
    }

    /// Before a read of mapped chunks: asks for the bytes of many (one run
    /// of the snapshot: a series' chunks lie together) to be read in at
    /// once, rather than window by window as the decoding touches them;
    /// reads those of a few in now if any was never read.
    fn read_ahead(&self, keys: std::ops::RangeInclusive<i64>) {
        let mut mapped = self
            .map()
            .range(keys)
            .filter_map(|(_, stored)| match stored {
                Stored::Sealed(sealed) => sealed.mapped_range().map(|m| (m, sealed.is_unread())),
                Stored::Raw(_) => None,
            });
        let Some(((file, first), unread)) = mapped.next() else {
            return;
        };
        let (mut end, mut count, mut any_unread) = (first.end, 1, unread);
        for ((_, range), unread) in mapped {
            end = end.max(range.end);
            count += 1;
            any_unread |= unread;
        }
        if count >= READ_AHEAD_CHUNKS {
            (file.will_need)(first.start..end);
        } else if any_unread {
            (file.read_in)(first.start..end);
        }
    }

    /// Calls `visit(offset, values)` for every stored run of slots inside
    /// `first .. first + len`, in slot order; `offset` is relative to `first`.
    pub fn for_each_piece(
        &self,
        first: i64,
        len: usize,
        mut visit: impl FnMut(usize, &[f32]),
    ) -> Result<(), Damage> {
        if len == 0 {
            return Ok(());
        }
        let end = first + len as i64; // exclusive; read_slots bounds len
        let (first_key, _) = split(first);
        let (last_key, _) = split(end - 1);
        let map = self.checked_map()?;
        self.read_ahead(first_key..=last_key);
        let mut buffer = [0f32; CHUNK_SLOTS];
        for (&key, stored) in map.range(first_key..=last_key) {
            let chunk_start = key * CHUNK_SLOTS as i64;
            let from = first.max(chunk_start);
            let to = end.min(chunk_start + CHUNK_SLOTS as i64);
            let (a, b) = ((from - chunk_start) as usize, (to - chunk_start) as usize);
            stored.visit(a, b, &mut buffer, |values| {
                visit((from - first) as usize, values);
            })?;
        }
        Ok(())
    }

    /// Appends every chunk's encoded bytes to `out`, in key order, and
    /// describes each in `index` (offsets relative to `base` plus the
    /// position in `out`): sealed chunks as they are, raw ones encoded now.
    pub fn encode_chunks(&self, base: usize, out: &mut Vec<u8>, index: &mut Vec<EncodedChunk>) {
        for (&key, stored) in self.map().iter() {
            let start = out.len();
            match stored {
                Stored::Raw(chunk) => crate::engine::memory::codec::encode(chunk.as_slice(), out),
                Stored::Sealed(sealed) => out.extend_from_slice(sealed.bytes()),
            }
            index.push(EncodedChunk {
                key,
                offset: base + start,
                len: out.len() - start,
                crc: crc32fast::hash(&out[start..]),
                valid: stored.valid(),
            });
        }
    }

    /// Adds a whole raw chunk read from a snapshot, given as its
    /// little-endian bytes (replacing any chunk with its key).
    pub fn load_chunk(&mut self, pool: &Arc<ChunkPool>, key: i64, bytes: &[u8]) {
        let (chunk, valid) = pool.chunk_from_le_bytes(bytes);
        self.insert(key, Stored::Raw(chunk), valid);
    }

    /// Adds a sealed chunk read from a snapshot (replacing any chunk with
    /// its key).
    pub fn load_sealed(&mut self, key: i64, sealed: Sealed) {
        let valid = sealed.valid();
        self.insert(key, Stored::Sealed(sealed), valid);
    }

    /// Hands the series its chunks in a mapped snapshot, holding `valid`
    /// samples: they are made when the series is first used. A series that
    /// holds chunks already takes them now.
    pub fn load_mapped(&mut self, mapped: MappedSeries, valid: u64) {
        if self.mapped.is_some() || self.chunks.get().is_some_and(|m| !m.is_empty()) {
            for (key, sealed) in mapped.chunks() {
                self.load_sealed(key, sealed);
            }
            if mapped.damage().is_some() {
                // Its chunks are unknown: reads report it (`checked_map`).
                self.map();
                self.mapped = Some(Box::new(mapped));
            }
            return;
        }
        self.hot = None;
        self.chunks = OnceLock::new();
        self.mapped = Some(Box::new(mapped));
        self.valid = valid;
    }

    fn insert(&mut self, key: i64, stored: Stored, valid: u64) {
        self.hot = None;
        if let Some(old) = self.map_mut().insert(key, stored) {
            self.valid -= old.valid();
        }
        self.valid += valid;
    }

    /// Seals every raw chunk but the newest (the one ticks and appends
    /// write next), and the newest too if nothing was written since the
    /// last pass; gives the memory of their slots back to the system.
    /// Returns chunks sealed.
    pub fn seal(&mut self, pool: &Arc<ChunkPool>, freed: &mut Vec<Chunk>) -> usize {
        let keep_newest = std::mem::take(&mut self.written);
        if self.chunks.get().is_none() {
            return 0; // nothing made: all of it lies sealed in a mapped snapshot
        }
        let newest = self.map().last_key();
        let mut sealed = 0;
        let hot = &mut self.hot;
        for (&key, stored) in self.chunks.get_mut().expect("made").iter_mut() {
            if keep_newest && Some(key) == newest {
                continue;
            }
            if let Stored::Raw(chunk) = stored {
                let valid = count_valid(chunk.as_slice());
                let new = Stored::Sealed(Sealed::seal(pool, chunk.as_slice(), valid));
                if let Stored::Raw(old) = std::mem::replace(stored, new) {
                    freed.push(old);
                }
                if hot.is_some_and(|hot| hot.key == key) {
                    *hot = None;
                }
                sealed += 1;
            }
        }
        sealed
    }

    /// Removes every slot before `first_kept`: whole chunks are freed, the
    /// slots of a chunk that straddles it become NaN. Returns chunks freed.
    pub fn drop_before(&mut self, pool: &Arc<ChunkPool>, first_kept: i64) -> usize {
        let (key, offset) = split(first_kept);
        self.hot = None;
        let dropped = self.map_mut().take_before(key);
        let freed = dropped.len();
        for (_, stored) in &dropped {
            self.valid -= stored.valid();
        }
        drop(dropped);
        if offset > 0 && self.map().contains_key(key) {
            // Unsealed if sealed: the write is the one place that does it.
            let head = vec![f32::NAN; offset];
            self.write(pool, key * CHUNK_SLOTS as i64, &head);
            self.hot = None;
        }
        freed
    }

    /// Each chunk's first slot and the bytes it holds, in order.
    pub fn chunk_sizes(&self) -> impl Iterator<Item = (i64, usize)> + '_ {
        self.map().iter().map(|(key, stored)| {
            let bytes = match stored {
                Stored::Raw(_) => crate::engine::memory::chunks::CHUNK_BYTES,
                Stored::Sealed(sealed) => sealed.bytes().len(),
            };
            (key * CHUNK_SLOTS as i64, bytes)
        })
    }

    /// Non-NaN slots stored.
    pub fn valid(&self) -> u64 {
        self.valid
    }

    #[cfg(test)]
    pub fn chunk_count(&self) -> usize {
        match (self.chunks.get(), &self.mapped) {
            (None, Some(mapped)) => mapped.size().0,
            _ => self.map().len(),
        }
    }

    /// How the chunks are held.
    pub fn tiers(&self) -> Tiers {
        let mut tiers = Tiers::default();
        if let (None, Some(mapped)) = (self.chunks.get(), &self.mapped) {
            (tiers.mapped_chunks, tiers.mapped_bytes) = mapped.size();
            return tiers;
        }
        for stored in self.map().values() {
            match stored {
                Stored::Raw(_) => tiers.raw_chunks += 1,
                Stored::Sealed(sealed) if sealed.is_mapped() => {
                    tiers.mapped_chunks += 1;
                    tiers.mapped_bytes += sealed.bytes().len();
                }
                Stored::Sealed(sealed) => {
                    tiers.sealed_chunks += 1;
                    tiers.sealed_bytes += sealed.bytes().len();
                }
            }
        }
        tiers
    }

    /// The first slot holding a sample, if any.
    pub fn first_sample_slot(&self) -> Result<Option<i64>, Damage> {
        edge_sample(self.checked_map()?.iter(), |slots| {
            slots.iter().position(|v| !v.is_nan())
        })
    }

    /// The last slot holding a sample, if any.
    pub fn last_sample_slot(&self) -> Result<Option<i64>, Damage> {
        edge_sample(self.checked_map()?.iter().rev(), |slots| {
            slots.iter().rposition(|v| !v.is_nan())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::chunks::CHUNK_BYTES;
    use crate::engine::memory::sealed::{MappedFile, MappedIndex};

    #[test]
    fn chunk_lookups_agree_with_a_scan_for_runs_gaps_and_extreme_keys() {
        let pool = pool();
        let chunk = |key: i64| (key, Stored::Raw(pool.chunk_with(0, &[1.0]).0));
        let layouts: [&[i64]; 5] = [
            &[],
            &[7],
            &[3, 4, 5, 6, 7, 8],
            &[-9, -8, -2, 0, 1, 2, 40, 41, 1_000],
            &[i64::MIN, -1, 0, i64::MAX],
        ];
        for keys in layouts {
            let map = ChunkMap::from_chunks(keys.iter().map(|&k| chunk(k)).collect());
            let mut probes = vec![i64::MIN, i64::MIN + 1, -10, -3, -1, 0, 2, 9, 39, 42, 999];
            probes.extend([1_000, 1_001, i64::MAX - 1, i64::MAX]);
            for &key in &probes {
                let scan = keys.iter().position(|&k| k >= key).unwrap_or(keys.len());
                assert_eq!(map.first_at_or_after(key), scan, "keys {keys:?}, key {key}");
                let found = keys.binary_search(&key);
                assert_eq!(map.position(key), found, "keys {keys:?}, key {key}");
                for &end in &probes {
                    let got: Vec<i64> = map.range(key..=end).map(|(k, _)| *k).collect();
                    let want: Vec<i64> = keys
                        .iter()
                        .copied()
                        .filter(|k| (key..=end).contains(k))
                        .collect();
                    assert_eq!(got, want, "keys {keys:?}, range {key}..={end}");
                }
            }
        }
    }

    #[test]
    fn the_first_and_last_samples_are_found_past_empty_chunks_and_nan_ends() {
        let (pool, mut series) = (pool(), SeriesData::default());
        assert_eq!(series.last_sample_slot(), Ok(None));
        assert_eq!(series.first_sample_slot(), Ok(None));
        series.write(&pool, -5, &[1.0, 2.0]);
        series.write(&pool, 3000, &[f32::NAN]);
        assert_eq!(series.last_sample_slot(), Ok(Some(-4)));
        assert_eq!(series.first_sample_slot(), Ok(Some(-5)));
        series.write_one(&pool, 2047, 0.0);
        assert_eq!(series.last_sample_slot(), Ok(Some(2047)));
        series.write_one(&pool, -5000, 1.0);
        series.write_one(&pool, -5000, f32::NAN); // a chunk left with no sample
        assert_eq!(series.first_sample_slot(), Ok(Some(-5)));
    }

    #[test]
    fn writes_after_the_last_written_chunk_is_dropped_or_replaced_land_in_the_map() {
        // Each case leaves the chunk written last (the one `hot` remembers)
        // freed; the next write into its key must reach the map's chunk.
        let (pool, mut series) = (pool(), SeriesData::default());
        series.write_one(&pool, 10, 1.0);
        series.drop_before(&pool, CHUNK_SLOTS as i64);
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

    /// An index over chunks laid out back to back in one in-memory "file",
    /// which counts how often chunks were made.
    struct TestIndex {
        file: Arc<MappedFile>,
        chunks: Vec<EncodedChunk>,
        made: std::sync::atomic::AtomicUsize,
        /// The file's `will_need` and `read_in` calls, in order.
        asked: Asked,
    }

    type Asked = Arc<std::sync::Mutex<Vec<(&'static str, std::ops::Range<usize>)>>>;

    impl MappedIndex for TestIndex {
        fn chunks(
            &self,
            at: usize,
            count: usize,
            bytes: usize,
        ) -> Result<Vec<EncodedChunk>, Damage> {
            self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let chunks = &self.chunks[at..at + count];
            if chunks.iter().map(|c| c.len).sum::<usize>() != bytes {
                return Err(Damage {
                    file: "test".to_owned(),
                    offset: at as u64,
                    reason: "index entries disagree with the directory".to_owned(),
                });
            }
            Ok(chunks.to_vec())
        }

        fn file(&self) -> &Arc<MappedFile> {
            &self.file
        }
    }

    fn test_index(contents: &[(i64, Vec<f32>)]) -> Arc<TestIndex> {
        let (mut bytes, mut chunks) = (Vec::new(), Vec::new());
        for (key, slots) in contents {
            let offset = bytes.len();
            crate::engine::memory::codec::encode(slots, &mut bytes);
            chunks.push(EncodedChunk {
                key: *key,
                offset,
                len: bytes.len() - offset,
                crc: crc32fast::hash(&bytes[offset..]),
                valid: count_valid(slots),
            });
        }
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (need, read_in) = (Arc::clone(&asked), Arc::clone(&asked));
        let file = Arc::new(MappedFile {
            bytes: Box::new(bytes),
            name: "test".to_owned(),
            will_need: Box::new(move |range| need.lock().unwrap().push(("will_need", range))),
            read_in: Box::new(move |range| read_in.lock().unwrap().push(("read_in", range))),
        });
        let made = std::sync::atomic::AtomicUsize::new(0);
        Arc::new(TestIndex {
            file,
            chunks,
            made,
            asked,
        })
    }

    #[test]
    fn mapped_chunks_are_made_on_first_use_and_counted_from_the_start() {
        let pool = pool();
        let ramp: Vec<f32> = (0..CHUNK_SLOTS).map(|i| i as f32 * 0.5).collect();
        let mut holey = vec![f32::NAN; CHUNK_SLOTS];
        holey[7] = -0.0;
        let index = test_index(&[(-1, ramp.clone()), (3, holey)]);
        let bytes: usize = index.chunks.iter().map(|c| c.len).sum();
        let shared: Arc<dyn MappedIndex> = index.clone();

        let mut series = SeriesData::default();
        series.load_mapped(MappedSeries::new(&pool, &shared, 0, 2, bytes), 1025);
        // Nothing made yet, yet stats and counts see the chunks.
        let tiers = series.tiers();
        assert_eq!((tiers.mapped_chunks, tiers.mapped_bytes), (2, bytes));
        assert_eq!(
            (pool.usage().mapped_chunks, pool.usage().mapped_bytes),
            (2, bytes)
        );
        assert_eq!((series.valid(), series.chunk_count()), (1025, 2));
        assert_eq!(index.made.load(std::sync::atomic::Ordering::Relaxed), 0);

        // The first read makes them, once; every bit reads back.
        let got = read(&series, -(CHUNK_SLOTS as i64), CHUNK_SLOTS);
        assert_eq!(bits(&got), bits(&ramp));
        assert_eq!(
            bits(&read(&series, 3 * 1024 + 6, 2)),
            bits(&[f32::NAN, -0.0])
        );
        assert_eq!(index.made.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(series.tiers(), tiers);
        assert_eq!(pool.usage().mapped_bytes, bytes);

        // A write unseals its chunk; the counts follow it.
        series.write_one(&pool, 3 * 1024, 9.0);
        assert_eq!(series.valid(), 1026);
        assert_eq!(pool.usage().mapped_chunks, 1);
        drop(series);
        assert_eq!(
            (pool.usage().mapped_chunks, pool.usage().mapped_bytes),
            (0, 0)
        );

        // A series never used gives its count back when dropped.
        let mut unused = SeriesData::default();
        unused.load_mapped(
            MappedSeries::new(&pool, &shared, 1, 1, index.chunks[1].len),
            1,
        );
        assert_eq!(pool.usage().mapped_chunks, 1);
        drop(unused);
        assert_eq!(
            (pool.usage().mapped_chunks, pool.usage().mapped_bytes),
            (0, 0)
        );
        assert_eq!(index.made.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn unread_mapped_chunks_are_read_in_before_a_small_read_and_asked_for_before_a_long_one() {
        let pool = pool();
        let contents: Vec<(i64, Vec<f32>)> = (0..20)
            .map(|k| {
                (
                    k,
                    (0..CHUNK_SLOTS)
                        .map(|i| (k * 7 + i as i64) as f32)
                        .collect(),
                )
            })
            .collect();
        let index = test_index(&contents);
        let bytes: usize = index.chunks.iter().map(|c| c.len).sum();
        let shared: Arc<dyn MappedIndex> = index.clone();
        let mut series = SeriesData::default();
        series.load_mapped(MappedSeries::new(&pool, &shared, 0, 20, bytes), 20 * 1024);
        let span = |from: usize, to: usize| {
            index.chunks[from].offset..index.chunks[to].offset + index.chunks[to].len
        };
        let asked = || std::mem::take(&mut *index.asked.lock().unwrap());

        // A read across chunks 3 and 4, never read: both read in at once.
        let got = read(&series, 3 * 1024 + 1000, 100);
        assert_eq!(bits(&got[..24]), bits(&contents[3].1[1000..]));
        assert_eq!(asked(), vec![("read_in", span(3, 4))]);
        // Read once, they are in memory: nothing asked again.
        read(&series, 3 * 1024 + 10, 1100);
        assert_eq!(asked(), vec![]);
        // Chunks 4 and 5: 5 was never read.
        read(&series, 4 * 1024, 2048);
        assert_eq!(asked(), vec![("read_in", span(4, 5))]);
        // Where the samples start and end: the edge chunks, one at a time.
        assert_eq!(series.first_sample_slot(), Ok(Some(0)));
        assert_eq!(series.last_sample_slot(), Ok(Some(20 * 1024 - 1)));
        assert_eq!(
            asked(),
            vec![("read_in", span(0, 0)), ("read_in", span(19, 19))]
        );
        // A read of 16 chunks or more asks for all of them to be read ahead,
        // read before or not.
        let all = read(&series, 0, 20 * 1024);
        assert_eq!(bits(&all[..1024]), bits(&contents[0].1));
        assert_eq!(asked(), vec![("will_need", span(0, 19))]);
        read(&series, 2 * 1024, 3 * 1024);
        assert_eq!(asked(), vec![]);
    }

    #[test]
    fn a_series_whose_index_entries_fail_reads_as_damaged_even_after_writes() {
        let pool = pool();
        let ramp: Vec<f32> = (0..CHUNK_SLOTS).map(|i| i as f32).collect();
        let index = test_index(&[(0, ramp.clone()), (1, ramp)]);
        let bytes: usize = index.chunks.iter().map(|c| c.len).sum();
        let shared: Arc<dyn MappedIndex> = index.clone();
        let mut series = SeriesData::default();
        // One byte more than the entries list: the index refuses them.
        series.load_mapped(MappedSeries::new(&pool, &shared, 0, 2, bytes + 1), 2048);
        assert_eq!(pool.usage().mapped_chunks, 2);
        let mut out = Vec::new();
        let damage = series.read_appending(5, 10, &mut out).unwrap_err();
        assert_eq!(damage.reason, "index entries disagree with the directory");
        assert_eq!(series.first_sample_slot(), Err(damage.clone()));
        assert_eq!(series.last_sample_slot(), Err(damage.clone()));
        assert_eq!(series.for_each_piece(0, 10, |_, _| {}), Err(damage.clone()));
        // No chunk was made; the pool no longer counts the listed ones.
        assert_eq!(
            (pool.usage().mapped_chunks, pool.usage().mapped_bytes),
            (0, 0)
        );
        assert_eq!(series.tiers(), Tiers::default());
        // A write (a log tail replayed over the snapshot) lands, but the
        // series still reads as damaged rather than as that write alone.
        series.write_one(&pool, 3, 7.0);
        assert_eq!(series.read_appending(0, 10, &mut out), Err(damage.clone()));
        drop(series);
        assert_eq!(pool.usage().mapped_chunks, 0);
        assert_eq!(index.made.load(std::sync::atomic::Ordering::Relaxed), 1);

        // Damaged entries handed to a series that holds chunks already
        // (taken at once): its reads report them too.
        let mut holding = SeriesData::default();
        holding.write_one(&pool, 3, 7.0);
        holding.load_mapped(MappedSeries::new(&pool, &shared, 0, 2, bytes + 1), 2048);
        assert_eq!(holding.read_appending(0, 10, &mut out), Err(damage));
        assert_eq!(index.made.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    fn pool() -> Arc<ChunkPool> {
        Arc::new(ChunkPool::default())
    }

    fn read(series: &SeriesData, first: i64, len: usize) -> Vec<f32> {
        let mut out = Vec::new();
        series.read_appending(first, len, &mut out).unwrap();
        out
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn a_read_appends_every_slot_nan_where_no_chunk_is() {
        let (pool, mut series) = (pool(), SeriesData::default());
        // Chunks 1 and 3 (partly written) sealed, 4 raw; 0, 2 and 5 never made.
        let head: Vec<f32> = (0..1024).map(|i| i as f32).collect();
        series.write(&pool, 1024, &head);
        series.write(&pool, 3 * 1024 + 10, &[1.5, -0.0]);
        // The first pass keeps the newest chunk raw; the second, with no write between, seals it.
        assert_eq!(series.seal(&pool, &mut Vec::new()), 1);
        assert_eq!(series.seal(&pool, &mut Vec::new()), 1);
        series.write(&pool, 4 * 1024 + 1, &[7.25]);
        assert_eq!(
            (series.tiers().sealed_chunks, series.tiers().raw_chunks),
            (2, 1)
        );
        let mut expected = vec![f32::NAN; 6 * 1024];
        expected[1024..2048].copy_from_slice(&head);
        expected[3 * 1024 + 10] = 1.5;
        expected[3 * 1024 + 11] = -0.0;
        expected[4 * 1024 + 1] = 7.25;
        for (first, len) in [(0, 6 * 1024), (1000, 3100), (3 * 1024 + 5, 1100), (5000, 1)] {
            // What the buffer held stays; the read follows it.
            let mut out = vec![3.0f32; 5];
            series.read_appending(first as i64, len, &mut out).unwrap();
            assert_eq!(bits(&out[..5]), bits(&[3.0; 5]), "{first}+{len}");
            assert_eq!(
                bits(&out[5..]),
                bits(&expected[first..first + len]),
                "{first}+{len}"
            );
        }
        let mut out = vec![3.0f32; 2];
        series.read_appending(1000, 0, &mut out).unwrap();
        assert_eq!(bits(&out), bits(&[3.0; 2]));
    }

    #[test]
    fn sealed_chunks_read_back_every_bit_and_unseal_when_written() {
        let (pool, mut series) = (pool(), SeriesData::default());
        let mut values: Vec<f32> = (0..2500).map(|i| (i % 97) as f32 * 0.25).collect();
        values[5] = f32::from_bits(0x7FC0_0001); // a NaN with a payload
        values[6] = -0.0;
        values[1500] = f32::from_bits(0x0000_0001); // a subnormal
        series.write(&pool, 0, &values);
        // Chunks 0 and 1 seal; chunk 2, written last, stays raw.
        assert_eq!(series.seal(&pool, &mut Vec::new()), 2);
        let tiers = series.tiers();
        assert_eq!((tiers.raw_chunks, tiers.sealed_chunks), (1, 2));
        assert_eq!(pool.usage().in_use, CHUNK_BYTES);
        assert_eq!(pool.usage().sealed_bytes, tiers.sealed_bytes);
        assert!(tiers.sealed_bytes < 2 * CHUNK_BYTES / 2, "{tiers:?}");
        assert_eq!(bits(&read(&series, 0, 2500)), bits(&values));
        assert_eq!(bits(&read(&series, 1000, 100)), bits(&values[1000..1100]));
        let mut pieces = Vec::new();
        series
            .for_each_piece(1000, 100, |at, v| pieces.push((at, bits(v))))
            .unwrap();
        let expected = vec![
            (0, bits(&values[1000..1024])),
            (24, bits(&values[1024..1100])),
        ];
        assert_eq!(pieces, expected);
        assert_eq!(series.valid(), 2499);
        assert_eq!(series.first_sample_slot(), Ok(Some(0)));
        // Nothing was written since: the last raw chunk seals too.
        assert_eq!(series.seal(&pool, &mut Vec::new()), 1);
        assert_eq!(pool.usage().in_use, 0);
        // A write into a sealed chunk unseals it and keeps the rest.
        series.write_one(&pool, 1030, 42.0);
        values[1030] = 42.0;
        assert_eq!(series.tiers().raw_chunks, 1);
        assert_eq!(bits(&read(&series, 0, 2500)), bits(&values));
        // A cut inside a sealed chunk blanks its head.
        series.drop_before(&pool, 2100);
        assert_eq!(series.valid(), 400);
        let got = read(&series, 2048, 452);
        assert!(got[..52].iter().all(|v| v.is_nan()));
        assert_eq!(bits(&got[52..]), bits(&values[2100..]));
        assert_eq!(series.last_sample_slot(), Ok(Some(2499)));
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
        assert_eq!(series.drop_before(&pool, 1500), 1);
        assert_eq!(series.chunk_count(), 2);
        assert_eq!(series.valid(), 1500);
        let got = read(&series, 1020, 1000);
        assert!(got[..480].iter().all(|v| v.is_nan()));
        assert_eq!(got[480], 1500.0);
        assert_eq!(series.drop_before(&pool, -5), 0);
        assert_eq!(series.drop_before(&pool, 1 << 20), 2);
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
