//! The [`Backend`] impl of [`Encrypted`], operation by operation. Bucket operations pass
//! through; the longer object flows are in `put.rs`, `get.rs` and `parts.rs`.

use super::{Encrypted, if_match, strip_enc};
use crate::format::*;
use crate::manifest::*;
use async_trait::async_trait;
use s3proxy_core::*;

#[async_trait]
impl Backend for Encrypted {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.inner.create_bucket(bucket).await
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.inner.delete_bucket(bucket).await
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.inner.head_bucket(bucket).await
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.opened.forget(bucket.as_str(), key.as_str());
        self.put_sealed(bucket, key, body, opts).await
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        self.get_failing_over(bucket, key, opts).await
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let (stored, forms) = self
            .head_inner(
                bucket,
                key,
                GetOptions {
                    range: None,
                    conditions: Conditions::default(),
                    extensions: opts.extensions.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let decoded = self
            .decode(
                bucket,
                key,
                &stored,
                s3proxy_core::replicas::excluded(&opts),
            )
            .await?;
        self.remember_listed(bucket, key.as_str(), &stored.etag, &forms, &decoded);
        let info = Self::plain_info(&stored, &decoded);
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.listed.forget(bucket.as_str(), key.as_str());
        self.opened.forget(bucket.as_str(), key.as_str());
        self.inner.delete_object(bucket, key).await
    }

    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        for key in &keys {
            self.listed.forget(bucket.as_str(), key.as_str());
            self.opened.forget(bucket.as_str(), key.as_str());
        }
        self.inner.delete_objects(bucket, keys).await
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        let (stored, _) = self
            .head_inner(src_bucket, src_key, GetOptions::default())
            .await?;
        let decoded = self.decode(src_bucket, src_key, &stored, &[]).await?;
        let info = Self::plain_info(&stored, &decoded);
        opts.source_conditions.check(&info, true)?;
        let mut metadata = match opts.directive {
            MetadataDirective::Copy => info.metadata.clone(),
            MetadataDirective::Replace(new) => new,
        };
        strip_enc(&mut metadata.internal);
        // The data key is re-wrapped (with the active master key) and the info record
        // re-sealed for the new metadata; the ciphertext is copied by the inner backend.
        metadata.internal.insert(
            KEY_META.into(),
            wrap_data_key(self.ring.active(), &decoded.data_key),
        );
        if decoded.has_info {
            let parts = (decoded.layout.parts().len() > 1 || decoded.etag.as_str().contains('-'))
                .then(|| decoded.layout.encode());
            let sealed = seal_info(
                &decoded.data_key,
                &Info {
                    size: info.size,
                    etag: info.etag.clone(),
                    parts,
                    meta: metadata_hash(&metadata),
                    // The copy carries the source's manifest trailer along.
                    trailer: (decoded.trailer > 0).then_some(decoded.trailer),
                },
            );
            metadata.internal.insert(INFO_META.into(), sealed);
        } else {
            let sealed = seal_meta(&decoded.data_key, &metadata_hash(&metadata));
            metadata.internal.insert(META_SEAL.into(), sealed);
        }
        // The destination's records change (a copy onto itself keeps its stored ETag).
        self.opened.forget(dst_bucket.as_str(), dst_key.as_str());
        let copied = self
            .inner
            .copy_object(
                src_bucket,
                src_key,
                dst_bucket,
                dst_key,
                CopyOptions {
                    directive: MetadataDirective::Replace(metadata),
                    source_conditions: if_match(&stored.etag),
                },
            )
            .await?;
        if stored.etag.as_str().contains('-') {
            // A copy of a multipart object may be given another ETag than the copy reports.
            self.learn_listed(dst_bucket, dst_key).await;
        } else {
            self.remember_listed(dst_bucket, dst_key.as_str(), &copied.etag, &[], &decoded);
        }
        Ok(PutResult {
            etag: info.etag,
            last_modified: copied.last_modified,
        })
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        let mut page = self.inner.list_objects(bucket, opts).await?;
        self.plaintext_listing(bucket, &mut page).await?;
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        let mut metadata = opts.metadata;
        strip_enc(&mut metadata.internal);
        // Authenticates the upload's headers and user metadata from the moment the inner
        // completion makes it an object (crate::manifest).
        metadata.internal.insert(
            UPLOAD_META.into(),
            upload_meta_tag(
                self.ring.active(),
                bucket.as_str(),
                key.as_str(),
                &metadata_hash(&metadata),
            ),
        );
        let inner = self
            .inner
            .create_multipart_upload(bucket, key, MultipartOptions { metadata })
            .await?;
        self.token(bucket.as_str(), key.as_str(), &inner)
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag> {
        self.upload_sealed_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.opened.forget(bucket.as_str(), key.as_str());
        self.complete_upload(bucket, key, upload_id, parts).await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        let (inner_id, _) = self.open_upload(bucket, key, upload_id)?;
        self.inner
            .abort_multipart_upload(bucket, key, &inner_id)
            .await?;
        self.forget_upload(inner_id.as_str());
        Ok(())
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        let (inner_id, _) = self.open_upload(bucket, key, upload_id)?;
        let mut page = self.inner.list_parts(bucket, key, &inner_id, opts).await?;
        // The manifest part of a completion that did not finish is the layer's own.
        page.parts.retain(|p| !is_manifest_part(p.size));
        for p in &mut page.parts {
            if let Some(md5) = self.known_part(inner_id.as_str(), p.part_number, &p.etag) {
                p.etag = ETag::new(md5);
            }
            if let Some(size) = plain_size(p.size) {
                p.size = size;
            }
        }
        Ok(page)
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        let mut page = self.inner.list_multipart_uploads(bucket, opts).await?;
        for u in &mut page.uploads {
            u.upload_id = self.token(bucket.as_str(), &u.key, &u.upload_id)?;
        }
        Ok(page)
    }
}
