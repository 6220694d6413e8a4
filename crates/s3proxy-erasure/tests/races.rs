//! Erasure-coded placement under races a test stages exactly: backends whose calls run a
//! hook first (another write landing between a resolve and what follows it).

use async_trait::async_trait;
use bytes::Bytes;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_erasure::*;
use s3proxy_replication::Journal;
use std::sync::{Arc, Mutex};

type Hook = Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A memory backend whose next CopyObject first runs a hook.
struct Hooked {
    inner: Arc<Memory>,
    before_copy: Mutex<Option<Hook>>,
    /// Runs once after the next listing of an upload's parts.
    after_parts_list: Mutex<Option<Hook>>,
}

#[async_trait]
impl Backend for Hooked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.inner.list_buckets().await
    }
    async fn create_bucket(&self, b: &BucketName) -> Result<()> {
        self.inner.create_bucket(b).await
    }
    async fn delete_bucket(&self, b: &BucketName) -> Result<()> {
        self.inner.delete_bucket(b).await
    }
    async fn head_bucket(&self, b: &BucketName) -> Result<()> {
        self.inner.head_bucket(b).await
    }
    async fn put_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        body: Body,
        o: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_object(b, k, body, o).await
    }
    async fn get_object(&self, b: &BucketName, k: &ObjectKey, o: GetOptions) -> Result<GetResult> {
        self.inner.get_object(b, k, o).await
    }
    async fn head_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: GetOptions,
    ) -> Result<ObjectInfo> {
        self.inner.head_object(b, k, o).await
    }
    async fn delete_object(&self, b: &BucketName, k: &ObjectKey) -> Result<()> {
        self.inner.delete_object(b, k).await
    }
    async fn copy_object(
        &self,
        sb: &BucketName,
        sk: &ObjectKey,
        db: &BucketName,
        dk: &ObjectKey,
        o: CopyOptions,
    ) -> Result<PutResult> {
        let hook = self.before_copy.lock().unwrap().take();
        if let Some(hook) = hook {
            hook().await;
        }
        self.inner.copy_object(sb, sk, db, dk, o).await
    }
    async fn list_objects(&self, b: &BucketName, o: ListOptions) -> Result<ListResult> {
        let parts = o.prefix.starts_with(UPLOADS_PREFIX) && o.prefix.ends_with('/');
        let page = self.inner.list_objects(b, o).await;
        let hook = parts
            .then(|| self.after_parts_list.lock().unwrap().take())
            .flatten();
        if let Some(hook) = hook {
            hook().await;
        }
        page
    }
    async fn create_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: MultipartOptions,
    ) -> Result<UploadId> {
        self.inner.create_multipart_upload(b, k, o).await
    }
    async fn upload_part(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
        n: u32,
        body: Body,
        o: PartOptions,
    ) -> Result<String> {
        self.inner.upload_part(b, k, u, n, body, o).await
    }
    async fn complete_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.inner.complete_multipart_upload(b, k, u, parts).await
    }
    async fn abort_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
    ) -> Result<()> {
        self.inner.abort_multipart_upload(b, k, u).await
    }
    async fn list_parts(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        u: &UploadId,
        o: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.inner.list_parts(b, k, u, o).await
    }
    async fn list_multipart_uploads(
        &self,
        b: &BucketName,
        o: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.inner.list_multipart_uploads(b, o).await
    }
}

fn bucket() -> BucketName {
    BucketName::new("races").unwrap()
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

struct Set {
    ec: Erasure,
    disks: Vec<Arc<Hooked>>,
}

fn set(k: usize, m: usize) -> Set {
    let disks: Vec<Arc<Hooked>> = (0..k + m)
        .map(|i| {
            Arc::new(Hooked {
                inner: Arc::new(Memory::new(format!("d{i}"))),
                before_copy: Mutex::new(None),
                after_parts_list: Mutex::new(None),
            })
        })
        .collect();
    let backends = disks.iter().map(|d| d.clone() as DynBackend).collect();
    let opts = ErasureOptions {
        stripe_size: 64,
        timeout: std::time::Duration::from_secs(2),
        ..ErasureOptions::new(k, m)
    };
    let ec = Erasure::new("ec", backends, opts, Arc::new(Journal::in_memory())).unwrap();
    Set { ec, disks }
}

async fn get(ec: &Erasure, k: &str) -> Result<Bytes> {
    let got = ec
        .get_object(&bucket(), &key(k), GetOptions::default())
        .await?;
    collect_body(got.body, 1 << 20).await
}

async fn put(ec: &Erasure, k: &str, data: &[u8]) {
    let body = Bytes::copy_from_slice(data).into();
    ec.put_object(&bucket(), &key(k), body, PutOptions::default())
        .await
        .unwrap();
}

/// E1: a PUT landing on one backend between the copy's resolve and that backend's copy
/// must not have the old version's label put on the new version's shard.
#[tokio::test]
async fn copy_is_pinned_to_the_source_version() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let v1 = vec![b'a'; 100];
    let v2 = vec![b'b'; 100];
    put(&s.ec, "src", &v1).await;
    // Backend 0's shard of the source is replaced by v2's (same layout) just before it copies.
    put(&s.ec, "other", &v2).await;
    let d0 = s.disks[0].inner.clone();
    *s.disks[0].before_copy.lock().unwrap() = Some(Box::new(move || {
        let d0 = d0.clone();
        Box::pin(async move {
            let o = CopyOptions {
                directive: MetadataDirective::Copy,
                source_conditions: Conditions::default(),
            };
            d0.copy_object(&bucket(), &key("other"), &bucket(), &key("src"), o)
                .await
                .unwrap();
        })
    }));
    let copied =
        s.ec.copy_object(
            &bucket(),
            &key("src"),
            &bucket(),
            &key("dst"),
            CopyOptions {
                directive: MetadataDirective::Copy,
                source_conditions: Conditions::default(),
            },
        )
        .await;
    match copied {
        // Whatever the copy answered, the destination never serves mixed bytes.
        Ok(_) => match get(&s.ec, "dst").await {
            Ok(got) => assert!(got == v1 || got == v2, "mixed bytes: {got:?}"),
            Err(e) => assert!(e.is_transient(), "{e:?}"),
        },
        Err(e) => assert!(
            e.is_transient() || matches!(e, Error::PreconditionFailed),
            "{e:?}"
        ),
    }
}

/// E10: the uploads' hidden objects are out of reach of GET, HEAD, DELETE and copies, and
/// a listing's NextMarker is never a hidden key.
#[tokio::test]
async fn the_uploads_state_is_hidden() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let up =
        s.ec.create_multipart_upload(&bucket(), &key("mp"), MultipartOptions::default())
            .await
            .unwrap();
    let hidden = key(&format!("{UPLOADS_PREFIX}{}", up.as_str()));
    let head =
        s.ec.head_object(&bucket(), &hidden, GetOptions::default())
            .await;
    assert!(matches!(head, Err(Error::InvalidArgument(_))), "{head:?}");
    assert!(get(&s.ec, hidden.as_str()).await.is_err());
    assert!(s.ec.delete_object(&bucket(), &hidden).await.is_err());
    let copy = CopyOptions {
        directive: MetadataDirective::Copy,
        source_conditions: Conditions::default(),
    };
    let copied =
        s.ec.copy_object(&bucket(), &hidden, &bucket(), &key("leak"), copy)
            .await;
    assert!(copied.is_err(), "{copied:?}");
    // One real key before the hidden ones ('.' sorts before 'z'), one after.
    put(&s.ec, "-a", b"a").await;
    put(&s.ec, "z", b"z").await;
    let mut keys = vec![];
    let mut after = None;
    for _ in 0..10 {
        let opts = ListOptions {
            max_keys: 2,
            start_after: after.clone(),
            ..Default::default()
        };
        let page = s.ec.list_objects(&bucket(), opts).await.unwrap();
        keys.extend(page.objects.iter().map(|o| o.key.clone()));
        if let Some(m) = &page.next_marker {
            assert!(!m.starts_with(UPLOADS_PREFIX), "{m}");
        }
        if !page.is_truncated {
            break;
        }
        after = page.next_marker.clone();
    }
    assert_eq!(keys, ["-a", "z"]);
}

/// E11: a part uploaded again between the completion's listing and its read is refused,
/// not stored under the ETag computed from the listed part.
#[tokio::test]
async fn completion_reads_the_listed_parts() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let up =
        s.ec.create_multipart_upload(&bucket(), &key("mp"), MultipartOptions::default())
            .await
            .unwrap();
    let mut etags = vec![];
    for (n, byte) in [(1, b'a'), (2, b'b')] {
        let body = Bytes::from(vec![byte; 100]).into();
        let etag =
            s.ec.upload_part(&bucket(), &key("mp"), &up, n, body, PartOptions::default())
                .await
                .unwrap();
        etags.push(etag);
    }
    // Right after the parts are listed, part 1 is replaced by part 2's bytes everywhere.
    let inners: Vec<Arc<Memory>> = s.disks.iter().map(|d| d.inner.clone()).collect();
    let id = up.as_str().to_string();
    // (On the last backend, a little later, so that every backend has listed.)
    *s.disks[2].after_parts_list.lock().unwrap() = Some(Box::new(move || {
        let (inners, id) = (inners.clone(), id.clone());
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            for d in &inners {
                let o = CopyOptions {
                    directive: MetadataDirective::Copy,
                    source_conditions: Conditions::default(),
                };
                let src = key(&format!("{UPLOADS_PREFIX}{id}/00002"));
                let dst = key(&format!("{UPLOADS_PREFIX}{id}/00001"));
                d.copy_object(&bucket(), &src, &bucket(), &dst, o)
                    .await
                    .unwrap();
            }
        })
    }));
    let parts = vec![CompletedPart {
        part_number: 1,
        etag: etags[0].clone(),
    }];
    let done =
        s.ec.complete_multipart_upload(&bucket(), &key("mp"), &up, parts)
            .await;
    assert!(
        s.disks[2].after_parts_list.lock().unwrap().is_none(),
        "no race staged"
    );
    match done {
        Ok(_) => assert_eq!(get(&s.ec, "mp").await.unwrap(), vec![b'a'; 100]),
        Err(e) => assert!(matches!(e, Error::InvalidPart), "{e:?}"),
    }
}

/// E9: partNumber=1 of a multipart object is never the whole object.
#[tokio::test]
async fn part_number_of_a_multipart_object_is_not_the_whole_object() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let up =
        s.ec.create_multipart_upload(&bucket(), &key("mp"), MultipartOptions::default())
            .await
            .unwrap();
    let first = 5 << 20;
    let mut parts = vec![];
    for (n, len) in [(1, first), (2, 10)] {
        let body = Bytes::from(vec![n as u8; len]).into();
        let etag =
            s.ec.upload_part(&bucket(), &key("mp"), &up, n, body, PartOptions::default())
                .await
                .unwrap();
        parts.push(CompletedPart {
            part_number: n,
            etag,
        });
    }
    s.ec.complete_multipart_upload(&bucket(), &key("mp"), &up, parts)
        .await
        .unwrap();
    let opts = GetOptions {
        part_number: Some(1),
        ..Default::default()
    };
    match s.ec.get_object(&bucket(), &key("mp"), opts.clone()).await {
        Ok(got) => assert_eq!(got.content_length(), first as u64),
        Err(e) => assert!(matches!(e, Error::NotImplemented(_)), "{e:?}"),
    }
    match s.ec.head_object(&bucket(), &key("mp"), opts).await {
        Ok(info) => assert_ne!(info.parts_count, Some(1)),
        Err(e) => assert!(matches!(e, Error::NotImplemented(_)), "{e:?}"),
    }
}
