//! A GET body that continues from the next replica holding the version, at the byte it
//! reached, when its replica fails or stalls in the middle.

use crate::Replicated;
use futures::StreamExt;
use s3proxy_core::*;

/// A GET body that continues from another replica when its replica fails or stalls.
pub(crate) struct Failover {
    pub(crate) this: Replicated,
    pub(crate) bucket: BucketName,
    pub(crate) key: ObjectKey,
    pub(crate) etag: ETag,
    pub(crate) holders: Vec<usize>,
    pub(crate) current: usize,
    pub(crate) body: ByteStream,
    pub(crate) next_offset: u64,
    pub(crate) end: u64,
}

impl Failover {
    pub(crate) fn into_stream(self) -> ByteStream {
        Box::pin(futures::stream::try_unfold(self, |mut s| async move {
            loop {
                if s.next_offset > s.end {
                    return Ok(None);
                }
                let stall = s.this.replicas()[s.holders[s.current]].timeout;
                let failure = match tokio::time::timeout(stall, s.body.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        s.next_offset += chunk.len() as u64;
                        return Ok(Some((chunk, s)));
                    }
                    Ok(None) => Error::Internal("replica ended the body early".into()),
                    Ok(Some(Err(e))) => e,
                    Err(_) => Error::ServiceUnavailable(format!("stalled for {stall:?}")),
                };
                let failed = s.this.replicas()[s.holders[s.current]]
                    .backend
                    .name()
                    .to_string();
                s.this.replicas()[s.holders[s.current]]
                    .health
                    .unresponsive();
                loop {
                    s.current += 1;
                    let Some(&next) = s.holders.get(s.current) else {
                        log::warn!(
                            "GetObject {}/{}: {failed} failed mid-body ({failure}) and no replica is left",
                            s.bucket,
                            s.key
                        );
                        return Err(failure);
                    };
                    let backend = s.this.replicas()[next].backend.clone();
                    log::warn!(
                        "GetObject {}/{}: {failed} failed mid-body ({failure}); continuing from {} at byte {}",
                        s.bucket,
                        s.key,
                        backend.name(),
                        s.next_offset
                    );
                    let opts = GetOptions {
                        range: Some(ByteRange::FromTo(s.next_offset, s.end)),
                        conditions: Conditions {
                            if_match: Some(s.etag.as_str().to_owned()),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    if let Ok(got) = backend.get_object(&s.bucket, &s.key, opts).await {
                        s.body = got.body;
                        break;
                    }
                }
            }
        }))
    }
}
