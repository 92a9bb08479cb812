//! The codec's guarantees, on seeded inputs of every family the store can
//! hold: every chunk decodes to exactly the bits it was encoded from and is
//! never longer than raw plus the header; damaged bytes never panic and
//! truncation, wrong lengths, unknown versions or schemes and trailing
//! bytes are errors; format version 1's documented bytes do not drift.
//! (Real series are checked through the store, in Python, on the emmy job.)

use std::mem::MaybeUninit;

use crate::engine::memory::codec::{self, CodecError, FORMAT_VERSION, HEADER_LEN, MAX_VALUES};

mod support {
    // Seeded chunk generators: every family of input the store can
    //! hold, from decimal gauges with gaps to arbitrary bit patterns.

    pub const CANONICAL_NAN: u32 = 0x7FC0_0000;

    /// Bit patterns that break naive float codecs.
    pub const SPECIALS: &[u32] = &[
        0x7FC0_0000, // canonical quiet NaN (the store's "missing")
        0xFFC0_0000, // x86's default NaN (negative)
        0x7F80_0001, // signalling NaN, smallest payload
        0x7FBF_FFFF, // signalling NaN, largest payload
        0x7FC0_1234, // quiet NaN with payload
        0xFFFF_FFFF, // negative NaN, all payload bits
        0x0000_0000, // +0.0
        0x8000_0000, // -0.0
        0x7F80_0000, // +inf
        0xFF80_0000, // -inf
        0x0000_0001, // smallest subnormal
        0x807F_FFFF, // largest negative subnormal
        0x0080_0000, // smallest normal
        0x7F7F_FFFF, // f32::MAX
        0xFF7F_FFFF, // f32::MIN
        0x4F00_0000, // 2^31: the edge of the decimal integer range
        0xCF00_0000, // -2^31
    ];

    /// SplitMix64: small, seedable, good enough to drive test inputs.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed)
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }

        pub fn chance(&mut self, p: f64) -> bool {
            self.unit() < p
        }

        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        pub fn normal(&mut self) -> f64 {
            let (u, v) = (self.unit().max(1e-300), self.unit());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn length(rng: &mut Rng) -> usize {
        const EDGES: &[usize] = &[
            0, 1, 2, 7, 8, 9, 31, 32, 33, 63, 64, 65, 417, 1000, 1023, 1024,
        ];
        if rng.chance(0.5) {
            EDGES[rng.below(EDGES.len())]
        } else {
            rng.below(1025)
        }
    }

    /// Decimal values with `k` decimals as the store gets them: parsed as f64, cast to f32.
    fn decimal(rng: &mut Rng, k: i32, scale: f64) -> f32 {
        let p = 10f64.powi(k);
        ((rng.normal() * scale * p).round() / p) as f32
    }

    /// One chunk from a randomly chosen family; `family` names it for failure messages.
    pub fn chunk(rng: &mut Rng) -> (&'static str, Vec<f32>) {
        let n = length(rng);
        let family = rng.below(11);
        let mut v: Vec<f32> = match family {
            0 => (0..n)
                .map(|_| f32::from_bits(rng.next_u64() as u32))
                .collect(),
            1 => (0..n)
                .map(|_| f32::from_bits(SPECIALS[rng.below(SPECIALS.len())]))
                .collect(),
            2 => {
                let (k, scale) = (rng.below(5) as i32, 10f64.powi(rng.below(6) as i32));
                let level = rng.normal() * scale * 10.0;
                (0..n)
                    .map(|_| (level + decimal(rng, k, scale) as f64) as f32)
                    .collect()
            }
            3 => {
                let k = rng.below(4) as i32;
                (0..n)
                    .map(|_| (10f64.powi(k) / (1 + rng.below(400)) as f64) as f32)
                    .collect()
            }
            4 => {
                let mut x = rng.normal() * 100.0;
                (0..n)
                    .map(|_| {
                        x += rng.normal();
                        x as f32
                    })
                    .collect()
            }
            5 => vec![f32::from_bits(rng.next_u64() as u32); n],
            6 => vec![f32::from_bits(SPECIALS[rng.below(6)]); n],
            7 => {
                // Integers with trailing zeros (2600, 2500, ...) and huge magnitudes.
                let zeros = 10f64.powi(rng.below(10) as i32);
                (0..n)
                    .map(|_| ((rng.below(1000) as f64 - 500.0) * zeros) as f32)
                    .collect()
            }
            8 => {
                // Subnormals and tiny values near zero crossing.
                (0..n)
                    .map(|_| f32::from_bits((rng.next_u64() as u32) & 0x807F_FFFF))
                    .collect()
            }
            9 => {
                // Counters: monotone integers.
                let mut c = rng.below(1 << 20) as f64;
                (0..n)
                    .map(|_| {
                        c += rng.below(100) as f64;
                        c as f32
                    })
                    .collect()
            }
            _ => {
                let k = rng.below(3) as i32;
                (0..n).map(|_| decimal(rng, k, 50.0).abs()).collect()
            }
        };
        // Sprinkle special patterns, gaps (runs of the store's NaN) and a NaN tail.
        if !v.is_empty() && rng.chance(0.3) {
            for _ in 0..rng.below(8) {
                let i = rng.below(v.len());
                v[i] = f32::from_bits(SPECIALS[rng.below(SPECIALS.len())]);
            }
        }
        if !v.is_empty() && rng.chance(0.4) {
            for _ in 0..rng.below(20) {
                let s = rng.below(v.len());
                let e = (s + 1 + rng.below(64)).min(v.len());
                v[s..e].fill(f32::from_bits(CANONICAL_NAN));
            }
        }
        if !v.is_empty() && rng.chance(0.3) {
            let valid = rng.below(v.len());
            v[valid..].fill(f32::from_bits(CANONICAL_NAN));
        }
        const NAMES: [&str; 11] = [
            "random bits",
            "specials",
            "decimals",
            "reciprocals",
            "random walk",
            "constant",
            "all NaN",
            "scaled integers",
            "subnormals",
            "counter",
            "non-negative decimals",
        ];
        (NAMES[family], v)
    }

    /// float32 random walks cut into 1,024-slot chunks, as the benchmark's walk data.
    pub fn random_walk_chunks(seed: u64, series: usize, len: usize) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        let mut chunks = Vec::new();
        for _ in 0..series {
            let mut x = 0f64;
            let walk: Vec<f32> = (0..len)
                .map(|_| {
                    x += rng.normal();
                    x as f32
                })
                .collect();
            for c in walk.chunks(1024) {
                let mut c = c.to_vec();
                c.resize(1024, f32::NAN);
                chunks.push(c);
            }
        }
        chunks
    }

    pub fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}

use support::{CANONICAL_NAN, Rng, bits, random_walk_chunks};

// -- round trips ------------------------------------------------------------

/// Encodes, checks the size bound, decodes, checks every bit; returns the encoded length.
fn round_trip(what: &str, values: &[f32]) -> usize {
    let mut enc = Vec::new();
    codec::encode(values, &mut enc);
    assert!(
        enc.len() <= HEADER_LEN + 4 * values.len(),
        "{what}: {} bytes for {} values exceeds raw + header",
        enc.len(),
        values.len()
    );
    assert_eq!(
        codec::encoded_len(&enc),
        Ok(values.len()),
        "{what}: header slot count"
    );
    let mut out = vec![0f32; values.len()];
    codec::decode(&enc, &mut out).unwrap_or_else(|e| panic!("{what}: decode failed: {e}"));
    if bits(&out) != bits(values) {
        let i = (0..values.len())
            .find(|&i| out[i].to_bits() != values[i].to_bits())
            .unwrap();
        panic!(
            "{what}: slot {i} of {} decoded as {:#010x}, encoded {:#010x}",
            values.len(),
            out[i].to_bits(),
            values[i].to_bits()
        );
    }
    enc.len()
}

#[test]
fn generated_chunks_of_every_family_round_trip_bit_exactly() {
    let mut rng = Rng::new(0x5EED);
    for case in 0..20_000 {
        let (family, values) = support::chunk(&mut rng);
        round_trip(
            &format!("case {case} ({family}, {} values)", values.len()),
            &values,
        );
    }
}

/// The encoder reuses its word buffers on a thread, some without clearing what they held: a
/// chunk encodes to the same bytes on a fresh thread (every buffer new and zeroed) and after
/// chunks of other lengths and families have been through the buffers (a word read before
/// it is written would show here).
#[test]
fn a_chunk_encodes_the_same_after_other_chunks_used_the_buffers() {
    let mut rng = Rng::new(0xB0F);
    let chunks: Vec<Vec<f32>> = (0..300).map(|_| support::chunk(&mut rng).1).collect();
    let firsts: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                codec::encode(&c, &mut out);
                out
            })
            .join()
            .unwrap()
        })
        .collect();
    for c in &chunks {
        codec::encode(c, &mut Vec::new());
    }
    for (i, (c, first)) in chunks.iter().zip(&firsts).enumerate().rev() {
        let mut again = Vec::new();
        codec::encode(c, &mut again);
        assert_eq!(&again, first, "chunk {i} ({} values)", c.len());
    }
}

#[test]
fn bit_patterns_across_the_whole_u32_range_round_trip() {
    // A prime stride visits every exponent and sign with varied mantissas: 65,537 patterns.
    let patterns: Vec<f32> = (0..=u32::MAX / 65_521)
        .map(|i| f32::from_bits(i.wrapping_mul(65_521)))
        .collect();
    for (i, c) in patterns.chunks(1024).enumerate() {
        round_trip(&format!("stride chunk {i}"), c);
    }
    // Every exponent with its edge mantissas, both signs, next to ordinary decimals, so the
    // patterns land in the exception lists of the decimal coder too.
    for e in 0..=255u32 {
        for sign in [0, 0x8000_0000] {
            let mut c: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
            for m in [0, 1, 2, 0x40_0000, 0x7F_FFFE, 0x7F_FFFF] {
                c.push(f32::from_bits(sign | e << 23 | m));
            }
            round_trip(&format!("exponent {e} sign {sign:#x}"), &c);
        }
    }
}

#[test]
fn random_walk_chunks_round_trip_and_stay_under_3_bytes_per_sample() {
    let chunks = random_walk_chunks(7, 20, 100_000);
    let bytes: usize = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| round_trip(&format!("walk chunk {i}"), c))
        .sum();
    let per_sample = bytes as f64 / (20.0 * 100_000.0);
    assert!(per_sample < 3.0, "walk: {per_sample:.3} B per sample");
}

#[test]
fn noisy_floats_that_pass_as_decimals_take_the_smaller_coder() {
    // A float32 random walk often rounds to few enough decimals that the decimal coder
    // takes a chunk with some exceptions, at a byte a value or more: the float-bit coder
    // must then be costed too and the smaller kept. Its dense part written alone is the
    // bound (the decimal coder also writes its exponent byte: one byte of slack).
    let mut covered = 0;
    for (i, c) in random_walk_chunks(11, 10, 100_000).iter().enumerate() {
        let dense: Vec<u32> = c
            .iter()
            .filter(|v| !v.is_nan())
            .map(|v| v.to_bits())
            .collect();
        let Some(dec) = super::choose_decimal(&dense) else {
            continue;
        };
        if super::encode_decimal(&dense, dec, &mut vec![0u32; dense.len()]).is_empty() {
            continue;
        }
        covered += 1;
        let mut chosen = Vec::new();
        super::encode_dense(&dense, &mut chosen);
        let mut float_only = Vec::new();
        let plan = super::plan_residuals(&super::float_words(&dense), false);
        super::write_residuals(&plan, None, &mut float_only);
        assert!(
            chosen.len() <= float_only.len() + 1,
            "walk chunk {i}: {} bytes, float bits alone {}",
            chosen.len(),
            float_only.len()
        );
    }
    assert!(
        covered >= 10,
        "{covered} chunks the decimal coder takes with exceptions"
    );
}

#[test]
fn all_nan_and_constant_chunks_cost_at_most_eight_bytes() {
    assert_eq!(round_trip("canonical NaN", &[f32::NAN; 1024]), 4);
    for &b in support::SPECIALS {
        assert!(round_trip(&format!("constant {b:#x}"), &vec![f32::from_bits(b); 1024]) <= 8);
    }
    assert_eq!(round_trip("constant 2600", &[2600.0; 1024]), 8);
}

#[test]
fn short_series_pay_for_their_samples_not_for_the_padding() {
    // A 417-sample tail of a 1,441-sample series, NaN-padded to 1,024 slots.
    let mut c: Vec<f32> = (0..417).map(|i| ((i * 37 % 1000) as f32) / 100.0).collect();
    c.resize(1024, f32::NAN);
    let padded = round_trip("padded tail", &c);
    let alone = round_trip("tail alone", &c[..417]);
    assert!(
        padded <= alone + 6,
        "padding costs {} bytes",
        padded - alone
    );
}

#[test]
fn chunks_up_to_the_maximum_length_round_trip() {
    let mut rng = Rng::new(3);
    let values: Vec<f32> = (0..MAX_VALUES)
        .map(|_| (rng.normal() * 1000.0).round() as f32 / 10.0)
        .collect();
    round_trip("max length decimals", &values);
    let values: Vec<f32> = (0..MAX_VALUES)
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .collect();
    round_trip("max length random bits", &values);
}

#[test]
#[should_panic(expected = "at most")]
fn encoding_more_than_the_maximum_length_is_a_caller_bug() {
    codec::encode(&vec![0.0; MAX_VALUES + 1], &mut Vec::new());
}

#[test]
fn encode_appends_to_the_output_without_touching_what_is_there() {
    let mut out = vec![0xAB, 0xCD];
    codec::encode(&[1.5, 2.5, f32::NAN], &mut out);
    assert_eq!(&out[..2], &[0xAB, 0xCD]);
    let mut dec = [0f32; 3];
    codec::decode(&out[2..], &mut dec).unwrap();
    assert_eq!(bits(&dec), bits(&[1.5, 2.5, f32::NAN]));
}

// -- damaged input ----------------------------------------------------------

fn samples(rng: &mut Rng) -> Vec<(Vec<f32>, Vec<u8>)> {
    let v: Vec<Vec<f32>> = (0..300).map(|_| support::chunk(rng).1).collect();
    v.into_iter()
        .map(|c| {
            let mut e = Vec::new();
            codec::encode(&c, &mut e);
            (c, e)
        })
        .collect()
}

#[test]
fn every_truncation_of_every_chunk_is_an_error() {
    let mut rng = Rng::new(11);
    for (values, enc) in samples(&mut rng) {
        let mut out = vec![0f32; values.len()];
        for cut in 0..enc.len() {
            let r = codec::decode(&enc[..cut], &mut out);
            assert!(r.is_err(), "prefix of {cut}/{} bytes decoded", enc.len());
        }
    }
}

#[test]
fn flipped_bits_never_panic() {
    let mut rng = Rng::new(12);
    for (values, enc) in samples(&mut rng) {
        let mut out = vec![0f32; values.len()];
        // Every bit of the first 64 bytes (headers, gap maps, counts), then random bits.
        let head = enc.len().min(64) * 8;
        for bit in (0..head).chain((0..200).map(|_| rng.below(enc.len() * 8))) {
            let mut bad = enc.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let _ = codec::decode(&bad, &mut out);
        }
        // Several bits at once.
        for _ in 0..50 {
            let mut bad = enc.clone();
            for _ in 0..1 + rng.below(6) {
                let i = rng.below(bad.len());
                bad[i] = rng.next_u64() as u8;
            }
            let _ = codec::decode(&bad, &mut out);
        }
    }
}

#[test]
fn random_bytes_behind_a_valid_header_never_panic() {
    let mut rng = Rng::new(13);
    for _ in 0..200_000 {
        let n = rng.below(1100);
        let len = rng.below(80);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if bytes.len() >= 5 {
            bytes[0] = FORMAT_VERSION;
            bytes[1] = rng.below(5) as u8;
            bytes[2..4].copy_from_slice(&(n as u16).to_le_bytes());
            bytes[4] &= 0x1F;
        }
        let _ = codec::decode(&bytes, &mut vec![0f32; n]);
    }
}

#[test]
fn a_buffer_of_the_wrong_length_is_a_length_mismatch() {
    let mut enc = Vec::new();
    codec::encode(&[1.0, 2.0, 3.0], &mut enc);
    assert_eq!(
        codec::decode(&enc, &mut [0f32; 4]),
        Err(CodecError::LengthMismatch {
            encoded: 3,
            buffer: 4
        })
    );
}

#[test]
fn an_unknown_version_or_scheme_is_named_in_the_error() {
    let mut enc = Vec::new();
    codec::encode(&[1.0, 2.0, 3.0], &mut enc);
    let mut bad = enc.clone();
    bad[0] = FORMAT_VERSION + 1;
    assert_eq!(
        codec::decode(&bad, &mut [0f32; 3]),
        Err(CodecError::UnknownVersion(FORMAT_VERSION + 1))
    );
    let mut bad = enc.clone();
    bad[1] = 200;
    assert_eq!(
        codec::decode(&bad, &mut [0f32; 3]),
        Err(CodecError::UnknownScheme(200))
    );
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut enc = Vec::new();
    codec::encode(&[1.0, 2.0, 3.0], &mut enc);
    enc.extend_from_slice(&[0, 0]);
    assert_eq!(
        codec::decode(&enc, &mut [0f32; 3]),
        Err(CodecError::TrailingBytes(2))
    );
}

// -- format version 1 -------------------------------------------------------

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn cases() -> Vec<(Vec<f32>, Vec<u8>)> {
    let nan = f32::NAN;
    vec![
        (
            vec![
                21.5, 21.75, nan, 22.0, 22.25, 22.5, 22.75, 23.0, nan, nan, nan, nan,
            ],
            hex("01 03 0c 00 3c 04 0f 02 66 08 00 00 00 00 06 80 2c cb b2 2c 03"),
        ),
        (
            vec![-0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            hex("01 03 08 00 04 00 01 00 00 00 01 00 00 00 00 00 00 00 80"),
        ),
        (
            vec![1.0 / 0.82, 1.0 / 0.7, 1.0 / 0.67],
            hex("01 03 03 00 05 02 52 00 00 00 00 00 05 e0 16"),
        ),
        (
            vec![1.5, 2.5, nan],
            hex("01 00 03 00 00 00 c0 3f 00 00 20 40 00 00 c0 7f"),
        ),
        (vec![nan; 4], hex("01 01 04 00")),
        (vec![2600.0; 3], hex("01 02 03 00 00 80 22 45")),
    ]
}

#[test]
fn version_1_bytes_decode_to_their_values() {
    assert_eq!(FORMAT_VERSION, 1);
    for (values, bytes) in cases() {
        let mut out = vec![0f32; values.len()];
        codec::decode(&bytes, &mut out).unwrap();
        let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{values:?}");
    }
}

#[test]
fn the_encoder_still_writes_the_documented_bytes() {
    for (values, bytes) in cases() {
        let mut enc = Vec::new();
        codec::encode(&values, &mut enc);
        assert_eq!(enc, bytes, "{values:?}");
    }
}

#[test]
fn the_prefix_sum_wraps_and_matches_a_plain_loop_at_every_length() {
    for ordered in [false, true] {
        for len in 0..=13 {
            let words: Vec<u32> = (0..len as u32)
                .map(|i| i.wrapping_mul(0x9E37_79B9) ^ 0xF000_0001)
                .collect();
            let mut got: Vec<f32> = words.iter().map(|&w| f32::from_bits(w)).collect();
            super::prefix_sum::<false>(0xFFFF_FFF0, ordered, &mut got);
            let mut acc = 0xFFFF_FFF0u32;
            let expected: Vec<u32> = words
                .iter()
                .map(|&w| {
                    acc = acc.wrapping_add(w);
                    if ordered {
                        super::from_ordered(acc)
                    } else {
                        acc
                    }
                })
                .collect();
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, expected, "length {len}, ordered {ordered}");
        }
    }
}

// -- the two builds ----------------------------------------------------------

/// `encode`/`decode` run the AVX2-generation build where the CPU has it; the baseline build
/// must write the same bytes and read every input (good or damaged) the same way.
#[test]
fn the_baseline_and_dispatched_builds_write_and_read_the_same() {
    let mut rng = Rng::new(0xB0A7);
    let mut chunks: Vec<Vec<f32>> = (0..3_000).map(|_| support::chunk(&mut rng).1).collect();
    chunks.extend(random_walk_chunks(21, 4, 4_096));
    for (i, values) in chunks.iter().enumerate() {
        let (mut fast, mut plain) = (Vec::new(), Vec::new());
        codec::encode(values, &mut fast);
        codec::encode_baseline(values, &mut plain);
        assert_eq!(
            fast, plain,
            "chunk {i}: the two builds wrote different bytes"
        );
        let mut damaged = fast.clone();
        if !damaged.is_empty() {
            let bit = rng.below(damaged.len() * 8);
            damaged[bit / 8] ^= 1 << (bit % 8);
        }
        for bytes in [&fast, &damaged] {
            let (mut a, mut b) = (vec![0f32; values.len()], vec![0f32; values.len()]);
            let (ra, rb) = (
                codec::decode(bytes, &mut a),
                codec::decode_baseline(bytes, &mut b),
            );
            assert_eq!(
                ra, rb,
                "chunk {i}: the two builds judged the bytes differently"
            );
            if ra.is_ok() {
                assert_eq!(
                    bits(&a),
                    bits(&b),
                    "chunk {i}: the two builds decoded differently"
                );
            }
        }
    }
}

// -- decoding part of a chunk ------------------------------------------------

/// Ranges of a chunk of `n` slots worth checking: empty, one slot, block and byte edges,
/// and random ones.
fn ranges(rng: &mut Rng, n: usize) -> Vec<std::ops::Range<usize>> {
    let mut edges = vec![0, 1, 7, 8, 9, 127, 128, 129, 255, 256, 500, 1000, 1023, n];
    edges.retain(|&e| e <= n);
    edges.extend([n.saturating_sub(1), n / 2]);
    let mut out: Vec<_> = edges
        .iter()
        .flat_map(|&a| edges.iter().map(move |&b| a..b))
        .collect();
    out.retain(|r| r.start <= r.end);
    for _ in 0..20 {
        let a = rng.below(n + 1);
        out.push(a..a + rng.below(n - a + 1));
    }
    out
}

/// Checks every range of `ranges` decoded from `enc` (the encoding of `values`), in both
/// builds and into both initialised and uninitialised buffers, against the slice of
/// `values`; `what` names the chunk in a failure.
fn assert_ranges_match(rng: &mut Rng, enc: &[u8], values: &[f32], what: &str) {
    let whole = bits(values);
    let n = values.len();
    for range in ranges(rng, n) {
        for baseline in [false, true] {
            let mut out = vec![MaybeUninit::<f32>::uninit(); range.len()];
            let decoded = if baseline {
                codec::decode_range_baseline(enc, n, range.clone(), &mut out)
            } else {
                codec::decode_range_uninit(enc, n, range.clone(), &mut out)
            };
            decoded.unwrap_or_else(|e| panic!("{what}, slots {range:?}: {e}"));
            // SAFETY: a successful decode wrote every slot.
            let out = unsafe { super::assume_init(&mut out) };
            assert_eq!(
                bits(out),
                whole[range.clone()],
                "{what} ({n} values), slots {range:?}, baseline {baseline}"
            );
        }
        let mut out = vec![0f32; range.len()];
        codec::decode_range(enc, n, range.clone(), &mut out)
            .unwrap_or_else(|e| panic!("{what}, slots {range:?}: {e}"));
        assert_eq!(bits(&out), whole[range.clone()], "{what}, slots {range:?}");
    }
}

#[test]
fn every_range_decodes_to_the_slice_of_the_whole_chunk() {
    let mut rng = Rng::new(0x5A1CE);
    let mut chunks: Vec<Vec<f32>> = (0..1_500).map(|_| support::chunk(&mut rng).1).collect();
    chunks.extend(random_walk_chunks(22, 2, 2_048));
    for (i, values) in chunks.iter().enumerate() {
        let mut enc = Vec::new();
        codec::encode(values, &mut enc);
        assert_ranges_match(&mut rng, &enc, values, &format!("chunk {i}"));
    }
}

#[test]
fn delta_blocks_with_patches_either_way_decode_whole_and_by_range() {
    // A walk of whole numbers in small steps with jumps both ways: deltas coded with
    // patches (the jumps' high bits), some of them negative (odd after the zigzag), at
    // block edges and at the chunk's ends as well as at random places.
    let mut rng = Rng::new(0xDE17A);
    for case in 0..40 {
        let mut x = 1_000_000i64;
        let fixed = [1, 127, 128, 129, 255, 256, 1023];
        let values: Vec<f32> = (0..1024)
            .map(|i| {
                let jump = fixed.contains(&i) || rng.chance(0.02);
                let size = if jump {
                    5_000 + rng.below(200_000)
                } else {
                    rng.below(7)
                };
                x += if rng.chance(0.5) {
                    -(size as i64)
                } else {
                    size as i64
                };
                x as f32
            })
            .collect();
        let mut enc = Vec::new();
        codec::encode(&values, &mut enc);
        // Header, layout (scaled decimal, delta, no gaps), k, base, exception count 0,
        // then the patch count.
        assert_eq!(
            enc[4] & 0b1111,
            0b0100,
            "case {case}: layout {:#04x}",
            enc[4]
        );
        assert_eq!(enc[10], 0, "case {case}: exceptions");
        assert!(enc[11] > 0, "case {case}: no patches");
        for baseline in [false, true] {
            let mut out = vec![0f32; values.len()];
            if baseline {
                codec::decode_baseline(&enc, &mut out).unwrap();
            } else {
                codec::decode(&enc, &mut out).unwrap();
            }
            assert_eq!(
                bits(&out),
                bits(&values),
                "case {case}, baseline {baseline}"
            );
        }
        assert_ranges_match(&mut rng, &enc, &values, &format!("case {case}"));
    }
}

#[test]
fn marking_a_run_sets_exactly_its_bits() {
    // Every run inside 64 slots, over a bitmap with some bits set before: the bits of the
    // run are added, no other bit changes.
    let before: [u8; 8] = [0x81, 0, 0x10, 0xFF, 0, 0x02, 0, 0x40];
    for start in 0..=64 {
        for end in start..=64 {
            let mut bits = before;
            super::mark_run(&mut bits, start..end);
            let mut want = before;
            for i in start..end {
                want[i / 8] |= 1 << (i % 8);
            }
            assert_eq!(bits, want, "run {start}..{end}");
        }
    }
}

#[test]
fn chunks_with_many_gap_runs_decode_whole_and_by_range() {
    // The emmy job's chunks hold 57 gap runs on average, up to hundreds: their skips and
    // lengths are unpacked 64 at a time, and from 16 runs on they are spread through a
    // bitmap made from them (on the stack up to 1,024 slots, on the heap above), so counts
    // around those edges are checked, in chunks of both sizes, with delta (a walk) and
    // frame-of-reference (decimals in a band) values between them, a first run long enough
    // to fill whole bitmap bytes, and a gap NaN that is not the canonical one.
    let mut rng = Rng::new(0x6A95);
    let cases = [1, 15, 16, 17, 63, 64, 65, 128, 129, 200]
        .into_iter()
        .flat_map(|runs| [(runs, 1024), (runs, 1_500)]);
    for (runs, n) in cases {
        let gap = if runs % 2 == 1 {
            CANONICAL_NAN
        } else {
            0x7FC0_0001
        };
        for walk in [false, true] {
            let mut x = 50.0f64;
            let mut values: Vec<f32> = (0..n)
                .map(|_| {
                    x += rng.normal();
                    if walk {
                        x as f32
                    } else {
                        (rng.below(2000) as f32) / 100.0
                    }
                })
                .collect();
            // Runs of 1-3 gaps at spread-out places, none touching the next (single gaps
            // when there are many, or a bitmap would be the smaller coding).
            let stride = n / runs;
            let longest = if runs > 100 { 1 } else { 3 };
            for k in 0..runs {
                let s = k * stride + rng.below(stride / 2);
                let length = if k == 0 && runs < 100 {
                    20 + rng.below(20)
                } else {
                    1 + rng.below(longest)
                };
                let e = (s + length).min(k * stride + stride - 1).max(s + 1);
                values[s..e].fill(f32::from_bits(gap));
            }
            let mut enc = Vec::new();
            codec::encode(&values, &mut enc);
            // Layout byte: gaps present, coded as runs rather than as a bitmap; deltas for
            // the walk only.
            assert_eq!(
                enc[4] & 0b0001_1100,
                if walk { 0b0000_1100 } else { 0b0000_1000 },
                "{runs} runs of {n} slots, walk {walk}"
            );
            let (mut out, mut plain) = (vec![0f32; n], vec![0f32; n]);
            codec::decode(&enc, &mut out).unwrap();
            codec::decode_baseline(&enc, &mut plain).unwrap();
            let what = format!("{runs} runs of {n} slots, walk {walk}");
            assert_eq!(bits(&out), bits(&values), "{what}");
            assert_eq!(bits(&plain), bits(&values), "{what}, baseline");
            assert_ranges_match(&mut rng, &enc, &values, &what);
        }
    }
}

#[test]
fn a_range_outside_the_chunk_or_of_the_wrong_length_is_refused() {
    let values: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
    let mut enc = Vec::new();
    codec::encode(&values, &mut enc);
    let mut out = vec![0f32; 10];
    for (n, range) in [(100, 95..105), (100, 0..9), (99, 0..10)] {
        let got = codec::decode_range(&enc, n, range.clone(), &mut out);
        assert!(
            matches!(got, Err(CodecError::LengthMismatch { .. })),
            "n {n}, {range:?}: {got:?}"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 5..4;
    assert!(codec::decode_range(&enc, 100, backwards, &mut []).is_err());
}

#[test]
fn ranges_of_damaged_chunks_never_panic() {
    let mut rng = Rng::new(14);
    for (values, enc) in samples(&mut rng) {
        let n = values.len();
        for _ in 0..40 {
            let mut bad = enc.clone();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(bad.len());
                bad[i] ^= 1 << rng.below(8);
            }
            let a = rng.below(n + 1);
            let range = a..a + rng.below(n - a + 1);
            let mut out = vec![0f32; range.len()];
            let _ = codec::decode_range(&bad, n, range.clone(), &mut out);
            let cut = rng.below(enc.len());
            let r = codec::decode_range(&enc[..cut], n, range.clone(), &mut out);
            assert!(
                r.is_err(),
                "a prefix of {cut}/{} bytes decoded {range:?}",
                enc.len()
            );
        }
    }
}

// -- the AVX2 kernels against the portable ones --------------------------------

/// Whether the AVX2 kernels can run here; says so on stderr when they cannot.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    let has = codec::avx2_generation();
    if !has {
        eprintln!("skipped: this CPU has no AVX2");
    }
    has
}

/// Every width's eight values end inside the 16 bytes their half of the register loads.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_width_fits_the_bytes_its_lanes_load() {
    use codec::Lanes;
    fn check<const W: usize>() {
        for j in 0..8 {
            let last = Lanes::<W>::last_byte(j);
            assert!(last <= 15, "width {W}, value {j}: needs byte {last} of 16");
        }
    }
    macro_rules! each {
        ($($w:literal)*) => { $(check::<$w>();)* };
    }
    each!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
}

/// Lengths of packed runs around the group and block edges, and six at random up to a block.
fn edge_lengths(rng: &mut Rng) -> Vec<usize> {
    let mut lens = vec![0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 127, 128];
    lens.extend((0..6).map(|_| rng.below(codec::BLOCK + 1)));
    lens
}

/// Unpacking with the AVX2 kernel gives what the portable loop gives, for every width and
/// map, at lengths around the group and block edges, from buffers cut right after the last
/// value's byte (so the kernel must stop early and hand over) and from longer ones.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_unpacking_equals_the_portable_one() {
    if !has_avx2() {
        return;
    }
    let mut rng = Rng::new(0xA5C2);
    let lens = edge_lengths(&mut rng);
    for width in 0..=32u8 {
        for &len in &lens {
            for slack in [0, 1, 5, 16, 40] {
                let bytes = (len * width as usize).div_ceil(8) + slack;
                let packed: Vec<u8> = (0..bytes).map(|_| rng.next_u64() as u8).collect();
                for map in [
                    codec::Map::Same,
                    codec::Map::Unzigzag,
                    codec::Map::Offset(rng.next_u64() as u32),
                ] {
                    // Into slots never written before: unpacking writes every one.
                    let mut plain = vec![MaybeUninit::<f32>::uninit(); len];
                    let mut wide = vec![MaybeUninit::<f32>::uninit(); len];
                    codec::unpack::<false>(&packed, width, map, &mut plain);
                    codec::unpack::<true>(&packed, width, map, &mut wide);
                    // SAFETY: `unpack` wrote every slot of both.
                    let (plain, wide) = unsafe {
                        (
                            super::assume_init(&mut plain),
                            super::assume_init(&mut wide),
                        )
                    };
                    assert_eq!(
                        bits(plain),
                        bits(wide),
                        "width {width}, {len} values, {slack} bytes of slack"
                    );
                    // And both equal the definition: value i is bits [i*w, (i+1)*w).
                    for (i, v) in plain.iter().enumerate() {
                        let mut word = 0u64;
                        for k in 0..5 {
                            let b = packed.get((i * width as usize) / 8 + k).copied();
                            word |= u64::from(b.unwrap_or(0)) << (8 * k);
                        }
                        let raw = (word >> ((i * width as usize) % 8)) as u32
                            & (u64::MAX >> (64 - width.max(1))) as u32;
                        let raw = if width == 0 { 0 } else { raw };
                        let want = match map {
                            codec::Map::Same => raw,
                            codec::Map::Unzigzag => (raw >> 1) ^ (raw & 1).wrapping_neg(),
                            codec::Map::Offset(o) => raw.wrapping_add(o),
                        };
                        assert_eq!(v.to_bits(), want, "width {width}, value {i}");
                    }
                }
            }
        }
    }
}

/// The eight-lane running sum gives what the four-lane one gives, with and without the map
/// back from ordered float bits, at every length up to a few registers past a block.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_running_sum_equals_the_portable_one() {
    if !has_avx2() {
        return;
    }
    let mut rng = Rng::new(0x5C4);
    for len in 0..=150 {
        for ordered in [false, true] {
            let first = rng.next_u64() as u32;
            let words: Vec<f32> = (0..len)
                .map(|_| f32::from_bits(rng.next_u64() as u32))
                .collect();
            let (mut plain, mut wide) = (words.clone(), words.clone());
            codec::prefix_sum::<false>(first, ordered, &mut plain);
            codec::prefix_sum::<true>(first, ordered, &mut wide);
            assert_eq!(bits(&plain), bits(&wide), "{len} words, ordered {ordered}");
            let mut acc = first;
            for (i, (w, got)) in words.iter().zip(&plain).enumerate() {
                acc = acc.wrapping_add(w.to_bits());
                let want = if ordered {
                    codec::from_ordered(acc)
                } else {
                    acc
                };
                assert_eq!(got.to_bits(), want, "{len} words, word {i}");
            }
        }
    }
}

/// Packing puts value i's low w bits at bits [i*w, (i+1)*w) and nothing else, at every
/// width and at lengths that end inside a group of eight, after what `out` already held.
#[test]
fn packing_places_each_value_at_its_bits() {
    let mut rng = Rng::new(0x9AC);
    for width in 0..=32u8 {
        for len in (0..=20).chain([127, 128]) {
            let values: Vec<u32> = (0..len).map(|_| rng.next_u64() as u32).collect();
            let mut out = vec![0xAB];
            codec::pack(&values, width, &mut out);
            let w = width as usize;
            assert_eq!(
                out.len(),
                1 + (len * w).div_ceil(8),
                "width {width}, {len} values"
            );
            assert_eq!(
                out[0], 0xAB,
                "width {width}: the byte before was overwritten"
            );
            let bit = |i: usize| out[1 + i / 8] >> (i % 8) & 1;
            for (i, v) in values.iter().enumerate() {
                for k in 0..w {
                    assert_eq!(
                        u32::from(bit(i * w + k)),
                        v >> k & 1,
                        "width {width}, value {i}"
                    );
                }
            }
            for i in len * w..(out.len() - 1) * 8 {
                assert_eq!(
                    bit(i),
                    0,
                    "width {width}, {len} values: padding bit {i} set"
                );
            }
        }
    }
}

/// Packing with the AVX2 kernel writes the bytes the portable loop writes, for every width, at
/// lengths around the group and block edges, with bits above the width in the values (which
/// both drop).
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_packing_equals_the_portable_one() {
    if !has_avx2() {
        return;
    }
    let mut rng = Rng::new(0x9AC2);
    let lens = edge_lengths(&mut rng);
    for width in 0..=32u8 {
        for &len in &lens {
            let values: Vec<u32> = (0..len).map(|_| rng.next_u64() as u32).collect();
            let (mut plain, mut wide) = (vec![0x5A], vec![0x5A]);
            codec::pack_with(&values, width, &mut plain, false);
            codec::pack_with(&values, width, &mut wide, true);
            assert_eq!(plain, wide, "width {width}, {len} values");
        }
    }
}

/// The width search returns the cheapest width a block can be packed at, the widest of equal
/// ones, as trying every candidate would (the search stops early where no narrower width can
/// win): narrow and wide blocks, lengths bunched or spread, with and without outliers, at
/// lengths that end inside a register of byte compares.
#[test]
fn the_width_search_finds_the_cheapest_width() {
    let mut rng = Rng::new(0x3D7);
    for case in 0..4000 {
        let len = 1 + rng.below(codec::BLOCK);
        let bits = rng.below(33) as u32;
        let mask = (u64::from(u32::MAX) >> (32 - bits)) as u32;
        // Half-normal magnitudes (lengths bunched below the top), or lengths spread evenly
        // up to it (where the search may stop at any candidate).
        let spread = rng.chance(0.3);
        let mut rs: Vec<u32> = (0..len)
            .map(|_| {
                if spread {
                    (rng.next_u64() as u32 & mask)
                        .checked_shr(rng.below(bits as usize + 1) as u32)
                        .unwrap_or(0)
                } else {
                    (rng.normal().abs() * f64::from(bits).exp2() / 4.0) as u32 & mask
                }
            })
            .collect();
        for _ in 0..rng.below(4) {
            let at = rng.below(len);
            rs[at] = rng.next_u64() as u32;
        }
        let top = (32 - rs.iter().fold(0u32, |a, &r| a | r).leading_zeros()) as usize;
        let cost = |w: usize| {
            let above = rs.iter().filter(|&&r| u64::from(r) >> w != 0).count();
            (len * w).div_ceil(8) + above * (1 + (top - w).div_ceil(7))
        };
        let mut expected = (top as u8, cost(top));
        for w in (top.saturating_sub(16)..top).rev() {
            if cost(w) < expected.1 {
                expected = (w as u8, cost(w));
            }
        }
        assert_eq!(
            codec::best_width(&rs),
            expected,
            "case {case}: {len} values, top {top}"
        );
    }
}

/// `choose_decimal` passes over exponents it finds out from the sampled magnitudes and one
/// probe; this tries every exponent in turn, on the same sample, with the same costs.
fn decimal_by_trying_every_exponent(dense: &[u32]) -> Option<codec::Decimal> {
    use codec::Decimal;
    let step = dense.len().div_ceil(32).max(1);
    let sample: Vec<f32> = dense
        .iter()
        .step_by(step)
        .map(|&b| f32::from_bits(b))
        .collect();
    // (cost in bits, exceptions), or None when more than an eighth are exceptions.
    let eval = |dec: Decimal| {
        let ints: Vec<Option<i32>> = sample
            .iter()
            .map(|&v| {
                let d = dec.to_int(v);
                (d.unsigned_abs() < 1 << 24 && dec.to_value(d).to_bits() == v.to_bits())
                    .then_some(d)
            })
            .collect();
        let exceptions = ints.iter().filter(|d| d.is_none()).count();
        if exceptions * 8 > sample.len() {
            return None;
        }
        let fits = ints.iter().flatten();
        let width = match (fits.clone().min(), fits.max()) {
            (Some(lo), Some(hi)) => 32 - (hi.wrapping_sub(*lo) as u32).leading_zeros() as usize,
            _ => 0,
        };
        Some((sample.len() * width + exceptions * 48, exceptions))
    };
    let mut best: Option<(Decimal, usize, usize)> = None;
    let consider = |best: &mut Option<(Decimal, usize, usize)>, dec: Decimal| match eval(dec) {
        Some((cost, exceptions)) => {
            if best.is_none_or(|b| cost < b.1) {
                *best = Some((dec, cost, exceptions));
            }
            exceptions
        }
        None => usize::MAX,
    };
    for k in 0..=10 {
        if consider(&mut best, Decimal::Scaled(k)) == 0 {
            if k == 0 {
                for k in 1..=10 {
                    if consider(&mut best, Decimal::Scaled(-k)) != 0 {
                        break;
                    }
                }
            }
            break;
        }
    }
    if best.is_none_or(|b| b.2 > 0 || matches!(b.0, Decimal::Scaled(k) if k >= 5)) {
        for k in 0..=10 {
            if consider(&mut best, Decimal::Reciprocal(k)) == 0 {
                break;
            }
        }
    }
    best.map(|b| b.0)
}

#[test]
fn the_decimal_search_chooses_as_trying_every_exponent_would() {
    let mut rng = Rng::new(0xDEC);
    let mut chunks: Vec<(String, Vec<f32>)> = (0..3000)
        .map(|_| {
            let (family, v) = support::chunk(&mut rng);
            (family.to_string(), v)
        })
        .collect();
    chunks.extend(
        random_walk_chunks(0xDEC, 8, 20_000)
            .into_iter()
            .map(|c| ("random walk".to_string(), c)),
    );
    // Uniform floats (the benchmark's W1) at magnitudes from 1e-6 to 1e6, and decimals of
    // every exponent at magnitudes where they reach 2^24 (where the skipping stops).
    for e in -6..=6 {
        let scale = 10f64.powi(e);
        let uniform = (0..1024).map(|_| (rng.unit() * scale) as f32).collect();
        chunks.push((format!("uniform x 1e{e}"), uniform));
    }
    for k in 0..=10 {
        for digits in [3, 6, 7, 8] {
            let (p, top) = (10f64.powi(k), 10f64.powi(digits));
            let decimals = (0..1024)
                .map(|_| ((rng.unit() * top).round() / p) as f32)
                .collect();
            chunks.push((format!("{digits} digits, exponent {k}"), decimals));
        }
    }
    let mut decimal = 0;
    for (i, (family, c)) in chunks.iter().enumerate() {
        let dense: Vec<u32> = c
            .iter()
            .filter(|v| v.to_bits() != CANONICAL_NAN)
            .map(|v| v.to_bits())
            .collect();
        let chosen = codec::choose_decimal(&dense);
        decimal += usize::from(chosen.is_some());
        assert_eq!(
            chosen,
            decimal_by_trying_every_exponent(&dense),
            "chunk {i} ({family})"
        );
    }
    // Both ways out of the search are taken.
    assert!(
        decimal > chunks.len() / 4 && decimal < chunks.len() * 3 / 4,
        "{decimal} of {} chunks take a decimal coder",
        chunks.len()
    );
}

/// The bit length taken from a float's exponent is the count of significant bits: at and
/// around every power of two (where a rounding conversion would go up a length), with the top
/// bit set, and on random values of every length.
#[test]
fn bit_lengths_from_the_float_exponent_are_exact() {
    let mut values: Vec<u32> = vec![0, u32::MAX, 0x7FFF_FFFF, 0x5555_5555, 0xAAAA_AAAA];
    for k in 0..32 {
        let p = 1u32 << k;
        values.extend([p, p - 1, p.wrapping_add(1), p | (p - 1), p | (p >> 1)]);
    }
    let mut rng = Rng::new(0xB17);
    values.extend((0..100_000).map(|_| (rng.next_u64() as u32) >> rng.below(32)));
    for x in values {
        assert_eq!(
            u32::from(codec::bit_len_by_float(x)),
            32 - x.leading_zeros(),
            "{x:#010x}"
        );
    }
}

/// Splitting a chunk at its gap gives the values that are not the gap, in order, and the
/// runs of it, as a plain walk over the slots does: runs at either end, across and at the
/// edges of 64-slot groups, single slots, and chunks of every length up to past three groups.
#[test]
fn gaps_split_into_the_dense_values_and_their_runs() {
    let mut rng = Rng::new(0x6A9);
    let gap = CANONICAL_NAN;
    for case in 0..3000 {
        let n = if case % 10 == 0 {
            1024
        } else {
            1 + rng.below(200)
        };
        let p = [0.02, 0.3, 0.5, 0.9][case % 4];
        let mut bits = Vec::with_capacity(n);
        while bits.len() < n {
            let longest = if rng.chance(0.5) { 3 } else { 80 };
            let run = 1 + rng.below(longest);
            let is_gap = rng.chance(p);
            for _ in 0..run.min(n - bits.len()) {
                // Other NaN patterns are values, not gaps.
                let value = [0x7FC0_0001, 1, 0x3F80_0000][rng.below(3)];
                bits.push(if is_gap { gap } else { value });
            }
        }
        let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        let (mut dense, mut runs) = (vec![7u32; 3], Vec::new());
        codec::split_gaps(&values, gap, &mut dense, &mut runs);
        let mut expected_runs: Vec<(u32, u32)> = Vec::new();
        for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b == gap) {
            match expected_runs.last_mut() {
                Some((_, end)) if *end == i as u32 => *end += 1,
                _ => expected_runs.push((i as u32, i as u32 + 1)),
            }
        }
        let expected_dense: Vec<u32> = bits.iter().copied().filter(|&b| b != gap).collect();
        assert_eq!(dense, expected_dense, "case {case}: {n} slots");
        assert_eq!(runs, expected_runs, "case {case}: {n} slots");
    }
}

/// Splitting a group of slots with the AVX2 kernel keeps what the portable loop keeps, for
/// every group length up to 64 and gaps from none to all.
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_gap_split_equals_the_portable_one() {
    if !has_avx2() {
        return;
    }
    let mut rng = Rng::new(0x6AA);
    let gap = CANONICAL_NAN;
    for case in 0..4000 {
        let len = 1 + rng.below(64);
        let p = [0.0, 0.1, 0.5, 0.9, 1.0][case % 5];
        let values: Vec<f32> = (0..len)
            .map(|_| {
                f32::from_bits(if rng.chance(p) {
                    gap
                } else {
                    rng.next_u64() as u32
                })
            })
            .collect();
        let gaps = values
            .iter()
            .enumerate()
            .fold(0u64, |m, (j, v)| m | u64::from(v.to_bits() == gap) << j);
        let kept = 1 + rng.below(3);
        let (mut plain, mut wide) = (vec![9u32; kept + len], vec![9u32; kept + len]);
        let a = codec::split_slots(&values, gap, &mut plain, kept);
        // SAFETY: the CPU has AVX2 (checked above) and so POPCNT.
        let b = unsafe { codec::split_group_avx2(&values, gaps, gap, &mut wide, kept) };
        assert_eq!(
            (a, &plain[..a]),
            (b, &wide[..b]),
            "case {case}: {len} slots"
        );
        assert_eq!(
            a - kept,
            values.iter().filter(|v| v.to_bits() != gap).count()
        );
    }
}

/// Skipping varints lands where reading them one by one does, from every start and for
/// every count, and runs out of bytes exactly when reading would.
#[test]
fn skipping_varints_lands_where_reading_them_does() {
    let mut rng = Rng::new(0x5417);
    let mut bytes = Vec::new();
    for _ in 0..60 {
        let bits = rng.below(33);
        let v = if bits == 0 {
            0
        } else {
            rng.next_u64() as u32 >> (32 - bits)
        };
        crate::engine::bytes::put_varint(&mut bytes, u64::from(v));
    }
    let total = {
        let mut r = codec::Reader {
            bytes: &bytes,
            pos: 0,
        };
        let mut n = 0;
        while r.pos < bytes.len() {
            r.varint().expect("the varints just written");
            n += 1;
        }
        n
    };
    for start in 0..bytes.len() {
        // Only starts at a varint's first byte: where the byte before ends one.
        if start > 0 && bytes[start - 1] & 0x80 != 0 {
            continue;
        }
        for count in 0..=total + 1 {
            let mut skip = codec::Reader {
                bytes: &bytes,
                pos: start,
            };
            let skipped = skip.skip_varints(count);
            let mut one_by_one = codec::Reader {
                bytes: &bytes,
                pos: start,
            };
            let ok = (0..count).all(|_| one_by_one.varint().is_ok());
            assert_eq!(skipped.is_ok(), ok, "start {start}, count {count}");
            if ok {
                assert_eq!(skip.pos, one_by_one.pos, "start {start}, count {count}");
            }
        }
    }
}
