//! ListObjects over shard backends: every backend's page merged, each key shown only when
//! k shards of one version are listed, with the size and ETag HEAD shows.

use crate::erasure::Erasure;
use crate::format::*;
use futures::StreamExt;
use s3proxy_core::*;
use s3proxy_replication::stamp_time;
use std::collections::BTreeMap;

/// Objects of one page looked up (HEAD) at once when their listing carries no metadata.
const LOOKUPS: usize = 16;

enum Item {
    Prefix,
    /// Each backend's summary of the key.
    Object(Vec<(usize, ObjectSummary)>),
}

impl Erasure {
    pub(crate) async fn merged_listing(
        &self,
        bucket: &BucketName,
        opts: ListOptions,
    ) -> Result<ListResult> {
        let hidden = opts.prefix.starts_with(crate::multipart::UPLOADS_PREFIX);
        let outcomes = self
            .fan_out("ListObjects", bucket.as_str(), |_, b| {
                let (bucket, opts) = (bucket.clone(), opts.clone());
                async move { b.list_objects(&bucket, opts).await }
            })
            .await;
        let mut pages = vec![];
        let mut no_bucket = 0;
        let mut failed = 0;
        for (i, o) in outcomes.into_iter().enumerate() {
            match o {
                Ok(page) => pages.push((i, page)),
                Err(Error::NoSuchBucket) => no_bucket += 1,
                Err(_) => failed += 1,
            }
        }
        if pages.len() < self.k() {
            return Err(if no_bucket > failed {
                Error::NoSuchBucket
            } else {
                Error::ServiceUnavailable(format!(
                    "{bucket}: fewer than {} backends listed it",
                    self.k()
                ))
            });
        }
        // A truncated page says nothing past its last entry: the merge stops at the
        // earliest such end.
        let cut: Option<String> = pages
            .iter()
            .filter(|(_, p)| p.is_truncated)
            .filter_map(|(_, p)| {
                let last_obj = p.objects.last().map(|o| o.key.clone());
                let last_pre = p.common_prefixes.last().cloned();
                p.next_marker.clone().or(last_obj.max(last_pre))
            })
            .min();
        let any_truncated = pages.iter().any(|(_, p)| p.is_truncated);
        let mut merged: BTreeMap<String, Item> = BTreeMap::new();
        for (i, page) in pages {
            for p in page.common_prefixes {
                merged.insert(p, Item::Prefix);
            }
            for o in page.objects {
                match merged
                    .entry(o.key.clone())
                    .or_insert_with(|| Item::Object(vec![]))
                {
                    Item::Object(list) => list.push((i, o)),
                    Item::Prefix => {}
                }
            }
        }
        let mut entries: Vec<(String, Item)> = merged
            .into_iter()
            .filter(|(k, _)| cut.as_ref().is_none_or(|c| k <= c))
            // The uploads' state is this layer's own, hidden before max-keys truncates so
            // that NextMarker is never a hidden key (only this layer lists inside it).
            .filter(|(k, _)| hidden || !k.starts_with(crate::multipart::UPLOADS_PREFIX))
            .collect();
        let mut is_truncated = any_truncated;
        if entries.len() > opts.max_keys {
            entries.truncate(opts.max_keys);
            is_truncated = true;
        }
        let next_marker = is_truncated
            .then(|| entries.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut result = ListResult {
            objects: vec![],
            common_prefixes: vec![],
            is_truncated,
            next_marker,
        };
        let mut lookups = vec![];
        for (key, item) in entries {
            match item {
                Item::Prefix => result.common_prefixes.push(key),
                Item::Object(list) => match self.summary_of(&list) {
                    Some(Some(summary)) => result.objects.push(summary),
                    Some(None) => {}
                    None => lookups.push(key),
                },
            }
        }
        // Keys whose listing lacks the metadata (S3 backends list none): a HEAD each.
        let looked: Vec<Result<Option<ObjectSummary>>> = futures::stream::iter(lookups)
            .map(|key| async move {
                let key = ObjectKey::new(key)?;
                match self.resolve(bucket, &key).await {
                    Ok(r) => Ok(Some(ObjectSummary {
                        key: key.as_str().to_string(),
                        size: r.info.size,
                        etag: r.info.etag,
                        last_modified: r.info.last_modified,
                        internal: Some(r.info.metadata.internal),
                    })),
                    Err(Error::NoSuchKey) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(LOOKUPS)
            .collect()
            .await;
        for summary in looked {
            result.objects.extend(summary?);
        }
        result.objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(result)
    }

    /// The summary of a key from the backends' listings of it: `Some(None)` when no
    /// version has k shards listed, `None` when the listings carry too little to tell
    /// (no metadata, or no ETag recorded yet).
    fn summary_of(&self, list: &[(usize, ObjectSummary)]) -> Option<Option<ObjectSummary>> {
        let mut shards = vec![];
        for (i, o) in list {
            let internal = o.internal.as_ref()?;
            let meta = ObjectMetadata {
                internal: internal.clone(),
                ..Default::default()
            };
            if let Some(m) = ShardMeta::from_metadata(&meta).filter(|m| m.i == *i) {
                shards.push((m, o));
            }
        }
        shards.sort_by(|a, b| b.0.ver.cmp(&a.0.ver));
        for (candidate, summary) in &shards {
            let holders = shards
                .iter()
                .filter(|(m, _)| m.same_version(candidate))
                .count();
            if holders >= self.k() && candidate.k == self.k() && candidate.m == self.m() {
                let etag = candidate.etag.clone()?;
                let mut internal = summary.internal.clone()?;
                internal.remove(SHARD_KEY);
                return Some(Some(ObjectSummary {
                    key: summary.key.clone(),
                    size: candidate.size,
                    etag,
                    last_modified: stamp_time(&candidate.ver).unwrap_or(summary.last_modified),
                    internal: Some(internal),
                }));
            }
        }
        Some(None)
    }
}
