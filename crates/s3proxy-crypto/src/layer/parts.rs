//! Multipart uploads: the upload token (the backend's upload id, authenticated, carrying
//! the upload's data key), the parts remembered per instance (plaintext MD5s for
//! CompleteMultipartUpload and ListParts), UploadPart and CompleteMultipartUpload.

use super::seal::{PlainDigest, seal_body, take_digest};
use super::{Encrypted, if_match, strip_enc};
use crate::format::*;
use crate::manifest::{carries_manifest, is_manifest_part};
use s3proxy_core::*;
use std::collections::BTreeMap;

/// Parts remembered per instance so CompleteMultipartUpload can check the plaintext ETags
/// a client lists and ListParts can show them. Bounded; losing it only weakens those two.
const PART_CACHE_LIMIT: usize = 100_000;
/// Uploads remembered per part number. Concurrent uploads of one part finish at the
/// backend in one order and here perhaps in another: the backend keeps the last to
/// finish there, so each is remembered by its stored ETag, not the last one here.
const UPLOADS_PER_PART: usize = 8;

#[derive(Clone)]
pub(super) struct PartRecord {
    plain_md5: String,
    stored_etag: ETag,
}

impl Encrypted {
    fn remember_part(&self, inner_id: &str, part: u32, record: PartRecord) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        if parts.len() >= PART_CACHE_LIMIT {
            parts.clear();
        }
        let uploads = parts.entry((inner_id.to_string(), part)).or_default();
        uploads.retain(|r| r.stored_etag != record.stored_etag);
        if uploads.len() >= UPLOADS_PER_PART {
            uploads.remove(0);
        }
        uploads.push(record);
    }

    pub(super) fn known_part(
        &self,
        inner_id: &str,
        part: u32,
        stored_etag: &ETag,
    ) -> Option<String> {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts
            .get(&(inner_id.to_string(), part))?
            .iter()
            .find(|r| r.stored_etag == *stored_etag)
            .map(|r| r.plain_md5.clone())
    }

    pub(super) fn forget_upload(&self, inner_id: &str) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.retain(|(id, _), _| id != inner_id);
        drop(parts);
        self.small
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(inner_id);
    }

    pub(super) fn open_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<(UploadId, [u8; 32])> {
        let (inner, data_key) = parse_upload_token(
            &self.ring,
            bucket.as_str(),
            key.as_str(),
            upload_id.as_str(),
        )
        .ok_or(Error::NoSuchUpload)?;
        Ok((
            UploadId::new(inner).map_err(|_| Error::NoSuchUpload)?,
            data_key,
        ))
    }

    pub(super) fn token(&self, bucket: &str, key: &str, inner: &UploadId) -> Result<UploadId> {
        UploadId::new(upload_token(
            self.ring.active(),
            bucket,
            key,
            inner.as_str(),
        ))
        .map_err(|_| {
            Error::Internal(format!(
                "the backend's upload id is too long to carry the encryption layer's id: {inner}"
            ))
        })
    }

    async fn all_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        inner_id: &UploadId,
    ) -> Result<BTreeMap<u32, PartInfo>> {
        let mut all = BTreeMap::new();
        let mut marker = 0;
        loop {
            let page = self
                .inner
                .list_parts(
                    bucket,
                    key,
                    inner_id,
                    ListPartsOptions {
                        part_number_marker: marker,
                        max_parts: 1000,
                    },
                )
                .await?;
            for p in page.parts {
                marker = marker.max(p.part_number);
                all.insert(p.part_number, p);
            }
            match page.next_part_number_marker {
                Some(next) if page.is_truncated && next > 0 => marker = next,
                _ if page.is_truncated => {}
                _ => break,
            }
        }
        Ok(all)
    }

    /// UploadPart: seal the part with the upload's data key and remember its plaintext MD5.
    pub(super) async fn upload_sealed_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag> {
        let (inner_id, data_key) = self.open_upload(bucket, key, upload_id)?;
        let small = body.length < MIN_PART_SIZE;
        let (mut stored, digest) = seal_body(
            body,
            &data_key,
            part_number,
            PlainDigest::Hash(opts.content_md5),
        );
        // A part below the minimum size can only be the last one: its stored bytes are
        // kept so the completion can put the manifest behind them (manifest.rs).
        let kept = std::sync::Arc::new(std::sync::Mutex::new(bytes::BytesMut::new()));
        if small {
            let kept = kept.clone();
            stored.stream = Box::pin(futures::StreamExt::inspect(stored.stream, move |chunk| {
                if let Ok(chunk) = chunk {
                    kept.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(chunk);
                }
            }));
        }
        let stored_length = stored.length;
        let stored_etag = self
            .inner
            .upload_part(
                bucket,
                key,
                &inner_id,
                part_number,
                stored,
                PartOptions::default(),
            )
            .await?;
        let plain_md5 = take_digest(&digest)?;
        if small {
            let kept = std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()));
            if kept.len() as u64 == stored_length {
                self.small.lock().unwrap_or_else(|e| e.into_inner()).put(
                    inner_id.as_str(),
                    part_number,
                    stored_etag.clone(),
                    kept.freeze(),
                );
            }
        }
        self.remember_part(
            inner_id.as_str(),
            part_number,
            PartRecord {
                plain_md5: plain_md5.clone(),
                stored_etag,
            },
        );
        Ok(ETag::new(plain_md5))
    }

    /// CompleteMultipartUpload: check the parts the client lists, complete the upload in
    /// the backend, then attach the key and info records (with the part layout).
    pub(super) async fn complete_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let (inner_id, data_key) = self.open_upload(bucket, key, upload_id)?;
        if parts.is_empty() {
            return Err(Error::MalformedXml);
        }
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(Error::InvalidPartOrder);
        }
        let stored_parts = match self.all_parts(bucket, key, &inner_id).await {
            Err(Error::NoSuchUpload) => {
                return self
                    .completed_already(bucket, key, &data_key, &parts)
                    .await
                    .ok_or(Error::NoSuchUpload);
            }
            other => other?,
        };
        let mut inner_parts = Vec::with_capacity(parts.len());
        let mut plain_md5s = Vec::with_capacity(parts.len());
        let mut spans = Vec::with_capacity(parts.len());
        let mut recovering = false;
        for p in &parts {
            let have = stored_parts.get(&p.part_number).ok_or(Error::InvalidPart)?;
            let claimed = p.etag.as_str().to_ascii_lowercase();
            if claimed.len() != 32 || hex::decode(&claimed).is_err() {
                return Err(Error::InvalidPart);
            }
            // Parts uploaded through this instance are checked; others (uploaded through
            // another instance) are taken as the client lists them.
            if let Some(known) = self.known_part(inner_id.as_str(), p.part_number, &have.etag)
                && known != claimed
            {
                return Err(Error::InvalidPart);
            }
            let plain = match plain_size(have.size) {
                Some(plain) => plain,
                // A completion that failed (or crashed) after re-uploading this small last
                // part with the manifest behind it: that manifest says the rest.
                None if carries_manifest(have.size)
                    && Some(p.part_number) == parts.last().map(|l| l.part_number) =>
                {
                    recovering = true;
                    0
                }
                None => {
                    return Err(Error::Corrupt(format!(
                        "part {} has an invalid stored size",
                        p.part_number
                    )));
                }
            };
            spans.push((p.part_number, plain));
            inner_parts.push(CompletedPart {
                part_number: p.part_number,
                etag: have.etag.clone(),
            });
            plain_md5s.push(claimed);
        }
        if spans[..spans.len() - 1]
            .iter()
            .any(|(_, size)| *size < MIN_PART_SIZE)
        {
            return Err(Error::EntityTooSmall);
        }
        let etag = multipart_etag(plain_md5s.iter().map(String::as_str))?;
        if recovering {
            // The inner completion cannot be undone, and the manifest is only readable
            // after it: a retry must list exactly the parts the first attempt stored up
            // to its last one, or it would complete an object its manifest does not
            // describe (unreadable, the previous version gone). Refused before anything
            // changes instead.
            let last = parts.last().map_or(0, |l| l.part_number);
            let listed: Vec<u32> = parts.iter().map(|p| p.part_number).collect();
            let stored: Vec<u32> = stored_parts
                .iter()
                .filter(|(n, p)| **n <= last && !is_manifest_part(p.size))
                .map(|(n, _)| *n)
                .collect();
            if listed != stored {
                return Err(Error::InvalidPart);
            }
            return self
                .complete_from_manifest(bucket, key, &inner_id, inner_parts, &data_key, &etag)
                .await;
        }
        let layout = Layout::from_parts(spans);
        // The manifest goes in before the completion, so the object describes itself from
        // the moment it exists (manifest.rs); the info record attached after it is the
        // fast path for HEAD.
        let plain_parts = inner_parts.clone();
        // A part the client uploaded but did not list, numbered where the manifest part
        // would go, is not overwritten: a later completion may still list it.
        let next_taken = inner_parts
            .last()
            .and_then(|l| stored_parts.get(&(l.part_number + 1)))
            .is_some_and(|p| !is_manifest_part(p.size));
        let manifest = if next_taken {
            log::info!(
                "{bucket}/{key}: part {} exists unlisted: completed without a manifest part",
                inner_parts.last().map_or(0, |l| l.part_number + 1)
            );
            None
        } else {
            self.upload_manifest(bucket, key, &inner_id, &layout, &etag, &mut inner_parts)
                .await
        };
        let (mut trailer, separate) = match manifest {
            Some((t, extra)) => (Some(t), extra),
            None => (None, None),
        };
        let separate_part = separate.is_some();
        inner_parts.extend(separate);
        let done = match self
            .inner
            .complete_multipart_upload(bucket, key, &inner_id, inner_parts)
            .await
        {
            // A backend with rules of its own about parts (the manifest a part of its
            // own): complete as before.
            Err(e @ (Error::EntityTooSmall | Error::InvalidPart)) if separate_part => {
                log::warn!(
                    "{bucket}/{key}: completing with the manifest part failed ({e}); without it"
                );
                trailer = None;
                self.inner
                    .complete_multipart_upload(bucket, key, &inner_id, plain_parts)
                    .await?
            }
            done => done?,
        };
        self.forget_upload(inner_id.as_str());
        let attached = self
            .attach_completed(bucket, key, &done.etag, &data_key, &layout, &etag, trailer)
            .await;
        let last_modified = match (attached, trailer) {
            (Ok(copied), _) => copied.last_modified,
            // The object is whole and readable from its manifest: the client's upload
            // succeeded. (Over AWS, CopyObject refuses sources above 5 GiB.)
            (Err(e), Some(_)) => {
                log::warn!(
                    "{bucket}/{key}: completed; attaching its info record failed ({e}); it is \
                     read from its manifest"
                );
                done.last_modified
            }
            (Err(e), None) => return Err(e),
        };
        self.learn_listed(bucket, key).await;
        Ok(PutResult {
            etag,
            last_modified,
        })
    }

    /// Attach the key and info records (with the part layout) to a completed upload, by a
    /// copy onto itself: metadata is fixed when an upload starts, before the size and
    /// ETag are known.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attach_completed(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &ETag,
        data_key: &[u8; 32],
        layout: &Layout,
        etag: &ETag,
        trailer: Option<u64>,
    ) -> Result<PutResult> {
        let (stored, _) = self
            .head_inner(
                bucket,
                key,
                GetOptions {
                    conditions: if_match(stored_etag),
                    ..Default::default()
                },
            )
            .await?;
        // The headers about to be sealed come from the backend: they are sealed only if
        // the upload's own tag still authenticates them (changed in storage since the
        // upload began, they would otherwise become authentic for good).
        if let Some(tag) = stored.metadata.internal.get(crate::manifest::UPLOAD_META) {
            crate::manifest::check_upload_meta(
                &self.ring,
                bucket.as_str(),
                key.as_str(),
                tag,
                &metadata_hash(&stored.metadata),
            )?;
        }
        let mut metadata = stored.metadata;
        strip_enc(&mut metadata.internal);
        metadata
            .internal
            .insert(KEY_META.into(), wrap_data_key(self.ring.active(), data_key));
        let sealed = seal_info(
            data_key,
            &Info {
                size: layout.plain_size(),
                etag: etag.clone(),
                parts: Some(layout.encode()),
                meta: metadata_hash(&metadata),
                trailer,
            },
        );
        metadata.internal.insert(INFO_META.into(), sealed);
        self.attach_info(bucket, key, stored_etag, metadata).await
    }
}
