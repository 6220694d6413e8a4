//! Listings that show what HEAD shows.
//!
//! A backend's listing gives each object's *stored* size and ETag. Over the filesystem and
//! memory backends it also carries the object's internal metadata, from which the
//! plaintext size and ETag are read directly. S3 backends list no metadata, and neither
//! value can be computed from the stored ones in general: the plaintext ETag is an MD5 of
//! the plaintext, and a multipart object's stored size depends on where its parts end. So
//! the encryption layer keeps a bounded [`ListCache`] of plaintext views keyed by the
//! object's name *and its stored ETag and size*, filled by every HEAD, GET, PUT, copy and
//! completion that decodes or writes an object, and looks up (HEAD, a few at a time)
//! the objects a listing page finds in neither. docs/FORMAT.md ("Listing") gives the
//! reasoning and the measured costs.
//!
//! An entry can never be stale: each write of an object stores fresh random nonces under
//! a fresh data key, so its ciphertext, and with it the backend's ETag, changes whenever
//! the object does; a metadata update in place (a copy onto itself) keeps the ciphertext
//! and the plaintext view alike. Entries are only made from objects that carry their info
//! record: one still without it (a large PUT whose record is attached by the copy that
//! follows) keeps its stored ETag across that copy, while the ETag HEAD shows changes.
//! Every instance computes the same entry for the same stored object, so any instance
//! can fill its own cache and nothing is shared or invalidated between instances.

use crate::format::*;
use crate::layer::{Decoded, Encrypted};
use futures::StreamExt;
use s3proxy_core::*;
use std::sync::Mutex;

/// Default memory budget of the cache: about 200,000 objects with 50-byte keys.
pub const DEFAULT_LIST_CACHE_BYTES: usize = 64 << 20;

/// Objects of one listing page looked up at once on a miss.
const LIST_LOOKUPS: usize = 32;

/// Bytes counted per entry besides its strings: the hash map slot, the `String` and
/// `Vec` headers, the sizes.
const ENTRY_OVERHEAD: usize = 160;
/// Bytes counted per stored form besides its ETag.
const FORM_OVERHEAD: usize = 32;

/// Stored forms (ETag, size) remembered for one view. Replicas holding the same bytes
/// may give them different ETags (a copy of a multipart object gets the MD5 of its bytes
/// on moto and AWS and keeps its multipart ETag on s3s-fs), and a replicating layer
/// lists one replica's while a HEAD may read another's.
const MAX_FORMS: usize = 4;

/// What a listing shows for one stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlainView {
    pub size: u64,
    pub etag: ETag,
}

struct Entry {
    /// (stored ETag, stored size) pairs each seen decoded to `view`, oldest first.
    forms: Vec<(String, u64)>,
    view: PlainView,
}

impl Entry {
    fn cost(bucket: &str, key: &str, e: &Entry) -> usize {
        let forms: usize = e.forms.iter().map(|(t, _)| FORM_OVERHEAD + t.len()).sum();
        ENTRY_OVERHEAD + bucket.len() + key.len() + e.view.etag.as_str().len() + forms
    }

    fn matches(&self, stored_etag: &str, stored_size: u64) -> bool {
        self.forms
            .iter()
            .any(|(t, n)| t == stored_etag && *n == stored_size)
    }
}

impl crate::generations::Cost for Entry {
    fn cost(&self, id: &crate::generations::Id) -> usize {
        Entry::cost(&id.0, &id.1, self)
    }
}

type Generations = crate::generations::Generations<Entry>;

/// Plaintext sizes and ETags by (bucket, key, stored ETag, stored size), bounded in
/// memory; one entry per (bucket, key).
pub struct ListCache {
    budget: usize,
    gens: Mutex<Generations>,
}

impl ListCache {
    /// A cache using at most about `budget` bytes; 0 keeps nothing (every listed object
    /// without metadata in its listing is then looked up, on every listing).
    pub fn new(budget: usize) -> ListCache {
        ListCache {
            budget,
            gens: Mutex::new(Generations::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.gens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The view of (bucket, key) as stored with this ETag and size, if known.
    #[cfg(test)]
    fn get(
        &self,
        bucket: &str,
        key: &str,
        stored_etag: &str,
        stored_size: u64,
    ) -> Option<PlainView> {
        let mut g = self.lock();
        Self::get_locked(&mut g, self.budget, bucket, key, stored_etag, stored_size)
    }

    fn get_locked(
        g: &mut Generations,
        budget: usize,
        bucket: &str,
        key: &str,
        stored_etag: &str,
        stored_size: u64,
    ) -> Option<PlainView> {
        let id = (bucket.to_string(), key.to_string());
        if let Some(e) = g.hot.get(&id) {
            return e.matches(stored_etag, stored_size).then(|| e.view.clone());
        }
        if !g.cold.get(&id)?.matches(stored_etag, stored_size) {
            return None;
        }
        let e = g.take(&id)?;
        let view = e.view.clone();
        g.place(budget, id, e);
        Some(view)
    }

    /// Remember what (bucket, key), stored with this ETag and size, shows.
    pub(crate) fn put(
        &self,
        bucket: &str,
        key: &str,
        stored_etag: &str,
        stored_size: u64,
        view: PlainView,
    ) {
        let mut g = self.lock();
        let id = (bucket.to_string(), key.to_string());
        // Every read of an object remembers it again: when the newest generation already
        // holds exactly this, there is nothing to move or allocate.
        if let Some(e) = g.hot.get(&id)
            && e.view == view
            && e.matches(stored_etag, stored_size)
        {
            return;
        }
        Self::insert_locked(&mut g, self.budget, id, stored_etag, stored_size, view);
    }

    /// A view seen for a stored form: another form of the view already known is added to
    /// it; a different view (a newer object) replaces the entry.
    fn insert_locked(
        g: &mut Generations,
        budget: usize,
        id: (String, String),
        stored_etag: &str,
        stored_size: u64,
        view: PlainView,
    ) {
        let mut entry = match g.take(&id) {
            Some(e) if e.view == view => e,
            _ => Entry {
                forms: vec![],
                view,
            },
        };
        if !entry.matches(stored_etag, stored_size) {
            if entry.forms.len() == MAX_FORMS {
                entry.forms.remove(0);
            }
            entry.forms.push((stored_etag.to_string(), stored_size));
        }
        g.place(budget, id, entry);
    }

    /// Forget (bucket, key) (it was deleted).
    pub(crate) fn forget(&self, bucket: &str, key: &str) {
        let id = (bucket.to_string(), key.to_string());
        self.lock().take(&id);
    }

    /// Entries held, and the bytes they are counted as.
    pub fn usage(&self) -> (usize, usize) {
        let g = self.lock();
        (g.hot.len() + g.cold.len(), g.hot_bytes + g.cold_bytes)
    }
}

impl Encrypted {
    /// Remember the plaintext view of an object just decoded or written, when it will not
    /// change while its stored ETag stays (it carries its info record).
    /// `forms` are other ETags of the same stored bytes (on other replicas).
    pub(crate) fn remember_listed(
        &self,
        bucket: &BucketName,
        key: &str,
        stored_etag: &ETag,
        forms: &[ETag],
        decoded: &Decoded,
    ) {
        if decoded.has_info {
            let view = PlainView {
                size: decoded.layout.plain_size(),
                etag: decoded.etag.clone(),
            };
            let size = decoded.stored_size();
            for etag in forms.iter().chain([stored_etag]).map(ETag::as_str) {
                self.listed
                    .put(bucket.as_str(), key, etag, size, view.clone());
            }
        }
    }

    /// HEAD in the inner backend, with the other ETags of the same stored bytes a
    /// replicating layer reports for its replicas.
    pub(crate) async fn head_inner(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<ETag>)> {
        let (stored, mut etags) = self.inner.head_object_etags(bucket, key, opts).await?;
        etags.retain(|e| !e.is_empty() && *e != stored.etag);
        etags.truncate(MAX_FORMS - 1);
        Ok((stored, etags))
    }

    /// Remember the plaintext (size, ETag) of an object this layer just wrote with its
    /// info record, stored with this ETag and size.
    pub(crate) fn remember_written(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &ETag,
        stored_size: u64,
        (size, etag): (u64, ETag),
    ) {
        let view = PlainView { size, etag };
        self.listed.put(
            bucket.as_str(),
            key.as_str(),
            stored_etag.as_str(),
            stored_size,
            view,
        );
    }

    /// Remember the plaintext view of an object just written by a copy of a multipart
    /// object (a completion attaches its info record so). The ETag a backend gives such a
    /// copy is not always the one the copy reports (moto and AWS give the copy the MD5
    /// of its bytes; a replicating layer reports the source's), so the object is looked
    /// up once now rather than on the first listing. Failures are left to that listing.
    pub(crate) async fn learn_listed(&self, bucket: &BucketName, key: &ObjectKey) {
        if let Err(e) = self.look_up(bucket, key.as_str()).await {
            log::debug!("{bucket}/{key}: looking the new object up for listings: {e}");
        }
    }

    /// Turn a page of the inner backend's listing into the plaintext one: every object
    /// with the size and ETag HEAD shows for it. From the cache, else from the internal
    /// metadata the listing carries, else by looking the object up (HEAD), at most
    /// [`LIST_LOOKUPS`] at a time.
    pub(crate) async fn plaintext_listing(
        &self,
        bucket: &BucketName,
        page: &mut ListResult,
    ) -> Result<()> {
        // Cache hits first, under one lock; then views from the metadata some backends
        // list (a key unwrap each: outside the lock); then lookups.
        let hits: Vec<Option<PlainView>> = {
            let mut g = self.listed.lock();
            page.objects
                .iter()
                .map(|o| {
                    let budget = self.listed.budget;
                    ListCache::get_locked(
                        &mut g,
                        budget,
                        bucket.as_str(),
                        &o.key,
                        o.etag.as_str(),
                        o.size,
                    )
                })
                .collect()
        };
        let mut missing = vec![];
        let mut learned = vec![];
        for (i, (o, hit)) in page.objects.iter_mut().zip(hits).enumerate() {
            let view = match hit {
                Some(view) => Some(view),
                None => self.view_from_listing(o).inspect(|view| {
                    learned.push((o.key.clone(), o.etag.clone(), o.size, view.clone()));
                }),
            };
            match view {
                Some(view) => {
                    o.size = view.size;
                    o.etag = view.etag;
                }
                None => missing.push(i),
            }
            if let Some(internal) = &mut o.internal {
                internal.retain(|k, _| !k.starts_with(ENC_PREFIX));
            }
        }
        if !learned.is_empty() {
            let mut g = self.listed.lock();
            for (key, stored_etag, stored_size, view) in learned {
                let id = (bucket.to_string(), key);
                let budget = self.listed.budget;
                ListCache::insert_locked(
                    &mut g,
                    budget,
                    id,
                    stored_etag.as_str(),
                    stored_size,
                    view,
                );
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        log::debug!(
            "{bucket}: listing: {} of {} objects looked up",
            missing.len(),
            page.objects.len()
        );
        let keys: Vec<(usize, String)> = missing
            .into_iter()
            .map(|i| (i, page.objects[i].key.clone()))
            .collect();
        let lookups = keys
            .into_iter()
            .map(|(i, key)| async move { (i, self.look_up(bucket, &key).await) });
        let mut found = futures::stream::iter(lookups).buffer_unordered(LIST_LOOKUPS);
        while let Some((i, looked)) = found.next().await {
            let o = &mut page.objects[i];
            match looked? {
                Some((stored, view)) => {
                    // Changed (or on another replica) since the listing: show the object
                    // a HEAD finds now.
                    if stored.etag != o.etag || stored.size != o.size {
                        log::debug!(
                            "{bucket}/{}: listed stored as {:?} ({} bytes), found as {:?} ({} \
                             bytes)",
                            o.key,
                            o.etag,
                            o.size,
                            stored.etag,
                            stored.size
                        );
                        o.last_modified = stored.last_modified;
                    }
                    o.size = view.size;
                    o.etag = view.etag;
                }
                // Deleted since, or not an object this layer can read: what the stored
                // object says (a HEAD would fail).
                None => {
                    if let Some(size) = plain_size(o.size) {
                        o.size = size;
                    }
                }
            }
        }
        Ok(())
    }

    /// The plaintext view from the internal metadata a listing carries (filesystem and
    /// memory backends), without a lookup.
    fn view_from_listing(&self, o: &ObjectSummary) -> Option<PlainView> {
        let m = o.internal.as_ref()?;
        let data_key = unwrap_data_key(self.keyring(), m.get(KEY_META)?).ok()?;
        let info = open_info(&data_key, m.get(INFO_META)?).ok()?;
        Some(PlainView {
            size: info.size,
            etag: info.etag,
        })
    }

    /// HEAD one listed object: its stored info and plaintext view, `None` when it is gone
    /// or cannot be decoded. Backend failures fail the listing, as they would fail a HEAD.
    async fn look_up(
        &self,
        bucket: &BucketName,
        key: &str,
    ) -> Result<Option<(ObjectInfo, PlainView)>> {
        let Ok(name) = ObjectKey::new(key) else {
            return Ok(None);
        };
        let (stored, forms) = match self.head_inner(bucket, &name, GetOptions::default()).await {
            Ok(found) => found,
            Err(Error::NoSuchKey) => {
                log::debug!("{bucket}/{key}: listed, but gone: listed as stored");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match self.decode(bucket, &name, &stored, &[]).await {
            Ok(decoded) => {
                log::debug!(
                    "{bucket}/{key}: found {:?} ({} bytes), also {forms:?}: {} bytes, {:?}",
                    stored.etag,
                    stored.size,
                    decoded.layout.plain_size(),
                    decoded.etag
                );
                self.remember_listed(bucket, key, &stored.etag, &forms, &decoded);
                let view = PlainView {
                    size: decoded.layout.plain_size(),
                    etag: decoded.etag.clone(),
                };
                Ok(Some((stored, view)))
            }
            Err(e) => {
                log::debug!("{bucket}/{key}: listed as stored: {e}");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u64) -> PlainView {
        PlainView {
            size: n,
            etag: ETag::new(format!("e{n}")),
        }
    }

    #[test]
    fn hits_only_on_the_same_stored_etag_and_size() {
        let c = ListCache::new(1 << 20);
        c.put("b", "k", "s1", 100, view(60));
        assert_eq!(c.get("b", "k", "s1", 100), Some(view(60)));
        assert_eq!(c.get("b", "k", "s2", 100), None);
        assert_eq!(c.get("b", "k", "s1", 101), None);
        assert_eq!(c.get("b2", "k", "s1", 100), None);
        c.put("b", "k", "s2", 100, view(61));
        assert_eq!(c.get("b", "k", "s1", 100), None);
        assert_eq!(c.get("b", "k", "s2", 100), Some(view(61)));
        assert_eq!(c.usage().0, 1);
        c.forget("b", "k");
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn stays_within_its_budget_and_keeps_what_is_used() {
        let budget = 100 * (ENTRY_OVERHEAD + 20);
        let c = ListCache::new(budget);
        for i in 0..10_000u64 {
            if i == 0 {
                c.put("b", "hot", "etag", 1, view(1));
            }
            c.put("b", &format!("key{i:06}"), "etag", i, view(i));
            // A key used all along stays.
            assert_eq!(c.get("b", "hot", "etag", 1), Some(view(1)), "{i}");
            assert!(c.usage().1 <= budget);
        }
        let (entries, _) = c.usage();
        assert!(entries > 40 && entries <= 100, "{entries}");
        assert_eq!(c.get("b", "key009999", "etag", 9999), Some(view(9999)));
        assert_eq!(c.get("b", "key000000", "etag", 0), None);
    }

    #[test]
    fn one_view_keeps_several_stored_forms_and_a_new_view_replaces_them() {
        let c = ListCache::new(1 << 20);
        for i in 0..MAX_FORMS as u64 {
            c.put("b", "k", &format!("s{i}"), 100, view(60));
        }
        for i in 0..MAX_FORMS as u64 {
            assert_eq!(c.get("b", "k", &format!("s{i}"), 100), Some(view(60)));
        }
        c.put("b", "k", "newest", 100, view(60));
        assert_eq!(c.get("b", "k", "s0", 100), None);
        assert_eq!(c.get("b", "k", "newest", 100), Some(view(60)));
        c.put("b", "k", "other", 100, view(61));
        assert_eq!(c.get("b", "k", "newest", 100), None);
        assert_eq!(c.get("b", "k", "other", 100), Some(view(61)));
        assert_eq!(c.usage().0, 1);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let c = ListCache::new(0);
        c.put("b", "k", "s", 1, view(1));
        assert_eq!(c.get("b", "k", "s", 1), None);
        assert_eq!(c.usage(), (0, 0));
    }
}
