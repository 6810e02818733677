use annal::{Durability, Log, LogConfig, Record};

fn cfg() -> LogConfig {
    LogConfig::default().with_segment_bytes(64 * 1024).with_durability(Durability::Never).with_index_interval_bytes(256)
}

#[test]
fn append_roll_reopen_crash() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), cfg()).unwrap();
    let payload = vec![7u8; 100];
    for i in 0..5000u64 {
        let key = i.to_le_bytes();
        assert_eq!(log.append(&Record::new(&payload).with_key(&key).with_timestamp(i as i64)).unwrap(), i);
    }
    assert!(log.segments().len() > 5, "{:?}", log.segments().len());
    let mut r = log.read_from(1234).unwrap();
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(rec.offset(), 1234);
    assert_eq!(rec.key(), Some(&1234u64.to_le_bytes()[..]));
    assert_eq!(log.offset_for_timestamp(4321).unwrap(), Some(4321));
    assert_eq!(log.read_from(0).unwrap().count(), 5000);
    log.close().unwrap();

    let log = Log::open(dir.path(), cfg()).unwrap();
    assert_eq!(log.recovery_report().scanned_segment, None);
    assert_eq!(log.next_offset(), 5000);
    for i in 5000..5100u64 {
        log.append(&Record::new(&payload).with_timestamp(i as i64)).unwrap();
    }
    log.abandon();
    let log = Log::open(dir.path(), cfg()).unwrap();
    assert!(log.recovery_report().scanned_segment.is_some());
    assert_eq!(log.next_offset(), 5100);
    let all: Vec<_> = log.read_from(0).unwrap().map(|r| r.unwrap().offset).collect();
    assert_eq!(all, (0..5100).collect::<Vec<_>>());
    drop(log);
    let ro = Log::open_read_only(dir.path(), cfg()).unwrap();
    assert_eq!(ro.next_offset(), 5100);
    assert_eq!(ro.read_from(0).unwrap().count(), 5100);
}
