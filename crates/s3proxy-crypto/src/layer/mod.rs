//! `Encrypted`: the encryption layer as a [`Backend`].
//!
//! Where each mechanism lives:
//! - `backend.rs`: the [`Backend`] impl, operation by operation; the longer flows it hands
//!   to the files below.
//! - `decode.rs`: reading a stored object's key and info records into what is served
//!   (plaintext size, ETag, segment layout, metadata).
//! - `put.rs`: PutObject: the data key, the info record, and when it is attached.
//! - `seal.rs`: the sealing pipeline that turns a plaintext body (PUT or part) into
//!   stored segments while hashing it.
//! - `get.rs`: GetObject: one read attempt (whole object, or a range mapped to the
//!   segments covering it) and retrying on another replica.
//! - `reader.rs`: the reader that verifies and decrypts a GET body segment by segment,
//!   failing over mid-stream when a replica serves unauthentic data.
//! - `parts.rs`: multipart uploads: upload tokens, the parts remembered per instance,
//!   UploadPart and CompleteMultipartUpload.
//! - `manifest.rs`: the manifest part written before the inner completion, and reading an
//!   object that has no info record from its manifest.
//! - `retry.rs`: CompleteMultipartUpload retried after it succeeded.
//!
//! The plaintext sizes and ETags shown in listings are in `list_cache.rs`.

mod backend;
mod decode;
mod get;
mod manifest;
mod opened;
mod parts;
mod put;
mod reader;
mod retry;
mod seal;

pub(crate) use decode::Decoded;

use crate::keys::Keyring;
use crate::list_cache::{DEFAULT_LIST_CACHE_BYTES, ListCache};
use opened::{DEFAULT_OPENED_CACHE_BYTES, OpenedCache};
use parts::PartRecord;
use s3proxy_core::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::format::ENC_PREFIX;

/// A [`Backend`] that stores everything in its inner backend encrypted and authenticated
/// (format: docs/FORMAT.md) while showing plaintext sizes, ETags and data to its callers.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use s3proxy_core::{Backend, BucketName, ObjectKey, PutOptions, GetOptions, collect_body};
/// use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
/// let inner = std::sync::Arc::new(s3proxy_backends::Memory::new("mem"));
/// let enc = Encrypted::new(inner.clone(), Keyring::single(MasterKey::generate()));
/// let (bucket, key) = (BucketName::new("docs").unwrap(), ObjectKey::new("a.txt").unwrap());
/// enc.create_bucket(&bucket).await.unwrap();
/// let put = enc.put_object(&bucket, &key, bytes::Bytes::from("secret").into(), PutOptions::default())
///     .await.unwrap();
/// assert_eq!(put.etag, "5ebe2294ecd0e0f08eab7690d2a6ee69"); // MD5 of the plaintext
/// let got = enc.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
/// assert_eq!(collect_body(got.body, 100).await.unwrap(), "secret");
/// let raw = inner.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
/// assert_eq!(raw.info.size, 6 + 40); // nonce and tag around one segment
/// # });
/// ```
pub struct Encrypted {
    pub(crate) inner: DynBackend,
    ring: Arc<Keyring>,
    parts: Mutex<HashMap<(String, u32), Vec<PartRecord>>>,
    /// Stored bytes of small (possibly last) parts, for the manifest (manifest.rs).
    small: Mutex<manifest::SmallParts>,
    /// Plaintext sizes and ETags for listings (list_cache.rs).
    pub(crate) listed: ListCache,
    /// Data keys and info records already opened (opened.rs).
    opened: OpenedCache,
}

fn strip_enc(internal: &mut BTreeMap<String, String>) {
    internal.retain(|k, _| !k.starts_with(ENC_PREFIX));
}

fn if_match(etag: &ETag) -> Conditions {
    Conditions {
        if_match: Some(etag.quoted()),
        ..Default::default()
    }
}

impl Encrypted {
    /// Wrap `inner`, encrypting with the ring's active key and reading with any of its keys.
    pub fn new(inner: DynBackend, ring: Keyring) -> Encrypted {
        Encrypted {
            inner,
            ring: Arc::new(ring),
            parts: Mutex::new(HashMap::new()),
            small: Mutex::default(),
            listed: ListCache::new(DEFAULT_LIST_CACHE_BYTES),
            opened: OpenedCache::new(DEFAULT_OPENED_CACHE_BYTES),
        }
    }

    /// Keep at most about `bytes` of plaintext sizes and ETags for listings over backends
    /// that list no metadata (S3); 0 looks every such object up on every listing.
    pub fn with_list_cache(mut self, bytes: usize) -> Encrypted {
        self.listed = ListCache::new(bytes);
        self
    }

    /// Keep at most about `bytes` of opened data keys and info records (8 MiB unless
    /// set), so that reading an object again opens neither; 0 opens them on every read.
    /// An entry is used only while the object is stored with the same ETag and the same
    /// record texts, so it is never stale (opened.rs).
    pub fn with_key_cache(mut self, bytes: usize) -> Encrypted {
        self.opened = OpenedCache::new(bytes);
        self
    }

    /// The cache of opened records: entries held and the bytes they are counted as.
    pub fn key_cache_usage(&self) -> (usize, usize) {
        self.opened.usage()
    }

    /// The listing cache: entries held and the bytes they are counted as.
    pub fn list_cache_usage(&self) -> (usize, usize) {
        self.listed.usage()
    }

    /// The keyring in use.
    pub fn keyring(&self) -> &Keyring {
        &self.ring
    }

    /// Give an object already stored new metadata (its info record), by copying it onto
    /// itself: the inner backend moves no data through this process. The copy only
    /// happens while the stored object is still the one we wrote.
    async fn attach_info(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        stored_etag: &ETag,
        metadata: ObjectMetadata,
    ) -> Result<PutResult> {
        self.inner
            .copy_object(
                bucket,
                key,
                bucket,
                key,
                CopyOptions {
                    directive: MetadataDirective::Replace(metadata),
                    source_conditions: if_match(stored_etag),
                },
            )
            .await
    }
}
