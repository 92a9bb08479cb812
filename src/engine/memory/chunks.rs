//! Memory for series chunks: a per-store pool of 2 MiB slabs cut into
//! 4 KiB slots.
//!
//! Why not one heap allocation per chunk: slots are exactly one chunk long
//! (no allocator header, no size class: a 4 KiB chunk behind an `Arc` costs
//! 5 KiB in mimalloc), so the pool knows exactly how many bytes the data
//! holds, which the memory limit needs; and a new slab is mapped with one
//! `madvise` instead of one page fault per 4 KiB, which is most of the cost
//! of a bulk load into fresh memory. Transparent huge pages were measured
//! and rejected: on this project's machines, first-touch of huge pages ran
//! 3x slower than small pages (docs/decisions.md).
//!
//! Invariants: a slot is owned by at most one [`Chunk`] at a time (it comes
//! either from the free list or from the untouched end of the newest slab);
//! slabs live as long as the pool, and every chunk holds the pool alive.
//! Freed slots go back to the free list; slab memory is returned to the
//! system when the pool (the store) is dropped.

use std::alloc::{Layout, handle_alloc_error};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Slots per chunk: 4 KiB of float32, small enough that a partly filled last
/// chunk wastes little, large enough that the chunk map stays shallow.
pub const CHUNK_SLOTS: usize = 1024;
/// Bytes of sample data in one chunk.
pub const CHUNK_BYTES: usize = CHUNK_SLOTS * std::mem::size_of::<f32>();
/// Bytes per slab: 512 chunks.
pub const SLAB_BYTES: usize = 2 << 20;
const CHUNKS_PER_SLAB: usize = SLAB_BYTES / CHUNK_BYTES;

struct Slab(NonNull<f32>);

impl Slab {
    /// Maps a slab straight from the system rather than through malloc:
    /// glibc serves 2 MiB requests from mmap or from its heaps depending on
    /// what the process freed before (its mmap threshold moves), and from a
    /// worker thread's heaps they came out at half the speed. A mapping is
    /// the same every time.
    fn new() -> Slab {
        // SAFETY: a fresh private anonymous mapping; the kernel picks the
        // address and zero-fills the pages.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SLAB_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let layout = Layout::from_size_align(SLAB_BYTES, 4096).expect("constant layout is valid");
        if ptr == libc::MAP_FAILED {
            handle_alloc_error(layout)
        }
        let Some(ptr) = NonNull::new(ptr.cast::<f32>()) else {
            handle_alloc_error(layout)
        };
        prefault(ptr);
        Slab(ptr)
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: mapped in `Slab::new` with this length; unmapped only here.
        unsafe {
            libc::munmap(self.0.as_ptr().cast(), SLAB_BYTES);
        }
    }
}

#[cfg(target_os = "linux")]
fn prefault(ptr: NonNull<f32>) {
    // MADV_POPULATE_WRITE (Linux 5.14): map every page of the slab in one
    // call instead of one fault per page. Advice only: older kernels answer
    // EINVAL and the pages then fault in on first write, so the result is
    // deliberately ignored.
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    // SAFETY: the range is one live allocation of SLAB_BYTES, page-aligned;
    // populating does not change its contents.
    unsafe {
        libc::madvise(ptr.as_ptr().cast(), SLAB_BYTES, MADV_POPULATE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn prefault(_ptr: NonNull<f32>) {}

#[derive(Default)]
struct PoolState {
    slabs: Vec<Slab>,
    /// Slots of the newest slab handed out so far.
    used_in_newest: usize,
    free: Vec<NonNull<f32>>,
    /// A slab mapped ahead of need by [`ChunkPool::reserve`]; it becomes the
    /// newest when the newest is used up.
    spare: Option<Slab>,
}

impl PoolState {
    /// Chunks that can be handed out without mapping memory.
    fn room(&self) -> usize {
        let in_newest = match self.slabs.len() {
            0 => 0,
            _ => CHUNKS_PER_SLAB - self.used_in_newest,
        };
        let in_spare = if self.spare.is_some() {
            CHUNKS_PER_SLAB
        } else {
            0
        };
        self.free.len() + in_newest + in_spare
    }
}

/// Copies `source` into `target` and returns how many of the values
/// written are not NaN (one pass; the compiler vectorises it).
pub fn copy_counting(target: &mut [f32], source: &[f32]) -> u64 {
    let mut valid = 0u64;
    for (t, s) in target.iter_mut().zip(source) {
        *t = *s;
        valid += u64::from(!s.is_nan());
    }
    valid
}

/// Hands out chunk slots. One per store; shared by its series. Also counts
/// the sealed chunks' bytes (`sealed.rs`), so that one place knows what the
/// store's data holds.
#[derive(Default)]
pub struct ChunkPool {
    state: Mutex<PoolState>,
    sealed_bytes: AtomicUsize,
    sealed_chunks: AtomicUsize,
    mapped_bytes: AtomicUsize,
    mapped_chunks: AtomicUsize,
}

// SAFETY: the raw pointers in PoolState refer to slab memory owned by the
// pool, and are only touched under the mutex.
unsafe impl Send for ChunkPool {}
unsafe impl Sync for ChunkPool {}

/// Sizes of a pool, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Bytes reserved from the system in slabs.
    pub reserved: usize,
    /// Bytes in slots currently holding a chunk.
    pub in_use: usize,
    /// Sealed chunks in memory, and the bytes they hold.
    pub sealed_chunks: usize,
    pub sealed_bytes: usize,
    /// Sealed chunks left in a mapped snapshot, and their bytes (in the
    /// page cache once read, not in the heap).
    pub mapped_chunks: usize,
    pub mapped_bytes: usize,
}

impl PoolUsage {
    /// Bytes the data holds: raw chunks' slots and sealed chunks' bytes,
    /// in memory and mapped.
    pub fn data_bytes(&self) -> usize {
        self.in_use + self.sealed_bytes + self.mapped_bytes
    }
}

impl ChunkPool {
    /// A chunk holding `part` at `offset` and NaN in every other slot, and
    /// the number of values in `part` that are not NaN (counted while
    /// copying, so the input is read once).
    pub fn chunk_with(self: &Arc<Self>, offset: usize, part: &[f32]) -> (Chunk, u64) {
        let mut chunk = self.take_slot();
        let slots = chunk.as_mut_slice();
        slots[..offset].fill(f32::NAN);
        let valid = copy_counting(&mut slots[offset..offset + part.len()], part);
        slots[offset + part.len()..].fill(f32::NAN);
        (chunk, valid)
    }

    /// A chunk decoded from `CHUNK_BYTES` little-endian float32 bytes, and
    /// its count of non-NaN values (one pass, straight into the chunk).
    pub fn chunk_from_le_bytes(self: &Arc<Self>, bytes: &[u8]) -> (Chunk, u64) {
        let mut chunk = self.take_slot();
        let mut valid = 0u64;
        for (slot, raw) in chunk.as_mut_slice().iter_mut().zip(bytes.chunks_exact(4)) {
            *slot = f32::from_le_bytes(raw.try_into().expect("4 bytes"));
            valid += u64::from(!slot.is_nan());
        }
        (chunk, valid)
    }

    fn take_slot(self: &Arc<Self>) -> Chunk {
        let mut state = self.state.lock();
        let ptr = match state.free.pop() {
            Some(ptr) => ptr,
            None => {
                if state.slabs.is_empty() || state.used_in_newest == CHUNKS_PER_SLAB {
                    let slab = state.spare.take().unwrap_or_else(Slab::new);
                    state.slabs.push(slab);
                    state.used_in_newest = 0;
                }
                let base = state.slabs.last().expect("a slab was just ensured").0;
                // SAFETY: used_in_newest < CHUNKS_PER_SLAB, so the slot lies
                // inside the slab.
                let ptr = unsafe { base.add(state.used_in_newest * CHUNK_SLOTS) };
                state.used_in_newest += 1;
                ptr
            }
        };
        Chunk {
            ptr,
            pool: Arc::clone(self),
        }
    }

    /// Makes sure `chunks` more chunks (at most a slab's worth) can be
    /// handed out without mapping memory, by mapping a spare slab now if
    /// needed. Mapping a slab is most of a bulk load's cost in fresh memory;
    /// writers call this before they take the store's sequencer, so that
    /// the mapping runs beside other writers instead of between them.
    pub fn reserve(&self, chunks: usize) {
        if self.state.lock().room() >= chunks.min(CHUNKS_PER_SLAB) {
            return;
        }
        let slab = Slab::new(); // outside the lock: this is the slow part
        let mut state = self.state.lock();
        if state.spare.is_none() {
            state.spare = Some(slab);
        } // else another writer mapped one meanwhile: this one is freed
    }

    pub fn usage(&self) -> PoolUsage {
        let state = self.state.lock();
        let handed_out = match state.slabs.len() {
            0 => 0,
            n => (n - 1) * CHUNKS_PER_SLAB + state.used_in_newest,
        };
        PoolUsage {
            reserved: (state.slabs.len() + usize::from(state.spare.is_some())) * SLAB_BYTES,
            in_use: (handed_out - state.free.len()) * CHUNK_BYTES,
            sealed_chunks: self.sealed_chunks.load(Ordering::Relaxed),
            sealed_bytes: self.sealed_bytes.load(Ordering::Relaxed),
            mapped_chunks: self.mapped_chunks.load(Ordering::Relaxed),
            mapped_bytes: self.mapped_bytes.load(Ordering::Relaxed),
        }
    }

    /// Counts `chunks` sealed chunks made (positive) or freed (negative),
    /// of `bytes` in all.
    pub fn count_sealed_many(&self, mapped: bool, chunks: isize, bytes: isize) {
        let (total, count) = if mapped {
            (&self.mapped_bytes, &self.mapped_chunks)
        } else {
            (&self.sealed_bytes, &self.sealed_chunks)
        };
        // Wrapping adds of the two's complement: a negative delta subtracts.
        total.fetch_add(bytes as usize, Ordering::Relaxed);
        count.fetch_add(chunks as usize, Ordering::Relaxed);
    }

    /// Counts a sealed chunk of `bytes` made (positive) or freed
    /// (negative), in memory or `mapped`.
    pub fn count_sealed(&self, mapped: bool, bytes: isize) {
        self.count_sealed_many(mapped, if bytes >= 0 { 1 } else { -1 }, bytes);
    }
}

/// One chunk's slots, owned exclusively; the slot returns to its pool on drop.
pub struct Chunk {
    ptr: NonNull<f32>,
    pool: Arc<ChunkPool>,
}

// SAFETY: a Chunk is the only owner of its slot, and the slab stays alive
// through `pool`; sending or sharing it is like sending or sharing a Box.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

/// Asks the CPU to start loading the cache line at `address` into its
/// caches. Only a hint: prefetching never faults and never reads memory as
/// far as the program can tell, so a stale or wrong address costs nothing
/// but the wasted load.
#[inline(always)]
pub fn prefetch(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 has no architectural effect and cannot fault,
    // whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

impl Chunk {
    /// The chunk's slot memory, for callers that keep it beside the chunk.
    pub fn slots(&self) -> NonNull<f32> {
        self.ptr
    }

    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: the slot is CHUNK_SLOTS f32 inside a live slab, every bit
        // pattern is a valid f32, and &self excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), CHUNK_SLOTS) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as above, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), CHUNK_SLOTS) }
    }
}

/// Frees `chunks` (emptying the vector) and gives their memory back to the
/// system: their slots stay in the pool, and a page is mapped again
/// (zeroed) when its slot is reused, which every use overwrites whole. For
/// chunks that were sealed: without it, sealing would free slots but not
/// memory. One `madvise` per run of adjacent slots (a series' chunks mostly
/// lie together) rather than one per chunk: each call is a system call and
/// a TLB flush, which cost more than encoding the chunk.
pub fn release_all(chunks: &mut Vec<Chunk>) {
    chunks.sort_unstable_by_key(|c| c.ptr.as_ptr() as usize);
    #[cfg(target_os = "linux")]
    {
        let mut rest = &chunks[..];
        while let Some(first) = rest.first() {
            let start = first.ptr.as_ptr() as usize;
            let run = 1 + rest[1..]
                .iter()
                .enumerate()
                .take_while(|(i, c)| c.ptr.as_ptr() as usize == start + (i + 1) * CHUNK_BYTES)
                .count();
            // SAFETY: each of the `run` chunks is CHUNK_BYTES (whole pages:
            // 4 KiB) of a live slab, page-aligned and owned by that chunk
            // alone, and together they cover [start, start + run *
            // CHUNK_BYTES) without a gap; their contents are not needed
            // any more, and their slots are reused only after they drop.
            unsafe {
                libc::madvise(
                    first.ptr.as_ptr().cast(),
                    run * CHUNK_BYTES,
                    libc::MADV_DONTNEED,
                );
            }
            rest = &rest[run..];
        }
    }
    chunks.clear();
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.state.lock().free.push(self.ptr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_their_values_and_nan_elsewhere() {
        let pool = Arc::new(ChunkPool::default());
        let (chunk, valid) = pool.chunk_with(10, &[1.0, 2.0]);
        assert_eq!(valid, 2);
        let slots = chunk.as_slice();
        assert_eq!(slots.len(), CHUNK_SLOTS);
        assert_eq!(&slots[10..12], &[1.0, 2.0]);
        assert!(slots[..10].iter().chain(&slots[12..]).all(|v| v.is_nan()));
    }

    #[test]
    fn slots_are_distinct_and_slabs_fill_before_a_new_one_is_taken() {
        let pool = Arc::new(ChunkPool::default());
        let chunks: Vec<Chunk> = (0..CHUNKS_PER_SLAB + 1)
            .map(|i| pool.chunk_with(0, &[i as f32]).0)
            .collect();
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.as_slice()[0], i as f32, "slot {i} was overwritten");
        }
        let usage = pool.usage();
        assert_eq!(usage.reserved, 2 * SLAB_BYTES);
        assert_eq!(usage.in_use, (CHUNKS_PER_SLAB + 1) * CHUNK_BYTES);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_chunks_give_back_exactly_their_pages_in_any_order() {
        let pool = Arc::new(ChunkPool::default());
        let chunks: Vec<Chunk> = (0..6)
            .map(|i| pool.chunk_with(0, &[i as f32 + 1.0]).0)
            .collect();
        let addresses: Vec<NonNull<f32>> = chunks.iter().map(|c| c.ptr).collect();
        // Runs 0-1 and 3-4 around the kept chunk 2, the kept 5 after them; out of order.
        let mut chunks: Vec<Option<Chunk>> = chunks.into_iter().map(Some).collect();
        let mut freed: Vec<Chunk> = [4, 0, 3, 1]
            .iter()
            .map(|&i| chunks[i].take().expect("once"))
            .collect();
        release_all(&mut freed);
        assert!(freed.is_empty());
        assert_eq!(pool.usage().in_use, 2 * CHUNK_BYTES);
        for (i, address) in addresses.iter().enumerate() {
            // SAFETY: every slot lies in a slab the pool keeps mapped; a
            // released slot is read, not written, and nothing reuses it here.
            let first = unsafe { address.as_ptr().read() };
            let expected = if matches!(i, 2 | 5) {
                i as f32 + 1.0
            } else {
                0.0
            };
            assert_eq!(first.to_bits(), expected.to_bits(), "slot {i}");
        }
        assert_eq!(chunks[2].as_ref().expect("kept").as_slice()[0], 3.0);
    }

    #[test]
    fn freed_slots_are_reused_before_new_memory() {
        let pool = Arc::new(ChunkPool::default());
        let (first, _) = pool.chunk_with(0, &[1.0]);
        let address = first.ptr;
        drop(first);
        assert_eq!(pool.usage().in_use, 0);
        let (second, _) = pool.chunk_with(5, &[2.0]);
        assert_eq!(second.ptr, address);
        assert!(
            second.as_slice()[0].is_nan(),
            "a reused slot is fully rewritten"
        );
        assert_eq!(pool.usage().reserved, SLAB_BYTES);
    }

    #[test]
    fn a_reserved_spare_slab_is_used_before_new_memory() {
        let pool = Arc::new(ChunkPool::default());
        pool.reserve(1);
        pool.reserve(1); // the spare is room enough: no second one
        assert_eq!(
            pool.usage(),
            PoolUsage {
                reserved: SLAB_BYTES,
                ..PoolUsage::default()
            }
        );
        let chunks: Vec<Chunk> = (0..CHUNKS_PER_SLAB)
            .map(|i| pool.chunk_with(0, &[i as f32]).0)
            .collect();
        assert_eq!(
            pool.usage().reserved,
            SLAB_BYTES,
            "the spare became the slab"
        );
        pool.reserve(2);
        let (last, _) = pool.chunk_with(3, &[9.0]);
        let usage = pool.usage();
        assert_eq!(usage.reserved, 2 * SLAB_BYTES);
        assert_eq!(usage.in_use, (CHUNKS_PER_SLAB + 1) * CHUNK_BYTES);
        assert_eq!(last.as_slice()[3], 9.0);
        assert!(
            chunks
                .iter()
                .enumerate()
                .all(|(i, c)| c.as_slice()[0] == i as f32)
        );
    }

    #[test]
    fn chunks_keep_the_pool_alive_after_the_store_lets_go() {
        let pool = Arc::new(ChunkPool::default());
        let (chunk, _) = pool.chunk_with(0, &[7.0]);
        drop(pool);
        assert_eq!(chunk.as_slice()[0], 7.0);
    }
}
