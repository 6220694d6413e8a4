//! PutObject: a fresh data key per object, wrapped in the metadata; the info record goes
//! out with the object when the plaintext MD5 is known before the write (Content-MD5, or a
//! small body read first) and is attached afterwards otherwise.

use super::seal::{INLINE_SEAL, PlainDigest, seal_body, seal_small, take_digest};
use super::{Encrypted, strip_enc};
use crate::format::*;
use crate::manifest::{META_SEAL, seal_meta};
use bytes::BytesMut;
use futures::StreamExt;
use s3proxy_core::*;

/// PUT bodies up to this size (without Content-MD5) are read into memory and hashed before
/// they are written, so their info record goes out with the object.
const INLINE_PUT_LIMIT: u64 = 1 << 20;

impl Encrypted {
    /// PutObject: seal the body, store it, and record its plaintext size and ETag.
    pub(super) async fn put_sealed(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let data_key: [u8; 32] = rand::random();
        let mut metadata = opts.metadata;
        strip_enc(&mut metadata.internal);
        metadata.internal.insert(
            KEY_META.into(),
            wrap_data_key(self.ring.active(), &data_key),
        );
        let (size, meta_hash) = (body.length, metadata_hash(&metadata));
        // The headers and user metadata are authenticated from the first write on, whether
        // or not the info record is attached later.
        metadata
            .internal
            .insert(META_SEAL.into(), seal_meta(&data_key, &meta_hash));
        let info = |etag: ETag| Info {
            size,
            etag,
            parts: None,
            meta: meta_hash.clone(),
            trailer: None,
        };
        // A small body is read (and hashed) first, so that, as with Content-MD5, the ETag
        // is known before the write and one write suffices: no second request to attach
        // the info record, which would make the backend copy the object.
        let (body, plain_digest, small) = match opts.content_md5 {
            None if body.length <= INLINE_PUT_LIMIT => {
                let mut stream = Md5Stream::new(body.stream, body.length);
                let mut buf = BytesMut::with_capacity(body.length as usize);
                while let Some(chunk) = stream.next().await {
                    buf.extend_from_slice(&chunk?);
                }
                let md5 = stream.digest();
                let plain = buf.freeze();
                let small = (plain.len() as u64 <= INLINE_SEAL).then(|| (plain.clone(), md5));
                (Body::from(plain), PlainDigest::Known(md5), small)
            }
            md5 => (body, PlainDigest::Hash(md5), None),
        };
        let etag_known = match plain_digest {
            PlainDigest::Known(md5) | PlainDigest::Hash(Some(md5)) => Some(md5),
            PlainDigest::Hash(None) => None,
        };
        if let Some(md5) = etag_known {
            let sealed = seal_info(&data_key, &info(ETag::new(hex::encode(md5))));
            metadata.internal.insert(INFO_META.into(), sealed);
        }
        let (stored, digest) = match small {
            Some((plain, md5)) => seal_small(&plain, &data_key, 0, md5),
            None => seal_body(body, &data_key, 0, plain_digest),
        };
        let put = self
            .inner
            .put_object(
                bucket,
                key,
                stored,
                PutOptions {
                    metadata: metadata.clone(),
                    content_md5: None,
                },
            )
            .await?;
        let etag = ETag::new(take_digest(&digest)?);
        let mut last_modified = put.last_modified;
        let remember = |stored_etag: &ETag| {
            let view = (size, etag.clone());
            self.remember_written(bucket, key, stored_etag, stored_size(size), view);
        };
        if etag_known.is_some() {
            remember(&put.etag);
        } else {
            let sealed = seal_info(&data_key, &info(etag.clone()));
            metadata.internal.insert(INFO_META.into(), sealed);
            match self.attach_info(bucket, key, &put.etag, metadata).await {
                Ok(r) => {
                    remember(&r.etag);
                    last_modified = r.last_modified
                }
                // Overwritten meanwhile: the newer object stands.
                Err(Error::PreconditionFailed) | Err(Error::NoSuchKey) => {}
                Err(e) => log::warn!(
                    "{bucket}/{key}: stored, but recording its ETag failed ({e}); HEAD and \
                     LIST show the stored ETag until it is rewritten"
                ),
            }
        }
        Ok(PutResult {
            etag,
            last_modified,
        })
    }
}
