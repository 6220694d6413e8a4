//! What the repair journal holds that is not making progress, for operators.

use crate::Replicated;
use crate::journal::Entry;

impl Replicated {
    /// The pending journal entries whose repair failed, with how many times in a row
    /// (this process's attempts), most failures first. Entries waiting for their backend
    /// to come back, or for a replica that may hold the only copy, are pending but not
    /// failing.
    pub fn failing_repairs(&self) -> Vec<(Entry, u32)> {
        let backoff = self
            .shared
            .repair_backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut failing: Vec<(Entry, u32)> = self
            .shared
            .journal
            .pending()
            .into_iter()
            .filter_map(|e| backoff.get(&e.id()).map(|(n, _, _, _)| (e, *n)))
            .collect();
        failing.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        failing
    }
}
