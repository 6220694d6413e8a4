//! The object model: metadata, option structs and results of [`crate::Backend`] calls.

use crate::{ByteRange, ByteStream, Conditions, ETag, ObjectKey, UploadId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Prefix of internal metadata keys. Internal metadata belongs to s3proxy's own layers
/// (encryption headers, version stamps); it is stored with the object but never shown to
/// clients.
pub const INTERNAL_PREFIX: &str = "s3proxy-";

/// Largest total size of user metadata (names plus values) that S3 accepts, in bytes.
pub const MAX_USER_METADATA: usize = 2048;

/// A bucket as listed by ListBuckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    /// The bucket's name.
    pub name: String,
    /// When the bucket was created.
    pub created: SystemTime,
}

/// The standard HTTP content headers S3 stores with an object and returns on GET/HEAD.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentHeaders {
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, kept verbatim as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// Everything a client (or a layer) sets on an object besides its data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMetadata {
    /// Standard content headers.
    #[serde(default)]
    pub headers: ContentHeaders,
    /// User metadata (`x-amz-meta-*`), names lowercased, without the prefix.
    #[serde(default)]
    pub user: BTreeMap<String, String>,
    /// Metadata reserved for s3proxy's own layers (names start with [`INTERNAL_PREFIX`]).
    /// A backend stores it like user metadata; the HTTP layer never exposes it.
    #[serde(default)]
    pub internal: BTreeMap<String, String>,
}

impl ObjectMetadata {
    /// Total size of user metadata as S3 counts it: names plus values, in bytes.
    pub fn user_size(&self) -> usize {
        self.user.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// What a backend knows about a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: ObjectKey,
    /// Size of the object's data in bytes.
    pub size: u64,
    /// The entity tag: the hex MD5 of the data for single PUTs, or
    /// `md5-of-part-md5s-N` for multipart uploads.
    pub etag: ETag,
    /// When the object was last written.
    pub last_modified: SystemTime,
    /// Headers, user and internal metadata.
    pub metadata: ObjectMetadata,
    /// The number of parts of a multipart object, given (as S3 gives
    /// `x-amz-mp-parts-count`) only when [`GetOptions::part_number`] asked for a part of
    /// one; `None` otherwise.
    pub parts_count: Option<u32>,
}

/// A streaming body with a length known in advance, as S3 requires for PUT.
pub struct Body {
    /// The bytes, in order.
    pub stream: ByteStream,
    /// The exact number of bytes `stream` yields; a backend fails the write with
    /// [`crate::Error::IncompleteBody`] when the stream ends early, and with
    /// [`crate::Error::InvalidRequest`] when it runs long.
    pub length: u64,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("length", &self.length)
            .finish()
    }
}

/// Options of [`crate::Backend::put_object`].
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Headers and metadata to store with the object.
    pub metadata: ObjectMetadata,
    /// The MD5 the client sent in `Content-MD5`; the write fails with
    /// [`crate::Error::BadDigest`] and stores nothing when the data does not match.
    pub content_md5: Option<[u8; 16]>,
}

/// Options of [`crate::Backend::get_object`] and [`crate::Backend::head_object`].
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    /// Only these bytes (GET only; HEAD ignores it).
    pub range: Option<ByteRange>,
    /// Conditional request headers.
    pub conditions: Conditions,
    /// Hints for particular layers, which every other backend ignores: the replicas not
    /// to read from ([`crate::replicas::ExcludeReplicas`]).
    pub extensions: crate::Extensions,
    /// `?partNumber=N`: only the bytes of the object's Nth part (as uploaded to its
    /// multipart upload), served like a range over the whole object, with the parts
    /// count in the info. An object not uploaded in parts has one part: itself. A
    /// number beyond the parts is [`crate::Error::InvalidPartNumber`]; HEAD answers
    /// with the part's range too. Never together with `range`.
    pub part_number: Option<u32>,
}

impl GetOptions {
    /// A part and a byte range at once: S3 refuses the pair with 400 InvalidRequest, and
    /// so does every layer (the check lives here so the answer is the same in each).
    ///
    /// ```
    /// use s3proxy_core::{ByteRange, GetOptions};
    /// let both = GetOptions { part_number: Some(1), range: Some(ByteRange::FromTo(0, 1)), ..Default::default() };
    /// assert!(both.refuse_part_with_range().is_err());
    /// assert!(GetOptions::default().refuse_part_with_range().is_ok());
    /// ```
    pub fn refuse_part_with_range(&self) -> crate::Result<()> {
        if self.part_number.is_some() && self.range.is_some() {
            return Err(crate::Error::part_with_range());
        }
        Ok(())
    }
}

/// Where part `number` (1-based) lies in an object made of parts of `sizes` bytes, in
/// order: the inclusive byte range, or [`crate::Error::InvalidPartNumber`]. An empty part
/// (an empty object) has no range: `Ok(None)`.
///
/// ```
/// use s3proxy_core::part_range;
/// assert_eq!(part_range(&[5, 5, 2], 2).unwrap(), Some((5, 9)));
/// assert_eq!(part_range(&[0], 1).unwrap(), None);
/// assert!(part_range(&[5, 2], 3).is_err());
/// ```
pub fn part_range(sizes: &[u64], number: u32) -> crate::Result<Option<(u64, u64)>> {
    let index = (number as usize)
        .checked_sub(1)
        .filter(|i| *i < sizes.len())
        .ok_or(crate::Error::InvalidPartNumber)?;
    let start: u64 = sizes[..index].iter().sum();
    Ok((sizes[index] > 0).then(|| (start, start + sizes[index] - 1)))
}

/// The result of a GET: metadata, the byte range served and the data.
pub struct GetResult {
    /// The whole object's metadata (its `size` is the whole object's size).
    pub info: ObjectInfo,
    /// The inclusive byte range the body covers, when a range was requested.
    pub range: Option<(u64, u64)>,
    /// The data.
    pub body: ByteStream,
    /// What particular layers tell the layers above: the replica that served the data
    /// and where to report it ([`crate::replicas::ServedBy`]), from a replicating layer.
    pub extensions: crate::Extensions,
}

impl GetResult {
    /// Number of bytes `body` yields.
    pub fn content_length(&self) -> u64 {
        match self.range {
            // Saturating: a range is checked where it is made, but a length is never a panic.
            Some((start, end)) => end.saturating_sub(start).saturating_add(1),
            None => self.info.size,
        }
    }
}

/// The result of a successful write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The new object's ETag.
    pub etag: ETag,
    /// When the object was written.
    pub last_modified: SystemTime,
}

/// Whether CopyObject keeps the source's metadata or takes new metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetadataDirective {
    /// Keep the source object's headers and user metadata.
    #[default]
    Copy,
    /// Use the given headers and user metadata instead.
    Replace(ObjectMetadata),
}

/// Options of [`crate::Backend::copy_object`].
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// COPY or REPLACE the metadata.
    pub directive: MetadataDirective,
    /// Conditions on the source (`x-amz-copy-source-if-*`).
    pub source_conditions: Conditions,
}

/// Options of [`crate::Backend::list_objects`]. The default lists a whole page (S3's
/// 1000 keys) of everything, as a bare ListObjects request does; `max_keys: 0` asks for
/// an empty page, as `max-keys=0` does.
///
/// ```
/// use s3proxy_core::ListOptions;
/// assert_eq!(ListOptions::default().max_keys, 1000);
/// ```
#[derive(Clone, Debug)]
pub struct ListOptions {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up into common prefixes at the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Only keys (and common prefixes) strictly after this (marker, start-after, or the
    /// position a continuation token encodes).
    pub start_after: Option<String>,
    /// At most this many keys plus common prefixes (S3 caps it at 1000).
    pub max_keys: usize,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            prefix: String::new(),
            delimiter: None,
            start_after: None,
            max_keys: crate::list::MAX_KEYS,
        }
    }
}

/// One object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The entity tag.
    pub etag: ETag,
    /// Last write time.
    pub last_modified: SystemTime,
    /// The object's internal metadata, when the backend has it at hand while listing
    /// (memory and filesystem do; S3 listings carry no metadata, so S3 backends give
    /// `None`). Layers use it to show plaintext sizes and ETags and to compare version
    /// stamps without a HEAD per listed object.
    pub internal: Option<BTreeMap<String, String>>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Objects, in UTF-8 byte order of their keys.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes (each ends with the delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// Whether more entries follow.
    pub is_truncated: bool,
    /// When truncated: the last key or common prefix of this page; the next page starts
    /// after it.
    pub next_marker: Option<String>,
}

/// Options of [`crate::Backend::create_multipart_upload`].
#[derive(Clone, Debug, Default)]
pub struct MultipartOptions {
    /// Headers and metadata the completed object will carry.
    pub metadata: ObjectMetadata,
}

/// Options of [`crate::Backend::upload_part`].
#[derive(Clone, Debug, Default)]
pub struct PartOptions {
    /// The MD5 the client sent in `Content-MD5`.
    pub content_md5: Option<[u8; 16]>,
}

/// A part as named in CompleteMultipartUpload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    /// Part number, 1 to 10000.
    pub part_number: u32,
    /// The ETag UploadPart returned for it.
    pub etag: ETag,
}

/// A part as listed by ListParts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number.
    pub part_number: u32,
    /// The entity tag.
    pub etag: ETag,
    /// Size in bytes.
    pub size: u64,
    /// When the part was uploaded.
    pub last_modified: SystemTime,
}

/// Options of [`crate::Backend::list_parts`].
#[derive(Clone, Debug, Default)]
pub struct ListPartsOptions {
    /// Only parts with a number above this.
    pub part_number_marker: u32,
    /// At most this many parts.
    pub max_parts: usize,
}

/// One page of ListParts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPartsResult {
    /// Parts in ascending order.
    pub parts: Vec<PartInfo>,
    /// Whether more parts follow.
    pub is_truncated: bool,
    /// When truncated, the marker for the next page.
    pub next_part_number_marker: Option<u32>,
}

/// An upload in progress, as listed by ListMultipartUploads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadInfo {
    /// The key the upload writes.
    pub key: String,
    /// The upload id.
    pub upload_id: UploadId,
    /// When the upload was created.
    pub initiated: SystemTime,
}

/// Options of [`crate::Backend::list_multipart_uploads`].
#[derive(Clone, Debug, Default)]
pub struct ListUploadsOptions {
    /// Only uploads of keys starting with this.
    pub prefix: String,
    /// At most this many uploads.
    pub max_uploads: usize,
    /// Only uploads of keys after this one (S3's `key-marker`); empty: from the first.
    pub key_marker: String,
}

/// One page of ListMultipartUploads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListUploadsResult {
    /// Uploads, ordered by key then initiation time.
    pub uploads: Vec<UploadInfo>,
    /// Whether more uploads follow.
    pub is_truncated: bool,
}

/// The outcome of one key of a DeleteObjects request.
#[derive(Debug)]
pub struct DeleteOutcome {
    /// The key.
    pub key: ObjectKey,
    /// `Ok` when deleted (or already absent), else why not.
    pub result: crate::Result<()>,
}

/// S3's smallest part size for every part but the last: 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest single PUT: 5 GiB.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// The S3 multipart ETag: MD5 over the concatenated binary MD5s of the parts (their plain
/// hex tags, as [`ETag::as_str`] gives them), then `-N`.
///
/// ```
/// let etag = s3proxy_core::multipart_etag(["d41d8cd98f00b204e9800998ecf8427e"]).unwrap();
/// assert!(etag.as_str().ends_with("-1"));
/// ```
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> crate::Result<ETag> {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    let mut count = 0usize;
    for etag in part_etags {
        let raw = hex::decode(etag).map_err(|_| crate::Error::InvalidPart)?;
        hasher.update(&raw);
        count += 1;
    }
    Ok(ETag::new(format!(
        "{}-{}",
        hex::encode(hasher.finalize()),
        count
    )))
}
