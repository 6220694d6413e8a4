//! Multipart uploads: each part striped on its own into a hidden object, the completion
//! re-striping the parts, in order, into the object.
//!
//! Why not the backends' own multipart uploads: a backend refuses parts under 5 MiB but
//! the last, and a client's 5 MiB part split k ways is smaller. Hidden objects have no
//! such limit. Every instance finds an upload's state on the backends (its marker and
//! part objects), so parts may reach different instances. The completion reads the parts
//! back through the proxy: it costs the upload's size again, and is what keeps the format
//! of every object the same (docs/ERASURE.md).

use crate::erasure::Erasure;
use crate::format::strip;
use futures::StreamExt;
use s3proxy_core::*;
use std::time::SystemTime;

/// Keys under this prefix hold the state of multipart uploads; clients may not use them.
pub const UPLOADS_PREFIX: &str = ".s3proxy-ec-uploads/";

/// Internal metadata of an upload's marker: the key the upload writes.
const UPLOAD_KEY: &str = "s3proxy-ec-upload-key";

fn marker_key(id: &UploadId) -> Result<ObjectKey> {
    ObjectKey::new(format!("{UPLOADS_PREFIX}{}", id.as_str()))
}

fn part_key(id: &UploadId, n: u32) -> Result<ObjectKey> {
    ObjectKey::new(format!("{UPLOADS_PREFIX}{}/{n:05}", id.as_str()))
}

/// Refuse a client key in the reserved prefix.
pub(crate) fn check_key(key: &ObjectKey) -> Result<()> {
    if key.as_str().starts_with(UPLOADS_PREFIX) {
        return Err(Error::InvalidArgument(format!(
            "keys under {UPLOADS_PREFIX} are reserved by the erasure-coding layer"
        )));
    }
    Ok(())
}

impl Erasure {
    /// The upload's marker: its metadata, checked to belong to `key`.
    async fn upload_marker(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        id: &UploadId,
    ) -> Result<ObjectInfo> {
        let info = match self.resolve(bucket, &marker_key(id)?).await {
            Ok(r) => r.info,
            Err(Error::NoSuchKey) => return Err(Error::NoSuchUpload),
            Err(e) => return Err(e),
        };
        if info.metadata.internal.get(UPLOAD_KEY).map(String::as_str) != Some(key.as_str()) {
            return Err(Error::NoSuchUpload);
        }
        Ok(info)
    }

    pub(crate) async fn create_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        check_key(key)?;
        let id = UploadId::new(hex::encode(rand::random::<[u8; 16]>()))?;
        let mut metadata = opts.metadata;
        strip(&mut metadata);
        metadata
            .internal
            .insert(UPLOAD_KEY.into(), key.as_str().into());
        let empty = Body::from(bytes::Bytes::new());
        self.write_striped(bucket, &marker_key(&id)?, empty, None, metadata, None)
            .await?;
        Ok(id)
    }

    pub(crate) async fn store_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        id: &UploadId,
        n: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag> {
        if !(1..=MAX_PART_NUMBER).contains(&n) {
            return Err(Error::InvalidArgument(format!(
                "part number {n} is not between 1 and {MAX_PART_NUMBER}"
            )));
        }
        self.upload_marker(bucket, key, id).await?;
        let meta = ObjectMetadata::default();
        let written = self
            .write_striped(
                bucket,
                &part_key(id, n)?,
                body,
                opts.content_md5,
                meta,
                None,
            )
            .await?;
        Ok(written.etag)
    }

    /// Every object listed under `prefix` (with `delimiter`), all pages.
    async fn list_all(
        &self,
        bucket: &BucketName,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<Vec<ObjectSummary>> {
        let mut all = vec![];
        let mut start_after = None;
        loop {
            let opts = ListOptions {
                prefix: prefix.into(),
                delimiter: delimiter.map(String::from),
                start_after: start_after.take(),
                ..Default::default()
            };
            let page = self.merged_listing(bucket, opts).await?;
            all.extend(page.objects);
            match (page.is_truncated, page.next_marker) {
                (true, Some(next)) => start_after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Every part stored so far, in order.
    async fn all_parts(&self, bucket: &BucketName, id: &UploadId) -> Result<Vec<PartInfo>> {
        let prefix = format!("{UPLOADS_PREFIX}{}/", id.as_str());
        let mut parts: Vec<PartInfo> = self
            .list_all(bucket, &prefix, None)
            .await?
            .into_iter()
            .filter_map(|o| {
                Some(PartInfo {
                    part_number: o.key[prefix.len()..].parse().ok()?,
                    etag: o.etag,
                    size: o.size,
                    last_modified: o.last_modified,
                })
            })
            .collect();
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    pub(crate) async fn parts_page(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.upload_marker(bucket, key, id).await?;
        let max = if opts.max_parts == 0 {
            1000
        } else {
            opts.max_parts
        };
        let mut parts: Vec<PartInfo> = self
            .all_parts(bucket, id)
            .await?
            .into_iter()
            .filter(|p| p.part_number > opts.part_number_marker)
            .collect();
        let is_truncated = parts.len() > max;
        parts.truncate(max);
        Ok(ListPartsResult {
            next_part_number_marker: is_truncated
                .then(|| parts.last().map(|p| p.part_number))
                .flatten(),
            parts,
            is_truncated,
        })
    }

    pub(crate) async fn complete_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let marker = self.upload_marker(bucket, key, id).await?;
        if parts.is_empty() {
            return Err(Error::MalformedXml);
        }
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(Error::InvalidPartOrder);
        }
        let stored = self.all_parts(bucket, id).await?;
        let mut chosen = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let have = stored
                .iter()
                .find(|s| s.part_number == p.part_number)
                .filter(|s| s.etag == p.etag)
                .ok_or(Error::InvalidPart)?;
            if i + 1 < parts.len() && have.size < MIN_PART_SIZE {
                return Err(Error::EntityTooSmall);
            }
            chosen.push(have.clone());
        }
        let etag = multipart_etag(chosen.iter().map(|p| p.etag.as_str()))?;
        let length = chosen.iter().map(|p| p.size).sum();
        // The parts' bytes, in order, each read (and rebuilt where need be) as an object.
        let mut sources = Vec::with_capacity(chosen.len());
        for p in &chosen {
            let part = part_key(id, p.part_number)?;
            let resolved = self.resolve(bucket, &part).await?;
            // The ETag is computed from the listed parts: the bytes must be theirs (a
            // part uploaded again since the listing is another part).
            if resolved.info.etag != p.etag || resolved.meta.size != p.size {
                return Err(Error::InvalidPart);
            }
            sources.push((part, resolved));
        }
        let this = self.clone();
        let b = bucket.clone();
        let stream = futures::stream::iter(sources)
            .map(move |(part, r)| match r.meta.size {
                0 => Box::pin(futures::stream::empty()) as ByteStream,
                size => this.stream_range(&b, &part, &r, (0, size - 1)),
            })
            .flatten();
        let mut metadata = marker.metadata;
        metadata.internal.remove(UPLOAD_KEY);
        let body = Body {
            stream: Box::pin(stream),
            length,
        };
        let written = self
            .write_striped(bucket, key, body, None, metadata, Some(etag))
            .await?;
        self.drop_upload(bucket, id).await;
        Ok(PutResult {
            etag: written.etag,
            last_modified: written.stamp.time().unwrap_or_else(SystemTime::now),
        })
    }

    pub(crate) async fn abort_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        id: &UploadId,
    ) -> Result<()> {
        self.upload_marker(bucket, key, id).await?;
        self.drop_upload(bucket, id).await;
        Ok(())
    }

    /// Delete an upload's parts and marker; what cannot be deleted now is journaled.
    async fn drop_upload(&self, bucket: &BucketName, id: &UploadId) {
        let parts = self.all_parts(bucket, id).await.unwrap_or_default();
        for p in parts {
            if let Ok(k) = part_key(id, p.part_number) {
                let _ = self.delete_object_inner(bucket, &k).await;
            }
        }
        if let Ok(k) = marker_key(id) {
            let _ = self.delete_object_inner(bucket, &k).await;
        }
    }

    pub(crate) async fn uploads_page(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        let mut uploads = vec![];
        for o in self.list_all(bucket, UPLOADS_PREFIX, Some("/")).await? {
            let (Some(key), Ok(id)) = (
                o.internal.as_ref().and_then(|m| m.get(UPLOAD_KEY)),
                UploadId::new(&o.key[UPLOADS_PREFIX.len()..]),
            ) else {
                continue;
            };
            if key.starts_with(&opts.prefix) && key.as_str() > opts.key_marker.as_str() {
                uploads.push(UploadInfo {
                    key: key.clone(),
                    upload_id: id,
                    initiated: o.last_modified,
                });
            }
        }
        uploads.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        let max = if opts.max_uploads == 0 {
            1000
        } else {
            opts.max_uploads
        };
        let is_truncated = uploads.len() > max;
        uploads.truncate(max);
        Ok(ListUploadsResult {
            uploads,
            is_truncated,
        })
    }
}
