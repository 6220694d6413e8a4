//! What the replication tests share: in-process backends whose faults a test switches
//! (down, bodies that stall, reads that hang, PUTs that land late, GETs that find the object
//! replaced), and
//! a replicated set over three of them. (End-to-end tests with real processes killed and
//! paused are in tests/ at the workspace root.)
#![allow(dead_code)]

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

pub const UP: u8 = 0;
pub const DOWN: u8 = 1;
/// Bodies stop after their first chunk and never continue.
pub const STALL_BODIES: u8 = 2;
/// GETs and HEADs never answer (a paused process); other calls work.
pub const HANG_READS: u8 = 3;
/// GETs never answer; HEADs do.
pub const HANG_GETS: u8 = 4;

/// A backend wrapper whose availability the test switches.
pub struct Faulty {
    pub inner: Arc<Memory>,
    pub mode: AtomicU8,
    /// PUTs wait this long before they store (a write that lands late).
    pub slow_puts: AtomicBool,
    /// PUTs and copies answer 503 at once, yet store 300 ms later (a call that timed out
    /// after the backend took it whole).
    pub late_failing_writes: AtomicBool,
    /// PutObject calls received (client writes and repairs).
    pub puts: AtomicUsize,
    /// GETs to answer with PreconditionFailed, as if the object had just been replaced.
    pub replaced_for_gets: AtomicUsize,
    /// GETs and HEADs wait this many milliseconds before they answer (a slow replica).
    pub read_delay_ms: AtomicU64,
    /// GetObject calls received.
    pub gets: AtomicUsize,
    /// HeadObject calls received.
    pub heads: AtomicUsize,
    /// The next UploadPart takes its body at once but stores it 300 ms later (a slow
    /// replica left writing after the quorum acknowledged the part).
    pub slow_next_part: AtomicBool,
    /// Reads of this key fail as a dropped connection does (an object the backend cannot
    /// serve, while it answers every other request).
    pub unreadable_key: std::sync::Mutex<Option<String>>,
}

impl Faulty {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Faulty {
            inner: Arc::new(Memory::new(name)),
            mode: AtomicU8::new(UP),
            slow_puts: AtomicBool::new(false),
            late_failing_writes: AtomicBool::new(false),
            puts: AtomicUsize::new(0),
            replaced_for_gets: AtomicUsize::new(0),
            read_delay_ms: AtomicU64::new(0),
            gets: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            slow_next_part: AtomicBool::new(false),
            unreadable_key: std::sync::Mutex::new(None),
        })
    }
    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst)
    }
    async fn read_delay(&self) {
        let ms = self.read_delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    fn check_key(&self, k: &ObjectKey) -> Result<()> {
        if self.unreadable_key.lock().unwrap().as_deref() == Some(k.as_str()) {
            return Err(Error::ServiceUnavailable(
                "connection closed before message completed".into(),
            ));
        }
        self.check()
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
impl forward::Forward for Faulty {
    fn inner(&self) -> &dyn Backend {
        self.inner.as_ref()
    }
    async fn before(&self, _operation: &'static str) -> Result<()> {
        self.check()
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
        if self.late_failing_writes.load(Ordering::SeqCst) {
            let data = collect_body(body.stream, 64 << 20).await?;
            let (inner, b, k) = (self.inner.clone(), b.clone(), k.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = inner.put_object(&b, &k, data.into(), o).await;
            });
            return Err(Error::ServiceUnavailable("timed out".into()));
        }
        self.inner.put_object(b, k, body, o).await
    }
    async fn upload_part(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        id: &UploadId,
        part_number: u32,
        body: Body,
        o: PartOptions,
    ) -> Result<ETag> {
        self.check()?;
        if self.slow_next_part.swap(false, Ordering::SeqCst) {
            let data = collect_body(body.stream, 64 << 20).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            return self
                .inner
                .upload_part(b, k, id, part_number, data.into(), o)
                .await;
        }
        self.inner.upload_part(b, k, id, part_number, body, o).await
    }
    async fn get_object(&self, b: &BucketName, k: &ObjectKey, o: GetOptions) -> Result<GetResult> {
        self.check_key(k)?;
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.read_delay().await;
        if matches!(self.mode.load(Ordering::SeqCst), HANG_READS | HANG_GETS) {
            futures::future::pending::<()>().await;
        }
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
        self.check_key(k)?;
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.read_delay().await;
        if self.mode.load(Ordering::SeqCst) == HANG_READS {
            futures::future::pending::<()>().await;
        }
        self.inner.head_object(b, k, o).await
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
        if self.late_failing_writes.load(Ordering::SeqCst) {
            let inner = self.inner.clone();
            let (sb, sk, db, dk) = (sb.clone(), sk.clone(), db.clone(), dk.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = inner.copy_object(&sb, &sk, &db, &dk, o).await;
            });
            return Err(Error::ServiceUnavailable("timed out".into()));
        }
        self.inner.copy_object(sb, sk, db, dk, o).await
    }
}

pub struct Stack {
    pub backends: Vec<Arc<Faulty>>,
    pub replicated: Replicated,
}

pub fn stack(quorum: WriteQuorum, journal: Arc<Journal>) -> Stack {
    let backends: Vec<Arc<Faulty>> = ["r1", "r2", "r3"].iter().map(|n| Faulty::new(n)).collect();
    let replicated = replicated_over(&backends, quorum, journal);
    Stack {
        backends,
        replicated,
    }
}

pub fn replicated_over(
    backends: &[Arc<Faulty>],
    quorum: WriteQuorum,
    journal: Arc<Journal>,
) -> Replicated {
    replicated_with(
        backends,
        quorum,
        journal,
        Duration::from_millis(500),
        Hedge::Adaptive,
    )
}

/// [`replicated_over`] with this backend timeout and hedging.
pub fn replicated_with(
    backends: &[Arc<Faulty>],
    quorum: WriteQuorum,
    journal: Arc<Journal>,
    timeout: Duration,
    hedge: Hedge,
) -> Replicated {
    let replicas = backends
        .iter()
        .map(|b| Replica {
            backend: b.clone() as DynBackend,
            timeout,
        })
        .collect();
    let opts = ReplicationOptions {
        write_quorum: quorum,
        retries: 0,
        upload_id_key: [7; 32],
        hedge,
        ..Default::default()
    };
    Replicated::new("replicated", replicas, opts, journal).unwrap()
}

pub fn bucket() -> BucketName {
    BucketName::new("rep").unwrap()
}

pub fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

pub async fn read(b: &dyn Backend, k: &str) -> Result<Bytes> {
    let got = b
        .get_object(&bucket(), &key(k), GetOptions::default())
        .await?;
    collect_body(got.body, 64 << 20).await
}

/// Wait for stragglers to finish, then replay the journal once.
pub async fn settle(r: &Replicated) -> usize {
    for _ in 0..100 {
        if r.writes_in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.replay_journal().await
}

pub async fn version_on(b: &Faulty, k: &str) -> Option<String> {
    b.inner
        .head_object(&bucket(), &key(k), GetOptions::default())
        .await
        .ok()
        .and_then(|i| i.metadata.internal.get(VERSION_KEY).cloned())
}

/// A bucket on a fresh W=1 stack, and `k` written while the backends `down` are down (they
/// miss it and are journaled); they stay down.
pub async fn written_while_down(down: &[usize], k: &str, data: &'static str) -> Stack {
    let s = stack(WriteQuorum::One, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    for &i in down {
        s.backends[i].set(DOWN);
    }
    s.replicated
        .put_object(
            &bucket(),
            &key(k),
            Bytes::from(data).into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    s
}
