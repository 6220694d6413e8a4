//! The records that make a stored object self-describing before (or without) the copy
//! that attaches its info record (docs/FORMAT.md, "Objects without an info record"):
//!
//! - the **manifest trailer** of a multipart object: its info record (size, plaintext
//!   ETag, layout), sealed under the upload's data key, stored after the last segment in
//!   an extra inner part, with a fixed footer so a reader finds it from the end;
//! - the **upload metadata tag** (`s3proxy-enc-umeta`), written at CreateMultipartUpload:
//!   it authenticates the upload's content headers and user metadata;
//! - the **metadata seal** (`s3proxy-enc-meta`) of a single PUT: the metadata hash sealed
//!   under the object's data key, written with the object.
//!
//! Everything here is pure, like `format`.

use crate::format::*;
use crate::keys::{Keyring, MasterKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use s3proxy_core::{Error, Result};

/// Internal metadata key of the upload metadata tag.
pub const UPLOAD_META: &str = "s3proxy-enc-umeta";
/// Internal metadata key of a single PUT's metadata seal.
pub const META_SEAL: &str = "s3proxy-enc-meta";

const MANIFEST_AAD: &[u8] = b"s3proxy-enc-v1/manifest";
const META_AAD: &[u8] = b"s3proxy-enc-v1/meta";
/// Last 8 bytes of every stored object that carries a manifest.
pub const FOOTER_MAGIC: &[u8; 8] = b"s3pxmf01";
/// Footer: the manifest record's length (u32 BE), then [`FOOTER_MAGIC`].
pub const FOOTER_LEN: u64 = 12;
/// A trailer is padded so that the inner part holding it has one of these remainders
/// modulo a stored segment, which no client part has (`plain_size` is `None`): a part of
/// the trailer alone (hidden from ListParts), or a client's last part with the trailer
/// behind it (recognised by a retried completion).
const MARK_ALONE: u64 = 20;
const MARK_BEHIND: u64 = 30;
/// Bytes of the end of an object read first to find its manifest.
pub const TAIL_READ: u64 = 4096;

fn manifest_aad(kid: &str, inner: &str) -> Vec<u8> {
    let mut aad = MANIFEST_AAD.to_vec();
    aad.push(kid.len() as u8);
    aad.extend_from_slice(kid.as_bytes());
    aad.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    aad.extend_from_slice(inner.as_bytes());
    aad
}

/// The trailer of a multipart object: zero padding, the manifest record and the footer.
/// `before` is the number of stored bytes in the same inner part ahead of it (0 when the
/// trailer is a part of its own), which the padding accounts for. The record is
/// `len(kid) (u8) || kid || len(inner id) (u16 BE) || inner id || nonce24 || AEAD(upload
/// data key, info JSON, AAD "s3proxy-enc-v1/manifest" || the clear fields as stored)`.
pub fn seal_manifest_with_nonce(
    master: &MasterKey,
    bucket: &str,
    key: &str,
    inner_id: &str,
    info: &Info,
    nonce: &[u8; 24],
    before: u64,
) -> Vec<u8> {
    let (kid, data_key) = (master.id(), upload_data_key(master, bucket, key, inner_id));
    let aad = manifest_aad(kid, inner_id);
    let json = serde_json::to_vec(info).expect("info serializes");
    let sealed = data_cipher(&data_key).seal_record(nonce, &aad, &json);
    let record = [&aad[MANIFEST_AAD.len()..], &sealed].concat();
    let unpadded = before + record.len() as u64 + FOOTER_LEN;
    let mark = if before == 0 { MARK_ALONE } else { MARK_BEHIND };
    let pad = (mark + STORED_SEGMENT - unpadded % STORED_SEGMENT) % STORED_SEGMENT;
    // A trailer alone must also be longer than a segment to reach the remainder.
    let pad = if unpadded + pad < STORED_SEGMENT {
        pad + STORED_SEGMENT
    } else {
        pad
    };
    let mut out = vec![0u8; pad as usize];
    out.extend_from_slice(&record);
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    out
}

/// [`seal_manifest_with_nonce`] with a fresh random nonce.
pub fn seal_manifest(
    master: &MasterKey,
    bucket: &str,
    key: &str,
    inner_id: &str,
    info: &Info,
    before: u64,
) -> Vec<u8> {
    seal_manifest_with_nonce(master, bucket, key, inner_id, info, &rand::random(), before)
}

/// Whether an inner part of this stored size is a manifest trailer alone (client parts
/// never have such a size).
pub fn is_manifest_part(stored: u64) -> bool {
    stored % STORED_SEGMENT == MARK_ALONE
}

/// Whether an inner part of this stored size is a client's last part with the manifest
/// trailer behind it.
pub fn carries_manifest(stored: u64) -> bool {
    stored % STORED_SEGMENT == MARK_BEHIND
}

/// The length of the manifest record from the last [`FOOTER_LEN`] bytes of an object.
pub fn footer_record_len(tail: &[u8]) -> Result<u64> {
    let bad = || Error::Corrupt("the multipart object has no manifest footer".into());
    if (tail.len() as u64) < FOOTER_LEN {
        return Err(bad());
    }
    let footer = &tail[tail.len() - FOOTER_LEN as usize..];
    if &footer[4..] != FOOTER_MAGIC {
        return Err(bad());
    }
    Ok(u32::from_be_bytes(footer[..4].try_into().expect("4 bytes")) as u64)
}

/// Open a manifest record (without its footer) of the object `bucket`/`key`: the upload's
/// inner id, its data key and the info record. [`Error::Corrupt`] when it fails
/// authentication (tampered, or taken from another object); [`Error::Internal`] when its
/// master key is not configured.
pub fn open_manifest(
    ring: &Keyring,
    bucket: &str,
    key: &str,
    record: &[u8],
) -> Result<(String, [u8; 32], Info)> {
    let bad = || Error::Corrupt("the manifest failed authentication".into());
    let kid_len = *record.first().ok_or_else(bad)? as usize;
    let kid = record.get(1..1 + kid_len).ok_or_else(bad)?;
    let at = 1 + kid_len;
    let inner_len = u16::from_be_bytes(
        record
            .get(at..at + 2)
            .ok_or_else(bad)?
            .try_into()
            .expect("2 bytes"),
    ) as usize;
    let inner = record.get(at + 2..at + 2 + inner_len).ok_or_else(bad)?;
    let rest = &record[at + 2 + inner_len..];
    if rest.len() < crate::aead::RECORD_OVERHEAD {
        return Err(bad());
    }
    let (kid, inner) = (
        std::str::from_utf8(kid).map_err(|_| bad())?,
        std::str::from_utf8(inner).map_err(|_| bad())?,
    );
    let master = ring.get(kid).ok_or_else(|| {
        Error::Internal(format!(
            "wrong or missing master key: the object's manifest was sealed with master key \
             id {kid:?}, which is not configured"
        ))
    })?;
    let data_key = upload_data_key(master, bucket, key, inner);
    let json = data_cipher(&data_key)
        .open_record(rest, &manifest_aad(kid, inner))
        .map_err(|_| bad())?;
    let info: Info = serde_json::from_slice(&json).map_err(|_| bad())?;
    Ok((inner.to_string(), data_key, info))
}

/// The upload metadata tag: `1.<key id>.<base64url(mac16)>`, mac16 the first 16 bytes of
/// [`upload_secret`] with label `upload-metadata` over bucket, key and the metadata hash.
pub fn upload_meta_tag(master: &MasterKey, bucket: &str, key: &str, meta_hash: &str) -> String {
    let mac = upload_secret(master, "upload-metadata", bucket, key, meta_hash);
    format!("1.{}.{}", master.id(), B64.encode(&mac[..16]))
}

/// Check an upload metadata tag against the object's metadata hash.
pub fn check_upload_meta(
    ring: &Keyring,
    bucket: &str,
    key: &str,
    tag: &str,
    meta_hash: &str,
) -> Result<()> {
    use subtle::ConstantTimeEq;
    let bad = || Error::Corrupt("content headers or user metadata were changed in storage".into());
    let mut fields = tag.splitn(3, '.');
    let (Some("1"), Some(kid), Some(mac)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(bad());
    };
    let master = ring.get(kid).ok_or_else(|| {
        Error::Internal(format!(
            "wrong or missing master key: the object's metadata was tagged with master key \
             id {kid:?}, which is not configured"
        ))
    })?;
    let want = upload_secret(master, "upload-metadata", bucket, key, meta_hash);
    let mac = B64.decode(mac).map_err(|_| bad())?;
    if mac.len() != 16 || !bool::from(want[..16].ct_eq(&mac[..])) {
        return Err(bad());
    }
    Ok(())
}

/// The metadata seal of a single PUT: `base64url(nonce24 || AEAD(data key, metadata hash,
/// AAD "s3proxy-enc-v1/meta"))`.
pub fn seal_meta_with_nonce(data_key: &[u8; 32], meta_hash: &str, nonce: &[u8; 24]) -> String {
    B64.encode(data_cipher(data_key).seal_record(nonce, META_AAD, meta_hash.as_bytes()))
}

/// [`seal_meta_with_nonce`] with a fresh random nonce.
pub fn seal_meta(data_key: &[u8; 32], meta_hash: &str) -> String {
    seal_meta_with_nonce(data_key, meta_hash, &rand::random())
}

/// Check a metadata seal against the object's metadata hash.
///
/// ```
/// use s3proxy_crypto::manifest::*;
/// let sealed = seal_meta(&[1; 32], "abc");
/// assert!(check_meta(&[1; 32], &sealed, "abc").is_ok());
/// assert!(check_meta(&[1; 32], &sealed, "abd").is_err());
/// assert!(check_meta(&[2; 32], &sealed, "abc").is_err());
/// ```
pub fn check_meta(data_key: &[u8; 32], sealed: &str, meta_hash: &str) -> Result<()> {
    let bad = || Error::Corrupt("content headers or user metadata were changed in storage".into());
    let blob = B64.decode(sealed).map_err(|_| bad())?;
    let hash = data_cipher(data_key)
        .open_record(&blob, META_AAD)
        .map_err(|_| bad())?;
    if hash != meta_hash.as_bytes() {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> Info {
        Info {
            size: 5 * 1024 * 1024 + 777,
            etag: "0123456789abcdef0123456789abcdef-2".into(),
            parts: Some("1+1*5242880,2+1*777".into()),
            meta: String::new(),
            trailer: None,
        }
    }

    #[test]
    fn a_manifest_opens_only_for_its_object_and_marks_its_part() {
        let ring = Keyring::single(MasterKey::new("k", [3; 32]).unwrap());
        for before in [0, 40, 817, STORED_SEGMENT - 3, 5 * STORED_SEGMENT + 41] {
            let t = seal_manifest(ring.active(), "b", "k", "inner", &info(), before);
            let total = before + t.len() as u64;
            assert_eq!(is_manifest_part(total), before == 0);
            assert_eq!(carries_manifest(total), before > 0);
            assert_eq!(crate::format::plain_size(before + t.len() as u64), None);
            let n = footer_record_len(&t).unwrap() as usize;
            let record = &t[t.len() - 12 - n..t.len() - 12];
            let (inner, key, got) = open_manifest(&ring, "b", "k", record).unwrap();
            assert_eq!((inner.as_str(), got), ("inner", info()));
            assert_eq!(key, upload_data_key(ring.active(), "b", "k", "inner"));
            assert!(open_manifest(&ring, "b", "other", record).is_err());
            let mut bent = record.to_vec();
            let at = bent.len() - 20;
            bent[at] ^= 1;
            assert!(open_manifest(&ring, "b", "k", &bent).is_err());
        }
    }

    #[test]
    fn the_upload_metadata_tag_binds_bucket_key_and_hash() {
        let ring = Keyring::single(MasterKey::new("k", [3; 32]).unwrap());
        let tag = upload_meta_tag(ring.active(), "b", "k", "h1");
        assert!(check_upload_meta(&ring, "b", "k", &tag, "h1").is_ok());
        assert!(check_upload_meta(&ring, "b", "k", &tag, "h2").is_err());
        assert!(check_upload_meta(&ring, "b", "k2", &tag, "h1").is_err());
    }
}
