//! Wake-ups for `$all` readers: "the store may have new events". A signal is a hint,
//! never a delivery; readers still read from their own position, so a missed or
//! spurious wake-up costs latency, not correctness.

use std::time::Duration;
use tokio::sync::watch;

/// The sending half, owned by a store: bumped after every local commit and on every
/// notification from other processes.
#[derive(Debug)]
pub(crate) struct SignalSender(watch::Sender<u64>);

impl SignalSender {
    pub(crate) fn new() -> Self {
        Self(watch::channel(0).0)
    }

    /// Wakes every subscriber.
    pub(crate) fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> EventSignal {
        EventSignal(self.0.subscribe())
    }
}

/// A subscription to new-event wake-ups, as returned by `EventStore::subscribe`.
#[derive(Debug, Clone)]
pub struct EventSignal(watch::Receiver<u64>);

impl EventSignal {
    /// Waits until new events may have arrived since the last call, or until
    /// `timeout` passes (the polling fallback). Returns whether a wake-up came.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, self.0.changed()).await {
            Ok(Ok(())) => true,
            // The store is gone: fall back to plain polling instead of spinning.
            Ok(Err(_)) => {
                tokio::time::sleep(timeout).await;
                false
            }
            Err(_) => false,
        }
    }
}
