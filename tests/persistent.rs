//! Persistent subscriptions on the event store (docs/EVENTS.md,
//! "Persistent subscriptions"): competing members under round robin and
//! pinned strategies, retries, parking and replay, message timeouts on an
//! injected clock, checkpoints across a close and a crash, backpressure,
//! durable-only delivery, the group's administration, and damaged state.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annal::consumer::persistent::{
    Delivery, Error, GroupSettings, GroupTarget, Member, NackAction, ParkReason, PersistentSubscriptions, Strategy,
};
use annal::events::{DeleteMode, EventStore, EventStoreConfig, ExpectedVersion, NewEvent, StartFrom, StreamMetadata};
use annal::{Durability, LogConfig};

fn config(durability: Durability) -> EventStoreConfig {
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(1 << 20).with_durability(durability))
}

fn open(dir: &std::path::Path, durability: Durability) -> Arc<EventStore> {
    Arc::new(EventStore::open(dir, config(durability)).unwrap())
}

/// Closes a store once every handle and member is gone.
fn close(store: Arc<EventStore>) {
    Arc::try_unwrap(store).expect("no handle or member holds the store").close().unwrap();
}

fn ev(n: u64) -> NewEvent {
    NewEvent::json("Happened", format!("{{\"n\":{n}}}"))
}

fn append(store: &EventStore, stream: &str, n: u64) -> u64 {
    store.append(stream, ExpectedVersion::Any, vec![ev(n)]).unwrap().position
}

/// The next delivery, which must come within 5 s.
fn next(member: &Member) -> Delivery {
    member.next(Duration::from_secs(5)).unwrap().expect("a delivery")
}

/// Whether the member has nothing now.
fn nothing(member: &Member) -> bool {
    member.next(Duration::ZERO).unwrap().is_none()
}

fn at(d: &Delivery) -> (String, u64) {
    (d.event().stream.clone(), d.event().version)
}

#[test]
fn round_robin_members_share_the_events_each_acknowledged_exactly_once() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = GroupSettings::new(GroupTarget::Category("job".into())).with_buffer_size(32);
    subs.create("workers", settings).unwrap();
    const STREAMS: u64 = 50;
    const EVENTS: u64 = 3000;
    // Half before the members start, half while they run; and events of
    // another category, which the group never sees.
    for i in 0..EVENTS / 2 {
        append(&store, &format!("job-{}", i % STREAMS), i);
    }
    let acked: Mutex<Vec<(usize, u64)>> = Mutex::new(Vec::new());
    let (done, started) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for m in 0..4 {
            let (subs, acked, done, started) = (&subs, &acked, &done, &started);
            scope.spawn(move || {
                let member = subs.connect("workers", &format!("worker-{m}")).unwrap();
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut first = true;
                while done.load(Ordering::SeqCst) < EVENTS as usize {
                    assert!(Instant::now() < deadline, "{} of {EVENTS} acknowledged", done.load(Ordering::SeqCst));
                    let Some(d) = member.next(Duration::from_millis(100)).unwrap() else { continue };
                    assert_eq!(d.retry_count(), 0);
                    if std::mem::take(&mut first) {
                        // Holding its first delivery, a member waits until
                        // every member has one: the others are given events
                        // meanwhile, so that all four share them whatever
                        // the scheduling.
                        started.fetch_add(1, Ordering::SeqCst);
                        common::await_workers(started, 4);
                    }
                    acked.lock().unwrap().push((m, d.event().position));
                    member.ack(&d).unwrap();
                    done.fetch_add(1, Ordering::SeqCst);
                }
                member.close().unwrap();
            });
        }
        for i in EVENTS / 2..EVENTS {
            append(&store, &format!("job-{}", i % STREAMS), i);
            append(&store, "other-1", i);
        }
    });
    let acked = acked.into_inner().unwrap();
    let positions: BTreeSet<u64> = acked.iter().map(|&(_, p)| p).collect();
    assert_eq!(acked.len(), EVENTS as usize, "no event acknowledged twice");
    let all: BTreeSet<u64> = store
        .read_category("job", 0, annal::events::Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, all, "every event of the category, and only those");
    let per_member: BTreeMap<usize, usize> = acked.iter().fold(BTreeMap::new(), |mut m, &(w, _)| {
        *m.entry(w).or_default() += 1;
        m
    });
    assert_eq!(per_member.len(), 4, "the members shared the events: {per_member:?}");
    // Everything done: the checkpoint is past every event of the category.
    let info = subs.info("workers").unwrap();
    assert!(info.checkpoint > *all.last().unwrap(), "{info:?}");
    assert_eq!((info.parked, info.in_flight, info.buffered), (0, 0, 0));
    drop(subs);
    close(store);
}

/// One step of a pinned run, in the order the members took them (a
/// resolution is logged before the call that makes it, a delivery after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Delivered,
    Retried,
    Acked,
    Parked,
}

/// A step of the pinned test's log: what, of which stream and version, at
/// which position, by which member.
type Logged = (Step, String, u64, u64, String);

/// What the members of the pinned test do with a delivery.
fn pinned_policy(position: u64, retries: u32, max_retries: u32) -> (Step, NackAction) {
    if position % 13 == 5 {
        (Step::Parked, NackAction::Park)
    } else if position % 17 == 3 {
        // Fails every time: parked once its retries are spent.
        let step = if retries == max_retries { Step::Parked } else { Step::Retried };
        (step, NackAction::Retry)
    } else if position % 5 == 1 && retries == 0 {
        (Step::Retried, NackAction::Retry)
    } else {
        (Step::Acked, NackAction::Skip)
    }
}

#[test]
fn pinned_members_keep_each_streams_order_across_retries_parking_and_membership_changes() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    const MAX_RETRIES: u32 = 2;
    let settings = GroupSettings::new(GroupTarget::Category("acct".into()))
        .with_strategy(Strategy::Pinned)
        .with_max_retries(MAX_RETRIES)
        .with_buffer_size(64)
        .with_checkpoint_interval(10);
    subs.create("ledger", settings).unwrap();
    const STREAMS: u64 = 20;
    const PER_STREAM: u64 = 15;
    const TOTAL: usize = (STREAMS * PER_STREAM) as usize;
    for i in 0..TOTAL as u64 / 2 {
        append(&store, &format!("acct-{}", i % STREAMS), i);
    }
    let log: Mutex<Vec<Logged>> = Mutex::new(Vec::new());
    let resolved = AtomicUsize::new(0);
    let record = |step, d: &Delivery, member: &str| {
        let (stream, version) = at(d);
        log.lock().unwrap().push((step, stream, version, d.event().position, member.to_owned()));
    };
    std::thread::scope(|scope| {
        for m in 0..3 {
            let (subs, resolved, record) = (&subs, &resolved, &record);
            scope.spawn(move || {
                let mut name = format!("member-{m}");
                let mut member = subs.connect("ledger", &name).unwrap();
                let mut handled = 0;
                let deadline = Instant::now() + Duration::from_secs(120);
                while resolved.load(Ordering::SeqCst) < TOTAL {
                    assert!(Instant::now() < deadline, "{} of {TOTAL} done with", resolved.load(Ordering::SeqCst));
                    // Member 0 leaves after a while and comes back under
                    // another name: streams are pinned again.
                    if m == 0 && handled == 40 {
                        member.close().unwrap();
                        name = "member-0-again".into();
                        member = subs.connect("ledger", &name).unwrap();
                    }
                    let Some(d) = member.next(Duration::from_millis(100)).unwrap() else { continue };
                    record(Step::Delivered, &d, &name);
                    let (step, action) = pinned_policy(d.event().position, d.retry_count(), MAX_RETRIES);
                    record(step, &d, &name);
                    if matches!(step, Step::Acked | Step::Parked) {
                        resolved.fetch_add(1, Ordering::SeqCst);
                    }
                    match step {
                        Step::Acked => member.ack(&d).unwrap(),
                        _ => member.nack(&d, action, "refused by the test").unwrap(),
                    }
                    handled += 1;
                }
                member.close().unwrap();
            });
        }
        for i in TOTAL as u64 / 2..TOTAL as u64 {
            append(&store, &format!("acct-{}", i % STREAMS), i);
        }
    });
    // Replay the log per stream: one event out at a time, in version order.
    let log = log.into_inner().unwrap();
    let mut streams: HashMap<String, (u64, Option<u64>)> = HashMap::new();
    let (mut acked, mut parked) = (BTreeSet::new(), BTreeSet::new());
    for (step, stream, version, position, member) in &log {
        let (next, out) = streams.entry(stream.clone()).or_insert((0, None));
        match step {
            Step::Delivered => {
                assert_eq!(*out, None, "{stream} v{version} delivered to {member} while v{out:?} is out");
                assert_eq!(*version, *next, "{stream}: v{version} delivered to {member} before v{next} was done");
                *out = Some(*version);
            }
            Step::Retried => {
                assert_eq!(*out, Some(*version));
                *out = None;
            }
            Step::Acked | Step::Parked => {
                assert_eq!(*out, Some(*version));
                *out = None;
                *next = version + 1;
                let set = if *step == Step::Acked { &mut acked } else { &mut parked };
                assert!(set.insert(*position), "{stream} v{version} done with twice");
            }
        }
    }
    assert!(streams.values().all(|&(next, out)| next == PER_STREAM && out.is_none()), "{streams:?}");
    assert_eq!(acked.len() + parked.len(), TOTAL);
    assert!(acked.is_disjoint(&parked));
    // The parked list holds exactly the parked events, each with its reason.
    let listed = subs.parked_events("ledger", usize::MAX).unwrap();
    assert_eq!(listed.iter().map(|p| p.position).collect::<BTreeSet<_>>(), parked);
    for p in &listed {
        let (reason, retries) = match p.position % 13 == 5 {
            true => (ParkReason::Nacked, 0),
            false => (ParkReason::RetriesExhausted, MAX_RETRIES + 1),
        };
        assert_eq!((p.reason, p.retries), (reason, retries), "{p:?}");
        assert_eq!(p.event.as_ref().map(|e| e.position), Some(p.position));
    }
    let info = subs.info("ledger").unwrap();
    assert_eq!(info.parked, parked.len() as u64);
    assert!(info.members.is_empty());
    drop(subs);
    close(store);
}

#[test]
fn a_failed_event_is_retried_then_parked_and_parked_events_replay() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = GroupSettings::new(GroupTarget::Stream("order-1".into())).with_max_retries(2);
    subs.create("g", settings).unwrap();
    let positions: Vec<u64> = (0..4).map(|i| append(&store, "order-1", i)).collect();
    let member = subs.connect("g", "m").unwrap();
    // Event 0 fails three times: delivered with retry counts 0, 1, 2, then parked.
    for retries in 0..3 {
        let d = next(&member);
        assert_eq!((d.event().position, d.retry_count(), d.replayed()), (positions[0], retries, false));
        member.nack(&d, NackAction::Retry, &format!("failure {retries}")).unwrap();
    }
    // Event 1 is parked at once; event 2 skipped; event 3 acknowledged.
    let d = next(&member);
    assert_eq!(d.event().position, positions[1]);
    member.nack(&d, NackAction::Park, "no such customer").unwrap();
    let d = next(&member);
    member.nack(&d, NackAction::Skip, "not for us").unwrap();
    let d = next(&member);
    assert_eq!(d.event().position, positions[3]);
    member.ack(&d).unwrap();
    assert!(nothing(&member));
    // A late acknowledgement of a delivery already done with is refused.
    assert!(matches!(member.ack(&d), Err(Error::StaleDelivery { position, .. }) if position == positions[3]));

    let parked = subs.parked_events("g", 10).unwrap();
    let seen: Vec<_> = parked.iter().map(|p| (p.position, p.reason, p.retries, p.message.as_str())).collect();
    assert_eq!(
        seen,
        [
            (positions[0], ParkReason::RetriesExhausted, 3, "failure 2"),
            (positions[1], ParkReason::Nacked, 0, "no such customer"),
        ]
    );
    assert_eq!(subs.info("g").unwrap().parked, 2);

    // Replay: both come back, in the order they were parked, as fresh deliveries.
    assert_eq!(subs.replay_parked("g").unwrap(), 2);
    let first = next(&member);
    assert_eq!((first.event().position, first.retry_count(), first.replayed()), (positions[0], 0, true));
    member.ack(&first).unwrap();
    let second = next(&member);
    assert_eq!((second.event().position, second.replayed()), (positions[1], true));
    // It fails again: parked again, at the end, not replayed in this replay.
    member.nack(&second, NackAction::Park, "still no customer").unwrap();
    assert!(nothing(&member));
    let parked = subs.parked_events("g", 10).unwrap();
    assert_eq!(
        parked.iter().map(|p| (p.position, p.message.as_str())).collect::<Vec<_>>(),
        [(positions[1], "still no customer")]
    );
    assert_eq!(subs.info("g").unwrap().parked, 1);
    member.close().unwrap();

    // A replay asked while no member is connected goes on when one connects,
    // also after a reopen; once done, the parked stream is truncated.
    assert_eq!(subs.replay_parked("g").unwrap(), 1);
    drop(subs);
    close(store);
    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    assert_eq!(subs.info("g").unwrap().parked, 1);
    let member = subs.connect("g", "m").unwrap();
    let d = next(&member);
    assert_eq!((d.event().position, d.replayed()), (positions[1], true));
    member.ack(&d).unwrap();
    assert!(nothing(&member));
    member.close().unwrap();
    assert_eq!(subs.info("g").unwrap().parked, 0);
    assert!(subs.parked_events("g", 10).unwrap().is_empty());
    let parked_stream = format!("{}g", annal::consumer::persistent::PARKED_STREAM_PREFIX);
    assert_eq!(
        store.stream_metadata(&parked_stream).unwrap().truncate_before(),
        Some(3),
        "three parked events done with"
    );
    drop(subs);
    close(store);
}

#[test]
fn deliveries_not_acknowledged_in_time_are_retried_then_parked_on_an_injected_clock() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = GroupSettings::new(GroupTarget::Stream("s-1".into()))
        .with_strategy(Strategy::Pinned)
        .with_max_retries(1)
        .with_message_timeout(Duration::from_secs(30));
    subs.create("g", settings).unwrap();
    let p0 = append(&store, "s-1", 0);
    let p1 = append(&store, "s-1", 1);
    let member = subs.connect("g", "m").unwrap();
    let t0 = Instant::now();
    let first = member.next_at(t0, Duration::ZERO).unwrap().unwrap();
    assert_eq!((first.event().position, first.retry_count()), (p0, 0));
    // Within the timeout: nothing (the stream's next event waits for it).
    assert!(member.next_at(t0 + Duration::from_secs(29), Duration::ZERO).unwrap().is_none());
    // Past it: the event comes back, counted as a retry; the old delivery is stale.
    let again = member.next_at(t0 + Duration::from_secs(31), Duration::ZERO).unwrap().unwrap();
    assert_eq!((again.event().position, again.retry_count()), (p0, 1));
    assert!(matches!(member.ack(&first), Err(Error::StaleDelivery { .. })));
    // Past the second timeout its retries are spent: parked, and the stream goes on.
    let later = member.next_at(t0 + Duration::from_secs(62), Duration::ZERO).unwrap().unwrap();
    assert_eq!((later.event().position, later.retry_count()), (p1, 0));
    assert!(matches!(member.ack(&again), Err(Error::StaleDelivery { .. })));
    member.ack(&later).unwrap();
    let parked = subs.parked_events("g", 10).unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].position, parked[0].reason, parked[0].retries), (p0, ParkReason::RetriesExhausted, 2));
    assert_eq!(parked[0].message, "not acknowledged within 30000 ms");
    member.close().unwrap();
    drop(subs);
    close(store);
}

#[test]
fn a_waiting_member_is_woken_by_new_events_and_by_what_others_do() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = GroupSettings::new(GroupTarget::Category("s".into())).with_strategy(Strategy::Pinned);
    subs.create("g", settings).unwrap();
    let member = subs.connect("g", "m").unwrap();
    let long = Duration::from_secs(60);
    // Until the member's thread waits in `next`.
    let until_waiting = || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while subs.info("g").unwrap().members[0].waiting == 0 {
            assert!(Instant::now() < deadline, "the member never waited");
            std::thread::yield_now();
        }
    };
    let first = std::thread::scope(|scope| {
        // Waiting for the store: an append wakes it.
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            (member.next(long).unwrap(), started.elapsed())
        });
        until_waiting();
        append(&store, "s-1", 0);
        let (got, took) = waiting.join().unwrap();
        assert!(took < long / 2, "woken by the append, not by its timeout ({took:?})");
        got.expect("the event appended")
    });
    assert_eq!(at(&first), ("s-1".to_owned(), 0));
    // Waiting for its stream's previous event: the acknowledgement from
    // another thread wakes it (it waits in the store meanwhile, with nothing
    // new there).
    append(&store, "s-1", 1);
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            let started = Instant::now();
            (member.next(long).unwrap().map(|d| at(&d)), started.elapsed())
        });
        until_waiting();
        member.ack(&first).unwrap();
        let (got, took) = waiting.join().unwrap();
        assert_eq!(got, Some(("s-1".to_owned(), 1)));
        assert!(took < long / 2, "woken by the acknowledgement, not by its timeout ({took:?})");
    });
    drop(member);
    drop(subs);
    close(store);
}

#[test]
fn members_resume_from_the_checkpoint_after_a_close_and_after_a_crash() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let settings = GroupSettings::new(GroupTarget::All).with_checkpoint_interval(10);
    subs.create("g", settings).unwrap();
    let positions: Vec<u64> = (0..50).map(|i| append(&store, &format!("s-{}", i % 7), i)).collect();
    // 25 acknowledged, then a clean close: the checkpoint is written.
    let member = subs.connect("g", "m").unwrap();
    for &p in &positions[..25] {
        let d = next(&member);
        assert_eq!(d.event().position, p);
        member.ack(&d).unwrap();
    }
    // Two more delivered, not acknowledged: they go back.
    next(&member);
    next(&member);
    member.close().unwrap();
    assert_eq!(subs.info("g").unwrap().checkpoint, positions[25]);
    drop(subs);
    close(store);

    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    assert_eq!(subs.info("g").unwrap().checkpoint, positions[25]);
    let member = subs.connect("g", "m").unwrap();
    let mut before_crash = Vec::new();
    for _ in 25..40 {
        let d = next(&member);
        before_crash.push(d.event().position);
        member.ack(&d).unwrap();
    }
    assert_eq!(before_crash, positions[25..40]);
    // A crash: no checkpoint on the way out. The last one written was after
    // the 10th acknowledgement since the reopen.
    member.abandon();
    drop(subs);
    Arc::try_unwrap(store).unwrap().abandon();

    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    assert_eq!(subs.info("g").unwrap().checkpoint, positions[35]);
    let member = subs.connect("g", "m").unwrap();
    let mut after = Vec::new();
    while let Some(d) = member.next(Duration::ZERO).unwrap() {
        after.push(d.event().position);
        member.ack(&d).unwrap();
    }
    // At least once: the five after the checkpoint again, then the rest; none lost.
    assert_eq!(after, positions[35..]);
    member.close().unwrap();
    let info = subs.info("g").unwrap();
    assert_eq!(info.lag, 0, "{info:?}");
    drop(subs);
    close(store);
}

#[test]
fn the_buffer_bounds_what_a_group_holds() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    subs.create("g", GroupSettings::new(GroupTarget::All).with_buffer_size(5)).unwrap();
    for i in 0..20 {
        append(&store, &format!("s-{i}"), i);
    }
    let member = subs.connect("g", "m").unwrap();
    let held: Vec<Delivery> = (0..5).map(|_| next(&member)).collect();
    assert!(nothing(&member), "the buffer is full of deliveries in flight");
    let info = subs.info("g").unwrap();
    assert_eq!((info.in_flight, info.buffered), (5, 0));
    assert_eq!(info.members[0].in_flight, 5);
    member.ack(&held[0]).unwrap();
    let d = next(&member);
    assert_eq!(d.event().position, held[4].event().position + 1);
    assert!(nothing(&member));
    drop(member);
    drop(subs);
    close(store);
}

#[test]
fn only_durable_events_are_delivered() {
    let dir = common::fast_tempdir();
    // A flusher that never comes within the test: only a sync makes events durable.
    let store = open(dir.path(), Durability::Interval(Duration::from_secs(3600)));
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    subs.create("g", GroupSettings::new(GroupTarget::All)).unwrap();
    store.log().sync().unwrap();
    let member = subs.connect("g", "m").unwrap();
    let p = append(&store, "s-1", 0);
    assert!(store.durable_position() <= p);
    assert!(nothing(&member), "not durable yet");
    store.log().sync().unwrap();
    assert_eq!(next(&member).event().position, p);
    drop(member);
    drop(subs);
    close(store);
}

#[test]
fn pinned_streams_move_only_when_nothing_of_theirs_is_out() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    subs.create("g", GroupSettings::new(GroupTarget::Category("s".into())).with_strategy(Strategy::Pinned)).unwrap();
    for v in 0..3 {
        for s in 0..8 {
            append(&store, &format!("s-{s}"), v);
        }
    }
    let a = subs.connect("g", "a").unwrap();
    // Alone, `a` gets the first event of each stream, and nothing more.
    let mut held: HashMap<String, Delivery> = HashMap::new();
    while let Some(d) = a.next(Duration::ZERO).unwrap() {
        assert_eq!(d.event().version, 0);
        assert!(held.insert(d.event().stream.clone(), d).is_none());
    }
    assert_eq!(held.len(), 8);
    // `b` joins: every stream has an event out on `a`, so `b` gets nothing.
    let b = subs.connect("g", "b").unwrap();
    assert!(nothing(&b));
    // `a` leaves holding them all: they go to `b`, retry counts unchanged.
    a.close().unwrap();
    let mut seen = BTreeMap::new();
    while let Some(d) = b.next(Duration::ZERO).unwrap() {
        assert_eq!(d.retry_count(), 0);
        seen.entry(d.event().stream.clone()).or_insert_with(Vec::new).push(d.event().version);
        b.ack(&d).unwrap();
    }
    assert_eq!(seen.len(), 8);
    assert!(seen.values().all(|v| *v == [0, 1, 2]), "{seen:?}");
    drop(b);
    drop(subs);
    close(store);
}

#[test]
fn groups_are_created_listed_updated_and_deleted() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Always);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    let pinned = GroupSettings::new(GroupTarget::Category("order".into())).with_strategy(Strategy::Pinned);
    subs.create("billing", pinned.clone()).unwrap();
    subs.create("audit", GroupSettings::new(GroupTarget::All).with_start(StartFrom::End)).unwrap();
    assert!(matches!(subs.create("billing", pinned.clone()), Err(Error::GroupExists { group }) if group == "billing"));
    let names: Vec<String> = subs.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["audit", "billing"]);
    assert_eq!(subs.info("billing").unwrap().settings, pinned);

    // Refusals.
    assert!(matches!(subs.connect("nope", "m"), Err(Error::UnknownGroup { group }) if group == "nope"));
    assert!(matches!(subs.info("nope"), Err(Error::UnknownGroup { .. })));
    assert!(matches!(subs.create("", pinned.clone()), Err(Error::InvalidName { what: "group", .. })));
    assert!(matches!(subs.connect("billing", "a\nb"), Err(Error::InvalidName { what: "member", .. })));
    for bad in [
        GroupSettings::new(GroupTarget::All).with_buffer_size(0),
        GroupSettings::new(GroupTarget::All).with_checkpoint_interval(0),
        GroupSettings::new(GroupTarget::All).with_message_timeout(Duration::ZERO),
        GroupSettings::new(GroupTarget::Category("order-1".into())),
        GroupSettings::new(GroupTarget::Stream("$persistent-billing".into())),
        GroupSettings::new(GroupTarget::Stream(String::new())),
    ] {
        assert!(matches!(subs.create("x", bad.clone()), Err(Error::InvalidSettings { .. })), "{bad:?}");
    }
    let other_target = GroupSettings::new(GroupTarget::Category("cart".into()));
    assert!(matches!(subs.update("billing", other_target), Err(Error::InvalidSettings { .. })));

    // An update reaches connected members at once: round robin lets two
    // events of one stream out together.
    store.append("order-1", ExpectedVersion::Any, vec![ev(0), ev(1)]).unwrap();
    let m = subs.connect("billing", "m").unwrap();
    let first = next(&m);
    assert!(nothing(&m), "pinned: one event of the stream at a time");
    subs.update("billing", pinned.clone().with_strategy(Strategy::RoundRobin).with_max_retries(1)).unwrap();
    let second = next(&m);
    assert_eq!((first.event().version, second.event().version), (0, 1));
    assert_eq!(subs.info("billing").unwrap().settings.max_retries(), 1);
    assert!(matches!(subs.delete("billing"), Err(Error::GroupInUse { members: 1, .. })));
    m.nack(&first, NackAction::Park, "poison").unwrap();
    m.close().unwrap();
    assert_eq!(subs.info("billing").unwrap().parked, 1);

    // Deleted, then created again under the same name: a new group, with
    // none of the old one's checkpoint or parked events.
    subs.delete("billing").unwrap();
    assert!(matches!(subs.info("billing"), Err(Error::UnknownGroup { .. })));
    assert!(matches!(subs.delete("billing"), Err(Error::UnknownGroup { .. })));
    assert_eq!(subs.list().unwrap().len(), 1);
    subs.create("billing", pinned).unwrap();
    let info = subs.info("billing").unwrap();
    assert_eq!((info.checkpoint, info.parked), (0, 0));
    let m = subs.connect("billing", "m").unwrap();
    assert_eq!(next(&m).event().version, 0, "from the beginning again");
    drop(m);
    // The group on `$all` from the end sees the events appended after its
    // creation only, and none of the store's own.
    let p = append(&store, "cart-1", 0);
    let audit = subs.connect("audit", "m").unwrap();
    let mut seen = Vec::new();
    while let Some(d) = audit.next(Duration::ZERO).unwrap() {
        seen.push((d.event().stream.clone(), d.event().version, d.event().position));
        audit.ack(&d).unwrap();
    }
    let order = store.read_stream("order-1", 0, annal::events::Direction::Forward, 10).unwrap();
    let expected: Vec<_> = order.iter().map(|e| ("order-1".to_owned(), e.version, e.position)).collect();
    assert_eq!(seen[..2], expected[..]);
    assert_eq!(seen[2..], [("cart-1".to_owned(), 0, p)]);
    drop(audit);
    drop(subs);
    close(store);
}

#[test]
fn all_groups_see_no_event_of_the_stores_own_streams() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    subs.create("g", GroupSettings::new(GroupTarget::All)).unwrap();
    let p0 = append(&store, "a-1", 0);
    store.set_stream_metadata("a-1", StreamMetadata::default().with_max_count(10)).unwrap();
    subs.create("other", GroupSettings::new(GroupTarget::All)).unwrap();
    let p1 = append(&store, "b-1", 0);
    let tombstone = store.delete_stream("b-1", ExpectedVersion::Any, DeleteMode::Hard).unwrap().position;
    let m = subs.connect("g", "m").unwrap();
    let mut got = Vec::new();
    while let Some(d) = m.next(Duration::ZERO).unwrap() {
        got.push((d.event().stream.clone(), d.event().position));
        m.nack(&d, NackAction::Park, "parked").unwrap();
    }
    // The tombstone is an event of the application's stream: delivered (the
    // events before it are hidden by the deletion, as in every read of `$all`).
    assert!(p1 < tombstone);
    assert_eq!(got, [("a-1".to_owned(), p0), ("b-1".to_owned(), tombstone)]);
    drop(m);
    drop(subs);
    close(store);
}

#[test]
fn damaged_state_events_are_typed_errors_naming_stream_and_position() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    subs.create("g", GroupSettings::new(GroupTarget::All)).unwrap();
    // Something else writes to the group's checkpoint stream.
    let stream = format!("{}g", annal::consumer::persistent::CHECKPOINT_STREAM_PREFIX);
    let bad = store
        .append(&stream, ExpectedVersion::Any, vec![NewEvent::binary("$persistent.checkpoint", vec![1, 2, 3])])
        .unwrap()
        .position;
    for result in [subs.info("g").map(|_| ()), subs.connect("g", "m").map(|_| ()), subs.list().map(|_| ())] {
        match result {
            Err(Error::DamagedState { stream: s, position, reason }) => {
                assert_eq!((s.as_str(), position), (stream.as_str(), bad));
                assert!(reason.contains("48"), "{reason}");
            }
            other => panic!("expected damaged state, got {other:?}"),
        }
    }
    // A settings event of another type.
    let settings_stream = "$persistent-h";
    let at = store.append(settings_stream, ExpectedVersion::Any, vec![ev(0)]).unwrap().position;
    match subs.info("h") {
        Err(e @ Error::DamagedState { .. }) => {
            let text = e.to_string();
            assert!(text.contains(settings_stream) && text.contains(&format!("position {at}")), "{text}");
        }
        other => panic!("expected damaged state, got {other:?}"),
    }
    drop(subs);
    close(store);
}

#[test]
fn a_second_handle_writing_the_same_group_gets_a_conflict() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let (one, two) =
        (PersistentSubscriptions::new(Arc::clone(&store)), PersistentSubscriptions::new(Arc::clone(&store)));
    one.create("g", GroupSettings::new(GroupTarget::All).with_checkpoint_interval(1)).unwrap();
    append(&store, "s-1", 0);
    append(&store, "s-2", 0);
    // Each handle loads the group for itself (a process must have one).
    let (a, b) = (one.connect("g", "a").unwrap(), two.connect("g", "b").unwrap());
    let (da, db) = (next(&a), next(&b));
    assert_eq!(da.event().position, db.event().position, "two copies of the group");
    a.ack(&da).unwrap();
    match b.ack(&db) {
        Err(e @ Error::Conflict { .. }) => assert!(e.to_string().contains("$persistent.checkpoint-g"), "{e}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    a.abandon();
    b.abandon();
    drop((one, two));
    close(store);
}

#[test]
fn a_replay_drops_a_parked_event_that_is_gone() {
    let dir = common::fast_tempdir();
    let store = open(dir.path(), Durability::Never);
    let subs = PersistentSubscriptions::new(Arc::clone(&store));
    subs.create("g", GroupSettings::new(GroupTarget::Category("x".into()))).unwrap();
    append(&store, "x-1", 0);
    let kept = append(&store, "x-2", 0);
    let member = subs.connect("g", "m").unwrap();
    for _ in 0..2 {
        let d = next(&member);
        member.nack(&d, NackAction::Park, "later").unwrap();
    }
    assert_eq!(subs.info("g").unwrap().parked, 2);
    // x-1 is deleted: its parked event has nothing to deliver any more.
    store.delete_stream("x-1", ExpectedVersion::Any, DeleteMode::Soft).unwrap();
    let listed = subs.parked_events("g", 10).unwrap();
    assert_eq!(listed.iter().map(|p| p.event.is_some()).collect::<Vec<_>>(), [false, true]);
    assert_eq!(subs.replay_parked("g").unwrap(), 2);
    let d = next(&member);
    assert_eq!((d.event().position, d.replayed()), (kept, true));
    member.ack(&d).unwrap();
    assert!(nothing(&member));
    assert_eq!(subs.info("g").unwrap().parked, 0);
    drop(member);
    drop(subs);
    close(store);
}
