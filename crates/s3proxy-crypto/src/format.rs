//! The stored format, version 1 (docs/FORMAT.md is the normative description).
//!
//! Everything here is pure: sizes, layouts, segment sealing, data-key wrapping and the
//! sealed info record. The backend layer in `layer/` only moves bytes around these.

use crate::aead::Cipher;
use crate::keys::{Keyring, MasterKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::{Bytes, BytesMut};
use hkdf::Hkdf;
use s3proxy_core::{ETag, Error, ObjectMetadata, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Plaintext bytes per segment (64 KiB). Every segment but the last of a part holds
/// exactly this many.
pub const SEGMENT_SIZE: u64 = 64 * 1024;
/// Bytes of the random XChaCha20 nonce stored in front of every segment.
pub const NONCE_LEN: u64 = crate::aead::NONCE_LEN as u64;
/// Bytes of the Poly1305 tag stored after every segment.
pub const TAG_LEN: u64 = crate::aead::TAG_LEN as u64;
/// Stored bytes per segment beyond its plaintext: nonce plus tag.
pub const SEGMENT_OVERHEAD: u64 = NONCE_LEN + TAG_LEN;
/// Stored bytes of a full segment.
pub const STORED_SEGMENT: u64 = SEGMENT_SIZE + SEGMENT_OVERHEAD;
/// The format version written into wrapped keys.
pub const FORMAT_VERSION: &str = "1";

/// Internal metadata key holding the wrapped data key.
pub const KEY_META: &str = "s3proxy-enc-key";
/// Internal metadata key holding the sealed info record (size, ETag, layout, metadata hash).
pub const INFO_META: &str = "s3proxy-enc-info";
/// Prefix of every internal metadata key this layer owns.
pub const ENC_PREFIX: &str = "s3proxy-enc-";

const SEG_AAD: &[u8] = b"s3proxy-enc-v1/seg";
const WRAP_AAD: &[u8] = b"s3proxy-enc-v1/wrap/";
const INFO_AAD: &[u8] = b"s3proxy-enc-v1/info";

/// Number of segments a part (or a single-PUT object) of `plain` bytes is stored in: an
/// empty part still has one (empty, final) segment, so that its absence is detectable.
///
/// ```
/// use s3proxy_crypto::format::{segment_count, SEGMENT_SIZE};
/// assert_eq!(segment_count(0), 1);
/// assert_eq!(segment_count(SEGMENT_SIZE), 1);
/// assert_eq!(segment_count(SEGMENT_SIZE + 1), 2);
/// ```
pub fn segment_count(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT_SIZE).max(1)
}

/// Stored size of a part (or single-PUT object) of `plain` bytes.
///
/// ```
/// use s3proxy_crypto::format::stored_size;
/// assert_eq!(stored_size(0), 40);
/// assert_eq!(stored_size(1), 41);
/// assert_eq!(stored_size(65536), 65576);
/// assert_eq!(stored_size(65537), 65617);
/// ```
pub fn stored_size(plain: u64) -> u64 {
    plain + SEGMENT_OVERHEAD * segment_count(plain)
}

/// The plaintext size of a stored object, inverted from its stored size alone. Exact for
/// single PUTs and for multipart objects whose parts but the last are whole numbers of
/// segments; `None` when no plaintext size maps to `stored`.
///
/// ```
/// use s3proxy_crypto::format::{plain_size, stored_size};
/// for n in [0, 1, 65535, 65536, 65537, 10_000_000] {
///     assert_eq!(plain_size(stored_size(n)), Some(n));
/// }
/// assert_eq!(plain_size(39), None);
/// ```
pub fn plain_size(stored: u64) -> Option<u64> {
    let full = stored / STORED_SEGMENT;
    let rem = stored % STORED_SEGMENT;
    if rem == 0 {
        (full > 0).then(|| full * SEGMENT_SIZE)
    } else if rem < SEGMENT_OVERHEAD {
        None
    } else {
        Some(full * SEGMENT_SIZE + rem - SEGMENT_OVERHEAD)
    }
}

/// The associated data of one segment: its part number (0 for a single PUT), its index
/// within the part and whether it is the part's last segment.
pub fn segment_aad(part: u32, index: u32, last: bool) -> [u8; 27] {
    let mut aad = [0u8; 27];
    aad[..18].copy_from_slice(SEG_AAD);
    aad[18..22].copy_from_slice(&part.to_be_bytes());
    aad[22..26].copy_from_slice(&index.to_be_bytes());
    aad[26] = last as u8;
    aad
}

/// The AEAD of one object's data key.
pub fn data_cipher(data_key: &[u8; 32]) -> Cipher {
    Cipher::new(data_key)
}

/// Seal one segment with an explicit nonce: `nonce || ciphertext || tag`.
///
/// ```
/// use s3proxy_crypto::format::*;
/// let cipher = data_cipher(&[7; 32]);
/// let stored = seal_segment(&cipher, &[1; 24], 0, 0, true, b"hello");
/// assert_eq!(stored.len(), 5 + 40);
/// assert_eq!(&open_segment(&cipher, 0, 0, true, &stored).unwrap()[..], b"hello");
/// assert!(open_segment(&cipher, 0, 0, false, &stored).is_err());
/// ```
pub fn seal_segment(
    cipher: &Cipher,
    nonce: &[u8; 24],
    part: u32,
    index: u32,
    last: bool,
    plain: &[u8],
) -> Bytes {
    Bytes::from(cipher.seal_record(nonce, &segment_aad(part, index, last), plain))
}

/// [`seal_segment`] without copying: `buf` holds the nonce followed by the plaintext, and
/// is sealed in place into the stored segment (the tag is appended).
///
/// ```
/// use s3proxy_crypto::format::*;
/// let cipher = data_cipher(&[7; 32]);
/// let mut buf = bytes::BytesMut::from(&[1u8; 24][..]);
/// buf.extend_from_slice(b"hello");
/// seal_segment_in_place(&cipher, 3, 1, false, &mut buf);
/// assert_eq!(buf, seal_segment(&cipher, &[1; 24], 3, 1, false, b"hello"));
/// ```
pub fn seal_segment_in_place(
    cipher: &Cipher,
    part: u32,
    index: u32,
    last: bool,
    buf: &mut BytesMut,
) {
    assert!(buf.len() >= NONCE_LEN as usize, "the nonce comes first");
    let (nonce, plain) = buf.split_at_mut(NONCE_LEN as usize);
    let nonce: &[u8; NONCE_LEN as usize] = (&*nonce).try_into().expect("split at its length");
    let tag = cipher.seal_in_place(nonce, &segment_aad(part, index, last), plain);
    buf.extend_from_slice(&tag);
}

/// [`open_segment`] without copying: decrypts the stored segment in its own buffer and
/// returns the plaintext as a view of it.
///
/// ```
/// use s3proxy_crypto::format::*;
/// let cipher = data_cipher(&[7; 32]);
/// let stored = seal_segment(&cipher, &[1; 24], 0, 2, true, b"hello");
/// let plain = open_segment_owned(&cipher, 0, 2, true, stored[..].into()).unwrap();
/// assert_eq!(&plain[..], b"hello");
/// assert!(open_segment_owned(&cipher, 0, 1, true, stored[..].into()).is_err());
/// ```
pub fn open_segment_owned(
    cipher: &Cipher,
    part: u32,
    index: u32,
    last: bool,
    mut stored: BytesMut,
) -> Result<Bytes> {
    if (stored.len() as u64) < SEGMENT_OVERHEAD {
        return Err(Error::Corrupt(
            "segment shorter than its nonce and tag".into(),
        ));
    }
    let plain = cipher
        .open_record_in_place(&mut stored, &segment_aad(part, index, last))
        .map_err(|_| {
            Error::Corrupt(format!(
                "segment {index} of part {part} failed authentication"
            ))
        })?;
    Ok(stored.freeze().slice(plain))
}

/// Open one stored segment; [`Error::Corrupt`] when it fails authentication.
pub fn open_segment(
    cipher: &Cipher,
    part: u32,
    index: u32,
    last: bool,
    stored: &[u8],
) -> Result<Bytes> {
    if (stored.len() as u64) < SEGMENT_OVERHEAD {
        return Err(Error::Corrupt(
            "segment shorter than its nonce and tag".into(),
        ));
    }
    let plain = cipher
        .open_record(stored, &segment_aad(part, index, last))
        .map_err(|_| {
            Error::Corrupt(format!(
                "segment {index} of part {part} failed authentication"
            ))
        })?;
    Ok(Bytes::from(plain))
}

fn master_cipher(key: &MasterKey) -> Cipher {
    Cipher::new(key.secret())
}

fn wrap_aad(id: &str) -> Vec<u8> {
    [WRAP_AAD, id.as_bytes()].concat()
}

/// Wrap a data key under a master key with an explicit nonce:
/// `1.<key id>.<fingerprint>.<base64url(nonce || wrapped key || tag)>`.
pub fn wrap_data_key_with_nonce(
    master: &MasterKey,
    data_key: &[u8; 32],
    nonce: &[u8; 24],
) -> String {
    let blob = master_cipher(master).seal_record(nonce, &wrap_aad(master.id()), data_key);
    format!(
        "{FORMAT_VERSION}.{}.{}.{}",
        master.id(),
        master.fingerprint(),
        B64.encode(blob)
    )
}

/// Wrap a data key under a master key with a fresh random nonce.
///
/// ```
/// use s3proxy_crypto::{Keyring, MasterKey, format::*};
/// let ring = Keyring::single(MasterKey::generate());
/// let wrapped = wrap_data_key(ring.active(), &[9; 32]);
/// assert_eq!(unwrap_data_key(&ring, &wrapped).unwrap(), [9; 32]);
/// ```
pub fn wrap_data_key(master: &MasterKey, data_key: &[u8; 32]) -> String {
    wrap_data_key_with_nonce(master, data_key, &rand::random())
}

/// Unwrap a data key with whichever key of the ring wrapped it. A missing key id or a
/// different key under the same id is a clear configuration error; a wrapped key that
/// fails authentication is [`Error::Corrupt`].
pub fn unwrap_data_key(ring: &Keyring, wrapped: &str) -> Result<[u8; 32]> {
    let mut fields = wrapped.splitn(4, '.');
    let (Some(version), Some(id), Some(fingerprint), Some(blob)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Error::Corrupt("malformed wrapped data key".into()));
    };
    if version != FORMAT_VERSION {
        return Err(Error::Corrupt(format!(
            "unsupported encryption format version {version:?}"
        )));
    }
    let master = ring.get(id).ok_or_else(|| {
        Error::Internal(format!(
            "wrong or missing master key: the object was encrypted with master key id \
             {id:?}, which is not configured (configured ids: {})",
            ring.ids().collect::<Vec<_>>().join(", ")
        ))
    })?;
    if master.fingerprint() != fingerprint {
        return Err(Error::Internal(format!(
            "wrong master key: the key configured as {id:?} (fingerprint {}) is not the key \
             that encrypted this object (fingerprint {fingerprint})",
            master.fingerprint()
        )));
    }
    let mut blob = B64
        .decode(blob)
        .map_err(|_| Error::Corrupt("malformed wrapped data key".into()))?;
    if blob.len() != 32 + crate::aead::RECORD_OVERHEAD {
        return Err(Error::Corrupt("malformed wrapped data key".into()));
    }
    let plain = master_cipher(master)
        .open_record_in_place(&mut blob, &wrap_aad(id))
        .map_err(|_| Error::Corrupt("wrapped data key failed authentication".into()))?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&blob[plain]);
    Ok(key)
}

/// What the sealed info record says about an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Plaintext size.
    #[serde(rename = "s")]
    pub size: u64,
    /// Plaintext ETag (MD5, or the S3 multipart form).
    #[serde(rename = "e")]
    pub etag: ETag,
    /// Multipart layout ([`Layout::encode`]); absent for single PUTs.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<String>,
    /// [`metadata_hash`] of the headers and user metadata (empty in a manifest, which is
    /// written when the metadata is not known: the upload's own record covers it).
    #[serde(rename = "m")]
    pub meta: String,
    /// Stored bytes after the last segment: the manifest trailer of a multipart object
    /// completed with one (`crate::manifest`); absent when there is none.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub trailer: Option<u64>,
}

/// Seal an info record under the object's data key with an explicit nonce.
pub fn seal_info_with_nonce(data_key: &[u8; 32], info: &Info, nonce: &[u8; 24]) -> String {
    let json = serde_json::to_vec(info).expect("info serializes");
    B64.encode(data_cipher(data_key).seal_record(nonce, INFO_AAD, &json))
}

/// Seal an info record under the object's data key with a fresh random nonce.
///
/// ```
/// use s3proxy_crypto::format::*;
/// let info = Info { size: 3, etag: "abc".into(), parts: None, meta: "00".into(), trailer: None };
/// let sealed = seal_info(&[1; 32], &info);
/// assert_eq!(open_info(&[1; 32], &sealed).unwrap(), info);
/// assert!(open_info(&[2; 32], &sealed).is_err());
/// ```
pub fn seal_info(data_key: &[u8; 32], info: &Info) -> String {
    seal_info_with_nonce(data_key, info, &rand::random())
}

/// Open a sealed info record; [`Error::Corrupt`] when it fails authentication.
pub fn open_info(data_key: &[u8; 32], sealed: &str) -> Result<Info> {
    let bad = || Error::Corrupt("the encryption info record failed authentication".into());
    let blob = B64.decode(sealed).map_err(|_| bad())?;
    let json = data_cipher(data_key)
        .open_record(&blob, INFO_AAD)
        .map_err(|_| bad())?;
    serde_json::from_slice(&json).map_err(|_| bad())
}

/// Hash binding an object's content headers and user metadata into its info record:
/// hex of the first 16 bytes of SHA-256 over their JSON form.
///
/// ```
/// let m = s3proxy_core::ObjectMetadata::default();
/// assert_eq!(s3proxy_crypto::format::metadata_hash(&m).len(), 32);
/// ```
pub fn metadata_hash(meta: &ObjectMetadata) -> String {
    let json = serde_json::to_vec(&(&meta.headers, &meta.user)).expect("metadata serializes");
    hex::encode(&Sha256::digest(json)[..16])
}

/// One part of an object's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSpan {
    /// Part number in the segment AAD (0 for a single PUT).
    pub number: u32,
    /// Offset of the part's first plaintext byte in the object.
    pub plain_start: u64,
    /// Plaintext bytes in the part.
    pub plain_len: u64,
    /// Offset of the part's first stored byte in the stored object.
    pub stored_start: u64,
}

/// Where every segment of an object lives: a list of independently segmented parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    parts: Vec<PartSpan>,
}

/// One segment, located in both the plaintext and the stored object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    /// Part number (AAD).
    pub part: u32,
    /// Index within the part (AAD).
    pub index: u32,
    /// Last segment of its part (AAD).
    pub last: bool,
    /// Offset of the first plaintext byte in the object.
    pub plain_start: u64,
    /// Plaintext bytes.
    pub plain_len: u64,
    /// Offset of the first stored byte (the nonce) in the stored object.
    pub stored_start: u64,
}

impl SegmentRef {
    /// Stored bytes of this segment.
    pub fn stored_len(&self) -> u64 {
        self.plain_len + SEGMENT_OVERHEAD
    }
}

/// The largest part a decoded layout may hold: S3's largest object, 5 TiB.
const MAX_LAYOUT_PART: u64 = 5 << 40;

/// Position of a segment: (part index in the layout, segment index in the part).
pub type SegmentPos = (usize, u64);

impl Layout {
    /// The layout of a single-PUT object of `plain` bytes (one part numbered 0).
    pub fn single(plain: u64) -> Layout {
        Layout::from_parts([(0, plain)])
    }

    /// A layout from `(part number, plaintext size)` in object order.
    pub fn from_parts(parts: impl IntoIterator<Item = (u32, u64)>) -> Layout {
        let (mut plain, mut stored) = (0u64, 0u64);
        let parts = parts
            .into_iter()
            .map(|(number, plain_len)| {
                let span = PartSpan {
                    number,
                    plain_start: plain,
                    plain_len,
                    stored_start: stored,
                };
                plain += plain_len;
                stored += stored_size(plain_len);
                span
            })
            .collect();
        Layout { parts }
    }

    /// The parts.
    pub fn parts(&self) -> &[PartSpan] {
        &self.parts
    }

    /// Plaintext size of the object.
    pub fn plain_size(&self) -> u64 {
        self.parts.last().map_or(0, |p| p.plain_start + p.plain_len)
    }

    /// Stored size of the object.
    pub fn stored_size(&self) -> u64 {
        self.parts
            .last()
            .map_or(0, |p| p.stored_start + stored_size(p.plain_len))
    }

    /// Compact text form: comma-separated runs `first+count*size`, each run being `count`
    /// parts numbered consecutively from `first`, all of `size` plaintext bytes.
    ///
    /// ```
    /// use s3proxy_crypto::format::Layout;
    /// let l = Layout::from_parts([(1, 8388608), (2, 8388608), (3, 8388608), (4, 100)]);
    /// assert_eq!(l.encode(), "1+3*8388608,4+1*100");
    /// assert_eq!(Layout::decode(&l.encode()).unwrap(), l);
    /// ```
    pub fn encode(&self) -> String {
        let mut runs: Vec<(u32, u32, u64)> = vec![];
        for p in &self.parts {
            match runs.last_mut() {
                Some((first, count, size))
                    if *size == p.plain_len && first.checked_add(*count) == Some(p.number) =>
                {
                    *count += 1
                }
                _ => runs.push((p.number, 1, p.plain_len)),
            }
        }
        runs.iter()
            .map(|(first, count, size)| format!("{first}+{count}*{size}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parse [`Layout::encode`]'s form.
    pub fn decode(text: &str) -> Result<Layout> {
        let bad = || Error::Corrupt(format!("malformed part layout {text:?}"));
        let mut parts = vec![];
        for run in text.split(',') {
            let (first, rest) = run.split_once('+').ok_or_else(bad)?;
            let (count, size) = rest.split_once('*').ok_or_else(bad)?;
            let first: u32 = first.parse().map_err(|_| bad())?;
            let count: u32 = count.parse().map_err(|_| bad())?;
            let size: u64 = size.parse().map_err(|_| bad())?;
            // Bounded as S3 bounds objects, so no sum over the layout can overflow.
            if count == 0
                || count > 10_000
                || parts.len() + count as usize > 10_000
                || size > MAX_LAYOUT_PART
            {
                return Err(bad());
            }
            for i in 0..count {
                parts.push((first.checked_add(i).ok_or_else(bad)?, size));
            }
        }
        Ok(Layout::from_parts(parts))
    }

    /// The segment at `pos`.
    pub fn segment(&self, (pi, index): SegmentPos) -> SegmentRef {
        let p = &self.parts[pi];
        let count = segment_count(p.plain_len);
        let offset = index * SEGMENT_SIZE;
        let plain_len = SEGMENT_SIZE.min(p.plain_len - offset);
        SegmentRef {
            part: p.number,
            index: index as u32,
            last: index + 1 == count,
            plain_start: p.plain_start + offset,
            plain_len,
            stored_start: p.stored_start + index * STORED_SEGMENT,
        }
    }

    /// The segment after `pos`, if any.
    pub fn next(&self, (pi, index): SegmentPos) -> Option<SegmentPos> {
        if index + 1 < segment_count(self.parts[pi].plain_len) {
            Some((pi, index + 1))
        } else if pi + 1 < self.parts.len() {
            Some((pi + 1, 0))
        } else {
            None
        }
    }

    /// The segment holding plaintext byte `offset` (which must be below the size).
    pub fn locate(&self, offset: u64) -> SegmentPos {
        // Part ends never decrease, so the first part ending after `offset` holds it
        // (empty parts end where they start and are skipped).
        let pi = self
            .parts
            .partition_point(|p| p.plain_start + p.plain_len <= offset);
        (pi, (offset - self.parts[pi].plain_start) / SEGMENT_SIZE)
    }

    /// The first and last segments to read for the inclusive plaintext range, or for the
    /// whole object when `range` is `None` (an empty object still has one segment).
    pub fn covering(&self, range: Option<(u64, u64)>) -> (SegmentPos, SegmentPos) {
        match range {
            Some((a, b)) => (self.locate(a), self.locate(b)),
            None => {
                let last = self.parts.len() - 1;
                (
                    (0, 0),
                    (last, segment_count(self.parts[last].plain_len) - 1),
                )
            }
        }
    }
}

/// A 32-byte secret derived from a master key for one multipart upload: HKDF-SHA256 with
/// salt `s3proxy-enc-v1`, the master secret as input key material and as info `label`
/// followed by bucket, key and the inner upload id, each prefixed with its length (u32 BE).
pub fn upload_secret(
    master: &MasterKey,
    label: &str,
    bucket: &str,
    key: &str,
    inner_upload_id: &str,
) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(b"s3proxy-enc-v1"), master.secret());
    let mut info = label.as_bytes().to_vec();
    for field in [bucket, key, inner_upload_id] {
        info.extend_from_slice(&(field.len() as u32).to_be_bytes());
        info.extend_from_slice(field.as_bytes());
    }
    let mut out = [0u8; 32];
    hk.expand(&info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// The data key of a multipart upload (label `upload-data-key`).
pub fn upload_data_key(master: &MasterKey, bucket: &str, key: &str, inner_id: &str) -> [u8; 32] {
    upload_secret(master, "upload-data-key", bucket, key, inner_id)
}

/// The authenticator in an upload id (label `upload-id-mac`, first 16 bytes).
pub fn upload_mac(master: &MasterKey, bucket: &str, key: &str, inner_id: &str) -> [u8; 16] {
    let full = upload_secret(master, "upload-id-mac", bucket, key, inner_id);
    full[..16].try_into().expect("16 of 32 bytes")
}

/// The upload id handed to clients: `e1.<key id>.<base64url(mac)>.<inner upload id>`.
/// It is derived, not stored, so ListMultipartUploads can give the same id again.
///
/// ```
/// use s3proxy_crypto::{MasterKey, Keyring, format::*};
/// let ring = Keyring::single(MasterKey::new("k1", [3; 32]).unwrap());
/// let id = upload_token(ring.active(), "b", "k", "inner-1");
/// let (inner, key) = parse_upload_token(&ring, "b", "k", &id).unwrap();
/// assert_eq!(inner, "inner-1");
/// assert_eq!(key, upload_data_key(ring.active(), "b", "k", "inner-1"));
/// assert!(parse_upload_token(&ring, "b", "other", &id).is_none());
/// ```
pub fn upload_token(master: &MasterKey, bucket: &str, key: &str, inner_id: &str) -> String {
    let mac = upload_mac(master, bucket, key, inner_id);
    format!("e1.{}.{}.{inner_id}", master.id(), B64.encode(mac))
}

/// Check an upload id against the keyring: the inner upload id and the upload's data key,
/// or `None` when it was not issued by s3proxy for this bucket and key.
pub fn parse_upload_token(
    ring: &Keyring,
    bucket: &str,
    key: &str,
    token: &str,
) -> Option<(String, [u8; 32])> {
    use subtle::ConstantTimeEq;
    let rest = token.strip_prefix("e1.")?;
    let (id, rest) = rest.split_once('.')?;
    let (mac, inner) = rest.split_once('.')?;
    let master = ring.get(id)?;
    let mac = B64.decode(mac).ok()?;
    let want = upload_mac(master, bucket, key, inner);
    if !bool::from(want.ct_eq(&mac[..])) {
        return None;
    }
    Some((
        inner.to_string(),
        upload_data_key(master, bucket, key, inner),
    ))
}
