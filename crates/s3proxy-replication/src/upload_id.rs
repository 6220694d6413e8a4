//! Multipart upload ids.
//!
//! The id handed to a client is every backend's own upload id, in backend order,
//! authenticated with the key all instances share: any instance can continue the upload
//! on every replica, and a client cannot forge one. It carries nothing else, so that
//! ListMultipartUploads can give back exactly that id from what the backends list: each
//! backend's uploads of a key, put together into the uploads the proxy created (see
//! [`Replicated::group_listed`]).
//!
//! Ids of the earlier format (the version stamp first) are still accepted.

use crate::Replicated;
use base64::Engine;
use hmac::{Hmac, Mac};
use s3proxy_core::*;
use sha2::Sha256;

/// The first field of a current upload id's payload.
const FORMAT: &str = "u2";

/// One upload id, decoded: the version stamp (ids of the earlier format only) and each
/// backend's own id.
pub(crate) struct DecodedUpload {
    pub stamp: Option<String>,
    pub ids: Vec<Option<UploadId>>,
}

impl Replicated {
    /// The MAC over an upload id's payload (hex of its first 12 bytes is appended).
    fn upload_mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.shared.opts.upload_id_key)
            .expect("any key length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The client's upload id: each backend's own id, authenticated.
    pub(crate) fn encode_upload(&self, ids: &[Option<UploadId>]) -> Result<UploadId> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload = FORMAT.to_string();
        for id in ids {
            payload.push('.');
            if let Some(id) = id {
                payload.push_str(&b64.encode(id.as_str()));
            }
        }
        let mac = hex::encode(&self.upload_mac(&payload).finalize().into_bytes()[..12]);
        UploadId::new(format!("{payload}.{mac}"))
    }

    pub(crate) fn decode_upload(&self, id: &UploadId) -> Result<DecodedUpload> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, mac) = id.as_str().rsplit_once('.').ok_or(Error::NoSuchUpload)?;
        // hmac's own verification compares in constant time.
        let mac = hex::decode(mac).map_err(|_| Error::NoSuchUpload)?;
        if mac.len() != 12
            || self
                .upload_mac(payload)
                .verify_truncated_left(&mac)
                .is_err()
        {
            return Err(Error::NoSuchUpload);
        }
        let mut parts = payload.split('.');
        let decode = |s: &str| {
            b64.decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Error::NoSuchUpload)
        };
        let first = parts.next().ok_or(Error::NoSuchUpload)?;
        let stamp = if first == FORMAT {
            None
        } else {
            Some(decode(first)?)
        };
        let ids: Vec<Option<UploadId>> = parts
            .map(|p| {
                if p.is_empty() {
                    Ok(None)
                } else {
                    decode(p).and_then(UploadId::new).map(Some)
                }
            })
            .collect::<Result<_>>()?;
        if ids.len() != self.replicas().len() {
            return Err(Error::NoSuchUpload);
        }
        Ok(DecodedUpload { stamp, ids })
    }
}
