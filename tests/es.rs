//! The application layer of event sourcing (docs/EVENT-SOURCING.md):
//! aggregates through the repository, optimistic concurrency with retries,
//! idempotent commands, metadata, snapshots (policies, invalidation, damage,
//! time travel) and upcasting.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use annal::es::{
    Aggregate, CommandError, CommandMeta, EventMeta, Executed, Json, Postcard, RawEvent, Repository,
    SNAPSHOT_EVENT_TYPE, SnapshotPolicy, SnapshotWrite, Upcasters,
};
use annal::events::{DeleteMode, Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent};
use annal::{Durability, LogConfig};
use common::bank::{Account, AccountCommand as Cmd, AccountError, AccountEvent, AccountV2, deposit_upcasters};
use proptest::prelude::*;
use uuid::Uuid;

fn cfg() -> EventStoreConfig {
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(1 << 20).with_durability(Durability::Never))
        .with_flush_entries(200)
}

fn open(dir: &std::path::Path) -> Arc<EventStore> {
    Arc::new(EventStore::open(dir, cfg()).unwrap())
}

fn accounts(store: &Arc<EventStore>) -> Repository<Account, Json> {
    Repository::new(Arc::clone(store), Json)
}

#[test]
fn commands_are_decided_on_the_loaded_state_and_refusals_write_nothing() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store);
    assert!(matches!(repo.execute("a", &Cmd::Deposit(5)), Err(CommandError::Rejected(AccountError::NotOpen))));
    let opened = repo.execute("a", &Cmd::Open).unwrap();
    assert_eq!((opened.version, opened.events, opened.attempts, opened.already_done), (Some(0), 1, 1, false));
    repo.execute("a", &Cmd::Deposit(30)).unwrap();
    let refused = repo.execute("a", &Cmd::Withdraw(31));
    assert!(matches!(refused, Err(CommandError::Rejected(AccountError::Overdraft { balance: 30, amount: 31 }))));
    repo.execute("a", &Cmd::Withdraw(10)).unwrap();
    let a = repo.load("a").unwrap();
    assert_eq!(a.state, Account { open: true, balance: 20, deposits: 1, withdrawals: 1 });
    assert_eq!((a.version, a.snapshot, a.replayed), (Some(2), None, 3));
    // The events are in the stream `account-a`, typed and in JSON.
    let events = store.read_stream("account-a", 0, Direction::Forward, 10).unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Opened", "Deposited", "Withdrawn"]);
    assert_eq!(events[1].data, br#"{"Deposited":{"amount":30,"currency":"USD"}}"#);
    // A new aggregate loads as the default state.
    let none = repo.load("nobody").unwrap();
    assert_eq!((none.state, none.version), (Account::default(), None));
}

#[test]
fn correlation_and_causation_ids_go_into_the_events_metadata() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store);
    let (correlation, causation) = (Uuid::now_v7(), Uuid::now_v7());
    let meta = CommandMeta::new().with_correlation_id(correlation).with_causation_id(causation);
    repo.execute_with("a", &Cmd::Open, &meta).unwrap();
    let e = &store.read_stream("account-a", 0, Direction::Forward, 1).unwrap()[0];
    let parsed: serde_json::Value = serde_json::from_slice(&e.metadata).unwrap();
    assert_eq!(parsed["$correlationId"], correlation.to_string());
    assert_eq!(parsed["$causationId"], causation.to_string());
    let m = EventMeta::parse(&e.metadata);
    assert_eq!((m.correlation_id, m.causation_id, m.schema_version), (Some(correlation), Some(causation), 1));
}

#[test]
fn a_command_with_an_id_is_carried_out_once_even_across_a_restart() {
    let dir = common::fast_tempdir();
    let command_id = Uuid::now_v7();
    let meta = CommandMeta::new().with_command_id(command_id);
    {
        let store = open(dir.path());
        let repo = accounts(&store);
        repo.execute("a", &Cmd::Open).unwrap();
        let first = repo.execute_with("a", &Cmd::Deposit(7), &meta).unwrap();
        assert!(!first.already_done);
        let again = repo.execute_with("a", &Cmd::Deposit(7), &meta).unwrap();
        assert!(again.already_done);
        assert_eq!((again.version, again.position, again.events), (first.version, first.position, 0));
        store.log().sync().unwrap();
        drop(repo);
        Arc::into_inner(store).unwrap().abandon();
    }
    let store = open(dir.path());
    let repo = accounts(&store);
    assert!(repo.execute_with("a", &Cmd::Deposit(7), &meta).unwrap().already_done);
    assert_eq!(repo.load("a").unwrap().state.balance, 7);
    let e = &store.read_stream("account-a", 1, Direction::Forward, 1).unwrap()[0];
    assert_eq!(e.id, CommandMeta::event_id(command_id, 0));
}

#[test]
fn concurrent_commands_on_one_aggregate_lose_no_update() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store).with_max_attempts(1000);
    repo.execute("a", &Cmd::Open).unwrap();
    let (threads, per_thread) = (8, 50);
    let retries = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per_thread {
                    let done = repo.execute("a", &Cmd::Deposit(1)).unwrap();
                    assert_eq!(done.events, 1);
                    retries.fetch_add(done.attempts - 1, Ordering::Relaxed);
                }
            });
        }
    });
    let a = repo.load("a").unwrap();
    assert_eq!(a.state.balance, threads * per_thread);
    assert_eq!(a.version, Some(threads as u64 * per_thread as u64));
    eprintln!(
        "{} retries over {} commands from {threads} threads",
        retries.load(Ordering::Relaxed),
        threads * per_thread
    );
    // With a limit of one attempt, a lost race is a typed conflict.
    let strict = accounts(&store).with_max_attempts(1);
    let conflicts = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    match strict.execute("a", &Cmd::Deposit(1)) {
                        Ok(_) => {}
                        Err(CommandError::Conflict { stream, attempts: 1 }) => {
                            assert_eq!(stream, "account-a");
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let written = 200 - conflicts.load(Ordering::Relaxed) as i64;
    assert_eq!(repo.load("a").unwrap().state.balance, threads * per_thread + written);
}

#[test]
fn snapshots_are_written_by_policy_and_used_by_loads() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store).with_snapshots(SnapshotPolicy::EveryEvents(10)).with_kept_snapshots(2);
    repo.execute("a", &Cmd::Open).unwrap();
    let mut written = Vec::new();
    for _ in 0..34 {
        if let SnapshotWrite::Written(v) = repo.execute("a", &Cmd::Deposit(1)).unwrap().snapshot {
            written.push(v);
        }
    }
    assert_eq!(written, [9, 19, 29]);
    let a = repo.load("a").unwrap();
    assert_eq!((a.state.balance, a.version, a.snapshot, a.replayed), (34, Some(34), Some(29), 5));
    assert!(a.skipped_snapshots.is_empty());
    assert_eq!(a.state, repo.replay("a").unwrap().state);
    // Two kept: the snapshot stream shows the newest two.
    let snaps = store.read_stream("$snapshots-account-a", 0, Direction::Forward, 10).unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|e| e.event_type == SNAPSHOT_EVENT_TYPE));
    // Replayed-over policy: a load that replays more than 3 events writes one.
    let lazy = accounts(&store).with_snapshots(SnapshotPolicy::ReplayedOver(3));
    assert_eq!(lazy.load("a").unwrap().replayed, 5);
    assert_eq!(lazy.load("a").unwrap().replayed, 0);
    // Explicit snapshot, and a repository that never uses them.
    repo.execute("a", &Cmd::Deposit(1)).unwrap();
    assert_eq!(repo.snapshot("a").unwrap(), Some(35));
    assert_eq!(repo.load("a").unwrap().replayed, 0);
    assert_eq!(accounts(&store).load("a").unwrap().replayed, 36);
}

#[test]
fn snapshots_of_another_version_fingerprint_or_codec_or_damaged_are_skipped() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store).with_snapshots(SnapshotPolicy::EveryEvents(5)).with_kept_snapshots(10);
    repo.execute("a", &Cmd::Open).unwrap();
    for _ in 0..9 {
        repo.execute("a", &Cmd::Deposit(2)).unwrap();
    }
    assert_eq!(repo.load("a").unwrap().snapshot, Some(9));
    // A new snapshot version: the old snapshot is skipped, with the reason.
    let v2 =
        Repository::<AccountV2, Json>::new(Arc::clone(&store), Json).with_snapshots(SnapshotPolicy::EveryEvents(5));
    let loaded = v2.load("a").unwrap();
    assert_eq!((loaded.snapshot, loaded.replayed, loaded.state.0.balance), (None, 10, 18));
    assert!(loaded.skipped_snapshots[0].reason.contains("snapshot version 1"), "{:?}", loaded.skipped_snapshots);
    // New upcasters change the fingerprint.
    let upcasters = Arc::new(Upcasters::new().register("Withdrawn", 1, "noop", |e| Ok(vec![e])));
    let upcast = accounts(&store).with_upcasters(upcasters).with_snapshots(SnapshotPolicy::EveryEvents(5));
    assert_ne!(upcast.fingerprint(), repo.fingerprint());
    let loaded = upcast.load("a").unwrap();
    assert_eq!(loaded.snapshot, None);
    assert!(loaded.skipped_snapshots[0].reason.contains("fingerprint"));
    // Another codec.
    let binary = Repository::<Account, Postcard>::new(Arc::clone(&store), Postcard)
        .with_snapshots(SnapshotPolicy::EveryEvents(5));
    assert!(binary.load("a").unwrap_err().to_string().contains("does not decode"), "JSON events, postcard codec");
    // Damaged snapshots: bad bytes, a bad CRC, a state that does not decode.
    let good = store.read_stream("$snapshots-account-a", u64::MAX, Direction::Backward, 1).unwrap().remove(0);
    let mut bad_crc = good.data.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let mut bad_state = good.data[..40].to_vec();
    bad_state.extend_from_slice(b"{not json");
    bad_state[32..36].copy_from_slice(&9u32.to_le_bytes());
    bad_state[36..40].copy_from_slice(&crc32fast::hash(b"{not json").to_le_bytes());
    for data in [b"garbage".to_vec(), bad_crc, bad_state] {
        store
            .append("$snapshots-account-a", ExpectedVersion::Any, vec![NewEvent::binary(SNAPSHOT_EVENT_TYPE, data)])
            .unwrap();
        let loaded = repo.load("a").unwrap();
        assert_eq!((loaded.snapshot, loaded.state.balance), (Some(9), 18), "fell back to the good one");
        assert!(!loaded.skipped_snapshots.is_empty());
    }
}

#[test]
fn a_stream_deleted_and_written_again_does_not_use_its_old_snapshots() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store).with_snapshots(SnapshotPolicy::EveryEvents(2));
    repo.execute("a", &Cmd::Open).unwrap();
    repo.execute("a", &Cmd::Deposit(50)).unwrap();
    assert_eq!(repo.load("a").unwrap().snapshot, Some(1));
    // Deleted through the repository: its snapshots go with it.
    repo.delete("a", DeleteMode::Soft).unwrap();
    assert_eq!(repo.load("a").unwrap().version, None);
    // Its versions go on after a soft delete: the new snapshot is of version 2.
    repo.execute("a", &Cmd::Open).unwrap();
    let a = repo.load("a").unwrap();
    assert_eq!((a.state.balance, a.state.open, a.snapshot), (0, true, Some(2)));
    // Deleted behind the repository's back: the snapshot no longer matches.
    repo.execute("b", &Cmd::Open).unwrap();
    repo.execute("b", &Cmd::Deposit(50)).unwrap();
    store.delete_stream("account-b", ExpectedVersion::Any, DeleteMode::Soft).unwrap();
    store.append("account-b", ExpectedVersion::Any, vec![NewEvent::json("Opened", r#""Opened""#)]).unwrap();
    let b = repo.load("b").unwrap();
    assert_eq!((b.state.balance, b.snapshot), (0, None));
    assert!(b.skipped_snapshots[0].reason.contains("covers version 1"), "{:?}", b.skipped_snapshots);
    // Hard deletion.
    repo.delete("b", DeleteMode::Hard).unwrap();
    assert!(repo.load("b").is_err());
}

#[test]
fn load_as_of_starts_from_the_newest_snapshot_before_that_time() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = accounts(&store).with_snapshots(SnapshotPolicy::EveryEvents(4));
    repo.execute("a", &Cmd::Open).unwrap();
    let mut times = Vec::new();
    for i in 1..=20 {
        repo.execute("a", &Cmd::Deposit(i)).unwrap();
        let e = store.read_stream("account-a", u64::MAX, Direction::Backward, 1).unwrap().remove(0);
        times.push((e.timestamp_ms, e.version));
        // Let the clock move now and then, so times differ.
        if i % 5 == 0 {
            let t = e.timestamp_ms;
            while now_ms() <= t {
                std::thread::yield_now();
            }
        }
    }
    let plain = accounts(&store);
    for &(t, _) in &times {
        let fast = repo.load_as_of("a", t).unwrap();
        let slow = plain.load_as_of("a", t).unwrap();
        assert_eq!(fast.state, slow.state, "as of {t}");
        assert_eq!(fast.version, slow.version);
        let last_then = times.iter().filter(|&&(u, _)| u <= t).map(|&(_, v)| v).max();
        assert_eq!(fast.version, last_then);
    }
    let before = repo.load_as_of("a", 0).unwrap();
    assert_eq!(before.version, None);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn postcard_aggregates_round_trip_with_snapshots() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = Repository::<Account, Postcard>::new(Arc::clone(&store), Postcard)
        .with_snapshots(SnapshotPolicy::EveryEvents(3));
    repo.execute("p", &Cmd::Open).unwrap();
    for i in 1..=7 {
        repo.execute("p", &Cmd::Deposit(i)).unwrap();
    }
    let p = repo.load("p").unwrap();
    assert_eq!((p.state.balance, p.snapshot, p.state.clone()), (28, Some(5), repo.replay("p").unwrap().state));
    let e = &store.read_stream("account-p", 0, Direction::Forward, 1).unwrap()[0];
    assert_eq!(e.data_type, annal::events::ContentType::Binary);
}

#[test]
fn events_written_before_an_upcaster_existed_read_at_the_current_version() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    // Written by an older version of the application: no currency, and a
    // type since renamed.
    store
        .append(
            "account-old",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::json("Opened", r#""Opened""#),
                NewEvent::json("Deposited", r#"{"Deposited":{"amount":5}}"#),
                NewEvent::json("Credited", r#"{"Credited":{"amount":7}}"#),
            ],
        )
        .unwrap();
    let plain = accounts(&store);
    assert!(plain.load("old").is_err(), "without the upcaster, a v1 deposit does not decode");
    let repo = accounts(&store).with_upcasters(Arc::new(deposit_upcasters()));
    let old = repo.load("old").unwrap();
    assert_eq!((old.state.balance, old.state.deposits), (12, 2));
    // New deposits are written at version 2, and not upcast again.
    repo.execute("old", &Cmd::Deposit(1)).unwrap();
    let e = store.read_stream("account-old", 3, Direction::Forward, 1).unwrap().remove(0);
    assert_eq!(EventMeta::parse(&e.metadata).schema_version, 2);
    assert_eq!(repo.load("old").unwrap().state.balance, 13);
}

#[test]
fn an_upcaster_splits_drops_and_chains_with_typed_errors() {
    let upcasters = Upcasters::new()
        .register("A", 1, "a1", |e| Ok(vec![RawEvent { schema_version: 2, ..e }]))
        .register("A", 2, "a2-split", |e| {
            Ok(vec![
                RawEvent { event_type: "B".into(), schema_version: 1, ..e.clone() },
                RawEvent { schema_version: 3, ..e },
            ])
        })
        .register("B", 1, "b-drop", |_| Ok(vec![]))
        .register("C", 1, "loop", |e| Ok(vec![e]))
        .register("D", 1, "fails", |_| Err("no".into()));
    let raw = |t: &str| RawEvent { event_type: t.into(), schema_version: 1, data: vec![1] };
    let out = upcasters.upcast(raw("A")).unwrap();
    assert_eq!(out, [RawEvent { event_type: "A".into(), schema_version: 3, data: vec![1] }]);
    assert_eq!(upcasters.current_version("A"), 3);
    assert_eq!(upcasters.current_version("Z"), 1);
    assert!(upcasters.upcast(raw("C")).unwrap_err().contains("more than 64"));
    assert!(upcasters.upcast(raw("D")).unwrap_err().contains("\"fails\": no"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Upcasting events written at version 1 gives what reading the same
    /// events written at the current version gives.
    #[test]
    fn upcasting_then_reading_equals_reading_events_written_at_the_new_version(
        ops in proptest::collection::vec((0u8..3, 1i64..1000), 1..40),
    ) {
        let dir = common::fast_tempdir();
        let store = open(dir.path());
        let repo = accounts(&store).with_upcasters(Arc::new(deposit_upcasters()));
        let mut old = vec![NewEvent::json("Opened", r#""Opened""#)];
        let mut new = vec![AccountEvent::Opened];
        for &(kind, amount) in &ops {
            match kind {
                0 => old.push(NewEvent::json("Deposited", format!(r#"{{"Deposited":{{"amount":{amount}}}}}"#))),
                1 => old.push(NewEvent::json("Credited", format!(r#"{{"Credited":{{"amount":{amount}}}}}"#))),
                _ => old.push(NewEvent::json("Withdrawn", format!(r#"{{"Withdrawn":{{"amount":{amount}}}}}"#))),
            }
            new.push(match kind {
                0 | 1 => AccountEvent::Deposited { amount, currency: "USD".into() },
                _ => AccountEvent::Withdrawn { amount },
            });
        }
        store.append("account-old", ExpectedVersion::NoStream, old).unwrap();
        let new_events: Vec<NewEvent> = new
            .iter()
            .map(|e| {
                let v = repo.upcasters().current_version(annal::es::DomainEvent::event_type(e));
                let meta = if v == 1 { String::new() } else { format!(r#"{{"$schemaVersion":{v}}}"#) };
                let ev = NewEvent::json(annal::es::DomainEvent::event_type(e), serde_json::to_vec(e).unwrap());
                if meta.is_empty() { ev } else { ev.with_json_metadata(meta) }
            })
            .collect();
        store.append("account-new", ExpectedVersion::NoStream, new_events).unwrap();
        // Read through the repository and through the decoder alike.
        prop_assert_eq!(repo.load("old").unwrap().state, repo.load("new").unwrap().state);
        let decode = |stream: &str| {
            let mut out = Vec::new();
            store.read_stream_with(stream, 0, Direction::Forward, usize::MAX, |v| {
                repo.upcasters().decode(&Json, v, |e: AccountEvent| out.push(e)).unwrap();
                Ok::<(), annal::events::Error>(())
            }).unwrap();
            out
        };
        prop_assert_eq!(decode("account-old"), new.clone());
        prop_assert_eq!(decode("account-new"), new);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Command(u8, Cmd),
    Reopen,
    BumpSnapshotVersion,
    DamageNewestSnapshot(u8),
    Snapshot(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let cmd = prop_oneof![Just(Cmd::Open), (1i64..100).prop_map(Cmd::Deposit), (1i64..100).prop_map(Cmd::Withdraw),];
    prop_oneof![
        20 => (0u8..3, cmd).prop_map(|(a, c)| Op::Command(a, c)),
        2 => Just(Op::Reopen),
        1 => Just(Op::BumpSnapshotVersion),
        2 => (0u8..3).prop_map(Op::DamageNewestSnapshot),
        2 => (0u8..3).prop_map(Op::Snapshot),
    ]
}

fn policy() -> impl Strategy<Value = SnapshotPolicy> {
    prop_oneof![
        Just(SnapshotPolicy::Never),
        (1u64..6).prop_map(SnapshotPolicy::EveryEvents),
        (0u64..6).prop_map(SnapshotPolicy::ReplayedOver),
        Just(SnapshotPolicy::OlderThan(std::time::Duration::ZERO)),
    ]
}

/// A load through either repository, checked against a full replay.
fn check_loads(store: &Arc<EventStore>, policy: SnapshotPolicy, v2: bool, id: &str) -> Result<(), TestCaseError> {
    if v2 {
        let repo = Repository::<AccountV2, Json>::new(Arc::clone(store), Json).with_snapshots(policy);
        prop_assert_eq!(repo.load(id).unwrap().state, repo.replay(id).unwrap().state);
    } else {
        let repo = accounts(store).with_snapshots(policy);
        let loaded = repo.load(id).unwrap();
        let replayed = repo.replay(id).unwrap();
        prop_assert_eq!((loaded.state, loaded.version), (replayed.state, replayed.version));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Whatever the snapshot policy, reopens, snapshot-version changes and
    /// damaged snapshots, a load equals a full replay and the model.
    #[test]
    fn a_load_with_snapshots_equals_a_full_replay(policy in policy(), ops in proptest::collection::vec(op(), 1..60)) {
        let dir = common::fast_tempdir();
        let mut store = open(dir.path());
        let mut v2 = false;
        let mut model: [Account; 3] = Default::default();
        for op in ops {
            match op {
                Op::Command(a, cmd) => {
                    let id = format!("{a}");
                    let expected = model[a as usize].handle(&cmd);
                    let got: Result<Executed, CommandError<AccountError>> = if v2 {
                        Repository::<AccountV2, Json>::new(Arc::clone(&store), Json).with_snapshots(policy).execute(&id, &cmd)
                    } else {
                        accounts(&store).with_snapshots(policy).execute(&id, &cmd)
                    };
                    match (expected, got) {
                        (Ok(events), Ok(done)) => {
                            prop_assert_eq!(done.events, events.len());
                            for e in &events {
                                model[a as usize].apply(e);
                            }
                        }
                        (Err(want), Err(CommandError::Rejected(got))) => prop_assert_eq!(want, got),
                        (want, got) => prop_assert!(false, "model {:?}, repository {:?}", want, got),
                    }
                }
                Op::Reopen => {
                    Arc::into_inner(store).unwrap().close().unwrap();
                    store = open(dir.path());
                }
                Op::BumpSnapshotVersion => v2 = true,
                Op::DamageNewestSnapshot(a) => {
                    let stream = format!("$snapshots-account-{a}");
                    if let Some(e) = store.read_stream(&stream, u64::MAX, Direction::Backward, 1).unwrap().pop() {
                        let mut data = e.data.clone();
                        let i = data.len() / 2;
                        data[i] ^= 0x5a;
                        store.append(&stream, ExpectedVersion::Any, vec![NewEvent::binary(SNAPSHOT_EVENT_TYPE, data)]).unwrap();
                    }
                }
                Op::Snapshot(a) => {
                    let id = format!("{a}");
                    if v2 {
                        Repository::<AccountV2, Json>::new(Arc::clone(&store), Json).snapshot(&id).unwrap();
                    } else {
                        accounts(&store).snapshot(&id).unwrap();
                    }
                }
            }
            for a in 0..3u8 {
                let id = format!("{a}");
                check_loads(&store, policy, v2, &id)?;
                let state = if v2 {
                    Repository::<AccountV2, Json>::new(Arc::clone(&store), Json).with_snapshots(policy).load(&id).unwrap().state.0
                } else {
                    accounts(&store).with_snapshots(policy).load(&id).unwrap().state
                };
                prop_assert_eq!(&state, &model[a as usize]);
            }
        }
    }
}
