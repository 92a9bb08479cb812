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
//! This is about 20 times faster than going through `core::fmt`, which
//! takes over for values too large for the integer path.

use std::fmt::Write as _;

/// Powers of ten a decimal count may use on the fast path.
const SCALE: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// Beyond this, `v * 10^d` may not fit the integer path; `core::fmt`
/// formats it.
const FAST_LIMIT: f64 = 1e17;

/// Appends one float32 in the fixed format.
fn push_f32(out: &mut Vec<u8>, v: f32, decimals: usize) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // Exact only while 24 + log2(10^d) <= 53 bits: d <= 6 holds it.
    let scaled = f64::from(v).abs() * SCALE[decimals];
    if scaled >= FAST_LIMIT {
        push_slow(out, f64::from(v), decimals);
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let mut n = scaled.round_ties_even() as u64;
    // The decimal digits of n, from the end of a buffer large enough for
    // any u64.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let text = &digits[at..];
    if decimals == 0 {
        out.extend_from_slice(text);
        return;
    }
    if text.len() <= decimals {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', decimals - text.len()));
        out.extend_from_slice(text);
    } else {
        let (whole, fraction) = text.split_at(text.len() - decimals);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
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
    assert!(decimals <= MAX_DECIMALS, "decimals above MAX_DECIMALS");
    out.reserve(values.len() * (decimals + 4) + 2);
    out.push(b'[');
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_f32(out, v, decimals);
    }
    out.push(b']');
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
        for _ in 0..200_000 {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = f32::from_bits(bits);
            if !v.is_finite() {
                continue;
            }
            for decimals in [0, 2, 3, 6] {
                let mut fast = Vec::new();
                push_f32(&mut fast, v, decimals);
                let mut slow = Vec::new();
                push_slow(&mut slow, f64::from(v), decimals);
                assert_eq!(fast, slow, "{v:e} with {decimals} decimals");
            }
        }
    }

    #[test]
    fn float64_values_use_the_same_format() {
        let mut out = Vec::new();
        float64_array(&mut out, &[1.0 / 3.0, f64::NAN, -2.0005], 2);
        assert_eq!(String::from_utf8(out).unwrap(), "[0.33,null,-2.00]");
    }
}
