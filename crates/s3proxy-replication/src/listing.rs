//! ListObjects over replicas: their pages merged into one entry per key, the newest
//! version shown as the client sees it, keys deleted through the proxy hidden.

use crate::Replicated;
use crate::stamp::{ETAG_KEY, VERSION_KEY, stamp_time};
use s3proxy_core::*;

impl Replicated {
    /// ListObjects: every replica's page, merged into one entry per key (its newest
    /// version) or common prefix, without what journaled deletes hid.
    pub(crate) async fn merged_listing(
        &self,
        bucket: &BucketName,
        opts: ListOptions,
    ) -> Result<ListResult> {
        self.check_bucket_not_deleted(bucket)?;
        let outcomes = self
            .fan_out("ListObjects", bucket.as_str(), |b| {
                let (bucket, opts) = (bucket.clone(), opts.clone());
                async move { b.list_objects(&bucket, opts).await }
            })
            .await;
        let mut pages = vec![];
        let mut first_error = None;
        for o in outcomes {
            match o {
                Ok(p) => pages.push(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if pages.is_empty() {
            return Err(first_error.unwrap_or(Error::NoSuchBucket));
        }
        // Merge: one entry per key (the newest version) or common prefix, in order.
        enum Item {
            Object(ObjectSummary),
            Prefix(String),
        }
        let mut merged: std::collections::BTreeMap<String, Item> = Default::default();
        let mut any_truncated = false;
        for page in pages {
            any_truncated |= page.is_truncated;
            for p in page.common_prefixes {
                merged.insert(p.clone(), Item::Prefix(p));
            }
            for o in page.objects {
                let version = o
                    .internal
                    .as_ref()
                    .and_then(|m| m.get(VERSION_KEY))
                    .cloned();
                let newer = match merged.get(&o.key) {
                    Some(Item::Object(existing)) => {
                        let old = existing.internal.as_ref().and_then(|m| m.get(VERSION_KEY));
                        let rank = |v: Option<&String>| {
                            self.rank_quietly(bucket.as_str(), &o.key, v.map(String::as_str))
                        };
                        rank(version.as_ref()) > rank(old)
                    }
                    _ => true,
                };
                if newer {
                    merged.insert(o.key.clone(), Item::Object(o));
                }
            }
        }
        let mut result = ListResult::default();
        let max = opts.max_keys.min(list::MAX_KEYS);
        let mut count = 0;
        let mut last = None;
        for (name, item) in merged {
            if let Item::Object(o) = &item {
                let version = o
                    .internal
                    .as_ref()
                    .and_then(|m| m.get(VERSION_KEY))
                    .cloned()
                    .unwrap_or_default();
                if self
                    .shared
                    .journal
                    .tombstone(bucket.as_str(), &o.key)
                    .is_some_and(|t| t >= version)
                {
                    continue;
                }
            }
            if count == max {
                result.is_truncated = true;
                break;
            }
            count += 1;
            last = Some(name);
            match item {
                Item::Prefix(p) => result.common_prefixes.push(p),
                Item::Object(mut o) => {
                    if let Some(internal) = &mut o.internal {
                        if let Some(t) =
                            internal.remove(VERSION_KEY).as_deref().and_then(stamp_time)
                        {
                            o.last_modified = t;
                        }
                        if let Some(etag) = internal.remove(ETAG_KEY) {
                            o.etag = ETag::new(etag);
                        }
                    }
                    result.objects.push(o);
                }
            }
        }
        result.is_truncated |= any_truncated;
        if result.is_truncated {
            result.next_marker = last;
        }
        Ok(result)
    }
}
