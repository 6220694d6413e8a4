//! A bounded cache of opened encryption records: the data key unwrapped from an object's
//! wrapped key, and what its sealed info record says, so that a HEAD or GET of an object
//! read before opens neither again (two AEAD opens, a base64 decode and a JSON parse per
//! request otherwise; issue #18).
//!
//! An entry is keyed by (bucket, key, stored ETag) *and* holds the exact record texts it
//! was opened from; it is used only when the stored object carries byte-identical
//! records. Opening is a pure function of those texts and the keyring, so a hit gives
//! exactly what opening them again would give, and an entry can never be stale:
//! - a changed object has a new stored ETag (fresh nonces under a fresh data key);
//! - a metadata update in place (a copy onto itself, which keeps the ETag on S3) or a key
//!   rotation (`rotate-keys` re-wraps the data key by such a copy) changes the records;
//! - a tampered record differs from the one that authenticated, so it is opened (and
//!   refused) as if nothing were cached.
//!
//! What depends on the rest of the stored object is still checked on every request: the
//! hash of its content headers and user metadata against the info record, and its stored
//! size against the layout. The keyring of an [`Encrypted`](super::Encrypted) never
//! changes, so a rotation that retires a key (a new configuration) starts from an empty
//! cache; the layer also forgets an entry whenever it writes, copies onto or deletes the
//! object itself.
//!
//! Holding data keys in memory exposes nothing the master keys beside them do not.

use crate::format::Layout;
use s3proxy_core::ETag;
use std::sync::Mutex;

/// Default memory budget: about 10,000 single-PUT objects with 50-byte keys. The bytes
/// counted per entry are an estimate (allocator and hash-map slack included roughly).
pub(crate) const DEFAULT_OPENED_CACHE_BYTES: usize = 8 << 20;

/// Bytes counted per entry besides its strings: the map slot, the string headers, the
/// key and the layout's vector header, and the allocator's and the map's slack.
const ENTRY_OVERHEAD: usize = 400;
/// Bytes counted per part of a layout.
const PART_COST: usize = 32;

/// What an info record said, once opened and checked for consistency with its layout.
#[derive(Clone)]
pub(crate) struct OpenedInfo {
    pub layout: Layout,
    /// The plaintext ETag.
    pub etag: ETag,
    /// Stored bytes after the last segment.
    pub trailer: u64,
    /// The metadata hash the record authenticates (checked against the stored metadata on
    /// every use).
    pub meta: String,
}

/// An object's records, opened.
#[derive(Clone)]
pub(crate) struct Opened {
    pub data_key: [u8; 32],
    /// `None` when the object carries no info record.
    pub info: Option<OpenedInfo>,
}

struct Entry {
    stored_etag: String,
    wrapped: String,
    sealed: Option<String>,
    opened: Opened,
}

impl Entry {
    fn cost(id: &(String, String), e: &Entry) -> usize {
        let info = e.opened.info.as_ref().map_or(0, |i| {
            i.etag.as_str().len() + i.meta.len() + PART_COST * i.layout.parts().len()
        });
        ENTRY_OVERHEAD
            + id.0.len()
            + id.1.len()
            + e.stored_etag.len()
            + e.wrapped.len()
            + e.sealed.as_ref().map_or(0, String::len)
            + info
    }

    fn matches(&self, stored_etag: &str, wrapped: &str, sealed: Option<&str>) -> bool {
        self.stored_etag == stored_etag
            && self.wrapped == wrapped
            && self.sealed.as_deref() == sealed
    }
}

impl crate::generations::Cost for Entry {
    fn cost(&self, id: &crate::generations::Id) -> usize {
        Entry::cost(id, self)
    }
}

type Generations = crate::generations::Generations<Entry>;

/// Opened records by (bucket, key), each valid for one stored ETag and record texts.
pub(crate) struct OpenedCache {
    budget: usize,
    gens: Mutex<Generations>,
}

impl OpenedCache {
    /// A cache of at most about `budget` bytes; 0 keeps nothing.
    pub(crate) fn new(budget: usize) -> OpenedCache {
        OpenedCache {
            budget,
            gens: Mutex::new(Generations::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.gens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The records of (bucket, key) as opened before, if it is stored with this ETag and
    /// exactly these record texts.
    pub(crate) fn get(
        &self,
        bucket: &str,
        key: &str,
        stored_etag: &str,
        wrapped: &str,
        sealed: Option<&str>,
    ) -> Option<Opened> {
        if self.budget == 0 {
            return None;
        }
        let id = (bucket.to_string(), key.to_string());
        let mut g = self.lock();
        if let Some(e) = g.hot.get(&id) {
            return e
                .matches(stored_etag, wrapped, sealed)
                .then(|| e.opened.clone());
        }
        if !g.cold.get(&id)?.matches(stored_etag, wrapped, sealed) {
            return None;
        }
        let e = g.take(&id)?;
        let opened = e.opened.clone();
        g.place(self.budget, id, e);
        Some(opened)
    }

    /// Remember what the records of (bucket, key), stored with this ETag, opened to; any
    /// earlier entry of the object is replaced.
    pub(crate) fn put(
        &self,
        bucket: &str,
        key: &str,
        stored_etag: &str,
        wrapped: &str,
        sealed: Option<&str>,
        opened: Opened,
    ) {
        if self.budget == 0 {
            return;
        }
        let id = (bucket.to_string(), key.to_string());
        let entry = Entry {
            stored_etag: stored_etag.to_string(),
            wrapped: wrapped.to_string(),
            sealed: sealed.map(str::to_string),
            opened,
        };
        let mut g = self.lock();
        g.take(&id);
        g.place(self.budget, id, entry);
    }

    /// Forget (bucket, key): this layer is writing, copying onto or deleting it.
    pub(crate) fn forget(&self, bucket: &str, key: &str) {
        if self.budget == 0 {
            return;
        }
        let id = (bucket.to_string(), key.to_string());
        self.lock().take(&id);
    }

    /// Entries held, and the bytes they are counted as.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let g = self.lock();
        (g.hot.len() + g.cold.len(), g.hot_bytes + g.cold_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(byte: u8) -> Opened {
        Opened {
            data_key: [byte; 32],
            info: Some(OpenedInfo {
                layout: Layout::single(10),
                etag: "e".into(),
                trailer: 0,
                meta: "m".into(),
            }),
        }
    }

    #[test]
    fn a_hit_needs_the_same_etag_and_the_same_record_texts() {
        let c = OpenedCache::new(1 << 20);
        c.put("b", "k", "etag1", "wrapped", Some("sealed"), opened(1));
        let hit = c.get("b", "k", "etag1", "wrapped", Some("sealed")).unwrap();
        assert_eq!(hit.data_key, [1; 32]);
        assert!(
            c.get("b", "k", "etag2", "wrapped", Some("sealed"))
                .is_none()
        );
        assert!(
            c.get("b", "k", "etag1", "wrapped2", Some("sealed"))
                .is_none()
        );
        assert!(
            c.get("b", "k", "etag1", "wrapped", Some("sealed2"))
                .is_none()
        );
        assert!(c.get("b", "k", "etag1", "wrapped", None).is_none());
        assert!(
            c.get("b", "k2", "etag1", "wrapped", Some("sealed"))
                .is_none()
        );
        assert!(
            c.get("b2", "k", "etag1", "wrapped", Some("sealed"))
                .is_none()
        );
        // A newer version replaces the entry.
        c.put("b", "k", "etag2", "w2", Some("s2"), opened(2));
        assert!(
            c.get("b", "k", "etag1", "wrapped", Some("sealed"))
                .is_none()
        );
        assert_eq!(
            c.get("b", "k", "etag2", "w2", Some("s2")).unwrap().data_key,
            [2; 32]
        );
        c.forget("b", "k");
        assert!(c.get("b", "k", "etag2", "w2", Some("s2")).is_none());
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn the_budget_bounds_what_is_held() {
        let c = OpenedCache::new(64 << 10);
        for i in 0..10_000 {
            c.put(
                "b",
                &format!("key-{i}"),
                "etag",
                "wrapped",
                Some("sealed"),
                opened(1),
            );
        }
        let (entries, bytes) = c.usage();
        assert!(bytes <= 64 << 10, "{bytes}");
        assert!(entries > 50, "{entries}");
        // The newest entries survive.
        assert!(
            c.get("b", "key-9999", "etag", "wrapped", Some("sealed"))
                .is_some()
        );
        let off = OpenedCache::new(0);
        off.put("b", "k", "e", "w", None, opened(1));
        assert!(off.get("b", "k", "e", "w", None).is_none());
    }
}
