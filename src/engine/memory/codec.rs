//! Sealed-chunk codec: a chunk of float32 slots in, versioned bytes out, and back.
//!
//! A chunk is encoded once, when it is sealed, and decoded on every read, so decoding is the
//! hot path. The byte layout is ours and is documented byte by byte in FORMAT.md; no
//! dependency's format is involved, so the bytes change only when `FORMAT_VERSION` does.
//!
//! Schemes (the tag in byte 1): the whole chunk is one NaN pattern or one value (4 or 8 bytes),
//! or it is *packed*: the slots holding the chunk's gap NaN are recorded as runs or a bitmap
//! and the remaining values are coded densely, either as decimals (value = d / 10^k,
//! d * 10^-k, or 10^k / d for an integer d) or as order-preserving float bits, then as
//! frame-of-reference or delta residuals, bit-packed in blocks of 128 values with a width per
//! block and patches for outliers. Values that do not survive the decimal round trip are kept
//! verbatim as exceptions.
//!
//! Invariants:
//! - `decode(encode(v))` reproduces every slot bit for bit: NaN payloads, -0.0, infinities and
//!   subnormals included. Decimal values are accepted only after decoding them in the encoder
//!   with the exact operations the decoder uses (IEEE division and multiplication are correctly
//!   rounded, so the result is the same on every platform).
//! - `encode` never writes more than `HEADER_LEN + 4 * values.len()` bytes (raw fallback).
//! - `decode_range_uninit` writes every slot of its output and reads none before writing it,
//!   so a caller may hand it memory it never initialised (a read's result, not zeroed first).
//! - `decode` never panics and never reads out of bounds: damaged input yields `CodecError`.
//!   Damage that leaves the structure consistent (a flipped bit inside packed data) decodes
//!   to wrong values; detecting it is the job of a checksum around the chunk.
//! - The bytes do not depend on the CPU. The code is plain Rust, compiled twice on x86-64: for
//!   the baseline (SSE2) and for the AVX2 generation (AVX2, BMI1/2, LZCNT, POPCNT: Intel since
//!   2013, AMD since 2015). `encode` and `decode` pick the second once the CPU is seen to have
//!   those features. Every function below them is `#[inline(always)]` so that it is compiled
//!   into both (a function left out of line would run at baseline in both). The two biggest,
//!   `decode_dense` and `decode_runs`, are the exception: each build has its own out-of-line
//!   copy (two of `decode_dense`: whole chunks and ranges), entered through the same `SIMD`
//!   switch (inlined into every caller, they had been most of the crate's build time).
//!   The gain is in LZCNT (bit lengths, where BSR is slow on some CPUs) and in decoding,
//!   whose two inner loops have hand-written AVX2 kernels that only the second build calls (a
//!   `SIMD` const parameter says which build a function is in): bit unpacking by byte
//!   shuffles (`unpack_avx2`) and the running sum of delta chunks eight lanes wide
//!   (`prefix_sum_avx2`); see docs/benchmarks.md. No integer or float result differs between
//!   the two (no FMA, no reassociation), and the tests check that both give the same bytes
//!   and values, and each kernel against its portable loop at every width and length.

use std::cell::RefCell;
use std::fmt;
use std::mem::MaybeUninit;

use crate::engine::bytes::put_varint;

/// Version of the byte layout written by `encode`, stored in byte 0 of every chunk.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes every encoded chunk starts with: version, scheme tag, slot count (u16).
pub const HEADER_LEN: usize = 4;
/// Most slots one encoded chunk can hold (the slot count is a u16).
pub const MAX_VALUES: usize = u16::MAX as usize;

/// Bit pattern of the NaN that Rust and NumPy write for "missing".
const CANONICAL_NAN: u32 = 0x7FC0_0000;

const TAG_RAW: u8 = 0;
const TAG_ALL_NAN: u8 = 1;
const TAG_CONSTANT: u8 = 2;
const TAG_PACKED: u8 = 3;

// Layout byte of a packed chunk.
const CODER_MASK: u8 = 0b0000_0011;
const CODER_DECIMAL: u8 = 0;
const CODER_RECIPROCAL: u8 = 1;
const CODER_FLOAT: u8 = 2;
const FLAG_DELTA: u8 = 0b0000_0100;
const FLAG_GAPS: u8 = 0b0000_1000;
const FLAG_GAP_BITMAP: u8 = 0b0001_0000;
const FLAG_GAP_CANONICAL: u8 = 0b0010_0000;
const LAYOUT_KNOWN_BITS: u8 =
    CODER_MASK | FLAG_DELTA | FLAG_GAPS | FLAG_GAP_BITMAP | FLAG_GAP_CANONICAL;

/// Largest decimal exponent: 10^10 is the largest power of ten exact in float32.
const MAX_EXPONENT: i8 = 10;
/// Values sampled per chunk to choose the decimal exponent.
const SAMPLE_LEN: usize = 32;
/// Bytes a value exception costs: a u16 position and the value's bits.
const EXCEPTION_BYTES: usize = 6;

const POW10_F32: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
const POW10_F64: [f64; 21] = [
    1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6,
    1e7, 1e8, 1e9, 1e10,
];

/// Why a chunk could not be decoded. Every variant means the bytes are not a chunk this
/// version wrote for a buffer of this length: treat the chunk as corrupt (re-read it from the
/// snapshot or WAL) unless the variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes end before the structure they announce: the chunk was cut short.
    Truncated { needed: usize, available: usize },
    /// Byte 0 names a format version this code does not read; a newer writer made the chunk.
    UnknownVersion(u8),
    /// Byte 1 names no scheme of this version.
    UnknownScheme(u8),
    /// The chunk holds `encoded` slots but the output buffer has `buffer`: the caller passed
    /// the wrong buffer or the header is damaged.
    LengthMismatch { encoded: usize, buffer: usize },
    /// A field holds a value no encoder writes (named here): the bytes are damaged.
    Corrupt(&'static str),
    /// Bytes remain after the chunk's last field: the length framing the chunk is wrong.
    TrailingBytes(usize),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "chunk truncated: needs {needed} bytes, has {available}")
            }
            Self::UnknownVersion(v) => write!(f, "unknown chunk format version {v}"),
            Self::UnknownScheme(t) => write!(f, "unknown chunk scheme tag {t}"),
            Self::LengthMismatch { encoded, buffer } => {
                write!(f, "chunk holds {encoded} slots, output buffer has {buffer}")
            }
            Self::Corrupt(what) => write!(f, "corrupt chunk: {what}"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the end of the chunk"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Appends the encoding of `values` to `out`.
///
/// # Panics
/// If `values.len() > MAX_VALUES` (a chunk is 1,024 slots; larger input is a caller bug).
pub fn encode(values: &[f32], out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    if avx2_generation() {
        // SAFETY: the CPU has every feature `encode_avx2` is compiled for.
        return unsafe { encode_avx2(values, out) };
    }
    encode_baseline(values, out)
}

/// `encode` compiled for the AVX2 generation.
///
/// # Safety
/// Only on a CPU for which [`avx2_generation`] is true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn encode_avx2(values: &[f32], out: &mut Vec<u8>) {
    encode_baseline(values, out)
}

/// `decode` compiled for the AVX2 generation.
///
/// # Safety
/// Only on a CPU for which [`avx2_generation`] is true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn decode_avx2(bytes: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
    decode_with::<true>(bytes, out)
}

/// Whether this CPU has the features `encode_avx2` and `decode_avx2` are compiled for (the
/// standard library caches the answer: a few loads each call).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx2_generation() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("lzcnt")
        && std::is_x86_feature_detected!("popcnt")
}

/// `encode` for any CPU (and, inlined, the body of `encode_avx2`).
#[inline(always)]
pub(crate) fn encode_baseline(values: &[f32], out: &mut Vec<u8>) {
    assert!(
        values.len() <= MAX_VALUES,
        "a chunk holds at most {MAX_VALUES} values"
    );
    let n = values.len();
    let start = out.len();
    let Some(first) = values.first().map(|v| v.to_bits()) else {
        push_header(out, TAG_RAW, 0);
        return;
    };
    if values.iter().all(|v| v.to_bits() == first) {
        if first == CANONICAL_NAN {
            push_header(out, TAG_ALL_NAN, n);
        } else {
            push_header(out, TAG_CONSTANT, n);
            out.extend_from_slice(&first.to_le_bytes());
        }
        return;
    }
    encode_packed(values, out);
    if out.len() - start >= HEADER_LEN + 4 * n {
        out.truncate(start);
        push_header(out, TAG_RAW, n);
        for v in values {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// Decodes one chunk into `out`, whose length must be the chunk's slot count.
///
/// Never panics; on error the content of `out` is unspecified.
pub fn decode(bytes: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
    #[cfg(target_arch = "x86_64")]
    if avx2_generation() {
        // SAFETY: the CPU has every feature `decode_avx2` is compiled for.
        return unsafe { decode_avx2(bytes, out) };
    }
    decode_baseline(bytes, out)
}

/// `decode` for any CPU.
pub(crate) fn decode_baseline(bytes: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
    decode_with::<false>(bytes, out)
}

/// The body of `decode_baseline` and, with `SIMD`, of `decode_avx2`: `SIMD` says the caller
/// runs on an AVX2-generation CPU, which lets bit unpacking use 256-bit shuffles.
#[inline(always)]
fn decode_with<const SIMD: bool>(bytes: &[u8], out: &mut [f32]) -> Result<(), CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let (tag, n) = read_header(&mut r, out.len())?;
    match tag {
        TAG_RAW => {
            let raw = r.take(4 * n)?;
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        TAG_ALL_NAN => out.fill(f32::from_bits(CANONICAL_NAN)),
        TAG_CONSTANT => out.fill(f32::from_bits(r.u32()?)),
        TAG_PACKED => decode_packed::<SIMD>(&mut r, out)?,
        other => return Err(CodecError::UnknownScheme(other)),
    }
    r.finish()
}

/// Reads a chunk's header, checking its version and that it holds `n` slots: (scheme, n).
#[inline(always)]
fn read_header(r: &mut Reader<'_>, n: usize) -> Result<(u8, usize), CodecError> {
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let tag = r.u8()?;
    let encoded = r.u16()? as usize;
    if encoded != n {
        return Err(CodecError::LengthMismatch { encoded, buffer: n });
    }
    Ok((tag, n))
}

/// Decodes slots `range` of a chunk of `n` slots into `out` (as long as `range`): what
/// `decode` would write there, but only the blocks of packed values that hold them are
/// decoded (and, in a delta-coded chunk, those before them, whose sum they need). A read of
/// part of a chunk costs about that part.
///
/// Never panics; on error the content of `out` is unspecified. Damage outside what the
/// range needs may go unnoticed (a checksum around the chunk notices it).
pub fn decode_range(
    bytes: &[u8],
    n: usize,
    range: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<(), CodecError> {
    // SAFETY: `decode_range_uninit` writes only initialised floats into `out`.
    decode_range_uninit(bytes, n, range, unsafe { as_uninit(out) })
}

/// `decode_range` into memory that need not be initialised: on success every slot of `out`
/// has been written (on error, some may not have been). A caller reading into a fresh buffer
/// thus pays for no pass that zeroes it first. No slot of `out` is read before it is written:
/// the whole of a chunk without gaps is decoded in place (each block unpacked before anything
/// reads it), everything else is decoded on the side and copied or spread into `out`.
pub fn decode_range_uninit(
    bytes: &[u8],
    n: usize,
    range: std::ops::Range<usize>,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    #[cfg(target_arch = "x86_64")]
    if avx2_generation() {
        // SAFETY: the CPU has every feature `decode_range_avx2` is compiled for.
        return unsafe { decode_range_avx2(bytes, n, range, out) };
    }
    decode_range_baseline(bytes, n, range, out)
}

/// `out` as slots to be written.
///
/// # Safety
/// Whoever writes through the result writes only initialised values (never
/// `MaybeUninit::uninit()`), so that `out` stays initialised.
#[inline(always)]
unsafe fn as_uninit(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller vouches for what is
    // written.
    unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `out`, every slot of which has been written, as floats. (This and `copy_into` are std's
/// `assume_init_mut` and `write_copy_of_slice` for slices, which need Rust 1.93.)
///
/// # Safety
/// Every slot of `out` holds a value written into it.
#[inline(always)]
unsafe fn assume_init(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller vouches that every slot
    // is initialised.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `dst.copy_from_slice(src)` into slots to be written.
#[inline(always)]
fn copy_into(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_into: lengths differ");
    // SAFETY: both hold `src.len()` floats (checked); a shared and a mutable borrow do not
    // overlap; `MaybeUninit<f32>` has the layout of `f32`.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), src.len());
    }
}

/// `decode_range` compiled for the AVX2 generation.
///
/// # Safety
/// Only on a CPU for which [`avx2_generation`] is true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
unsafe fn decode_range_avx2(
    bytes: &[u8],
    n: usize,
    range: std::ops::Range<usize>,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    decode_range_with::<true>(bytes, n, range, out)
}

/// `decode_range` for any CPU.
pub(crate) fn decode_range_baseline(
    bytes: &[u8],
    n: usize,
    range: std::ops::Range<usize>,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    decode_range_with::<false>(bytes, n, range, out)
}

/// The body of `decode_range_baseline` and, with `SIMD` (as in `decode_with`), of
/// `decode_range_avx2`.
#[inline(always)]
fn decode_range_with<const SIMD: bool>(
    bytes: &[u8],
    n: usize,
    range: std::ops::Range<usize>,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    if range.start > range.end || range.end > n || out.len() != range.len() {
        return Err(CodecError::LengthMismatch {
            encoded: n,
            buffer: out.len(),
        });
    }
    let mut r = Reader { bytes, pos: 0 };
    let (tag, n) = read_header(&mut r, n)?;
    match tag {
        TAG_RAW => {
            let raw = r.take(4 * n)?;
            let raw = &raw[4 * range.start..4 * range.end];
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                o.write(f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            }
        }
        TAG_ALL_NAN => out.fill(MaybeUninit::new(f32::from_bits(CANONICAL_NAN))),
        TAG_CONSTANT => out.fill(MaybeUninit::new(f32::from_bits(r.u32()?))),
        TAG_PACKED => decode_packed_range::<SIMD>(&mut r, n, range, out)?,
        other => return Err(CodecError::UnknownScheme(other)),
    }
    r.finish()
}

thread_local! {
    /// A packed chunk's values before `decode_range` picks the slots asked for, eight more
    /// than the chunk's slots so that a gap byte's values are read eight at a time. Kept per
    /// thread (it grows to the largest chunk read: 4 KB for the store's) so that a read of a
    /// few slots does not first zero a whole chunk's worth, a tenth of a one-slot read.
    static DENSE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `decode_packed` for slots `range` only, into `out`.
#[inline(always)]
fn decode_packed_range<const SIMD: bool>(
    r: &mut Reader<'_>,
    n: usize,
    range: std::ops::Range<usize>,
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    let (layout, gap, gaps) = read_gaps::<SIMD>(r, n)?;
    // Taken out of the thread's slot and put back, rather than lent to a closure: a closure
    // is compiled on its own, without the AVX2 generation's instructions.
    let mut dense = DENSE.take();
    if dense.len() < n + 8 {
        dense.resize(n + 8, 0f32);
    }
    let done = spread_dense::<SIMD>(r, (layout, gap, gaps), range, &mut dense[..n + 8], out);
    DENSE.set(dense);
    done
}

/// The body of `decode_packed_range`: the dense values wanted, decoded into `dense` (at least
/// `n + 8` values), spread to their slots in `out`.
#[inline(always)]
fn spread_dense<const SIMD: bool>(
    r: &mut Reader<'_>,
    (layout, gap, gaps): (u8, f32, Gaps<'_>),
    range: std::ops::Range<usize>,
    dense: &mut [f32],
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    let n = dense.len() - 8;
    match gaps {
        // The whole of a chunk without gaps is its dense values: decoded straight into `out`.
        Gaps::None if range == (0..n) => decode_dense::<SIMD>(r, layout, out, range)?,
        Gaps::None => {
            // SAFETY (of each `as_uninit` below): `decode_dense` writes only floats.
            decode_dense::<SIMD>(
                r,
                layout,
                unsafe { as_uninit(&mut dense[..n]) },
                range.clone(),
            )?;
            copy_into(out, &dense[range]);
        }
        Gaps::Bitmap { bitmap, m } => {
            spread_dense_bitmap::<SIMD>(r, (layout, gap, bitmap, m), range, dense, out)?;
        }
        Gaps::RunBitmap { bits, m } => {
            spread_dense_bitmap::<SIMD>(r, (layout, gap, bits.bits(), m), range, dense, out)?;
        }
        Gaps::Runs { runs, m } => {
            // One pass over the runs before the range's end: the gaps before its two ends,
            // and the first run that reaches into it.
            let (mut before_start, mut before_end, mut first_run) = (0, 0, runs.len());
            for (k, &(s, e)) in runs.iter().enumerate() {
                if s >= range.end {
                    break;
                }
                before_end += e.min(range.end) - s;
                if s < range.start {
                    before_start += e.min(range.start) - s;
                }
                if e > range.start {
                    first_run = first_run.min(k);
                }
            }
            let (first, end) = (range.start - before_start, range.end - before_end);
            decode_dense::<SIMD>(r, layout, unsafe { as_uninit(&mut dense[..m]) }, first..end)?;
            // From slot `at` (its value, if it has one, at `dense[j]`): the values up to the
            // next run, then the run's gaps.
            let (mut at, mut j) = (range.start, first);
            for &(s, e) in runs[first_run..].iter().chain(std::iter::once(&(n, n))) {
                let values = s.min(range.end).saturating_sub(at);
                copy_short(
                    &mut out[at - range.start..][..values],
                    &dense[j..j + values],
                );
                (at, j) = (at + values, j + values);
                let gaps = e.min(range.end).saturating_sub(at);
                out[at - range.start..][..gaps].fill(MaybeUninit::new(gap));
                at += gaps;
                if at == range.end {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The `spread_dense` of a chunk whose gaps are `bitmap` (stored so, or made from its runs).
#[inline(always)]
fn spread_dense_bitmap<const SIMD: bool>(
    r: &mut Reader<'_>,
    (layout, gap, bitmap, m): (u8, f32, &[u8], usize),
    range: std::ops::Range<usize>,
    dense: &mut [f32],
    out: &mut [MaybeUninit<f32>],
) -> Result<(), CodecError> {
    let first = range.start - ones_before(bitmap, range.start);
    let end = range.end - ones_before(bitmap, range.end);
    // SAFETY: `decode_dense` writes only floats.
    decode_dense::<SIMD>(r, layout, unsafe { as_uninit(&mut dense[..m]) }, first..end)?;
    spread_range::<SIMD>(bitmap, range, &dense[first..], gap, out);
    Ok(())
}

/// How many of `bitmap`'s bits before bit `slot` are set (gaps before a slot).
#[inline(always)]
fn ones_before(bitmap: &[u8], slot: usize) -> usize {
    let whole = &bitmap[..slot / 8];
    let mut words = whole.chunks_exact(8);
    let mut ones: usize = words
        .by_ref()
        .map(|w| u64::from_le_bytes(w.try_into().expect("eight bytes")).count_ones() as usize)
        .sum();
    ones += words
        .remainder()
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum::<usize>();
    if !slot.is_multiple_of(8) {
        ones += (bitmap[slot / 8] & ((1u8 << (slot % 8)) - 1)).count_ones() as usize;
    }
    ones
}

/// Chunks with at least this many gap runs are spread through a bitmap made from them: eight
/// slots a step whatever the runs, where the runs' own path pays for each run (emmy's metrics
/// miss single samples, 57 runs in a chunk on average).
const RUNS_AS_BITMAP: usize = 16;

/// A bitmap of up to this many bytes (the store's 1,024-slot chunks) is made on the stack.
const SMALL_BITMAP: usize = 128;

/// Sets the bits of `run` in a gap bitmap (bit `i % 8` of byte `i / 8` for slot `i`): a mask
/// for each of its edge bytes, the whole bytes between at once. Most runs (a missed sample)
/// lie in one byte: one OR.
#[inline(always)]
fn mark_run(bits: &mut [u8], run: std::ops::Range<usize>) {
    if run.is_empty() {
        return;
    }
    let (first, last) = (run.start / 8, (run.end - 1) / 8);
    let head = 0xFFu8 << (run.start % 8);
    let tail = 0xFFu8 >> (7 - (run.end - 1) % 8);
    if first == last {
        bits[first] |= head & tail;
    } else {
        bits[first] |= head;
        bits[first + 1..last].fill(0xFF);
        bits[last] |= tail;
    }
}

/// Slots `range` of a chunk with gap `bitmap`: `gap` where the bitmap marks one, else the
/// next of `dense` (which starts at the range's first value and holds at least 8 values
/// more than the range takes). Whole bitmap bytes go through the `SPREAD` table.
#[inline(always)]
fn spread_range<const SIMD: bool>(
    bitmap: &[u8],
    range: std::ops::Range<usize>,
    dense: &[f32],
    gap: f32,
    out: &mut [MaybeUninit<f32>],
) {
    let (mut i, mut j) = (range.start, 0);
    let one = |i: usize, j: &mut usize, out: &mut [MaybeUninit<f32>]| {
        let is_gap = (bitmap[i / 8] >> (i % 8)) & 1 == 1;
        out[i - range.start].write(if is_gap { gap } else { dense[*j] });
        *j += usize::from(!is_gap);
    };
    while i < range.end && i % 8 != 0 {
        one(i, &mut j, out);
        i += 1;
    }
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        let whole = (range.end - i) / 8;
        // SAFETY: `SIMD` is true only below `decode_avx2` and `decode_range_avx2`, which run
        // only on CPUs with AVX2 and POPCNT.
        j += unsafe {
            spread_bytes_forward_avx2(
                &bitmap[i / 8..i / 8 + whole],
                &dense[j..],
                gap,
                &mut out[i - range.start..i - range.start + 8 * whole],
            )
        };
        i += 8 * whole;
    }
    while i + 8 <= range.end {
        let b = bitmap[i / 8];
        let mut source = [0f32; 8];
        source.copy_from_slice(&dense[j..j + 8]);
        spread_byte(
            b,
            &source,
            gap,
            &mut out[i - range.start..i - range.start + 8],
        );
        j += 8 - b.count_ones() as usize;
        i += 8;
    }
    while i < range.end {
        one(i, &mut j, out);
        i += 1;
    }
}

/// Reads the slot count from an encoded chunk's header without decoding it.
#[cfg(test)]
pub fn encoded_len(bytes: &[u8]) -> Result<usize, CodecError> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    r.u8()?;
    Ok(r.u16()? as usize)
}

#[inline(always)]
fn push_header(out: &mut Vec<u8>, tag: u8, n: usize) {
    out.push(FORMAT_VERSION);
    out.push(tag);
    out.extend_from_slice(&(n as u16).to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Packed chunks: gap map, then the dense values.

#[inline(always)]
fn encode_packed(values: &[f32], out: &mut Vec<u8>) {
    let n = values.len();
    push_header(out, TAG_PACKED, n);
    let layout_at = out.len();
    out.push(0);
    let mut layout = 0u8;

    // The chunk's gap NaN is the first NaN it holds; other NaN patterns are values.
    let gap = first_nan(values);
    let mut dense;
    if let Some(gap) = gap {
        layout |= FLAG_GAPS;
        let mut runs: Vec<(u32, u32)> = Vec::with_capacity(64);
        dense = Words::overwritten(n);
        split_gaps(values, gap, &mut dense, &mut runs);
        if gap == CANONICAL_NAN {
            layout |= FLAG_GAP_CANONICAL;
        } else {
            out.extend_from_slice(&gap.to_le_bytes());
        }
        let run_bytes = encode_runs(&runs, n);
        let bitmap_len = n.div_ceil(8);
        if run_bytes.len() <= bitmap_len {
            out.extend_from_slice(&run_bytes);
        } else {
            layout |= FLAG_GAP_BITMAP;
            let mut bitmap = vec![0u8; bitmap_len];
            for &(s, e) in &runs {
                mark_run(&mut bitmap, s as usize..e as usize);
            }
            out.extend_from_slice(&bitmap);
        }
    } else {
        dense = Words::empty();
        dense.extend(values.iter().map(|v| v.to_bits()));
    }

    layout |= encode_dense(&dense, out);
    out[layout_at] = layout;
}

#[inline(always)]
fn decode_packed<const SIMD: bool>(r: &mut Reader<'_>, out: &mut [f32]) -> Result<(), CodecError> {
    let n = out.len();
    let (layout, gap, gaps) = read_gaps::<SIMD>(r, n)?;
    // SAFETY (of each `as_uninit` below): `decode_dense` writes only floats.
    match gaps {
        Gaps::None => decode_dense::<SIMD>(r, layout, unsafe { as_uninit(out) }, 0..n),
        Gaps::Bitmap { bitmap, m } => {
            decode_dense::<SIMD>(r, layout, unsafe { as_uninit(&mut out[..m]) }, 0..m)?;
            spread::<SIMD>(bitmap, m, gap, out);
            Ok(())
        }
        Gaps::RunBitmap { bits, m } => {
            decode_dense::<SIMD>(r, layout, unsafe { as_uninit(&mut out[..m]) }, 0..m)?;
            spread::<SIMD>(bits.bits(), m, gap, out);
            Ok(())
        }
        Gaps::Runs { runs, m } => {
            decode_dense::<SIMD>(r, layout, unsafe { as_uninit(&mut out[..m]) }, 0..m)?;
            let gaps = n - m;
            // Back to front: the dense values after run k move right by the gaps up to run k.
            let mut tail_end = n;
            let mut shift = gaps;
            for &(s, e) in runs.iter().rev() {
                move_right(out, e - shift..tail_end - shift, shift);
                shift -= e - s;
                out[s..e].fill(gap);
                tail_end = s;
            }
            Ok(())
        }
    }
}

/// A packed chunk's gap map: none, a stored bitmap, runs, or runs made into a bitmap, with
/// `m` the slots holding values.
enum Gaps<'a> {
    None,
    Bitmap { bitmap: &'a [u8], m: usize },
    Runs { runs: Vec<(usize, usize)>, m: usize },
    RunBitmap { bits: RunBitmap, m: usize },
}

/// Reads a packed chunk's layout byte, gap NaN and gap map (checking them) for a chunk of `n`
/// slots: (layout, gap NaN, gaps). The dense values follow.
#[inline(always)]
fn read_gaps<'a, const SIMD: bool>(
    r: &mut Reader<'a>,
    n: usize,
) -> Result<(u8, f32, Gaps<'a>), CodecError> {
    let layout = r.u8()?;
    if layout & !LAYOUT_KNOWN_BITS != 0 {
        return Err(CodecError::Corrupt("unknown layout flags"));
    }
    if layout & FLAG_GAPS == 0 {
        if layout & (FLAG_GAP_BITMAP | FLAG_GAP_CANONICAL) != 0 {
            return Err(CodecError::Corrupt("gap flags without gaps"));
        }
        return Ok((layout, f32::NAN, Gaps::None));
    }
    let gap = f32::from_bits(if layout & FLAG_GAP_CANONICAL != 0 {
        CANONICAL_NAN
    } else {
        r.u32()?
    });
    let gaps = if layout & FLAG_GAP_BITMAP != 0 {
        let bitmap = r.take(n.div_ceil(8))?;
        let gaps: usize = bitmap.iter().map(|b| b.count_ones() as usize).sum();
        if gaps > n || (!n.is_multiple_of(8) && bitmap[n / 8] >> (n % 8) != 0) {
            return Err(CodecError::Corrupt("gap bitmap marks slots past the chunk"));
        }
        Gaps::Bitmap {
            bitmap,
            m: n - gaps,
        }
    } else {
        match decode_runs::<SIMD>(r, n)? {
            (RunList::List(runs), gaps) => Gaps::Runs { runs, m: n - gaps },
            (RunList::Bitmap(bits), gaps) => Gaps::RunBitmap { bits, m: n - gaps },
        }
    };
    Ok((layout, gap, gaps))
}

/// Where the dense values of one bitmap byte go: entry `t` of `SPREAD[b]` is how many of the
/// byte's slots before slot `t` hold values (the index of slot `t`'s value among the byte's).
static SPREAD: [[u8; 8]; 256] = {
    let mut table = [[0u8; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut t = 1;
        while t < 8 {
            table[b][t] = table[b][t - 1] + ((b >> (t - 1)) & 1 == 0) as u8;
            t += 1;
        }
        b += 1;
    }
    table
};

/// Spreads the `m` dense values at the start of `out` to their slots, filling the slots the
/// gap bitmap marks with `gap`. Back to front, so nothing is overwritten before it moves (the
/// k-th dense value always lands at a slot >= k), eight slots (one bitmap byte) at a time:
/// the byte's values are read before any of its slots is written, and each slot then takes
/// its value through a table, with no dependency from one slot to the next.
#[inline(always)]
fn spread<const SIMD: bool>(bitmap: &[u8], m: usize, gap: f32, out: &mut [f32]) {
    let n = out.len();
    let whole = n / 8;
    let mut j = m;
    // The last, partial byte slot by slot: its slots past `n` do not exist.
    for i in (whole * 8..n).rev() {
        let is_gap = (bitmap[i / 8] >> (i % 8)) & 1 == 1;
        let moved = out[j.saturating_sub(1)];
        out[i] = if is_gap { gap } else { moved };
        j -= usize::from(!is_gap);
    }
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `SIMD` is true only below `decode_avx2` and `decode_range_avx2`, which run
        // only on CPUs with AVX2 and POPCNT.
        unsafe { spread_bytes_backward_avx2(&bitmap[..whole], j, gap, &mut out[..whole * 8]) };
        return;
    }
    for byte in (0..whole).rev() {
        let b = bitmap[byte];
        let values = 8 - b.count_ones() as usize;
        // The caller checked that the bitmap marks `n - m` gaps, so `values <= j`; and the
        // byte's values start at or before its first slot, so the read stays inside `out`.
        let first = j - values;
        let at = byte * 8;
        let mut source = [0f32; 8];
        source.copy_from_slice(&out[first..first + 8]);
        // SAFETY: `spread_byte` writes only floats.
        spread_byte(b, &source, gap, unsafe { as_uninit(&mut out[at..at + 8]) });
        j = first;
    }
}

/// The eight slots of gap-bitmap byte `b`: slot `t` takes `gap` if bit `t` is set, else the
/// next of `source` (the byte's values, in order, first).
#[inline(always)]
fn spread_byte(b: u8, source: &[f32; 8], gap: f32, out: &mut [MaybeUninit<f32>]) {
    let index = &SPREAD[b as usize];
    for (t, slot) in out[..8].iter_mut().enumerate() {
        let value = source[index[t] as usize];
        slot.write(if (b >> t) & 1 == 1 { gap } else { value });
    }
}

/// `spread_byte` in one AVX2 register: the eight floats at `source` (the byte's values,
/// then any) gathered into their slots by a lane permutation (indices from `SPREAD`), the gap
/// blended into the lanes its bits mark, and stored at `out`. Bits are moved, never computed
/// on, so every NaN payload survives.
///
/// # Safety
/// Only on a CPU with AVX2; `source` must be valid for reading and `out` for writing eight
/// floats (unaligned is fine).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn spread_byte_avx2(b: u8, source: *const f32, gap: f32, out: *mut f32) {
    use std::arch::x86_64::{
        _mm_cvtsi64_si128, _mm256_and_si256, _mm256_blendv_ps, _mm256_castsi256_ps,
        _mm256_cmpeq_epi32, _mm256_cvtepu8_epi32, _mm256_loadu_ps, _mm256_permutevar8x32_ps,
        _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi32, _mm256_storeu_ps,
    };
    // SAFETY: the caller vouches for the eight floats at `source` and at `out`.
    unsafe {
        let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let index = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(i64::from_le_bytes(SPREAD[b as usize])));
        let is_gap = _mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32(i32::from(b)), lane_bits),
            lane_bits,
        );
        let values = _mm256_permutevar8x32_ps(_mm256_loadu_ps(source), index);
        _mm256_storeu_ps(
            out,
            _mm256_blendv_ps(values, _mm256_set1_ps(gap), _mm256_castsi256_ps(is_gap)),
        );
    }
}

/// `spread`'s whole bytes (`bitmap`, for the slots of `out`) back to front, with `j` dense
/// values at the start of `out` before them.
///
/// # Safety
/// Only on a CPU with AVX2 and POPCNT (every AVX2-generation CPU: without POPCNT enabled here,
/// a byte's count of gaps was a dozen instructions, a sixth of spreading emmy's chunks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn spread_bytes_backward_avx2(bitmap: &[u8], mut j: usize, gap: f32, out: &mut [f32]) {
    // The source and the slots may overlap (the source is loaded first), so both are taken
    // from one pointer rather than from a shared and a mutable borrow of `out`.
    let (len, base) = (out.len(), out.as_mut_ptr());
    for (byte, &b) in bitmap.iter().enumerate().rev() {
        // As in `spread`: the byte's values start at or before its first slot.
        let first = j - (8 - b.count_ones() as usize);
        assert!(first <= byte * 8 && byte * 8 + 8 <= len);
        // SAFETY: AVX2 as this function's caller vouches; both ranges of eight floats lie
        // inside `out`, as just checked.
        unsafe { spread_byte_avx2(b, base.add(first), gap, base.add(byte * 8)) };
        j = first;
    }
}

/// `spread_range`'s whole bytes: the slots of `out` (eight a byte of `bitmap`) from the
/// values of `dense` in order (at least eight more than they take); returns how many they took.
///
/// # Safety
/// Only on a CPU with AVX2 and POPCNT (as `spread_bytes_backward_avx2`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn spread_bytes_forward_avx2(
    bitmap: &[u8],
    dense: &[f32],
    gap: f32,
    out: &mut [MaybeUninit<f32>],
) -> usize {
    let mut j = 0;
    for (slots, &b) in out.chunks_exact_mut(8).zip(bitmap) {
        let source = &dense[j..j + 8];
        // SAFETY: AVX2 as this function's caller vouches; `source` and `slots` hold eight
        // floats each.
        unsafe { spread_byte_avx2(b, source.as_ptr(), gap, slots.as_mut_ptr().cast()) };
        j += 8 - b.count_ones() as usize;
    }
    j
}

/// Most slots `copy_short` and `move_right` move with a plain loop: below it a memcpy or
/// memmove call costs more than the copy.
const SHORT_MOVE: usize = 32;

/// `copy_into(dst, src)`, as a plain loop when short: most stretches of values between gaps
/// are a few slots.
#[inline(always)]
fn copy_short(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    if dst.len() > SHORT_MOVE {
        copy_into(dst, src);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            d.write(*s);
        }
    }
}

/// Moves `out[range]` right by `by` slots; short moves (most, between isolated gaps) are
/// plain loops rather than a memmove call.
#[inline(always)]
fn move_right(out: &mut [f32], range: std::ops::Range<usize>, by: usize) {
    if range.len() > SHORT_MOVE {
        out.copy_within(range.clone(), range.start + by);
    } else {
        for i in range.rev() {
            out[i + by] = out[i];
        }
    }
}

/// Splits `values` into `dense`, the bits of every slot that is not `gap`, in order, and
/// `runs`, the (start, end) slot ranges of `gap`. Slots are compared 64 at a time into a mask
/// (one vector loop); runs start and end where the mask changes, found by counting zeros.
/// Groups without a gap are copied whole, groups of gaps alone passed over, and the dense
/// values of the others stored without a branch per slot.
#[inline(always)]
fn split_gaps(values: &[f32], gap: u32, dense: &mut Vec<u32>, runs: &mut Vec<(u32, u32)>) {
    let n = values.len();
    // Every slot below the final count is written before the count passes it.
    set_len_unzeroed(dense, n);
    // A slice, so its pointer stays in a register across the stores below.
    let slots = dense.as_mut_slice();
    let (mut kept, mut in_gap, mut start) = (0, false, 0);
    for (g, group) in values.chunks(64).enumerate() {
        let mut mask = 0u64;
        for (j, v) in group.iter().enumerate() {
            mask |= u64::from(v.to_bits() == gap) << j;
        }
        let full = u64::MAX >> (64 - group.len());
        if mask == 0 {
            // No gap (most groups): copied whole.
            for (slot, v) in slots[kept..kept + group.len()].iter_mut().zip(group) {
                *slot = v.to_bits();
            }
            kept += group.len();
        } else if mask != full {
            kept = split_group(group, mask, gap, slots, kept);
        }
        // Bit j: slot j is a gap and the slot before is not, or the other way round.
        let mut changes = mask ^ (mask << 1 | u64::from(in_gap));
        if group.len() < 64 {
            changes &= (1 << group.len()) - 1;
        }
        while changes != 0 {
            let at = (g * 64) as u32 + changes.trailing_zeros();
            if in_gap {
                runs.push((start, at));
            } else {
                start = at;
            }
            in_gap = !in_gap;
            changes &= changes - 1;
        }
    }
    if in_gap {
        runs.push((start, n as u32));
    }
    dense.truncate(kept);
}

/// The slots of `group` (at most 64) that are not `gap` (`gaps`: bit j set where slot j is
/// one), stored at `slots[kept..]`; returns the new count. With AVX2, eight at a time.
#[inline(always)]
fn split_group(group: &[f32], gaps: u64, gap: u32, slots: &mut [u32], kept: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx2_generation() {
        // SAFETY: the CPU has AVX2 and POPCNT.
        return unsafe { split_group_avx2(group, gaps, gap, slots, kept) };
    }
    split_slots(group, gap, slots, kept)
}

/// `split_group` one slot at a time, without a branch: each slot is stored and the count
/// moves on past it if it is not a gap.
#[inline(always)]
fn split_slots(group: &[f32], gap: u32, slots: &mut [u32], mut kept: usize) -> usize {
    for v in group {
        let bits = v.to_bits();
        slots[kept] = bits;
        kept += usize::from(bits != gap);
    }
    kept
}

/// For each set of kept slots among eight (bit j: slot j is kept), their positions in order,
/// the rest 0: the lanes a permutation gathers to the front.
static LEFT_PACK: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut keep = 0;
    while keep < 256 {
        let (mut j, mut n) = (0, 0);
        while j < 8 {
            if keep >> j & 1 == 1 {
                table[keep][n] = j as u32;
                n += 1;
            }
            j += 1;
        }
        keep += 1;
    }
    table
};

/// `split_group` with AVX2: eight slots are loaded, the kept ones gathered to the front by a
/// permutation looked up from their mask, all eight stored and the count moved on by the kept
/// ones (the others are overwritten next, or lie past the final count).
///
/// # Safety
/// Only on a CPU with AVX2 and POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn split_group_avx2(
    group: &[f32],
    gaps: u64,
    gap: u32,
    slots: &mut [u32],
    mut kept: usize,
) -> usize {
    use std::arch::x86_64::*;
    let eights = group.chunks_exact(8);
    let rest = eights.remainder();
    for (i, eight) in eights.enumerate() {
        let keep = !(gaps >> (8 * i)) as u8;
        // Slots up to `kept` + 8 lie at or before this eight's own: in bounds.
        let dst = &mut slots[kept..kept + 8];
        // SAFETY: `eight` holds eight f32, the table row eight u32, `dst` eight u32; all
        // unaligned loads and stores.
        unsafe {
            let v = _mm256_loadu_si256(eight.as_ptr().cast());
            let lanes = _mm256_loadu_si256(LEFT_PACK[keep as usize].as_ptr().cast());
            _mm256_storeu_si256(
                dst.as_mut_ptr().cast(),
                _mm256_permutevar8x32_epi32(v, lanes),
            );
        }
        kept += keep.count_ones() as usize;
    }
    split_slots(rest, gap, slots, kept)
}

/// Gap runs as packed bits: the trailing run (a short series' NaN padding) as a start slot,
/// the others as skips (slots since the previous run) and lengths, each at one bit width.
#[inline(always)]
fn encode_runs(runs: &[(u32, u32)], n: usize) -> Vec<u8> {
    let (inner, tail_start) = match runs.split_last() {
        Some((&(s, e), inner)) if e as usize == n => (inner, s),
        _ => (runs, n as u32),
    };
    let mut skips = Vec::with_capacity(inner.len());
    let mut lens = Vec::with_capacity(inner.len());
    let mut prev_end = 0;
    for &(s, e) in inner {
        skips.push(s - prev_end);
        lens.push(e - s - 1);
        prev_end = e;
    }
    let width = |v: &[u32]| bit_len(v.iter().fold(0, |a, &b| a | b)) as u8;
    let (skip_width, len_width) = (width(&skips), width(&lens));
    let mut out = Vec::with_capacity(8 + inner.len() * 4);
    out.extend_from_slice(&(tail_start as u16).to_le_bytes());
    put_varint(&mut out, u64::from(inner.len() as u32));
    out.push(skip_width);
    out.push(len_width);
    pack(&skips, skip_width, &mut out);
    pack(&lens, len_width, &mut out);
    out
}

/// Gap runs unpacked at a time by `decode_runs`: their skips and lengths sit on the stack.
const RUN_GROUP: usize = 64;

/// Reads and validates the runs written by `encode_runs`, as (start, end) slot ranges or,
/// from `RUNS_AS_BITMAP` runs on, marked in a gap bitmap (see `Runs`). The skips and lengths
/// are unpacked as a block's residuals are (a chunk of the emmy job holds 57 runs on average,
/// and a read of one slot had spent most of its time here, bit by bit).
/// Out of line, once per build, as `decode_dense` is.
#[inline(always)]
fn decode_runs<const SIMD: bool>(r: &mut Reader<'_>, n: usize) -> Result<Runs, CodecError> {
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: as in `decode_dense`.
        return unsafe { decode_runs_avx2(r, n) };
    }
    decode_runs_baseline(r, n)
}

/// `decode_runs` compiled for the AVX2 generation.
///
/// # Safety
/// Only on a CPU for which [`avx2_generation`] is true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
#[inline(never)]
unsafe fn decode_runs_avx2(r: &mut Reader<'_>, n: usize) -> Result<Runs, CodecError> {
    decode_runs_with::<true>(r, n)
}

/// `decode_runs` for any CPU.
#[inline(never)]
fn decode_runs_baseline(r: &mut Reader<'_>, n: usize) -> Result<Runs, CodecError> {
    decode_runs_with::<false>(r, n)
}

#[inline(always)]
fn decode_runs_with<const SIMD: bool>(r: &mut Reader<'_>, n: usize) -> Result<Runs, CodecError> {
    let tail_start = r.u16()? as usize;
    let count = r.varint()? as usize;
    let (skip_width, len_width) = (r.u8()?, r.u8()?);
    if tail_start > n || count > n.div_ceil(2) || skip_width > 16 || len_width > 16 {
        return Err(CodecError::Corrupt("gap runs outside the chunk"));
    }
    // From each field's start to the chunk's end: unpacking may load past the field.
    let skips = r.rest();
    r.take((count * skip_width as usize).div_ceil(8))?;
    let lens = r.rest();
    r.take((count * len_width as usize).div_ceil(8))?;
    let tail = usize::from(tail_start < n);
    let mut runs = if count + tail >= RUNS_AS_BITMAP {
        RunList::Bitmap(RunBitmap::new(n))
    } else {
        RunList::List(Vec::with_capacity(count + tail))
    };
    let mut gaps = 0;
    let mut skips_unpacked = [MaybeUninit::<f32>::uninit(); RUN_GROUP];
    let mut lens_unpacked = [MaybeUninit::<f32>::uninit(); RUN_GROUP];
    let mut end = 0usize;
    for first in (0..count).step_by(RUN_GROUP) {
        let k = RUN_GROUP.min(count - first);
        // `first` is a multiple of eight, so each group starts on a byte.
        let at = |width: u8| first * width as usize / 8;
        let (skip, len) = (&mut skips_unpacked[..k], &mut lens_unpacked[..k]);
        unpack::<SIMD>(&skips[at(skip_width)..], skip_width, Map::Same, skip);
        unpack::<SIMD>(&lens[at(len_width)..], len_width, Map::Same, len);
        // SAFETY: `unpack` wrote every slot of both.
        let (skip, len) = unsafe { (assume_init(skip), assume_init(len)) };
        for (s, l) in skip.iter().zip(len.iter()) {
            let start = end + s.to_bits() as usize;
            end = start + 1 + l.to_bits() as usize;
            if end > tail_start {
                return Err(CodecError::Corrupt("gap runs outside the chunk"));
            }
            runs.push(start..end);
            gaps += end - start;
        }
    }
    if tail_start < n {
        runs.push(tail_start..n);
        gaps += n - tail_start;
    }
    Ok((runs, gaps))
}

/// A chunk's gap runs as `decode_runs` gives them, with the slots they cover: listed, or, from
/// `RUNS_AS_BITMAP` runs on, marked straight into a gap bitmap.
type Runs = (RunList, usize);

enum RunList {
    List(Vec<(usize, usize)>),
    Bitmap(RunBitmap),
}

impl RunList {
    #[inline(always)]
    fn push(&mut self, run: std::ops::Range<usize>) {
        match self {
            Self::List(runs) => runs.push((run.start, run.end)),
            Self::Bitmap(bits) => mark_run(bits.bits_mut(), run),
        }
    }
}

/// A gap bitmap made from runs: on the stack for chunks of up to `SMALL_BITMAP * 8` slots
/// (the store's 1,024), on the heap for longer ones.
struct RunBitmap {
    small: [u8; SMALL_BITMAP],
    large: Vec<u8>,
    len: usize,
}

impl RunBitmap {
    fn new(n: usize) -> RunBitmap {
        let len = n.div_ceil(8);
        let large = if len > SMALL_BITMAP {
            vec![0; len]
        } else {
            Vec::new()
        };
        RunBitmap {
            small: [0; SMALL_BITMAP],
            large,
            len,
        }
    }

    #[inline(always)]
    fn bits(&self) -> &[u8] {
        if self.len > SMALL_BITMAP {
            &self.large
        } else {
            &self.small[..self.len]
        }
    }

    #[inline(always)]
    fn bits_mut(&mut self) -> &mut [u8] {
        if self.len > SMALL_BITMAP {
            &mut self.large
        } else {
            &mut self.small[..self.len]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dense values: decimal or float-bit words, then residuals.

/// How a dense value maps to an integer word and back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Decimal {
    /// value = d / 10^k for k >= 0, d * 10^-k for k < 0.
    Scaled(i8),
    /// value = 10^k / d (ratios such as IPC reported as 1 / a rounded decimal).
    Reciprocal(i8),
}

impl Decimal {
    /// The integer the encoder tries for `v` (any value; the round trip decides).
    #[inline(always)]
    fn to_int(self, v: f32) -> i32 {
        round_to_i32(match self {
            Decimal::Scaled(k) => v as f64 * POW10_F64[(k + 10) as usize],
            Decimal::Reciprocal(k) => POW10_F64[(k + 10) as usize] / v as f64,
        })
    }

    /// The integer that gives `v` back for the sample `choose_decimal` takes, if there is
    /// one: integers from 2^24 on are not exact in float32, and a fit there is an artefact of
    /// float precision (any float has some long decimal form), not a short decimal.
    #[inline(always)]
    fn sampled_int(self, v: f32) -> Option<i32> {
        let d = self.to_int(v);
        (d.unsigned_abs() < 1 << 24 && self.to_value(d).to_bits() == v.to_bits()).then_some(d)
    }

    /// The decoder's operation, used by the encoder to verify the round trip.
    #[inline(always)]
    fn to_value(self, d: i32) -> f32 {
        match self {
            Decimal::Scaled(k) if k >= 0 => d as f32 / POW10_F32[k as usize],
            Decimal::Scaled(k) => d as f32 * POW10_F32[(-k) as usize],
            Decimal::Reciprocal(k) => POW10_F32[k as usize] / d as f32,
        }
    }
}

/// `x` rounded half to even, as i32, by the 2^52 + 2^51 trick (SSE2 has no rounding
/// instruction, and this vectorises where a saturating conversion does not): exact for
/// |x| < 2^31; other inputs (NaN, infinities, huge values) give some integer, which the
/// round-trip check then rejects.
#[inline(always)]
fn round_to_i32(x: f64) -> i32 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (x + MAGIC).to_bits() as u32 as i32
}

/// Chooses the decimal mapping on a sample of the chunk, or `None` when too many sampled
/// values are not short decimals (then the float-bit coder is used).
///
/// Exponents are tried upwards and the search stops at the first one that represents every
/// sampled value: larger exponents only widen the integers. Reciprocals are tried only when no
/// scaled decimal fits.
#[inline(always)]
fn choose_decimal(dense: &[u32]) -> Option<Decimal> {
    let step = dense.len().div_ceil(SAMPLE_LEN).max(1);
    let sample: Vec<f32> = dense
        .iter()
        .step_by(step)
        .map(|&b| f32::from_bits(b))
        .collect();
    // Past an eighth of the sample, exceptions (6 bytes each) outweigh what the decimal form
    // saves over float bits: the candidate is out.
    let too_many = |exceptions: usize| exceptions * 8 > sample.len();
    let eval = |dec: Decimal| {
        let (mut lo, mut hi, mut exceptions) = (i32::MAX, i32::MIN, 0usize);
        for &v in &sample {
            if let Some(d) = dec.sampled_int(v) {
                lo = lo.min(d);
                hi = hi.max(d);
            } else {
                exceptions += 1;
                if too_many(exceptions) {
                    return (usize::MAX, exceptions);
                }
            }
        }
        let width = if lo > hi {
            0
        } else {
            bit_len(hi.wrapping_sub(lo) as u32) as usize
        };
        (
            sample.len() * width + exceptions * EXCEPTION_BYTES * 8,
            exceptions,
        )
    };
    let mut best = (Decimal::Scaled(0), usize::MAX, usize::MAX);
    let consider = |best: &mut (Decimal, usize, usize), dec: Decimal| {
        let (cost, exceptions) = eval(dec);
        if cost < best.1 {
            *best = (dec, cost, exceptions);
        }
        exceptions
    };
    // Whether `dec` is out, as found from the first `PROBE` sampled values (false: not found
    // there). Decimal data passes in a few values; data that is no short decimal is out
    // within about as many as it takes to find the exceptions.
    const PROBE: usize = 12;
    let out_soon = |dec: Decimal| {
        let mut exceptions = 0;
        for &v in sample.iter().take(PROBE) {
            exceptions += usize::from(dec.sampled_int(v).is_none());
            if too_many(exceptions) {
                return true;
            }
        }
        false
    };
    // An exponent's integers stay below 2^24 when what they round from is below this (a
    // margin for the rounding of the product).
    const BELOW: f64 = (1u32 << 24) as f64 - 1.0;
    // The smallest and largest magnitudes sampled; non-finite values, exceptions at every
    // exponent, are taken as 0 (the bounds then only loosen).
    let magnitudes = || {
        let (lo, hi) = sample
            .iter()
            .map(|v| if v.is_finite() { v.abs() } else { 0.0 })
            .fold((f32::INFINITY, 0f32), |(lo, hi), m| (lo.min(m), hi.max(m)));
        (f64::from(lo), f64::from(hi))
    };
    // Up to the largest exponent at which no sampled integer reaches 2^24 (`bound`), a value
    // that fits exponent k fits k + 1 too: its integer becomes ten times as large, the same
    // decimal, unless the finer step already lies within half the float's spacing of it, which
    // gives the value back too. Exceptions only fall as k grows there, so when the bound has
    // too many, so has every exponent below it, and the search goes on past it. (What is
    // chosen decides only the size: a value no decimal gives back is stored as an exception.)
    let skip_to = |from: i8, bound: Option<i8>, dec: fn(i8) -> Decimal| match bound {
        Some(k) if k > from && out_soon(dec(k)) => k + 1,
        _ => from,
    };
    let mut k = 0;
    while k <= MAX_EXPONENT {
        if consider(&mut best, Decimal::Scaled(k)) == 0 {
            // Integers: trailing zeros may allow a negative exponent (2600 = 26 * 10^2).
            if k == 0 {
                for k in 1..=MAX_EXPONENT {
                    if consider(&mut best, Decimal::Scaled(-k)) != 0 {
                        break;
                    }
                }
            }
            break;
        }
        // Past integers (which need no bound), the bound is tried.
        k = if k == 0 {
            let (_, largest) = magnitudes();
            skip_to(1, last_exponent(|p| largest * p < BELOW), Decimal::Scaled)
        } else {
            k + 1
        };
    }
    // No fit, or one that needs five or more decimals, may be a ratio of short decimals
    // (1/0.82 stored as 1.2195122): reciprocals may be far narrower.
    if best.1 == usize::MAX || best.2 > 0 || matches!(best.0, Decimal::Scaled(k) if k >= 5) {
        let (smallest, _) = magnitudes();
        let from = skip_to(
            0,
            last_exponent(|p| p < BELOW * smallest),
            Decimal::Reciprocal,
        );
        for k in from..=MAX_EXPONENT {
            if consider(&mut best, Decimal::Reciprocal(k)) == 0 {
                break;
            }
        }
    }
    (best.1 != usize::MAX).then_some(best.0)
}

/// The largest exponent k of at most `MAX_EXPONENT` for which `holds(10^k)`, if any.
#[inline(always)]
fn last_exponent(holds: impl Fn(f64) -> bool) -> Option<i8> {
    (0..=MAX_EXPONENT)
        .rev()
        .find(|&k| holds(POW10_F64[(k + 10) as usize]))
}

/// Writes the dense values and returns the layout bits (coder and delta flag).
#[inline(always)]
fn encode_dense(dense: &[u32], out: &mut Vec<u8>) -> u8 {
    let m = dense.len();
    if let Some(dec) = choose_decimal(dense) {
        // encode_decimal writes every integer.
        let mut ints = Words::overwritten(m);
        let exceptions = encode_decimal(dense, dec, &mut ints);
        let plan = plan_residuals(&ints, true);
        let decimal_bytes = plan.bytes + exceptions.len() * EXCEPTION_BYTES;
        // Values the decimal coder cannot give back may be no decimals at all: with many
        // of them, or with some and integers a byte a value wide or more (noisy floats, such
        // as a float32 random walk), the float-bit coder may do better; keep the smaller.
        // Decimal metrics with a stray -0.0 or NaN payload are spared the second plan.
        let float_plan = (exceptions.len() > m / 16
            || (!exceptions.is_empty() && decimal_bytes >= m))
            .then(|| plan_residuals(&float_words(dense), false));
        match float_plan {
            Some(fp) if fp.bytes <= decimal_bytes => {
                write_residuals(&fp, None, out);
                CODER_FLOAT | fp.delta_flag()
            }
            _ => {
                let (coder, k) = match dec {
                    Decimal::Scaled(k) => (CODER_DECIMAL, k),
                    Decimal::Reciprocal(k) => (CODER_RECIPROCAL, k),
                };
                out.push(k as u8);
                write_residuals(&plan, Some(&exceptions), out);
                coder | plan.delta_flag()
            }
        }
    } else {
        let plan = plan_residuals(&float_words(dense), false);
        write_residuals(&plan, None, out);
        CODER_FLOAT | plan.delta_flag()
    }
}

/// Decodes the `out.len()` dense values into `out`, or, where `want` is narrower, at least
/// `out[want]`: blocks after `want` are skipped, and so are blocks before it, whose residuals
/// a delta chunk only adds up (unpacked into a block on the stack, not into `out`). Other
/// values are left as they were.
///
/// Out of line, once per build and per kind of read (whole chunk or range): inlined, its 32
/// unpacking kernels per width were compiled into each of its eight callers in both builds,
/// which took most of the crate's build time. It runs once per chunk read, so the call costs
/// nothing measurable; a whole chunk keeps its own copy, in which `want` is known to cover
/// the block loop (sharing the range's copy cost a walk's whole reads 3% more instructions).
#[inline(always)]
fn decode_dense<const SIMD: bool>(
    r: &mut Reader<'_>,
    layout: u8,
    out: &mut [MaybeUninit<f32>],
    want: std::ops::Range<usize>,
) -> Result<(), CodecError> {
    let whole = want.start == 0 && want.end >= out.len();
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `SIMD` is true only below `decode_avx2` and `decode_range_avx2`, which run
        // only on CPUs with AVX2.
        return unsafe {
            if whole {
                decode_dense_avx2::<true>(r, layout, out, want)
            } else {
                decode_dense_avx2::<false>(r, layout, out, want)
            }
        };
    }
    if whole {
        decode_dense_baseline::<true>(r, layout, out, want)
    } else {
        decode_dense_baseline::<false>(r, layout, out, want)
    }
}

/// `decode_dense` compiled for the AVX2 generation.
///
/// # Safety
/// Only on a CPU for which [`avx2_generation`] is true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,lzcnt,popcnt")]
#[inline(never)]
unsafe fn decode_dense_avx2<const WHOLE: bool>(
    r: &mut Reader<'_>,
    layout: u8,
    out: &mut [MaybeUninit<f32>],
    want: std::ops::Range<usize>,
) -> Result<(), CodecError> {
    decode_dense_with::<true, WHOLE>(r, layout, out, want)
}

/// `decode_dense` for any CPU.
#[inline(never)]
fn decode_dense_baseline<const WHOLE: bool>(
    r: &mut Reader<'_>,
    layout: u8,
    out: &mut [MaybeUninit<f32>],
    want: std::ops::Range<usize>,
) -> Result<(), CodecError> {
    decode_dense_with::<false, WHOLE>(r, layout, out, want)
}

/// The body of `decode_dense`; `WHOLE`: `want` covers `out`.
#[inline(always)]
fn decode_dense_with<const SIMD: bool, const WHOLE: bool>(
    r: &mut Reader<'_>,
    layout: u8,
    out: &mut [MaybeUninit<f32>],
    want: std::ops::Range<usize>,
) -> Result<(), CodecError> {
    let want = if WHOLE { 0..out.len() } else { want };
    let dec = match layout & CODER_MASK {
        CODER_DECIMAL | CODER_RECIPROCAL => {
            let k = r.u8()? as i8;
            let ok = if layout & CODER_MASK == CODER_DECIMAL {
                (-MAX_EXPONENT..=MAX_EXPONENT).contains(&k)
            } else {
                (0..=MAX_EXPONENT).contains(&k)
            };
            if !ok {
                return Err(CodecError::Corrupt("decimal exponent out of range"));
            }
            Some(if layout & CODER_MASK == CODER_DECIMAL {
                Decimal::Scaled(k)
            } else {
                Decimal::Reciprocal(k)
            })
        }
        CODER_FLOAT => None,
        _ => return Err(CodecError::Corrupt("unknown value coder")),
    };
    let base = r.u32()?;
    let m = out.len();
    let exception_count = if dec.is_some() {
        r.varint()? as usize
    } else {
        0
    };
    let patch_count = r.varint()? as usize;
    if exception_count > m || patch_count > m {
        return Err(CodecError::Corrupt("more exceptions than values"));
    }
    // Patches come first, as (position delta, bits above the block's width); they are
    // applied block by block, so skip over them here and read them again below.
    let mut patches = Reader {
        bytes: r.rest(),
        pos: 0,
    };
    r.skip_varints(2 * patch_count)?;
    let mut patches_left = patch_count;
    #[inline(always)]
    fn read_patch(patches: &mut Reader<'_>, at: usize) -> Result<(usize, u32), CodecError> {
        // Most patches are two one-byte varints (a step below 128 slots, high bits below
        // 128): one check for both, where reading them byte by byte was about a third of
        // decoding the patches of a walk's window.
        if let Some(&[delta, high]) = patches.bytes.get(patches.pos..patches.pos + 2)
            && (delta | high) & 0x80 == 0
        {
            patches.pos += 2;
            return Ok((at + delta as usize, u32::from(high)));
        }
        let p = at + patches.varint()? as usize;
        Ok((p, patches.varint()?))
    }
    let mut patch = if patch_count > 0 {
        Some(read_patch(&mut patches, 0)?)
    } else {
        None
    };
    let delta = layout & FLAG_DELTA != 0;
    // The values decoded: the whole blocks `want` touches.
    let lo = want.start / BLOCK * BLOCK;
    let hi = want.end.div_ceil(BLOCK).saturating_mul(BLOCK).min(m);
    // A delta chunk's residuals before `lo`, summed (wrapping, as the running sum adds them).
    let mut skipped_sum = 0u32;
    let mut scratch = [MaybeUninit::<f32>::uninit(); BLOCK];
    let mut block_start = 0;
    for block in out.chunks_mut(BLOCK) {
        let width = r.u8()?;
        if width > 32 {
            return Err(CodecError::Corrupt("bit width above 32"));
        }
        // Unpack from everything that follows, not just this block's bytes: the 8-byte loads
        // of the fast path may then run past the block's end (into bits they mask off).
        let rest = r.rest();
        r.take((block.len() * width as usize).div_ceil(8))?;
        let end = block_start + block.len();
        let summed = delta && block_start < lo;
        if (block_start < lo && !summed) || block_start >= hi {
            // Not wanted: its offset is skipped, and its patches (after the wanted blocks,
            // none is read again).
            if !delta {
                r.varint()?;
            }
            while let Some((p, _)) = patch.filter(|&(p, _)| p < end && block_start < hi) {
                patches_left -= 1;
                patch = if patches_left > 0 {
                    Some(read_patch(&mut patches, p)?)
                } else {
                    None
                };
            }
            block_start = end;
            continue;
        }
        // A delta block before the wanted ones goes to the stack, to be added up.
        let block = if summed {
            &mut scratch[..block.len()]
        } else {
            block
        };
        // As the bits are unpacked, a frame-of-reference block's offset (which follows its
        // bits) is added: patches add their high bits after, which gives the same sum. A
        // delta block's zigzag is undone then too; a patched slot is zigzagged back (the
        // map is one to one), completed and undone again.
        if !delta {
            let offset = base.wrapping_add(r.varint()?);
            unpack::<SIMD>(rest, width, Map::Offset(offset), block);
        } else {
            unpack::<SIMD>(rest, width, Map::Unzigzag, block);
        }
        // SAFETY: `unpack` wrote every slot of the block.
        let block = unsafe { assume_init(block) };
        while let Some((p, high)) = patch.filter(|&(p, _)| p < block_start + block.len()) {
            let high = high
                .checked_shl(width as u32)
                .ok_or(CodecError::Corrupt("patch in a 32-bit block"))?;
            let slot = &mut block[p - block_start];
            *slot = f32::from_bits(if delta {
                unzigzag(zigzag(slot.to_bits()).wrapping_add(high))
            } else {
                slot.to_bits().wrapping_add(high)
            });
            patches_left -= 1;
            patch = if patches_left > 0 {
                Some(read_patch(&mut patches, p)?)
            } else {
                None
            };
        }
        if summed {
            skipped_sum = block
                .iter()
                .fold(skipped_sum, |sum, o| sum.wrapping_add(o.to_bits()));
        }
        block_start = end;
    }
    if patch.is_some_and(|(p, _)| p >= m || hi == m) {
        return Err(CodecError::Corrupt("patch position past the values"));
    }
    let exception_pos = r.take(2 * exception_count)?;
    let exception_bits = r.take(4 * exception_count)?;
    // SAFETY: every block from `lo` to `hi` was unpacked into `out` above.
    let out = unsafe { assume_init(&mut out[lo..hi]) };
    // The running sum of a delta chunk; for float words it also maps them back to float bits.
    let ordered = dec.is_none();
    if delta {
        prefix_sum::<SIMD>(base.wrapping_add(skipped_sum), ordered, out);
    } else if ordered {
        for o in out.iter_mut() {
            *o = f32::from_bits(from_ordered(o.to_bits()));
        }
    }
    match dec {
        Some(Decimal::Scaled(k)) if k >= 0 => {
            let p = POW10_F32[k as usize];
            for o in out.iter_mut() {
                *o = o.to_bits() as i32 as f32 / p;
            }
        }
        Some(Decimal::Scaled(k)) => {
            let p = POW10_F32[(-k) as usize];
            for o in out.iter_mut() {
                *o = o.to_bits() as i32 as f32 * p;
            }
        }
        Some(Decimal::Reciprocal(k)) => {
            let p = POW10_F32[k as usize];
            for o in out.iter_mut() {
                *o = p / o.to_bits() as i32 as f32;
            }
        }
        None => {}
    }
    for (p, b) in exception_pos
        .chunks_exact(2)
        .zip(exception_bits.chunks_exact(4))
    {
        let p = u16::from_le_bytes([p[0], p[1]]) as usize;
        if p >= m {
            return Err(CodecError::Corrupt("exception position past the values"));
        }
        if let Some(slot) = out.get_mut(p.wrapping_sub(lo)) {
            *slot = f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
    }
    Ok(())
}

/// Maps values to decimal integers in `ints`; values that do not round-trip are returned as
/// exceptions (position, bits) and take the previous integer (or the first good one) so
/// residuals stay small.
#[inline(always)]
fn encode_decimal(dense: &[u32], dec: Decimal, ints: &mut [u32]) -> Vec<(u16, u32)> {
    // One monomorphic loop per mapping, so no match is left inside the loop.
    #[inline(always)]
    fn kernel(
        dense: &[u32],
        ints: &mut [u32],
        to_int: impl Fn(f32) -> f64,
        to_value: impl Fn(i32) -> f32,
    ) -> Vec<(u16, u32)> {
        // Branch-free so that it vectorises: integers and a mismatch count first, the
        // (rare) exceptions collected in a second pass only when there are any.
        let mut bad = 0usize;
        for (&b, d) in dense.iter().zip(ints.iter_mut()) {
            let x = round_to_i32(to_int(f32::from_bits(b)));
            *d = x as u32;
            bad += usize::from(to_value(x).to_bits() != b);
        }
        let mut exceptions = Vec::with_capacity(bad);
        if bad > 0 {
            for (i, (&b, &d)) in dense.iter().zip(ints.iter()).enumerate() {
                if to_value(d as i32).to_bits() != b {
                    exceptions.push((i as u16, b));
                }
            }
        }
        exceptions
    }
    let exceptions = match dec {
        Decimal::Scaled(k) if k >= 0 => {
            let (s, p) = (POW10_F64[(k + 10) as usize], POW10_F32[k as usize]);
            kernel(dense, ints, |v| v as f64 * s, |d| d as f32 / p)
        }
        Decimal::Scaled(k) => {
            let (s, p) = (POW10_F64[(k + 10) as usize], POW10_F32[(-k) as usize]);
            kernel(dense, ints, |v| v as f64 * s, |d| d as f32 * p)
        }
        Decimal::Reciprocal(k) => {
            let (s, p) = (POW10_F64[(k + 10) as usize], POW10_F32[k as usize]);
            kernel(dense, ints, |v| s / v as f64, |d| p / d as f32)
        }
    };
    let Some(first_good) =
        (0..ints.len()).find(|&i| exceptions.get(i).is_none_or(|e| e.0 as usize != i))
    else {
        return exceptions;
    };
    let lead = ints.get(first_good).copied().unwrap_or(0);
    for &(p, _) in &exceptions {
        let p = p as usize;
        ints[p] = if p < first_good { lead } else { ints[p - 1] };
    }
    exceptions
}

/// Order-preserving map of float bits to u32: deltas between neighbours stay small.
#[inline(always)]
fn to_ordered(b: u32) -> u32 {
    b ^ (((b as i32 >> 31) as u32) | 0x8000_0000)
}

#[inline(always)]
fn from_ordered(o: u32) -> u32 {
    o ^ (!((o as i32 >> 31) as u32) | 0x8000_0000)
}

#[inline(always)]
fn float_words(dense: &[u32]) -> Words {
    let mut words = Words::empty();
    words.extend(dense.iter().map(|&b| to_ordered(b)));
    words
}

// ---------------------------------------------------------------------------------------------
// Residuals: frame of reference per block or zigzag delta, a bit width per block of 128
// values, patches for outliers.

/// Values per block: each block has its own bit width (and, for frame of reference, its own
/// minimum), so a burst or a level shift widens one block, not the chunk.
const BLOCK: usize = 128;

thread_local! {
    /// Word buffers the encoder reuses on this thread (dense values, words, residuals): a
    /// chunk takes four to eight, each as long as the chunk, and allocating them (4 KB, past
    /// the allocator's per-thread cache) cost about a tenth of encoding.
    static WORDS: RefCell<Vec<Vec<u32>>> = const { RefCell::new(Vec::new()) };
}

/// Makes `words` `len` long, keeping what it holds (zeros past that) rather than zeroing it:
/// for callers that write every word they later read.
#[inline(always)]
fn set_len_unzeroed(words: &mut Vec<u32>, len: usize) {
    if words.len() >= len {
        words.truncate(len);
    } else {
        words.resize(len, 0);
    }
}

/// A word buffer from `WORDS`, given back when dropped.
struct Words(Vec<u32>);

impl Words {
    /// Buffers kept per thread, and the largest capacity kept, in words (the store's chunks
    /// are 1,024 slots; longer ones, which only tests encode, are freed).
    const KEPT: usize = 16;
    const KEPT_CAPACITY: usize = 4096;

    /// A buffer from the thread's pool, as it was given back (or a new one).
    fn pooled() -> Vec<u32> {
        WORDS
            .try_with(|pool| pool.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn empty() -> Words {
        let mut words = Words::pooled();
        words.clear();
        Words(words)
    }

    /// A buffer of `len` words whose values are whatever it last held (zeros past that):
    /// for a caller that writes every word before it reads any, which then pays for no
    /// zeroing pass (four 4 KB passes a chunk were about 3% of sealing emmy's chunks).
    fn overwritten(len: usize) -> Words {
        let mut words = Words::pooled();
        set_len_unzeroed(&mut words, len);
        Words(words)
    }
}

impl std::ops::Deref for Words {
    type Target = Vec<u32>;
    fn deref(&self) -> &Vec<u32> {
        &self.0
    }
}

impl std::ops::DerefMut for Words {
    fn deref_mut(&mut self) -> &mut Vec<u32> {
        &mut self.0
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        let words = std::mem::take(&mut self.0);
        if words.capacity() > 0 && words.capacity() <= Self::KEPT_CAPACITY {
            // After the thread's pool is gone (thread exit), the buffer is simply freed.
            let _ = WORDS.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < Self::KEPT {
                    pool.push(words);
                }
            });
        }
    }
}

struct Plan {
    delta: bool,
    base: u32,
    /// Per block: bit width and (frame of reference) minimum minus `base`.
    blocks: Vec<(u8, u32)>,
    residuals: Words,
    /// (position, residual >> block width) of residuals too wide for their block.
    patches: Vec<(u16, u32)>,
    /// Bytes of the block headers, packed residuals and patches.
    bytes: usize,
}

impl Plan {
    fn delta_flag(&self) -> u8 {
        if self.delta { FLAG_DELTA } else { 0 }
    }
}

#[inline(always)]
fn bit_len(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// `bit_len` in a form the compiler turns into vector code (AVX2 has no vector count of
/// leading zeros): the exponent of the value as a float. Only the top bit and no two
/// adjacent ones are kept first, so that the conversion cannot round up to the next power
/// of two; values with the top bit set are 32 long.
#[inline(always)]
fn bit_len_by_float(x: u32) -> u8 {
    let kept = x & !(x >> 1);
    let exponent = ((kept as i32 as f32).to_bits() >> 23) as i32 & 0xFF;
    if (x as i32) < 0 {
        32
    } else {
        (exponent - 126).max(0) as u8
    }
}

#[inline(always)]
fn zigzag(x: u32) -> u32 {
    (x << 1) ^ ((x as i32 >> 31) as u32)
}

#[inline(always)]
fn unzigzag(z: u32) -> u32 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

#[inline(always)]
fn varint_len(v: u32) -> usize {
    (bit_len(v) as usize).div_ceil(7).max(1)
}

/// The bits of the first NaN in `values`: groups of 16 without one are passed over with one
/// vector compare each (a chunk without gaps is searched to its end).
#[inline(always)]
fn first_nan(values: &[f32]) -> Option<u32> {
    values
        .chunks(16)
        .find(|group| group.iter().fold(false, |any, v| any | v.is_nan()))
        .and_then(|group| group.iter().find(|v| v.is_nan()))
        .map(|v| v.to_bits())
}

/// Width that minimises packed bytes plus patches. A patch costs a one-byte position delta
/// (usually) and a varint of the bits above the width, counted here as if every patch had the
/// widest value's length (cheap, slightly pessimistic). The search is exact: candidates are
/// tried from the widest down and it stops once no narrower width can be cheaper (those patch
/// at least the values this one does, each at least as dearly, and pack at least the lowest
/// candidate's bits). Narrow blocks count with one pass over the values per candidate (these
/// passes vectorise); wide ones take the bit lengths once (`best_width_wide`).
#[inline(always)]
fn best_width(rs: &[u32]) -> (u8, usize) {
    let len = rs.len();
    let top = bit_len(rs.iter().fold(0, |acc, &r| acc | r)) as usize;
    let mut best = (top as u8, (len * top).div_ceil(8));
    if top > PASSES_UP_TO {
        return best_width_wide(rs, top, best);
    }
    // Narrower by more than 16 bits would patch most values; not worth the search.
    let lowest = top.saturating_sub(16);
    for w in (lowest..top).rev() {
        let above = rs.iter().map(|&r| u32::from(r >> w != 0)).sum::<u32>() as usize;
        if try_width((len, top, lowest), w, above, &mut best) {
            break;
        }
    }
    best
}

/// One candidate of the width search over `len` values of at most `top` bits, from the widest
/// down to `lowest`: width `w`, with `above` values longer than it (patched), replaces `best`
/// if cheaper. True when no narrower width can be cheaper than the best: it patches at least
/// these values, each at least as dearly, and packs at least `lowest` bits a value.
#[inline(always)]
fn try_width(
    (len, top, lowest): (usize, usize, usize),
    w: usize,
    above: usize,
    best: &mut (u8, usize),
) -> bool {
    let patches = above * (1 + (top - w).div_ceil(7));
    let bytes = (len * w).div_ceil(8) + patches;
    if bytes < best.1 {
        *best = (w as u8, bytes);
    }
    (len * lowest).div_ceil(8) + patches >= best.1
}

/// Widest block (in bits) searched with one pass over its values per candidate width (its
/// search stops after a few); wider blocks take `best_width_wide`.
const PASSES_UP_TO: usize = 8;

/// `best_width` for wide blocks: the bit lengths are taken once into bytes (a vector loop,
/// through `bit_len_by_float`), then each candidate width counts the lengths above it with
/// byte compares, 32 to a register.
#[inline(always)]
fn best_width_wide(rs: &[u32], top: usize, mut best: (u8, usize)) -> (u8, usize) {
    const {
        assert!(
            BLOCK <= u8::MAX as usize,
            "a block's counts must fit a byte"
        )
    };
    let len = rs.len();
    debug_assert!(len <= BLOCK, "best_width_wide takes one block");
    let mut lens = [0u8; BLOCK];
    for (l, &r) in lens.iter_mut().zip(rs) {
        *l = bit_len_by_float(r);
    }
    let lens = &lens[..len];
    let lowest = top.saturating_sub(16);
    for w in (lowest..top).rev() {
        // At most BLOCK lengths: a byte count cannot overflow.
        let above = lens
            .iter()
            .fold(0u8, |n, &l| n.wrapping_add(u8::from(l > w as u8))) as usize;
        if try_width((len, top, lowest), w, above, &mut best) {
            break;
        }
    }
    best
}

/// `signed`: the words are i32 (decimal integers) rather than u32 (ordered float bits), which
/// decides what a minimum is. Both kinds are costed exactly, block by block; the cheaper one
/// is used for the whole chunk.
#[inline(always)]
fn plan_residuals(words: &[u32], signed: bool) -> Plan {
    // Signed order is unsigned order of the words with the sign bit flipped.
    let flip = if signed { 0x8000_0000u32 } else { 0 };
    let min = |ws: &[u32]| ws.iter().map(|&w| w ^ flip).min().unwrap_or(flip) ^ flip;
    let base = min(words);
    let first = words.first().copied().unwrap_or(0);
    let m = words.len();
    // Both are written whole, block by block, below.
    let (mut for_res, mut delta_res) = (Words::overwritten(m), Words::overwritten(m));
    let blocks = m.div_ceil(BLOCK);
    let (mut for_blocks, mut delta_blocks) =
        (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
    let (mut for_bytes, mut delta_bytes) = (0, 0);
    let mut prev = first;
    for ((ws, fr), dr) in words
        .chunks(BLOCK)
        .zip(for_res.chunks_mut(BLOCK))
        .zip(delta_res.chunks_mut(BLOCK))
    {
        let block_min = min(ws);
        for ((f, d), &w) in fr.iter_mut().zip(dr.iter_mut()).zip(ws) {
            *f = w.wrapping_sub(block_min);
            *d = zigzag(w.wrapping_sub(prev));
            prev = w;
        }
        let (fw, fb) = best_width(fr);
        let (dw, db) = best_width(dr);
        let offset = block_min.wrapping_sub(base);
        for_blocks.push((fw, offset));
        delta_blocks.push((dw, 0));
        for_bytes += 1 + fb + varint_len(offset);
        delta_bytes += 1 + db;
    }
    let delta = delta_bytes < for_bytes;
    let (residuals, blocks, bytes) = if delta {
        (delta_res, delta_blocks, delta_bytes)
    } else {
        (for_res, for_blocks, for_bytes)
    };
    let mut patches = Vec::new();
    for (b, rs) in residuals.chunks(BLOCK).enumerate() {
        let width = u32::from(blocks[b].0);
        // Patches are rare: groups of 16 with none are passed over with one or-reduction
        // (a value is patched when it has a bit at `width` or above; none at 32).
        for (g, group) in rs.chunks(16).enumerate() {
            if u64::from(group.iter().fold(0, |a, &r| a | r)) >> width == 0 {
                continue;
            }
            // Here `width` < 32. The patched values as a mask, then taken lowest first.
            let mut mask = group.iter().enumerate().fold(0u32, |m, (j, &r)| {
                m | u32::from(r >> (width & 31) != 0) << j
            });
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                patches.push(((b * BLOCK + g * 16 + j) as u16, group[j] >> (width & 31)));
            }
        }
    }
    Plan {
        delta,
        base: if delta { first } else { base },
        blocks,
        residuals,
        patches,
        bytes,
    }
}

/// Writes base, counts, blocks, exceptions and patches (FORMAT.md order).
#[inline(always)]
fn write_residuals(plan: &Plan, exceptions: Option<&[(u16, u32)]>, out: &mut Vec<u8>) {
    out.extend_from_slice(&plan.base.to_le_bytes());
    if let Some(e) = exceptions {
        put_varint(out, u64::from(e.len() as u32));
    }
    put_varint(out, u64::from(plan.patches.len() as u32));
    let mut prev = 0;
    for &(p, high) in &plan.patches {
        put_varint(out, u64::from((p - prev) as u32));
        put_varint(out, u64::from(high));
        prev = p;
    }
    for (&(width, offset), rs) in plan.blocks.iter().zip(plan.residuals.chunks(BLOCK)) {
        out.push(width);
        pack(rs, width, out);
        if !plan.delta {
            put_varint(out, u64::from(offset));
        }
    }
    if let Some(e) = exceptions {
        for &(p, _) in e {
            out.extend_from_slice(&p.to_le_bytes());
        }
        for &(_, w) in e {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
}

/// Replaces each word (as u32 bits) by `first` plus the wrapping sum of the words up to it,
/// mapped back from order-preserving float bits when `ordered` (the sum carries on from the
/// unmapped words). The sum is the serial part of decoding a delta-coded chunk: with `SIMD`
/// (an AVX2-generation CPU) it runs eight words at a time, else four in SSE2 registers on
/// x86_64 (every x86_64 CPU has SSE2).
#[inline(always)]
fn prefix_sum<const SIMD: bool>(first: u32, ordered: bool, out: &mut [f32]) {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let (mut acc, mut done) = (first, 0);
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `SIMD` is true only below `decode_avx2` and `decode_range_avx2`, which run
        // only on CPUs with AVX2.
        (acc, done) = unsafe {
            if ordered {
                prefix_sum_avx2::<true>(acc, out)
            } else {
                prefix_sum_avx2::<false>(acc, out)
            }
        };
    }
    if ordered {
        prefix_sum_sse2::<true>(acc, &mut out[done..]);
    } else {
        prefix_sum_sse2::<false>(acc, &mut out[done..]);
    }
}

/// `prefix_sum` four words at a time in SSE2 registers (a plain loop off x86_64).
#[inline(always)]
fn prefix_sum_sse2<const ORDERED: bool>(first: u32, out: &mut [f32]) {
    let mut acc = first;
    #[cfg(target_arch = "x86_64")]
    let out = {
        use std::arch::x86_64::{
            __m128i, _mm_add_epi32, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_or_si128,
            _mm_set1_epi32, _mm_shuffle_epi32, _mm_slli_si128, _mm_srai_epi32, _mm_storeu_si128,
            _mm_xor_si128,
        };
        let (quads, rest) = out.split_at_mut(out.len() / 4 * 4);
        // SAFETY: SSE2 is part of the x86_64 baseline; each load and store covers exactly
        // four f32 of `quads` (unaligned access allowed), whose bits are the u32 lanes.
        unsafe {
            let mut carry = _mm_set1_epi32(acc as i32);
            let ones = _mm_set1_epi32(-1);
            let sign = _mm_set1_epi32(i32::MIN);
            for quad in quads.chunks_exact_mut(4) {
                let p = quad.as_mut_ptr().cast::<__m128i>();
                let mut x = _mm_loadu_si128(p);
                x = _mm_add_epi32(x, _mm_slli_si128::<4>(x));
                x = _mm_add_epi32(x, _mm_slli_si128::<8>(x));
                x = _mm_add_epi32(x, carry);
                carry = _mm_shuffle_epi32::<0xFF>(x);
                if ORDERED {
                    // from_ordered, four lanes: o ^ (!(o >> 31) | 0x8000_0000).
                    let flip = _mm_or_si128(_mm_xor_si128(_mm_srai_epi32::<31>(x), ones), sign);
                    x = _mm_xor_si128(x, flip);
                }
                _mm_storeu_si128(p, x);
            }
            acc = _mm_cvtsi128_si32(carry) as u32;
        }
        rest
    };
    for o in out.iter_mut() {
        acc = acc.wrapping_add(o.to_bits());
        *o = f32::from_bits(if ORDERED { from_ordered(acc) } else { acc });
    }
}

/// `prefix_sum` of the leading multiple of eight words of `out`: (the sum so far, words
/// done). Within a register the sum takes two shifted adds per 128-bit half and one more to
/// carry the low half's total into the high half; the register's total is broadcast from
/// its last lane before the carry is added, so from one register to the next only one add
/// waits on another (a broadcast across halves has a latency of several cycles).
///
/// # Safety
/// Only on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn prefix_sum_avx2<const ORDERED: bool>(first: u32, out: &mut [f32]) -> (u32, usize) {
    use std::arch::x86_64::{
        __m256i, _mm_cvtsi128_si32, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_loadu_si256,
        _mm256_or_si256, _mm256_permute2x128_si256, _mm256_permutevar8x32_epi32, _mm256_set1_epi32,
        _mm256_shuffle_epi32, _mm256_slli_si256, _mm256_srai_epi32, _mm256_storeu_si256,
        _mm256_xor_si256,
    };
    let groups = out.len() / 8;
    // SAFETY: register g loads and stores out[8g..8g + 8], inside `out` for g < groups;
    // unaligned access is allowed.
    unsafe {
        let p = out.as_mut_ptr().cast::<__m256i>();
        let mut carry = _mm256_set1_epi32(first as i32);
        let last = _mm256_set1_epi32(7);
        let ones = _mm256_set1_epi32(-1);
        let sign = _mm256_set1_epi32(i32::MIN);
        for g in 0..groups {
            let mut x = _mm256_loadu_si256(p.add(g));
            x = _mm256_add_epi32(x, _mm256_slli_si256::<4>(x));
            x = _mm256_add_epi32(x, _mm256_slli_si256::<8>(x));
            // The low half's total (its lane 3) into every lane of the high half.
            let low_total = _mm256_shuffle_epi32::<0xFF>(x);
            x = _mm256_add_epi32(x, _mm256_permute2x128_si256::<0x08>(low_total, low_total));
            let total = _mm256_permutevar8x32_epi32(x, last);
            x = _mm256_add_epi32(x, carry);
            carry = _mm256_add_epi32(carry, total);
            if ORDERED {
                let flip =
                    _mm256_or_si256(_mm256_xor_si256(_mm256_srai_epi32::<31>(x), ones), sign);
                x = _mm256_xor_si256(x, flip);
            }
            _mm256_storeu_si256(p.add(g), x);
        }
        (
            _mm_cvtsi128_si32(_mm256_castsi256_si128(carry)) as u32,
            groups * 8,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Bit packing: value i occupies bits [i*w, (i+1)*w) of a little-endian bit stream.

#[inline(always)]
fn pack(values: &[u32], width: u8, out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    let simd = avx2_generation();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    pack_with(values, width, out, simd)
}

/// `pack`, with the AVX2 kernel when `simd` (only on a CPU that has it).
#[inline(always)]
fn pack_with(values: &[u32], width: u8, out: &mut Vec<u8>, simd: bool) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                $($w => pack_width::<$w>(values, out, simd),)*
                _ => {}
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
}

/// Packs eight values of W bits at a time into W bytes (`pack_groups`, or with `simd`
/// `pack_groups_avx2`), then the last few bit by bit. Bits above W are dropped (patches carry
/// them).
#[inline(always)]
fn pack_width<const W: usize>(values: &[u32], out: &mut Vec<u8>, simd: bool) {
    let mask = low_bits(W);
    let start = out.len();
    out.resize(start + (values.len() * W).div_ceil(8), 0);
    let buf = &mut out[start..];
    let rest = values.chunks_exact(8).remainder();
    #[cfg(target_arch = "x86_64")]
    if simd {
        assert!(avx2_generation(), "the AVX2 packing kernel needs AVX2");
        // SAFETY: the CPU has AVX2 (asserted: the check reads a cached answer).
        unsafe { pack_groups_avx2::<W>(values, buf) };
    } else {
        pack_groups::<W>(values, buf);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = simd;
        pack_groups::<W>(values, buf);
    }
    // The last, partial group: at most 7 values, joined as a whole group's are.
    let mut words = [0u64; 4];
    for (j, &v) in rest.iter().enumerate() {
        join_at(&mut words, j * W, W, v as u64 & mask);
    }
    words_into(&words, &mut buf[values.len() / 8 * W..]);
}

/// The whole groups of eight of `values`, each packed into its W bytes of `buf` through four
/// u64 words: with W a constant, every value's word and shift are constants once the group's
/// loop is unrolled.
#[inline(always)]
fn pack_groups<const W: usize>(values: &[u32], buf: &mut [u8]) {
    let mask = low_bits(W);
    for (group, dst) in values.chunks_exact(8).zip(buf.chunks_exact_mut(W)) {
        let mut words = [0u64; 4];
        for (j, &v) in group.iter().enumerate() {
            join_at(&mut words, j * W, W, v as u64 & mask);
        }
        words_into(&words, dst);
    }
}

/// Ors `item` (`len` bits, at most 64) into `words`, a little-endian bit stream, at bit `at`.
#[inline(always)]
fn join_at(words: &mut [u64; 4], at: usize, len: usize, item: u64) {
    words[at / 64] |= item << (at % 64);
    if at % 64 + len > 64 {
        words[at / 64 + 1] |= item >> (64 - at % 64);
    }
}

/// The first `dst.len()` bytes (at most 8N) of `words` as a little-endian stream, into `dst`.
#[inline(always)]
fn words_into<const N: usize>(words: &[u64; N], dst: &mut [u8]) {
    let mut bytes = [[0u8; 8]; N];
    for (b, word) in bytes.iter_mut().zip(words) {
        *b = word.to_le_bytes();
    }
    dst.copy_from_slice(&bytes.as_flattened()[..dst.len()]);
}

/// The lowest `width` bits set (width at most 64).
const fn low_bits(width: usize) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    }
}

/// `pack_groups` with AVX2: a group's eight values are masked, shifted to their offsets and
/// joined in vector registers, so that a group takes a dozen instructions where shifting and
/// joining one value at a time took three or four a value. Up to 16 bits, values 0-3 and 4-7
/// each join into a u64 (4W bits) and the two halves into the group's 8W; wider, values join
/// in pairs (2W bits to a u64 lane) and the four pairs are placed in scalar words.
///
/// # Safety
/// Only on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_groups_avx2<const W: usize>(values: &[u32], buf: &mut [u8]) {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi32(low_bits(W) as u32 as i32);
    let w = W as i64;
    for (group, dst) in values.chunks_exact(8).zip(buf.chunks_exact_mut(W)) {
        // SAFETY: `group` holds eight u32, read unaligned.
        let v = _mm256_and_si256(unsafe { _mm256_loadu_si256(group.as_ptr().cast()) }, mask);
        if W <= 16 {
            // Values 0-3 and 4-7 widened to u64 lanes and shifted to 0, W, 2W and 3W.
            let offsets = _mm256_set_epi64x(3 * w, 2 * w, w, 0);
            let lo = _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(v)), offsets);
            let hi = _mm256_sllv_epi64(
                _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(v)),
                offsets,
            );
            // Lanes (lo0|lo1, hi0|hi1, lo2|lo3, hi2|hi3), then the halves or-ed: (lo, hi).
            let t = _mm256_or_si256(_mm256_unpacklo_epi64(lo, hi), _mm256_unpackhi_epi64(lo, hi));
            let t = _mm_or_si128(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t));
            let (lo, hi) = (
                _mm_cvtsi128_si64(t) as u64 as u128,
                _mm_extract_epi64::<1>(t) as u64 as u128,
            );
            let joined = lo | hi << (4 * W);
            words_into(&[joined as u64, (joined >> 64) as u64], dst);
        } else {
            // Pairs (v0 | v1 << W, ...) in u64 lanes, then placed at 0, 2W, 4W and 6W.
            let even = _mm256_and_si256(v, _mm256_set1_epi64x(u32::MAX as i64));
            let odd = _mm256_srli_epi64::<32>(v);
            let pairs = _mm256_or_si256(even, _mm256_sllv_epi64(odd, _mm256_set1_epi64x(w)));
            let low = _mm256_castsi256_si128(pairs);
            let high = _mm256_extracti128_si256::<1>(pairs);
            let p = [
                _mm_cvtsi128_si64(low) as u64,
                _mm_extract_epi64::<1>(low) as u64,
                _mm_cvtsi128_si64(high) as u64,
                _mm_extract_epi64::<1>(high) as u64,
            ];
            let mut words = [0u64; 4];
            for (i, &pair) in p.iter().enumerate() {
                join_at(&mut words, 2 * W * i, 2 * W, pair);
            }
            words_into(&words, dst);
        }
    }
}

/// What unpacking does to each value as it lands: nothing, undo the zigzag of a delta, or add
/// a frame-of-reference block's offset.
#[derive(Clone, Copy)]
enum Map {
    Same,
    Unzigzag,
    Offset(u32),
}

impl Map {
    #[inline(always)]
    fn apply(self, v: u32) -> u32 {
        match self {
            Self::Same => v,
            Self::Unzigzag => unzigzag(v),
            Self::Offset(offset) => v.wrapping_add(offset),
        }
    }
}

/// Unpacks `out.len()` values of `width` bits (as float bits, through `map`) from the start of
/// `packed`, which the caller has checked to hold at least `ceil(out.len() * width / 8)`
/// bytes. `SIMD`: the caller runs on an AVX2-generation CPU.
#[inline(always)]
fn unpack<const SIMD: bool>(packed: &[u8], width: u8, map: Map, out: &mut [MaybeUninit<f32>]) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                $($w => unpack_width::<SIMD, $w>(packed, map, out),)*
                _ => out.fill(MaybeUninit::new(f32::from_bits(map.apply(0)))),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
}

#[inline(always)]
fn unpack_width<const SIMD: bool, const W: usize>(
    packed: &[u8],
    map: Map,
    out: &mut [MaybeUninit<f32>],
) {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: `SIMD` is true only below `decode_avx2` and `decode_range_avx2`, which run
        // only on CPUs with AVX2.
        done = unsafe {
            match map {
                Map::Same => unpack_avx2::<W, MAP_SAME>(packed, 0, out),
                Map::Unzigzag => unpack_avx2::<W, MAP_UNZIGZAG>(packed, 0, out),
                Map::Offset(offset) => unpack_avx2::<W, MAP_OFFSET>(packed, offset, out),
            }
        };
    }
    // Whole groups of eight values were done: W bytes each.
    let (packed, out) = (&packed[done / 8 * W..], &mut out[done..]);
    match map {
        Map::Same => unpack_scalar::<W>(packed, |v| v, out),
        Map::Unzigzag => unpack_scalar::<W>(packed, unzigzag, out),
        Map::Offset(offset) => unpack_scalar::<W>(packed, |v| v.wrapping_add(offset), out),
    }
}

/// Eight values of W bits are W bytes; each is read with one unaligned u64 load whose offset
/// and shift are constants once the loop over the group is unrolled.
#[inline(always)]
fn unpack_scalar<const W: usize>(
    packed: &[u8],
    map: impl Fn(u32) -> u32 + Copy,
    out: &mut [MaybeUninit<f32>],
) {
    let mask = low_bits(W);
    let groups = out.len() / 8;
    // Groups whose 8-byte loads stay inside `packed`; the rest take the careful path.
    let fast = groups.min(packed.len().saturating_sub(8) / W);
    let (head, tail) = out.split_at_mut(fast * 8);
    for (g, dst) in head.chunks_exact_mut(8).enumerate() {
        let src = &packed[g * W..g * W + W + 8];
        for (j, d) in dst.iter_mut().enumerate() {
            let bit = j * W;
            let o = bit / 8;
            let word = u64::from_le_bytes(src[o..o + 8].try_into().unwrap_or([0; 8]));
            d.write(f32::from_bits(map(((word >> (bit % 8)) & mask) as u32)));
        }
    }
    let mut bit = fast * 8 * W;
    for d in tail {
        let o = bit / 8;
        let mut buf = [0u8; 8];
        let end = (o + 8).min(packed.len());
        buf[..end - o].copy_from_slice(&packed[o..end]);
        d.write(f32::from_bits(map(
            ((u64::from_le_bytes(buf) >> (bit % 8)) & mask) as u32,
        )));
        bit += W;
    }
}

// `Map`s as the AVX2 kernel's const parameter.
#[cfg(target_arch = "x86_64")]
const MAP_SAME: u8 = 0;
#[cfg(target_arch = "x86_64")]
const MAP_UNZIGZAG: u8 = 1;
#[cfg(target_arch = "x86_64")]
const MAP_OFFSET: u8 = 2;

/// Where the eight values of a group of W-bit values sit, for one 256-bit register whose low
/// half holds 16 bytes from the group's start and whose high half 16 bytes from the byte of
/// value 4 (every value of every width ends inside its half: the tests check it).
/// `SHUFFLE` gathers the four bytes from each value's first into its lane and `SHIFTS` then
/// drops the bits of earlier values below it. A value wider than 25 bits can reach a fifth
/// byte: `NEXT` gathers the four bytes after the first, which `NEXT_SHIFTS` moves up to join
/// the rest (the bits the two share are equal, so they are or-ed).
#[cfg(target_arch = "x86_64")]
struct Lanes<const W: usize>;

#[cfg(target_arch = "x86_64")]
impl<const W: usize> Lanes<W> {
    /// Byte offset of value 4 from the group's start.
    const HIGH: usize = 4 * W / 8;
    /// The first byte of value `j`, counted from the start of its half.
    const fn first_byte(j: usize) -> usize {
        j * W / 8 - if j >= 4 { Self::HIGH } else { 0 }
    }
    const SHUFFLE: [u8; 32] = {
        let mut s = [0u8; 32];
        let mut j = 0;
        while j < 8 {
            let first = Self::first_byte(j);
            let mut k = 0;
            while k < 4 {
                s[4 * j + k] = (first + k) as u8;
                k += 1;
            }
            j += 1;
        }
        s
    };
    const NEXT: [u8; 32] = {
        let mut s = [0u8; 32];
        let mut j = 0;
        while j < 32 {
            // A fifth byte past the half is never needed (the value ends before it), and
            // what a clamped index brings in is masked off.
            s[j] = if Self::SHUFFLE[j] < 15 {
                Self::SHUFFLE[j] + 1
            } else {
                15
            };
            j += 1;
        }
        s
    };
    const SHIFTS: [u32; 8] = {
        let mut s = [0u32; 8];
        let mut j = 0;
        while j < 8 {
            s[j] = (j * W % 8) as u32;
            j += 1;
        }
        s
    };
    const NEXT_SHIFTS: [u32; 8] = {
        let mut s = [0u32; 8];
        let mut j = 0;
        while j < 8 {
            s[j] = 8 - Self::SHIFTS[j];
            j += 1;
        }
        s
    };
    /// The last byte of the group's half that value `j` needs, counted from the half's start.
    #[cfg(test)]
    const fn last_byte(j: usize) -> usize {
        Self::first_byte(j) + (j * W % 8 + W).div_ceil(8) - 1
    }
}

/// Unpacks the leading groups of eight values of `out` whose loads stay inside `packed`
/// (16 bytes from a group's start and from its value 4), eight values an iteration: two
/// loads, a byte shuffle, a variable shift (two of each above 25 bits), a mask, the map.
/// Returns the values written, a multiple of eight.
///
/// # Safety
/// Only on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn unpack_avx2<const W: usize, const MAP: u8>(
    packed: &[u8],
    offset: u32,
    out: &mut [MaybeUninit<f32>],
) -> usize {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_add_epi32, _mm256_and_si256,
        _mm256_castsi128_si256, _mm256_inserti128_si256, _mm256_loadu_si256, _mm256_or_si256,
        _mm256_set1_epi32, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_sllv_epi32,
        _mm256_srli_epi32, _mm256_srlv_epi32, _mm256_storeu_si256, _mm256_sub_epi32,
        _mm256_xor_si256,
    };
    debug_assert!((1..=32).contains(&W));
    let reach = Lanes::<W>::HIGH + 16;
    let groups = if packed.len() < reach {
        0
    } else {
        ((packed.len() - reach) / W + 1).min(out.len() / 8)
    };
    // SAFETY: group g reads bytes [g*W, g*W + HIGH + 16) of `packed`, inside it for every
    // g < groups, and writes out[8g..8g + 8], inside `out`; unaligned access is allowed.
    unsafe {
        let shuffle = _mm256_loadu_si256(Lanes::<W>::SHUFFLE.as_ptr().cast::<__m256i>());
        let shifts = _mm256_loadu_si256(Lanes::<W>::SHIFTS.as_ptr().cast::<__m256i>());
        let next = _mm256_loadu_si256(Lanes::<W>::NEXT.as_ptr().cast::<__m256i>());
        let next_shifts = _mm256_loadu_si256(Lanes::<W>::NEXT_SHIFTS.as_ptr().cast::<__m256i>());
        let mask = _mm256_set1_epi32(low_bits(W) as u32 as i32);
        let one = _mm256_set1_epi32(1);
        let offset = _mm256_set1_epi32(offset as i32);
        let src = packed.as_ptr();
        let dst = out.as_mut_ptr().cast::<__m256i>();
        for g in 0..groups {
            let at = src.add(g * W);
            let low = _mm_loadu_si128(at.cast::<__m128i>());
            let high = _mm_loadu_si128(at.add(Lanes::<W>::HIGH).cast::<__m128i>());
            let bytes = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(low), high);
            let mut words = _mm256_srlv_epi32(_mm256_shuffle_epi8(bytes, shuffle), shifts);
            if W > 25 {
                let more = _mm256_sllv_epi32(_mm256_shuffle_epi8(bytes, next), next_shifts);
                words = _mm256_or_si256(words, more);
            }
            let mut v = _mm256_and_si256(words, mask);
            if MAP == MAP_UNZIGZAG {
                let sign = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_and_si256(v, one));
                v = _mm256_xor_si256(_mm256_srli_epi32::<1>(v), sign);
            } else if MAP == MAP_OFFSET {
                v = _mm256_add_epi32(v, offset);
            }
            _mm256_storeu_si256(dst.add(g), v);
        }
    }
    groups * 8
}

// ---------------------------------------------------------------------------------------------
// Byte helpers.

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(CodecError::Truncated {
                needed: self.pos.saturating_add(len),
                available: self.bytes.len(),
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline(always)]
    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u32, CodecError> {
        let mut v = 0u32;
        for shift in (0..35).step_by(7) {
            let b = self.u8()?;
            if shift == 28 && b > 0x0F {
                return Err(CodecError::Corrupt("varint overflows u32"));
            }
            v |= ((b & 0x7F) as u32) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt("varint overflows u32"))
    }

    /// Moves past `count` varints without reading them (their lengths are not checked:
    /// whoever reads them later does that), eight bytes a step: a varint ends at each byte
    /// whose high bit is clear.
    #[inline(always)]
    fn skip_varints(&mut self, mut count: usize) -> Result<(), CodecError> {
        const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
        let mut at = self.pos;
        while count > 0 {
            if let Some(eight) = self.bytes.get(at..at + 8) {
                let mut ends = !u64::from_le_bytes(eight.try_into().unwrap_or([0; 8])) & HIGH_BITS;
                let found = ends.count_ones() as usize;
                if found < count {
                    count -= found;
                    at += 8;
                    continue;
                }
                for _ in 1..count {
                    ends &= ends - 1;
                }
                at += ends.trailing_zeros() as usize / 8 + 1;
                count = 0;
            } else {
                let byte = *self.bytes.get(at).ok_or(CodecError::Truncated {
                    needed: at + 1,
                    available: self.bytes.len(),
                })?;
                at += 1;
                count -= usize::from(byte & 0x80 == 0);
            }
        }
        self.pos = at;
        Ok(())
    }

    #[inline(always)]
    fn finish(&self) -> Result<(), CodecError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            extra => Err(CodecError::TrailingBytes(extra)),
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
