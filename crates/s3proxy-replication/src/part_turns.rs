//! One write at a time per part on each replica.
//!
//! A part is acknowledged once the quorum holds it; the slower replicas go on writing in
//! the background. A client that uploads the same part number again right after (a retry,
//! or a second body) would then race the first upload's straggler on that replica, and the
//! replica would keep whichever landed last: possibly the first body, which ListParts and
//! the completion would then find there. So a part write (UploadPart, UploadPartCopy) takes
//! the part's turn on every replica of the upload before it sends anything, in replica
//! order (two writes of one part never hold each other's turns), and holds each until that
//! replica has answered. Other parts never wait.
//!
//! A replica whose turn does not come within its backend timeout (the earlier write still
//! hangs there) is left out of this write, which journals nothing for a part: the replica
//! then fails the completion, as it would after any missed part. Turns are per process: a
//! retry that reaches another instance is not ordered with the first, and a write the
//! proxy abandoned (no answer in time) releases its turn though the backend may still
//! commit it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// Which write takes turns: a replica, the upload's id on it, a part number.
type PartSlot = (usize, String, u32);
type Slots = Arc<Mutex<HashMap<PartSlot, Arc<tokio::sync::Mutex<()>>>>>;

/// The turns of part writes in flight (see the module documentation).
#[derive(Default)]
pub(crate) struct PartTurns {
    slots: Slots,
}

/// A part write's turn on one replica; the next write of the part there starts when this
/// is dropped. Dropped while still waiting (the request went away), it leaves no slot.
pub(crate) struct PartTurn {
    slots: Slots,
    slot: PartSlot,
    guard: Option<OwnedMutexGuard<()>>,
}

impl PartTurns {
    /// Wait up to `wait` for the turn to write `part_number` of `upload_id` to `replica`;
    /// `None` when it did not come.
    pub(crate) async fn take(
        &self,
        replica: usize,
        upload_id: &str,
        part_number: u32,
        wait: Duration,
    ) -> Option<PartTurn> {
        let slot = (replica, upload_id.to_string(), part_number);
        let lock = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(slot.clone())
            .or_default()
            .clone();
        // Built before the wait, so that a wait cut short still cleans up in `drop`.
        let mut turn = PartTurn {
            slots: self.slots.clone(),
            slot,
            guard: None,
        };
        turn.guard = Some(tokio::time::timeout(wait, lock.lock_owned()).await.ok()?);
        Some(turn)
    }

    /// Parts with a write in flight or waiting (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for PartTurn {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        self.guard.take();
        // Only the map holds it: no write of this part is waiting, the slot can go. (A
        // waiter holds a clone until its own turn is dropped, which comes here too.)
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

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn writes_of_one_part_to_one_replica_take_turns_in_order() {
        let turns = Arc::new(PartTurns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take(0, "up", 1, WAIT).await.unwrap();
        let waiting = {
            let (turns, order) = (turns.clone(), order.clone());
            tokio::spawn(async move {
                let _turn = turns.take(0, "up", 1, WAIT).await.unwrap();
                order.lock().unwrap().push("second");
            })
        };
        // Another part, another replica: no wait.
        drop(turns.take(0, "up", 2, WAIT).await.unwrap());
        drop(turns.take(1, "up", 1, WAIT).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
        order.lock().unwrap().push("first done");
        drop(first);
        waiting.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first done", "second"]);
        assert_eq!(turns.len(), 0, "no slot is left once every write is done");
    }

    #[tokio::test]
    async fn a_turn_that_does_not_come_in_time_or_whose_wait_is_dropped_leaves_no_slot() {
        let turns = PartTurns::default();
        let held = turns.take(0, "up", 1, WAIT).await.unwrap();
        assert!(
            turns
                .take(0, "up", 1, Duration::from_millis(20))
                .await
                .is_none()
        );
        // A waiter cancelled (its request went away) while the holder lets go.
        let waiter = turns.take(0, "up", 1, WAIT);
        let cancelled = tokio::time::timeout(Duration::from_millis(20), waiter).await;
        assert!(cancelled.is_err());
        drop(held);
        assert_eq!(turns.len(), 0);
    }
}
