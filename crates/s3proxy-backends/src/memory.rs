//! The in-memory backend.

use crate::common::*;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3proxy_core::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// A backend that keeps everything in process memory. Objects are held whole (that is what
/// storing in memory means); requests through it still stream.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use s3proxy_core::{Backend, BucketName, ObjectKey, PutOptions, GetOptions, collect_body};
/// let mem = s3proxy_backends::Memory::new("mem");
/// let bucket = BucketName::new("b00").unwrap();
/// let key = ObjectKey::new("hello.txt").unwrap();
/// mem.create_bucket(&bucket).await.unwrap();
/// mem.put_object(&bucket, &key, bytes::Bytes::from("hi").into(), PutOptions::default()).await.unwrap();
/// let got = mem.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
/// assert_eq!(collect_body(got.body, 1024).await.unwrap(), "hi");
/// # });
/// ```
pub struct Memory {
    name: String,
    state: Mutex<BTreeMap<String, MemBucket>>,
}

struct MemBucket {
    created: SystemTime,
    objects: BTreeMap<String, MemObject>,
    uploads: BTreeMap<String, MemUpload>,
}

#[derive(Clone)]
struct MemObject {
    info: ObjectInfo,
    data: Bytes,
    /// Sizes of the parts it was assembled from, in order; empty for a single PUT.
    part_sizes: Vec<u64>,
}

struct MemUpload {
    key: ObjectKey,
    initiated: SystemTime,
    metadata: ObjectMetadata,
    parts: BTreeMap<u32, (PartInfo, Bytes)>,
}

impl Memory {
    /// An empty in-memory backend called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Memory {
            name: name.into(),
            state: Mutex::new(BTreeMap::new()),
        }
    }

    fn with_bucket<T>(
        &self,
        bucket: &BucketName,
        f: impl FnOnce(&mut MemBucket) -> Result<T>,
    ) -> Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let b = state.get_mut(bucket.as_str()).ok_or(Error::NoSuchBucket)?;
        f(b)
    }

    fn get(&self, bucket: &BucketName, key: &ObjectKey) -> Result<MemObject> {
        self.with_bucket(bucket, |b| {
            b.objects.get(key.as_str()).cloned().ok_or(Error::NoSuchKey)
        })
    }
}

/// Read a whole body, checking its length and digest.
async fn read_body(body: Body, content_md5: Option<[u8; 16]>) -> Result<(Bytes, [u8; 16])> {
    let mut stream = Md5Stream::new(body.stream, body.length);
    let mut buf = BytesMut::with_capacity(body.length.min(64 << 20) as usize);
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let digest = stream.digest();
    check_md5(content_md5, digest)?;
    Ok((buf.freeze(), digest))
}

#[async_trait]
impl Backend for Memory {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Ok(state
            .iter()
            .map(|(name, b)| BucketInfo {
                name: name.clone(),
                created: b.created,
            })
            .collect())
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.contains_key(bucket.as_str()) {
            return Err(Error::BucketAlreadyOwnedByYou);
        }
        state.insert(
            bucket.to_string(),
            MemBucket {
                created: SystemTime::now(),
                objects: BTreeMap::new(),
                uploads: BTreeMap::new(),
            },
        );
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let b = state.get(bucket.as_str()).ok_or(Error::NoSuchBucket)?;
        if !b.objects.is_empty() || !b.uploads.is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        state.remove(bucket.as_str());
        Ok(())
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.with_bucket(bucket, |_| Ok(()))
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.head_bucket(bucket).await?;
        let (data, digest) = read_body(body, opts.content_md5).await?;
        let info = ObjectInfo {
            key: key.clone(),
            size: data.len() as u64,
            etag: etag_of(digest),
            last_modified: SystemTime::now(),
            metadata: opts.metadata,
            parts_count: None,
        };
        let result = PutResult {
            etag: info.etag.clone(),
            last_modified: info.last_modified,
        };
        self.with_bucket(bucket, |b| {
            b.objects.insert(
                key.to_string(),
                MemObject {
                    info,
                    data,
                    part_sizes: vec![],
                },
            );
            Ok(())
        })?;
        Ok(result)
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let mut obj = self.get(bucket, key)?;
        opts.conditions.check(&obj.info, false)?;
        let range = selected_range(&mut obj.info, &obj.part_sizes, &opts)?;
        let data = match range {
            Some((start, end)) => obj.data.slice(start as usize..=end as usize),
            None => obj.data,
        };
        // Hand the data out in bounded chunks, as a network backend would.
        let chunks: Vec<Result<Bytes>> = (0..data.len())
            .step_by(64 * 1024)
            .map(|at| Ok(data.slice(at..(at + 64 * 1024).min(data.len()))))
            .collect();
        Ok(GetResult {
            info: obj.info,
            range,
            body: Box::pin(futures::stream::iter(chunks)),
            extensions: Default::default(),
        })
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let obj = self.get(bucket, key)?;
        opts.conditions.check(&obj.info, false)?;
        Ok(obj.info)
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.with_bucket(bucket, |b| {
            b.objects.remove(key.as_str());
            Ok(())
        })
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        let src = self.get(src_bucket, src_key)?;
        opts.source_conditions.check(&src.info, true)?;
        let info = ObjectInfo {
            key: dst_key.clone(),
            last_modified: SystemTime::now(),
            metadata: copy_metadata(&src.info.metadata, &opts.directive),
            ..src.info
        };
        let result = PutResult {
            etag: info.etag.clone(),
            last_modified: info.last_modified,
        };
        self.with_bucket(dst_bucket, |b| {
            b.objects.insert(
                dst_key.to_string(),
                MemObject {
                    info,
                    data: src.data,
                    part_sizes: src.part_sizes,
                },
            );
            Ok(())
        })?;
        Ok(result)
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        self.with_bucket(bucket, |b| {
            let from = opts
                .start_after
                .as_deref()
                .filter(|s| *s > opts.prefix.as_str())
                .unwrap_or(&opts.prefix)
                .to_string();
            let iter = b.objects.range(from..).map(|(k, o)| ObjectSummary {
                key: k.clone(),
                size: o.info.size,
                etag: o.info.etag.clone(),
                last_modified: o.info.last_modified,
                internal: Some(o.info.metadata.internal.clone()),
            });
            Ok(list::paginate(iter, &opts))
        })
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        let id = new_upload_id();
        self.with_bucket(bucket, |b| {
            b.uploads.insert(
                id.to_string(),
                MemUpload {
                    key: key.clone(),
                    initiated: SystemTime::now(),
                    metadata: opts.metadata,
                    parts: BTreeMap::new(),
                },
            );
            Ok(())
        })?;
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
        let upload_exists = |b: &mut MemBucket| match b.uploads.get_mut(upload_id.as_str()) {
            Some(u) if u.key == *key => Ok(()),
            _ => Err(Error::NoSuchUpload),
        };
        self.with_bucket(bucket, upload_exists)?;
        let (data, digest) = read_body(body, opts.content_md5).await?;
        let etag = etag_of(digest);
        let info = PartInfo {
            part_number,
            etag: etag.clone(),
            size: data.len() as u64,
            last_modified: SystemTime::now(),
        };
        self.with_bucket(bucket, |b| {
            let upload = b
                .uploads
                .get_mut(upload_id.as_str())
                .ok_or(Error::NoSuchUpload)?;
            upload.parts.insert(part_number, (info, data));
            Ok(())
        })?;
        Ok(etag)
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.with_bucket(bucket, |b| {
            let upload = match b.uploads.get(upload_id.as_str()) {
                Some(u) if u.key == *key => u,
                _ => return Err(Error::NoSuchUpload),
            };
            let infos: BTreeMap<u32, PartInfo> = upload
                .parts
                .iter()
                .map(|(n, (info, _))| (*n, info.clone()))
                .collect();
            let selected = select_parts(&parts, &infos)?;
            let mut data = BytesMut::new();
            for part in &selected {
                data.extend_from_slice(&upload.parts[&part.part_number].1);
            }
            let info = ObjectInfo {
                key: key.clone(),
                size: data.len() as u64,
                etag: multipart_etag(selected.iter().map(|p| p.etag.as_str()))?,
                last_modified: SystemTime::now(),
                metadata: upload.metadata.clone(),
                parts_count: None,
            };
            let result = PutResult {
                etag: info.etag.clone(),
                last_modified: info.last_modified,
            };
            b.objects.insert(
                key.to_string(),
                MemObject {
                    info,
                    data: data.freeze(),
                    part_sizes: selected.iter().map(|p| p.size).collect(),
                },
            );
            b.uploads.remove(upload_id.as_str());
            Ok(result)
        })
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        self.with_bucket(bucket, |b| match b.uploads.get(upload_id.as_str()) {
            Some(u) if u.key == *key => {
                b.uploads.remove(upload_id.as_str());
                Ok(())
            }
            _ => Err(Error::NoSuchUpload),
        })
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.with_bucket(bucket, |b| match b.uploads.get(upload_id.as_str()) {
            Some(u) if u.key == *key => Ok(page_parts(
                u.parts.values().map(|(info, _)| info.clone()),
                &opts,
            )),
            _ => Err(Error::NoSuchUpload),
        })
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.with_bucket(bucket, |b| {
            let uploads = b
                .uploads
                .iter()
                .map(|(id, u)| {
                    Ok(UploadInfo {
                        key: u.key.to_string(),
                        upload_id: UploadId::new(id.clone())?,
                        initiated: u.initiated,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(page_uploads(uploads, &opts))
        })
    }
}
