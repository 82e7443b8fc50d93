//! A new aggregate of your own, beside the order: a bank account that cannot go
//! overdrawn. Run it with `cargo run --example custom_aggregate`.
//!
//! It shows the three things an aggregate is — state, `decide`, `apply` — and what
//! the command handler adds: optimistic concurrency, idempotency keys, and typed
//! rejections.

use ordo_core::{
    Aggregate, CommandError, CommandHandler, CommandRequest, DomainEvent, HandlerConfig, IdempotencyKey, RejectionKind,
};
use serde::{Deserialize, Serialize};

/// The state, rebuilt from events. `Default` is "no account yet".
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Account {
    open: bool,
    balance_cents: i64,
}

enum AccountCommand {
    Open,
    Deposit { cents: i64 },
    Withdraw { cents: i64 },
}

/// Events, stored under their variant names. Never rename one: add an upcaster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum AccountEvent {
    Opened {},
    Deposited { cents: i64 },
    Withdrew { cents: i64 },
}

impl DomainEvent for AccountEvent {}

#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
enum AccountRejection {
    #[error("no such account")]
    NotFound,
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("insufficient funds: balance {balance_cents}, asked {asked_cents}")]
    InsufficientFunds { balance_cents: i64, asked_cents: i64 },
    #[error("amounts are positive")]
    NotPositive,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Rejection = AccountRejection;

    fn decide(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountRejection> {
        match command {
            AccountCommand::Open if self.open => Err(AccountRejection::AlreadyOpen),
            AccountCommand::Open => Ok(vec![AccountEvent::Opened {}]),
            _ if !self.open => Err(AccountRejection::NotFound),
            AccountCommand::Deposit { cents } | AccountCommand::Withdraw { cents } if *cents <= 0 => {
                Err(AccountRejection::NotPositive)
            }
            AccountCommand::Deposit { cents } => Ok(vec![AccountEvent::Deposited { cents: *cents }]),
            AccountCommand::Withdraw { cents } if *cents > self.balance_cents => {
                Err(AccountRejection::InsufficientFunds { balance_cents: self.balance_cents, asked_cents: *cents })
            }
            AccountCommand::Withdraw { cents } => Ok(vec![AccountEvent::Withdrew { cents: *cents }]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened {} => self.open = true,
            AccountEvent::Deposited { cents } => self.balance_cents += cents,
            AccountEvent::Withdrew { cents } => self.balance_cents -= cents,
        }
    }

    fn rejection_kind(rejection: &AccountRejection) -> RejectionKind {
        match rejection {
            AccountRejection::NotFound => RejectionKind::NotFound,
            AccountRejection::AlreadyOpen => RejectionKind::AlreadyExists,
            AccountRejection::InsufficientFunds { .. } => RejectionKind::RuleViolation,
            AccountRejection::NotPositive => RejectionKind::Invalid,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = ordo_store::connect(&format!("sqlite://{}", dir.path().join("bank.db").display())).await?;
    let accounts = CommandHandler::<Account>::new(store, HandlerConfig::default());

    accounts.handle(CommandRequest::new("alice", AccountCommand::Open)).await?;
    let deposit = IdempotencyKey::new("deposits", "d-1", "100")?;
    for attempt in 1..=2 {
        // The retry (same key) replays the first outcome instead of depositing twice.
        let done = accounts
            .handle(
                CommandRequest::new("alice", AccountCommand::Deposit { cents: 100 }).with_idempotency(deposit.clone()),
            )
            .await?;
        println!("deposit attempt {attempt}: version {}, replayed: {}", done.version, done.replayed);
    }
    match accounts.handle(CommandRequest::new("alice", AccountCommand::Withdraw { cents: 500 })).await {
        Err(CommandError::Rejected { rejection, .. }) => println!("withdraw 500 refused: {rejection}"),
        other => anyhow::bail!("expected a rejection, got {other:?}"),
    }
    let stream = CommandHandler::<Account>::stream_id("alice")?;
    let (version, account) = accounts.load(&stream).await?;
    println!("alice at version {version}: balance {} cents", account.balance_cents);
    anyhow::ensure!(account.balance_cents == 100, "the deposit took effect once");
    Ok(())
}
