//! The aggregate of the event-sourcing workloads, one type for both
//! frameworks: a bank account (as annal's benches/es.rs and
//! tests/common/bank.rs), opened, then deposits. It decides the same events
//! from the same state under annal's `Aggregate` and cqrs-es's, and they are
//! the same JSON.

use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

/// The state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub balance: i64,
    pub deposits: u64,
}

/// What an account is asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    Open,
    Deposit(i64),
    /// `count` deposits of `amount` at once (to write a long stream quickly).
    DepositMany {
        count: u32,
        amount: i64,
    },
}

/// What happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened,
    Deposited { amount: i64, currency: String },
}

/// Why it refuses a command.
#[derive(Debug)]
pub struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refused {}

impl Account {
    /// The events `command` decides on, or a refusal.
    fn decide(&self, command: &Command) -> Result<Vec<AccountEvent>, Refused> {
        let deposit = |amount| AccountEvent::Deposited { amount, currency: "USD".into() };
        match *command {
            Command::Open if self.open => Err(Refused("open already")),
            Command::Open => Ok(vec![AccountEvent::Opened]),
            _ if !self.open => Err(Refused("not open")),
            Command::Deposit(amount) => Ok(vec![deposit(amount)]),
            Command::DepositMany { count, amount } => Ok((0..count).map(|_| deposit(amount)).collect()),
        }
    }

    fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened => self.open = true,
            AccountEvent::Deposited { amount, .. } => {
                self.balance += amount;
                self.deposits += 1;
            }
        }
    }
}

impl AccountEvent {
    fn name(&self) -> &'static str {
        match self {
            AccountEvent::Opened => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
        }
    }
}

impl annal::es::DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        self.name()
    }
}

impl annal::es::Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = Command;
    type Event = AccountEvent;
    type Error = Refused;

    fn handle(&self, command: &Command) -> Result<Vec<AccountEvent>, Refused> {
        self.decide(command)
    }

    fn apply(&mut self, event: &AccountEvent) {
        self.evolve(event);
    }
}

impl cqrs_es::DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        self.name().to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

impl cqrs_es::Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = Command;
    type Event = AccountEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(&mut self, command: Command, _: &(), sink: &EventSink<Self>) -> Result<(), Refused> {
        // `EventSink::write` applies each event to the state it is given, and
        // cqrs-es 0.5.0's snapshot store applies the command's events again
        // to the same (loaded) state before it stores it as the snapshot:
        // written to `self`, every snapshot would count its command's events
        // twice. Written to a copy, the snapshots are right (and the copy is
        // the state the handler would see, were it to look).
        let mut scratch = self.clone();
        for event in self.decide(&command)? {
            sink.write(event, &mut scratch).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        self.evolve(&event);
    }
}
