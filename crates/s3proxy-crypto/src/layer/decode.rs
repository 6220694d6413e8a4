//! Reading the encryption records of a stored object: its wrapped data key, and its
//! sealed info record (plaintext size, ETag, part layout, metadata hash), into what the
//! layer serves.

use super::{Encrypted, strip_enc};
use crate::format::*;
use s3proxy_core::*;

/// What the encryption metadata of a stored object says.
pub(crate) struct Decoded {
    pub(super) data_key: [u8; 32],
    pub(crate) layout: Layout,
    pub(crate) etag: String,
    pub(crate) has_info: bool,
}

impl Encrypted {
    pub(crate) fn decode(&self, key: &ObjectKey, stored: &ObjectInfo) -> Result<Decoded> {
        let internal = &stored.metadata.internal;
        let wrapped = internal.get(KEY_META).ok_or_else(|| {
            Error::Corrupt(format!(
                "{key}: the stored object has no encryption metadata (written around the \
                 encryption layer, or its metadata was stripped)"
            ))
        })?;
        let data_key =
            unwrap_data_key(&self.ring, wrapped).map_err(|e| with_key_context(e, key))?;
        let decoded = match internal.get(INFO_META) {
            Some(sealed) => {
                let info = open_info(&data_key, sealed).map_err(|e| with_key_context(e, key))?;
                if info.meta != metadata_hash(&stored.metadata) {
                    return Err(Error::Corrupt(format!(
                        "{key}: content headers or user metadata were changed in storage"
                    )));
                }
                let layout = match &info.parts {
                    Some(parts) => Layout::decode(parts)?,
                    None => Layout::single(info.size),
                };
                if layout.plain_size() != info.size {
                    return Err(Error::Corrupt(format!("{key}: inconsistent info record")));
                }
                Decoded {
                    data_key,
                    layout,
                    etag: info.etag,
                    has_info: true,
                }
            }
            None => {
                if stored.etag.contains('-') {
                    return Err(Error::Corrupt(format!(
                        "{key}: multipart object without its layout record"
                    )));
                }
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
                }
            }
        };
        if decoded.layout.stored_size() != stored.size {
            return Err(Error::Corrupt(format!(
                "{key}: stored size {} differs from the {} bytes its layout needs (truncated, \
                 extended or parts dropped)",
                stored.size,
                decoded.layout.stored_size()
            )));
        }
        Ok(decoded)
    }

    pub(super) fn plain_info(stored: &ObjectInfo, decoded: &Decoded) -> ObjectInfo {
        let mut metadata = stored.metadata.clone();
        strip_enc(&mut metadata.internal);
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

pub(super) fn with_key_context(e: Error, key: &ObjectKey) -> Error {
    match e {
        Error::Corrupt(m) => Error::Corrupt(format!("{key}: {m}")),
        Error::Internal(m) => Error::Internal(format!("{key}: {m}")),
        e => e,
    }
}
