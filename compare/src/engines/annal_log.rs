//! annal, the engine of this repository, with its default 1 GiB segments.

use std::path::Path;

use annal::{Durability, Log, LogConfig, Record};

use super::{Engine, EngineInfo, FsyncSupport};
use crate::workload::{Check, Fsync, Result, Values};

/// An open annal log.
pub struct Annal {
    log: Log,
}

fn config(sync: Fsync) -> LogConfig {
    let durability = match sync {
        Fsync::None => Durability::Never,
        Fsync::PerBatch => Durability::Always,
    };
    LogConfig::default().with_durability(durability)
}

impl Engine for Annal {
    const INFO: EngineInfo = EngineInfo {
        name: "annal",
        version: "0.1.0, this repository",
        no_fsync: "Durability::Never, default 1 GiB segments, allocated in steps as they fill",
        fsync_per_batch: FsyncSupport::Supported(
            "Durability::Always: append_batch returns once its bytes are fsynced; each call is one batch frame",
        ),
        scan: "LogReader::next_record: one CRC-32 per batch frame (one append or append_batch call), checked before any of its records is returned",
        close: "Log::close: seals the segment (index files, footer, two fsyncs, trims the preallocated file)",
    };

    fn create(dir: &Path, sync: Fsync, _values: Values<'_>) -> Result<Self> {
        Ok(Annal { log: Log::open(dir, config(sync))? })
    }

    fn append_batches(&mut self, values: Values<'_>, batch: usize) -> Result<()> {
        let mut records = Vec::with_capacity(batch);
        for (first, batch) in values.batches(batch) {
            records.clear();
            records.extend(batch.iter().map(Record::new));
            let offsets = self.log.append_batch(&records)?;
            if offsets.start != first {
                return Err(format!("annal gave offset {} to record {first}", offsets.start).into());
            }
        }
        Ok(())
    }

    fn append_each(&mut self, values: Values<'_>) -> Result<()> {
        for value in values.iter() {
            std::hint::black_box(self.log.append(&Record::new(value))?);
        }
        Ok(())
    }

    fn close(self) -> Result<()> {
        Ok(self.log.close()?)
    }

    fn reopen(dir: &Path) -> Result<Self> {
        Ok(Annal { log: Log::open(dir, config(Fsync::None))? })
    }

    fn scan(&mut self, check: &mut Check<'_>) -> Result<()> {
        let mut reader = self.log.read_from(0)?;
        while let Some(record) = reader.next_record()? {
            check.key(record.offset())?;
            check.value(record.value().ok_or("annal returned a record without a value")?)?;
        }
        Ok(())
    }
}
