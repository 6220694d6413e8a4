//! The Backend trait.

use crate::*;
use async_trait::async_trait;
use std::sync::Arc;

/// A shared, type-erased backend, as layers hold their inner backends.
pub type DynBackend = Arc<dyn Backend>;

/// An S3-shaped object store. Storage engines (memory, filesystem, S3), the encryption layer
/// and the replication layer all implement it, so they compose: the HTTP server serves any
/// `Arc<dyn Backend>`.
///
/// Contract, shared by every implementation:
/// - Bodies are streams; an implementation never collects a whole object in memory.
/// - A put is atomic: readers see the previous object or the new one, never a mix, and a
///   put whose body fails (short, long, bad digest, stream error) leaves the previous
///   object in place.
/// - Listing is in UTF-8 byte order of keys, with S3's delimiter and pagination rules
///   (see [`crate::list::paginate`]).
/// - Errors are [`Error`] variants with S3 meaning (`NoSuchBucket`, `NoSuchKey`, ...).
///
/// ```
/// use s3proxy_core::{Backend, DynBackend};
/// fn serve(_backend: DynBackend) {}
/// // Any implementation can be used behind an Arc<dyn Backend>.
/// fn erase<B: Backend>(b: B) -> DynBackend { std::sync::Arc::new(b) }
/// ```
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and errors ("local", "replica-2", ...).
    fn name(&self) -> &str;

    // ---- buckets ----

    /// All buckets, sorted by name.
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;
    /// Create a bucket; [`Error::BucketAlreadyOwnedByYou`] if it exists.
    async fn create_bucket(&self, bucket: &BucketName) -> Result<()>;
    /// Delete an empty bucket; [`Error::BucketNotEmpty`] if it holds objects or uploads.
    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()>;
    /// `Ok` if the bucket exists, else [`Error::NoSuchBucket`].
    async fn head_bucket(&self, bucket: &BucketName) -> Result<()>;

    // ---- objects ----

    /// Store an object atomically from a streaming body of known length.
    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult>;
    /// Read an object (or a range of it), after evaluating the conditions.
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult>;
    /// An object's metadata, after evaluating the conditions (the range is ignored).
    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo>;
    /// [`Backend::head_object`], and the backend ETags of the same stored bytes: one per
    /// replica holding the version shown, for a replicating layer, whose replicas may give
    /// identical bytes different ETags (and whose listings show one replica's), else none.
    /// A layer above that caches by stored ETag recognises every listed form with them.
    async fn head_object_etags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<ETag>)> {
        Ok((self.head_object(bucket, key, opts).await?, vec![]))
    }
    /// Delete an object. Deleting a missing key succeeds, as in S3.
    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()>;
    /// Delete several objects; one outcome per key, in order.
    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.head_bucket(bucket).await?;
        let mut outcomes = Vec::with_capacity(keys.len());
        for key in keys {
            let result = self.delete_object(bucket, &key).await;
            outcomes.push(DeleteOutcome { key, result });
        }
        Ok(outcomes)
    }
    /// Copy an object, keeping or replacing its metadata. Copying an object onto itself
    /// with [`MetadataDirective::Replace`] updates its metadata (s3fs's chmod and touch).
    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult>;
    /// One page of a bucket listing.
    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult>;

    // ---- multipart ----

    /// Start a multipart upload; returns its id.
    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId>;
    /// Store one part (replacing an earlier part with the same number); returns its ETag.
    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag>;
    /// Store one part from (a range of) an existing object; returns the part's ETag.
    /// The default implementation streams the source through [`Backend::upload_part`].
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
        let got = self.get_object(src_bucket, src_key, src).await?;
        let length = got.content_length();
        let body = Body {
            stream: got.body,
            length,
        };
        self.upload_part(
            bucket,
            key,
            upload_id,
            part_number,
            body,
            PartOptions::default(),
        )
        .await
    }
    /// Assemble the listed parts into the object, atomically.
    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult>;
    /// Abort an upload and drop its parts.
    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()>;
    /// The parts uploaded so far.
    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult>;
    /// Uploads in progress in a bucket.
    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult>;
}
