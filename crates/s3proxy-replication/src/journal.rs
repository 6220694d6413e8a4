//! The repair journal: writes and deletes that did not reach every backend, kept durably
//! on the proxy's disk until they have been repaired.
//!
//! One small JSON file per (bucket, key, backend), written atomically (temporary file,
//! fsync, rename, directory fsync), so the journal survives a crash and several processes
//! (the server and `s3proxy repair`) can share it. Each change is a read-merge-write of
//! the entry's file under an exclusive lock on the directory's `.lock` file, so one
//! process never removes or overwrites a newer entry another just recorded. Files are
//! created 0600 in a 0700 directory. An entry that cannot be read is renamed aside
//! (`*.corrupt`), reported, and left for the operator, never silently dropped.

use s3proxy_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a journal entry is about: one object, or the bucket itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The object under this key.
    Object(String),
    /// The bucket: its deletion, which the backend missed (the bucket is hidden from then
    /// on, and repair deletes it there).
    Bucket,
}

impl Target {
    /// The object's key; `None` for the bucket.
    pub fn key(&self) -> Option<&str> {
        match self {
            Target::Object(key) => Some(key),
            Target::Bucket => None,
        }
    }

    /// The key as the index and the file format spell it: the bucket is the empty key,
    /// which no object can have.
    fn as_index(&self) -> &str {
        self.key().unwrap_or("")
    }
}

/// Logs name an entry by bucket and key; the bucket's own entry shows no key (as it always
/// has).
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_index())
    }
}

/// What a backend missed, as [`Entry::new`] records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// A write (PUT, copy, completed upload) stamped with the entry's stamp.
    Write,
    /// A delete stamped with the entry's stamp: versions older than it must not be brought
    /// back.
    Delete,
    /// Nothing: the backend's copy failed authentication, and is replaced by the newest
    /// other one even when its version stamp is current.
    Corrupt,
}

/// How repair treats the backend's copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Repair {
    /// Bring it up to date when it is behind the newest version (or apply the deletion).
    #[default]
    IfBehind,
    /// Replace it whatever its version stamp says: it is known bad (failed
    /// authentication). Once recorded, kept by every later merge until repaired.
    Replace,
}

/// A key (or a bucket) that one backend must be brought up to date on.
///
/// On disk it is the flat JSON object it has always been (`key` empty for the bucket,
/// `tombstone` and `force`), so entries written by any version stay readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "EntryFile", into = "EntryFile")]
pub struct Entry {
    /// Bucket.
    pub bucket: String,
    /// The object, or the bucket itself.
    pub target: Target,
    /// The backend that missed the operation.
    pub backend: String,
    /// The stamp of the newest operation that was missed (identifies this entry's
    /// generation).
    pub stamp: String,
    /// The stamp of the newest delete that was missed, if any. Versions older than this
    /// must not be brought back.
    pub tombstone: Option<String>,
    /// Whether the backend's copy is replaced even when current.
    pub repair: Repair,
    /// When the backend first fell behind on this key (seconds since the epoch); set by
    /// [`Journal::record`] when `None`, and kept by every later merge. Entries written
    /// before this field existed have none: their stamp's time stands in.
    pub since: Option<u64>,
}

/// An entry as its file holds it.
#[derive(Serialize, Deserialize)]
struct EntryFile {
    bucket: String,
    key: String,
    backend: String,
    stamp: String,
    #[serde(default)]
    tombstone: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
}

impl From<EntryFile> for Entry {
    fn from(f: EntryFile) -> Self {
        Entry {
            bucket: f.bucket,
            target: if f.key.is_empty() {
                Target::Bucket
            } else {
                Target::Object(f.key)
            },
            backend: f.backend,
            stamp: f.stamp,
            tombstone: f.tombstone,
            repair: if f.force {
                Repair::Replace
            } else {
                Repair::IfBehind
            },
            since: f.since,
        }
    }
}

impl From<Entry> for EntryFile {
    fn from(e: Entry) -> Self {
        EntryFile {
            key: e.target.as_index().to_string(),
            bucket: e.bucket,
            backend: e.backend,
            stamp: e.stamp,
            tombstone: e.tombstone,
            force: e.repair == Repair::Replace,
            since: e.since,
        }
    }
}

/// Where an entry sits in the in-memory index: (bucket, key, backend), the bucket's own
/// entry under the empty key, so that every entry of one key (and of one bucket) is a
/// contiguous range.
pub(crate) type EntryId = (String, String, String);

impl Entry {
    /// The entry for `backend` having missed `missed`, stamped `stamp`, on `target`.
    pub fn new(
        bucket: impl Into<String>,
        target: Target,
        backend: impl Into<String>,
        stamp: impl Into<String>,
        missed: Missed,
    ) -> Self {
        let stamp = stamp.into();
        Entry {
            bucket: bucket.into(),
            target,
            backend: backend.into(),
            tombstone: (missed == Missed::Delete).then(|| stamp.clone()),
            repair: if missed == Missed::Corrupt {
                Repair::Replace
            } else {
                Repair::IfBehind
            },
            stamp,
            since: None,
        }
    }

    /// Whether the backend's copy is replaced even when current ([`Repair::Replace`]).
    pub fn forced(&self) -> bool {
        self.repair == Repair::Replace
    }

    pub(crate) fn id(&self) -> EntryId {
        (
            self.bucket.clone(),
            self.target.as_index().to_string(),
            self.backend.clone(),
        )
    }

    fn file_name(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.bucket, self.target.as_index(), &self.backend] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        format!("{}.json", hex::encode(h.finalize()))
    }
}

/// The durable set of pending repairs, with an in-memory index by (bucket, key): the
/// queries made on every request (a key's tombstone, a bucket's deletion) are range
/// lookups, not scans, however many entries a long outage leaves.
pub struct Journal {
    dir: Option<PathBuf>,
    /// Held (flock) while an entry's file is read, merged and written, across processes.
    lock: Option<fs::File>,
    entries: Mutex<BTreeMap<EntryId, Entry>>,
}

/// Holds the journal's file lock until dropped.
struct Locked<'a>(Option<&'a fs::File>);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            let _ = f.unlock();
        }
    }
}

/// A file created for the journal: readable by its owner only.
fn create_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// The entry in a journal file, `None` when there is no such file.
fn read_entry(path: &Path) -> std::io::Result<Option<Entry>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of one (bucket, key), in backend order.
fn of_key<'a>(
    entries: &'a BTreeMap<EntryId, Entry>,
    bucket: &'a str,
    key: &'a str,
) -> impl Iterator<Item = &'a Entry> + 'a {
    entries
        .range((bucket.to_string(), key.to_string(), String::new())..)
        .map(|(_, e)| e)
        .take_while(move |e| e.bucket == bucket && e.target.as_index() == key)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("repair journal: {what} {}", path.display()), e)
}

impl Journal {
    /// A journal kept in `dir` (created if missing), loading the entries already there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io("create", &dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = create_private(&lock_path).map_err(|e| io("create", &lock_path, e))?;
        let journal = Journal {
            dir: Some(dir),
            lock: Some(lock),
            entries: Mutex::new(BTreeMap::new()),
        };
        journal.reload()?;
        Ok(journal)
    }

    /// A journal that lives in memory only (tests, single-process tools).
    pub fn in_memory() -> Self {
        Journal {
            dir: None,
            lock: None,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Take the cross-process lock (held until the guard drops).
    fn locked(&self) -> Result<Locked<'_>> {
        if let (Some(f), Some(dir)) = (&self.lock, &self.dir) {
            f.lock().map_err(|e| io("lock", dir, e))?;
        }
        Ok(Locked(self.lock.as_ref()))
    }

    /// Entries renamed aside because they could not be read (`*.corrupt`).
    pub fn set_aside(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.dir else {
            return vec![];
        };
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("corrupt"))
            .collect();
        found.sort();
        found
    }

    /// Re-read the entries on disk (another process may have added or removed some).
    pub fn reload(&self) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        // Entry files are replaced by renames, so they are read whole without the lock.
        let mut loaded = BTreeMap::new();
        let mut unreadable = vec![];
        for item in fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
            let path = item.map_err(|e| io("list", dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read_entry(&path) {
                Ok(Some(entry)) => {
                    loaded.insert(entry.id(), entry);
                }
                Ok(None) => {}
                Err(_) => unreadable.push(path),
            }
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !unreadable.is_empty() {
            let _locked = self.locked()?;
            for path in unreadable {
                match read_entry(&path) {
                    // Rewritten since, by another process.
                    Ok(Some(entry)) => {
                        loaded.insert(entry.id(), entry);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Kept for the operator: it may be a tombstone, whose loss would
                        // let repair bring a deleted object back.
                        let aside = path.with_extension("corrupt");
                        let moved = fs::rename(&path, &aside);
                        log::error!(
                            "repair journal: unreadable entry {} ({e}); {}",
                            path.display(),
                            match moved {
                                Ok(()) => format!("kept aside as {}", aside.display()),
                                Err(e) => format!("could not be set aside ({e})"),
                            }
                        );
                    }
                }
            }
        }
        *entries = loaded;
        Ok(())
    }

    /// Record (or merge into) the entry for `entry`'s (bucket, key, backend). Durable when
    /// this returns.
    pub fn record(&self, mut entry: Entry) -> Result<()> {
        let name = entry.file_name();
        let id = entry.id();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entry.since.is_none() {
            entry.since = Some(unix_now());
        }
        let merge = |entry: &mut Entry, old: &Entry| {
            entry.repair = entry.repair.max(old.repair);
            // Behind since the first miss; an entry from before `since` existed keeps none.
            entry.since = match (entry.since, old.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                _ => None,
            };
            entry.tombstone = entry.tombstone.clone().max(old.tombstone.clone());
            if old.stamp > entry.stamp {
                entry.stamp = old.stamp.clone();
            }
        };
        if let Some(old) = entries.get(&id) {
            merge(&mut entry, old);
            if *old == entry {
                // Already journaled as it is (a read locating a replica still writing, a
                // missed operation recorded again): no rewrite, no fsyncs.
                return Ok(());
            }
        }
        let _locked = self.locked()?;
        if let Some(dir) = &self.dir {
            let path = dir.join(&name);
            // Another process may have recorded a newer generation meanwhile: merged in.
            if let Ok(Some(on_disk)) = read_entry(&path) {
                merge(&mut entry, &on_disk);
            }
            let tmp = dir.join(format!(
                ".{name}.{}",
                hex::encode(rand::random::<[u8; 6]>())
            ));
            let json = serde_json::to_vec(&entry).map_err(|e| Error::Internal(e.to_string()))?;
            let write = || -> std::io::Result<()> {
                let mut f = create_private(&tmp)?;
                f.write_all(&json)?;
                f.sync_all()?;
                fs::rename(&tmp, &path)?;
                fs::File::open(dir)?.sync_all()
            };
            if let Err(e) = write() {
                let _ = fs::remove_file(&tmp);
                return Err(io("write", &path, e));
            }
        }
        entries.insert(id, entry);
        Ok(())
    }

    /// Remove the entry for (bucket, key, backend) if it is still the generation `stamp`
    /// names (a newer missed operation keeps it).
    pub fn remove(&self, entry: &Entry) -> Result<()> {
        let id = entry.id();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&id) {
            Some(current) if current.stamp == entry.stamp && current.repair == entry.repair => {}
            _ => return Ok(()),
        }
        let _locked = self.locked()?;
        if let Some(dir) = &self.dir {
            let path = dir.join(entry.file_name());
            match read_entry(&path) {
                // Another process recorded a newer generation: it stays, and is now ours.
                Ok(Some(on_disk))
                    if on_disk.stamp != entry.stamp || on_disk.repair != entry.repair =>
                {
                    entries.insert(id, on_disk);
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => return Err(io("read", &path, e)),
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &path, e)),
            }
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("fsync", dir, e))?;
        }
        entries.remove(&id);
        Ok(())
    }

    /// All pending entries, by bucket, key and backend.
    pub fn pending(&self) -> Vec<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.values().cloned().collect()
    }

    /// The pending entries of one bucket.
    pub fn pending_in(&self, bucket: &str) -> Vec<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .range((bucket.to_string(), String::new(), String::new())..)
            .map(|(_, e)| e)
            .take_while(|e| e.bucket == bucket)
            .cloned()
            .collect()
    }

    /// The backends journaled as having missed a write of a key (not a delete) stamped
    /// after `since`: they may lack a version that only other replicas hold.
    pub fn behind(&self, bucket: &str, key: &str, since: &str) -> Vec<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        of_key(&entries, bucket, key)
            .filter(|e| e.tombstone.is_none() && e.stamp.as_str() > since)
            .map(|e| e.backend.clone())
            .collect()
    }

    /// Whether the bucket was deleted through the proxy while some backend still holds it
    /// (a [`Target::Bucket`] entry with a tombstone).
    pub fn bucket_deleted(&self, bucket: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        of_key(&entries, bucket, "").any(|e| e.target == Target::Bucket && e.tombstone.is_some())
    }

    /// Forget the bucket's deletion (it was created again).
    pub fn clear_bucket_deleted(&self, bucket: &str) -> Result<()> {
        let stale: Vec<Entry> = {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            of_key(&entries, bucket, "")
                .filter(|e| e.target == Target::Bucket)
                .cloned()
                .collect()
        };
        stale.iter().try_for_each(|e| self.remove(e))
    }

    /// The newest tombstone recorded for a key, if any: versions older than it are deleted.
    pub fn tombstone(&self, bucket: &str, key: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        of_key(&entries, bucket, key)
            .filter_map(|e| e.tombstone.clone())
            .max()
    }

    /// How long the oldest pending entry has been waiting: the time since its backend
    /// first fell behind on its key.
    pub fn oldest_age(&self) -> Option<std::time::Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::SystemTime::now();
        entries
            .values()
            .filter_map(|e| match e.since {
                Some(s) => Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)),
                None => crate::stamp::stamp_time(&e.stamp),
            })
            .min()
            .map(|oldest| now.duration_since(oldest).unwrap_or_default())
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(backend: &str, stamp: &str) -> Entry {
        Entry::new(
            "b",
            Target::Object("k".into()),
            backend,
            stamp,
            Missed::Write,
        )
    }

    #[test]
    fn queries_see_only_their_own_key_and_bucket() {
        let j = Journal::in_memory();
        let at = |bucket: &str, key: &str, backend: &str, tombstone: Option<&str>| Entry {
            tombstone: tombstone.map(Into::into),
            ..Entry::new(
                bucket,
                if key.is_empty() {
                    Target::Bucket
                } else {
                    Target::Object(key.into())
                },
                backend,
                "005",
                Missed::Write,
            )
        };
        for e in [
            at("b", "", "r1", Some("005")),
            at("b", "k", "r1", Some("004")),
            at("b", "k", "r2", None),
            at("b", "k2", "r1", Some("009")),
            at("b2", "k", "r1", Some("007")),
            at("a", "k", "r3", None),
        ] {
            j.record(e).unwrap();
        }
        assert_eq!(j.tombstone("b", "k").as_deref(), Some("004"));
        assert_eq!(j.tombstone("b", "k1"), None);
        assert_eq!(j.behind("b", "k", "000"), ["r2"]);
        assert!(j.behind("b", "k", "005").is_empty());
        assert!(j.bucket_deleted("b"));
        assert!(!j.bucket_deleted("b2") && !j.bucket_deleted("a"));
        assert_eq!(j.pending_in("b").len(), 4);
        assert_eq!(j.pending_in("b2").len(), 1);
        j.clear_bucket_deleted("b").unwrap();
        assert!(!j.bucket_deleted("b"));
        assert_eq!(j.len(), 5);
    }

    /// Entry files written before entries had types: a bucket's deletion under the empty
    /// key, a forced repair as `force`, and files from before `since`, `force` and
    /// `tombstone` existed. They read as the typed entries they meant, and are written
    /// back byte for byte as they were (another process of an older version shares the
    /// directory).
    #[test]
    fn entry_files_of_the_old_format_stay_readable() {
        let bucket_deleted = r#"{"bucket":"b","key":"","backend":"r1","stamp":"0007","tombstone":"0007","force":false,"since":1700000000}"#;
        let e: Entry = serde_json::from_str(bucket_deleted).unwrap();
        assert_eq!(e.target, Target::Bucket);
        assert_eq!(e.tombstone.as_deref(), Some("0007"));
        assert_eq!(e.repair, Repair::IfBehind);
        assert_eq!(e.since, Some(1_700_000_000));
        assert_eq!(serde_json::to_string(&e).unwrap(), bucket_deleted);

        let forced = r#"{"bucket":"b","key":"dir/k","backend":"r2","stamp":"0009","tombstone":null,"force":true}"#;
        let e: Entry = serde_json::from_str(forced).unwrap();
        assert_eq!(e.target, Target::Object("dir/k".into()));
        assert!(e.forced());
        assert_eq!(e.since, None);
        assert_eq!(serde_json::to_string(&e).unwrap(), forced);

        let oldest = r#"{"bucket":"b","key":"k","backend":"r3","stamp":"0001"}"#;
        let e: Entry = serde_json::from_str(oldest).unwrap();
        assert_eq!(
            e,
            Entry::new("b", Target::Object("k".into()), "r3", "0001", Missed::Write)
        );

        // What Entry::new records for each kind of miss.
        let delete = Entry::new(
            "b",
            Target::Object("k".into()),
            "r1",
            "0003",
            Missed::Delete,
        );
        assert_eq!(delete.tombstone.as_deref(), Some("0003"));
        assert!(!delete.forced());
        let corrupt = Entry::new(
            "b",
            Target::Object("k".into()),
            "r1",
            "0004",
            Missed::Corrupt,
        );
        assert_eq!(corrupt.tombstone, None);
        assert!(corrupt.forced());
    }

    #[test]
    fn durable_merge_and_guarded_remove() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.record(entry("r1", "001")).unwrap();
        let mut del = entry("r1", "002");
        del.tombstone = Some("002".into());
        j.record(del).unwrap();
        j.record(entry("r2", "001")).unwrap();
        // Reopened: still there, merged.
        let j2 = Journal::open(dir.path()).unwrap();
        assert_eq!(j2.len(), 2);
        assert_eq!(j2.tombstone("b", "k").as_deref(), Some("002"));
        // Removing an older generation leaves the newer one.
        j2.remove(&entry("r1", "001")).unwrap();
        assert_eq!(j2.len(), 2);
        let current = j2
            .pending()
            .into_iter()
            .find(|e| e.backend == "r1")
            .unwrap();
        j2.remove(&current).unwrap();
        assert_eq!(Journal::open(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn recording_an_entry_already_there_writes_nothing() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let e = entry("r1", "005");
        j.record(e.clone()).unwrap();
        let path = dir.path().join(e.file_name());
        let inode = fs::metadata(&path).unwrap().ino();
        // The same entry, and an older stamp that merges into it: nothing to write.
        j.record(e.clone()).unwrap();
        j.record(entry("r1", "003")).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        // A newer stamp is a new generation: written (a new file renamed into place).
        j.record(entry("r1", "007")).unwrap();
        assert_ne!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(j.pending()[0].stamp, "007");
    }

    #[test]
    fn processes_sharing_a_journal_do_not_drop_each_others_entries() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let server = Journal::open(dir.path().join("j")).unwrap();
        let repair = Journal::open(dir.path().join("j")).unwrap();
        server.record(entry("r1", "001")).unwrap();
        repair.reload().unwrap();
        // The server records a newer miss; the repair tool, which repaired the older one,
        // must not remove it.
        server.record(entry("r1", "002")).unwrap();
        repair.remove(&entry("r1", "001")).unwrap();
        assert_eq!(
            Journal::open(dir.path().join("j")).unwrap().pending()[0].stamp,
            "002"
        );
        // And a record merges into what the other recorded.
        let mut del = entry("r1", "000");
        del.tombstone = Some("000".into());
        repair.record(del).unwrap();
        let reread = Journal::open(dir.path().join("j")).unwrap().pending();
        assert_eq!(reread[0].stamp, "002");
        assert_eq!(reread[0].tombstone.as_deref(), Some("000"));
        // Private: 0700 directory, 0600 entries.
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("j")), 0o700);
        assert_eq!(
            mode(&dir.path().join("j").join(entry("r1", "").file_name())),
            0o600
        );
    }

    #[test]
    fn an_unreadable_entry_is_kept_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.record(entry("r1", "001")).unwrap();
        let bad = dir.path().join(entry("r2", "").file_name());
        fs::write(&bad, b"{ not json").unwrap();
        let j2 = Journal::open(dir.path()).unwrap();
        assert_eq!(j2.len(), 1);
        assert_eq!(j2.set_aside(), [bad.with_extension("corrupt")]);
        assert_eq!(
            fs::read(bad.with_extension("corrupt")).unwrap(),
            b"{ not json"
        );
    }
}
