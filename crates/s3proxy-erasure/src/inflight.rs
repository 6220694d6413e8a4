//! What is in flight per key: writes (PUT, copy, completion, delete) and repairs of one
//! key take turns, and a repair gives way to a client write that arrives.
//!
//! The idea is the replication layer's in-flight registry (a table of the keys being
//! written, which repair consults before it touches a key), made stricter: there,
//! overlapping writes may run side by side because every replica is a whole version, so
//! the worst an overlap leaves is replicas that disagree, which a check settles by
//! comparing stamps. Here each backend holds a different shard, and two writes of one key
//! whose shards land in different orders on different backends can leave *neither*
//! version with k shards (4 + 2: three of each): an acknowledged write would be gone. So
//! operations that change a key's version run one after the other, in the order they
//! asked (tokio's mutex is fair). A repair that read an older version must likewise never
//! put its shard back over a newer write: it takes the same turn, never waits for it (a
//! key busy with a client write is left in the journal for the next replay), and its
//! body fails, before it can commit, when a client write is waiting for the key.
//!
//! This orders the operations of one proxy instance; instances that write one key at the
//! same moment are not coordinated (docs/ERASURE.md, "Known gaps").

use s3proxy_core::{BucketName, Error, ObjectKey, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// One key's turn, and how many client writes are waiting for it.
#[derive(Clone, Default)]
struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    waiting: Arc<AtomicUsize>,
    /// Registrations (holders and waiters) sharing this slot; the slot goes at zero.
    users: usize,
}

/// The keys with an operation in flight.
#[derive(Default)]
pub(crate) struct Inflight {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

/// A registration in the table: keeps the key's slot alive until dropped.
struct Registration {
    table: Arc<Inflight>,
    id: (String, String),
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slots = self.table.lock();
        if let Some(slot) = slots.get_mut(&self.id) {
            slot.users -= 1;
            if slot.users == 0 {
                slots.remove(&self.id);
            }
        }
    }
}

/// Counts a client write as waiting while it is alive (also when its future is dropped
/// before its turn came: a client that went away).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The turn of one key: held for the whole of a write or repair of it, and for one more
/// backend timeout after a backend call of it was cut off ([`KeyTurn::cut_off`]).
pub(crate) struct KeyTurn {
    // Released before the registration goes (a tuple drops in order).
    held: Option<(OwnedMutexGuard<()>, Registration)>,
    waiting: Arc<AtomicUsize>,
    cut_off: CutOff,
}

impl KeyTurn {
    /// What a repair's body checks as it streams: whether a client write is waiting for
    /// the key (the repair then stops before its shard commits, so the newer write is
    /// neither held up by it nor undone by it).
    pub(crate) fn watch(&self) -> WriteWatch {
        WriteWatch(self.waiting.clone())
    }

    /// What a backend call of this turn marks when it is cut off.
    pub(crate) fn cut_off(&self) -> &CutOff {
        &self.cut_off
    }
}

impl Drop for KeyTurn {
    fn drop(&mut self) {
        let linger = Duration::from_millis(self.cut_off.0.load(Ordering::SeqCst));
        let Some(held) = self.held.take() else { return };
        if linger.is_zero() {
            return;
        }
        // A backend cut off after it had the whole request (a PUT's body, a delete, a
        // copy) may still apply it once the connection is gone: the key stays taken for
        // that long, so that no repair judges it (and no later write is overtaken by it)
        // before it could land. Its miss is in the journal, checked after that.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(linger).await;
                drop(held);
            });
        }
    }
}

/// Set when a backend call of a key's turn was cut off while the backend may still apply
/// it; the turn then lingers (see [`KeyTurn`]) for the longest duration marked, in ms.
#[derive(Clone, Default)]
pub(crate) struct CutOff(Arc<AtomicU64>);

impl CutOff {
    /// Keep the key's turn `linger` longer once it is released.
    pub(crate) fn mark(&self, linger: Duration) {
        let ms = u64::try_from(linger.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_max(ms, Ordering::SeqCst);
    }
}

/// [`KeyTurn::watch`]: detached from the turn, for a body stream, which cannot borrow it.
#[derive(Clone)]
pub(crate) struct WriteWatch(Arc<AtomicUsize>);

impl WriteWatch {
    /// Whether a client write is waiting for the key.
    pub(crate) fn write_waiting(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

impl Inflight {
    /// The table (a poisoned lock still holds a consistent map).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>, bucket: &BucketName, key: &ObjectKey) -> (Slot, Registration) {
        let id = (bucket.to_string(), key.to_string());
        let mut slots = self.lock();
        let slot = slots.entry(id.clone()).or_default();
        slot.users += 1;
        let slot = slot.clone();
        drop(slots);
        let registration = Registration {
            table: self.clone(),
            id,
        };
        (slot, registration)
    }

    /// Wait for the key's turn (a client write, copy or delete of it), at most `limit`:
    /// a write whose client trickles its body holds the turn that long, and the writes
    /// behind it get [`Error::SlowDown`] (a 503 clients retry) rather than wait forever.
    pub(crate) async fn write_turn(
        self: &Arc<Self>,
        bucket: &BucketName,
        key: &ObjectKey,
        limit: Duration,
    ) -> Result<KeyTurn> {
        let (slot, registration) = self.register(bucket, key);
        slot.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(slot.waiting.clone());
        let turn = tokio::time::timeout(limit, slot.turn.clone().lock_owned()).await;
        drop(waiting);
        let Ok(turn) = turn else {
            log::warn!("{bucket}/{key}: another write of the key held it for {limit:?}");
            return Err(Error::SlowDown);
        };
        Ok(KeyTurn {
            held: Some((turn, registration)),
            waiting: slot.waiting,
            cut_off: CutOff::default(),
        })
    }

    /// The key's turn for a repair, if no write holds or awaits it now.
    pub(crate) fn repair_turn(
        self: &Arc<Self>,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Option<KeyTurn> {
        let (slot, registration) = self.register(bucket, key);
        if slot.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let turn = slot.turn.clone().try_lock_owned().ok()?;
        Some(KeyTurn {
            held: Some((turn, registration)),
            waiting: slot.waiting,
            cut_off: CutOff::default(),
        })
    }

    /// Keys with an operation in flight or waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn id() -> (BucketName, ObjectKey) {
        (
            BucketName::new("bucket").unwrap(),
            ObjectKey::new("k").unwrap(),
        )
    }

    #[tokio::test]
    async fn writes_of_one_key_take_turns_and_repairs_give_way() {
        let table = Arc::new(Inflight::default());
        let (b, k) = id();
        let first = table.write_turn(&b, &k, LONG).await.unwrap();
        assert!(table.repair_turn(&b, &k).is_none(), "a write holds the key");
        let t = table.clone();
        let (b2, k2) = (b.clone(), k.clone());
        let second = tokio::spawn(async move { t.write_turn(&b2, &k2, LONG).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !second.is_finished(),
            "the second write waits for the first"
        );
        assert!(first.watch().write_waiting());
        drop(first);
        let second = second.await.unwrap();
        assert!(!second.watch().write_waiting());
        drop(second);
        let repair = table.repair_turn(&b, &k).expect("the key is free");
        assert!(!repair.watch().write_waiting());
        let t = table.clone();
        let waiter = tokio::spawn(async move { t.write_turn(&b, &k, LONG).await.unwrap() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            repair.watch().write_waiting(),
            "the repair sees the write waiting"
        );
        drop(repair);
        drop(waiter.await.unwrap());
        assert_eq!(table.len(), 0, "no slot is left behind");
    }

    #[tokio::test]
    async fn a_write_that_gave_up_waiting_leaves_no_trace() {
        let table = Arc::new(Inflight::default());
        let (b, k) = id();
        let held = table.write_turn(&b, &k, LONG).await.unwrap();
        let gave_up = table.write_turn(&b, &k, Duration::from_millis(10)).await;
        assert!(matches!(gave_up, Err(Error::SlowDown)));
        assert!(
            !held.watch().write_waiting(),
            "a dropped waiter no longer counts"
        );
        drop(held);
        assert_eq!(table.len(), 0);
    }
}
