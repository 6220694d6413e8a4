//! The conformance suite against the memory and filesystem backends.

use s3proxy_backends::{Filesystem, Memory, conformance};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_passes_the_suite() {
    let backend = Arc::new(Memory::new("memory"));
    conformance::run_all(backend.clone(), "mem").await;
    conformance::concurrent_writers(backend, "mem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Filesystem::new("fs", dir.path()).unwrap());
    conformance::run_all(backend.clone(), "fs").await;
    conformance::concurrent_writers(backend, "fs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_index_survives_restart_and_keys_stay_inside() {
    use s3proxy_core::*;
    let dir = tempfile::tempdir().unwrap();
    let bucket = BucketName::new("persist").unwrap();
    {
        let fs = Filesystem::new("fs", dir.path()).unwrap();
        fs.create_bucket(&bucket).await.unwrap();
        for key in ["a", "a/", "../../escape", "/etc/passwd"] {
            fs.put_object(
                &bucket,
                &ObjectKey::new(key).unwrap(),
                bytes::Bytes::from(key).into(),
                PutOptions::default(),
            )
            .await
            .unwrap();
        }
    }
    // Every file written lives under the bucket's directory.
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut files = vec![];
    walk(dir.path(), &mut files);
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(dir.path().join("persist"))),
        "{files:?}"
    );
    let fs = Filesystem::new("fs", dir.path()).unwrap();
    let page = fs
        .list_objects(
            &bucket,
            ListOptions {
                max_keys: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["../../escape", "/etc/passwd", "a", "a/"]);
}
