//! GetObject: one read attempt (the whole object, or a range mapped to the stored
//! segments covering it, read only while the object is the one just looked up), and the
//! retries around it when a replica serves unauthentic data or the object changes.

use super::{Encrypted, if_match};
use s3proxy_core::*;

enum GetFailure {
    /// Give up with this error.
    Fatal(Error),
    /// The replica named served something unauthentic.
    Corrupt(Error, Option<String>),
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
        let mut exclude = opts.exclude_replicas.clone();
        let mut last_problem = None;
        for _ in 0..4 {
            match self.get_once(bucket, key, &opts, &exclude).await {
                Ok(got) => return Ok(got),
                Err(GetFailure::Fatal(e)) => return Err(e),
                Err(GetFailure::Corrupt(e, Some(replica))) if !exclude.contains(&replica) => {
                    log::warn!("{bucket}/{key}: replica {replica}: {e}; trying another replica");
                    self.inner.report_corrupt(bucket, key, &replica).await;
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
            range: None,
            conditions: Conditions::default(),
            exclude_replicas: exclude.to_vec(),
        };
        let classify = |e: Error, replica: Option<String>| match e {
            Error::Corrupt(_) => Corrupt(e, replica),
            e => Fatal(e),
        };
        match opts.range {
            None => {
                let got = self
                    .inner
                    .get_object(bucket, key, base)
                    .await
                    .map_err(Fatal)?;
                let decoded = self
                    .decode(key, &got.info)
                    .map_err(|e| classify(e, got.served_by.clone()))?;
                self.remember_listed(bucket, key.as_str(), &got.info.etag, &[], &decoded);
                let info = Self::plain_info(&got.info, &decoded);
                opts.conditions.check(&info, false).map_err(Fatal)?;
                let body = self.reader(
                    bucket,
                    key,
                    &got.info.etag,
                    &decoded,
                    None,
                    exclude.to_vec(),
                    got.body,
                    got.served_by.clone(),
                );
                Ok(GetResult {
                    info,
                    range: None,
                    body,
                    served_by: got.served_by,
                })
            }
            Some(range) => {
                let (stored, forms) = self.head_inner(bucket, key, base).await.map_err(Fatal)?;
                let decoded = self.decode(key, &stored).map_err(|e| classify(e, None))?;
                self.remember_listed(bucket, key.as_str(), &stored.etag, &forms, &decoded);
                let info = Self::plain_info(&stored, &decoded);
                opts.conditions.check(&info, false).map_err(Fatal)?;
                let (a, b) = range.resolve(info.size).map_err(Fatal)?;
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
                            exclude_replicas: exclude.to_vec(),
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
                    got.served_by.clone(),
                );
                Ok(GetResult {
                    info,
                    range: Some((a, b)),
                    body,
                    served_by: got.served_by,
                })
            }
        }
    }
}
