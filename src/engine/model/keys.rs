//! Many series keys, (metric, path), held in one buffer.
//!
//! A collector's first tick names thousands of new series. Holding each
//! name as its own `String` cost an allocation per name on the way in (from
//! Python) and on the way out (from the log); here every name of every key
//! lies in one string, and a key is a run of names in it: the metric first,
//! then the path. [`SeriesKeys::names`] lends them out as `&str`s, so the
//! catalog (which takes any `&[S: AsRef<str>]` path) reads them in place.
//!
//! Nothing is checked here: the store checks names when it plans an op.

use std::hash::{BuildHasherDefault, Hasher};

/// (metric, path) keys, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesKeys {
    /// Every name, back to back.
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<u32>,
    /// Per key: the index in `ends` of its metric name; its path is the
    /// names after it, up to the next key's metric.
    firsts: Vec<u32>,
}

/// One key, borrowed from [`SeriesKeys::names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesName<'a> {
    pub metric: &'a str,
    pub path: &'a [&'a str],
}

impl SeriesKeys {
    pub fn new() -> Self {
        SeriesKeys::default()
    }

    /// Room for `keys` keys of about `names` names and `bytes` bytes in all.
    pub fn with_capacity(keys: usize, names: usize, bytes: usize) -> Self {
        SeriesKeys {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(names),
            firsts: Vec::with_capacity(keys),
        }
    }

    /// Starts a key with its metric; [`SeriesKeys::push_name`] adds its path.
    pub fn push_metric(&mut self, metric: &str) {
        self.firsts.push(self.ends.len() as u32);
        self.push_name(metric);
    }

    /// Adds a path name to the key being built.
    pub fn push_name(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len() as u32);
    }

    /// Adds a whole key.
    pub fn push<S: AsRef<str>>(&mut self, metric: &str, path: &[S]) {
        self.push_metric(metric);
        for name in path {
            self.push_name(name.as_ref());
        }
    }

    pub fn len(&self) -> usize {
        self.firsts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.firsts.is_empty()
    }

    /// Every name, in order: what [`SeriesKeys::keys`] borrows from.
    pub fn names(&self) -> Vec<&str> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let name = &self.text[start..end as usize];
                start = end as usize;
                name
            })
            .collect()
    }

    /// The keys, borrowing `names` (from [`SeriesKeys::names`] of this).
    pub fn keys<'a>(&self, names: &'a [&'a str]) -> Vec<SeriesName<'a>> {
        let count = self.firsts.len();
        (0..count)
            .map(|i| {
                let first = self.firsts[i] as usize;
                let end = self.firsts.get(i + 1).map_or(names.len(), |&f| f as usize);
                SeriesName {
                    metric: names[first],
                    path: &names[first + 1..end],
                }
            })
            .collect()
    }
}

/// Hashes the keys of one call to find repeats among its new series: a
/// multiply-and-rotate per 8 bytes (as rustc's FxHash), where SipHash, the
/// standard map's default, took as long as creating the series. Not meant
/// to withstand names chosen to collide: at worst one such call is slow.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

/// Builds [`KeyHasher`]s for a `HashMap`.
pub type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = self
            .0
            .wrapping_add(word)
            .wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // The multiply leaves the high bits best mixed; the table indexes
        // by the low ones.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_hasher_tells_apart_names_that_differ_anywhere() {
        use std::hash::BuildHasher;
        let hash = |metric: u32, path: &[&str]| BuildKeyHasher::default().hash_one((metric, path));
        let base = hash(1, &["emmy", "e0102", "cpu3"]);
        for other in [
            hash(2, &["emmy", "e0102", "cpu3"]),
            hash(1, &["emmy", "e0102", "cpu4"]),
            hash(1, &["emmy", "e0102cpu3"]),
            hash(1, &["emmy", "e0102", "cpu3", ""]),
            hash(1, &["emmz", "e0102", "cpu3"]),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn keys_come_back_as_pushed_with_empty_names_and_paths_kept() {
        let mut keys = SeriesKeys::new();
        keys.push("cpu_load", &["emmy", "e0102"]);
        keys.push::<&str>("mem", &[]);
        keys.push("m", &["", "ä/b"]);
        let names = keys.names();
        let got = keys.keys(&names);
        assert_eq!(keys.len(), 3);
        assert_eq!(
            got,
            vec![
                SeriesName {
                    metric: "cpu_load",
                    path: &["emmy", "e0102"]
                },
                SeriesName {
                    metric: "mem",
                    path: &[]
                },
                SeriesName {
                    metric: "m",
                    path: &["", "ä/b"]
                },
            ]
        );
    }
}
