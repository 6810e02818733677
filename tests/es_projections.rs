//! Projections, process managers, the command dispatcher and the outbox
//! relay (docs/EVENT-SOURCING.md): exactly-once application, retries and
//! parking, rebuild and rewind, lag, durable timeouts, and publishing to a
//! topic exactly once across a lost checkpoint.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use annal::consumer::Producers;
use annal::es::{
    CommandMeta, Dispatcher, Effects, Json, KvModel, OutboxRelay, POSITION_HEADER, ProcessManager, ProcessRunner,
    Projection, ProjectionRunner, ProjectionSource, Repository, Rows, Timeout,
};
use annal::events::{
    Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent, RecordedEvent, SubscriptionTarget,
};
use annal::{Durability, LogConfig, TopicConfig, TopicStore, TopicStoreConfig};
use common::bank::{Account, AccountCommand as Cmd};

fn cfg() -> EventStoreConfig {
    EventStoreConfig::default()
        .with_log_config(LogConfig::default().with_segment_bytes(1 << 20).with_durability(Durability::Always))
        .with_flush_entries(500)
}

fn open(dir: &std::path::Path) -> Arc<EventStore> {
    Arc::new(EventStore::open(dir, cfg()).unwrap())
}

/// Balances per account, from the account events.
#[derive(Default)]
struct Balances {
    /// Fail on events of this account this many times.
    fail: HashMap<String, u32>,
}

impl Projection for Balances {
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> Result<(), String> {
        if let Some(n) = self.fail.get_mut(&event.stream)
            && *n > 0
        {
            *n -= 1;
            return Err(format!("refusing {} once more", event.stream));
        }
        common::es_workload::Balances.handle(event, rows)
    }
}

fn balance(model: &KvModel<Balances>, account: &str) -> Option<i64> {
    model.get(format!("account-{account}").as_bytes()).map(|b| i64::from_le_bytes(b.try_into().unwrap()))
}

fn populate(store: &Arc<EventStore>, accounts: usize, rounds: usize) -> Repository<Account, Json> {
    let repo = Repository::new(Arc::clone(store), Json);
    for a in 0..accounts {
        repo.execute(&a.to_string(), &Cmd::Open).unwrap();
    }
    for r in 0..rounds {
        for a in 0..accounts {
            let cmd = if r % 3 == 2 { Cmd::Withdraw(1) } else { Cmd::Deposit((a + r) as i64 + 1) };
            repo.execute(&a.to_string(), &cmd).unwrap();
        }
    }
    repo
}

#[test]
fn a_projection_applies_every_event_once_across_reopens_rebuilds_and_full_rewrites() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = populate(&store, 20, 30);
    let model = KvModel::open(Arc::clone(&store), "balances", Balances::default()).unwrap().with_rewrite_after(100);
    let mut runner =
        ProjectionRunner::new(Arc::clone(&store), "balances", ProjectionSource::Category("account".into()), model)
            .unwrap()
            .with_batch_size(37);
    assert_eq!(runner.run_until_caught_up().unwrap(), 20 * 31);
    for a in 0..20 {
        assert_eq!(balance(runner.model(), &a.to_string()), Some(repo.load(&a.to_string()).unwrap().state.balance));
    }
    assert_eq!(runner.run_until_caught_up().unwrap(), 0, "nothing twice");
    let lag = runner.lag().unwrap();
    assert_eq!((lag.events, lag.time_ms), (0, 0));
    // More events: the lag counts them, and a reopened model goes on.
    for a in 0..5 {
        repo.execute(&a.to_string(), &Cmd::Deposit(1000)).unwrap();
    }
    let lag = runner.lag().unwrap();
    assert_eq!((lag.events, lag.counted_all), (5, true));
    drop(runner);
    let model = KvModel::open(Arc::clone(&store), "balances", Balances::default()).unwrap().with_rewrite_after(100);
    let mut runner =
        ProjectionRunner::new(Arc::clone(&store), "balances", ProjectionSource::Category("account".into()), model)
            .unwrap()
            .with_batch_size(7);
    assert_eq!(runner.run_until_caught_up().unwrap(), 5);
    let expected: Vec<_> = (0..20).map(|a| repo.load(&a.to_string()).unwrap().state.balance).collect();
    let seen = |runner: &ProjectionRunner<KvModel<Balances>>| -> Vec<i64> {
        (0..20).map(|a| balance(runner.model(), &a.to_string()).unwrap()).collect()
    };
    assert_eq!(seen(&runner), expected);
    // Many updates: the model writes its full state again; reopened, the same.
    for _ in 0..300 {
        repo.execute("0", &Cmd::Deposit(1)).unwrap();
    }
    for r in 0..40 {
        for a in 0..20 {
            repo.execute(&a.to_string(), &Cmd::Deposit(r + 1)).unwrap();
        }
    }
    runner.run_until_caught_up().unwrap();
    let expected: Vec<_> = (0..20).map(|a| repo.load(&a.to_string()).unwrap().state.balance).collect();
    assert_eq!(seen(&runner), expected);
    drop(runner);
    // The full state was written again, and what came before it hidden.
    let meta = store.stream_metadata("$projection-balances").unwrap();
    assert!(meta.truncate_before().is_some_and(|v| v > 0), "{meta:?}");
    let model = KvModel::open(Arc::clone(&store), "balances", Balances::default()).unwrap();
    let mut runner =
        ProjectionRunner::new(Arc::clone(&store), "balances", ProjectionSource::Category("account".into()), model)
            .unwrap();
    assert_eq!(seen(&runner), expected);
    assert_eq!(runner.run_until_caught_up().unwrap(), 0);
    // Rebuild from nothing: the same rows.
    let total = runner.rebuild().unwrap();
    assert_eq!(total, 20 * 31 + 5 + 300 + 800);
    assert_eq!(seen(&runner), expected);
    // A reader in another thread sees the rows.
    let reader = runner.model().reader();
    assert_eq!(std::thread::spawn(move || reader.len()).join().unwrap(), 20);
}

#[test]
fn a_failing_event_is_retried_then_parked_and_the_others_go_on() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = populate(&store, 4, 3);
    // Account 1 fails twice (then succeeds on a retry); account 2 always.
    let mut balances = Balances::default();
    balances.fail.insert("account-1".into(), 2);
    balances.fail.insert("account-2".into(), u32::MAX);
    let model = KvModel::open(Arc::clone(&store), "flaky", balances).unwrap();
    let mut runner =
        ProjectionRunner::new(Arc::clone(&store), "flaky", ProjectionSource::Category("account".into()), model)
            .unwrap()
            .with_max_retries(3);
    let outcome = runner.run_batch(Duration::ZERO).unwrap();
    assert_eq!(outcome.parked, 4, "account 2's four events");
    assert_eq!(outcome.applied, 12);
    assert!(outcome.retries >= 2);
    for a in [0, 1, 3] {
        assert_eq!(balance(runner.model(), &a.to_string()), Some(repo.load(&a.to_string()).unwrap().state.balance));
    }
    assert_eq!(balance(runner.model(), "2"), None);
    let parked = runner.parked(100).unwrap();
    assert_eq!(parked.len(), 4);
    assert!(parked.iter().all(|p| p.attempts == 4 && p.reason.contains("account-2")));
    let positions: Vec<u64> =
        store.read_stream("account-2", 0, Direction::Forward, 10).unwrap().iter().map(|e| e.position).collect();
    assert_eq!(parked.iter().map(|p| p.position).collect::<Vec<_>>(), positions);
}

#[test]
fn rewinding_to_a_time_gives_the_events_from_there_again() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let repo = populate(&store, 2, 2);
    let model = KvModel::open(Arc::clone(&store), "b", Balances::default()).unwrap();
    let mut runner = ProjectionRunner::new(Arc::clone(&store), "b", ProjectionSource::All, model).unwrap();
    runner.run_until_caught_up().unwrap();
    let head = store.head_position();
    let t = store.read_all(head - 1, Direction::Forward, 1).unwrap()[0].timestamp_ms;
    while now_ms() <= t {
        std::thread::yield_now();
    }
    repo.execute("0", &Cmd::Deposit(5)).unwrap();
    let position = runner.rewind_to_time(t + 1).unwrap();
    let appended = store.read_stream("account-0", u64::MAX, Direction::Backward, 1).unwrap()[0].position;
    assert_eq!(position, appended);
    assert_eq!(runner.run_until_caught_up().unwrap(), 1);
    runner.rewind_to(0).unwrap();
    assert!(runner.run_until_caught_up().unwrap() >= 6, "every account event again");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A payment saga: an order placed asks for payment and waits 15 minutes;
/// paid, it confirms; not paid in time, it cancels.
#[derive(Default)]
struct Payments;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PaymentState {
    placed: bool,
    done: bool,
}

impl ProcessManager for Payments {
    type State = PaymentState;

    fn instance(&self, event: &RecordedEvent) -> Option<String> {
        event.stream.strip_prefix("order-").map(str::to_owned)
    }

    fn react(&mut self, state: &mut PaymentState, event: &RecordedEvent, effects: &mut Effects) -> Result<(), String> {
        let order = event.stream.strip_prefix("order-").unwrap();
        match event.event_type.as_str() {
            "Placed" if !state.placed => {
                state.placed = true;
                effects
                    .emit("$commands-payments", NewEvent::json("RequestPayment", format!(r#"{{"order":"{order}"}}"#)));
                effects.schedule("payment", Duration::from_secs(15 * 60), order.as_bytes().to_vec());
            }
            "Poison" => return Err("a poisoned order".into()),
            "Paid" if !state.done => {
                state.done = true;
                effects.cancel("payment");
                effects.emit(format!("order-{order}"), NewEvent::json("Confirmed", "{}"));
            }
            _ => {}
        }
        Ok(())
    }

    fn timeout(&mut self, state: &mut PaymentState, timeout: &Timeout, effects: &mut Effects) -> Result<(), String> {
        if !state.done {
            state.done = true;
            effects.emit(format!("order-{}", timeout.instance), NewEvent::json("Cancelled", "{}"));
        }
        Ok(())
    }
}

#[test]
fn a_process_manager_reacts_once_and_its_timeouts_survive_a_restart() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    for o in 0..3 {
        store.append(&format!("order-{o}"), ExpectedVersion::NoStream, vec![NewEvent::json("Placed", "{}")]).unwrap();
    }
    store.append("order-1", ExpectedVersion::Exact(0), vec![NewEvent::json("Paid", "{}")]).unwrap();
    store.append("order-9", ExpectedVersion::NoStream, vec![NewEvent::json("Poison", "{}")]).unwrap();
    let t0 = now_ms();
    let open_runner = |store: &Arc<EventStore>| {
        ProcessRunner::open(Arc::clone(store), "payments", SubscriptionTarget::Category("order".into()), Payments, Json)
            .unwrap()
    };
    let mut runner = open_runner(&store);
    let o = runner.run_batch_at(t0, Duration::ZERO).unwrap();
    assert_eq!((o.reacted, o.fired, o.parked), (4, 0, 1));
    let parked = runner.parked(10).unwrap();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].reason.contains("poisoned") && parked[0].attempts == 4, "{parked:?}");
    // Its own emitted `Confirmed` is an event of the category too.
    assert_eq!(runner.run_until_caught_up_at(t0).unwrap(), 1);
    assert_eq!(runner.run_until_caught_up_at(t0).unwrap(), 0);
    let types = |o: u32| -> Vec<String> {
        store
            .read_stream(&format!("order-{o}"), 0, Direction::Forward, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    };
    assert_eq!(types(1), ["Placed", "Paid", "Confirmed"]);
    assert_eq!(store.read_stream("$commands-payments", 0, Direction::Forward, 10).unwrap().len(), 3);
    let pending = runner.pending_timeouts();
    assert_eq!(pending.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["0", "2"]);
    // Restarted: the timeouts are still there, and fire when due, once.
    drop(runner);
    let mut runner = open_runner(&store);
    assert_eq!(runner.pending_timeouts().len(), 2);
    let later = t0 + 15 * 60 * 1000 + 1;
    assert_eq!(runner.run_batch_at(t0 + 1000, Duration::ZERO).unwrap().fired, 0);
    let o = runner.run_batch_at(later, Duration::ZERO).unwrap();
    assert_eq!(o.fired, 2);
    runner.run_batch_at(later, Duration::ZERO).unwrap();
    drop(runner);
    let mut runner = open_runner(&store);
    assert!(runner.pending_timeouts().is_empty());
    assert_eq!(runner.run_batch_at(later + 1_000_000, Duration::ZERO).unwrap().fired, 0);
    assert_eq!(types(0), ["Placed", "Cancelled"]);
    assert_eq!(types(2), ["Placed", "Cancelled"]);
    assert_eq!(types(1), ["Placed", "Paid", "Confirmed"]);
}

#[test]
fn a_dispatcher_carries_out_each_command_once_even_when_dispatched_again() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    let accounts = Repository::<Account, Json>::new(Arc::clone(&store), Json);
    accounts.execute("a", &Cmd::Open).unwrap();
    for _ in 0..10 {
        store
            .append("$commands-bank", ExpectedVersion::Any, vec![NewEvent::json("Deposit", r#"{"Deposit":3}"#)])
            .unwrap();
    }
    let handler = |e: &RecordedEvent| -> Result<(), String> {
        let cmd: Cmd = serde_json::from_slice(&e.data).map_err(|e| e.to_string())?;
        let meta = CommandMeta::caused_by(e.id, None).with_command_id(e.id);
        accounts.execute_with("a", &cmd, &meta).map(|_| ()).map_err(|e| e.to_string())
    };
    let dispatcher = Dispatcher::open(Arc::clone(&store), "bank", handler).unwrap();
    let mut runner = ProjectionRunner::new(
        Arc::clone(&store),
        "bank-dispatch",
        ProjectionSource::Stream("$commands-bank".into()),
        dispatcher,
    )
    .unwrap();
    assert_eq!(runner.run_until_caught_up().unwrap(), 10);
    assert_eq!(accounts.load("a").unwrap().state.balance, 30);
    // Its checkpoint lost (a crash before it was stored): dispatched again,
    // carried out never again.
    runner.rewind_to(0).unwrap();
    assert_eq!(runner.run_until_caught_up().unwrap(), 10);
    assert_eq!(accounts.load("a").unwrap().state.balance, 30);
}

#[test]
fn the_outbox_relay_publishes_each_event_once_across_a_lost_checkpoint() {
    let dir = common::fast_tempdir();
    let store = open(&dir.path().join("events"));
    let topics = Arc::new(TopicStore::open(dir.path().join("topics"), TopicStoreConfig::default()).unwrap());
    topics.create_topic("accounts", TopicConfig::default().with_partitions(3)).unwrap();
    let producers = Arc::new(Producers::new(Arc::clone(&topics)));
    populate(&store, 6, 4);
    let open_relay = |epoch| {
        OutboxRelay::open(
            Arc::clone(&store),
            Arc::clone(&topics),
            &producers,
            "accounts",
            SubscriptionTarget::Category("account".into()),
            "accounts",
            (7, epoch),
        )
        .unwrap()
    };
    let mut relay = open_relay(0);
    assert_eq!(relay.run_until_caught_up().unwrap(), 30);
    let stored_checkpoint = relay.checkpoint();
    // More events, relayed, and then the relay's checkpoint lost.
    populate_more(&store);
    relay.run_until_caught_up().unwrap();
    store
        .append(
            "$outbox.checkpoint-accounts",
            ExpectedVersion::Any,
            vec![NewEvent::binary("$checkpoint", stored_checkpoint.to_le_bytes().to_vec())],
        )
        .unwrap();
    drop(relay);
    let mut relay = open_relay(1);
    assert_eq!(relay.checkpoint(), stored_checkpoint);
    let o = relay.run_batch(Duration::ZERO).unwrap();
    assert_eq!((o.published, o.skipped), (0, 6));
    // Every account event exactly once in the topic, each stream in order.
    let topic = topics.topic("accounts").unwrap();
    let mut positions = Vec::new();
    for p in 0..3 {
        let log = topic.partition(p).unwrap();
        let mut reader = log.read_from(0).unwrap();
        while let Some(r) = reader.next_record().unwrap() {
            let h = r.headers().find(|h| h.name == POSITION_HEADER).unwrap();
            positions.push(u64::from_le_bytes(h.value.try_into().unwrap()));
        }
    }
    positions.sort_unstable();
    let mut expected: Vec<u64> =
        store.read_category("account", 0, Direction::Forward, 1000).unwrap().iter().map(|e| e.position).collect();
    expected.sort_unstable();
    assert_eq!(positions, expected);
}

fn populate_more(store: &Arc<EventStore>) {
    let repo = Repository::<Account, Json>::new(Arc::clone(store), Json);
    for a in 0..6 {
        repo.execute(&a.to_string(), &Cmd::Deposit(1)).unwrap();
    }
}

#[test]
fn a_projection_reads_old_events_through_the_upcasters_and_parks_a_split_event_whole() {
    let dir = common::fast_tempdir();
    let store = open(dir.path());
    store
        .append(
            "account-old",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::json("Opened", r#""Opened""#),
                NewEvent::json("Deposited", r#"{"Deposited":{"amount":5}}"#),
                // Version 1 of a transfer: a deposit and a fee in one event.
                NewEvent::json("Transferred", r#"{"Transferred":{"amount":10,"fee":1}}"#),
                NewEvent::json("Transferred", r#"{"Transferred":{"amount":20,"fee":-1}}"#),
            ],
        )
        .unwrap();
    let upcasters = common::bank::deposit_upcasters().register_json("Transferred", 1, "split-transfer", |v| {
        let deposit = serde_json::json!({"amount": v["amount"], "currency": "USD"});
        let fee = serde_json::json!({"amount": v["fee"]});
        Ok(vec![("Deposited".into(), deposit), ("Withdrawn".into(), fee)])
    });
    let upcasters = Arc::new(upcasters);
    // A negative fee is refused by this projection: its whole transfer is parked.
    struct NoNegative(Balances);
    impl Projection for NoNegative {
        fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> Result<(), String> {
            if event.event_type == "Withdrawn" && event.data.windows(3).any(|w| w == b":-1") {
                return Err("a negative fee".into());
            }
            self.0.handle(event, rows)
        }
    }
    let model = KvModel::open(Arc::clone(&store), "upcast", NoNegative(Balances::default())).unwrap();
    let mut runner =
        ProjectionRunner::new(Arc::clone(&store), "upcast", ProjectionSource::Category("account".into()), model)
            .unwrap()
            .with_upcasters(Arc::clone(&upcasters))
            .with_max_retries(1);
    let o = runner.run_batch(Duration::ZERO).unwrap();
    assert_eq!((o.applied, o.parked), (4, 1), "opened, deposit, the first transfer's two halves; the second parked");
    let balance = runner.model().get(b"account-old").map(|b| i64::from_le_bytes(b.try_into().unwrap()));
    assert_eq!(balance, Some(5 + 10 - 1), "nothing of the parked transfer applied");
    assert_eq!(runner.parked(10).unwrap().len(), 1);
    // The upcast events carry their new schema version.
    let stored = store.read_stream("account-old", 1, Direction::Forward, 1).unwrap().remove(0);
    let now = upcasters.upcast_recorded(stored.clone()).unwrap();
    assert_eq!(annal::es::EventMeta::parse(&now[0].metadata).schema_version, 2);
    assert_eq!((now[0].position, now[0].id), (stored.position, stored.id));
    assert_eq!(upcasters.upcast_recorded(now[0].clone()).unwrap(), now, "not upcast twice");
}
