//! Reading the encryption records of a stored object: its wrapped data key, and its
//! sealed info record (plaintext size, ETag, part layout, metadata hash), into what the
//! layer serves.

use super::opened::{Opened, OpenedInfo};
use super::{Encrypted, strip_enc};
use crate::format::*;
use crate::manifest::{META_SEAL, check_meta};
use s3proxy_core::*;

/// What the encryption metadata of a stored object says.
pub(crate) struct Decoded {
    pub(super) data_key: [u8; 32],
    pub(crate) layout: Layout,
    pub(crate) etag: ETag,
    /// The size and ETag are authenticated (an info record, or a manifest): the view
    /// stays what it is as long as the stored bytes do.
    pub(crate) has_info: bool,
    /// Stored bytes after the last segment (a manifest trailer).
    pub(crate) trailer: u64,
    /// The content headers and user metadata are authenticated. When not (an object
    /// written before they were sealed into it, and never given its info record), they
    /// are not served.
    pub(crate) meta_ok: bool,
}

impl Decoded {
    /// The stored size this view was decoded for.
    pub(crate) fn stored_size(&self) -> u64 {
        self.layout.stored_size() + self.trailer
    }
}

/// What the metadata alone tells.
enum Local {
    Done(Decoded),
    /// A completed multipart object without its info record: its manifest says the rest.
    Manifest,
}

impl Encrypted {
    /// Decode a stored object's records; for a multipart object still without its info
    /// record this reads its manifest from the end of the object (one ranged GET).
    pub(crate) async fn decode(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored: &ObjectInfo,
        exclude: &[String],
    ) -> Result<Decoded> {
        match self.decode_local(bucket, key, stored)? {
            Local::Done(d) => Ok(d),
            Local::Manifest => self.decode_manifest(bucket, key, stored, exclude).await,
        }
    }

    fn decode_local(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored: &ObjectInfo,
    ) -> Result<Local> {
        let internal = &stored.metadata.internal;
        if !internal.contains_key(INFO_META) && stored.etag.as_str().contains('-') {
            // Completed without its info record (the attaching copy failed or never
            // happened): the manifest carries the key and the layout.
            return Ok(Local::Manifest);
        }
        let wrapped = internal.get(KEY_META).ok_or_else(|| {
            Error::Corrupt(format!(
                "{key}: the stored object has no encryption metadata (written around the \
                 encryption layer, or its metadata was stripped)"
            ))
        })?;
        let sealed = internal.get(INFO_META).map(String::as_str);
        let cached = self.opened.get(
            bucket.as_str(),
            key.as_str(),
            stored.etag.as_str(),
            wrapped,
            sealed,
        );
        let opened = match cached {
            Some(opened) => opened,
            None => {
                let opened = self.open_records(key, wrapped, sealed)?;
                self.opened.put(
                    bucket.as_str(),
                    key.as_str(),
                    stored.etag.as_str(),
                    wrapped,
                    sealed,
                    opened.clone(),
                );
                opened
            }
        };
        let data_key = opened.data_key;
        let decoded = match opened.info {
            Some(info) => {
                // Checked on every use, cached or not: the records say nothing of the
                // metadata stored beside them until compared with it.
                if info.meta != metadata_hash(&stored.metadata) {
                    return Err(Error::Corrupt(format!(
                        "{key}: content headers or user metadata were changed in storage"
                    )));
                }
                Decoded {
                    data_key,
                    layout: info.layout,
                    etag: info.etag,
                    has_info: true,
                    trailer: info.trailer,
                    meta_ok: true,
                }
            }
            None => {
                // A single PUT whose info record was never attached (a streamed PUT whose
                // attaching copy failed), or was stripped. Its segments are authenticated;
                // its metadata is when it carries the metadata seal (every PUT writes one,
                // docs/FORMAT.md "Objects without an info record"); objects written before
                // the seal existed are served without their headers and user metadata.
                let meta_ok = match internal.get(META_SEAL) {
                    Some(sealed) => {
                        check_meta(&data_key, sealed, &metadata_hash(&stored.metadata))
                            .map_err(|e| with_key_context(e, key))?;
                        true
                    }
                    None => {
                        log::warn!(
                            "{key}: no info record and no metadata seal (written before \
                             metadata was sealed): serving its data without its headers"
                        );
                        false
                    }
                };
                let size = plain_size(stored.size).ok_or_else(|| {
                    Error::Corrupt(format!(
                        "{key}: stored size {} is not a valid encrypted size",
                        stored.size
                    ))
                })?;
                Decoded {
                    data_key,
                    layout: Layout::single(size),
                    etag: stored.etag.clone(),
                    has_info: false,
                    trailer: 0,
                    meta_ok,
                }
            }
        };
        check_size(key, stored, &decoded)?;
        Ok(Local::Done(decoded))
    }

    /// Unwrap the data key and open the info record (when there is one): what depends on
    /// the record texts alone, which the cache of opened records (opened.rs) keeps.
    fn open_records(&self, key: &ObjectKey, wrapped: &str, sealed: Option<&str>) -> Result<Opened> {
        let data_key =
            unwrap_data_key(&self.ring, wrapped).map_err(|e| with_key_context(e, key))?;
        let info = match sealed {
            None => None,
            Some(sealed) => {
                let info = open_info(&data_key, sealed).map_err(|e| with_key_context(e, key))?;
                let layout = match &info.parts {
                    Some(parts) => Layout::decode(parts)?,
                    None => Layout::single(info.size),
                };
                if layout.plain_size() != info.size {
                    return Err(Error::Corrupt(format!("{key}: inconsistent info record")));
                }
                Some(OpenedInfo {
                    layout,
                    etag: info.etag,
                    trailer: info.trailer.unwrap_or(0),
                    meta: info.meta,
                })
            }
        };
        Ok(Opened { data_key, info })
    }

    pub(super) fn plain_info(stored: &ObjectInfo, decoded: &Decoded) -> ObjectInfo {
        let mut metadata = stored.metadata.clone();
        strip_enc(&mut metadata.internal);
        if !decoded.meta_ok {
            metadata.headers = ContentHeaders::default();
            metadata.user.clear();
        }
        ObjectInfo {
            key: stored.key.clone(),
            size: decoded.layout.plain_size(),
            etag: decoded.etag.clone(),
            last_modified: stored.last_modified,
            metadata,
            parts_count: None,
        }
    }
}

/// The stored size must be exactly what the layout (and trailer) needs: catches
/// truncation, extension and dropped parts.
pub(super) fn check_size(key: &ObjectKey, stored: &ObjectInfo, decoded: &Decoded) -> Result<()> {
    if decoded.stored_size() != stored.size {
        return Err(Error::Corrupt(format!(
            "{key}: stored size {} differs from the {} bytes its layout needs (truncated, \
             extended or parts dropped)",
            stored.size,
            decoded.stored_size()
        )));
    }
    Ok(())
}

pub(super) fn with_key_context(e: Error, key: &ObjectKey) -> Error {
    match e {
        Error::Corrupt(m) => Error::Corrupt(format!("{key}: {m}")),
        Error::Internal(m) => Error::Internal(format!("{key}: {m}")),
        e => e,
    }
}
