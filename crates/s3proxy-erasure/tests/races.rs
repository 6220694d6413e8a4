//! Erasure-coded placement under races a test stages exactly: backends whose calls run a
//! hook first (another write landing between a resolve and what follows it).

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_erasure::*;
use s3proxy_replication::Journal;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Hook = Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// A memory backend whose next CopyObject first runs a hook. PUT bodies are taken whole
/// before they are stored (a backend that commits after it read the body).
struct Hooked {
    inner: Arc<Memory>,
    before_copy: Mutex<Option<Hook>>,
    /// Runs once after the next listing of an upload's parts.
    after_parts_list: Mutex<Option<Hook>>,
    /// Runs once when the next PUT arrives, before its body is read.
    before_put: Mutex<Option<Hook>>,
    /// Runs once after the next PUT's body was read, before it is stored.
    before_commit: Mutex<Option<Hook>>,
    /// PUTs answer 503 (the backend refuses writes; reads go on).
    refuse_puts: AtomicBool,
    /// The n-th PUT received (1-based; 0: none) is stored 300 ms after its body was read.
    hold_nth_put: AtomicUsize,
    puts_seen: AtomicUsize,
    /// PUTs stall: [`TAKE_BODY_NEVER_ANSWER`] or [`NEVER_READ`] (0: they do not).
    stall_puts: AtomicU8,
    refuse_copies: AtomicBool,
    refuse_deletes: AtomicBool,
    late_commit: AtomicBool,
    fail_after_body: AtomicBool,
}

/// A PUT reads its body whole, then never answers.
const TAKE_BODY_NEVER_ANSWER: u8 = 1;
/// A PUT never reads its body, and never answers.
const NEVER_READ: u8 = 2;

async fn run_hook(slot: &Mutex<Option<Hook>>) {
    let hook = slot.lock().unwrap().take();
    if let Some(hook) = hook {
        hook().await;
    }
}

#[async_trait]
impl forward::Forward for Hooked {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }
    async fn put_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        body: Body,
        o: PutOptions,
    ) -> Result<PutResult> {
        if self.refuse_puts.load(Ordering::SeqCst) {
            return Err(Error::ServiceUnavailable("refuses writes".into()));
        }
        let n = self.puts_seen.fetch_add(1, Ordering::SeqCst) + 1;
        match self.stall_puts.load(Ordering::SeqCst) {
            TAKE_BODY_NEVER_ANSWER => {
                let _ = collect_body(body.stream, 1 << 24).await;
                return futures::future::pending().await;
            }
            NEVER_READ => return futures::future::pending().await,
            _ => {}
        }
        run_hook(&self.before_put).await;
        if self.late_commit.load(Ordering::SeqCst) {
            // A remote backend that has the whole body commits it even when the caller
            // stops waiting (the connection dropped after the last byte).
            let data = collect_body(body.stream, 1 << 24).await?;
            let (inner, b, k) = (self.inner.clone(), b.clone(), k.clone());
            let t = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                inner.put_object(&b, &k, data.into(), o).await
            });
            return t.await.unwrap();
        }
        let data = collect_body(body.stream, 1 << 24).await?;
        if self.fail_after_body.load(Ordering::SeqCst) {
            return Err(Error::ServiceUnavailable("disk full".into()));
        }
        run_hook(&self.before_commit).await;
        if self.hold_nth_put.load(Ordering::SeqCst) == n {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.inner.put_object(b, k, data.into(), o).await
    }
    async fn delete_object(&self, b: &BucketName, k: &ObjectKey) -> Result<()> {
        if self.refuse_deletes.load(Ordering::SeqCst) {
            return Err(Error::ServiceUnavailable("refuses deletes".into()));
        }
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
        if self.refuse_copies.load(Ordering::SeqCst) {
            return Err(Error::ServiceUnavailable("refuses copies".into()));
        }
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
                before_put: Mutex::new(None),
                before_commit: Mutex::new(None),
                refuse_puts: AtomicBool::new(false),
                hold_nth_put: AtomicUsize::new(0),
                puts_seen: AtomicUsize::new(0),
                stall_puts: AtomicU8::new(0),
                refuse_copies: AtomicBool::new(false),
                refuse_deletes: AtomicBool::new(false),
                late_commit: AtomicBool::new(false),
                fail_after_body: AtomicBool::new(false),
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

/// A write whose turn has not come yet, started from inside a hook.
type Pending = Arc<Mutex<Option<tokio::task::JoinHandle<Result<PutResult>>>>>;

/// Start a PUT of `data` to `k` in the background; wait up to `wait` for it.
fn put_from_hook(ec: &Erasure, k: &'static str, data: Vec<u8>, wait: Duration) -> (Hook, Pending) {
    let pending: Pending = Default::default();
    let (ec, slot) = (ec.clone(), pending.clone());
    let hook: Hook = Box::new(move || {
        let (ec, slot, data) = (ec.clone(), slot.clone(), data.clone());
        Box::pin(async move {
            let put = tokio::spawn(async move {
                let body = Bytes::from(data).into();
                ec.put_object(&bucket(), &key(k), body, PutOptions::default())
                    .await
            });
            // Not polled here: the test awaits it once.
            let done = async {
                while !put.is_finished() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            let _ = tokio::time::timeout(wait, done).await;
            *slot.lock().unwrap() = Some(put);
        })
    });
    (hook, pending)
}

/// E2: a repair that rebuilt a shard of the version it read must not store it over a
/// newer client write that landed meanwhile: with the newer write's other shard missing,
/// that would leave the older version readable and the acknowledged write gone.
#[tokio::test]
async fn a_repair_never_stores_an_older_shard_over_a_newer_write() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let (v1, v2) = (vec![b'a'; 100], vec![b'b'; 100]);
    s.disks[2].refuse_puts.store(true, Ordering::SeqCst);
    put(&s.ec, "k", &v1).await;
    s.disks[2].refuse_puts.store(false, Ordering::SeqCst);
    assert_eq!(s.ec.journal().len(), 1, "the missed shard is journaled");
    // The repair's shard for backend 2 is read whole; before it is stored a client writes
    // v2, which backend 0 refuses (so v2 lives on backends 1 and 2).
    s.disks[0].refuse_puts.store(true, Ordering::SeqCst);
    let (hook, pending) = put_from_hook(&s.ec, "k", v2.clone(), Duration::from_millis(500));
    *s.disks[2].before_commit.lock().unwrap() = Some(hook);
    s.ec.replay_journal().await;
    let v2_put = pending.lock().unwrap().take().expect("the race was staged");
    v2_put
        .await
        .unwrap()
        .expect("the client write is acknowledged");
    s.disks[0].refuse_puts.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&s.ec, "k").await.unwrap(),
        v2,
        "the acknowledged write is served"
    );
    s.ec.replay_journal().await;
    assert_eq!(get(&s.ec, "k").await.unwrap(), v2);
    assert_eq!(s.ec.journal().len(), 0);
}

/// E2: a repair under way when a client write of its key arrives withdraws its shard
/// before it commits, rather than hold the write up (and is redone on the next replay).
#[tokio::test]
async fn a_repair_gives_way_to_a_client_write() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let (v1, v2) = (vec![b'a'; 100], vec![b'b'; 100]);
    s.disks[2].refuse_puts.store(true, Ordering::SeqCst);
    put(&s.ec, "k", &v1).await;
    s.disks[2].refuse_puts.store(false, Ordering::SeqCst);
    let (hook, pending) = put_from_hook(&s.ec, "k", v2.clone(), Duration::from_millis(100));
    *s.disks[2].before_put.lock().unwrap() = Some(hook);
    let done = s.ec.replay_journal().await;
    assert_eq!((done.rebuilt, done.failed), (0, 1), "{done:?}");
    let v2_put = pending.lock().unwrap().take().expect("the race was staged");
    v2_put.await.unwrap().unwrap();
    assert_eq!(get(&s.ec, "k").await.unwrap(), v2);
    let again = s.ec.replay_journal().await;
    assert_eq!(again.failed, 0, "{again:?}");
    assert_eq!(s.ec.journal().len(), 0);
}

/// E2: two client writes of one key whose shards would land in opposite orders on the
/// backends (2 + 1: the first write last on backends 0 and 1, the second last on 2) must
/// not leave the older version readable over the acknowledged newer one: they take
/// turns, and the later one is what every backend holds.
#[tokio::test]
async fn overlapping_writes_of_one_key_take_turns() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    // Backends 0 and 1 store the first write they get late, 2 the second.
    for (d, nth) in s.disks.iter().zip([1, 1, 2]) {
        d.hold_nth_put.store(nth, Ordering::SeqCst);
    }
    let (a, b) = (vec![b'a'; 100], vec![b'b'; 100]);
    let first = {
        let (ec, a) = (s.ec.clone(), a.clone());
        tokio::spawn(async move { put(&ec, "k", &a).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    put(&s.ec, "k", &b).await;
    first.await.unwrap();
    assert_eq!(
        get(&s.ec, "k").await.unwrap(),
        b,
        "the later write is served"
    );
    assert_eq!(s.ec.writes_in_flight(), 0);
}

/// E6: a backend that accepts a PUT and then stalls (it takes the body and never answers,
/// or never reads it) is cut off after the backend timeout (2 s here): the PUT is
/// acknowledged by the others and the stalled shard journaled, and a repair onto the
/// stalled backend gives up instead of hanging the journal's replay.
#[tokio::test]
async fn a_stalled_backend_holds_up_neither_writes_nor_repairs() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let data = vec![b'x'; 300];
    for stall in [TAKE_BODY_NEVER_ANSWER, NEVER_READ] {
        s.disks[2].stall_puts.store(stall, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let body = Bytes::from(data.clone()).into();
        let (b, k) = (bucket(), key("k"));
        let put = s.ec.put_object(&b, &k, body, PutOptions::default());
        let put = tokio::time::timeout(Duration::from_secs(15), put).await;
        put.expect("the PUT did not hang")
            .expect("two of three shards stored");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(s.ec.journal().len(), 1, "the stalled shard is journaled");
        // A backend cut off once it had the whole body may still commit it: the key is
        // left alone for one more backend timeout (2 s here), then repaired.
        let linger = Duration::from_millis(2100);
        tokio::time::sleep(linger).await;
        let replay = tokio::time::timeout(Duration::from_secs(15), s.ec.replay_journal()).await;
        let done = replay.expect("the repair did not hang");
        assert_eq!((done.rebuilt, done.failed), (0, 1), "{done:?}");
        s.disks[2].stall_puts.store(0, Ordering::SeqCst);
        tokio::time::sleep(linger).await;
        let done = s.ec.replay_journal().await;
        assert_eq!(done.rebuilt, 1, "{done:?}");
        let meta = |i: usize| {
            let d = s.disks[i].inner.clone();
            async move {
                let info = d
                    .head_object(&bucket(), &key("k"), GetOptions::default())
                    .await;
                ShardMeta::from_metadata(&info.unwrap().metadata).unwrap()
            }
        };
        assert!(
            meta(2).await.same_version(&meta(0).await),
            "the shard is rebuilt"
        );
    }
}

async fn ver(s: &Set, i: usize, k: &str) -> Option<String> {
    let info = s.disks[i]
        .inner
        .head_object(&bucket(), &key(k), GetOptions::default())
        .await
        .ok()?;
    ShardMeta::from_metadata(&info.metadata).map(|m| m.ver)
}

#[tokio::test]
async fn rev_copy_missing_quorum_is_not_journaled() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let v1 = vec![b'a'; 200];
    put(&s.ec, "dst", &v1).await;
    put(&s.ec, "src", &[b'b'; 200]).await;
    s.disks[1].refuse_copies.store(true, Ordering::SeqCst);
    s.disks[2].refuse_copies.store(true, Ordering::SeqCst);
    let r =
        s.ec.copy_object(
            &bucket(),
            &key("src"),
            &bucket(),
            &key("dst"),
            CopyOptions::default(),
        )
        .await;
    eprintln!("copy: {:?}", r.as_ref().map(drop));
    assert!(r.is_err());
    eprintln!("journal after failed copy: {}", s.ec.journal().len());
    eprintln!(
        "vers: {:?} {:?} {:?}",
        ver(&s, 0, "dst").await,
        ver(&s, 1, "dst").await,
        ver(&s, 2, "dst").await
    );
    assert_eq!(get(&s.ec, "dst").await.unwrap(), v1, "v1 still served");
    eprintln!("replay: {:?}", s.ec.replay_journal().await);
    // One backend lost (wiped): a 2 + 1 set should survive it.
    s.disks[1]
        .inner
        .delete_object(&bucket(), &key("dst"))
        .await
        .unwrap();
    let g = get(&s.ec, "dst").await;
    eprintln!(
        "get after losing one backend: {:?}",
        g.as_ref().map(|b| b.len())
    );
    assert!(g.is_ok(), "acknowledged v1 lost after one backend loss");
}

#[tokio::test]
async fn rev_late_commit_after_cutoff_is_silent() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    put(&s.ec, "k", &[b'1'; 200]).await;
    s.disks[2].late_commit.store(true, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    put(&s.ec, "k", &[b'2'; 200]).await;
    eprintln!(
        "v2 acked after {:?}; journal {}",
        t0.elapsed(),
        s.ec.journal().len()
    );
    s.disks[2].late_commit.store(false, Ordering::SeqCst);
    let v3 = vec![b'3'; 200];
    put(&s.ec, "k", &v3).await;
    let done = s.ec.replay_journal().await;
    eprintln!("replay {:?} journal {}", done, s.ec.journal().len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "vers: {:?} {:?} {:?}",
        ver(&s, 0, "k").await,
        ver(&s, 1, "k").await,
        ver(&s, 2, "k").await
    );
    eprintln!("journal now {}", s.ec.journal().len());
    assert_eq!(get(&s.ec, "k").await.unwrap(), v3);
    s.disks[0]
        .inner
        .delete_object(&bucket(), &key("k"))
        .await
        .unwrap();
    let g = get(&s.ec, "k").await;
    eprintln!(
        "get after losing one backend: {:?}",
        g.as_ref().map(|b| b[0])
    );
    assert!(
        g.is_ok_and(|b| b == v3),
        "acknowledged v3 lost after one backend loss"
    );
}

/// Finding 4: with k > m + 1 (4 + 2), a write failing after three of six backends
/// committed leaves neither version with k shards, so such placements are refused; at
/// k = m + 1 (3 + 2) the same failure (two backends refuse, one fails after the body)
/// leaves the previous version on k backends, served before and after the replay.
#[tokio::test]
async fn rev_missed_quorum_after_commit_point_loses_previous_version() {
    let backends: Vec<DynBackend> = (0..6)
        .map(|i| Arc::new(Memory::new(format!("m{i}"))) as DynBackend)
        .collect();
    let refused = Erasure::new(
        "ec",
        backends,
        ErasureOptions::new(4, 2),
        Arc::new(Journal::in_memory()),
    );
    let why = refused.err().expect("4 + 2 is refused").to_string();
    assert!(why.contains("not supported"), "{why}");
    let s = set(3, 2);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let v1 = vec![b'1'; 500];
    put(&s.ec, "k", &v1).await;
    s.disks[3].refuse_puts.store(true, Ordering::SeqCst);
    s.disks[4].refuse_puts.store(true, Ordering::SeqCst);
    s.disks[0].fail_after_body.store(true, Ordering::SeqCst);
    let r =
        s.ec.put_object(
            &bucket(),
            &key("k"),
            Bytes::from(vec![b'2'; 500]).into(),
            PutOptions::default(),
        )
        .await;
    assert!(r.is_err(), "two of five shards stored, three needed");
    for d in &s.disks {
        d.refuse_puts.store(false, Ordering::SeqCst);
        d.fail_after_body.store(false, Ordering::SeqCst);
    }
    assert_eq!(
        get(&s.ec, "k").await.unwrap(),
        v1,
        "the last acknowledged version is served"
    );
    let done = s.ec.replay_journal().await;
    assert_eq!(done.failed, 0, "{done:?}");
    let vers: Vec<_> = futures::future::join_all((0..5).map(|i| ver(&s, i, "k"))).await;
    assert!(
        vers.iter().all(|v| v == &vers[0]),
        "one version everywhere: {vers:?}"
    );
    assert_eq!(
        get(&s.ec, "k").await.unwrap(),
        v1,
        "the last acknowledged version is served"
    );
}

/// A key whose shards exist but no version has k of them (two of three shards lost) is
/// unavailable (503), not absent: it may be an acknowledged object. A key deleted on
/// all but one backend (the miss journaled) is absent (404).
#[tokio::test]
async fn shards_without_a_readable_version_are_unavailable_not_absent() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    put(&s.ec, "lost", b"acknowledged").await;
    for d in &s.disks[..2] {
        d.inner
            .delete_object(&bucket(), &key("lost"))
            .await
            .unwrap();
    }
    let g = get(&s.ec, "lost").await;
    assert!(
        matches!(g, Err(Error::ServiceUnavailable(_))),
        "{:?}",
        g.map(drop)
    );
    let h =
        s.ec.head_object(&bucket(), &key("lost"), GetOptions::default())
            .await;
    assert!(
        matches!(h, Err(Error::ServiceUnavailable(_))),
        "{:?}",
        h.map(drop)
    );
    put(&s.ec, "gone", b"deleted").await;
    s.disks[2].refuse_deletes.store(true, Ordering::SeqCst);
    s.ec.delete_object(&bucket(), &key("gone")).await.unwrap();
    assert!(matches!(get(&s.ec, "gone").await, Err(Error::NoSuchKey)));
}

/// Finding 2: a repair in another process over the same backends (what `s3proxy repair
/// --while-serving` is) lands its rebuilt older shard over a write the server just
/// acknowledged. The CLI refuses beside a server (s3proxy-bin `statelock`); between
/// processes it stays open (docs/ERASURE.md, "Known gaps").
#[tokio::test]
#[ignore = "inter-process coordination is a documented gap (docs/ERASURE.md)"]
async fn rev_repair_tool_process_races_a_server_write() {
    let s = set(2, 1);
    // A second process (s3proxy repair) over the same backends and journal.
    let tool = {
        let backends = s.disks.iter().map(|d| d.clone() as DynBackend).collect();
        let opts = ErasureOptions {
            stripe_size: 64,
            timeout: Duration::from_secs(2),
            ..ErasureOptions::new(2, 1)
        };
        Erasure::new("ec", backends, opts, Arc::new(Journal::in_memory())).unwrap()
    };
    s.ec.create_bucket(&bucket()).await.unwrap();
    let (v1, v2) = (vec![b'a'; 100], vec![b'b'; 100]);
    s.disks[2].refuse_puts.store(true, Ordering::SeqCst);
    put(&s.ec, "k", &v1).await;
    s.disks[2].refuse_puts.store(false, Ordering::SeqCst);
    for e in s.ec.journal().pending() {
        tool.journal().record(e).unwrap();
    }
    s.disks[0].refuse_puts.store(true, Ordering::SeqCst);
    let (hook, pending) = put_from_hook(&s.ec, "k", v2.clone(), Duration::from_millis(500));
    *s.disks[2].before_commit.lock().unwrap() = Some(hook);
    eprintln!("tool replay: {:?}", tool.replay_journal().await);
    let v2_put = pending.lock().unwrap().take().expect("staged");
    v2_put.await.unwrap().expect("server write acknowledged");
    s.disks[0].refuse_puts.store(false, Ordering::SeqCst);
    let g = get(&s.ec, "k").await.unwrap();
    eprintln!("served: {}", g[0] as char);
    assert_eq!(g, v2, "the acknowledged write is served");
}

/// A client that sends a few bytes of its body and then nothing holds its key's turn;
/// the writes of that key behind it get SlowDown (503) after twice the backend timeout
/// (one for the holder, one for a turn lingering after a cut-off) instead of waiting
/// forever, and the key is free for them once the trickler goes.
#[tokio::test]
async fn a_trickling_client_does_not_block_its_key_forever() {
    let s = set(2, 1);
    s.ec.create_bucket(&bucket()).await.unwrap();
    let stream = futures::stream::once(async { Ok(Bytes::from_static(b"abc")) })
        .chain(futures::stream::pending());
    let trickle = Body {
        stream: Box::pin(stream),
        length: 1000,
    };
    let ec = s.ec.clone();
    let trickler = tokio::spawn(async move {
        ec.put_object(&bucket(), &key("k"), trickle, PutOptions::default())
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let body = Bytes::from_static(b"v2").into();
    let (b, k) = (bucket(), key("k"));
    let second = s.ec.put_object(&b, &k, body, PutOptions::default());
    let second = tokio::time::timeout(Duration::from_secs(15), second).await;
    let second = second.expect("the second PUT did not wait forever");
    assert!(
        matches!(second, Err(Error::SlowDown)),
        "{:?}",
        second.map(drop)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    trickler.abort();
    let _ = trickler.await;
    put(&s.ec, "k", b"v3").await;
    assert_eq!(get(&s.ec, "k").await.unwrap(), &b"v3"[..]);
}
