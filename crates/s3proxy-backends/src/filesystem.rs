//! The local filesystem backend: the embedded default.
//!
//! Layout under the root directory:
//!
//! ```text
//! <root>/<bucket>/bucket.json              the bucket exists; its creation time
//! <root>/<bucket>/objects/<h2>/<h64>       one file per object, h64 = hex SHA-256 of the key
//! <root>/<bucket>/uploads/<id>/upload.json a multipart upload in progress
//! <root>/<bucket>/uploads/<id>/<n>         its part n
//! <root>/<bucket>/tmp/                     files being written
//! ```
//!
//! File names are hashes of keys, so every key S3 accepts can be stored (`a`, `a/`, `a/b`,
//! `..`, 1024-byte keys) and no key can name a path outside its bucket. Each object file is
//! `data ++ header-json ++ u32-le(len(header-json)) ++ MAGIC`: the data is written as it
//! streams in, the header (key, size, ETag, metadata) once it is known, and the file is then
//! fsynced and renamed into place, so a reader sees the whole old object or the whole new
//! one. An in-memory index per bucket, rebuilt from the headers on first use, serves
//! listings in key order.

use crate::common::*;
use async_trait::async_trait;
use futures::StreamExt;
use s3proxy_core::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const MAGIC: &[u8; 8] = b"S3PXOBJ1";
const TRAILER_LEN: u64 = 12;
const MAX_HEADER_LEN: u32 = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;

/// A backend that stores objects as files under a root directory.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use s3proxy_core::{Backend, BucketName, ObjectKey, PutOptions, GetOptions, collect_body};
/// let dir = tempfile::tempdir().unwrap();
/// let fs = s3proxy_backends::Filesystem::new("local", dir.path()).unwrap();
/// let bucket = BucketName::new("b00").unwrap();
/// fs.create_bucket(&bucket).await.unwrap();
/// let key = ObjectKey::new("../../etc/passwd").unwrap(); // just a key, stored inside the bucket
/// fs.put_object(&bucket, &key, bytes::Bytes::from("x").into(), PutOptions::default()).await.unwrap();
/// let got = fs.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
/// assert_eq!(collect_body(got.body, 10).await.unwrap(), "x");
/// # });
/// ```
pub struct Filesystem {
    name: String,
    root: PathBuf,
    buckets: Mutex<HashMap<String, Arc<BucketIndex>>>,
}

/// The key index of one bucket, loaded from disk on first use. Its mutex also serialises
/// the final rename of every write to the bucket with the index update, so the index and the
/// files never disagree.
struct BucketIndex {
    dir: PathBuf,
    keys: Mutex<Option<BTreeMap<String, ObjectSummary>>>,
}

#[derive(Serialize, Deserialize)]
struct StoredHeader {
    key: String,
    size: u64,
    etag: ETag,
    modified_ns: u64,
    #[serde(default)]
    metadata: ObjectMetadata,
    /// Sizes of the parts of a multipart object, in order (absent in older headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct StoredUpload {
    key: String,
    initiated_ns: u64,
    metadata: ObjectMetadata,
}

#[derive(Serialize, Deserialize)]
struct StoredBucket {
    created_ns: u64,
}

fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn from_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl StoredHeader {
    fn info(&self) -> Result<ObjectInfo> {
        Ok(ObjectInfo {
            key: ObjectKey::new(self.key.clone())?,
            size: self.size,
            etag: self.etag.clone(),
            last_modified: from_ns(self.modified_ns),
            metadata: self.metadata.clone(),
            parts_count: None,
        })
    }

    fn summary(&self) -> ObjectSummary {
        ObjectSummary {
            key: self.key.clone(),
            size: self.size,
            etag: self.etag.clone(),
            last_modified: from_ns(self.modified_ns),
            internal: Some(self.metadata.internal.clone()),
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("filesystem task failed: {e}")))?
}

fn io_ctx(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let context = format!("{what} {}", path.display());
    move |e| Error::io(context, e)
}

/// Read the header at the end of an object file.
fn read_header(file: &mut File, path: &Path) -> Result<StoredHeader> {
    let len = file.metadata().map_err(io_ctx("stat", path))?.len();
    let corrupt = |why: &str| Error::Corrupt(format!("{}: {why}", path.display()));
    if len < TRAILER_LEN {
        return Err(corrupt("shorter than its trailer"));
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(len - TRAILER_LEN))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(io_ctx("read", path))?;
    if &trailer[4..] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let header_len = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER_LEN || u64::from(header_len) + TRAILER_LEN > len {
        return Err(corrupt("bad header length"));
    }
    let mut json = vec![0u8; header_len as usize];
    file.seek(SeekFrom::Start(len - TRAILER_LEN - u64::from(header_len)))
        .and_then(|_| file.read_exact(&mut json))
        .map_err(io_ctx("read", path))?;
    let header: StoredHeader =
        serde_json::from_slice(&json).map_err(|e| corrupt(&format!("bad header: {e}")))?;
    if header.size + u64::from(header_len) + TRAILER_LEN != len {
        return Err(corrupt("size does not match the file"));
    }
    Ok(header)
}

fn header_bytes(header: &StoredHeader) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec(header)
        .map_err(|e| Error::Internal(format!("cannot encode header: {e}")))?;
    let len = out.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(MAGIC);
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_ctx("fsync", dir))
}

fn key_path(bucket_dir: &Path, key: &str) -> PathBuf {
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    bucket_dir.join("objects").join(&hash[..2]).join(hash)
}

fn temp_path(bucket_dir: &Path) -> PathBuf {
    let r: [u8; 12] = rand::random();
    bucket_dir.join("tmp").join(hex::encode(r))
}

/// Removes a temporary file unless disarmed, so failed or cancelled writes leave nothing
/// behind.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("guard is armed until disarmed")
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Stream `body` into a new temporary file; returns the file, its path guard and the MD5.
async fn write_temp(
    bucket_dir: &Path,
    body: Body,
    content_md5: Option<[u8; 16]>,
) -> Result<(File, TempGuard, u64, [u8; 16])> {
    let path = temp_path(bucket_dir);
    let guard = TempGuard(Some(path.clone()));
    let mut file =
        tokio::fs::File::from_std(create_private(&path).map_err(io_ctx("create", &path))?);
    let mut stream = Md5Stream::new(body.stream, body.length);
    let mut pending = Vec::with_capacity(READ_CHUNK);
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        if pending.len() >= READ_CHUNK {
            file.write_all(&pending)
                .await
                .map_err(io_ctx("write", &path))?;
            pending.clear();
        }
    }
    file.write_all(&pending)
        .await
        .map_err(io_ctx("write", &path))?;
    file.flush().await.map_err(io_ctx("write", &path))?;
    let digest = stream.digest();
    check_md5(content_md5, digest)?;
    Ok((file.into_std().await, guard, stream.seen(), digest))
}

impl Filesystem {
    /// A filesystem backend called `name` storing under `root` (created if missing).
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        create_private_dir_all(&root).map_err(io_ctx("create", &root))?;
        Ok(Filesystem {
            name: name.into(),
            root,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn bucket_dir(&self, bucket: &BucketName) -> PathBuf {
        self.root.join(bucket.as_str())
    }

    /// The bucket's index, loading it from disk on first use.
    async fn index(&self, bucket: &BucketName) -> Result<Arc<BucketIndex>> {
        let dir = self.bucket_dir(bucket);
        if !dir.join("bucket.json").is_file() {
            // Forget a stale index of a bucket deleted behind our back.
            self.buckets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(bucket.as_str());
            return Err(Error::NoSuchBucket);
        }
        let index = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets
                .entry(bucket.to_string())
                .or_insert_with(|| {
                    Arc::new(BucketIndex {
                        dir: dir.clone(),
                        keys: Mutex::new(None),
                    })
                })
                .clone()
        };
        let loader = index.clone();
        blocking(move || {
            let mut keys = loader.keys.lock().unwrap_or_else(|e| e.into_inner());
            if keys.is_none() {
                *keys = Some(load_index(&loader.dir)?);
            }
            Ok(())
        })
        .await?;
        Ok(index)
    }

    async fn open_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(File, StoredHeader)> {
        let index = self.index(bucket).await?;
        let path = key_path(&index.dir, key.as_str());
        let key = key.to_string();
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NoSuchKey),
                Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
            };
            let header = read_header(&mut file, &path)?;
            if header.key != key {
                return Err(Error::Corrupt(format!(
                    "{} holds key {:?}, expected {key:?}",
                    path.display(),
                    header.key
                )));
            }
            Ok((file, header))
        })
        .await
    }

    /// Append the header to a finished temporary file, fsync it and rename it over the
    /// object's path, updating the index in the same critical section.
    async fn commit(
        &self,
        index: Arc<BucketIndex>,
        mut file: File,
        guard: TempGuard,
        header: StoredHeader,
    ) -> Result<()> {
        blocking(move || {
            let temp = guard.path().to_path_buf();
            let dest = key_path(&index.dir, &header.key);
            let trailer = header_bytes(&header)?;
            file.seek(SeekFrom::Start(header.size))
                .and_then(|_| file.set_len(header.size))
                .and_then(|_| file.write_all(&trailer))
                .and_then(|_| file.sync_all())
                .map_err(io_ctx("write", &temp))?;
            drop(file);
            let parent = dest.parent().expect("objects/<h2>");
            create_private_dir_all(parent).map_err(io_ctx("create", parent))?;
            let mut keys = index.keys.lock().unwrap_or_else(|e| e.into_inner());
            fs::rename(&temp, &dest).map_err(io_ctx("rename onto", &dest))?;
            guard.disarm();
            if let Some(keys) = keys.as_mut() {
                keys.insert(header.key.clone(), header.summary());
            }
            drop(keys);
            sync_dir(parent)
        })
        .await
    }

    fn upload_dir(&self, bucket: &BucketName, upload_id: &UploadId) -> PathBuf {
        self.bucket_dir(bucket)
            .join("uploads")
            .join(upload_id.as_str())
    }

    async fn read_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<(PathBuf, StoredUpload)> {
        self.index(bucket).await?;
        let dir = self.upload_dir(bucket, upload_id);
        let key = key.to_string();
        blocking(move || {
            let json = fs::read(dir.join("upload.json")).map_err(|_| Error::NoSuchUpload)?;
            let upload: StoredUpload = serde_json::from_slice(&json)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", dir.display())))?;
            if upload.key != key {
                return Err(Error::NoSuchUpload);
            }
            Ok((dir, upload))
        })
        .await
    }
}

/// The three directories a bucket is made of, besides its `bucket.json` marker.
const BUCKET_PARTS: [&str; 3] = ["objects", "uploads", "tmp"];

/// Whether `dir` is what an interrupted [`Backend::create_bucket`] left: nothing but (some
/// of) the bucket's own directories, empty but for the marker being written.
fn is_unfinished_bucket(dir: &Path) -> Result<bool> {
    for entry in read_dir_or_empty(dir)? {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !BUCKET_PARTS.contains(&name) || !entry.is_dir() {
            return Ok(false);
        }
        for inner in read_dir_or_empty(&entry)? {
            let leftover_marker =
                name == "tmp" && inner.file_name().and_then(|n| n.to_str()) == Some("bucket.json");
            if !leftover_marker {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Remove an empty bucket's directory: only what this backend made there (the marker,
/// empty object directories, its own temporary files, the three directories), each by
/// name and never recursively; anything else found there keeps the bucket, untouched.
fn remove_bucket_dir(dir: &Path) -> Result<()> {
    let is_hex =
        |name: &str, len: usize| name.len() == len && name.bytes().all(|b| b.is_ascii_hexdigit());
    let file_name = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    let foreign = |what: &Path| {
        Err(Error::BucketNotEmpty).inspect_err(|_| {
            log::warn!(
                "{}: not deleting the bucket, it holds {} which this backend did not create",
                dir.display(),
                what.display()
            )
        })
    };
    // Check everything first, so a refused delete changes nothing.
    for entry in read_dir_or_empty(dir)? {
        let name = file_name(&entry);
        if !(BUCKET_PARTS.contains(&name.as_str()) && entry.is_dir() || name == "bucket.json") {
            return foreign(&entry);
        }
    }
    let objects = dir.join("objects");
    for sub in read_dir_or_empty(&objects)? {
        if !(sub.is_dir() && is_hex(&file_name(&sub), 2)) {
            return foreign(&sub);
        }
        if let Some(file) = read_dir_or_empty(&sub)?.into_iter().next() {
            // The index lists no key, but an object file is there (one it could not read).
            return foreign(&file);
        }
    }
    let tmp = dir.join("tmp");
    let temps = read_dir_or_empty(&tmp)?;
    for t in &temps {
        let name = file_name(t);
        if !(t.is_file() && (is_hex(&name, 24) || name == "bucket.json")) {
            return foreign(t);
        }
    }
    // The marker goes first: from then on this is no bucket, and an interrupted delete
    // leaves a directory that is refused rather than adopted.
    fs::remove_file(dir.join("bucket.json")).map_err(io_ctx("delete", dir))?;
    for t in &temps {
        fs::remove_file(t).map_err(io_ctx("delete", t))?;
    }
    for sub in read_dir_or_empty(&objects)? {
        fs::remove_dir(&sub).map_err(io_ctx("delete", &sub))?;
    }
    for part in BUCKET_PARTS {
        let p = dir.join(part);
        match fs::remove_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("delete {}", p.display()), e)),
        }
    }
    fs::remove_dir(dir).map_err(io_ctx("delete", dir))?;
    if let Some(root) = dir.parent() {
        sync_dir(root)?;
    }
    Ok(())
}

fn load_index(dir: &Path) -> Result<BTreeMap<String, ObjectSummary>> {
    let mut keys = BTreeMap::new();
    let objects = dir.join("objects");
    for sub in read_dir_or_empty(&objects)? {
        for path in read_dir_or_empty(&sub)? {
            let mut file = File::open(&path).map_err(io_ctx("open", &path))?;
            match read_header(&mut file, &path) {
                Ok(header) => {
                    keys.insert(header.key.clone(), header.summary());
                }
                Err(e) => log::warn!("skipping unreadable object file: {e}"),
            }
        }
    }
    // Writes interrupted by a crash leave temporary files; an hour is far longer than any
    // write in progress takes to reach its rename.
    for path in read_dir_or_empty(&dir.join("tmp"))? {
        let old = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600))
            .unwrap_or(false);
        if old {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(keys)
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()).map_err(io_ctx("list", dir)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(Error::io(format!("list {}", dir.display()), e)),
    }
}

/// Stream `len` bytes of `file` from `offset`.
fn stream_file(file: File, offset: u64, len: u64) -> ByteStream {
    let stream = futures::stream::try_unfold(
        (tokio::fs::File::from_std(file), offset, len, false),
        |(mut file, offset, remaining, seeked)| async move {
            if remaining == 0 {
                return Ok(None);
            }
            if !seeked {
                file.seek(SeekFrom::Start(offset))
                    .await
                    .map_err(|e| Error::io("seek object file", e))?;
            }
            let want = remaining.min(READ_CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                let n = file
                    .read(&mut buf[filled..])
                    .await
                    .map_err(|e| Error::io("read object file", e))?;
                if n == 0 {
                    return Err(Error::Corrupt(
                        "object file shorter than its header says".into(),
                    ));
                }
                filled += n;
            }
            Ok(Some((
                bytes::Bytes::from(buf),
                (file, offset, remaining - want as u64, true),
            )))
        },
    );
    Box::pin(stream)
}

#[async_trait]
impl Backend for Filesystem {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = vec![];
            for path in read_dir_or_empty(&root)? {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if BucketName::new(name).is_err() {
                    continue;
                }
                let Ok(json) = fs::read(path.join("bucket.json")) else {
                    continue;
                };
                let created = serde_json::from_slice::<StoredBucket>(&json)
                    .map(|b| from_ns(b.created_ns))
                    .unwrap_or(UNIX_EPOCH);
                out.push(BucketInfo {
                    name: name.to_string(),
                    created,
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        let dir = self.bucket_dir(bucket);
        blocking(move || {
            match create_private_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if dir.join("bucket.json").is_file() {
                        return Err(Error::BucketAlreadyOwnedByYou);
                    }
                    // Only a creation of ours that stopped before its marker is finished; any
                    // other directory under the root is not a bucket and is left alone.
                    if !is_unfinished_bucket(&dir)? {
                        return Err(Error::AccessDenied(format!(
                            "{} exists and is not a bucket this backend created",
                            dir.display()
                        )));
                    }
                }
                Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
            }
            for sub in ["objects", "uploads", "tmp"] {
                create_private_dir_all(&dir.join(sub)).map_err(io_ctx("create", &dir))?;
            }
            let json = serde_json::to_vec(&StoredBucket {
                created_ns: to_ns(SystemTime::now()),
            })
            .map_err(|e| Error::Internal(e.to_string()))?;
            // The marker is written last: a bucket exists once it is complete.
            let tmp = dir.join("tmp").join("bucket.json");
            write_private(&tmp, &json)
                .and_then(|_| fs::rename(&tmp, dir.join("bucket.json")))
                .map_err(io_ctx("create", &dir))?;
            sync_dir(&dir)
        })
        .await
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        let index = self.index(bucket).await?;
        let result = blocking(move || {
            let keys = index.keys.lock().unwrap_or_else(|e| e.into_inner());
            if keys.as_ref().is_some_and(|k| !k.is_empty())
                || !read_dir_or_empty(&index.dir.join("uploads"))?.is_empty()
            {
                return Err(Error::BucketNotEmpty);
            }
            remove_bucket_dir(&index.dir)
        })
        .await;
        if result.is_ok() {
            self.buckets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(bucket.as_str());
        }
        result
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.index(bucket).await.map(|_| ())
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let index = self.index(bucket).await?;
        let (file, guard, size, digest) = write_temp(&index.dir, body, opts.content_md5).await?;
        let header = StoredHeader {
            key: key.to_string(),
            size,
            etag: etag_of(digest),
            modified_ns: to_ns(SystemTime::now()),
            metadata: opts.metadata,
            parts: vec![],
        };
        let result = PutResult {
            etag: header.etag.clone(),
            last_modified: from_ns(header.modified_ns),
        };
        self.commit(index, file, guard, header).await?;
        Ok(result)
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let (file, header) = self.open_object(bucket, key).await?;
        let mut info = header.info()?;
        opts.conditions.check(&info, false)?;
        let range = selected_range(&mut info, &header.parts, &opts)?;
        let (offset, len) = match range {
            Some((start, end)) => (start, end - start + 1),
            None => (0, info.size),
        };
        Ok(GetResult {
            info,
            range,
            body: stream_file(file, offset, len),
            extensions: Default::default(),
        })
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let (_, header) = self.open_object(bucket, key).await?;
        let info = header.info()?;
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        let index = self.index(bucket).await?;
        let key = key.to_string();
        blocking(move || {
            let path = key_path(&index.dir, &key);
            let mut keys = index.keys.lock().unwrap_or_else(|e| e.into_inner());
            let removed = match fs::remove_file(&path) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(Error::io(format!("delete {}", path.display()), e)),
            };
            if let Some(keys) = keys.as_mut() {
                keys.remove(&key);
            }
            drop(keys);
            // Durable once answered: a crash must not bring the object back.
            match path.parent() {
                Some(parent) if removed => sync_dir(parent),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        let (src, header) = self.open_object(src_bucket, src_key).await?;
        opts.source_conditions.check(&header.info()?, true)?;
        let index = self.index(dst_bucket).await?;
        let temp = temp_path(&index.dir);
        let guard = TempGuard(Some(temp.clone()));
        let size = header.size;
        // The kernel copies the data (copy_file_range); the header is rewritten at commit.
        let file = blocking(move || {
            let mut src = src;
            src.seek(SeekFrom::Start(0))
                .map_err(io_ctx("seek", &temp))?;
            let mut dst = create_private(&temp).map_err(io_ctx("create", &temp))?;
            std::io::copy(&mut (&mut src).take(size), &mut dst)
                .map_err(io_ctx("copy to", &temp))?;
            Ok(dst)
        })
        .await?;
        let new_header = StoredHeader {
            key: dst_key.to_string(),
            size,
            etag: header.etag.clone(),
            modified_ns: to_ns(SystemTime::now()),
            metadata: copy_metadata(&header.metadata, &opts.directive),
            parts: header.parts.clone(),
        };
        let result = PutResult {
            etag: new_header.etag.clone(),
            last_modified: from_ns(new_header.modified_ns),
        };
        self.commit(index, file, guard, new_header).await?;
        Ok(result)
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        let index = self.index(bucket).await?;
        let keys = index.keys.lock().unwrap_or_else(|e| e.into_inner());
        let keys = keys.as_ref().expect("loaded by index()");
        let from = opts
            .start_after
            .as_deref()
            .filter(|s| *s > opts.prefix.as_str())
            .unwrap_or(&opts.prefix)
            .to_string();
        Ok(list::paginate(
            keys.range(from..).map(|(_, s)| s.clone()),
            &opts,
        ))
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        self.index(bucket).await?;
        let id = new_upload_id();
        let dir = self.upload_dir(bucket, &id);
        let upload = StoredUpload {
            key: key.to_string(),
            initiated_ns: to_ns(SystemTime::now()),
            metadata: opts.metadata,
        };
        blocking(move || {
            create_private_dir_all(&dir).map_err(io_ctx("create", &dir))?;
            let json = serde_json::to_vec(&upload).map_err(|e| Error::Internal(e.to_string()))?;
            write_private(&dir.join("upload.json"), &json).map_err(io_ctx("write", &dir))
        })
        .await?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag> {
        let (dir, _) = self.read_upload(bucket, key, upload_id).await?;
        let (mut file, guard, size, digest) =
            write_temp(&self.bucket_dir(bucket), body, opts.content_md5).await?;
        let header = StoredHeader {
            key: key.to_string(),
            size,
            etag: etag_of(digest),
            modified_ns: to_ns(SystemTime::now()),
            metadata: ObjectMetadata::default(),
            parts: vec![],
        };
        let etag = header.etag.clone();
        blocking(move || {
            let temp = guard.path().to_path_buf();
            file.write_all(&header_bytes(&header)?)
                .and_then(|_| file.sync_all())
                .map_err(io_ctx("write", &temp))?;
            // Fails when the upload was aborted or completed meanwhile.
            fs::rename(&temp, dir.join(part_number.to_string()))
                .map_err(|_| Error::NoSuchUpload)?;
            guard.disarm();
            Ok(())
        })
        .await?;
        Ok(etag)
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let (dir, upload) = self.read_upload(bucket, key, upload_id).await?;
        let index = self.index(bucket).await?;
        let temp = temp_path(&index.dir);
        let guard = TempGuard(Some(temp.clone()));
        let part_dir = dir.clone();
        let (file, size, etag, parts) = blocking(move || {
            let uploaded = read_parts(&part_dir)?;
            let selected = select_parts(&parts, &uploaded)?;
            let mut dst = create_private(&temp).map_err(io_ctx("create", &temp))?;
            let mut size = 0;
            for part in &selected {
                let path = part_dir.join(part.part_number.to_string());
                let mut src = File::open(&path).map_err(|_| Error::InvalidPart)?;
                std::io::copy(&mut (&mut src).take(part.size), &mut dst)
                    .map_err(io_ctx("copy to", &temp))?;
                size += part.size;
            }
            let etag = multipart_etag(selected.iter().map(|p| p.etag.as_str()))?;
            Ok((dst, size, etag, selected.iter().map(|p| p.size).collect()))
        })
        .await?;
        let header = StoredHeader {
            key: key.to_string(),
            size,
            etag,
            modified_ns: to_ns(SystemTime::now()),
            metadata: upload.metadata,
            parts,
        };
        let result = PutResult {
            etag: header.etag.clone(),
            last_modified: from_ns(header.modified_ns),
        };
        self.commit(index, file, guard, header).await?;
        blocking(move || fs::remove_dir_all(&dir).map_err(io_ctx("delete", &dir))).await?;
        Ok(result)
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        let (dir, _) = self.read_upload(bucket, key, upload_id).await?;
        blocking(move || fs::remove_dir_all(&dir).map_err(io_ctx("delete", &dir))).await
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        let (dir, _) = self.read_upload(bucket, key, upload_id).await?;
        let parts = blocking(move || read_parts(&dir)).await?;
        Ok(page_parts(parts.into_values(), &opts))
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.index(bucket).await?;
        let uploads_dir = self.bucket_dir(bucket).join("uploads");
        let uploads = blocking(move || {
            let mut out = vec![];
            for dir in read_dir_or_empty(&uploads_dir)? {
                let Some(id) = dir.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Ok(upload_id) = UploadId::new(id) else {
                    continue;
                };
                let Ok(json) = fs::read(dir.join("upload.json")) else {
                    continue;
                };
                if let Ok(u) = serde_json::from_slice::<StoredUpload>(&json) {
                    out.push(UploadInfo {
                        key: u.key,
                        upload_id,
                        initiated: from_ns(u.initiated_ns),
                    });
                }
            }
            Ok(out)
        })
        .await?;
        Ok(page_uploads(uploads, &opts))
    }
}

fn read_parts(dir: &Path) -> Result<BTreeMap<u32, PartInfo>> {
    let mut parts = BTreeMap::new();
    for path in read_dir_or_empty(dir)? {
        let Some(n) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let mut file = File::open(&path).map_err(io_ctx("open", &path))?;
        let header = read_header(&mut file, &path)?;
        parts.insert(
            n,
            PartInfo {
                part_number: n,
                etag: header.etag,
                size: header.size,
                last_modified: from_ns(header.modified_ns),
            },
        );
    }
    Ok(parts)
}
