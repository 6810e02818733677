//! What every engine is asked to do: the values, the workloads, and the check
//! that a scan read back exactly what was appended.

use std::fmt;

use serde::Serialize;

/// The error type of this tool: any error, with its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result alias used throughout.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether appends are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// No fsync while appending: data reaches the OS page cache and is
    /// written back when the kernel likes.
    None,
    /// Every batch is on disk (fsync or equivalent) before the call returns.
    PerBatch,
}

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Appends in batches (one engine call per batch), no fsync.
    BatchNoSync,
    /// One record per engine call, no fsync.
    EachNoSync,
    /// Reopen, then read every value back in order.
    Scan,
    /// Appends in batches, each batch made durable before the call returns.
    BatchFsync,
}

impl Workload {
    /// A short label for the table, given the batch size.
    pub fn label(self, batch: usize) -> String {
        match self {
            Workload::BatchNoSync => format!("append, batches of {batch}, no fsync"),
            Workload::EachNoSync => "append, 1 per call, no fsync".to_string(),
            Workload::Scan => "scan, every value".to_string(),
            Workload::BatchFsync => format!("append, batches of {batch}, fsync per batch"),
        }
    }
}

/// Fixed-size values laid out back to back: a view of the prepared pool.
#[derive(Clone, Copy)]
pub struct Values<'a> {
    bytes: &'a [u8],
    size: usize,
}

impl<'a> Values<'a> {
    /// Values of `size` bytes each, taken from `bytes` (whose length is a
    /// multiple of `size`).
    pub fn new(bytes: &'a [u8], size: usize) -> Values<'a> {
        assert!(size > 0 && bytes.len().is_multiple_of(size), "the pool holds whole values");
        Values { bytes, size }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.size
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Size of each value in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sum of the values' lengths.
    pub fn payload_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The `i`-th value.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let start = i.checked_mul(self.size)?;
        self.bytes.get(start..start + self.size)
    }

    /// The values in order.
    #[inline]
    pub fn iter(&self) -> std::slice::ChunksExact<'a, u8> {
        self.bytes.chunks_exact(self.size)
    }

    /// The first `n` values (all of them if there are fewer).
    pub fn take(&self, n: usize) -> Values<'a> {
        let n = n.min(self.len());
        Values { bytes: &self.bytes[..n * self.size], size: self.size }
    }

    /// Consecutive batches of at most `batch` values, each with the index of
    /// its first value.
    pub fn batches(&self, batch: usize) -> impl Iterator<Item = (u64, Values<'a>)> + use<'a> {
        let size = self.size;
        let batch = batch.max(1);
        self.bytes.chunks(batch * size).enumerate().map(move |(b, bytes)| ((b * batch) as u64, Values { bytes, size }))
    }
}

/// A pool of pseudo-random values, generated before any timing starts.
pub struct Pool {
    bytes: Vec<u8>,
    size: usize,
}

impl Pool {
    /// `count` values of `size` bytes, from a SplitMix64 stream seeded by
    /// `seed` (incompressible, and different for every record).
    pub fn random(count: usize, size: usize, seed: u64) -> Pool {
        let mut bytes = vec![0u8; count * size];
        let mut state = seed;
        for chunk in bytes.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
        Pool { bytes, size }
    }

    /// All the values.
    pub fn values(&self) -> Values<'_> {
        Values::new(&self.bytes, self.size)
    }
}

/// Checks a scan: every value must equal the one appended at its position
/// (compared byte for byte), keys or offsets where the engine has them must
/// be the position, and the count must be exact. Any difference is an error.
pub struct Check<'a> {
    expected: Values<'a>,
    next: usize,
    bytes: u64,
}

impl<'a> Check<'a> {
    /// A check against `expected`, in order.
    pub fn new(expected: Values<'a>) -> Check<'a> {
        Check { expected, next: 0, bytes: 0 }
    }

    /// The key or offset of the next record must be its position.
    #[inline]
    pub fn key(&self, key: u64) -> Result<()> {
        if key != self.next as u64 {
            return Err(format!("record {} came back with key/offset {key}", self.next).into());
        }
        Ok(())
    }

    /// The next value read back.
    #[inline]
    pub fn value(&mut self, value: &[u8]) -> Result<()> {
        let Some(expected) = self.expected.get(self.next) else {
            return Err(format!("the scan returned more than the {} records appended", self.expected.len()).into());
        };
        if value != expected {
            return Err(format!(
                "record {} differs from what was appended ({} bytes read, {} expected)",
                self.next,
                value.len(),
                expected.len()
            )
            .into());
        }
        self.next += 1;
        self.bytes += value.len() as u64;
        Ok(())
    }

    /// Ends the check: every record must have come back.
    pub fn finish(self) -> Result<()> {
        if self.next != self.expected.len() || self.bytes != self.expected.payload_bytes() {
            return Err(format!(
                "the scan returned {} records ({} bytes), {} were appended ({} bytes)",
                self.next,
                self.bytes,
                self.expected.len(),
                self.expected.payload_bytes()
            )
            .into());
        }
        Ok(())
    }
}

/// Formats an integer with thousands separators: 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A value size for humans: "100 B", "1 KiB".
pub struct Size(pub usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1024 && self.0.is_multiple_of(1024) {
            write!(f, "{} KiB", self.0 / 1024)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_value_once() {
        let pool = Pool::random(250, 10, 1);
        let values = pool.values();
        let batches: Vec<_> = values.batches(100).collect();
        assert_eq!(batches.iter().map(|(first, _)| *first).collect::<Vec<_>>(), [0, 100, 200]);
        assert_eq!(batches.iter().map(|(_, b)| b.len()).sum::<usize>(), 250);
        assert_eq!(batches[2].1.get(0), values.get(200));
    }

    #[test]
    fn check_catches_missing_extra_and_changed_records() {
        let pool = Pool::random(3, 4, 2);
        let values = pool.values();
        let mut ok = Check::new(values);
        for v in values.iter() {
            ok.value(v).unwrap();
        }
        ok.finish().unwrap();

        let mut short = Check::new(values);
        short.value(values.get(0).unwrap()).unwrap();
        assert!(short.finish().is_err());

        let mut changed = Check::new(values);
        assert!(changed.value(values.get(1).unwrap()).is_err());

        let mut extra = Check::new(values.take(1));
        extra.value(values.get(0).unwrap()).unwrap();
        assert!(extra.value(values.get(1).unwrap()).is_err());
        assert!(Check::new(values).key(1).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(Size(100).to_string(), "100 B");
        assert_eq!(Size(1024).to_string(), "1 KiB");
    }
}
