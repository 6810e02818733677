//! A bank account aggregate for the tests of `annal::es`: opened, deposits
//! and withdrawals, no overdraft.

use annal::es::{Aggregate, DomainEvent, Upcasters};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub open: bool,
    pub balance: i64,
    pub deposits: u64,
    pub withdrawals: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountCommand {
    Open,
    Deposit(i64),
    Withdraw(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
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
pub enum AccountError {
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

/// The same account with another snapshot version: its old snapshots are
/// not used.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountV2(pub Account);

impl Aggregate for AccountV2 {
    const TYPE: &'static str = "account";
    const SNAPSHOT_VERSION: u32 = 2;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        self.0.handle(command)
    }

    fn apply(&mut self, event: &AccountEvent) {
        self.0.apply(event);
    }
}

/// Version 1 deposits had no currency (they were in dollars), and a
/// deposit was once called `Credited`.
pub fn deposit_upcasters() -> Upcasters {
    Upcasters::new()
        .register_json("Deposited", 1, "add-currency", |mut v| {
            v["currency"] = "USD".into();
            Ok(vec![("Deposited".into(), v)])
        })
        .register_json("Credited", 1, "rename-credited", |v| Ok(vec![("Deposited".into(), v)]))
}
