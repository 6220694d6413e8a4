//! The full repair scan (`s3proxy repair`): every backend's listing compared by version
//! stamp, and every replica brought up to date.

use crate::Replicated;
use crate::journal::{Entry, Missed, Target};
use crate::stamp::{VERSION_KEY, version_of};
use s3proxy_core::*;

/// What a repair scan found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairSummary {
    /// Keys examined.
    pub keys: u64,
    /// Replicas brought up to date by copying.
    pub copies: u64,
    /// Replicas on which a journaled delete was applied.
    pub deletes: u64,
    /// Repairs that failed (left in the journal).
    pub failed: u64,
}

impl Replicated {
    /// Scan every backend, compare keys by version stamp, and bring every replica up to
    /// date (copy what is missing or stale, apply journaled deletes). With `dry_run`, only
    /// count. `progress` is called after each key with (done, total).
    pub async fn repair_scan(
        &self,
        only_bucket: Option<&BucketName>,
        dry_run: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<RepairSummary> {
        let mut summary = RepairSummary::default();
        let buckets: Vec<BucketName> = match only_bucket {
            Some(b) => vec![b.clone()],
            None => {
                let mut names = std::collections::BTreeSet::new();
                for (i, r) in self.replicas().iter().enumerate() {
                    let listed = self
                        .call(i, |b| async move { b.list_buckets().await })
                        .await
                        .map_err(|e| {
                            Error::ServiceUnavailable(format!("backend {}: {e}", r.backend.name()))
                        })?;
                    names.extend(listed.into_iter().map(|b| b.name));
                }
                names
                    .into_iter()
                    .filter_map(|n| BucketName::new(n).ok())
                    .collect()
            }
        };
        for bucket in buckets {
            // Every replica's full listing: key -> (replica -> version).
            let mut keys: std::collections::BTreeMap<String, Vec<Option<String>>> =
                Default::default();
            let n = self.replicas().len();
            for i in 0..n {
                let mut start_after = None;
                loop {
                    let opts = ListOptions {
                        start_after: start_after.clone(),
                        max_keys: 1000,
                        ..Default::default()
                    };
                    let page = match self
                        .call(i, |b| {
                            let (bucket, opts) = (bucket.clone(), opts.clone());
                            async move { b.list_objects(&bucket, opts).await }
                        })
                        .await
                    {
                        Ok(p) => p,
                        Err(Error::NoSuchBucket) => break,
                        Err(e) => {
                            return Err(Error::ServiceUnavailable(format!(
                                "listing {bucket} on {}: {e}",
                                self.replicas()[i].backend.name()
                            )));
                        }
                    };
                    for o in &page.objects {
                        let version = match &o.internal {
                            Some(internal) => {
                                internal.get(VERSION_KEY).cloned().unwrap_or_default()
                            }
                            None => {
                                let key = ObjectKey::new(o.key.clone())?;
                                match self
                                    .call(i, |b| {
                                        let (bucket, key) = (bucket.clone(), key.clone());
                                        async move {
                                            b.head_object(&bucket, &key, GetOptions::default())
                                                .await
                                        }
                                    })
                                    .await
                                {
                                    Ok(info) => {
                                        version_of(&info.metadata).unwrap_or("").to_string()
                                    }
                                    Err(_) => continue,
                                }
                            }
                        };
                        keys.entry(o.key.clone()).or_insert_with(|| vec![None; n])[i] =
                            Some(version);
                    }
                    if !page.is_truncated {
                        break;
                    }
                    start_after = page.next_marker;
                }
            }
            let total = keys.len() as u64;
            for (done, (key, versions)) in keys.into_iter().enumerate() {
                summary.keys += 1;
                // By rank: a stamp that is not the proxy's own loses to every one that is
                // (repair_entry, which does the copy, ranks and reports each replica).
                let newest = versions
                    .iter()
                    .flatten()
                    .max_by_key(|v| {
                        self.rank_quietly(
                            bucket.as_str(),
                            &key,
                            Some(v.as_str()).filter(|v| !v.is_empty()),
                        )
                    })
                    .cloned()
                    .unwrap_or_default();
                let tombstone = self.shared.journal.tombstone(bucket.as_str(), &key);
                let deleted = tombstone.as_deref().is_some_and(|t| t >= newest.as_str());
                let object_key = ObjectKey::new(key.clone())?;
                for (i, v) in versions.iter().enumerate() {
                    let needs = if deleted {
                        v.is_some()
                    } else {
                        v.as_deref() != Some(newest.as_str())
                    };
                    if !needs {
                        continue;
                    }
                    if deleted {
                        summary.deletes += 1
                    } else {
                        summary.copies += 1
                    }
                    if dry_run {
                        continue;
                    }
                    let entry = Entry::new(
                        bucket.as_str(),
                        Target::Object(key.clone()),
                        self.replicas()[i].backend.name(),
                        newest.clone(),
                        Missed::Write,
                    );
                    match self.repair_entry(&entry).await {
                        Ok(true) => {}
                        Ok(false) => {
                            summary.failed += 1;
                            self.journal_missed(&bucket, &object_key, i, &newest, Missed::Write);
                        }
                        Err(e) => {
                            summary.failed += 1;
                            log::warn!("repair {bucket}/{key} on {}: {e}", entry.backend);
                            self.journal_missed(&bucket, &object_key, i, &newest, Missed::Write);
                        }
                    }
                }
                progress(done as u64 + 1, total);
            }
        }
        Ok(summary)
    }
}
