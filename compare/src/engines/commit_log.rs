//! The `commitlog` crate 0.2: segment files written with `write(2)` and a
//! memory-mapped offset index, CRC-32C per message.

use std::path::Path;

use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};

use super::{Engine, EngineInfo, FsyncSupport};
use crate::workload::{Check, Fsync, Result, Values};

/// Bytes asked for per `read` call in the scan.
const READ_LIMIT: usize = 1 << 20;

/// An open commit log and a reusable batch buffer.
pub struct CommitLogEngine {
    log: CommitLog,
    buf: MessageBuf,
}

fn open(dir: &Path) -> Result<CommitLog> {
    // Defaults: 1 GB segments, 1 MB messages (a batch of 100 x 1 KiB is one
    // message set of about 103 KB, under that).
    Ok(CommitLog::new(LogOptions::new(dir))?)
}

impl Engine for CommitLogEngine {
    const INFO: EngineInfo = EngineInfo {
        name: "commitlog",
        version: "0.2.0",
        no_fsync: "default LogOptions; batches via append(&mut MessageBuf), single records via append_msg",
        fsync_per_batch: FsyncSupport::Unsupported(
            "its only sync call, CommitLog::flush, msyncs the index but calls File::flush on the \
             segment, which does nothing for a std File: no fsync of the data is available, and the segment \
             file is not exposed",
        ),
        scan: "read(offset, ReadLimit::max_bytes(1 MiB)) in a loop; each read copies the bytes into a MessageBuf \
             and checks every message's CRC-32C",
        close: "CommitLog::flush (msync of the index), then drop",
    };

    fn create(dir: &Path, sync: Fsync, _values: Values<'_>) -> Result<Self> {
        if sync == Fsync::PerBatch {
            return Err("commitlog cannot fsync appended data".into());
        }
        Ok(CommitLogEngine { log: open(dir)?, buf: MessageBuf::default() })
    }

    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()> {
        for (first, batch) in values.batches(batch) {
            self.buf.clear();
            for value in batch.iter() {
                self.buf.push(value).map_err(|e| format!("commitlog MessageBuf::push: {e:?}"))?;
            }
            let offsets = self.log.append(&mut self.buf)?;
            if offsets.first() != first {
                return Err(format!("commitlog gave offset {} to record {first}", offsets.first()).into());
            }
        }
        Ok(())
    }

    fn append_each(&mut self, values: Values<'_>) -> Result<()> {
        for value in values.iter() {
            std::hint::black_box(self.log.append_msg(value)?);
        }
        Ok(())
    }

    fn close(mut self) -> Result<()> {
        self.log.flush()?;
        Ok(())
    }

    fn reopen(dir: &Path) -> Result<Self> {
        Ok(CommitLogEngine { log: open(dir)?, buf: MessageBuf::default() })
    }

    fn scan(&mut self, check: &mut Check<'_>) -> Result<()> {
        let mut next = 0;
        loop {
            let messages = self.log.read(next, ReadLimit::max_bytes(READ_LIMIT))?;
            if messages.is_empty() {
                return Ok(());
            }
            for message in messages.iter() {
                check.key(message.offset())?;
                check.value(message.payload())?;
                next = message.offset() + 1;
            }
        }
    }
}
