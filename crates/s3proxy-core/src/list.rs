//! S3 listing semantics, shared by every backend that keeps a sorted index of its keys.

use crate::{ListOptions, ListResult, ObjectSummary};

/// S3's cap on keys per listing page.
pub const MAX_KEYS: usize = 1000;

/// The common prefix `key` rolls up into under `prefix` and `delimiter`, if any.
///
/// ```
/// use s3proxy_core::list::common_prefix;
/// assert_eq!(common_prefix("a/b/c", "a/", Some("/")), Some("a/b/"));
/// assert_eq!(common_prefix("a/b", "a/", Some("/")), None);
/// ```
pub fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let delimiter = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter)
        .map(|at| &key[..prefix.len() + at + delimiter.len()])
}

/// Build one listing page from `objects`, which must be sorted by key in UTF-8 byte order
/// (the order of Rust's `str`). Applies prefix, delimiter, start-after and max-keys exactly
/// as S3 does: each common prefix counts as one entry, and a page ends after at most
/// `max_keys` entries with `next_marker` naming the last one.
///
/// The iterator may start anywhere at or before the first candidate; entries outside the
/// prefix or not after `start_after` are skipped, and iteration stops at the first key past
/// the prefix.
///
/// ```
/// use s3proxy_core::{ListOptions, ObjectSummary, list::paginate};
/// let obj = |k: &str| ObjectSummary {
///     key: k.into(), size: 0, etag: Default::default(), last_modified: std::time::UNIX_EPOCH,
///     internal: None,
/// };
/// let all = vec![obj("a/1"), obj("a/2"), obj("b"), obj("c/1")];
/// let opts = ListOptions { delimiter: Some("/".into()), max_keys: 2, ..Default::default() };
/// let page = paginate(all.into_iter(), &opts);
/// assert_eq!(page.common_prefixes, vec!["a/"]);
/// assert_eq!(page.objects[0].key, "b");
/// assert!(page.is_truncated);
/// assert_eq!(page.next_marker.as_deref(), Some("b"));
/// ```
pub fn paginate(objects: impl Iterator<Item = ObjectSummary>, opts: &ListOptions) -> ListResult {
    let mut result = ListResult::default();
    let max_keys = opts.max_keys.min(MAX_KEYS);
    let start_after = opts.start_after.as_deref().unwrap_or("");
    let delimiter = opts.delimiter.as_deref();
    let mut entries = 0usize;
    let mut last: Option<String> = None;
    for obj in objects {
        if !obj.key.starts_with(opts.prefix.as_str()) {
            if obj.key.as_str() > opts.prefix.as_str() {
                break;
            }
            continue;
        }
        if obj.key.as_str() <= start_after {
            continue;
        }
        let cp = common_prefix(&obj.key, &opts.prefix, delimiter);
        if let Some(cp) = cp {
            // Already emitted (on this page or as the marker of the previous one).
            if last.as_deref() == Some(cp) || cp == start_after {
                continue;
            }
        }
        if entries == max_keys {
            result.is_truncated = true;
            break;
        }
        entries += 1;
        match cp {
            Some(cp) => {
                last = Some(cp.to_string());
                result.common_prefixes.push(cp.to_string());
            }
            None => {
                last = Some(obj.key.clone());
                result.objects.push(obj);
            }
        }
    }
    if result.is_truncated {
        result.next_marker = last;
    }
    result
}

/// Whether `bucket` on `backend` lists anything that keeps it from being deleted: an
/// object, a common prefix or an upload in progress. Layers over several backends ask
/// each before deleting a bucket anywhere, so that a refusal never leaves it on some
/// backends only.
///
/// ```
/// use s3proxy_core::{Backend, BucketName, list::holds_anything};
/// async fn deletable(backend: &dyn Backend, bucket: &BucketName) -> bool {
///     // A backend that cannot tell is not known to be empty.
///     !holds_anything(backend, bucket).await.unwrap_or(true)
/// }
/// ```
pub async fn holds_anything(
    backend: &dyn crate::Backend,
    bucket: &crate::BucketName,
) -> crate::Result<bool> {
    let objects = backend
        .list_objects(
            bucket,
            crate::ListOptions {
                max_keys: 1,
                ..Default::default()
            },
        )
        .await?;
    if !objects.objects.is_empty() || !objects.common_prefixes.is_empty() {
        return Ok(true);
    }
    let uploads = backend
        .list_multipart_uploads(
            bucket,
            crate::ListUploadsOptions {
                max_uploads: 1,
                ..Default::default()
            },
        )
        .await?;
    Ok(!uploads.uploads.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ETag;
    use std::time::UNIX_EPOCH;

    fn objs(keys: &[&str]) -> Vec<ObjectSummary> {
        let mut v: Vec<_> = keys
            .iter()
            .map(|k| ObjectSummary {
                key: k.to_string(),
                size: 0,
                etag: ETag::default(),
                last_modified: UNIX_EPOCH,
                internal: None,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    fn page(keys: &[&str], opts: &ListOptions) -> (Vec<String>, Vec<String>, Option<String>) {
        let r = paginate(objs(keys).into_iter(), opts);
        (
            r.objects.into_iter().map(|o| o.key).collect(),
            r.common_prefixes,
            r.next_marker,
        )
    }

    #[test]
    fn walks_all_pages_with_delimiter() {
        let keys = [
            "a", "a/", "a/b", "a/c/d", "b", "b/x", "c", "é", "z/1", "z/2", "zz",
        ];
        let mut opts = ListOptions {
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Default::default()
        };
        let mut seen_keys = vec![];
        let mut seen_prefixes = vec![];
        loop {
            let r = paginate(objs(&keys).into_iter(), &opts);
            seen_keys.extend(r.objects.into_iter().map(|o| o.key));
            seen_prefixes.extend(r.common_prefixes);
            if !r.is_truncated {
                break;
            }
            opts.start_after = r.next_marker;
        }
        assert_eq!(seen_keys, ["a", "b", "c", "zz", "é"]);
        assert_eq!(seen_prefixes, ["a/", "b/", "z/"]);
    }

    #[test]
    fn prefix_and_nested_delimiter() {
        let keys = ["a/", "a/b", "a/c/d", "a/c/e", "a//x", "ab"];
        let opts = ListOptions {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            max_keys: 1000,
            ..Default::default()
        };
        let (k, p, m) = page(&keys, &opts);
        assert_eq!(k, ["a/", "a/b"]);
        assert_eq!(p, ["a//", "a/c/"]);
        assert_eq!(m, None);
    }

    #[test]
    fn max_keys_zero_and_exact_fit() {
        let keys = ["a", "b"];
        let mut opts = ListOptions {
            max_keys: 0,
            ..Default::default()
        };
        let r = paginate(objs(&keys).into_iter(), &opts);
        assert!(r.objects.is_empty() && r.is_truncated);
        opts.max_keys = 2;
        let r = paginate(objs(&keys).into_iter(), &opts);
        assert_eq!(r.objects.len(), 2);
        assert!(!r.is_truncated);
    }
}
