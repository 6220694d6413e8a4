//! Replication over in-process backends with injected faults: quorum, failover, journal
//! replay, tombstones, convergence. (End-to-end tests with real processes killed and
//! paused are in tests/ at the workspace root.)

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use s3proxy_backends::{Memory, conformance};
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

const UP: u8 = 0;
const DOWN: u8 = 1;
/// Bodies stop after their first chunk and never continue.
const STALL_BODIES: u8 = 2;

/// A backend wrapper whose availability the test switches.
struct Faulty {
    inner: Arc<Memory>,
    mode: AtomicU8,
    /// PUTs wait this long before they store (a write that lands late).
    slow_puts: AtomicBool,
    /// PutObject calls received (client writes and repairs).
    puts: AtomicUsize,
    /// GETs to answer with PreconditionFailed, as if the object had just been replaced.
    replaced_for_gets: AtomicUsize,
}

impl Faulty {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(Faulty {
            inner: Arc::new(Memory::new(name)),
            mode: AtomicU8::new(UP),
            slow_puts: AtomicBool::new(false),
            puts: AtomicUsize::new(0),
            replaced_for_gets: AtomicUsize::new(0),
        })
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst)
    }
    fn check(&self) -> Result<()> {
        if self.mode.load(Ordering::SeqCst) == DOWN {
            Err(Error::ServiceUnavailable(format!(
                "{} is down",
                self.inner.name()
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Backend for Faulty {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        self.check()?;
        self.inner.list_buckets().await
    }
    async fn create_bucket(&self, b: &BucketName) -> Result<()> {
        self.check()?;
        self.inner.create_bucket(b).await
    }
    async fn delete_bucket(&self, b: &BucketName) -> Result<()> {
        self.check()?;
        self.inner.delete_bucket(b).await
    }
    async fn head_bucket(&self, b: &BucketName) -> Result<()> {
        self.check()?;
        self.inner.head_bucket(b).await
    }
    async fn put_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        body: Body,
        o: PutOptions,
    ) -> Result<PutResult> {
        self.check()?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.slow_puts.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        self.inner.put_object(b, k, body, o).await
    }
    async fn get_object(&self, b: &BucketName, k: &ObjectKey, o: GetOptions) -> Result<GetResult> {
        self.check()?;
        if self
            .replaced_for_gets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::PreconditionFailed);
        }
        let mut got = self.inner.get_object(b, k, o).await?;
        if self.mode.load(Ordering::SeqCst) == STALL_BODIES {
            let first = got.body.next().await;
            got.body = Box::pin(futures::stream::iter(first).chain(futures::stream::pending()));
        }
        Ok(got)
    }
    async fn head_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: GetOptions,
    ) -> Result<ObjectInfo> {
        self.check()?;
        self.inner.head_object(b, k, o).await
    }
    async fn delete_object(&self, b: &BucketName, k: &ObjectKey) -> Result<()> {
        self.check()?;
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
        self.check()?;
        self.inner.copy_object(sb, sk, db, dk, o).await
    }
    async fn list_objects(&self, b: &BucketName, o: ListOptions) -> Result<ListResult> {
        self.check()?;
        self.inner.list_objects(b, o).await
    }
    async fn create_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        o: MultipartOptions,
    ) -> Result<UploadId> {
        self.check()?;
        self.inner.create_multipart_upload(b, k, o).await
    }
    async fn upload_part(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        id: &UploadId,
        n: u32,
        body: Body,
        o: PartOptions,
    ) -> Result<String> {
        self.check()?;
        self.inner.upload_part(b, k, id, n, body, o).await
    }
    async fn complete_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        id: &UploadId,
        p: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.check()?;
        self.inner.complete_multipart_upload(b, k, id, p).await
    }
    async fn abort_multipart_upload(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        id: &UploadId,
    ) -> Result<()> {
        self.check()?;
        self.inner.abort_multipart_upload(b, k, id).await
    }
    async fn list_parts(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        id: &UploadId,
        o: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        self.check()?;
        self.inner.list_parts(b, k, id, o).await
    }
    async fn list_multipart_uploads(
        &self,
        b: &BucketName,
        o: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.check()?;
        self.inner.list_multipart_uploads(b, o).await
    }
}

struct Stack {
    backends: Vec<Arc<Faulty>>,
    replicated: Replicated,
}

fn stack(quorum: WriteQuorum, journal: Arc<Journal>) -> Stack {
    let backends: Vec<Arc<Faulty>> = ["r1", "r2", "r3"].iter().map(|n| Faulty::new(n)).collect();
    let replicated = replicated_over(&backends, quorum, journal);
    Stack {
        backends,
        replicated,
    }
}

fn replicated_over(
    backends: &[Arc<Faulty>],
    quorum: WriteQuorum,
    journal: Arc<Journal>,
) -> Replicated {
    let replicas = backends
        .iter()
        .map(|b| Replica {
            backend: b.clone() as DynBackend,
            timeout: Duration::from_millis(500),
        })
        .collect();
    let opts = ReplicationOptions {
        write_quorum: quorum,
        retries: 0,
        upload_id_key: [7; 32],
        ..Default::default()
    };
    Replicated::new("replicated", replicas, opts, journal).unwrap()
}

fn bucket() -> BucketName {
    BucketName::new("rep").unwrap()
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

async fn read(b: &dyn Backend, k: &str) -> Result<Bytes> {
    let got = b
        .get_object(&bucket(), &key(k), GetOptions::default())
        .await?;
    collect_body(got.body, 64 << 20).await
}

/// Wait for stragglers to finish, then replay the journal once.
async fn settle(r: &Replicated) -> usize {
    for _ in 0..100 {
        if r.writes_in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.replay_journal().await
}

async fn version_on(b: &Faulty, k: &str) -> Option<String> {
    b.inner
        .head_object(&bucket(), &key(k), GetOptions::default())
        .await
        .ok()
        .and_then(|i| i.metadata.internal.get(VERSION_KEY).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_passes_the_conformance_suite() {
    let s = stack(WriteQuorum::Majority, Arc::new(Journal::in_memory()));
    conformance::run_all(Arc::new(s.replicated.clone()), "rep").await;
    conformance::concurrent_writers(Arc::new(s.replicated), "rep").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_write_with_a_backend_down_is_repaired_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(
        WriteQuorum::One,
        Arc::new(Journal::open(dir.path()).unwrap()),
    );
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    let data = conformance::pattern(3 << 20, 9);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            data.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(read(&s.replicated, "k").await.unwrap() == data);
    assert_eq!(version_on(&s.backends[2], "k").await, None);
    // Replicas that were still writing when the quorum was met are checked and cleared.
    settle(&s.replicated).await;
    let pending: Vec<String> = s
        .replicated
        .journal()
        .pending()
        .into_iter()
        .map(|e| e.backend)
        .collect();
    assert_eq!(pending, ["r3"]);
    // Still down: replay keeps the entry.
    assert_eq!(settle(&s.replicated).await, 1);
    s.backends[2].set(UP);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    assert_eq!(settle(&s.replicated).await, 0);
    assert_eq!(
        version_on(&s.backends[2], "k").await,
        version_on(&s.backends[0], "k").await
    );
    assert!(read(&*s.backends[2].inner, "k").await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_all_with_a_backend_down_is_503_and_leaves_nothing_visible() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[1].set(DOWN);
    let r = s
        .replicated
        .put_object(
            &bucket(),
            &key("new"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::ServiceUnavailable(_))), "{r:?}");
    assert_eq!(r.unwrap_err().status(), 503);
    for b in &s.backends {
        b.set(UP);
    }
    assert!(matches!(
        read(&s.replicated, "new").await,
        Err(Error::NoSuchKey)
    ));
    for b in &s.backends {
        assert_eq!(version_on(b, "new").await, None, "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_down_is_not_undone_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(
        WriteQuorum::One,
        Arc::new(Journal::open(dir.path()).unwrap()),
    );
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("gone"),
            Bytes::from("v1").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s.backends[0].set(DOWN);
    s.replicated
        .delete_object(&bucket(), &key("gone"))
        .await
        .unwrap();
    s.backends[0].set(UP);
    // Before the journal replays, reads and listings already honour the delete.
    assert!(matches!(
        read(&s.replicated, "gone").await,
        Err(Error::NoSuchKey)
    ));
    let listed = s
        .replicated
        .list_objects(
            &bucket(),
            ListOptions {
                max_keys: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(listed.objects.is_empty());
    // A full repair scan must not copy it back; it applies the delete instead.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let summary = s
        .replicated
        .repair_scan(None, false, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(summary.copies, 0);
    for b in &s.backends {
        assert_eq!(version_on(b, "gone").await, None, "{}", b.name());
    }
    settle(&s.replicated).await;
    assert!(s.replicated.journal().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let backends: Vec<Arc<Faulty>> = ["r1", "r2", "r3"].iter().map(|n| Faulty::new(n)).collect();
    {
        let first = replicated_over(
            &backends,
            WriteQuorum::One,
            Arc::new(Journal::open(dir.path()).unwrap()),
        );
        first.create_bucket(&bucket()).await.unwrap();
        backends[1].set(DOWN);
        first
            .put_object(
                &bucket(),
                &key("j"),
                Bytes::from("journaled").into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        // A replica still finishing when the quorum was met is journaled until checked.
        settle(&first).await;
        let pending: Vec<String> = first
            .journal()
            .pending()
            .into_iter()
            .map(|e| e.backend)
            .collect();
        assert_eq!(pending, ["r2"]);
    }
    backends[1].set(UP);
    let second = replicated_over(
        &backends,
        WriteQuorum::One,
        Arc::new(Journal::open(dir.path()).unwrap()),
    );
    assert_eq!(second.journal().len(), 1, "the entry was on disk");
    let bg = second.start_background(Duration::from_millis(100));
    for _ in 0..50 {
        if second.journal().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bg.abort();
    assert!(second.journal().is_empty());
    assert_eq!(read(&*backends[1].inner, "j").await.unwrap(), "journaled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_replica_mid_get_fails_over() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let data = conformance::pattern(1 << 20, 3);
    s.replicated
        .put_object(
            &bucket(),
            &key("big"),
            data.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s.backends[0].set(STALL_BODIES);
    let started = std::time::Instant::now();
    let got = read(&s.replicated, "big").await.unwrap();
    assert!(
        got == data,
        "the body continued byte-exact from another replica"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_replica_found_by_a_read_is_repaired() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("s"),
            Bytes::from("old").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // Let the replicas still finishing when the quorum was met finish and be checked.
    tokio::time::sleep(Duration::from_millis(200)).await;
    settle(&s.replicated).await;
    assert!(s.replicated.journal().is_empty());
    // Write the new version behind the proxy's back on two replicas only.
    let newer = s.backends[0]
        .inner
        .head_object(&bucket(), &key("s"), GetOptions::default())
        .await
        .unwrap();
    let mut meta = newer.metadata.clone();
    meta.internal
        .insert(VERSION_KEY.into(), "ffffffffffff-000000-test".into());
    for b in &s.backends[1..] {
        b.inner
            .put_object(
                &bucket(),
                &key("s"),
                Bytes::from("new").into(),
                PutOptions {
                    metadata: meta.clone(),
                    content_md5: None,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(read(&s.replicated, "s").await.unwrap(), "new");
    assert_eq!(s.replicated.journal().len(), 1);
    settle(&s.replicated).await;
    assert_eq!(read(&*s.backends[0].inner, "s").await.unwrap(), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_converge() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let writers = (0..6u8).map(|w| {
        let r = s.replicated.clone();
        tokio::spawn(async move {
            for i in 0..5u8 {
                let body = conformance::pattern(100_000 + w as usize, i ^ w);
                r.put_object(&bucket(), &key("hot"), body.into(), PutOptions::default())
                    .await
                    .unwrap();
            }
        })
    });
    futures::future::join_all(writers).await;
    settle(&s.replicated).await;
    let versions: Vec<_> =
        futures::future::join_all(s.backends.iter().map(|b| version_on(b, "hot"))).await;
    assert!(versions[0].is_some());
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
    let bodies: Vec<_> =
        futures::future::join_all(s.backends.iter().map(|b| read(&*b.inner, "hot"))).await;
    assert!(
        bodies
            .iter()
            .all(|b| b.as_ref().unwrap() == bodies[0].as_ref().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_upload_ids_are_refused() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let id = s
        .replicated
        .create_multipart_upload(&bucket(), &key("m"), MultipartOptions::default())
        .await
        .unwrap();
    let forged = UploadId::new(format!("{}x", &id.as_str()[..id.as_str().len() - 1])).unwrap();
    let r = s
        .replicated
        .upload_part(
            &bucket(),
            &key("m"),
            &forged,
            1,
            Bytes::from("x").into(),
            PartOptions::default(),
        )
        .await;
    assert!(matches!(r, Err(Error::NoSuchUpload)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_with_a_backend_down_is_404_unless_a_reachable_replica_missed_it() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    // s3fs looks up every new name before creating it: one backend down must not turn
    // those lookups into errors.
    assert!(matches!(
        s.replicated
            .head_object(&bucket(), &key("new-name"), GetOptions::default())
            .await,
        Err(Error::NoSuchKey)
    ));
    assert!(matches!(
        read(&s.replicated, "new-name").await,
        Err(Error::NoSuchKey)
    ));
    // But when the journal says a replica that answered missed a write of the key, the
    // only copy may be on the one that is down: that is not a 404.
    s.replicated
        .journal()
        .record(Entry {
            bucket: "rep".into(),
            key: "written-while-r1-was-down".into(),
            backend: "r1".into(),
            stamp: "01".into(),
            tombstone: None,
            force: false,
        })
        .unwrap();
    assert!(matches!(
        s.replicated
            .head_object(
                &bucket(),
                &key("written-while-r1-was-down"),
                GetOptions::default()
            )
            .await,
        Err(Error::ServiceUnavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_during_a_repair_is_not_undone_by_it() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from("old").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    settle(&s.replicated).await;
    s.backends[2].set(UP);
    s.backends[2].slow_puts.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    // The repair reads the old version, then its write to r3 lands late; the client's
    // delete runs in between.
    let repair = {
        let r = s.replicated.clone();
        tokio::spawn(async move { r.replay_journal().await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.replicated
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    repair.await.unwrap();
    s.backends[2].slow_puts.store(false, Ordering::SeqCst);
    // The late copy is hidden at once, and the next repair pass deletes it.
    assert!(matches!(
        read(&s.replicated, "k").await,
        Err(Error::NoSuchKey)
    ));
    let listed = s
        .replicated
        .list_objects(
            &bucket(),
            ListOptions {
                max_keys: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(listed.objects.is_empty(), "{:?}", listed.objects);
    assert_eq!(settle(&s.replicated).await, 0);
    for b in &s.backends {
        assert_eq!(version_on(b, "k").await, None, "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_listing_objects_is_refused_before_any_replica_deletes_it() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    // One replica alone holds an object (the others missed its write): the bucket lists
    // it, so it is not empty, although two replicas would delete theirs.
    s.backends[0]
        .inner
        .put_object(
            &bucket(),
            &key("only-here"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.replicated.delete_bucket(&bucket()).await,
        Err(Error::BucketNotEmpty)
    ));
    for b in &s.backends {
        b.inner
            .head_bucket(&bucket())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
    }
    s.replicated
        .delete_object(&bucket(), &key("only-here"))
        .await
        .unwrap();
    s.replicated.delete_bucket(&bucket()).await.unwrap();
    for b in &s.backends {
        assert!(matches!(
            b.inner.head_bucket(&bucket()).await,
            Err(Error::NoSuchBucket)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_deleted_while_a_backend_is_down_stays_deleted() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from("v").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s.replicated
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    s.backends[2].set(DOWN);
    s.replicated.delete_bucket(&bucket()).await.unwrap();
    // r3 still has the bucket, but the client never sees it again.
    s.backends[2].set(UP);
    let names: Vec<String> = s
        .replicated
        .list_buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(names.is_empty(), "{names:?}");
    assert!(matches!(
        s.replicated.head_bucket(&bucket()).await,
        Err(Error::NoSuchBucket)
    ));
    assert!(matches!(
        s.replicated
            .put_object(
                &bucket(),
                &key("k2"),
                Bytes::from("v").into(),
                PutOptions::default()
            )
            .await,
        Err(Error::NoSuchBucket)
    ));
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuit timer
    assert_eq!(settle(&s.replicated).await, 0);
    assert!(matches!(
        s.backends[2].inner.head_bucket(&bucket()).await,
        Err(Error::NoSuchBucket)
    ));
    // And it can be created again.
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.replicated.head_bucket(&bucket()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_right_after_a_w1_put_waits_for_the_replica_still_writing() {
    // The encryption layer attaches its record to a PUT without Content-MD5 by copying the
    // object onto itself as soon as the PUT is acknowledged: at W=1 the slower replicas are
    // still writing then. The copy must reach them once their write is done, not fail
    // there and leave a repair that sends the whole object again.
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].slow_puts.store(true, Ordering::SeqCst);
    let body = conformance::pattern(10_000, 5);
    let put = s
        .replicated
        .put_object(
            &bucket(),
            &key("k"),
            body.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        version_on(&s.backends[2], "k").await,
        None,
        "r3 answered the PUT"
    );
    let mut metadata = ObjectMetadata::default();
    metadata.user.insert("attached".into(), "yes".into());
    s.replicated
        .copy_object(
            &bucket(),
            &key("k"),
            &bucket(),
            &key("k"),
            CopyOptions {
                directive: MetadataDirective::Replace(metadata),
                source_conditions: Conditions {
                    if_match: Some(put.etag.clone()),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap();
    settle(&s.replicated).await;
    assert!(s.replicated.journal().is_empty());
    let versions: Vec<_> =
        futures::future::join_all(s.backends.iter().map(|b| version_on(b, "k"))).await;
    assert!(
        versions.iter().all(|v| v.is_some() && *v == versions[0]),
        "{versions:?}"
    );
    for b in &s.backends {
        let info = b
            .inner
            .head_object(&bucket(), &key("k"), GetOptions::default())
            .await
            .unwrap();
        assert_eq!(
            info.metadata.user.get("attached").map(String::as_str),
            Some("yes")
        );
        assert_eq!(read(&*b.inner, "k").await.unwrap(), body);
    }
    assert_eq!(
        s.backends[2].puts.load(Ordering::SeqCst),
        1,
        "the slow replica was written again by a repair"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_racing_a_write_on_every_replica_locates_again() {
    // Every holder replaced the located version before the read reached it (a write
    // landed in between): the read locates the object again instead of answering the
    // client 412, which it never asked for.
    let s = stack(WriteQuorum::Majority, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let body = conformance::pattern(5_000, 2);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            body.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    settle(&s.replicated).await;
    for b in &s.backends {
        b.replaced_for_gets.store(1, Ordering::SeqCst);
    }
    assert_eq!(read(&s.replicated, "k").await.unwrap(), body);
    // A key that keeps changing ends in 503 (retryable), still not 412.
    for b in &s.backends {
        b.replaced_for_gets.store(100, Ordering::SeqCst);
    }
    let err = read(&s.replicated, "k").await.unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable(_)), "{err:?}");
}

async fn upload_with_parts(r: &Replicated, k: &str, id: &UploadId) -> (Vec<CompletedPart>, Bytes) {
    let parts_data = [
        conformance::pattern(5 << 20, 1),
        conformance::pattern(100, 2),
    ];
    let mut parts = vec![];
    for (n, d) in parts_data.iter().enumerate() {
        let etag = r
            .upload_part(
                &bucket(),
                &key(k),
                id,
                n as u32 + 1,
                d.clone().into(),
                PartOptions::default(),
            )
            .await
            .unwrap();
        parts.push(CompletedPart {
            part_number: n as u32 + 1,
            etag,
        });
    }
    (
        parts,
        Bytes::from([&parts_data[0][..], &parts_data[1][..]].concat()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_upload_ids_are_the_created_ones_even_with_a_replica_that_missed_one() {
    let s = stack(WriteQuorum::Majority, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let create = |k: &'static str| {
        let r = s.replicated.clone();
        async move {
            let id = r
                .create_multipart_upload(&bucket(), &key(k), MultipartOptions::default())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            id
        }
    };
    let a1 = create("a").await;
    s.backends[2].set(DOWN); // r3 misses the second upload of "a"
    let a2 = create("a").await;
    s.backends[2].set(UP);
    tokio::time::sleep(Duration::from_millis(2100)).await; // its circuit closes
    s.replicated.probe_open_circuits().await;
    let a3 = create("a").await;
    let b1 = create("b").await;
    let listed = s
        .replicated
        .list_multipart_uploads(
            &bucket(),
            ListUploadsOptions {
                max_uploads: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = listed
        .uploads
        .iter()
        .map(|u| (u.key.clone(), u.upload_id.to_string()))
        .collect();
    let want: Vec<(String, String)> = [("a", &a1), ("a", &a2), ("a", &a3), ("b", &b1)]
        .iter()
        .map(|(k, id)| (k.to_string(), id.to_string()))
        .collect();
    assert_eq!(got, want);
    // The listed id completes the upload on every replica that has it.
    let (parts, whole) = upload_with_parts(&s.replicated, "a", &listed.uploads[2].upload_id).await;
    s.replicated
        .complete_multipart_upload(&bucket(), &key("a"), &listed.uploads[2].upload_id, parts)
        .await
        .unwrap();
    for b in &s.backends {
        assert!(read(&*b.inner, "a").await.unwrap() == whole, "{}", b.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_completion_answers_as_the_first() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let id = s
        .replicated
        .create_multipart_upload(&bucket(), &key("m"), MultipartOptions::default())
        .await
        .unwrap();
    let (parts, whole) = upload_with_parts(&s.replicated, "m", &id).await;
    let first = s
        .replicated
        .complete_multipart_upload(&bucket(), &key("m"), &id, parts.clone())
        .await
        .unwrap();
    let again = s
        .replicated
        .complete_multipart_upload(&bucket(), &key("m"), &id, parts.clone())
        .await
        .unwrap();
    assert_eq!(again.etag, first.etag);
    assert_eq!(again.last_modified, first.last_modified);
    assert!(read(&s.replicated, "m").await.unwrap() == whole);
    let other = s
        .replicated
        .complete_multipart_upload(&bucket(), &key("m"), &id, parts[..1].to_vec())
        .await;
    assert!(matches!(other, Err(Error::NoSuchUpload)), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_does_not_decide_deleted_while_the_only_holder_is_unreachable() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[1].set(DOWN);
    s.backends[2].set(DOWN);
    s.replicated
        .put_object(
            &bucket(),
            &key("only"),
            Bytes::from("on r1").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // r1, the only holder, goes; r2 returns. r2's entry must not be dropped as "deleted".
    s.backends[0].set(DOWN);
    s.backends[1].set(UP);
    for _ in 0..3 {
        settle(&s.replicated).await;
    }
    let pending: Vec<String> = s
        .replicated
        .journal()
        .pending()
        .into_iter()
        .map(|e| e.backend)
        .collect();
    assert!(pending.contains(&"r2".to_string()), "{pending:?}");
    for b in &s.backends {
        b.set(UP);
    }
    tokio::time::sleep(Duration::from_millis(2100)).await; // circuits may probe again
    for _ in 0..3 {
        settle(&s.replicated).await;
    }
    for b in &s.backends {
        assert!(
            read(&*b.inner, "only").await.unwrap() == "on r1",
            "{}",
            b.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_repairs_are_reported() {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    s.backends[2].set(DOWN);
    s.replicated
        .put_object(
            &bucket(),
            &key("k"),
            Bytes::from("x").into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert!(s.replicated.failing_repairs().is_empty());
    settle(&s.replicated).await;
    let failing = s.replicated.failing_repairs();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(
        (failing[0].0.backend.as_str(), failing[0].0.key.as_str()),
        ("r3", "k")
    );
    assert!(failing[0].1 >= 1);
}
