//! CompleteMultipartUpload retried after it succeeded (the client lost the answer): S3
//! answers 200 with the same ETag, not NoSuchUpload.

use super::Encrypted;
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
            .map(|p| p.etag.as_str().to_ascii_lowercase())
            .collect();
        let want = multipart_etag(md5s.iter().map(String::as_str)).ok()?;
        // Decoded as a read would (the object may carry only its manifest, when the
        // attaching copy never happened).
        let (stored, _) = self
            .head_inner(bucket, key, GetOptions::default())
            .await
            .ok()?;
        let decoded = self.decode(bucket, key, &stored, &[]).await.ok()?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &decoded.data_key[..],
            &data_key[..],
        )) {
            return None;
        }
        let info = Self::plain_info(&stored, &decoded);
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
