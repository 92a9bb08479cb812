//! JSON arrays of floats in cc-metric-store's number format: each value
//! with a fixed number of decimals (`strconv.AppendFloat(v, 'f', d, 64)`
//! in Go), `null` for NaN. Infinities are written as `null` too (Go would
//! write `+Inf`, which is not JSON).
//!
//! The value written is the exact binary value rounded to `decimals`
//! places, ties to even, as Go, Python and Rust's own formatting do. For a
//! float32 and 3 decimals that rounding is exact in integer arithmetic:
//! `v * 1000` needs at most 24 + 10 significant bits, so it is exact in
//! float64, and rounding it to an integer (ties to even) is the answer.
//! The digits are written in groups of three from tables (one 4-byte
//! store per group, forwards); `core::fmt` takes over for values too
//! large for the integer path. `python benchmarks/serve.py --only json`
//! measures the whole call (95 to 145 M floats/s on one core of the
//! development machine, 7.4 M floats in 0..1000).

use std::fmt::Write as _;

/// Powers of ten a decimal count may use on the fast path.
const SCALE: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// From here on, `v * 10^d` is beyond the integer path (see [`ROUNDER`]);
/// `core::fmt` formats it.
const FAST_LIMIT: f64 = 4e15;

/// "00" to "99": two digits per step when writing an integer.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// 2^52: adding and subtracting it rounds a smaller non-negative float64
/// to an integer, ties to even (the default rounding mode), without the
/// libm call `round_ties_even` needs on baseline x86-64.
const ROUNDER: f64 = 4_503_599_627_370_496.0;

/// Bytes a value on the fast path takes at most: a sign, 16 digits, a
/// point and 6 decimals.
const FAST_WIDTH: usize = 24;

/// Writes the value whose magnitude times `10^D` is `scaled` (below
/// [`FAST_LIMIT`]) at the start of `dst` (at least [`FAST_WIDTH`] bytes)
/// and returns its length. `D` is a constant, so the divisions by powers
/// of ten are multiplies.
#[inline]
fn write_fast<const D: usize>(dst: &mut [u8], scaled: f64, negative: bool) -> usize {
    let n = ((scaled + ROUNDER) - ROUNDER) as u64;
    let unit = SCALE[D] as u64;
    let (mut whole, mut fraction) = (n / unit, n % unit);
    let digits = whole.checked_ilog10().map_or(1, |d| d as usize + 1);
    let sign = usize::from(negative);
    let len = sign + digits + if D > 0 { D + 1 } else { 0 };
    let mut at = len;
    if D % 2 == 1 {
        at -= 1;
        dst[at] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    for _ in 0..D / 2 {
        let pair = (fraction % 100) as usize * 2;
        fraction /= 100;
        at -= 2;
        dst[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if D > 0 {
        at -= 1;
        dst[at] = b'.';
    }
    while whole >= 100 {
        let pair = (whole % 100) as usize * 2;
        whole /= 100;
        at -= 2;
        dst[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if whole >= 10 {
        let pair = whole as usize * 2;
        at -= 2;
        dst[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        dst[at] = b'0' + whole as u8;
    }
    if negative {
        dst[0] = b'-';
    }
    len
}

/// "000" to "999" as the first three bytes of each entry, the fourth a
/// spare: a group of three digits is one 4-byte store.
const TRIPLES: [[u8; 4]; 1000] = {
    let mut table = [[0u8; 4]; 1000];
    let mut n = 0;
    while n < 1000 {
        table[n] = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
            b'.',
        ];
        n += 1;
    }
    table
};

/// 0 to 999 without leading zeros, left-aligned in the first bytes of
/// each entry; the entry's last byte is its digit count.
const LEADS: [[u8; 4]; 1000] = {
    let mut table = [[0u8; 4]; 1000];
    let mut n = 0;
    while n < 1000 {
        let t = TRIPLES[n];
        table[n] = if n >= 100 {
            [t[0], t[1], t[2], 3]
        } else if n >= 10 {
            [t[1], t[2], 0, 2]
        } else {
            [t[2], 0, 0, 1]
        };
        n += 1;
    }
    table
};

/// ".000" to ".999": the point and three decimals, one 4-byte store.
const POINTED: [[u8; 4]; 1000] = {
    let mut table = [[0u8; 4]; 1000];
    let mut n = 0;
    while n < 1000 {
        let t = TRIPLES[n];
        table[n] = [b'.', t[0], t[1], t[2]];
        n += 1;
    }
    table
};

/// Integer parts from here on take [`write_fast`]'s loop.
const GROUPED_LIMIT: u64 = 1_000_000_000;

/// As [`write_fast`] for up to 3 decimals, writing forwards in groups of
/// three digits from tables: each group is one 4-byte store whose spare
/// bytes the next store (or the next value) overwrites. The rounding is
/// the same; integer parts of 10 digits or more go to [`write_fast`].
#[inline]
fn write_grouped<const D: usize>(dst: &mut [u8], scaled: f64, negative: bool) -> usize {
    let n = ((scaled + ROUNDER) - ROUNDER) as u64;
    let unit = SCALE[D] as u64;
    let whole = n / unit;
    if D > 3 || whole >= GROUPED_LIMIT {
        return write_fast::<D>(dst, scaled, negative);
    }
    // Fixed-size windows: the stores below need no bounds checks of
    // their own beyond the one on `dst`.
    let dst: &mut [u8; FAST_WIDTH] = (&mut dst[..FAST_WIDTH])
        .try_into()
        .expect("FAST_WIDTH bytes");
    dst[0] = b'-';
    let mut at = usize::from(negative);
    let mut whole = whole as u32;
    if whole >= 1000 {
        let rest;
        if whole >= 1_000_000 {
            let top = whole / 1_000_000;
            let lead = LEADS[top as usize];
            dst[at..at + 4].copy_from_slice(&lead);
            at += usize::from(lead[3]);
            rest = whole - top * 1_000_000;
            let middle = rest / 1000;
            dst[at..at + 4].copy_from_slice(&TRIPLES[middle as usize]);
            at += 3;
            whole = rest - middle * 1000;
        } else {
            let top = whole / 1000;
            let lead = LEADS[top as usize];
            dst[at..at + 4].copy_from_slice(&lead);
            at += usize::from(lead[3]);
            whole -= top * 1000;
        }
        dst[at..at + 4].copy_from_slice(&TRIPLES[whole as usize]);
        at += 3;
    } else {
        let lead = LEADS[whole as usize];
        dst[at..at + 4].copy_from_slice(&lead);
        at += usize::from(lead[3]);
    }
    if D > 0 {
        // D decimals are the first D digits of three: ".dd" for 2 is
        // ".dd0" with the last byte left for the next store.
        let fraction = (n % unit) as usize * (1000 / unit as usize);
        dst[at..at + 4].copy_from_slice(&POINTED[fraction]);
        at += D + 1;
    }
    at
}

/// Makes `out` (zero-filled) at least `needed` bytes long, with some
/// slack: zeroing bytes that are never written is the cost to keep low.
#[inline]
fn room(out: &mut Vec<u8>, needed: usize) {
    if out.len() < needed {
        out.resize(needed + (needed / 8).max(4096), 0);
    }
}

/// Writes `[v0,v1,...]` with `D` decimals into `out` from `pos` and
/// returns where it ends; `out` only grows (see [`room`]), so a buffer
/// used for many arrays is filled with zeros about once.
fn write_array<const D: usize>(out: &mut Vec<u8>, mut pos: usize, values: &[f32]) -> usize {
    // Room for the brackets and every value on the fast path with its
    // comma; a slow value makes more. Checked once per array, so the loop
    // below writes into a buffer that does not move.
    room(out, pos + 2 + values.len() * (FAST_WIDTH + 1));
    out[pos] = b'[';
    pos += 1;
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out[pos] = b',';
            pos += 1;
        }
        let scaled = f64::from(v).abs() * SCALE[D];
        if !v.is_finite() {
            out[pos..pos + 4].copy_from_slice(b"null");
            pos += 4;
        } else if scaled < FAST_LIMIT {
            pos += write_grouped::<D>(
                &mut out[pos..pos + FAST_WIDTH],
                scaled,
                v.is_sign_negative(),
            );
        } else {
            let mut text = Vec::new();
            push_slow(&mut text, f64::from(v), D);
            room(
                out,
                pos + text.len() + 2 + (values.len() - i) * (FAST_WIDTH + 1),
            );
            out[pos..pos + text.len()].copy_from_slice(&text);
            pos += text.len();
        }
    }
    out[pos] = b']';
    pos + 1
}

/// [`write_array`] with the decimal count given at run time.
fn write_any(out: &mut Vec<u8>, pos: usize, values: &[f32], decimals: usize) -> usize {
    match decimals {
        0 => write_array::<0>(out, pos, values),
        1 => write_array::<1>(out, pos, values),
        2 => write_array::<2>(out, pos, values),
        3 => write_array::<3>(out, pos, values),
        4 => write_array::<4>(out, pos, values),
        5 => write_array::<5>(out, pos, values),
        6 => write_array::<6>(out, pos, values),
        _ => panic!("decimals above MAX_DECIMALS"),
    }
}

/// Appends a float64 through `core::fmt` (exact, ties to even).
fn push_slow(out: &mut Vec<u8>, v: f64, decimals: usize) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let mut text = String::with_capacity(24);
    // Writing to a String cannot fail.
    let _ = write!(text, "{v:.decimals$}");
    out.extend_from_slice(text.as_bytes());
}

/// The largest decimal count [`float_array`] takes.
pub const MAX_DECIMALS: usize = SCALE.len() - 1;

/// Appends `[v0,v1,...]` for float32 values, each with `decimals` places
/// (at most [`MAX_DECIMALS`]), `null` for NaN and infinities.
pub fn float_array(out: &mut Vec<u8>, values: &[f32], decimals: usize) {
    let end = write_any(out, out.len(), values, decimals);
    out.truncate(end);
}

/// The `rows` rows of `values` (of equal width) as JSON arrays one after
/// the other in one buffer, and where each row's text ends in it; as
/// [`float_array`] otherwise, but filling far less memory with zeros.
pub fn float_rows(values: &[f32], rows: usize, decimals: usize) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(values.len() * (decimals + 6) + 2 * rows);
    let mut ends = Vec::with_capacity(rows);
    float_rows_into(&mut out, &mut ends, values, rows, decimals);
    out.truncate(ends.last().copied().unwrap_or(0));
    (out, ends)
}

/// [`float_rows`] into buffers the caller keeps: `ends` is replaced, the
/// rows' text starts at `out[0]`, and bytes of `out` past the last end
/// are scratch. `out` is not shrunk, so formatting a large answer a few
/// rows at a time into one buffer stays in cache and zeroes it once.
pub fn float_rows_into(
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    values: &[f32],
    rows: usize,
    decimals: usize,
) {
    let width = values.len().checked_div(rows).unwrap_or(0);
    ends.clear();
    let mut pos = 0;
    for r in 0..rows {
        pos = write_any(out, pos, &values[r * width..(r + 1) * width], decimals);
        ends.push(pos);
    }
}

/// As [`float_array`] for float64 values (through `core::fmt`: slower).
pub fn float64_array(out: &mut Vec<u8>, values: &[f64], decimals: usize) {
    out.push(b'[');
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_slow(out, v, decimals);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(values: &[f32], decimals: usize) -> String {
        let mut out = Vec::new();
        float_array(&mut out, values, decimals);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nan_and_infinities_are_null() {
        assert_eq!(
            text(&[f32::NAN, 1.5, f32::INFINITY, f32::NEG_INFINITY], 3),
            "[null,1.500,null,null]"
        );
        assert_eq!(text(&[], 3), "[]");
    }

    #[test]
    fn ties_round_to_even_and_small_values_keep_their_sign() {
        // 0.0625 and 0.1875 are exact binary values halfway between two
        // 3-decimal numbers.
        assert_eq!(text(&[0.0625, 0.1875, 2.5], 3), "[0.062,0.188,2.500]");
        assert_eq!(text(&[-0.0001, -0.0, 0.0], 3), "[-0.000,-0.000,0.000]");
        assert_eq!(text(&[2.5, 3.5, -2.5], 0), "[2,4,-2]");
    }

    #[test]
    fn the_fast_path_agrees_with_core_fmt() {
        // A spread of bit patterns: every exponent, many mantissas.
        let mut bits: u32 = 0x9E37_79B9;
        let mut values = Vec::new();
        for _ in 0..200_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = f32::from_bits(bits);
            if v.is_finite() {
                values.push(v);
            }
        }
        for decimals in [0, 2, 3, 6] {
            assert_agrees_with_core_fmt(&values, decimals);
        }
    }

    /// `values` as one array through the fast path and through `core::fmt`
    /// agree; on a difference, names the first value that differs alone.
    fn assert_agrees_with_core_fmt(values: &[f32], decimals: usize) {
        let slow_array = |values: &[f32]| {
            let mut slow = b"[".to_vec();
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    slow.push(b',');
                }
                push_slow(&mut slow, f64::from(v), decimals);
            }
            slow.push(b']');
            String::from_utf8(slow).unwrap()
        };
        let fast_array = |values: &[f32]| {
            let mut fast = Vec::new();
            float_array(&mut fast, values, decimals);
            String::from_utf8(fast).unwrap()
        };
        if fast_array(values) == slow_array(values) {
            return;
        }
        for pair in values.windows(2) {
            assert_eq!(
                fast_array(pair),
                slow_array(pair),
                "{:e}, {:e} with {decimals} decimals",
                pair[0],
                pair[1]
            );
        }
        panic!("the arrays differ with {decimals} decimals, though no two values alone do");
    }

    #[test]
    fn digit_groups_and_carries_agree_with_core_fmt() {
        // Values of every magnitude the grouped path takes (up to 10^9 and
        // past it), and the points where rounding carries into the next
        // group of three digits: 999.9995, 999999.5, 999999999.5.
        let mut values = vec![
            999.9995,
            999.9994,
            999.9996,
            99.995,
            9.9995,
            0.9995,
            999_999.5,
            999_999.4,
            1_000_000.0,
            999_999_999.5,
            1e9,
            4_294_967_296.0,
            1000.0,
            999.0,
            100.0,
            10.0,
            0.0005,
            0.0015,
            0.0025,
            0.005,
            0.015,
            0.5,
            1.5,
            -999.9995,
            -1_000_000.0,
        ];
        let mut bits: u32 = 0x1234_5678;
        for exponent in -5..12 {
            for _ in 0..4_000 {
                bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let mantissa = f64::from(bits >> 8) / f64::from(1u32 << 24);
                let v = (mantissa * 10f64.powi(exponent)) as f32;
                values.push(if bits & 1 == 0 { v } else { -v });
            }
        }
        // Each value beside its neighbours: the carry of one must not leak
        // into the next.
        let values: Vec<f32> = values
            .iter()
            .flat_map(|&v| [v, v.next_up(), v, v.next_down()])
            .collect();
        for decimals in 0..=MAX_DECIMALS {
            assert_agrees_with_core_fmt(&values, decimals);
        }
    }

    #[test]
    fn rows_end_where_each_array_ends() {
        let (text, ends) = float_rows(&[1.0, f32::NAN, -2.5, 1e30], 2, 1);
        assert_eq!(float_rows(&[], 2, 3), (b"[][]".to_vec(), vec![2, 4]));
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "[1.0,null][-2.5,1000000015047466219876688855040.0]"
        );
        assert_eq!(ends, [10, 50]);
        assert_eq!(float_rows(&[], 0, 3), (Vec::new(), Vec::new()));
    }

    #[test]
    fn float64_values_use_the_same_format() {
        let mut out = Vec::new();
        float64_array(&mut out, &[1.0 / 3.0, f64::NAN, -2.0005], 2);
        assert_eq!(String::from_utf8(out).unwrap(), "[0.33,null,-2.00]");
    }
}
