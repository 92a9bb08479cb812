//! The log's byte format, in one place for the writer and the reader
//! (docs/format.md draws it).
//!
//! A segment is a 24-byte header followed by records. A record is a 20-byte
//! header and a payload; its CRC-32 covers every header byte except the CRC
//! itself, and the payload, so a flipped length, LSN or kind is caught. An
//! op whose payload exceeds `MAX_FRAGMENT` is split into FIRST, MIDDLE...,
//! LAST fragments that share its LSN and replay only together.

/// Magic at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MSWALSEG";
/// The segment format this code writes. Version 2 added record kind 7
/// (the series one call creates, in one record); version 3 added kind 8 (a
/// metric definition with its unit), which replaces kind 1 in what it
/// writes; version 4 added kind 9 (a cut of some series). Older segments
/// hold only the kinds of their version, and read as they always did.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest segment format this code reads.
pub const OLDEST_VERSION: u32 = 1;
pub const SEGMENT_HEADER: usize = 24;
pub const RECORD_HEADER: usize = 20;
/// Largest payload in one record; larger ops are fragmented.
pub const MAX_FRAGMENT: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    Full = 0,
    First = 1,
    Middle = 2,
    Last = 3,
}

impl Fragment {
    fn from_byte(b: u8) -> Option<Fragment> {
        Some(match b {
            0 => Fragment::Full,
            1 => Fragment::First,
            2 => Fragment::Middle,
            3 => Fragment::Last,
            _ => return None,
        })
    }
}

pub fn segment_header(first_lsn: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What is wrong with a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Shorter than a header: a segment cut while it was being created.
    Short,
    /// Not a segment, or a damaged header.
    Bad(String),
    /// A segment of a format version this code does not read.
    Version(u32),
}

/// The first LSN a segment header announces.
pub fn parse_segment_header(bytes: &[u8]) -> Result<u64, HeaderProblem> {
    if bytes.len() < SEGMENT_HEADER {
        return Err(HeaderProblem::Short);
    }
    let h = &bytes[..SEGMENT_HEADER];
    if h[0..8] != SEGMENT_MAGIC {
        return Err(HeaderProblem::Bad("no segment magic".to_owned()));
    }
    let crc = u32::from_le_bytes(h[20..24].try_into().expect("4 bytes"));
    if crc != crc32fast::hash(&h[0..20]) {
        return Err(HeaderProblem::Bad(
            "segment header checksum mismatch".to_owned(),
        ));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderProblem::Version(version));
    }
    Ok(u64::from_le_bytes(h[12..20].try_into().expect("8 bytes")))
}

fn record_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[0..4]);
    hasher.update(&header[8..RECORD_HEADER]);
    hasher.update(payload);
    hasher.finalize()
}

/// Fills the record header at `out[at..at + RECORD_HEADER]` for the payload
/// that follows it in `out`.
pub fn seal(out: &mut [u8], at: usize, lsn: u64, kind: u8, fragment: Fragment) {
    let payload_len = out.len() - at - RECORD_HEADER;
    let (head, payload) = out[at..].split_at_mut(RECORD_HEADER);
    head[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    head[8..16].copy_from_slice(&lsn.to_le_bytes());
    head[16] = kind;
    head[17] = fragment as u8;
    head[18..20].copy_from_slice(&[0, 0]);
    let crc = record_crc(head, payload);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one whole record (header and payload) to `out`.
pub fn frame(out: &mut Vec<u8>, lsn: u64, kind: u8, fragment: Fragment, payload: &[u8]) {
    let at = out.len();
    out.resize(at + RECORD_HEADER, 0);
    out.extend_from_slice(payload);
    seal(out, at, lsn, kind, fragment);
}

/// A record read from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub lsn: u64,
    pub kind: u8,
    pub fragment: Fragment,
    pub payload: &'a [u8],
    /// Offset just past the record.
    pub end: usize,
}

/// Why no record could be read at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// The header or the payload runs past the end of the file.
    Truncated,
    /// A zero header: the file was extended but never written here.
    Zeroes,
    /// The length field is larger than any record this code writes.
    Length(u32),
    Checksum,
    /// Checksum fine but the fragment byte or reserved bytes are invalid.
    Malformed(String),
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::Truncated => write!(f, "record runs past the end of the file"),
            RecordProblem::Zeroes => write!(f, "zero bytes where a record should start"),
            RecordProblem::Length(n) => write!(f, "record length {n} exceeds {MAX_FRAGMENT}"),
            RecordProblem::Checksum => write!(f, "record checksum mismatch"),
            RecordProblem::Malformed(what) => write!(f, "malformed record: {what}"),
        }
    }
}

/// The record at `offset` of `bytes`. Lengths are checked before anything
/// is sized by them, so damage never causes a large allocation.
pub fn parse(bytes: &[u8], offset: usize) -> Result<Record<'_>, RecordProblem> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER {
        if rest.iter().all(|&b| b == 0) {
            return Err(RecordProblem::Zeroes);
        }
        return Err(RecordProblem::Truncated);
    }
    let head = &rest[..RECORD_HEADER];
    if head.iter().all(|&b| b == 0) {
        return Err(RecordProblem::Zeroes);
    }
    let len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
    if len as usize > MAX_FRAGMENT {
        return Err(RecordProblem::Length(len));
    }
    let end = RECORD_HEADER + len as usize;
    if rest.len() < end {
        return Err(RecordProblem::Truncated);
    }
    let payload = &rest[RECORD_HEADER..end];
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if crc != record_crc(head, payload) {
        return Err(RecordProblem::Checksum);
    }
    let fragment = Fragment::from_byte(head[17])
        .ok_or_else(|| RecordProblem::Malformed(format!("fragment code {}", head[17])))?;
    if head[18..20] != [0, 0] {
        return Err(RecordProblem::Malformed(
            "reserved bytes are not zero".to_owned(),
        ));
    }
    Ok(Record {
        lsn: u64::from_le_bytes(head[8..16].try_into().expect("8 bytes")),
        kind: head[16],
        fragment,
        payload,
        end: offset + end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_record_parses_back() {
        let mut out = segment_header(5).to_vec();
        frame(&mut out, 5, 3, Fragment::Full, b"hello");
        frame(&mut out, 6, 4, Fragment::First, b"");
        assert_eq!(parse_segment_header(&out), Ok(5));
        let first = parse(&out, SEGMENT_HEADER).unwrap();
        assert_eq!(
            (first.lsn, first.kind, first.payload),
            (5, 3, &b"hello"[..])
        );
        let second = parse(&out, first.end).unwrap();
        assert_eq!(
            (second.lsn, second.fragment, second.end),
            (6, Fragment::First, out.len())
        );
    }

    #[test]
    fn every_flipped_bit_of_a_record_is_detected() {
        let mut out = Vec::new();
        frame(&mut out, 42, 3, Fragment::Full, b"payload bytes");
        for bit in 0..out.len() * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(parse(&damaged, 0).is_err(), "bit {bit} went unnoticed");
        }
    }

    #[test]
    fn cut_and_zeroed_records_are_told_apart() {
        let mut out = Vec::new();
        frame(&mut out, 1, 3, Fragment::Full, b"abc");
        for cut in 1..out.len() {
            assert_eq!(
                parse(&out[..cut], 0),
                Err(RecordProblem::Truncated),
                "cut {cut}"
            );
        }
        assert_eq!(parse(&[0u8; 40], 0), Err(RecordProblem::Zeroes));
        let mut huge = out.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge, 0), Err(RecordProblem::Length(u32::MAX)));
    }

    #[test]
    fn segment_headers_reject_damage_and_other_versions() {
        let good = segment_header(9);
        assert_eq!(parse_segment_header(&good[..10]), Err(HeaderProblem::Short));
        let mut bad = good;
        bad[13] ^= 1;
        assert!(matches!(
            parse_segment_header(&bad),
            Err(HeaderProblem::Bad(_))
        ));
        let with_version = |version: u32| {
            let mut other = good;
            other[8..12].copy_from_slice(&version.to_le_bytes());
            let crc = crc32fast::hash(&other[0..20]);
            other[20..24].copy_from_slice(&crc.to_le_bytes());
            other
        };
        assert_eq!(parse_segment_header(&with_version(1)), Ok(9));
        assert_eq!(parse_segment_header(&with_version(2)), Ok(9));
        assert_eq!(parse_segment_header(&with_version(3)), Ok(9));
        for version in [0, 5] {
            assert_eq!(
                parse_segment_header(&with_version(version)),
                Err(HeaderProblem::Version(version))
            );
        }
    }
}
