//! Listing objects (ListObjectsV2), and decoding the names in a listing.
//!
//! Names are asked for URL-encoded, since keys may hold characters XML 1.0 cannot carry.
//! A server that lists them raw anyway (s3s-fs 0.14) is noticed from a name encoding
//! could not have produced, and from then on its names are taken as they come.

use super::S3;
use super::errors::Call;
use super::headers::to_system_time;
use super::ids::unquote;
use aws_sdk_s3::types::EncodingType;
use s3proxy_core::{BucketName, Error, ListOptions, ListResult, ObjectSummary, Result, list};

/// `Backend::list_objects` through ListObjectsV2.
pub(super) async fn list_objects(
    s3: &S3,
    bucket: &BucketName,
    opts: ListOptions,
) -> Result<ListResult> {
    let max_keys = opts.max_keys.min(list::MAX_KEYS);
    // A start-after that is itself a common prefix makes S3 roll the keys under it
    // up into that prefix again; ask for one more entry to fill the page after
    // dropping the repeat.
    let ask = if max_keys == 0 {
        0
    } else {
        (max_keys + 1).min(list::MAX_KEYS)
    };
    let out = s3
        .client
        .list_objects_v2()
        .bucket(s3.backend_bucket(bucket))
        .prefix(opts.prefix.clone())
        .set_delimiter(opts.delimiter.clone().filter(|d| !d.is_empty()))
        .set_start_after(opts.start_after.clone())
        .max_keys(ask as i32)
        // Keys may hold characters XML 1.0 cannot carry (control characters, CR).
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .map_err(|e| {
            s3.map_err(
                Call::bucket("ListObjectsV2", bucket),
                e,
                Error::NoSuchBucket,
            )
        })?;
    enum Entry {
        Object(ObjectSummary),
        Prefix(String),
    }
    let names = out
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .chain(out.common_prefixes().iter().filter_map(|p| p.prefix()));
    if !s3.lists_raw.load(std::sync::atomic::Ordering::Relaxed)
        && names.clone().any(|n| !could_be_url_encoded(n))
    {
        log::warn!(
            "backend {}: lists names raw although asked to URL-encode them; \
             taking its names as they come from now on",
            s3.name
        );
        s3.lists_raw
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let raw = s3.lists_raw.load(std::sync::atomic::Ordering::Relaxed);
    let decode = |s: &str| if raw { s.to_string() } else { url_decode(s) };
    let start_after = opts.start_after.as_deref().unwrap_or("");
    let mut entries: Vec<(String, Entry)> = Vec::new();
    for o in out.contents() {
        let key = decode(o.key().unwrap_or(""));
        if key.as_str() <= start_after {
            continue;
        }
        entries.push((
            key.clone(),
            Entry::Object(ObjectSummary {
                key,
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: unquote(o.e_tag()),
                last_modified: to_system_time(o.last_modified()),
                internal: None,
            }),
        ));
    }
    for p in out.common_prefixes() {
        let prefix = decode(p.prefix().unwrap_or(""));
        if prefix == start_after {
            continue;
        }
        entries.push((prefix.clone(), Entry::Prefix(prefix)));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut is_truncated = out.is_truncated().unwrap_or(false);
    if entries.len() > max_keys {
        entries.truncate(max_keys);
        is_truncated = true;
    }
    let mut result = ListResult {
        is_truncated,
        next_marker: if is_truncated {
            entries.last().map(|e| e.0.clone())
        } else {
            None
        },
        ..Default::default()
    };
    if is_truncated && result.next_marker.is_none() {
        // Only possible with max-keys 0 (or a server that pages emptily): the next
        // page starts where this one was asked to.
        result.next_marker = opts.start_after.clone();
    }
    for (_, e) in entries {
        match e {
            Entry::Object(o) => result.objects.push(o),
            Entry::Prefix(p) => result.common_prefixes.push(p),
        }
    }
    Ok(result)
}

/// Whether a name can be one a server encoded for `encoding-type=url`: encoding leaves
/// only ASCII letters, digits, `-_.~*'()!/`, `+` (a space) and `%` escapes. A name with
/// anything else (a space, non-ASCII, a quote...) was sent raw.
pub(super) fn could_be_url_encoded(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~*'()!/+%".contains(&b))
}

/// Decode a name from a listing requested with `encoding-type=url`: S3 encodes a space as
/// `+` and a `+` as `%2B`.
pub(super) fn url_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_names_decode() {
        assert_eq!(url_decode("a+b%2Bc%0A%C3%A9"), "a b+c\né");
        assert!(could_be_url_encoded("a+b%2Bc%0A%C3%A9/x.y~z"));
        assert!(!could_be_url_encoded("a b"));
        assert!(!could_be_url_encoded("ünïcödé"));
    }
}
