//! The raw baseline: `[len u32 | crc32 u32 | payload]` copied into a file
//! that was sized up front (`set_len`) and memory-mapped. No index, no
//! offsets, no recovery: what writing and checking the bytes costs on this
//! machine, the ceiling for any engine that stores and checksums them.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::Path;

use memmap2::MmapMut;

use super::{Engine, EngineInfo, FsyncSupport};
use crate::workload::{Check, Fsync, Result, Values};

/// Bytes before each payload: its length and its CRC-32.
const FRAME: usize = 8;
const FILE: &str = "raw.log";

/// The baseline's open file and map.
pub struct RawMmap {
    map: MmapMut,
    /// Where the next frame goes (appends), or the end of the data (reopen).
    pos: usize,
    sync: Fsync,
    _file: File,
}

impl RawMmap {
    fn map(file: &File) -> Result<MmapMut> {
        // SAFETY: the file was created by this process in its own temporary
        // directory; nothing else truncates or writes it while it is mapped.
        Ok(unsafe { MmapMut::map_mut(file)? })
    }

    /// Copies one frame in at `pos`.
    #[inline]
    fn append_one(&mut self, value: &[u8]) -> Result<()> {
        let end = self.pos + FRAME + value.len();
        let Some(frame) = self.map.get_mut(self.pos..end) else {
            return Err(format!("raw file full at byte {} of {}", self.pos, self.map.len()).into());
        };
        let len = u32::try_from(value.len())?;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        frame[4..8].copy_from_slice(&crc32fast::hash(value).to_le_bytes());
        frame[FRAME..].copy_from_slice(value);
        self.pos = end;
        Ok(())
    }
}

impl Engine for RawMmap {
    const INFO: EngineInfo = EngineInfo {
        name: "raw mmap",
        version: "memmap2 0.9.12, crc32fast 1.5.5",
        no_fsync: "memcpy of [len | crc32 | payload] into a file sized with set_len (sparse, no fallocate) and mapped shared; one thread, pages faulted in on first touch (no prefaulting)",
        fsync_per_batch: FsyncSupport::Supported(
            "msync(MS_SYNC) of the batch's byte range (memmap2 flush_range) after each batch",
        ),
        scan: "walks the map, recomputing every payload's CRC-32 (crc32fast)",
        close: "munmap and close, no fsync",
    };

    fn create(dir: &Path, sync: Fsync, values: Values<'_>) -> Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(dir.join(FILE))?;
        let bytes = values.len() * (FRAME + values.size());
        file.set_len(bytes as u64)?;
        let map = Self::map(&file)?;
        Ok(RawMmap { map, pos: 0, sync, _file: file })
    }

    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()> {
        for (_, batch) in values.batches(batch) {
            let start = self.pos;
            for value in batch.iter() {
                self.append_one(value)?;
            }
            if self.sync == Fsync::PerBatch {
                self.map.flush_range(start, self.pos - start)?;
            }
        }
        Ok(())
    }

    fn append_each(&mut self, values: Values<'_>) -> Result<()> {
        for value in values.iter() {
            self.append_one(value)?;
        }
        Ok(())
    }

    fn close(self) -> Result<()> {
        drop(self);
        Ok(())
    }

    fn reopen(dir: &Path) -> Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(dir.join(FILE))?;
        let map = Self::map(&file)?;
        let pos = map.len();
        Ok(RawMmap { map, pos, sync: Fsync::None, _file: file })
    }

    fn scan(&mut self, check: &mut Check<'_>) -> Result<()> {
        let data = &self.map[..self.pos];
        let mut at = 0;
        while at < data.len() {
            let header = data.get(at..at + FRAME).ok_or("raw file: truncated frame header")?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let payload = data.get(at + FRAME..at + FRAME + len).ok_or("raw file: truncated payload")?;
            if crc32fast::hash(payload) != crc {
                return Err(format!("raw file: bad CRC at byte {at}").into());
            }
            check.value(payload)?;
            at += FRAME + len;
        }
        Ok(())
    }
}
