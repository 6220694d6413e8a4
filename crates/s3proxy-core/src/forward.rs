//! [`Forward`]: a backend that passes every call to an inner one but the few it changes.
//!
//! Not in the crate root, so that a glob import of `s3proxy_core::*` does not bring its
//! methods into scope next to [`Backend`]'s of the same names (a call on a wrapper would
//! be ambiguous): implement it by its path, `impl s3proxy_core::forward::Forward for ...`.

use crate::*;
use async_trait::async_trait;

/// A wrapper around another backend that changes only some of its calls: a test double
/// that fails, delays or hooks a few operations of a single-copy backend. Everything it
/// does not define goes to [`Forward::inner`], after [`Forward::before`]; every
/// implementation of `Forward` is a [`Backend`].
///
/// The calls [`Backend`] itself composes from others (`head_object_etags`,
/// `delete_objects`, `upload_part_copy`) are composed the same way here,
/// from this wrapper's own calls, so what the wrapper changes applies to them too. That
/// is why it is no shim for a backend whose own versions of those calls matter (the
/// replicating layer's per-replica ETags, an S3 backend's server-side part copy and
/// batched delete): there a wrapper would turn them into the composed forms.
///
/// ```
/// use s3proxy_core::{Backend, BucketName, DynBackend, Error, Result};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// /// A backend that can be switched off.
/// struct Switch { inner: DynBackend, down: AtomicBool }
///
/// #[async_trait::async_trait]
/// impl s3proxy_core::forward::Forward for Switch {
///     fn inner(&self) -> &dyn Backend { &*self.inner }
///     async fn before(&self, _operation: &'static str) -> Result<()> {
///         if self.down.load(Ordering::SeqCst) {
///             return Err(Error::ServiceUnavailable("switched off".into()));
///         }
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # struct Nothing;
/// # #[async_trait::async_trait]
/// # impl s3proxy_core::forward::Forward for Nothing {
/// #     fn inner(&self) -> &dyn Backend { unreachable!() }
/// #     fn name(&self) -> &str { "nothing" }
/// #     async fn head_bucket(&self, _: &BucketName) -> Result<()> { Ok(()) }
/// # }
/// let s = Switch { inner: std::sync::Arc::new(Nothing), down: AtomicBool::new(true) };
/// let bucket = BucketName::new("bkt").unwrap();
/// assert!(s.head_bucket(&bucket).await.is_err());
/// s.down.store(false, Ordering::SeqCst);
/// assert!(s.head_bucket(&bucket).await.is_ok());
/// # });
/// ```
#[async_trait]
#[allow(missing_docs)] // Each call is the Backend method of the same name.
pub trait Forward: Send + Sync + 'static {
    /// The backend every call not defined here goes to.
    fn inner(&self) -> &dyn Backend;

    /// Run before every forwarded call, named by its S3 operation (`PutObject`, ...); an
    /// error is the call's answer and the inner backend is not called. Calls the wrapper
    /// defines itself do not run it.
    async fn before(&self, operation: &'static str) -> Result<()> {
        let _ = operation;
        Ok(())
    }

    fn name(&self) -> &str {
        self.inner().name()
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.before("ListBuckets").await?;
        self.inner().list_buckets().await
    }
    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.before("CreateBucket").await?;
        self.inner().create_bucket(bucket).await
    }
    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.before("DeleteBucket").await?;
        self.inner().delete_bucket(bucket).await
    }
    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.before("HeadBucket").await?;
        self.inner().head_bucket(bucket).await
    }
    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.before("PutObject").await?;
        self.inner().put_object(bucket, key, body, opts).await
    }
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        self.before("GetObject").await?;
        self.inner().get_object(bucket, key, opts).await
    }
    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        self.before("HeadObject").await?;
        self.inner().head_object(bucket, key, opts).await
    }
    async fn head_object_etags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<ETag>)> {
        Ok((Forward::head_object(self, bucket, key, opts).await?, vec![]))
    }
    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.before("DeleteObject").await?;
        self.inner().delete_object(bucket, key).await
    }
    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        Forward::head_bucket(self, bucket).await?;
        let mut outcomes = Vec::with_capacity(keys.len());
        for key in keys {
            let result = Forward::delete_object(self, bucket, &key).await;
            outcomes.push(DeleteOutcome { key, result });
        }
        Ok(outcomes)
    }
    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        self.before("CopyObject").await?;
        self.inner()
            .copy_object(src_bucket, src_key, dst_bucket, dst_key, opts)
            .await
    }
    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        self.before("ListObjects").await?;
        self.inner().list_objects(bucket, opts).await
    }
    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        self.before("CreateMultipartUpload").await?;
        self.inner()
            .create_multipart_upload(bucket, key, opts)
            .await
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
        self.before("UploadPart").await?;
        self.inner()
            .upload_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }
    #[allow(clippy::too_many_arguments)]
    async fn upload_part_copy(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        src: GetOptions,
    ) -> Result<ETag> {
        let got = Forward::get_object(self, src_bucket, src_key, src).await?;
        let length = got.content_length();
        let body = Body {
            stream: got.body,
            length,
        };
        Forward::upload_part(
            self,
            bucket,
            key,
            upload_id,
            part_number,
            body,
            PartOptions::default(),
        )
        .await
    }
    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.before("CompleteMultipartUpload").await?;
        self.inner()
            .complete_multipart_upload(bucket, key, upload_id, parts)
            .await
    }
    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        self.before("AbortMultipartUpload").await?;
        self.inner()
            .abort_multipart_upload(bucket, key, upload_id)
            .await
    }
    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.before("ListParts").await?;
        self.inner().list_parts(bucket, key, upload_id, opts).await
    }
    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.before("ListMultipartUploads").await?;
        self.inner().list_multipart_uploads(bucket, opts).await
    }
}

#[async_trait]
impl<T: Forward> Backend for T {
    fn name(&self) -> &str {
        Forward::name(self)
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Forward::list_buckets(self).await
    }
    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        Forward::create_bucket(self, bucket).await
    }
    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        Forward::delete_bucket(self, bucket).await
    }
    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        Forward::head_bucket(self, bucket).await
    }
    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        Forward::put_object(self, bucket, key, body, opts).await
    }
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        Forward::get_object(self, bucket, key, opts).await
    }
    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        Forward::head_object(self, bucket, key, opts).await
    }
    async fn head_object_etags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<ETag>)> {
        Forward::head_object_etags(self, bucket, key, opts).await
    }
    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        Forward::delete_object(self, bucket, key).await
    }
    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        Forward::delete_objects(self, bucket, keys).await
    }
    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        Forward::copy_object(self, src_bucket, src_key, dst_bucket, dst_key, opts).await
    }
    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        Forward::list_objects(self, bucket, opts).await
    }
    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        Forward::create_multipart_upload(self, bucket, key, opts).await
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
        Forward::upload_part(self, bucket, key, upload_id, part_number, body, opts).await
    }
    async fn upload_part_copy(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        src: GetOptions,
    ) -> Result<ETag> {
        Forward::upload_part_copy(
            self,
            bucket,
            key,
            upload_id,
            part_number,
            src_bucket,
            src_key,
            src,
        )
        .await
    }
    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        Forward::complete_multipart_upload(self, bucket, key, upload_id, parts).await
    }
    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        Forward::abort_multipart_upload(self, bucket, key, upload_id).await
    }
    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        Forward::list_parts(self, bucket, key, upload_id, opts).await
    }
    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        Forward::list_multipart_uploads(self, bucket, opts).await
    }
}
