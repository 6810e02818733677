//! The workload of the crash tests of `annal::es` (crash_sim_es, crash_es):
//! accounts changed through the repository with snapshots, a balance
//! projection, and a process manager that notes each deposit and fires a
//! timeout per account; and the check of their exactly-once invariants.

use std::sync::Arc;
use std::time::Duration;

use annal::es::{
    Effects, Json, KvModel, ProcessManager, ProcessRunner, Projection, ProjectionRunner, ProjectionSource, Repository,
    Rows, SnapshotPolicy, Timeout,
};
use annal::events::{Direction, EventStore, EventStoreConfig, NewEvent, RecordedEvent, SubscriptionTarget};
use annal::io::Io;
use annal::{Durability, LogConfig};

use super::bank::{Account, AccountEvent};

pub const ACCOUNTS: usize = 3;
pub const DAY_MS: i64 = 86_400_000;

pub fn config(io: Option<Arc<dyn Io>>) -> EventStoreConfig {
    let mut log = LogConfig::default().with_durability(Durability::Always).with_segment_bytes(64 * 1024);
    if let Some(io) = io {
        log = log.with_io(io);
    }
    EventStoreConfig::default().with_log_config(log).with_flush_entries(16).with_merge_runs(3)
}

pub fn repo(store: &Arc<EventStore>) -> Repository<Account, Json> {
    Repository::new(Arc::clone(store), Json).with_snapshots(SnapshotPolicy::EveryEvents(3)).with_kept_snapshots(2)
}

pub struct Balances;

impl Projection for Balances {
    fn handle(&mut self, event: &RecordedEvent, rows: &mut Rows<'_>) -> Result<(), String> {
        let e: AccountEvent = serde_json::from_slice(&event.data).map_err(|e| e.to_string())?;
        let key = event.stream.as_bytes();
        let balance = rows.get(key).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
        let balance = match e {
            AccountEvent::Opened => balance,
            AccountEvent::Deposited { amount, .. } => balance + amount,
            AccountEvent::Withdrawn { amount } => balance - amount,
        };
        rows.put(key, balance.to_le_bytes());
        Ok(())
    }
}

/// Notes each deposit in `notes-{account}`; a timeout per account.
pub struct Notary;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct NotaryState {
    pub noted: u64,
    pub timed_out: bool,
}

impl ProcessManager for Notary {
    type State = NotaryState;

    fn instance(&self, event: &RecordedEvent) -> Option<String> {
        event.stream.strip_prefix("account-").map(str::to_owned)
    }

    fn react(&mut self, state: &mut NotaryState, event: &RecordedEvent, effects: &mut Effects) -> Result<(), String> {
        let account = event.stream.strip_prefix("account-").expect("an account");
        match event.event_type.as_str() {
            "Opened" => effects.schedule("review", Duration::from_secs(3600), Vec::new()),
            "Deposited" => {
                state.noted += 1;
                effects
                    .emit(format!("notes-{account}"), NewEvent::binary("Noted", event.position.to_le_bytes().to_vec()));
            }
            _ => {}
        }
        Ok(())
    }

    fn timeout(&mut self, state: &mut NotaryState, timeout: &Timeout, effects: &mut Effects) -> Result<(), String> {
        state.timed_out = true;
        effects.emit(format!("notes-{}", timeout.instance), NewEvent::binary("TimedOut", Vec::new()));
        Ok(())
    }
}

pub fn notary(store: &Arc<EventStore>) -> annal::es::Result<ProcessRunner<Notary, Json>> {
    ProcessRunner::open(Arc::clone(store), "notary", SubscriptionTarget::Category("account".into()), Notary, Json)
}

pub fn balances(store: &Arc<EventStore>) -> annal::es::Result<ProjectionRunner<KvModel<Balances>>> {
    let model = KvModel::open(Arc::clone(store), "balances", Balances)?.with_rewrite_after(4);
    Ok(ProjectionRunner::new(Arc::clone(store), "balances", ProjectionSource::Category("account".into()), model)?
        .with_batch_size(3))
}

/// What the workload was told: the checkpoints last acknowledged, and the
/// timeouts whose firing was.
#[derive(Debug, Default, Clone, Copy)]
pub struct Acked {
    pub projection: u64,
    pub notary: u64,
    pub fired: usize,
}

/// Checks the store in `dir` (opened with the real file system) against
/// what was acknowledged (see crash_sim_es.rs for the invariants).
pub fn check(acked: &Acked, dir: &std::path::Path) -> Result<(), String> {
    let store = match EventStore::open(dir, config(None)) {
        Ok(s) => Arc::new(s),
        Err(e) if acked.projection == 0 => {
            // The crash came before the store was whole: nothing acknowledged.
            let _ = e;
            return Ok(());
        }
        Err(e) => return Err(format!("open: {e}")),
    };
    let err = |e: annal::es::Error| e.to_string();
    let accounts = repo(&store);
    let mut projection = balances(&store).map_err(err)?;
    let pm = notary(&store).map_err(err)?;
    let p_checkpoint = projection.checkpoint().map_err(err)?;
    if p_checkpoint < acked.projection {
        return Err(format!("the projection is at {p_checkpoint}, {} was acknowledged", acked.projection));
    }
    if pm.checkpoint() < acked.notary {
        return Err(format!("the process manager is at {}, {} was acknowledged", pm.checkpoint(), acked.notary));
    }
    let mut fired = 0;
    for a in 0..ACCOUNTS {
        let stream = format!("account-{a}");
        let events = store.read_stream(&stream, 0, Direction::Forward, 1000).map_err(|e| e.to_string())?;
        // The projection: exactly the events below its checkpoint.
        let mut expected = None;
        for e in events.iter().filter(|e| e.position < p_checkpoint) {
            let ev: AccountEvent = serde_json::from_slice(&e.data).map_err(|e| e.to_string())?;
            let b = expected.unwrap_or(0i64);
            expected = Some(match ev {
                AccountEvent::Opened => b,
                AccountEvent::Deposited { amount, .. } => b + amount,
                AccountEvent::Withdrawn { amount } => b - amount,
            });
        }
        let got = projection.model().get(stream.as_bytes()).map(|b| i64::from_le_bytes(b.try_into().expect("8")));
        if got != expected {
            return Err(format!(
                "{stream}: projected balance {got:?}, a replay below {p_checkpoint} gives {expected:?}"
            ));
        }
        // The process manager: one note per deposit below its checkpoint.
        let deposits: Vec<u64> = events
            .iter()
            .filter(|e| e.event_type == "Deposited" && e.position < pm.checkpoint())
            .map(|e| e.position)
            .collect();
        let notes = store.read_stream(&format!("notes-{a}"), 0, Direction::Forward, 1000).map_err(|e| e.to_string())?;
        let noted: Vec<u64> = notes
            .iter()
            .filter(|e| e.event_type == "Noted")
            .map(|e| u64::from_le_bytes(e.data.as_slice().try_into().expect("8 bytes")))
            .collect();
        if noted != deposits {
            return Err(format!("notes of account {a}: {noted:?}; deposits below {}: {deposits:?}", pm.checkpoint()));
        }
        let timed_out = notes.iter().filter(|e| e.event_type == "TimedOut").count();
        if timed_out > 1 {
            return Err(format!("account {a} timed out {timed_out} times"));
        }
        fired += timed_out;
        let states = store
            .read_stream(&format!("$pm-notary-{a}"), u64::MAX, Direction::Backward, 1)
            .map_err(|e| e.to_string())?;
        let state: NotaryState = match states.first() {
            Some(e) => serde_json::from_slice(&e.data).map_err(|e| e.to_string())?,
            None => NotaryState::default(),
        };
        if state.noted != noted.len() as u64 || state.timed_out != (timed_out == 1) {
            return Err(format!("account {a}: state {state:?} with {} notes, {timed_out} timeouts", noted.len()));
        }
        // Snapshots never change what an aggregate loads as.
        let loaded = accounts.load(&a.to_string()).map_err(err)?;
        let replayed = accounts.replay(&a.to_string()).map_err(err)?;
        if (loaded.state != replayed.state) || loaded.version != replayed.version {
            return Err(format!("account {a} loads as {:?}, replays as {:?}", loaded.state, replayed.state));
        }
    }
    if fired < acked.fired {
        return Err(format!("{fired} timeouts fired, {} acknowledged", acked.fired));
    }
    // Nothing is left half done: a further batch after the crash gives the
    // same results.
    drop((projection, pm, accounts));
    Arc::try_unwrap(store).map_err(|_| "the store is shared".to_owned())?.close().map_err(|e| format!("close: {e}"))
}
