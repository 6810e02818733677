//! An e-commerce order flow with `annal::es` (issue 15): a saga over three
//! aggregates, commands dispatched exactly once, a durable timeout, and a
//! run that can be killed at any moment and resumed.
//!
//! ```text
//! cargo run --release --example orders [-- --orders 2000 --dir DIR --seed S --skus 20]
//! ```
//!
//! For crash tests, `--pace-ms MS` sleeps that long after placing each order
//! (and between the pump's rounds), so that a run lasts long enough to be
//! killed in the middle, and `--kill-after-commands N` has the process
//! SIGKILL itself once its dispatcher has carried out N commands, before
//! the dispatcher stores its position: the next run dispatches those
//! commands again and finds them done (`commands_found_done`).
//!
//! The flow, for each order:
//!
//! ```text
//! order Placed ──► ReserveStock ──► inventory Reserved ──► RequestPayment ──► payment Requested
//!   payment Paid   ──► ShipOrder ──► order Shipped ──► ShipStock ──► inventory Shipped
//!   payment Failed ──► ReleaseStock + CancelOrder            (compensation)
//!   no answer in 15 minutes ──► ReleaseStock + CancelOrder   (a durable timeout)
//! ```
//!
//! The aggregates are `Order` (streams `order-{id}`), `Payment`
//! (`payment-{order id}`) and `Inventory` (`inventory-{sku}`). The process
//! manager `orders-saga` reacts to their events and emits commands as
//! events of the stream `$commands-orders`; a `Dispatcher` run by a
//! `ProjectionRunner` over that stream carries each out through the
//! aggregate's repository with the command event's id as the command id, so
//! a command dispatched again after a crash writes nothing. A simulated
//! payment gateway, another dispatcher over the payment streams, answers
//! each payment request (paid, declined, or never, by the order's id), and
//! a key-value projection keeps each order's status. The order events are
//! published to the topic `order-events` of a topic store beside the event
//! store by the outbox relay, with the idempotent producer, each once.
//!
//! Time is simulated: order `i` is placed at `START + i` seconds, and the
//! process manager runs at that time (`ProcessRunner::run_batch_at`), so
//! the 15 minutes of a timeout pass in a moment.
//!
//! Everything the run depends on is in the stores, `DIR/events` and
//! `DIR/topics` (the saga's states, checkpoints and timeouts, the
//! dispatchers' and the relay's checkpoints, the projection's rows, the
//! published records): with `--dir`, a run killed at any point (SIGKILL) and started
//! again goes on where it stopped and finishes the orders. Orders are
//! placed with command ids derived from their numbers, so none is placed
//! twice. At the end the run checks the whole store and prints a summary
//! line of JSON with `"consistent": true`, or exits with status 1.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annal::consumer::Producers;
use annal::es::{
    Aggregate, CommandError, CommandMeta, Dispatcher, DomainEvent, Effects, EventMeta, Executed, Json, KvModel,
    OutboxRelay, POSITION_HEADER, ProcessManager, ProcessRunner, Projection, ProjectionRunner, ProjectionSource,
    Repository, Rows, SnapshotPolicy, Timeout,
};
use annal::events::{
    Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent, RecordedEvent, SubscriptionTarget, Uuid,
};
use annal::{Durability, LogConfig, TopicConfig, TopicStore, TopicStoreConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The stream of the saga's commands.
const COMMANDS: &str = "$commands-orders";
/// The topic the outbox relay publishes the order events to.
const ORDER_TOPIC: &str = "order-events";
/// The simulated clock's start: 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;
/// Simulated time between two orders.
const ORDER_EVERY_MS: i64 = 1_000;
/// How long the saga waits for a payment.
const PAYMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// What a cancelled order says when its payment never came.
const TIMED_OUT: &str = "payment not received in 15 minutes";
/// Orders placed between two runs of the pump.
const ORDERS_PER_PUMP: usize = 50;
/// The namespace of the example's derived ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7273_2d65_7861_6d70_6c65_0015);

// ---------------------------------------------------------------------------
// The aggregates.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum OrderStatus {
    #[default]
    New,
    Placed,
    Shipped,
    Cancelled,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Order {
    status: OrderStatus,
    sku: String,
    qty: u32,
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum OrderCommand {
    Place { sku: String, qty: u32, amount: u64 },
    Ship,
    Cancel { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum OrderEvent {
    Placed { sku: String, qty: u32, amount: u64 },
    Shipped,
    Cancelled { reason: String },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            OrderEvent::Placed { .. } => "Placed",
            OrderEvent::Shipped => "Shipped",
            OrderEvent::Cancelled { .. } => "Cancelled",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("order is {0:?}: {1}")]
struct OrderError(OrderStatus, &'static str);

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn handle(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match (self.status, command) {
            (OrderStatus::New, OrderCommand::Place { sku, qty, amount }) => {
                Ok(vec![OrderEvent::Placed { sku: sku.clone(), qty: *qty, amount: *amount }])
            }
            (_, OrderCommand::Place { .. }) => Err(OrderError(self.status, "placed already")),
            (OrderStatus::Placed, OrderCommand::Ship) => Ok(vec![OrderEvent::Shipped]),
            (OrderStatus::Placed, OrderCommand::Cancel { reason }) => {
                Ok(vec![OrderEvent::Cancelled { reason: reason.clone() }])
            }
            (_, OrderCommand::Ship | OrderCommand::Cancel { .. }) => {
                Err(OrderError(self.status, "only a placed order is shipped or cancelled"))
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { sku, qty, amount } => {
                *self = Order { status: OrderStatus::Placed, sku: sku.clone(), qty: *qty, amount: *amount };
            }
            OrderEvent::Shipped => self.status = OrderStatus::Shipped,
            OrderEvent::Cancelled { .. } => self.status = OrderStatus::Cancelled,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum PaymentStatus {
    #[default]
    None,
    Requested,
    Paid,
    Failed,
}

/// The payment of an order (its id is the order's).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Payment {
    status: PaymentStatus,
    amount: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum PaymentCommand {
    Request { amount: u64 },
    Confirm,
    Decline { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum PaymentEvent {
    Requested { amount: u64 },
    Paid { amount: u64 },
    Failed { reason: String },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            PaymentEvent::Requested { .. } => "Requested",
            PaymentEvent::Paid { .. } => "Paid",
            PaymentEvent::Failed { .. } => "Failed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("payment is {0:?}: {1}")]
struct PaymentError(PaymentStatus, &'static str);

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn handle(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match (self.status, command) {
            (PaymentStatus::None, PaymentCommand::Request { amount }) => {
                Ok(vec![PaymentEvent::Requested { amount: *amount }])
            }
            (_, PaymentCommand::Request { .. }) => Err(PaymentError(self.status, "requested already")),
            (PaymentStatus::Requested, PaymentCommand::Confirm) => Ok(vec![PaymentEvent::Paid { amount: self.amount }]),
            (PaymentStatus::Requested, PaymentCommand::Decline { reason }) => {
                Ok(vec![PaymentEvent::Failed { reason: reason.clone() }])
            }
            (_, PaymentCommand::Confirm | PaymentCommand::Decline { .. }) => {
                Err(PaymentError(self.status, "only a requested payment is answered"))
            }
        }
    }

    fn apply(&mut self, event: &PaymentEvent) {
        match event {
            PaymentEvent::Requested { amount } => {
                self.status = PaymentStatus::Requested;
                self.amount = *amount;
            }
            PaymentEvent::Paid { .. } => self.status = PaymentStatus::Paid,
            PaymentEvent::Failed { .. } => self.status = PaymentStatus::Failed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Held {
    Reserved(u32),
    Released(u32),
    Shipped(u32),
}

/// The stock of one SKU held for orders: reserved, then shipped or
/// released, once each.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Inventory {
    orders: BTreeMap<String, Held>,
    held: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum InventoryCommand {
    Reserve { order: String, qty: u32 },
    Release { order: String },
    Ship { order: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum InventoryEvent {
    Reserved { order: String, qty: u32 },
    Released { order: String, qty: u32 },
    Shipped { order: String, qty: u32 },
}

impl InventoryEvent {
    fn order(&self) -> &str {
        match self {
            InventoryEvent::Reserved { order, .. }
            | InventoryEvent::Released { order, .. }
            | InventoryEvent::Shipped { order, .. } => order,
        }
    }
}

impl DomainEvent for InventoryEvent {
    fn event_type(&self) -> &'static str {
        match self {
            InventoryEvent::Reserved { .. } => "Reserved",
            InventoryEvent::Released { .. } => "Released",
            InventoryEvent::Shipped { .. } => "Shipped",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stock of order {0}: {1}")]
struct InventoryError(String, &'static str);

impl Aggregate for Inventory {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;

    fn handle(&self, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        match command {
            InventoryCommand::Reserve { order, qty } => match self.orders.get(order) {
                None => Ok(vec![InventoryEvent::Reserved { order: order.clone(), qty: *qty }]),
                Some(_) => Err(InventoryError(order.clone(), "reserved already")),
            },
            InventoryCommand::Release { order } => match self.orders.get(order) {
                Some(Held::Reserved(qty)) => Ok(vec![InventoryEvent::Released { order: order.clone(), qty: *qty }]),
                _ => Err(InventoryError(order.clone(), "not reserved")),
            },
            InventoryCommand::Ship { order } => match self.orders.get(order) {
                Some(Held::Reserved(qty)) => Ok(vec![InventoryEvent::Shipped { order: order.clone(), qty: *qty }]),
                _ => Err(InventoryError(order.clone(), "not reserved")),
            },
        }
    }

    fn apply(&mut self, event: &InventoryEvent) {
        match event {
            InventoryEvent::Reserved { order, qty } => {
                self.orders.insert(order.clone(), Held::Reserved(*qty));
                self.held += u64::from(*qty);
            }
            InventoryEvent::Released { order, qty } => {
                self.orders.insert(order.clone(), Held::Released(*qty));
                self.held -= u64::from(*qty);
            }
            InventoryEvent::Shipped { order, qty } => {
                self.orders.insert(order.clone(), Held::Shipped(*qty));
                self.held -= u64::from(*qty);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The commands the saga emits, as events of `$commands-orders`.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Command {
    ReserveStock { order: String, sku: String, qty: u32 },
    RequestPayment { order: String, amount: u64 },
    ShipOrder { order: String },
    ShipStock { order: String, sku: String },
    ReleaseStock { order: String, sku: String },
    CancelOrder { order: String, reason: String },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::ReserveStock { .. } => "ReserveStock",
            Command::RequestPayment { .. } => "RequestPayment",
            Command::ShipOrder { .. } => "ShipOrder",
            Command::ShipStock { .. } => "ShipStock",
            Command::ReleaseStock { .. } => "ReleaseStock",
            Command::CancelOrder { .. } => "CancelOrder",
        }
    }

    fn order(&self) -> &str {
        match self {
            Command::ReserveStock { order, .. }
            | Command::RequestPayment { order, .. }
            | Command::ShipOrder { order }
            | Command::ShipStock { order, .. }
            | Command::ReleaseStock { order, .. }
            | Command::CancelOrder { order, .. } => order,
        }
    }

    /// The stream of the aggregate that carries it out.
    fn target(&self) -> String {
        match self {
            Command::ReserveStock { sku, .. } | Command::ShipStock { sku, .. } | Command::ReleaseStock { sku, .. } => {
                Repository::<Inventory, Json>::stream_id(sku)
            }
            Command::RequestPayment { order, .. } => Repository::<Payment, Json>::stream_id(order),
            Command::ShipOrder { order } | Command::CancelOrder { order, .. } => {
                Repository::<Order, Json>::stream_id(order)
            }
        }
    }
}

/// The correlation id of everything an order causes.
fn correlation(order: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("order {order}").as_bytes())
}

// ---------------------------------------------------------------------------
// The saga.

struct Saga;

#[derive(Debug, Default, Serialize, Deserialize)]
struct SagaState {
    sku: String,
    qty: u32,
    amount: u64,
    placed: bool,
    reserved: bool,
    /// "paid", "failed" or "timed out", once known.
    outcome: Option<String>,
    stock_shipped: bool,
}

/// Emits `command`, its id derived from what caused it.
fn send(effects: &mut Effects, cause: Uuid, command: Command) {
    let id = Uuid::new_v5(&cause, command.name().as_bytes());
    let data = serde_json::to_vec(&command).expect("a command serializes");
    effects.emit(COMMANDS, NewEvent::json(command.name(), data).with_id(id));
}

fn decode<T: serde::de::DeserializeOwned>(e: &RecordedEvent) -> Result<T, String> {
    serde_json::from_slice(&e.data).map_err(|err| format!("event {} of {}: {err}", e.version, e.stream))
}

impl ProcessManager for Saga {
    type State = SagaState;

    fn instance(&self, event: &RecordedEvent) -> Option<String> {
        let (category, id) = event.stream.split_once('-')?;
        match category {
            "order" | "payment" => Some(id.to_owned()),
            "inventory" => decode::<InventoryEvent>(event).ok().map(|e| e.order().to_owned()),
            _ => None,
        }
    }

    fn react(&mut self, state: &mut SagaState, event: &RecordedEvent, effects: &mut Effects) -> Result<(), String> {
        let (category, id) = event.stream.split_once('-').ok_or("a stream without a category")?;
        match category {
            "order" => match decode::<OrderEvent>(event)? {
                OrderEvent::Placed { sku, qty, amount } if !state.placed => {
                    *state = SagaState { sku: sku.clone(), qty, amount, placed: true, ..SagaState::default() };
                    send(effects, event.id, Command::ReserveStock { order: id.to_owned(), sku, qty });
                }
                OrderEvent::Shipped if !state.stock_shipped => {
                    state.stock_shipped = true;
                    send(effects, event.id, Command::ShipStock { order: id.to_owned(), sku: state.sku.clone() });
                }
                _ => {}
            },
            "inventory" => {
                if let InventoryEvent::Reserved { order, .. } = decode::<InventoryEvent>(event)?
                    && state.placed
                    && !state.reserved
                {
                    state.reserved = true;
                    send(effects, event.id, Command::RequestPayment { order: order.clone(), amount: state.amount });
                    effects.schedule("payment", PAYMENT_TIMEOUT, order.into_bytes());
                }
            }
            "payment" if state.outcome.is_none() => match decode::<PaymentEvent>(event)? {
                PaymentEvent::Paid { .. } => {
                    state.outcome = Some("paid".into());
                    effects.cancel("payment");
                    send(effects, event.id, Command::ShipOrder { order: id.to_owned() });
                }
                PaymentEvent::Failed { reason } => {
                    state.outcome = Some("failed".into());
                    effects.cancel("payment");
                    compensate(state, id, event.id, &format!("payment failed: {reason}"), effects);
                }
                PaymentEvent::Requested { .. } => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn timeout(&mut self, state: &mut SagaState, timeout: &Timeout, effects: &mut Effects) -> Result<(), String> {
        if timeout.name == "payment" && state.outcome.is_none() {
            state.outcome = Some("timed out".into());
            let cause = Uuid::new_v5(&NAMESPACE, format!("timeout {} {}", timeout.instance, timeout.due_ms).as_bytes());
            compensate(state, &timeout.instance, cause, TIMED_OUT, effects);
        }
        Ok(())
    }
}

/// Releases the order's stock and cancels it.
fn compensate(state: &SagaState, order: &str, cause: Uuid, reason: &str, effects: &mut Effects) {
    send(effects, cause, Command::ReleaseStock { order: order.to_owned(), sku: state.sku.clone() });
    send(effects, cause, Command::CancelOrder { order: order.to_owned(), reason: reason.to_owned() });
}

// ---------------------------------------------------------------------------
// The order status projection: a row per order, its status and the number
// of its events applied.

struct Statuses;

impl Projection for Statuses {
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> Result<(), String> {
        let id = event.stream.strip_prefix("order-").ok_or("not an order")?;
        let status = match decode::<OrderEvent>(event)? {
            OrderEvent::Placed { .. } => "placed",
            OrderEvent::Shipped => "shipped",
            OrderEvent::Cancelled { .. } => "cancelled",
        };
        let applied = rows.get(id.as_bytes()).map_or(0, |r| status_row(r).1);
        rows.put(id.as_bytes(), format!("{status} {}", applied + 1));
        Ok(())
    }
}

fn status_row(row: &[u8]) -> (String, u64) {
    let s = String::from_utf8_lossy(row);
    let (status, n) = s.split_once(' ').unwrap_or((&s, "0"));
    (status.to_owned(), n.parse().unwrap_or(0))
}

// ---------------------------------------------------------------------------
// Options, the deterministic order book and the gateway's answers.

struct Options {
    orders: usize,
    dir: Option<PathBuf>,
    seed: u64,
    skus: u64,
    pace_ms: u64,
    kill_after_commands: Option<u64>,
}

fn usage(problem: &str) -> ! {
    eprintln!("orders: {problem}");
    eprintln!("usage: orders [--orders N] [--dir DIR] [--seed S] [--skus K] [--pace-ms MS] [--kill-after-commands N]");
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options { orders: 2000, dir: None, seed: 15, skus: 20, pace_ms: 0, kill_after_commands: None };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v:?}")))
        }
        match flag.as_str() {
            "--orders" => o.orders = num(&flag, value()),
            "--dir" => o.dir = Some(PathBuf::from(value())),
            "--seed" => o.seed = num(&flag, value()),
            "--skus" => o.skus = num(&flag, value()),
            "--pace-ms" => o.pace_ms = num(&flag, value()),
            "--kill-after-commands" => o.kill_after_commands = Some(num(&flag, value())),
            "-h" | "--help" => usage("the options are"),
            other => usage(&format!("unknown option {other:?}")),
        }
    }
    if o.skus == 0 {
        usage("--skus is at least 1");
    }
    o
}

/// splitmix64 of `x`: the example's deterministic randomness.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Order `i`: its SKU, quantity and amount.
fn order_of(seed: u64, skus: u64, i: usize) -> (String, u32, u64) {
    let r = mix(seed ^ mix(i as u64));
    (format!("sku{}", r % skus), 1 + (r >> 16) as u32 % 3, 10 + (r >> 24) % 491)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Pay,
    Decline,
    Silent,
}

/// What the simulated gateway answers for the payment of `order`: about 8%
/// declined, 6% never answered, the rest paid.
fn answer(seed: u64, order: &str) -> Answer {
    let i: u64 = order.parse().unwrap_or(0);
    match mix(mix(seed) ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d)) % 100 {
        0..8 => Answer::Decline,
        8..14 => Answer::Silent,
        _ => Answer::Pay,
    }
}

fn emit(line: serde_json::Value) {
    println!("{line}");
}

// ---------------------------------------------------------------------------
// The application.

type Handler = Box<dyn FnMut(&RecordedEvent) -> Result<(), String>>;
type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// What this process's dispatchers did.
#[derive(Debug, Default)]
struct Stats {
    /// Commands carried out now.
    executed: u64,
    /// Commands found carried out before (dispatched again after a crash).
    already_done: u64,
    /// Commands an aggregate refused (none in this flow).
    rejected: u64,
}

/// Counts the outcome of a command; an aggregate's refusal is an answer,
/// not a failure to retry.
fn settle<E: std::fmt::Display>(
    r: Result<Executed, CommandError<E>>,
    what: &str,
    stats: &RefCell<Stats>,
) -> Result<(), String> {
    let mut s = stats.borrow_mut();
    match r {
        Ok(done) if done.already_done => s.already_done += 1,
        Ok(_) => s.executed += 1,
        Err(CommandError::Rejected(e)) => {
            s.rejected += 1;
            eprintln!("orders: {what} refused: {e}");
        }
        Err(e) => return Err(format!("{what}: {e}")),
    }
    Ok(())
}

struct App {
    store: Arc<EventStore>,
    orders: Repository<Order, Json>,
    saga: ProcessRunner<Saga, Json>,
    dispatcher: ProjectionRunner<Dispatcher<Handler>>,
    gateway: ProjectionRunner<Dispatcher<Handler>>,
    statuses: ProjectionRunner<KvModel<Statuses>>,
    relay: OutboxRelay,
    published: u64,
    stats: Rc<RefCell<Stats>>,
    gateway_stats: Rc<RefCell<Stats>>,
    /// What the saga did in this process: reactions, timeouts fired,
    /// commands emitted.
    reacted: usize,
    fired: usize,
    emitted: usize,
    pace: Duration,
}

impl App {
    fn open(store: Arc<EventStore>, topics: Arc<TopicStore>, o: &Options) -> Fallible<App> {
        let (seed, pace, kill_after) = (o.seed, Duration::from_millis(o.pace_ms), o.kill_after_commands);
        let orders = Repository::<Order, Json>::new(Arc::clone(&store), Json);
        let payments = Repository::<Payment, Json>::new(Arc::clone(&store), Json);
        // An SKU's stream grows with its orders: snapshots keep its loads short.
        let inventory = Repository::<Inventory, Json>::new(Arc::clone(&store), Json)
            .with_snapshots(SnapshotPolicy::EveryEvents(64));
        let stats = Rc::new(RefCell::new(Stats::default()));

        // Each command through its aggregate's repository, once: the command
        // event's id is the command id.
        let (order_repo, payment_repo, s) = (orders.clone(), payments.clone(), Rc::clone(&stats));
        let carry_out: Handler = Box::new(move |e: &RecordedEvent| {
            let command: Command = decode(e)?;
            let meta = CommandMeta::caused_by(e.id, Some(correlation(command.order()))).with_command_id(e.id);
            let what = format!("{} of order {}", command.name(), command.order());
            let done = match command {
                Command::ReserveStock { order, sku, qty } => {
                    settle(inventory.execute_with(&sku, &InventoryCommand::Reserve { order, qty }, &meta), &what, &s)
                }
                Command::ReleaseStock { order, sku } => {
                    settle(inventory.execute_with(&sku, &InventoryCommand::Release { order }, &meta), &what, &s)
                }
                Command::ShipStock { order, sku } => {
                    settle(inventory.execute_with(&sku, &InventoryCommand::Ship { order }, &meta), &what, &s)
                }
                Command::RequestPayment { order, amount } => {
                    settle(payment_repo.execute_with(&order, &PaymentCommand::Request { amount }, &meta), &what, &s)
                }
                Command::ShipOrder { order } => {
                    settle(order_repo.execute_with(&order, &OrderCommand::Ship, &meta), &what, &s)
                }
                Command::CancelOrder { order, reason } => {
                    settle(order_repo.execute_with(&order, &OrderCommand::Cancel { reason }, &meta), &what, &s)
                }
            };
            // The crash test's hook: killed here, the commands of the batch
            // are carried out and the dispatcher's checkpoint is not stored.
            if kill_after.is_some_and(|n| s.borrow().executed >= n) {
                eprintln!("orders: --kill-after-commands: SIGKILL after {} commands", s.borrow().executed);
                let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            }
            done
        });
        let dispatcher = ProjectionRunner::new(
            Arc::clone(&store),
            "orders-dispatcher",
            ProjectionSource::Stream(COMMANDS.into()),
            Dispatcher::open(Arc::clone(&store), "orders-dispatcher", carry_out)?,
        )?;

        // The simulated payment gateway answers each request once (its
        // answer's command id derives from the request's event id), or never.
        let gateway_stats = Rc::new(RefCell::new(Stats::default()));
        let s = Rc::clone(&gateway_stats);
        let answer_payments: Handler = Box::new(move |e: &RecordedEvent| {
            if e.event_type != "Requested" {
                return Ok(());
            }
            let order = e.stream.strip_prefix("payment-").ok_or("not a payment")?;
            let meta = CommandMeta::caused_by(e.id, Some(correlation(order)))
                .with_command_id(Uuid::new_v5(&e.id, b"gateway answer"));
            let command = match answer(seed, order) {
                Answer::Pay => PaymentCommand::Confirm,
                Answer::Decline => PaymentCommand::Decline { reason: "card declined".into() },
                Answer::Silent => return Ok(()),
            };
            settle(payments.execute_with(order, &command, &meta), &format!("the answer to payment {order}"), &s)
        });
        let gateway = ProjectionRunner::new(
            Arc::clone(&store),
            "payment-gateway",
            ProjectionSource::Category("payment".into()),
            Dispatcher::open(Arc::clone(&store), "payment-gateway", answer_payments)?,
        )?;

        let saga = ProcessRunner::open(Arc::clone(&store), "orders-saga", SubscriptionTarget::All, Saga, Json)?;
        let statuses = ProjectionRunner::new(
            Arc::clone(&store),
            "order-status",
            ProjectionSource::Category("order".into()),
            KvModel::open(Arc::clone(&store), "order-status", Statuses)?,
        )?;
        // The outbox: the order events, published to a topic exactly once.
        if topics.topic(ORDER_TOPIC).is_err() {
            topics.create_topic(ORDER_TOPIC, TopicConfig::default().with_partitions(4))?;
        }
        let producers = Arc::new(Producers::new(Arc::clone(&topics)));
        let target = SubscriptionTarget::Category("order".into());
        let relay = OutboxRelay::open(Arc::clone(&store), topics, &producers, "orders", target, ORDER_TOPIC, (1, 0))?;
        Ok(App {
            store,
            relay,
            published: 0,
            orders,
            saga,
            dispatcher,
            gateway,
            statuses,
            stats,
            gateway_stats,
            reacted: 0,
            fired: 0,
            emitted: 0,
            pace,
        })
    }

    /// Makes what was appended durable: the saga, the dispatchers and the
    /// projection read durable events only.
    fn sync(&self) -> Fallible<()> {
        if self.store.durable_position() < self.store.head_position() {
            self.store.log().sync()?;
        }
        Ok(())
    }

    /// Runs the saga (at the simulated time `now_ms`), the dispatcher, the
    /// gateway and the projection until none of them has anything left to do.
    fn pump(&mut self, now_ms: i64) -> Fallible<()> {
        loop {
            self.sync()?;
            let saga = self.saga.run_batch_at(now_ms, Duration::ZERO)?;
            (self.reacted, self.fired, self.emitted) =
                (self.reacted + saga.reacted, self.fired + saga.fired, self.emitted + saga.emitted);
            self.sync()?;
            let commands = self.dispatcher.run_batch(Duration::ZERO)?;
            self.sync()?;
            let payments = self.gateway.run_batch(Duration::ZERO)?;
            self.sync()?;
            let statuses = self.statuses.run_batch(Duration::ZERO)?;
            let relayed = self.relay.run_batch(Duration::ZERO)?;
            self.published += relayed.published as u64;
            let moved = saga.reacted + saga.fired + saga.parked + relayed.published + relayed.skipped;
            let moved = moved + commands.applied + commands.parked + payments.applied + payments.parked;
            if moved + statuses.applied + statuses.parked == 0 {
                return Ok(());
            }
            if !self.pace.is_zero() {
                std::thread::sleep(self.pace);
            }
        }
    }
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            emit(json!({ "error": e.to_string() }));
            std::process::exit(1);
        }
    }
}

fn run() -> Fallible<bool> {
    let started = Instant::now();
    let o = options();
    let tempdir;
    let dir = match &o.dir {
        Some(d) => d.clone(),
        None => {
            tempdir = tempfile::tempdir()?;
            tempdir.path().to_owned()
        }
    };
    // Appends are not synced one by one (`Durability::Never`: a crash of
    // the process loses nothing); the pump syncs between its steps, and
    // since every reader here acts on durable events only, a power loss
    // would take back only events nothing had acted on yet.
    let config = EventStoreConfig::default();
    let log: LogConfig = config.log_config().clone().with_durability(Durability::Never);
    let store = Arc::new(EventStore::open(dir.join("events"), config.with_log_config(log.clone()))?);
    let topics = Arc::new(TopicStore::open(dir.join("topics"), TopicStoreConfig::default().with_log_config(log))?);
    let resumed = store.head_position() > 0;
    same_options(&store, &o)?;
    let mut app = App::open(Arc::clone(&store), topics, &o)?;
    emit(json!({ "phase": "start", "dir": dir.display().to_string(), "orders": o.orders, "seed": o.seed,
        "skus": o.skus, "resumed": resumed, "saga_checkpoint": app.saga.checkpoint(),
        "pending_timeouts": app.saga.pending_timeouts().len() }));

    // Place the orders (those placed before are found by their command ids),
    // pumping every ORDERS_PER_PUMP of them at the simulated time.
    let t = Instant::now();
    let (mut placed_now, mut placed_before) = (0u64, 0u64);
    for i in 0..o.orders {
        let id = i.to_string();
        let (sku, qty, amount) = order_of(o.seed, o.skus, i);
        let meta = CommandMeta::new()
            .with_correlation_id(correlation(&id))
            .with_command_id(Uuid::new_v5(&NAMESPACE, format!("place order {id}").as_bytes()));
        let done = app.orders.execute_with(&id, &OrderCommand::Place { sku, qty, amount }, &meta)?;
        if done.already_done {
            placed_before += 1;
        } else {
            placed_now += 1;
            if o.pace_ms > 0 {
                std::thread::sleep(Duration::from_millis(o.pace_ms));
            }
        }
        if (i + 1) % ORDERS_PER_PUMP == 0 || i + 1 == o.orders {
            app.pump(START_MS + i as i64 * ORDER_EVERY_MS)?;
        }
    }
    emit(json!({ "phase": "place", "placed_now": placed_now, "placed_before": placed_before,
        "commands_executed": app.stats.borrow().executed, "commands_found_done": app.stats.borrow().already_done,
        "seconds": t.elapsed().as_secs_f64() }));

    // Let simulated time pass until every timeout has fired.
    let t = Instant::now();
    let mut now = START_MS + o.orders as i64 * ORDER_EVERY_MS;
    app.pump(now)?;
    while let Some(due) = app.saga.pending_timeouts().first().map(|p| p.2) {
        now = now.max(due);
        app.pump(now)?;
    }
    emit(json!({ "phase": "drain", "simulated_minutes": (now - START_MS) / 60_000,
        "seconds": t.elapsed().as_secs_f64() }));

    let (report, consistent) = verify(&mut app, &o)?;
    emit(json!({ "phase": "verify", "details": report }));
    let stats = app.stats.borrow();
    let mut summary = report["summary"].clone();
    let s = summary.as_object_mut().expect("an object");
    s.insert("resumed".into(), json!(resumed));
    s.insert("placed_now".into(), json!(placed_now));
    s.insert("placed_before".into(), json!(placed_before));
    s.insert("saga_reactions_now".into(), json!(app.reacted));
    s.insert("timeouts_fired_now".into(), json!(app.fired));
    s.insert("commands_emitted_now".into(), json!(app.emitted));
    s.insert("commands_executed_now".into(), json!(stats.executed));
    s.insert("commands_found_done".into(), json!(stats.already_done));
    s.insert("payments_answered_now".into(), json!(app.gateway_stats.borrow().executed));
    s.insert("published_now".into(), json!(app.published));
    s.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));
    s.insert("consistent".into(), json!(consistent));
    emit(json!({ "summary": summary }));
    Ok(consistent)
}

/// Records the options the orders depend on in a new store, and refuses
/// to resume a store with other ones (its orders and the gateway's answers
/// would not be the ones checked).
fn same_options(store: &EventStore, o: &Options) -> Fallible<()> {
    const OPTIONS: &str = "$options-orders-example";
    let want = json!({ "seed": o.seed, "skus": o.skus });
    match store.read_stream(OPTIONS, 0, Direction::Forward, 1)?.first() {
        Some(e) => {
            let had: serde_json::Value = serde_json::from_slice(&e.data)?;
            if had != want {
                return Err(format!("the store was run with {had}: resume it with the same --seed and --skus").into());
            }
        }
        None => {
            store.append(OPTIONS, ExpectedVersion::NoStream, vec![NewEvent::json("Options", want.to_string())])?;
        }
    }
    Ok(())
}

/// Reads the whole store back and checks the flow's invariants; returns a
/// report and whether everything held.
fn verify(app: &mut App, o: &Options) -> Fallible<(serde_json::Value, bool)> {
    let store = Arc::clone(&app.store);
    let read = |stream: &str| store.read_stream(stream, 0, Direction::Forward, usize::MAX);
    let mut problems: Vec<String> = Vec::new();
    let mut problem = |p: String| {
        if problems.len() < 20 {
            eprintln!("orders: inconsistent: {p}");
        }
        problems.push(p);
    };
    // How many events each causation id caused, over the aggregates' streams.
    let mut caused: HashMap<Uuid, u64> = HashMap::new();
    let mut note_causes = |events: &[RecordedEvent]| {
        for e in events {
            if let Some(c) = EventMeta::parse(&e.metadata).causation_id {
                *caused.entry(c).or_default() += 1;
            }
        }
    };
    let (mut shipped, mut cancelled, mut failed, mut timed_out, mut duplicated) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut shipped_per_sku: HashMap<String, u64> = HashMap::new();
    let mut final_status: Vec<&str> = Vec::with_capacity(o.orders);
    for i in 0..o.orders {
        let id = i.to_string();
        let events = read(&Repository::<Order, Json>::stream_id(&id))?;
        let payment = read(&Repository::<Payment, Json>::stream_id(&id))?;
        note_causes(&events);
        note_causes(&payment);
        let mut types: HashMap<&str, u64> = HashMap::new();
        for e in &events {
            *types.entry(e.event_type.as_str()).or_default() += 1;
        }
        let mut payment_types: HashMap<&str, u64> = HashMap::new();
        for e in &payment {
            *payment_types.entry(e.event_type.as_str()).or_default() += 1;
        }
        if types.values().chain(payment_types.values()).any(|&n| n > 1) {
            duplicated += 1;
            problem(format!("order {id}: an event twice: {types:?} {payment_types:?}"));
        }
        let placed = events.first().map(decode::<OrderEvent>).transpose()?;
        let Some(OrderEvent::Placed { sku, .. }) = placed else {
            problem(format!("order {id}: not placed first"));
            final_status.push("none");
            continue;
        };
        let last = events.last().map(decode::<OrderEvent>).transpose()?;
        let expected = answer(o.seed, &id);
        let status = match (&last, types.get("Shipped").copied(), types.get("Cancelled").copied()) {
            (Some(OrderEvent::Shipped), Some(1), None) => {
                shipped += 1;
                *shipped_per_sku.entry(sku).or_default() += 1;
                if expected != Answer::Pay || payment_types.get("Paid") != Some(&1) {
                    problem(format!("order {id}: shipped, the gateway's answer {expected:?}"));
                }
                "shipped"
            }
            (Some(OrderEvent::Cancelled { reason }), None, Some(1)) => {
                cancelled += 1;
                let ok = match expected {
                    Answer::Decline => {
                        failed += 1;
                        reason.starts_with("payment failed") && payment_types.get("Failed") == Some(&1)
                    }
                    Answer::Silent => {
                        timed_out += 1;
                        reason == TIMED_OUT && payment_types.len() == 1
                    }
                    Answer::Pay => false,
                };
                if !ok {
                    problem(format!("order {id}: cancelled ({reason}), the gateway's answer {expected:?}"));
                }
                "cancelled"
            }
            _ => {
                problem(format!("order {id}: not in one final state: {types:?}"));
                "none"
            }
        };
        if payment_types.get("Requested") != Some(&1) {
            problem(format!("order {id}: payment events {payment_types:?}"));
        }
        final_status.push(status);
    }

    // Inventory: per SKU, each order's stock reserved once, then shipped or
    // released once; the stock held never negative, and none left held.
    let mut inventory_ok = true;
    let (mut reserved_total, mut released_total, mut shipped_total) = (0u64, 0u64, 0u64);
    for k in 0..o.skus {
        let sku = format!("sku{k}");
        let events = read(&Repository::<Inventory, Json>::stream_id(&sku))?;
        note_causes(&events);
        let (mut reserved, mut released, mut shipped_qty, mut shipped_orders) = (0i64, 0i64, 0i64, 0u64);
        let mut seen: HashMap<(String, &str), u64> = HashMap::new();
        for e in &events {
            let ev: InventoryEvent = decode(e)?;
            *seen.entry((ev.order().to_owned(), ev.event_type())).or_default() += 1;
            match ev {
                InventoryEvent::Reserved { qty, .. } => reserved += i64::from(qty),
                InventoryEvent::Released { qty, .. } => released += i64::from(qty),
                InventoryEvent::Shipped { qty, .. } => {
                    shipped_qty += i64::from(qty);
                    shipped_orders += 1;
                }
            }
            if reserved - released - shipped_qty < 0 {
                inventory_ok = false;
                problem(format!("{sku}: stock held negative at version {}", e.version));
            }
        }
        if seen.values().any(|&n| n > 1) {
            inventory_ok = false;
            duplicated += 1;
            problem(format!("{sku}: an order's stock event twice"));
        }
        let both = seen.keys().filter(|(order, t)| *t == "Released" && seen.contains_key(&(order.clone(), "Shipped")));
        if both.count() > 0 {
            inventory_ok = false;
            problem(format!("{sku}: an order's stock both released and shipped"));
        }
        if reserved - released != shipped_qty || shipped_orders != shipped_per_sku.get(&sku).copied().unwrap_or(0) {
            inventory_ok = false;
            problem(format!(
                "{sku}: reserved {reserved} - released {released} != shipped {shipped_qty}, \
                 or {shipped_orders} orders shipped from stock"
            ));
        }
        reserved_total += reserved as u64;
        released_total += released as u64;
        shipped_total += shipped_qty as u64;
    }

    // The commands: each carried out once (exactly one event caused by it in
    // its aggregate's stream, found by the id its command id gives), and each
    // order sent each kind of command at most once.
    let commands = read(COMMANDS)?;
    let (mut carried_once, mut not_once) = (0u64, 0u64);
    let mut per_order: HashMap<(String, &'static str), u64> = HashMap::new();
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    for c in &commands {
        let command: Command = decode(c)?;
        *per_order.entry((command.order().to_owned(), command.name())).or_default() += 1;
        *kinds.entry(command.name()).or_default() += 1;
        let found = store.find_event(&command.target(), CommandMeta::event_id(c.id, 0))?;
        if found.is_some() && caused.get(&c.id) == Some(&1) {
            carried_once += 1;
        } else {
            not_once += 1;
            problem(format!(
                "command {} ({} of order {}): found {found:?}, caused {:?} events",
                c.id,
                command.name(),
                command.order(),
                caused.get(&c.id)
            ));
        }
    }
    let repeated_commands = per_order.values().filter(|&&n| n > 1).count() as u64;
    if repeated_commands > 0 {
        problem(format!("{repeated_commands} commands sent twice for one order"));
    }
    for (i, status) in final_status.iter().enumerate() {
        let id = i.to_string();
        let has = |name| per_order.contains_key(&(id.clone(), name));
        let expected: &[&str] = match *status {
            "shipped" => &["ReserveStock", "RequestPayment", "ShipOrder", "ShipStock"],
            _ => &["ReserveStock", "RequestPayment", "ReleaseStock", "CancelOrder"],
        };
        if !expected.iter().all(|name| has(name)) {
            problem(format!("order {id} ({status}): a command missing"));
        }
    }

    // The projection: each order's status as its stream says, each of its
    // events applied once.
    app.statuses.run_until_caught_up()?;
    let mut projection_mismatches = 0u64;
    for (i, status) in final_status.iter().enumerate() {
        let id = i.to_string();
        let events = store.stream_version(&Repository::<Order, Json>::stream_id(&id))?;
        let n = match events {
            annal::events::CurrentVersion::Version(v) => v + 1,
            annal::events::CurrentVersion::NoStream => 0,
        };
        let row = app.statuses.model().get(id.as_bytes()).map(|r| status_row(&r));
        if row != Some(((*status).to_owned(), n)) {
            projection_mismatches += 1;
            problem(format!("order {id}: projected {row:?}, its stream says {status} with {n} events"));
        }
    }

    // Nothing parked, no timeout left, no command refused.
    let parked = app.dispatcher.parked(100)?.len()
        + app.gateway.parked(100)?.len()
        + app.statuses.parked(100)?.len()
        + read(&app.saga.parked_stream())?.len();
    if parked > 0 {
        problem(format!("{parked} events parked"));
    }
    let pending = app.saga.pending_timeouts().len();
    if pending > 0 {
        problem(format!("{pending} timeouts still pending"));
    }
    let rejected = app.stats.borrow().rejected + app.gateway_stats.borrow().rejected;
    if rejected > 0 {
        problem(format!("{rejected} commands refused by their aggregates"));
    }

    // The outbox: every order event published once, in its stream's order.
    let mut published: Vec<u64> = Vec::new();
    let topic = app.relay.topics().topic(ORDER_TOPIC)?;
    for p in 0..topic.partitions() {
        let log = topic.partition(p)?;
        let mut reader = log.read_from(log.start_offset())?;
        while let Some(r) = reader.next_record()? {
            let position = r.headers().find(|h| h.name == POSITION_HEADER).ok_or("a record without its position")?;
            published.push(u64::from_le_bytes(position.value.try_into()?));
        }
    }
    let published_count = published.len();
    published.sort_unstable();
    let order_positions: Vec<u64> = {
        let mut v: Vec<u64> =
            store.read_category("order", 0, Direction::Forward, usize::MAX)?.iter().map(|e| e.position).collect();
        v.sort_unstable();
        v
    };
    let outbox_once = published == order_positions;
    if !outbox_once {
        problem(format!(
            "the topic holds {published_count} order events, the store {}: not each once",
            order_positions.len()
        ));
    }
    let consistent = problems.is_empty();
    let report = json!({
        "orders": o.orders,
        "commands": kinds,
        "inventory": { "reserved": reserved_total, "released": released_total, "shipped": shipped_total },
        "problems": problems.iter().take(20).collect::<Vec<_>>(),
        "summary": {
            "orders": o.orders,
            "shipped": shipped,
            "cancelled": cancelled,
            "payment_failed": failed,
            "payment_timed_out": timed_out,
            "in_one_final_state": shipped + cancelled == o.orders as u64,
            "duplicated_events": duplicated,
            "inventory_ok": inventory_ok,
            "commands": commands.len(),
            "commands_carried_out_once": carried_once,
            "commands_not_once": not_once,
            "commands_repeated": repeated_commands,
            "projection_mismatches": projection_mismatches,
            "parked": parked,
            "rejected_commands": rejected,
            "published": published_count,
            "published_each_once": outbox_once,
        }
    });
    Ok((report, consistent))
}
