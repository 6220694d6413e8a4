//! A backend that answers a PUT without reading its body (a broken server, a proxy that
//! lost the stream) has stored nothing the layer sealed: the PUT fails, for a small body
//! sealed on the request's task as for a large one through the sealing pipeline, and the
//! previous version is still served.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use s3proxy_backends::Memory;
use s3proxy_core::*;
use s3proxy_crypto::Encrypted;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Memory whose PUTs, while `drop_bodies` is set, answer 200 without reading the body.
struct DropsBodies {
    mem: Memory,
    drop_bodies: AtomicBool,
}

#[async_trait]
impl forward::Forward for DropsBodies {
    fn inner(&self) -> &dyn Backend {
        &self.mem
    }
    async fn put_object(
        &self,
        b: &BucketName,
        k: &ObjectKey,
        body: Body,
        o: PutOptions,
    ) -> Result<PutResult> {
        if self.drop_bodies.load(Ordering::SeqCst) {
            drop(body);
            return Ok(PutResult {
                etag: "0123456789abcdef0123456789abcdef".into(),
                last_modified: std::time::SystemTime::now(),
            });
        }
        self.mem.put_object(b, k, body, o).await
    }
}

#[tokio::test]
async fn a_put_whose_body_the_backend_never_read_fails_and_keeps_the_old_version() {
    let inner = Arc::new(DropsBodies {
        mem: Memory::new("mem"),
        drop_bodies: AtomicBool::new(false),
    });
    let enc = Encrypted::new(inner.clone(), ring());
    let bucket = b("unread");
    enc.create_bucket(&bucket).await.unwrap();
    // 4 KiB is sealed inline, 1 MiB through the pipeline.
    for size in [4 << 10, 1 << 20] {
        let key = ObjectKey::new(format!("obj-{size}")).unwrap();
        let old = Bytes::from(vec![1u8; size]);
        enc.put_object(&bucket, &key, old.clone().into(), PutOptions::default())
            .await
            .unwrap();
        inner.drop_bodies.store(true, Ordering::SeqCst);
        let new = Bytes::from(vec![2u8; size]);
        let r = enc
            .put_object(&bucket, &key, new.into(), PutOptions::default())
            .await;
        inner.drop_bodies.store(false, Ordering::SeqCst);
        assert!(r.is_err(), "size {size}: {r:?}");
        let got = enc
            .get_object(&bucket, &key, GetOptions::default())
            .await
            .unwrap();
        assert_eq!(
            collect_body(got.body, 2 << 20).await.unwrap(),
            old,
            "size {size}"
        );
    }
}
