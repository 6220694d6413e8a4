//! GET `?partNumber=N` against servers that answer it with the whole object.
//!
//! S3 answers a part GET with 206 and a Content-Range naming the part inside the object.
//! moto answers the whole object of a multipart upload (200, no Content-Range), though
//! its HEAD `?partNumber=N` gives the part's size and the parts count; s3s-fs ignores the
//! parameter on GET and HEAD. Relaying such an answer would serve the whole object as
//! the part, so when the server's answer has no Content-Range the part is found here:
//! - an object not uploaded in parts (no `-N` in its ETag) is its own part 1, which the
//!   server's answer already is; any other number is InvalidPartNumber;
//! - a multipart object's part N lies after parts 1 to N-1, whose sizes HEAD
//!   `?partNumber` gives (N HEADs, a few at a time, on this rare path); the part's bytes
//!   are then read as a range of the same version (If-Match);
//! - a server whose HEAD does not know parts either (s3s-fs) cannot say where a part
//!   lies: NotImplemented, so that a replicating layer reads from another replica.

use super::S3;
use super::keys;
use s3proxy_core::*;

/// How many HEADs for part sizes are in flight at once.
const HEADS_AT_ONCE: usize = 8;

/// Parts past this one are not looked for with one HEAD per part before them (a single
/// request must not cost the backend thousands): NotImplemented, as for a server that
/// does not know parts, so that a replicating layer reads another replica.
const MAX_PART_LOOKUPS: u32 = 1000;

/// The answer to a GET of part `number` that the server answered whole (`whole`, its
/// info already checked against the request's conditions): `whole` itself as the range
/// of part 1 of an object not uploaded in parts, otherwise that part's bytes read again
/// as a range.
pub(super) async fn part_of_whole(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    number: u32,
    whole: GetResult,
) -> Result<GetResult> {
    let Some(count) = whole.info.etag.parts() else {
        let range = part_range(&[whole.info.size], number)?;
        return Ok(GetResult { range, ..whole });
    };
    if number > count {
        return Err(Error::InvalidPartNumber);
    }
    if number > MAX_PART_LOOKUPS {
        return Err(not_served(s3));
    }
    let etag = whole.info.etag.clone();
    // The whole object's body is not needed: drop it (and its connection) now.
    drop(whole.body);
    let info = whole.info;
    let sizes = part_sizes(s3, bucket, key, &etag, number, count).await?;
    // Sizes that do not fit in the object (a HEAD that ignored partNumber and gave the
    // whole size for each) say nothing about where the part lies.
    let through: u64 = sizes.iter().sum();
    if through > info.size || (number == count && through != info.size) {
        return Err(not_served(s3));
    }
    let range = part_range(&sizes, number)?;
    let mut got = match range {
        Some((first, last)) => {
            s3.get_object(
                bucket,
                key,
                GetOptions {
                    range: Some(ByteRange::FromTo(first, last)),
                    conditions: Conditions {
                        // Plain, as this request has always sent it (servers
                        // compare the tag quoted or not).
                        if_match: Some(etag.into_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?
        }
        // An empty part (only an empty object has one): no bytes to read.
        None => GetResult {
            info: info.clone(),
            range: None,
            body: Box::pin(futures::stream::empty()),
            extensions: Default::default(),
        },
    };
    // The bytes must be the range asked for: a server that ignored Range too would
    // serve the object's first bytes as the part.
    if range.is_some() && got.range != range {
        return Err(not_served(s3));
    }
    got.info = ObjectInfo {
        parts_count: Some(count),
        ..info
    };
    Ok(got)
}

/// This backend cannot serve the part: another replica may.
fn not_served(s3: &S3) -> Error {
    Error::NotImplemented(format!(
        "GET ?partNumber of a multipart object: backend {} does not serve parts",
        s3.name
    ))
}

/// The sizes of parts 1 to `number` of the version `etag` of a `count`-part object, from
/// HEAD `?partNumber`; NotImplemented if the server's HEAD does not answer per part.
async fn part_sizes(
    s3: &S3,
    bucket: &BucketName,
    key: &ObjectKey,
    etag: &ETag,
    number: u32,
    count: u32,
) -> Result<Vec<u64>> {
    use futures::{StreamExt, TryStreamExt};
    let head = |n: u32| async move {
        let out = s3
            .client
            .head_object()
            .bucket(s3.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .part_number(n as i32)
            .if_match(etag.quoted())
            .send()
            .await
            .map_err(|e| {
                s3.map_err(
                    super::errors::Call::object("HeadObject", bucket, key.as_str()),
                    e,
                    Error::NoSuchKey,
                )
            })?;
        if out.parts_count().and_then(|c| u32::try_from(c).ok()) != Some(count) {
            return Err(not_served(s3));
        }
        Ok(out.content_length().unwrap_or(0).max(0) as u64)
    };
    futures::stream::iter(1..=number)
        .map(head)
        .buffered(HEADS_AT_ONCE)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use s3proxy_core::ETag;

    fn parts_in_etag(etag: &str) -> Option<u32> {
        ETag::new(etag).parts()
    }

    #[test]
    fn multipart_etags_count_their_parts() {
        assert_eq!(parts_in_etag("9b2cf535f27731c974343645a3985328-3"), Some(3));
        assert_eq!(
            parts_in_etag("\"9b2cf535f27731c974343645a3985328-12\""),
            Some(12)
        );
        assert_eq!(parts_in_etag("9b2cf535f27731c974343645a3985328"), None);
        assert_eq!(parts_in_etag("x-0"), None);
        assert_eq!(parts_in_etag("x-y"), None);
    }
}
