//! The manifest of a multipart object (format: `crate::manifest`, docs/FORMAT.md): written
//! as an extra inner part before the inner CompleteMultipartUpload, so the completed object
//! describes itself whether or not the copy that attaches its info record happens (a
//! crash between the two, or AWS's 5 GiB CopyObject limit); and read back from the end of
//! an object that has no info record.

use super::decode::{Decoded, check_size, with_key_context};
use super::{Encrypted, if_match};
use crate::format::*;
use crate::manifest::*;
use bytes::{Bytes, BytesMut};
use s3proxy_core::*;
use std::collections::HashMap;

/// Stored bytes of small parts (below S3's minimum part size, so each can only be an
/// upload's last part) kept per instance: a completion through this instance re-uploads
/// such a last part with the manifest appended. Bounded; losing them only means that
/// completion falls back to the info record alone.
const SMALL_PART_BYTES: usize = 64 << 20;

#[derive(Default)]
pub(super) struct SmallParts {
    parts: HashMap<(String, u32), (ETag, Bytes)>,
    bytes: usize,
}

/// The largest manifest record read: an info record for 10,000 parts of any sizes, with
/// room to spare. A footer claiming more is refused before its record is read.
const MAX_MANIFEST_RECORD: u64 = 1 << 20;

impl SmallParts {
    pub(super) fn put(&mut self, inner_id: &str, part: u32, stored_etag: ETag, body: Bytes) {
        if body.len() > SMALL_PART_BYTES {
            return;
        }
        if self.bytes + body.len() > SMALL_PART_BYTES {
            self.parts.clear();
            self.bytes = 0;
        }
        self.bytes += body.len();
        if let Some((_, old)) = self
            .parts
            .insert((inner_id.to_string(), part), (stored_etag, body))
        {
            self.bytes -= old.len();
        }
    }

    fn get(&self, inner_id: &str, part: u32, stored_etag: &ETag) -> Option<Bytes> {
        self.parts
            .get(&(inner_id.to_string(), part))
            .filter(|(etag, _)| etag == stored_etag)
            .map(|(_, body)| body.clone())
    }

    pub(super) fn forget(&mut self, inner_id: &str) {
        let bytes = &mut self.bytes;
        self.parts.retain(|(id, _), (_, body)| {
            let keep = id != inner_id;
            if !keep {
                *bytes -= body.len();
            }
            keep
        });
    }
}

impl Encrypted {
    /// Upload the manifest of the upload about to be completed and put it in
    /// `inner_parts`: as a part of its own numbered right after the client's last part
    /// (part numbers stay consecutive, which some backends require), or, when that last
    /// part is below the minimum part size and so must stay last, as that part again with
    /// the trailer behind its stored bytes. Returns the trailer's length, or `None` when
    /// the object is completed without one (the last part is number 10000; a small last
    /// part uploaded through another instance; the upload failed): the info record is
    /// then all it gets, as before.
    pub(super) async fn upload_manifest(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        inner_id: &UploadId,
        layout: &Layout,
        etag: &ETag,
        inner_parts: &mut [CompletedPart],
    ) -> Option<(u64, Option<CompletedPart>)> {
        let last = inner_parts.last()?.clone();
        let info = Info {
            size: layout.plain_size(),
            etag: etag.clone(),
            parts: Some(layout.encode()),
            meta: String::new(),
            trailer: None,
        };
        let seal = |before: u64| {
            seal_manifest(
                self.ring.active(),
                bucket.as_str(),
                key.as_str(),
                inner_id.as_str(),
                &info,
                before,
            )
        };
        let last_plain = layout.parts().last()?.plain_len;
        let (number, body, trailer) = if last_plain >= MIN_PART_SIZE {
            if last.part_number >= MAX_PART_NUMBER {
                log::info!(
                    "{bucket}/{key}: the client's last part is number {}: no room for a \
                     manifest part; the object depends on its info record",
                    last.part_number
                );
                return None;
            }
            let t = seal(0);
            let n = t.len() as u64;
            (last.part_number + 1, Bytes::from(t), n)
        } else {
            let small = self.small.lock().unwrap_or_else(|e| e.into_inner()).get(
                inner_id.as_str(),
                last.part_number,
                &last.etag,
            );
            let Some(stored) = small else {
                log::info!(
                    "{bucket}/{key}: the small last part was not uploaded through this \
                     instance: completing without a manifest"
                );
                return None;
            };
            let t = seal(stored.len() as u64);
            let n = t.len() as u64;
            let mut body = BytesMut::from(&stored[..]);
            body.extend_from_slice(&t);
            (last.part_number, body.freeze(), n)
        };
        match self
            .inner
            .upload_part(
                bucket,
                key,
                inner_id,
                number,
                body.into(),
                PartOptions::default(),
            )
            .await
        {
            Ok(stored_etag) => {
                let part = CompletedPart {
                    part_number: number,
                    etag: stored_etag,
                };
                if number == last.part_number {
                    *inner_parts.last_mut()? = part;
                    Some((trailer, None))
                } else {
                    Some((trailer, Some(part)))
                }
            }
            Err(e) => {
                log::warn!(
                    "{bucket}/{key}: uploading the manifest part failed ({e}); completing without it"
                );
                None
            }
        }
    }

    /// Complete an upload whose last part already carries a manifest (an earlier
    /// completion re-uploaded it so, then failed or crashed before the inner completion,
    /// and this instance no longer knows that part's plaintext size): the manifest in the
    /// completed object gives the layout, which must be the one these parts make.
    pub(super) async fn complete_from_manifest(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        inner_id: &UploadId,
        inner_parts: Vec<CompletedPart>,
        data_key: &[u8; 32],
        etag: &ETag,
    ) -> Result<PutResult> {
        let count = inner_parts.len();
        let done = self
            .inner
            .complete_multipart_upload(bucket, key, inner_id, inner_parts)
            .await?;
        self.forget_upload(inner_id.as_str());
        let stored = self
            .inner
            .head_object(
                bucket,
                key,
                GetOptions {
                    conditions: if_match(&done.etag),
                    ..Default::default()
                },
            )
            .await?;
        let decoded = self.decode_manifest(bucket, key, &stored, &[]).await?;
        if decoded.etag != *etag
            || decoded.layout.parts().len() != count
            || decoded.data_key != *data_key
        {
            return Err(Error::Corrupt(format!(
                "{bucket}/{key}: the manifest of the re-uploaded last part does not match the \
                 parts completed"
            )));
        }
        let trailer = Some(decoded.trailer);
        let last_modified = match self
            .attach_completed(
                bucket,
                key,
                &done.etag,
                data_key,
                &decoded.layout,
                etag,
                trailer,
            )
            .await
        {
            Ok(copied) => copied.last_modified,
            Err(e) => {
                log::warn!(
                    "{bucket}/{key}: completed; attaching its info record failed ({e}); it is read from its manifest"
                );
                done.last_modified
            }
        };
        self.learn_listed(bucket, key).await;
        Ok(PutResult {
            etag: etag.clone(),
            last_modified,
        })
    }

    /// Read stored bytes `first..=last` of the object while it is the one looked up.
    async fn read_stored(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &ETag,
        (first, last): (u64, u64),
        exclude: &[String],
    ) -> Result<Bytes> {
        let got = self
            .inner
            .get_object(
                bucket,
                key,
                GetOptions {
                    range: Some(ByteRange::FromTo(first, last)),
                    conditions: if_match(stored_etag),
                    extensions: s3proxy_core::replicas::excluding(exclude),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match e {
                Error::PreconditionFailed | Error::NoSuchKey => Error::ServiceUnavailable(format!(
                    "{bucket}/{key} changed while its manifest was read"
                )),
                e => e,
            })?;
        // A backend sending more than the range asked is a bad replica, not a bad request.
        let bytes = collect_body(got.body, (last - first + 1) as usize)
            .await
            .map_err(|e| match e {
                Error::InvalidRequest(m) => {
                    Error::Corrupt(format!("{key}: reading its manifest: {m}"))
                }
                e => e,
            })?;
        if bytes.len() as u64 != last - first + 1 {
            return Err(Error::Corrupt(format!(
                "{key}: the stored object ended before its manifest"
            )));
        }
        Ok(bytes)
    }

    /// Decode a completed multipart object that has no info record from its manifest.
    pub(super) async fn decode_manifest(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored: &ObjectInfo,
        exclude: &[String],
    ) -> Result<Decoded> {
        let corrupt = |what: &str| Error::Corrupt(format!("{key}: {what}"));
        let size = stored.size;
        if size < FOOTER_LEN {
            return Err(corrupt("multipart object without its layout record"));
        }
        let n = TAIL_READ.min(size);
        let mut tail = self
            .read_stored(bucket, key, &stored.etag, (size - n, size - 1), exclude)
            .await?;
        let record_len = footer_record_len(&tail).map_err(|_| {
            corrupt("multipart object without its layout record (no info record, no manifest)")
        })?;
        let need = record_len + FOOTER_LEN;
        // The footer is not authenticated: its length is held to the largest record a
        // manifest can have before anything is read into memory on its word.
        if record_len > MAX_MANIFEST_RECORD || need > size {
            return Err(corrupt("malformed manifest footer"));
        }
        if need > n {
            tail = self
                .read_stored(bucket, key, &stored.etag, (size - need, size - 1), exclude)
                .await?;
        }
        let end = tail.len() - FOOTER_LEN as usize;
        let record = &tail[end - record_len as usize..end];
        let (_, data_key, info) = open_manifest(&self.ring, bucket.as_str(), key.as_str(), record)
            .map_err(|e| with_key_context(e, key))?;
        let layout = Layout::decode(
            info.parts
                .as_deref()
                .ok_or_else(|| corrupt("manifest without layout"))?,
        )?;
        if layout.plain_size() != info.size || !info.etag.as_str().contains('-') {
            return Err(corrupt("inconsistent manifest"));
        }
        // The trailer is padding, the record and the footer; the padding is under two
        // stored segments.
        let trailer = size.saturating_sub(layout.stored_size());
        if trailer < need || trailer >= need + 2 * STORED_SEGMENT {
            return Err(corrupt(
                "stored size does not match its manifest's layout (truncated, extended or parts dropped)",
            ));
        }
        let meta_ok = match stored.metadata.internal.get(UPLOAD_META) {
            Some(tag) => {
                check_upload_meta(
                    &self.ring,
                    bucket.as_str(),
                    key.as_str(),
                    tag,
                    &metadata_hash(&stored.metadata),
                )
                .map_err(|e| with_key_context(e, key))?;
                true
            }
            None => {
                log::warn!(
                    "{bucket}/{key}: uploaded before metadata was tagged, and without its info \
                     record: serving its data without its headers"
                );
                false
            }
        };
        let decoded = Decoded {
            data_key,
            layout,
            etag: info.etag,
            has_info: true,
            trailer,
            meta_ok,
        };
        check_size(key, stored, &decoded)?;
        Ok(decoded)
    }
}
