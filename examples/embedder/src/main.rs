//! The smallest embedding of annal: open a log, append a batch atomically,
//! read it back, reopen; then an event store: append to a stream with an
//! expected version, read the stream back. `.ci/run` builds and runs it with
//! `default-features = false` and checks with `cargo tree` that none of the
//! `annal` binary's dependencies come with it.

use annal::events::{Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent};
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

    let events_dir = std::env::temp_dir().join(format!("annal-embedder-events-{}", std::process::id()));
    let store = EventStore::open(&events_dir, EventStoreConfig::default())?;
    store.append("order-1", ExpectedVersion::NoStream, vec![NewEvent::json("OrderPlaced", r#"{"total":30}"#)])?;
    store.append("order-1", ExpectedVersion::Exact(0), vec![NewEvent::json("OrderPaid", r#"{"amount":30}"#)])?;
    let stream = store.read_stream("order-1", 0, Direction::Forward, 10)?;
    assert_eq!(stream.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["OrderPlaced", "OrderPaid"]);
    store.close()?;
    std::fs::remove_dir_all(&events_dir)?;
    println!(
        "{{\"first_offset\": {}, \"next_offset\": {}, \"read\": {}, \"stream_events\": {}}}",
        batch.start,
        batch.end,
        values.len(),
        stream.len()
    );
    Ok(())
}
