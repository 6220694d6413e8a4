//! Multipart uploads over replicas: upload ids, their listing, and retried completions.

mod common;

use bytes::Bytes;
use common::*;
use s3proxy_backends::conformance;
use s3proxy_core::*;
use s3proxy_replication::*;
use std::sync::Arc;
use std::time::Duration;

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

/// Parts uploaded side by side (as every client uploads them) are not overlapping writes of
/// the object: they leave nothing for repair to check, and the completed object is on every
/// replica without a repair copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_parts_leave_nothing_to_repair() {
    let journal = Arc::new(Journal::in_memory());
    let s = stack(WriteQuorum::One, journal.clone());
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let id = s
        .replicated
        .create_multipart_upload(&bucket(), &key("p"), MultipartOptions::default())
        .await
        .unwrap();
    let uploads = (1..=4u32).map(|n| {
        let (r, id) = (&s.replicated, &id);
        async move {
            let etag = r
                .upload_part(
                    &bucket(),
                    &key("p"),
                    id,
                    n,
                    conformance::pattern(if n < 4 { 5 << 20 } else { 1000 }, n as u8).into(),
                    PartOptions::default(),
                )
                .await
                .unwrap();
            CompletedPart {
                part_number: n,
                etag,
            }
        }
    });
    let parts = futures::future::join_all(uploads).await;
    s.replicated
        .complete_multipart_upload(&bucket(), &key("p"), &id, parts)
        .await
        .unwrap();
    for _ in 0..100 {
        if s.replicated.writes_in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        journal.is_empty(),
        "left for repair: {:?}",
        journal.pending()
    );
    let puts: usize = s
        .backends
        .iter()
        .map(|b| b.puts.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    assert_eq!(puts, 0, "repair copied the object");
    for b in &s.backends {
        assert!(
            version_on(b, "p").await.is_some(),
            "{} lacks it",
            b.inner.name()
        );
    }
}

/// A part uploaded twice in a row, the first time with one replica left writing after the
/// quorum acknowledged it: every replica ends with the second body, so ListParts (from any
/// replica) and the completion see the part the client uploaded last. Before part writes
/// took turns, the slow replica stored the second body and then the first over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_uploaded_again_while_a_replica_still_writes_it_keeps_the_second_body() {
    let s = stack(WriteQuorum::Majority, Arc::new(Journal::in_memory()));
    s.replicated.create_bucket(&bucket()).await.unwrap();
    let id = s
        .replicated
        .create_multipart_upload(&bucket(), &key("twice"), MultipartOptions::default())
        .await
        .unwrap();
    s.backends[2]
        .slow_next_part
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (b, k) = (bucket(), key("twice"));
    // Bodies of many chunks, more than the fan-out buffers for a replica that does not
    // read: a replica waiting for its turn must not hold up the others' copies.
    let body = |fill: u8| {
        let chunks = (0..24).map(move |_| Ok(Bytes::from(vec![fill; 64 << 10])));
        Body {
            stream: Box::pin(futures::stream::iter(chunks)),
            length: 24 << 16,
        }
    };
    let upload = |fill: u8| {
        s.replicated
            .upload_part(&b, &k, &id, 1, body(fill), PartOptions::default())
    };
    upload(b'1').await.unwrap();
    let started = std::time::Instant::now();
    let second = upload(b'2').await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // the slow write has landed
    for b in &s.backends {
        let uploads = b
            .inner
            .list_multipart_uploads(&bucket(), ListUploadsOptions::default())
            .await
            .unwrap();
        let parts = b
            .inner
            .list_parts(
                &bucket(),
                &key("twice"),
                &uploads.uploads[0].upload_id,
                ListPartsOptions::default(),
            )
            .await
            .unwrap();
        let etags: Vec<_> = parts.parts.iter().map(|p| p.etag.to_string()).collect();
        assert_eq!(etags, [second.to_string()], "part 1 on {}", b.inner.name());
    }
    let listed = s
        .replicated
        .list_parts(&bucket(), &key("twice"), &id, ListPartsOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.parts[0].etag.to_string(), second.to_string());
    s.replicated
        .complete_multipart_upload(
            &bucket(),
            &key("twice"),
            &id,
            vec![CompletedPart {
                part_number: 1,
                etag: second.clone(),
            }],
        )
        .await
        .unwrap();
    for b in &s.backends {
        let got = read(b.inner.as_ref(), "twice").await.unwrap();
        assert!(got.len() == 24 << 16 && got.iter().all(|&c| c == b'2'));
    }
}
