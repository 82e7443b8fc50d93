//! Cross-node wake-ups. `NOTIFY` inside the append's transaction would serialize every
//! commit on PostgreSQL's notification-queue lock, so appends only poke this task,
//! which sends at most one `pg_notify` per [`COALESCE`] window outside of them. Each
//! node listens and turns notifications into its local signal. Readers poll as well,
//! so a lost notification costs latency, never an event.

use sqlx::postgres::{PgListener, PgPool};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::signal::SignalSender;
use crate::StoreError;

const CHANNEL: &str = "ordo_events";
const COALESCE: Duration = Duration::from_millis(5);

#[derive(Clone)]
pub(crate) struct Notifier {
    pokes: mpsc::Sender<()>,
}

impl Notifier {
    pub(crate) async fn start(pool: PgPool, signal: Arc<SignalSender>) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        tokio::spawn(listen(listener, Arc::downgrade(&signal)));
        // Capacity 1: a poke that finds one pending is already covered by it.
        let (pokes, rx) = mpsc::channel(1);
        tokio::spawn(send_notifications(pool, rx));
        Ok(Self { pokes })
    }

    /// Asks for a notification soon; never blocks an append.
    pub(crate) fn poke(&self) {
        let _ = self.pokes.try_send(());
    }
}

async fn send_notifications(pool: PgPool, mut pokes: mpsc::Receiver<()>) {
    while pokes.recv().await.is_some() {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(CHANNEL).execute(&pool).await {
            tracing::debug!(error = %e, "could not send the new-events notification; readers will poll");
        }
        tokio::time::sleep(COALESCE).await;
    }
}

/// Runs until the store (the owner of `signal`) is dropped.
async fn listen(mut listener: PgListener, signal: Weak<SignalSender>) {
    loop {
        // `recv` reconnects by itself after a lost connection; a notification sent
        // meanwhile is lost, which the readers' polling covers.
        let received = tokio::time::timeout(Duration::from_secs(1), listener.recv()).await;
        let Some(signal) = signal.upgrade() else {
            return;
        };
        match received {
            Ok(Ok(_)) => signal.notify(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "listening for new events failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => {}
        }
    }
}
