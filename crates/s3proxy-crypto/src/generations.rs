//! The bounded map behind the encryption layer's caches (the listing cache and the cache
//! of opened records): two generations, an approximation of LRU with O(1) work per
//! operation and at most the budget in use.

use std::collections::HashMap;

/// What an entry is found by: (bucket, key).
pub(crate) type Id = (String, String);

/// An entry's share of the budget, in bytes (an estimate, the id's strings included).
pub(crate) trait Cost {
    fn cost(&self, id: &Id) -> usize;
}

/// Entries go into `hot`; when `hot` has used half the budget it becomes `cold` (the
/// previous `cold` is dropped), and a hit in `cold` moves the entry back into `hot`.
pub(crate) struct Generations<E> {
    pub(crate) hot: HashMap<Id, E>,
    pub(crate) hot_bytes: usize,
    pub(crate) cold: HashMap<Id, E>,
    pub(crate) cold_bytes: usize,
}

impl<E> Default for Generations<E> {
    fn default() -> Self {
        Generations {
            hot: HashMap::new(),
            hot_bytes: 0,
            cold: HashMap::new(),
            cold_bytes: 0,
        }
    }
}

impl<E: Cost> Generations<E> {
    /// Remove the entry of `id` from whichever generation holds it.
    pub(crate) fn take(&mut self, id: &Id) -> Option<E> {
        if let Some(e) = self.hot.remove(id) {
            self.hot_bytes -= e.cost(id);
            return Some(e);
        }
        let e = self.cold.remove(id)?;
        self.cold_bytes -= e.cost(id);
        Some(e)
    }

    /// Put an entry (whose id is in neither generation) into `hot`; one that would use
    /// more than half the budget is not kept.
    pub(crate) fn place(&mut self, budget: usize, id: Id, entry: E) {
        let cost = entry.cost(&id);
        if cost > budget / 2 {
            return;
        }
        if self.hot_bytes + cost > budget / 2 {
            self.cold = std::mem::take(&mut self.hot);
            self.cold_bytes = std::mem::take(&mut self.hot_bytes);
        }
        self.hot.insert(id, entry);
        self.hot_bytes += cost;
    }
}
