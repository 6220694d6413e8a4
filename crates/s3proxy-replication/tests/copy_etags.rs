//! CopyObject over replicas whose identical bytes carry different backend ETags (an S3
//! server and s3s-fs give one multipart object different ETags): each replica's copy is
//! held to its own ETag of the located version, and the answer is the ETag a HEAD of the
//! new object shows.

mod common;

use common::*;
use s3proxy_backends::conformance;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_all_copy_holds_each_replica_to_its_own_etag() {
    let s = stack(WriteQuorum::All, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let body = conformance::pattern(100_000, 3);
    s.replicated
        .put_object(
            &bucket(),
            &key("src"),
            body.clone().into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // r1 holds the same version as a one-part multipart object: same bytes, same stamp,
    // another ETag.
    let r1 = &s.backends[0].inner;
    let stored = r1
        .head_object(&bucket(), &key("src"), GetOptions::default())
        .await
        .unwrap();
    let id = r1
        .create_multipart_upload(
            &bucket(),
            &key("src"),
            MultipartOptions {
                metadata: stored.metadata.clone(),
            },
        )
        .await
        .unwrap();
    let etag = r1
        .upload_part(
            &bucket(),
            &key("src"),
            &id,
            1,
            body.clone().into(),
            PartOptions::default(),
        )
        .await
        .unwrap();
    r1.complete_multipart_upload(
        &bucket(),
        &key("src"),
        &id,
        vec![CompletedPart {
            part_number: 1,
            etag,
        }],
    )
    .await
    .unwrap();
    let on_r1 = r1
        .head_object(&bucket(), &key("src"), GetOptions::default())
        .await
        .unwrap();
    assert_ne!(on_r1.etag, stored.etag);
    for (dst, directive) in [
        ("copy", MetadataDirective::Copy),
        (
            "replaced",
            MetadataDirective::Replace(ObjectMetadata::default()),
        ),
    ] {
        let copied = s
            .replicated
            .copy_object(
                &bucket(),
                &key("src"),
                &bucket(),
                &key(dst),
                CopyOptions {
                    directive,
                    ..Default::default()
                },
            )
            .await
            .expect("every replica copies its own copy");
        let head = s
            .replicated
            .head_object(&bucket(), &key(dst), GetOptions::default())
            .await
            .unwrap();
        assert_eq!(copied.etag, head.etag, "{dst}");
        for b in &s.backends {
            assert!(
                read(&*b.inner, dst).await.unwrap() == body,
                "{dst} on {}",
                b.name()
            );
        }
    }
}
