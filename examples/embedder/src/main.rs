//! The smallest embedding of annal: open a log, append a batch atomically,
//! read it back, reopen. `.ci/run` builds and runs it with
//! `default-features = false` and checks with `cargo tree` that none of the
//! `annal` binary's dependencies come with it.

use annal::{Durability, Log, LogConfig, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("annal-embedder-{}", std::process::id()));
    let config = LogConfig::default().with_durability(Durability::Always).with_segment_bytes(1 << 20);
    let log = Log::open(&dir, config.clone())?;
    let batch = log.append_batch(&[Record::new(b"order placed"), Record::new(b"order paid")])?;
    let values: Vec<Vec<u8>> =
        log.read_from(batch.start)?.map(|r| r.map(|r| r.value.unwrap_or_default())).collect::<Result<_, _>>()?;
    assert_eq!(values, [b"order placed".to_vec(), b"order paid".to_vec()]);
    log.close()?;
    let reopened = Log::open(&dir, config)?;
    assert_eq!(reopened.next_offset(), batch.end);
    reopened.close()?;
    std::fs::remove_dir_all(&dir)?;
    println!("{{\"first_offset\": {}, \"next_offset\": {}, \"read\": {}}}", batch.start, batch.end, values.len());
    Ok(())
}
