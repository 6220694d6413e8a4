//! The [`Backend`] impl: buckets and deletes fanned out, objects striped (write), resolved
//! and rebuilt (read), copies made shard by shard on each backend.

use crate::erasure::Erasure;
use crate::format::*;
use crate::multipart::{UPLOADS_PREFIX, check_key};
use async_trait::async_trait;
use s3proxy_core::*;
use s3proxy_replication::Missed;
use std::time::SystemTime;

impl Erasure {
    /// Succeeds when `needed` backends did; else the first failure (or 503).
    fn enough<T>(outcomes: Vec<Result<T>>, needed: usize) -> Result<Vec<Option<T>>> {
        let ok = outcomes.iter().filter(|o| o.is_ok()).count();
        if ok >= needed {
            return Ok(outcomes.into_iter().map(Result::ok).collect());
        }
        // A client error every failing backend agrees on is the answer; else 503.
        let client_error = outcomes
            .into_iter()
            .filter_map(Result::err)
            .find(|e| !e.is_transient());
        Err(client_error.unwrap_or_else(|| {
            Error::ServiceUnavailable(format!("{ok} backends succeeded, {needed} needed"))
        }))
    }

    /// DeleteObject, also of the layer's own hidden objects.
    pub(crate) async fn delete_object_inner(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<()> {
        let turn = self
            .shared
            .inflight
            .write_turn(bucket, key, self.turn_wait())
            .await?;
        let stamp = self.shared.clock.next();
        let outcomes = self
            .fan_out_marking(
                "DeleteObject",
                &format!("{bucket}/{key}"),
                Some(turn.cut_off()),
                |_, b| {
                    let (bucket, key) = (bucket.clone(), key.clone());
                    async move { b.delete_object(&bucket, &key).await }
                },
            )
            .await;
        if outcomes
            .iter()
            .all(|o| matches!(o, Err(Error::NoSuchBucket)))
        {
            return Err(Error::NoSuchBucket);
        }
        let missed: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].is_err())
            .collect();
        let deleted = outcomes.len() - missed.len();
        if let Err(e) = Self::enough(outcomes, self.delete_quorum()) {
            // Some backends deleted their shard: every backend is journaled for a check,
            // so that repair either rebuilds the shards of a version still readable or
            // deletes the stale shards of one that is not.
            if deleted > 0 {
                for i in 0..self.backends().len() {
                    self.journal_missed(bucket, key, i, stamp.as_str(), Missed::Write);
                }
            }
            return Err(e);
        }
        for i in missed {
            self.journal_missed(bucket, key, i, stamp.as_str(), Missed::Delete);
        }
        Ok(())
    }

    /// Whether any backend lists an object or an upload in `bucket`.
    async fn backend_holding_anything(&self, bucket: &BucketName) -> bool {
        let checks = (0..self.backends().len()).map(|i| async move {
            self.call(
                i,
                |b| async move { list::holds_anything(&*b, bucket).await },
            )
            .await
            .unwrap_or(false)
        });
        futures::future::join_all(checks)
            .await
            .into_iter()
            .any(|x| x)
    }

    /// Backends that must take a delete so that fewer than k stale shards remain.
    fn delete_quorum(&self) -> usize {
        self.backends().len() - self.k() + 1
    }
}

#[async_trait]
impl Backend for Erasure {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let outcomes = self
            .fan_out(
                "ListBuckets",
                "",
                |_, b| async move { b.list_buckets().await },
            )
            .await;
        let mut all: std::collections::BTreeMap<String, BucketInfo> = Default::default();
        let mut answered = 0;
        for page in outcomes.into_iter().flatten() {
            answered += 1;
            for b in page {
                let e = all.entry(b.name.clone()).or_insert_with(|| b.clone());
                e.created = e.created.min(b.created);
            }
        }
        if answered == 0 {
            return Err(Error::ServiceUnavailable(
                "no backend listed its buckets".into(),
            ));
        }
        Ok(all.into_values().collect())
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        let outcomes = self
            .fan_out("CreateBucket", bucket.as_str(), |_, b| {
                let bucket = bucket.clone();
                async move { b.create_bucket(&bucket).await }
            })
            .await;
        if outcomes
            .iter()
            .all(|o| matches!(o, Err(Error::BucketAlreadyOwnedByYou)))
        {
            return Err(Error::BucketAlreadyOwnedByYou);
        }
        // A backend that already had it (an earlier create that did not reach all) is fine.
        let outcomes = outcomes
            .into_iter()
            .map(|o| match o {
                Err(Error::BucketAlreadyOwnedByYou) => Ok(()),
                o => o,
            })
            .collect();
        Self::enough(outcomes, self.shared.opts.required()).map(drop)
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        // Every backend is asked first: one holding anything (a stale shard, a hidden
        // upload object) would refuse after the others had deleted theirs.
        if self.backend_holding_anything(bucket).await {
            return Err(Error::BucketNotEmpty);
        }
        let outcomes = self
            .fan_out("DeleteBucket", bucket.as_str(), |_, b| {
                let bucket = bucket.clone();
                async move { b.delete_bucket(&bucket).await }
            })
            .await;
        if outcomes
            .iter()
            .all(|o| matches!(o, Err(Error::NoSuchBucket)))
        {
            return Err(Error::NoSuchBucket);
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::BucketNotEmpty)))
        {
            // Filled since the check: the bucket is recreated where it was deleted, so
            // that it does not exist on some backends only.
            for (i, o) in outcomes.iter().enumerate() {
                if o.is_ok() {
                    let back = self
                        .call(i, |b| {
                            let bucket = bucket.clone();
                            async move { b.create_bucket(&bucket).await }
                        })
                        .await;
                    if let Err(e) = back {
                        log::error!(
                            "{} DeleteBucket {bucket}: cannot recreate it on {}: {e}",
                            self.shared.name,
                            self.backends()[i].name()
                        );
                    }
                }
            }
            return Err(Error::BucketNotEmpty);
        }
        let outcomes = outcomes
            .into_iter()
            .map(|o| match o {
                Err(Error::NoSuchBucket) => Ok(()),
                o => o,
            })
            .collect();
        Self::enough(outcomes, self.delete_quorum()).map(drop)
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        let outcomes = self
            .fan_out("HeadBucket", bucket.as_str(), |_, b| {
                let bucket = bucket.clone();
                async move { b.head_bucket(&bucket).await }
            })
            .await;
        let ok = outcomes.iter().filter(|o| o.is_ok()).count();
        if ok >= self.k() {
            return Ok(());
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::NoSuchBucket)))
        {
            return Err(Error::NoSuchBucket);
        }
        Self::enough(outcomes, self.k()).map(drop)
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        check_key(key)?;
        let mut metadata = opts.metadata;
        strip(&mut metadata);
        let written = self
            .write_striped(bucket, key, body, opts.content_md5, metadata, None)
            .await?;
        Ok(PutResult {
            etag: written.etag,
            last_modified: written.stamp.time().unwrap_or_else(SystemTime::now),
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        check_key(key)?;
        opts.refuse_part_with_range()?;
        let resolved = self.resolve_served(bucket, key).await?;
        let mut info = resolved.info.clone();
        opts.conditions.check(&info, false)?;
        refuse_parts_of_multipart(&opts, &info)?;
        let size = info.size;
        let range = match (opts.part_number, opts.range) {
            // An object not uploaded in parts is its own one part.
            (Some(1), _) => {
                info.parts_count = Some(1);
                (size > 0).then(|| (0, size - 1))
            }
            (Some(_), _) => return Err(Error::InvalidPartNumber),
            (None, Some(r)) => Some(r.resolve(size)?),
            (None, None) => None,
        };
        let body = match range.or((size > 0).then(|| (0, size - 1))) {
            Some(span) => self.stream_range(bucket, key, &resolved, span),
            None => Box::pin(futures::stream::empty()),
        };
        Ok(GetResult {
            info,
            range: if opts.part_number.is_some() && size == 0 {
                None
            } else {
                range
            },
            body,
            extensions: Default::default(),
        })
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        check_key(key)?;
        opts.refuse_part_with_range()?;
        let mut info = self.resolve_served(bucket, key).await?.info;
        opts.conditions.check(&info, false)?;
        refuse_parts_of_multipart(&opts, &info)?;
        match opts.part_number {
            Some(1) => info.parts_count = Some(1),
            Some(_) => return Err(Error::InvalidPartNumber),
            None => {}
        }
        Ok(info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        check_key(key)?;
        self.delete_object_inner(bucket, key).await
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        check_key(src_key)?;
        check_key(dst_key)?;
        self.copy_shards(src_bucket, src_key, dst_bucket, dst_key, opts)
            .await
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        if opts.prefix.starts_with(UPLOADS_PREFIX) {
            // Only this layer lists inside its uploads' state.
            self.head_bucket(bucket).await?;
            return Ok(ListResult {
                objects: vec![],
                common_prefixes: vec![],
                is_truncated: false,
                next_marker: None,
            });
        }
        let mut page = self.merged_listing(bucket, opts).await?;
        // The uploads' state is this layer's own.
        page.objects.retain(|o| !o.key.starts_with(UPLOADS_PREFIX));
        page.common_prefixes
            .retain(|p| !p.starts_with(UPLOADS_PREFIX));
        Ok(page)
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        self.create_upload(bucket, key, opts).await
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
        self.store_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.complete_upload(bucket, key, upload_id, parts).await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        self.abort_upload(bucket, key, upload_id).await
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.parts_page(bucket, key, upload_id, opts).await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.uploads_page(bucket, opts).await
    }
}

/// `partNumber` of an object completed from parts: this layer keeps no part sizes, so it
/// answers NotImplemented rather than the whole object as part 1 (the encryption layer
/// above answers it from its own manifest).
fn refuse_parts_of_multipart(opts: &GetOptions, info: &ObjectInfo) -> Result<()> {
    if opts.part_number.is_some() && info.etag.as_str().contains('-') {
        return Err(Error::NotImplemented(
            "partNumber of a multipart object under erasure coding".into(),
        ));
    }
    Ok(())
}
