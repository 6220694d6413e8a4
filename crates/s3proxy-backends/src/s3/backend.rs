//! The [`Backend`] impl: buckets and single objects here; listing and multipart uploads
//! in [`listing`] and [`multipart`].

use super::body::{download_stream, sdk_body};
use super::errors::Call;
use super::headers::{copy_source, md5_header, parse_content_range, range_header, to_system_time};
use super::ids::unquote;
use super::metadata::{
    check_internal, expires_mutation, join_metadata, response_metadata, with_headers,
};
use super::{S3, keys, listing, multipart, part_number};
use async_trait::async_trait;
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, MetadataDirective as SdkDirective,
    ObjectIdentifier,
};
use base64::Engine;
use md5::{Digest, Md5};
use s3proxy_core::*;
use std::collections::HashMap;
use std::time::SystemTime;

impl S3 {
    /// HeadObject, without the conditions checked here (only sent); a missing key is told
    /// apart from a missing bucket.
    pub(super) async fn head_raw(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        if let Some(lean) = &self.lean {
            let result = self.lean_head(lean, bucket, key, conditions).await;
            // A HEAD has no body to say which of bucket or key is missing.
            if matches!(result, Err(Error::NoSuchKey)) {
                self.head_bucket(bucket).await?;
            }
            return result;
        }
        let out = self
            .client
            .head_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .set_if_match(conditions.if_match.clone())
            .set_if_none_match(conditions.if_none_match.clone())
            .set_if_modified_since(conditions.if_modified_since.map(DateTime::from))
            .set_if_unmodified_since(conditions.if_unmodified_since.map(DateTime::from))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let call = Call::object("HeadObject", bucket, key.as_str());
                let err = self.map_err(call, e, Error::NoSuchKey);
                // A HEAD has no body to say which of bucket or key is missing.
                if matches!(err, Error::NoSuchKey) {
                    self.head_bucket(bucket).await?;
                }
                return Err(err);
            }
        };
        let metadata = response_metadata!(out);
        Ok(ObjectInfo {
            key: key.clone(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: unquote(out.e_tag()),
            last_modified: to_system_time(out.last_modified()),
            metadata,
            parts_count: None,
        })
    }
}

#[async_trait]
impl Backend for S3 {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| self.map_err(Call::new("ListBuckets"), e, Error::NoSuchBucket))?;
            for b in page.buckets() {
                if let Some(proxy) = b.name().and_then(|n| self.proxy_bucket(n)) {
                    out.push(BucketInfo {
                        name: proxy,
                        created: to_system_time(b.creation_date()),
                    });
                }
            }
            token = page.continuation_token().map(str::to_string);
            if token.as_deref().is_none_or(str::is_empty) {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        // AWS answers 200 to a repeated create in us-east-1; look first so every server
        // gives the same answer.
        match self.head_bucket(bucket).await {
            Ok(()) => return Err(Error::BucketAlreadyOwnedByYou),
            Err(Error::NoSuchBucket) => {}
            Err(e) => return Err(e),
        }
        let mut req = self
            .client
            .create_bucket()
            .bucket(self.backend_bucket(bucket));
        if self.region != "us-east-1" {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        req.send().await.map_err(|e| {
            self.map_err(Call::bucket("CreateBucket", bucket), e, Error::NoSuchBucket)
        })?;
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        // Some servers (s3s-fs) delete a bucket with everything in it. Refuse here first
        // so a DeleteBucket can never destroy objects; the server's own check still
        // covers an object written in between.
        let probe = ListOptions {
            max_keys: 1,
            ..Default::default()
        };
        if !self.list_objects(bucket, probe).await?.objects.is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        self.client
            .delete_bucket()
            .bucket(self.backend_bucket(bucket))
            .send()
            .await
            .map_err(|e| {
                self.map_err(Call::bucket("DeleteBucket", bucket), e, Error::NoSuchBucket)
            })?;
        Ok(())
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(self.backend_bucket(bucket))
            .send()
            .await
            .map_err(|e| {
                self.map_err(Call::bucket("HeadBucket", bucket), e, Error::NoSuchBucket)
            })?;
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        check_internal(&opts.metadata)?;
        if body.length > MAX_PUT_SIZE {
            return Err(Error::EntityTooLarge);
        }
        // The signer leaves a header whose value is not plain ASCII out of the signature,
        // which a strict server refuses ("headers present ... not signed"); the SDK signs
        // raw UTF-8 metadata, so such rare PUTs take its path.
        let plain_ascii = join_metadata(&opts.metadata)
            .values()
            .all(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t'));
        if let Some(lean) = self.lean.as_ref().filter(|_| plain_ascii) {
            let etag = self
                .lean_put(lean, bucket, key, body, opts.content_md5, &opts.metadata)
                .await?;
            return Ok(PutResult {
                etag,
                // PutObject does not return the time; this is when the server answered.
                last_modified: SystemTime::now(),
            });
        }
        let (stream, length, failure) = sdk_body(body, opts.content_md5);
        let req = self
            .client
            .put_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .content_length(length)
            .set_content_md5(md5_header(opts.content_md5))
            .set_metadata(Some(join_metadata(&opts.metadata)))
            .body(stream);
        let req = with_headers!(req, &opts.metadata.headers);
        let out = self
            .with_body(&failure, async {
                req.customize()
                    .mutate_request(expires_mutation(opts.metadata.headers.expires.clone()))
                    .send()
                    .await
                    .map_err(|e| {
                        let call = Call::object("PutObject", bucket, key.as_str());
                        self.map_err(call, e, Error::NoSuchBucket)
                    })
            })
            .await?;
        Ok(PutResult {
            etag: unquote(out.e_tag()),
            // PutObject does not return the time; this is when the server answered.
            last_modified: SystemTime::now(),
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let c = &opts.conditions;
        if let Some(lean) = &self.lean {
            let (info, range, body) = self.lean_get(lean, bucket, key, &opts).await?;
            // Servers that ignore some conditional header still get S3's answer.
            c.check(&info, false)?;
            let got = GetResult {
                info,
                range,
                body,
                extensions: Default::default(),
            };
            return match opts.part_number {
                // The server ignored partNumber (moto, s3s-fs): see `part_number`.
                Some(number) if got.range.is_none() => {
                    part_number::part_of_whole(self, bucket, key, number, got).await
                }
                _ => Ok(got),
            };
        }
        let out = self
            .client
            .get_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .set_range(opts.range.map(range_header))
            .set_part_number(opts.part_number.map(|n| n as i32))
            .set_if_match(c.if_match.clone())
            .set_if_none_match(c.if_none_match.clone())
            .set_if_modified_since(c.if_modified_since.map(DateTime::from))
            .set_if_unmodified_since(c.if_unmodified_since.map(DateTime::from))
            .send()
            .await
            .map_err(|e| {
                self.map_err(
                    Call::object("GetObject", bucket, key.as_str()),
                    e,
                    Error::NoSuchKey,
                )
            })?;
        let body_len = out.content_length().unwrap_or(0).max(0) as u64;
        // A part is served like a range (some servers answer a one-part object's part 1
        // whole, without Content-Range).
        let ranged = opts.range.is_some() || opts.part_number.is_some();
        let content_range = out.content_range().and_then(parse_content_range);
        let (range, size) = match content_range {
            Some((first, last, total)) if ranged => (Some((first, last)), total),
            _ => (None, body_len),
        };
        let metadata = response_metadata!(out);
        let info = ObjectInfo {
            key: key.clone(),
            size,
            etag: unquote(out.e_tag()),
            last_modified: to_system_time(out.last_modified()),
            metadata,
            parts_count: opts
                .part_number
                .and(out.parts_count())
                .and_then(|n| u32::try_from(n).ok()),
        };
        // Servers that ignore some conditional header still get S3's answer.
        c.check(&info, false)?;
        let got = GetResult {
            info,
            range,
            body: download_stream(self.name.clone(), out.body, self.body_idle),
            extensions: Default::default(),
        };
        match opts.part_number {
            // The server ignored partNumber (moto, s3s-fs): see `part_number`.
            Some(number) if content_range.is_none() => {
                part_number::part_of_whole(self, bucket, key, number, got).await
            }
            _ => Ok(got),
        }
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let info = self.head_raw(bucket, key, &opts.conditions).await?;
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        if let Some(lean) = &self.lean {
            return self.lean_delete(lean, bucket, key).await;
        }
        let result = self
            .client
            .delete_object()
            .bucket(self.backend_bucket(bucket))
            .key(keys::wire(key.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match self.map_err(
                Call::object("DeleteObject", bucket, key.as_str()),
                e,
                Error::NoSuchKey,
            ) {
                Error::NoSuchKey => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        let mut outcomes = Vec::with_capacity(keys.len());
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(k.as_str())
                        .build()
                        .map_err(|e| {
                            let call = Call::object("DeleteObjects", bucket, k.as_str());
                            self.request_not_built(call, &e)
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(false)
                .build()
                .map_err(|e| self.request_not_built(Call::bucket("DeleteObjects", bucket), &e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(self.backend_bucket(bucket))
                .delete(delete)
                .customize()
                // DeleteObjects requires an integrity header; servers that predate the
                // flexible checksums only know Content-MD5.
                .mutate_request(|req| {
                    if let Some(body) = req.body().bytes() {
                        let md5 = Md5::digest(body);
                        let value = base64::engine::general_purpose::STANDARD.encode(md5);
                        req.headers_mut().insert("content-md5", value);
                    }
                })
                .send()
                .await
                .map_err(|e| {
                    self.map_err(
                        Call::bucket("DeleteObjects", bucket),
                        e,
                        Error::NoSuchBucket,
                    )
                })?;
            let mut failed: HashMap<&str, Error> = HashMap::new();
            for e in out.errors() {
                let Some(key) = e.key() else { continue };
                let err = self.map_code(
                    "DeleteObjects",
                    e.code(),
                    500,
                    e.message().unwrap_or(""),
                    Error::NoSuchKey,
                );
                // No SDK error behind this one: the server's code and message are in the
                // text already, the bucket and key are not.
                let err =
                    self.internal_context(Call::object("DeleteObjects", bucket, key), err, None);
                if !matches!(err, Error::NoSuchKey) {
                    failed.insert(key, err);
                }
            }
            for key in batch {
                let result = match failed.remove(key.as_str()) {
                    Some(err) => Err(err),
                    None => Ok(()),
                };
                outcomes.push(DeleteOutcome {
                    key: key.clone(),
                    result,
                });
            }
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
        let c = &opts.source_conditions;
        if !c.is_empty() {
            // Evaluated here too, for servers that ignore x-amz-copy-source-if-*; the
            // server's own check (sent below) closes the race.
            let src = self
                .head_raw(src_bucket, src_key, &Conditions::default())
                .await?;
            c.check(&src, true)?;
        }
        let mut req = self
            .client
            .copy_object()
            .bucket(self.backend_bucket(dst_bucket))
            .key(keys::wire(dst_key.as_str()))
            .copy_source(copy_source(&self.backend_bucket(src_bucket), src_key))
            .set_copy_source_if_match(c.if_match.clone())
            .set_copy_source_if_none_match(c.if_none_match.clone())
            .set_copy_source_if_modified_since(c.if_modified_since.map(DateTime::from))
            .set_copy_source_if_unmodified_since(c.if_unmodified_since.map(DateTime::from));
        let mut expires = None;
        match &opts.directive {
            MetadataDirective::Copy => {
                req = req.metadata_directive(SdkDirective::Copy);
            }
            MetadataDirective::Replace(meta) => {
                check_internal(meta)?;
                req = req
                    .metadata_directive(SdkDirective::Replace)
                    .set_metadata(Some(join_metadata(meta)));
                req = with_headers!(req, &meta.headers);
                expires = meta.headers.expires.clone();
            }
        }
        let out = req
            .customize()
            .mutate_request(expires_mutation(expires))
            .send()
            .await
            .map_err(|e| {
                let call = Call::object("CopyObject", dst_bucket, dst_key.as_str())
                    .source(src_bucket, src_key.as_str());
                self.map_err(call, e, Error::NoSuchKey)
            })?;
        let result = out.copy_object_result();
        Ok(PutResult {
            etag: unquote(result.and_then(|r| r.e_tag())),
            last_modified: result
                .and_then(|r| r.last_modified())
                .map(|t| to_system_time(Some(t)))
                .unwrap_or_else(SystemTime::now),
        })
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        listing::list_objects(self, bucket, opts).await
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        multipart::create(self, bucket, key, opts).await
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
        multipart::upload_part(self, bucket, key, upload_id, part_number, body, opts).await
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
        multipart::upload_part_copy(
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
        multipart::complete(self, bucket, key, upload_id, parts).await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        multipart::abort(self, bucket, key, upload_id).await
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        multipart::list_parts(self, bucket, key, upload_id, opts).await
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        multipart::list_uploads(self, bucket, opts).await
    }
}
