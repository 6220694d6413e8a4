//! CompleteMultipartUpload retried after it succeeded (the client lost the answer): S3
//! answers 200 with the same ETag, not NoSuchUpload.

use super::Encrypted;
use crate::format::*;
use s3proxy_core::*;

impl Encrypted {
    /// When the backends no longer know the upload: the key's current object, if it is
    /// the one this upload completed into. Each upload has its own data key, derived from
    /// its id, which the completed object carries wrapped; the ETag the parts give must
    /// match too.
    pub(super) async fn completed_already(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        data_key: &[u8; 32],
        parts: &[CompletedPart],
    ) -> Option<PutResult> {
        let md5s: Vec<String> = parts
            .iter()
            .map(|p| p.etag.trim_matches('"').to_ascii_lowercase())
            .collect();
        let want = multipart_etag(md5s.iter().map(String::as_str)).ok()?;
        let stored = self
            .inner
            .head_object(bucket, key, GetOptions::default())
            .await
            .ok()?;
        let wrapped = stored.metadata.internal.get(KEY_META)?;
        let theirs = unwrap_data_key(&self.ring, wrapped).ok()?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&theirs[..], &data_key[..])) {
            return None;
        }
        let info = self
            .head_object(bucket, key, GetOptions::default())
            .await
            .ok()?;
        if info.etag != want {
            return None;
        }
        log::info!("CompleteMultipartUpload {bucket}/{key}: already completed; answering as then");
        Some(PutResult {
            etag: info.etag,
            last_modified: info.last_modified,
        })
    }
}
