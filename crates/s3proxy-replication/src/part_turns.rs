//! One write at a time per part on each replica.
//!
//! A part is acknowledged once the quorum holds it; the slower replicas go on writing in
//! the background. A client that uploads the same part number again right after (a retry,
//! or a second body) would then race the first upload's straggler on that replica, and the
//! replica would keep whichever landed last: possibly the first body, which ListParts and
//! the completion would then find there. Writes of one part to one replica therefore take
//! turns, in the order the proxy began them; other parts and other replicas never wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// Which write takes turns: a replica, the upload's id on it, a part number.
type PartSlot = (usize, String, u32);

/// The turns of part writes in flight (see the module documentation).
#[derive(Default)]
pub(crate) struct PartTurns {
    slots: Mutex<HashMap<PartSlot, Arc<tokio::sync::Mutex<()>>>>,
}

/// A part write's turn on one replica; the next write of the part there starts when this
/// is dropped.
pub(crate) struct PartTurn<'a> {
    turns: &'a PartTurns,
    slot: PartSlot,
    guard: Option<OwnedMutexGuard<()>>,
}

impl PartTurns {
    /// Wait for the turn to write `part_number` of `upload_id` to `replica`.
    pub(crate) async fn take(
        &self,
        replica: usize,
        upload_id: &str,
        part_number: u32,
    ) -> PartTurn<'_> {
        let slot = (replica, upload_id.to_string(), part_number);
        let lock = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(slot.clone())
            .or_default()
            .clone();
        PartTurn {
            turns: self,
            slot,
            guard: Some(lock.lock_owned().await),
        }
    }

    /// Parts with a write in flight or waiting (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for PartTurn<'_> {
    fn drop(&mut self) {
        let mut slots = self.turns.slots.lock().unwrap_or_else(|e| e.into_inner());
        self.guard.take();
        // Only the map holds it: no write of this part is waiting, the slot can go.
        if slots
            .get(&self.slot)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            slots.remove(&self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn writes_of_one_part_to_one_replica_take_turns_in_order() {
        let turns = Arc::new(PartTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take(0, "up", 1).await;
        let waiting = {
            let (turns, order) = (turns.clone(), order.clone());
            tokio::spawn(async move {
                let _turn = turns.take(0, "up", 1).await;
                order.lock().unwrap().push("second");
            })
        };
        // Another part, another replica: no wait.
        drop(turns.take(0, "up", 2).await);
        drop(turns.take(1, "up", 1).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        order.lock().unwrap().push("first done");
        drop(first);
        waiting.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first done", "second"]);
        assert_eq!(turns.len(), 0, "no slot is left once every write is done");
    }
}
