//! Little-endian encoding helpers shared by the log's op payloads and the
//! snapshot format: the one place that reads bytes defensively.

/// Appends a name as `len u16 | UTF-8 bytes` (names are at most 255 bytes).
pub fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Appends `value` as a LEB128 varint: 7 bits a byte, low bits first, the
/// high bit set on every byte but the last.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The plain numbers [`put_all`] copies: no padding, every byte set, so
/// their bytes in memory are their encoding on a little-endian machine.
pub trait Number: Copy + private::Sealed {
    /// Appends one value's little-endian bytes (used on big-endian machines).
    #[cfg_attr(target_endian = "little", allow(dead_code))]
    fn put(self, out: &mut Vec<u8>);
}

mod private {
    pub trait Sealed {}
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl Number for $t {
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
number!(u32, i64, f32);

/// Appends the little-endian bytes of `values`: one copy where memory is
/// little-endian already (a 10,000-series tick encoded value by value took
/// tens of microseconds), a conversion per value elsewhere.
pub fn put_all<T: Number>(out: &mut Vec<u8>, values: &[T]) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: T is one of the sealed plain number types (no padding,
        // every byte initialised); the slice covers exactly the memory of
        // `values`, which outlives the copy.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        out.extend_from_slice(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    for v in values {
        v.put(out);
    }
}

/// Reads a byte string front to back. Every read checks the bytes remain,
/// so damaged counts or lengths fail instead of allocating.
pub struct ByteReader<'a> {
    pub bytes: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!("{} bytes missing at the end", n - self.bytes.len()));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u64` element count, checked against the bytes left for elements
    /// of `element_bytes` each.
    pub fn count(&mut self, element_bytes: usize) -> Result<usize, String> {
        let n = u64::from_le_bytes(self.array()?);
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(element_bytes) <= self.bytes.len() => Ok(n),
            _ => Err(format!(
                "count {n} needs more bytes than the {} left",
                self.bytes.len()
            )),
        }
    }

    pub fn string(&mut self) -> Result<String, String> {
        self.str().map(str::to_owned)
    }

    /// A name as [`put_str`] wrote it, borrowed from the bytes.
    pub fn str(&mut self) -> Result<&'a str, String> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| "a name is not UTF-8".to_owned())
    }

    pub fn u32s(&mut self, n: usize) -> Result<Vec<u32>, String> {
        let bytes = self.take(n * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    pub fn i64s(&mut self, n: usize) -> Result<Vec<i64>, String> {
        let bytes = self.take(n * 8)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect())
    }

    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let bytes = self.take(n * 4)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    /// A LEB128 varint ([`put_varint`]); fails on one longer than ten
    /// bytes or beyond 64 bits.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, String> {
        self.varint_or_none().ok_or_else(|| {
            let cut = self.bytes.len() < 10 && self.bytes.iter().all(|b| b & 0x80 != 0);
            if cut {
                "a varint runs past the end"
            } else {
                "varint beyond 64 bits"
            }
            .to_owned()
        })
    }

    /// [`ByteReader::varint`], None where it fails (consuming nothing):
    /// returned in registers, for loops over many varints.
    #[inline]
    pub fn varint_or_none(&mut self) -> Option<u64> {
        // Most varints of an index are one or two bytes: no loop for them.
        let (value, len) = match *self.bytes {
            [b0, ..] if b0 < 0x80 => (u64::from(b0), 1),
            [b0, b1, ..] if b1 < 0x80 => (u64::from(b0 & 0x7F) | u64::from(b1) << 7, 2),
            _ => varint_long(self.bytes)?,
        };
        self.bytes = &self.bytes[len..];
        Some(value)
    }

    /// Fails if bytes are left over.
    pub fn finish(self, what: &str) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} bytes left over in {what}", self.bytes.len()))
        }
    }
}

/// A varint of three bytes or more at the start of `bytes`: (value, length).
#[inline(never)]
fn varint_long(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(10).enumerate() {
        let bits = u64::from(byte & 0x7F);
        if i == 9 && bits > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length_and_refuse_overlong_ones() {
        let values = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ];
        let mut out = Vec::new();
        for v in values {
            put_varint(&mut out, v);
        }
        assert_eq!(out.len(), 1 + 1 + 1 + 2 + 2 + 3 + 5 + 10 + 10);
        let mut r = ByteReader::new(&out);
        for v in values {
            assert_eq!(r.varint(), Ok(v));
        }
        r.finish("the varints").unwrap();
        assert!(ByteReader::new(&[0xFF; 10]).varint().is_err());
        assert!(
            ByteReader::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02])
                .varint()
                .is_err()
        );
        assert!(ByteReader::new(&[0x80]).varint().is_err());
        // A failed read consumes nothing; the two failures say which they are.
        let mut cut = ByteReader::new(&[0x80, 0x80]);
        assert_eq!(cut.varint(), Err("a varint runs past the end".to_owned()));
        assert_eq!(cut.varint_or_none(), None);
        assert_eq!(cut.bytes.len(), 2);
        let long = [0xFF; 10];
        assert_eq!(
            ByteReader::new(&long).varint(),
            Err("varint beyond 64 bits".to_owned())
        );
    }
}
