//! A segment that fails authentication is reported and the read continues from another
//! replica; ranged reads fetch only the covering segments.

mod common;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use common::*;
use futures::StreamExt;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_crypto::Encrypted;
use s3proxy_crypto::format::{SEGMENT_SIZE, STORED_SEGMENT};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Two Memory replicas written alike; reads come from the first one not excluded. Reads
/// from replica "a" can be corrupted at one stored offset, as bit rot would.
struct TwoReplicas {
    a: Memory,
    b: Memory,
    rot_a_at: Mutex<Option<u64>>,
    rot_b_at: Mutex<Option<u64>>,
    reports: Arc<Reports>,
    served: AtomicU64,
}

/// The replicas reported unauthentic, in order: what a replicating layer would repair.
#[derive(Default)]
struct Reports(Mutex<Vec<String>>);

impl std::ops::Deref for Reports {
    type Target = Mutex<Vec<String>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[async_trait]
impl replicas::ReportCorrupt for Reports {
    async fn report_corrupt(&self, _: &BucketName, _: &ObjectKey, replica: &str) {
        self.0.lock().unwrap().push(replica.to_string());
    }
}

impl TwoReplicas {
    fn new() -> Self {
        TwoReplicas {
            a: Memory::new("a"),
            b: Memory::new("b"),
            rot_a_at: Mutex::new(None),
            rot_b_at: Mutex::new(None),
            reports: Arc::default(),
            served: AtomicU64::new(0),
        }
    }
    fn pick(&self, exclude: &[String]) -> Option<(&Memory, Option<u64>)> {
        if !exclude.iter().any(|e| e == "a") {
            Some((&self.a, *self.rot_a_at.lock().unwrap()))
        } else if !exclude.iter().any(|e| e == "b") {
            Some((&self.b, *self.rot_b_at.lock().unwrap()))
        } else {
            None
        }
    }
}

fn na<T>() -> Result<T> {
    Err(Error::NotImplemented("test wrapper".into()))
}

#[async_trait]
impl Backend for TwoReplicas {
    fn name(&self) -> &str {
        "two"
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.a.list_buckets().await
    }
    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.a.create_bucket(bucket).await?;
        self.b.create_bucket(bucket).await
    }
    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.a.delete_bucket(bucket).await?;
        self.b.delete_bucket(bucket).await
    }
    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.a.head_bucket(bucket).await
    }
    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let data = collect_body(body.stream, 1 << 30).await?;
        self.b
            .put_object(bucket, key, data.clone().into(), opts.clone())
            .await?;
        self.a.put_object(bucket, key, data.into(), opts).await
    }
    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let (replica, rot) = self
            .pick(replicas::excluded(&opts))
            .ok_or_else(|| Error::ServiceUnavailable("no replica left".into()))?;
        let mut got = replica.get_object(bucket, key, opts).await?;
        // As a replicating layer does: which replica served, and where to report it.
        got.extensions = replicas::serving(replica.name(), self.reports.clone());
        let start = got.range.map_or(0, |r| r.0);
        let data = collect_body(got.body, 1 << 30).await?;
        self.served.fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut data = BytesMut::from(&data[..]);
        if let Some(at) = rot
            && at >= start
            && at - start < data.len() as u64
        {
            data[(at - start) as usize] ^= 0x80;
        }
        let data = data.freeze();
        let chunks: Vec<Result<Bytes>> = (0..data.len())
            .step_by(10_000)
            .map(|i| Ok(data.slice(i..(i + 10_000).min(data.len()))))
            .collect();
        got.body = Box::pin(futures::stream::iter(chunks));
        Ok(got)
    }
    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let (replica, _) = self
            .pick(replicas::excluded(&opts))
            .ok_or_else(|| Error::ServiceUnavailable("no replica left".into()))?;
        replica.head_object(bucket, key, opts).await
    }
    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        self.a.delete_object(bucket, key).await?;
        self.b.delete_object(bucket, key).await
    }
    async fn copy_object(
        &self,
        sb: &BucketName,
        sk: &ObjectKey,
        db: &BucketName,
        dk: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        self.b.copy_object(sb, sk, db, dk, opts.clone()).await?;
        self.a.copy_object(sb, sk, db, dk, opts).await
    }
    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        self.a.list_objects(bucket, opts).await
    }
    async fn create_multipart_upload(
        &self,
        _: &BucketName,
        _: &ObjectKey,
        _: MultipartOptions,
    ) -> Result<UploadId> {
        na()
    }
    async fn upload_part(
        &self,
        _: &BucketName,
        _: &ObjectKey,
        _: &UploadId,
        _: u32,
        _: Body,
        _: PartOptions,
    ) -> Result<ETag> {
        na()
    }
    async fn complete_multipart_upload(
        &self,
        _: &BucketName,
        _: &ObjectKey,
        _: &UploadId,
        _: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        na()
    }
    async fn abort_multipart_upload(
        &self,
        _: &BucketName,
        _: &ObjectKey,
        _: &UploadId,
    ) -> Result<()> {
        na()
    }
    async fn list_parts(
        &self,
        _: &BucketName,
        _: &ObjectKey,
        _: &UploadId,
        _: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        na()
    }
    async fn list_multipart_uploads(
        &self,
        _: &BucketName,
        _: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        na()
    }
}

async fn setup_two() -> (Arc<TwoReplicas>, Encrypted, BucketName, Bytes) {
    let two = Arc::new(TwoReplicas::new());
    let enc = Encrypted::new(two.clone(), ring());
    let bucket = b("fail");
    enc.create_bucket(&bucket).await.unwrap();
    let plain = data(5 * SEGMENT_SIZE as usize + 123, 9);
    enc.put_object(
        &bucket,
        &k("o"),
        plain.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    (two, enc, bucket, plain)
}

#[tokio::test]
async fn corrupt_segment_fails_over_to_the_other_replica() {
    let (two, enc, bucket, plain) = setup_two().await;
    *two.rot_a_at.lock().unwrap() = Some(2 * STORED_SEGMENT + 100);
    assert!(read(&enc, &bucket, "o", None).await.unwrap() == plain);
    assert_eq!(*two.reports.lock().unwrap(), ["a"]);
    let range = ByteRange::FromTo(SEGMENT_SIZE + 5, 3 * SEGMENT_SIZE);
    let got = read(&enc, &bucket, "o", Some(range)).await.unwrap();
    assert!(got == plain[SEGMENT_SIZE as usize + 5..=3 * SEGMENT_SIZE as usize]);
    assert_eq!(two.reports.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn corrupt_everywhere_ends_the_stream_with_an_error() {
    let (two, enc, bucket, plain) = setup_two().await;
    *two.rot_a_at.lock().unwrap() = Some(2 * STORED_SEGMENT + 100);
    *two.rot_b_at.lock().unwrap() = Some(2 * STORED_SEGMENT + 7);
    let got = enc
        .get_object(&bucket, &k("o"), GetOptions::default())
        .await
        .unwrap();
    let (yielded, err) = drain(got.body).await;
    assert!(matches!(err, Some(Error::Corrupt(_))), "{err:?}");
    assert_eq!(yielded.len(), 2 * SEGMENT_SIZE as usize);
    assert!(yielded[..] == plain[..yielded.len()]);
    assert_eq!(*two.reports.lock().unwrap(), ["a", "b"]);
}

#[tokio::test]
async fn one_byte_read_moves_one_segment() {
    let (two, enc, bucket, plain) = setup_two().await;
    for at in [0u64, SEGMENT_SIZE - 1, SEGMENT_SIZE, plain.len() as u64 - 1] {
        two.served.store(0, Ordering::Relaxed);
        let got = read(&enc, &bucket, "o", Some(ByteRange::FromTo(at, at)))
            .await
            .unwrap();
        assert_eq!(got, [plain[at as usize]]);
        assert!(
            two.served.load(Ordering::Relaxed) <= STORED_SEGMENT,
            "read at {at}"
        );
    }
    let mut body = enc
        .get_object(
            &bucket,
            &k("o"),
            GetOptions {
                range: Some(ByteRange::Suffix(1)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .body;
    assert!(body.next().await.unwrap().is_ok());
}

#[tokio::test]
async fn corrupt_segment_inside_a_full_decryption_batch_fails_over() {
    // GETs decrypt in batches that grow to several segments: a bad segment in the middle
    // of a full batch must still fail over from that very segment, losing no byte.
    let (two, enc, bucket, _) = setup_two().await;
    let plain = data(40 * SEGMENT_SIZE as usize + 77, 3);
    enc.put_object(
        &bucket,
        &k("big"),
        plain.clone().into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    *two.rot_a_at.lock().unwrap() = Some(27 * STORED_SEGMENT + 1000);
    assert!(read(&enc, &bucket, "big", None).await.unwrap() == plain);
    assert_eq!(*two.reports.lock().unwrap(), ["a"]);
    let range = ByteRange::FromTo(20 * SEGMENT_SIZE + 3, 35 * SEGMENT_SIZE);
    let got = read(&enc, &bucket, "big", Some(range)).await.unwrap();
    assert!(got == plain[20 * SEGMENT_SIZE as usize + 3..=35 * SEGMENT_SIZE as usize]);
}
