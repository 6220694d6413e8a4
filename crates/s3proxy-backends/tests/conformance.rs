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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_never_adopts_or_recursively_deletes_what_it_did_not_create() {
    use s3proxy_core::*;
    let dir = tempfile::tempdir().unwrap();
    let fs = Filesystem::new("fs", dir.path()).unwrap();
    // A directory that is not a bucket (say, a state directory with the master key).
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("journal")).unwrap();
    std::fs::write(state.join("master.key"), b"secret").unwrap();
    let name = BucketName::new("state").unwrap();
    let r = fs.create_bucket(&name).await;
    assert!(matches!(r, Err(Error::AccessDenied(_))), "{r:?}");
    assert!(matches!(
        fs.delete_bucket(&name).await,
        Err(Error::NoSuchBucket)
    ));
    assert!(fs.list_buckets().await.unwrap().is_empty());
    assert_eq!(std::fs::read(state.join("master.key")).unwrap(), b"secret");
    // A bucket of ours holding something it did not put there is not deleted.
    let b = BucketName::new("mine").unwrap();
    fs.create_bucket(&b).await.unwrap();
    std::fs::write(dir.path().join("mine").join("notes.txt"), b"keep").unwrap();
    assert!(matches!(
        fs.delete_bucket(&b).await,
        Err(Error::BucketNotEmpty)
    ));
    assert_eq!(
        std::fs::read(dir.path().join("mine/notes.txt")).unwrap(),
        b"keep"
    );
    fs.head_bucket(&b).await.unwrap();
    // Once it holds only what the backend made, it goes, and can be created again.
    std::fs::remove_file(dir.path().join("mine/notes.txt")).unwrap();
    let k = ObjectKey::new("k").unwrap();
    fs.put_object(
        &b,
        &k,
        bytes::Bytes::from("x").into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    fs.delete_object(&b, &k).await.unwrap();
    fs.delete_bucket(&b).await.unwrap();
    assert!(!dir.path().join("mine").exists());
    fs.create_bucket(&b).await.unwrap();
    // What the backend creates is its owner's only: 0700 directories, 0600 files.
    fs.put_object(
        &b,
        &k,
        bytes::Bytes::from("x").into(),
        PutOptions::default(),
    )
    .await
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mine = dir.path().join("mine");
    for entry in walk(&mine) {
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", entry.display());
    }
    // A creation interrupted before its marker is finished, not refused.
    let half = dir.path().join("half");
    std::fs::create_dir_all(half.join("objects")).unwrap();
    std::fs::create_dir_all(half.join("tmp")).unwrap();
    fs.create_bucket(&BucketName::new("half").unwrap())
        .await
        .unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
