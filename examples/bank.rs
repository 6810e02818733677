//! Bank accounts with `annal::es` (issue 15): an `Account` aggregate that
//! refuses overdrafts, a balance projection kept exactly once, loads with and
//! without snapshots, state as of a past time, and an upcaster for events
//! written before `Deposited` had a currency.
//!
//! ```text
//! cargo run --release --example bank -- --accounts 1000 --events 100000
//!     [--dir DIR] [--seed S] [--heavy-share 0.1] [--snapshot-every 100] [--kept-snapshots 1000]
//! ```
//!
//! Each phase prints one line of JSON, and the run ends with a `summary`
//! line; it exits with status 1 if a check failed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use annal::es::{
    Aggregate, CommandError, DomainEvent, Json, KvModel, Projection, ProjectionRunner, ProjectionSource, Repository,
    Rows, SnapshotPolicy, Upcasters,
};
use annal::events::{Direction, EventStore, EventStoreConfig, ExpectedVersion, NewEvent, RecordedEvent};
use annal::{Durability, LogConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

// ---------------------------------------------------------------------------
// The aggregate.

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    open: bool,
    balance: i64,
    deposits: u64,
    withdrawals: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum AccountCommand {
    Open,
    Deposit(i64),
    Withdraw(i64),
}

/// The account's events. `Deposited` had no `currency` in its first schema
/// version; the upcaster registered in `main` gives the old ones `USD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum AccountEvent {
    Opened,
    Deposited { amount: i64, currency: String },
    Withdrawn { amount: i64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum AccountError {
    #[error("the account is not open")]
    NotOpen,
    #[error("the account is open already")]
    AlreadyOpen,
    #[error("a balance of {balance} cannot pay {amount}")]
    Overdraft { balance: i64, amount: i64 },
    #[error("amounts are positive")]
    NotPositive,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match *command {
            AccountCommand::Open if self.open => Err(AccountError::AlreadyOpen),
            AccountCommand::Open => Ok(vec![AccountEvent::Opened]),
            _ if !self.open => Err(AccountError::NotOpen),
            AccountCommand::Deposit(a) | AccountCommand::Withdraw(a) if a <= 0 => Err(AccountError::NotPositive),
            AccountCommand::Deposit(amount) => Ok(vec![AccountEvent::Deposited { amount, currency: "USD".into() }]),
            // The business rule: no overdraft.
            AccountCommand::Withdraw(amount) if amount > self.balance => {
                Err(AccountError::Overdraft { balance: self.balance, amount })
            }
            AccountCommand::Withdraw(amount) => Ok(vec![AccountEvent::Withdrawn { amount }]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened => self.open = true,
            AccountEvent::Deposited { amount, .. } => {
                self.balance += amount;
                self.deposits += 1;
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                self.withdrawals += 1;
            }
        }
    }
}

/// The upcasters: `Deposited` of schema version 1 gets `"currency": "USD"`.
fn upcasters() -> Arc<Upcasters> {
    Arc::new(Upcasters::new().register_json("Deposited", 1, "deposited-add-currency", |mut v| {
        let fields = v.as_object_mut().ok_or("Deposited v1 is not an object")?;
        fields.entry("currency").or_insert_with(|| json!("USD"));
        Ok(vec![("Deposited".to_owned(), v)])
    }))
}

// ---------------------------------------------------------------------------
// The balance projection: a row per account stream, its balance and the
// number of events applied to it (which shows each was applied once).

struct Balances {
    upcasters: Arc<Upcasters>,
}

fn encode_row(balance: i64, events: u64) -> Vec<u8> {
    let mut v = balance.to_le_bytes().to_vec();
    v.extend_from_slice(&events.to_le_bytes());
    v
}

fn decode_row(b: &[u8]) -> (i64, u64) {
    let balance = i64::from_le_bytes(b[..8].try_into().expect("a row of 16 bytes"));
    let events = u64::from_le_bytes(b[8..16].try_into().expect("a row of 16 bytes"));
    (balance, events)
}

impl Projection for Balances {
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> Result<(), String> {
        let key = event.stream.as_bytes();
        let (mut balance, mut events) = rows.get(key).map_or((0, 0), decode_row);
        // Through the upcasters, like the repository: the old `Deposited`
        // events decode too.
        self.upcasters
            .decode(&Json, &event.view(), |e: AccountEvent| match e {
                AccountEvent::Opened => {}
                AccountEvent::Deposited { amount, .. } => balance += amount,
                AccountEvent::Withdrawn { amount } => balance -= amount,
            })
            .map_err(|e| e.to_string())?;
        events += 1;
        rows.put(key, encode_row(balance, events));
        Ok(())
    }
}

type BalanceRunner = ProjectionRunner<KvModel<Balances>>;

fn open_projection(store: &Arc<EventStore>, upcasters: &Arc<Upcasters>) -> Result<BalanceRunner, annal::es::Error> {
    let model = KvModel::open(Arc::clone(store), "balances", Balances { upcasters: Arc::clone(upcasters) })?;
    ProjectionRunner::new(Arc::clone(store), "balances", ProjectionSource::Category("account".into()), model)
}

// ---------------------------------------------------------------------------
// Options, randomness, output.

struct Options {
    accounts: usize,
    events: usize,
    dir: Option<PathBuf>,
    seed: u64,
    heavy_share: f64,
    snapshot_every: u64,
    kept_snapshots: u64,
}

fn usage(problem: &str) -> ! {
    eprintln!("bank: {problem}");
    eprintln!("usage: bank [--accounts N] [--events M] [--dir DIR] [--seed S]");
    eprintln!("            [--heavy-share F] [--snapshot-every K] [--kept-snapshots K]");
    std::process::exit(2)
}

fn options() -> Options {
    let mut o = Options {
        accounts: 1000,
        events: 100_000,
        dir: None,
        seed: 15,
        heavy_share: 0.1,
        snapshot_every: 100,
        kept_snapshots: 1000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> T {
            v.parse().unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v:?}")))
        }
        match flag.as_str() {
            "--accounts" => o.accounts = num(&flag, value()),
            "--events" => o.events = num(&flag, value()),
            "--dir" => o.dir = Some(PathBuf::from(value())),
            "--seed" => o.seed = num(&flag, value()),
            "--heavy-share" => o.heavy_share = num(&flag, value()),
            "--snapshot-every" => o.snapshot_every = num(&flag, value()),
            "--kept-snapshots" => o.kept_snapshots = num(&flag, value()),
            "-h" | "--help" => usage("the options are"),
            other => usage(&format!("unknown option {other:?}")),
        }
    }
    if o.accounts < 2 {
        usage("--accounts is at least 2 (one of them the heavy account)");
    }
    if !(0.0..=1.0).contains(&o.heavy_share) {
        usage("--heavy-share is between 0 and 1");
    }
    o
}

/// splitmix64: a tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn emit(line: serde_json::Value) {
    println!("{line}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn median_us(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let m = samples[samples.len() / 2];
    (m * 10.0).round() / 10.0
}

/// Microseconds `f` takes.
fn time_us<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64() * 1e6, out)
}

fn account_id(i: usize) -> String {
    format!("a{i}")
}

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

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

/// Runs the example; whether every check held. (The temporary directory
/// is removed when it returns, also after a failed check.)
fn run() -> Fallible<bool> {
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
    // the process loses nothing, a power loss what was not synced); the run
    // syncs before each projection round, since projections read only
    // durable events.
    let config = EventStoreConfig::default();
    let log: LogConfig = config.log_config().clone().with_durability(Durability::Never);
    let store = Arc::new(EventStore::open(&dir, config.with_log_config(log))?);
    if store.head_position() > 0 {
        return Err(
            format!("{} holds a store already: the bank example starts from an empty one", dir.display()).into()
        );
    }
    let upcasters = upcasters();
    let accounts = Repository::<Account, Json>::new(Arc::clone(&store), Json)
        .with_upcasters(Arc::clone(&upcasters))
        .with_snapshots(SnapshotPolicy::EveryEvents(o.snapshot_every))
        .with_kept_snapshots(o.kept_snapshots);
    let no_snapshots = Repository::<Account, Json>::new(Arc::clone(&store), Json)
        .with_upcasters(Arc::clone(&upcasters))
        .with_snapshots(SnapshotPolicy::Never);
    emit(json!({ "phase": "setup", "dir": dir.display().to_string(), "accounts": o.accounts, "events": o.events,
        "seed": o.seed, "heavy_share": o.heavy_share, "snapshot_every": o.snapshot_every,
        "kept_snapshots": o.kept_snapshots }));
    let mut failures: Vec<String> = Vec::new();

    // The seed example of upcasting: a few accounts whose first deposit was
    // written by an older version of the application, without a currency.
    let seeded: Vec<usize> = (1..o.accounts.min(4)).collect();
    for &i in &seeded {
        store.append(
            &Repository::<Account, Json>::stream_id(&account_id(i)),
            ExpectedVersion::NoStream,
            vec![NewEvent::json("Opened", r#""Opened""#), NewEvent::json("Deposited", r#"{"Deposited":{"amount":5}}"#)],
        )?;
    }
    let mut upcast_seen = serde_json::Value::Null;
    if let Some(&first) = seeded.first() {
        let stream = Repository::<Account, Json>::stream_id(&account_id(first));
        let raw = store.read_stream(&stream, 1, Direction::Forward, 1)?;
        let mut decoded = Vec::new();
        upcasters.decode(&Json, &raw[0].view(), |e: AccountEvent| decoded.push(e))?;
        let loaded = accounts.load(&account_id(first))?;
        let expected = vec![AccountEvent::Deposited { amount: 5, currency: "USD".into() }];
        if decoded != expected || loaded.state.balance != 5 {
            failures.push(format!("upcast: {decoded:?}, balance {}", loaded.state.balance));
        }
        upcast_seen = json!({ "stored": String::from_utf8_lossy(&raw[0].data),
            "read_as": serde_json::to_value(&decoded[0])?, "balance": loaded.state.balance });
    }
    emit(json!({ "phase": "upcast", "seeded_v1_deposits": seeded.len(), "example": upcast_seen }));

    // Open the accounts.
    let t = Instant::now();
    for i in (0..o.accounts).filter(|i| !seeded.contains(i)) {
        accounts.execute(&account_id(i), &AccountCommand::Open)?;
    }
    emit(json!({ "phase": "open", "accounts": o.accounts, "seconds": t.elapsed().as_secs_f64() }));

    // Deposits and withdrawals. Account a0 is the heavy one: it gets
    // `heavy_share` of the commands. The balance projection catches up ten
    // times during the run, and is closed and opened again half-way (as a
    // restarted application would): it goes on from its stored position.
    let mut rng = Rng(o.seed);
    let mut projection = open_projection(&store, &upcasters)?;
    let mut projected = 0u64;
    let mut reopened = 0;
    let (mut deposits, mut withdrawals, mut rejected, mut snapshots) = (0u64, 0u64, 0u64, 0u64);
    let marks: Vec<usize> = [0.2, 0.35, 0.5, 0.65, 0.8].iter().map(|f| (o.events as f64 * f) as usize).collect();
    let mut as_of_times: Vec<i64> = Vec::new();
    let rounds = 10usize;
    let t = Instant::now();
    for n in 0..o.events {
        if marks.contains(&n) {
            as_of_times.push(now_ms());
        }
        let i = if rng.unit() < o.heavy_share { 0 } else { 1 + rng.below(o.accounts as u64 - 1) as usize };
        let amount = 1 + rng.below(100) as i64;
        let command =
            if rng.below(2) == 0 { AccountCommand::Deposit(amount) } else { AccountCommand::Withdraw(amount) };
        match accounts.execute(&account_id(i), &command) {
            Ok(done) => {
                match command {
                    AccountCommand::Deposit(_) => deposits += 1,
                    _ => withdrawals += 1,
                }
                snapshots += u64::from(matches!(done.snapshot, annal::es::SnapshotWrite::Written(_)));
            }
            Err(CommandError::Rejected(AccountError::Overdraft { .. })) => rejected += 1,
            Err(e) => return Err(e.into()),
        }
        if (n + 1) % (o.events / rounds).max(1) == 0 {
            store.log().sync()?;
            projected += projection.run_until_caught_up()?;
            if reopened == 0 && n + 1 >= o.events / 2 {
                drop(projection);
                projection = open_projection(&store, &upcasters)?;
                reopened += 1;
            }
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    emit(json!({ "phase": "run", "commands": o.events, "deposits": deposits, "withdrawals": withdrawals,
        "rejected_overdrafts": rejected, "snapshots_written": snapshots, "seconds": seconds,
        "commands_per_s": (o.events as f64 / seconds).round() }));

    // The projection, caught up: each account's balance as the repository
    // loads it, and as many events applied as its stream holds.
    store.log().sync()?;
    projected += projection.run_until_caught_up()?;
    let (mut stream_events, mut mismatches, mut replay_mismatches) = (0u64, 0u64, 0u64);
    let mut balances = HashMap::new();
    for i in 0..o.accounts {
        let id = account_id(i);
        let loaded = accounts.load(&id)?;
        let events = loaded.version.map_or(0, |v| v + 1);
        stream_events += events;
        let row =
            projection.model().get(Repository::<Account, Json>::stream_id(&id).as_bytes()).map(|r| decode_row(&r));
        if row != Some((loaded.state.balance, events)) {
            mismatches += 1;
            if mismatches <= 5 {
                failures
                    .push(format!("projection: {id} has {row:?}, the repository ({}, {events})", loaded.state.balance));
            }
        }
        // And the snapshot-accelerated load is the full replay.
        if no_snapshots.replay(&id)?.state != loaded.state {
            replay_mismatches += 1;
            failures.push(format!("{id}: loaded from a snapshot is not its replay"));
        }
        balances.insert(id, loaded.state.balance);
    }
    let exactly_once = mismatches == 0 && projected == stream_events;
    if projected != stream_events {
        failures.push(format!("projection applied {projected} events, the account streams hold {stream_events}"));
    }
    emit(json!({ "phase": "projection", "applied": projected, "events_in_streams": stream_events,
        "reopened": reopened, "accounts_checked": o.accounts, "mismatches": mismatches,
        "snapshot_vs_replay_mismatches": replay_mismatches, "exactly_once": exactly_once }));

    // Loads with and without snapshots: the heavy account, many times, and
    // a sample of ordinary ones (most of which have fewer events than
    // `--snapshot-every`, so no snapshot: with the policy, their loads look
    // for one in vain first).
    let heavy = account_id(0);
    let heavy_events = accounts.load(&heavy)?.version.map_or(0, |v| v + 1);
    let reps = 31;
    let (mut with, mut without, mut replayed_with) = (Vec::new(), Vec::new(), 0);
    for _ in 0..reps {
        let (us, loaded) = time_us(|| accounts.load(&heavy));
        replayed_with = loaded?.replayed;
        with.push(us);
        let (us, loaded) = time_us(|| no_snapshots.load(&heavy));
        loaded?;
        without.push(us);
    }
    let (heavy_with, heavy_without) = (median_us(with), median_us(without));
    let sample: Vec<String> =
        (0..200.min(o.accounts - 1)).map(|_| account_id(1 + rng.below(o.accounts as u64 - 1) as usize)).collect();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for id in &sample {
        let (us, loaded) = time_us(|| accounts.load(id));
        loaded?;
        with.push(us);
        let (us, loaded) = time_us(|| no_snapshots.load(id));
        loaded?;
        without.push(us);
    }
    let typical_events = (stream_events - heavy_events) / (o.accounts as u64 - 1);
    emit(json!({ "phase": "load",
        "heavy": { "id": heavy, "events": heavy_events, "replayed_after_snapshot": replayed_with,
            "median_us_with_snapshot": heavy_with, "median_us_without": heavy_without, "loads": reps },
        "typical": { "accounts": sample.len(), "mean_events": typical_events,
            "median_us_with_snapshot": median_us(with), "median_us_without": median_us(without) } }));

    // State as of past times: the snapshot-accelerated `load_as_of` against
    // the events up to that time applied to a fresh account.
    let mut as_of_ids = vec![heavy.clone()];
    as_of_ids.extend(sample.iter().take(50).cloned());
    let (mut checked, mut from_snapshot, mut differs_from_now, mut as_of_mismatches) = (0u64, 0u64, 0u64, 0u64);
    let mut heavy_as_of = Vec::new();
    for &t in &as_of_times {
        for id in &as_of_ids {
            let loaded = accounts.load_as_of(id, t)?;
            if *id == heavy {
                heavy_as_of.push(json!({ "version": loaded.version, "snapshot": loaded.snapshot,
                    "replayed": loaded.replayed }));
            }
            let mut replayed = Account::default();
            let mut version = None;
            for e in
                store.read_stream(&Repository::<Account, Json>::stream_id(id), 0, Direction::Forward, usize::MAX)?
            {
                if e.timestamp_ms <= t {
                    upcasters.decode(&Json, &e.view(), |ev: AccountEvent| replayed.apply(&ev))?;
                    version = Some(e.version);
                }
            }
            checked += 1;
            from_snapshot += u64::from(loaded.snapshot.is_some());
            differs_from_now += u64::from(replayed.balance != balances[id]);
            if loaded.state != replayed || loaded.version != version {
                as_of_mismatches += 1;
                if as_of_mismatches <= 5 {
                    failures.push(format!(
                        "as of {t}: {id} loads {:?} at {:?}, replays {replayed:?} at {version:?}",
                        loaded.state, loaded.version
                    ));
                }
            }
        }
    }
    if as_of_times.is_empty() {
        failures.push("as of: no time in the middle of the run to check (too few events)".into());
    }
    emit(json!({ "phase": "as_of", "times": as_of_times, "accounts": as_of_ids.len(), "checked": checked,
        "from_snapshot": from_snapshot, "heavy": heavy_as_of, "differs_from_now": differs_from_now,
        "mismatches": as_of_mismatches }));

    let ok = failures.is_empty();
    for f in &failures {
        eprintln!("bank: check failed: {f}");
    }
    emit(json!({ "summary": { "accounts": o.accounts, "events": o.events, "deposits": deposits,
        "withdrawals": withdrawals, "rejected": rejected, "projection_exactly_once": exactly_once,
        "as_of_checked": checked, "as_of_mismatches": as_of_mismatches,
        "heavy_events": heavy_events, "load_us_with_snapshot": heavy_with, "load_us_without": heavy_without,
        "ok": ok } }));
    drop((projection, accounts, no_snapshots));
    match Arc::try_unwrap(store) {
        Ok(store) => store.close()?,
        Err(_) => return Err("the store is still shared at the end".into()),
    }
    Ok(ok)
}
