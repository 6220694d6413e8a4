//! Identifiers as servers hand them out: multipart upload ids, encoded when the server's
//! own id would not make a valid [`UploadId`], and ETags, which servers quote.

use base64::Engine;
use s3proxy_core::{ETag, Error, Result, UploadId};

/// Marks an upload id that had to be encoded because the backend's own id contains
/// characters an [`UploadId`] may not (`~` followed by base64url of the backend's id).
const ENCODED_ID_MARK: char = '~';

/// An ETag header or element as the server sent it, quoted or not; an empty tag when
/// absent. Lenient on purpose (no [`ETag::parse`]): an odd tag from a server is still
/// the tag it gives, which the layers above compare as they always did.
pub(super) fn unquote(etag: Option<&str>) -> ETag {
    ETag::new(etag.unwrap_or(""))
}

/// The proxy's id for a backend upload id.
pub(super) fn encode_upload_id(backend_id: &str) -> Result<UploadId> {
    if !backend_id.starts_with(ENCODED_ID_MARK)
        && let Ok(id) = UploadId::new(backend_id)
    {
        return Ok(id);
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(backend_id);
    UploadId::new(format!("{ENCODED_ID_MARK}{b64}"))
        .map_err(|_| Error::Internal(format!("upload id {backend_id:?} is too long")))
}

/// The backend's upload id for a proxy's id.
pub(super) fn decode_upload_id(id: &UploadId) -> Result<String> {
    match id.as_str().strip_prefix(ENCODED_ID_MARK) {
        None => Ok(id.as_str().to_string()),
        Some(b64) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or(Error::NoSuchUpload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_round_trip() {
        for raw in ["abc-123", "a+b/c==", "~tilde", ".dot", "x y"] {
            let id = encode_upload_id(raw).unwrap();
            assert_eq!(decode_upload_id(&id).unwrap(), raw);
        }
        assert_eq!(
            encode_upload_id("plain_id.1").unwrap().as_str(),
            "plain_id.1"
        );
    }
}
