//! GetObject: one read attempt (the whole object, or a range mapped to the stored
//! segments covering it, read only while the object is the one just looked up), and the
//! retries around it when a replica serves unauthentic data or the object changes.

use super::{Decoded, Encrypted, if_match};
use s3proxy_core::replicas::{self, ServedBy};
use s3proxy_core::*;

enum GetFailure {
    /// Give up with this error.
    Fatal(Error),
    /// The replica named served something unauthentic.
    Corrupt(Error, Option<ServedBy>),
    /// The object changed between our HEAD and GET.
    Raced,
}

impl Encrypted {
    /// GetObject: read, verify and decrypt, trying another replica when one serves data
    /// that does not authenticate, and again when the object changes while being read.
    pub(super) async fn get_failing_over(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let mut exclude = replicas::excluded(&opts).to_vec();
        let mut last_problem = None;
        for _ in 0..4 {
            match self.get_once(bucket, key, &opts, &exclude).await {
                Ok(got) => return Ok(got),
                Err(GetFailure::Fatal(e)) => return Err(e),
                Err(GetFailure::Corrupt(e, Some(served))) if !exclude.contains(&served.replica) => {
                    let replica = served.replica;
                    log::warn!("{bucket}/{key}: replica {replica}: {e}; trying another replica");
                    served.layer.report_corrupt(bucket, key, &replica).await;
                    exclude.push(replica);
                    last_problem = Some(e);
                }
                Err(GetFailure::Corrupt(e, _)) => return Err(e),
                Err(GetFailure::Raced) => {}
            }
        }
        Err(last_problem.unwrap_or_else(|| {
            Error::ServiceUnavailable(format!("{bucket}/{key} kept changing while being read"))
        }))
    }

    async fn get_once(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: &GetOptions,
        exclude: &[String],
    ) -> std::result::Result<GetResult, GetFailure> {
        use GetFailure::*;
        let base = GetOptions {
            extensions: replicas::excluding(exclude),
            ..Default::default()
        };
        let classify = |e: Error, replica: Option<ServedBy>| match e {
            Error::Corrupt(_) => Corrupt(e, replica),
            e => Fatal(e),
        };
        // The plaintext bytes wanted, when not the whole object: a range, or a part
        // located by the object's layout. An empty object's only part is read whole.
        let mut wanted = None;
        let mut parts_count = None;
        if opts.range.is_some() || opts.part_number.is_some() {
            let (stored, forms) = self
                .head_inner(bucket, key, base.clone())
                .await
                .map_err(Fatal)?;
            let decoded = self
                .decode(bucket, key, &stored, exclude)
                .await
                .map_err(|e| classify(e, None))?;
            self.remember_listed(bucket, key.as_str(), &stored.etag, &forms, &decoded);
            let mut info = Self::plain_info(&stored, &decoded);
            opts.conditions.check(&info, false).map_err(Fatal)?;
            let span = match (opts.part_number, opts.range) {
                (Some(_), Some(_)) => return Err(Fatal(Error::part_with_range())),
                (Some(n), None) => part_span(&decoded, &mut info, n).map_err(Fatal)?,
                (None, Some(range)) => Some(range.resolve(info.size).map_err(Fatal)?),
                (None, None) => None,
            };
            parts_count = info.parts_count;
            if let Some(span) = span {
                wanted = Some((stored, decoded, info, span));
            }
        }
        match wanted {
            None => {
                let got = self
                    .inner
                    .get_object(bucket, key, base)
                    .await
                    .map_err(Fatal)?;
                let decoded = self
                    .decode(bucket, key, &got.info, exclude)
                    .await
                    .map_err(|e| classify(e, replicas::served_by(&got).cloned()))?;
                self.remember_listed(bucket, key.as_str(), &got.info.etag, &[], &decoded);
                let mut info = Self::plain_info(&got.info, &decoded);
                opts.conditions.check(&info, false).map_err(Fatal)?;
                info.parts_count = parts_count;
                let body = self.reader(
                    bucket,
                    key,
                    &got.info.etag,
                    &decoded,
                    None,
                    exclude.to_vec(),
                    got.body,
                    got.extensions.get::<ServedBy>().cloned(),
                );
                Ok(GetResult {
                    info,
                    range: None,
                    body,
                    extensions: got.extensions,
                })
            }
            Some((stored, decoded, info, (a, b))) => {
                let (first, last) = decoded.layout.covering(Some((a, b)));
                let (first, last) = (decoded.layout.segment(first), decoded.layout.segment(last));
                let stored_range = ByteRange::FromTo(
                    first.stored_start,
                    last.stored_start + last.stored_len() - 1,
                );
                let got = self
                    .inner
                    .get_object(
                        bucket,
                        key,
                        GetOptions {
                            range: Some(stored_range),
                            conditions: if_match(&stored.etag),
                            extensions: replicas::excluding(exclude),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| match e {
                        Error::PreconditionFailed | Error::NoSuchKey => Raced,
                        e => Fatal(e),
                    })?;
                let body = self.reader(
                    bucket,
                    key,
                    &stored.etag,
                    &decoded,
                    Some((a, b)),
                    exclude.to_vec(),
                    got.body,
                    got.extensions.get::<ServedBy>().cloned(),
                );
                Ok(GetResult {
                    info,
                    range: Some((a, b)),
                    body,
                    extensions: got.extensions,
                })
            }
        }
    }
}

/// Where part `number` of the object lies in the plaintext, from its layout, and the parts
/// count in `info` for a multipart object. The parts a client uploaded are the first ones
/// of the layout, as many as its ETag counts (`-N`); an object not uploaded in parts is
/// its only part.
fn part_span(decoded: &Decoded, info: &mut ObjectInfo, number: u32) -> Result<Option<(u64, u64)>> {
    // The sealed record's ETag, which only the proxy writes: `-0` or an opaque tag never
    // comes from it, and counts as a single PUT's.
    let Some(count) = decoded.etag.parts().map(|n| n as usize) else {
        return part_range(&[info.size], number);
    };
    let parts = decoded.layout.parts();
    if count == 0 || count > parts.len() {
        return Err(Error::Corrupt(format!(
            "{}: {} parts in the layout, {count} in the ETag",
            info.key,
            parts.len()
        )));
    }
    info.parts_count = Some(count as u32);
    let sizes: Vec<u64> = parts[..count].iter().map(|p| p.plain_len).collect();
    part_range(&sizes, number)
}
