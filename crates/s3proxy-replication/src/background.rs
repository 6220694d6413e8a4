//! The background work: probing backends whose circuit is open, and replaying the repair
//! journal when a backend comes back and every few seconds while entries are pending.

use crate::Replicated;
use std::time::Duration;

impl Replicated {
    /// Probe every backend whose circuit is open and due a probe; a success closes it.
    pub async fn probe_open_circuits(&self) {
        for (i, r) in self.replicas().iter().enumerate() {
            if r.health.wants_probe() {
                let probe = self
                    .call_checked(i, |b| async move { b.list_buckets().await }, true)
                    .await;
                if probe.is_err() {
                    log::debug!("backend {} still unavailable", r.backend.name());
                }
            }
        }
    }

    /// Replay the journal once: every entry whose backend is available. Returns how many
    /// entries are still pending.
    pub async fn replay_journal(&self) -> usize {
        self.probe_open_circuits().await;
        if let Err(e) = self.shared.journal.reload() {
            log::warn!("cannot reload the repair journal: {e}");
        }
        for entry in self.shared.journal.pending() {
            self.repair_and_clear(&entry).await;
        }
        self.shared.journal.len()
    }

    /// Start the background work: probe backends whose circuit is open, and replay the
    /// journal when a backend comes back and every few seconds while entries are pending.
    pub fn start_background(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = this.shared.wake_repair.notified() => {
                        // Let a burst of writes settle before replaying.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                this.probe_open_circuits().await;
                if !this.shared.journal.is_empty() {
                    let left = this.replay_journal().await;
                    if left > 0 {
                        log::info!("repair journal: {left} entries pending");
                    }
                }
            }
        })
    }
}
