//! The conformance suite against the S3 backend, talking to real S3 servers started on
//! loopback: moto (`moto_server`), s3s-fs, and another s3proxy.
//!
//! A test skips, saying why, only when its server binary is not installed; scripts/test.sh
//! installs them, so CI runs every one.

use s3proxy_backends::{S3, S3Options, conformance};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "AKS3PROXYTEST";
const SECRET_KEY: &str = "s3proxy-test-secret-key";

/// A server process this test started; killed (by its own PID) when the test ends.
struct Server {
    child: Child,
    name: &'static str,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Wait until the server accepts connections, or fail the test with its exit status.
    fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited before listening: {status}", self.name);
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not listen on port {}", self.name, self.port);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// The executable `name` on PATH (or in ~/.cargo/bin, where `cargo install` puts it).
fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

async fn backend(name: &str, server: &Server, bucket_prefix: Option<&str>) -> Arc<S3> {
    let opts = S3Options {
        endpoint: Some(server.endpoint()),
        access_key: Some(ACCESS_KEY.into()),
        secret_key: Some(SECRET_KEY.into()),
        bucket_prefix: bucket_prefix.map(str::to_string),
        connect_timeout_secs: 5,
        ..Default::default()
    };
    Arc::new(S3::new(name, opts).await.expect("build the S3 backend"))
}

async fn run_suite(backend: Arc<S3>, prefix: &str) {
    conformance::run_all(backend.clone(), prefix).await;
    conformance::concurrent_writers(backend, prefix).await;
}

/// Every key of [`conformance::edge_keys`] but those the server cannot route, put, read
/// back and listed in order.
async fn edge_keys_except(backend: Arc<S3>, prefix: &str, unroutable: &[&str]) {
    use s3proxy_core::*;
    let bucket = BucketName::new(format!("{prefix}-keys")).unwrap();
    backend.create_bucket(&bucket).await.expect("create");
    let mut keys: Vec<String> = [
        "a",
        "a/",
        "a/b",
        "//",
        "a//b",
        "..",
        ".",
        "../x",
        "a/../b",
        "./a",
        "with space",
        "100%",
        "a+b",
        "ünïcödé/文件",
        "#hash?q=1&x",
        "\\back",
        "tab\there",
        "new\nline",
        "/leading",
        "trailing/",
    ]
    .iter()
    .filter(|k| !unroutable.contains(k))
    .map(|s| s.to_string())
    .collect();
    keys.push("k".repeat(1024));
    keys.push("é".repeat(512));
    for key in &keys {
        let k = ObjectKey::new(key.as_str()).unwrap();
        backend
            .put_object(
                &bucket,
                &k,
                bytes::Bytes::from(key.clone()).into(),
                PutOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
        let got = backend
            .get_object(&bucket, &k, GetOptions::default())
            .await
            .unwrap();
        let body = collect_body(got.body, 4096).await.unwrap();
        assert_eq!(body, key.as_bytes(), "key {key:?}");
    }
    let page = backend
        .list_objects(
            &bucket,
            ListOptions {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    let listed: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
    keys.sort();
    assert_eq!(listed, keys, "every key listed once, in byte order");
    for key in &keys {
        backend
            .delete_object(&bucket, &ObjectKey::new(key.as_str()).unwrap())
            .await
            .unwrap();
    }
    backend.delete_bucket(&bucket).await.expect("delete bucket");
}

fn start_moto() -> Option<Server> {
    let Some(bin) = find_binary("moto_server") else {
        eprintln!("SKIPPED: moto_server is not installed (pip install 'moto[server]')");
        return None;
    };
    let port = free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let mut server = Server {
        child,
        name: "moto_server",
        port,
        _dir: None,
    };
    server.wait_ready();
    Some(server)
}

fn start_s3s_fs() -> Option<Server> {
    let Some(bin) = find_binary("s3s-fs") else {
        eprintln!(
            "SKIPPED: s3s-fs is not installed \
             (cargo install s3s-fs@0.14.1 --features binary --locked)"
        );
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let mut server = Server {
        child,
        name: "s3s-fs",
        port,
        _dir: Some(dir),
    };
    server.wait_ready();
    Some(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_passes_the_suite() {
    let Some(server) = start_moto() else { return };
    // A bucket prefix, so the name mapping is exercised too.
    let backend = backend("moto", &server, Some("r1-")).await;
    // moto's router (werkzeug) answers 404 to any path holding %0A, whoever the client
    // (boto3 included): a key with a newline cannot be stored there at all. Every other
    // check of the suite runs unchanged; the edge keys run without that one key.
    conformance::buckets(backend.clone(), "moto").await;
    conformance::objects(backend.clone(), "moto").await;
    edge_keys_except(backend.clone(), "moto", &["new\nline"]).await;
    conformance::listing(backend.clone(), "moto").await;
    conformance::copy(backend.clone(), "moto").await;
    conformance::multipart(backend, "moto").await;
    // Not run against moto: its threaded server shares one value buffer per key between
    // requests, so a PUT that replaces a key while another request still reads it fails
    // with a 500 ("I/O operation on closed file") or a truncated body. That is moto's
    // race, not the backend's; s3s-fs and s3proxy run this check.
}

/// The S3 backend in front of s3s-fs, with two gaps of s3s-fs 0.14.1 bridged in test code
/// so the rest of the suite can run (the S3 backend itself reports what the server says):
/// - ListMultipartUploads is not implemented (`NotImplemented`): answered from the
///   uploads this wrapper saw created and not yet completed or aborted. The suite lists
///   uploads in its multipart check and in every cleanup.
/// - A PUT into a missing bucket creates the bucket directory instead of failing with
///   NoSuchBucket, and a GET there answers NoSuchKey: the wrapper checks the bucket.
struct S3sFs {
    inner: Arc<S3>,
    uploads: std::sync::Mutex<Vec<(String, s3proxy_core::UploadInfo)>>,
}

mod s3s_fs_wrapper {
    use super::S3sFs;
    use async_trait::async_trait;
    use s3proxy_core::*;

    #[async_trait]
    impl forward::Forward for S3sFs {
        fn inner(&self) -> &dyn Backend {
            self.inner.as_ref()
        }
        async fn put_object(
            &self,
            bucket: &BucketName,
            key: &ObjectKey,
            body: Body,
            opts: PutOptions,
        ) -> Result<PutResult> {
            self.inner.head_bucket(bucket).await?;
            self.inner.put_object(bucket, key, body, opts).await
        }
        async fn get_object(
            &self,
            bucket: &BucketName,
            key: &ObjectKey,
            opts: GetOptions,
        ) -> Result<GetResult> {
            match self.inner.get_object(bucket, key, opts).await {
                Err(Error::NoSuchKey) => {
                    self.inner.head_bucket(bucket).await?;
                    Err(Error::NoSuchKey)
                }
                other => other,
            }
        }
        async fn delete_objects(
            &self,
            bucket: &BucketName,
            keys: Vec<ObjectKey>,
        ) -> Result<Vec<DeleteOutcome>> {
            self.inner.delete_objects(bucket, keys).await
        }
        async fn create_multipart_upload(
            &self,
            bucket: &BucketName,
            key: &ObjectKey,
            opts: MultipartOptions,
        ) -> Result<UploadId> {
            let id = self
                .inner
                .create_multipart_upload(bucket, key, opts)
                .await?;
            self.uploads.lock().unwrap().push((
                bucket.to_string(),
                UploadInfo {
                    key: key.to_string(),
                    upload_id: id.clone(),
                    initiated: std::time::SystemTime::now(),
                },
            ));
            Ok(id)
        }
        async fn upload_part_copy(
            &self,
            bucket: &BucketName,
            key: &ObjectKey,
            upload_id: &UploadId,
            part_number: u32,
            src_bucket: &BucketName,
            src_key: &ObjectKey,
            src: GetOptions,
        ) -> Result<ETag> {
            self.inner
                .upload_part_copy(
                    bucket,
                    key,
                    upload_id,
                    part_number,
                    src_bucket,
                    src_key,
                    src,
                )
                .await
        }
        async fn complete_multipart_upload(
            &self,
            bucket: &BucketName,
            key: &ObjectKey,
            upload_id: &UploadId,
            parts: Vec<CompletedPart>,
        ) -> Result<PutResult> {
            let done = self
                .inner
                .complete_multipart_upload(bucket, key, upload_id, parts)
                .await?;
            self.uploads
                .lock()
                .unwrap()
                .retain(|(_, u)| &u.upload_id != upload_id);
            Ok(done)
        }
        async fn abort_multipart_upload(
            &self,
            bucket: &BucketName,
            key: &ObjectKey,
            upload_id: &UploadId,
        ) -> Result<()> {
            self.inner
                .abort_multipart_upload(bucket, key, upload_id)
                .await?;
            self.uploads
                .lock()
                .unwrap()
                .retain(|(_, u)| &u.upload_id != upload_id);
            Ok(())
        }
        async fn list_multipart_uploads(
            &self,
            bucket: &BucketName,
            opts: ListUploadsOptions,
        ) -> Result<ListUploadsResult> {
            match self
                .inner
                .list_multipart_uploads(bucket, opts.clone())
                .await
            {
                Err(Error::NotImplemented(_)) => {
                    let uploads = self
                        .uploads
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(b, u)| b == bucket.as_str() && u.key.starts_with(&opts.prefix))
                        .map(|(_, u)| u.clone())
                        .collect();
                    Ok(ListUploadsResult {
                        uploads,
                        is_truncated: false,
                    })
                }
                other => other,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_passes_the_suite() {
    let Some(server) = start_s3s_fs() else { return };
    let backend = Arc::new(S3sFs {
        inner: backend("s3s-fs", &server, None).await,
        uploads: Default::default(),
    });
    conformance::buckets(backend.clone(), "s3s").await;
    conformance::objects(backend.clone(), "s3s").await;
    // Not run against s3s-fs: it stores each key as a file path under the bucket's
    // directory, so keys that are prefixes of others ("a" and "a/b"), dot and empty
    // segments, non-empty "dir/" objects and keys over 255 bytes per segment cannot be
    // stored, and the listing check's "dir1" beside "dir1/f0" cannot coexist. Those are
    // limits of its storage model, not of the S3 backend; moto and s3proxy run both.
    conformance::copy(backend.clone(), "s3s").await;
    // The suite's multipart check completes with a wrong part ETag and expects
    // InvalidPart; s3s-fs neither lists part ETags nor checks them, so nothing can
    // refuse it there. The rest of that check runs here, but for one more s3s-fs gap.
    multipart_without_etag_checks(backend.clone(), "s3s").await;
    conformance::concurrent_writers(backend, "s3s").await;
}

async fn multipart_without_etag_checks(backend: Arc<S3sFs>, prefix: &str) {
    use s3proxy_core::*;
    let bucket = BucketName::new(format!("{prefix}-mpu")).unwrap();
    let key = ObjectKey::new("big/object").unwrap();
    backend.create_bucket(&bucket).await.expect("create");
    let id = backend
        .create_multipart_upload(&bucket, &key, MultipartOptions::default())
        .await
        .expect("create upload");
    let part1 = conformance::pattern(MIN_PART_SIZE as usize, 1);
    let part2 = conformance::pattern(1234, 2);
    let mut completed = vec![];
    for (n, data) in [(2u32, &part2), (1, &part1)] {
        let etag = backend
            .upload_part(
                &bucket,
                &key,
                &id,
                n,
                data.clone().into(),
                PartOptions::default(),
            )
            .await
            .expect("upload part");
        completed.push(CompletedPart {
            part_number: n,
            etag,
        });
    }
    completed.sort_by_key(|p| p.part_number);
    let listed = backend
        .list_parts(&bucket, &key, &id, ListPartsOptions::default())
        .await
        .expect("list parts");
    let numbers: Vec<u32> = listed.parts.iter().map(|p| p.part_number).collect();
    assert_eq!(numbers, [1, 2]);
    let reversed: Vec<CompletedPart> = completed.iter().rev().cloned().collect();
    assert!(matches!(
        backend
            .complete_multipart_upload(&bucket, &key, &id, reversed)
            .await,
        Err(Error::InvalidPartOrder)
    ));
    let done = backend
        .complete_multipart_upload(&bucket, &key, &id, completed.clone())
        .await
        .expect("complete");
    let want = multipart_etag(completed.iter().map(|p| p.etag.as_str())).unwrap();
    assert_eq!(done.etag, want, "multipart ETag");
    let got = backend
        .get_object(&bucket, &key, GetOptions::default())
        .await
        .expect("get");
    let body = collect_body(got.body, 8 << 20).await.unwrap();
    assert!(body.len() == part1.len() + part2.len() && body.starts_with(&part1));
    let id2 = backend
        .create_multipart_upload(&bucket, &key, MultipartOptions::default())
        .await
        .expect("create");
    backend
        .abort_multipart_upload(&bucket, &key, &id2)
        .await
        .expect("abort");
    // Not checked: s3s-fs 0.14.1 stores a part for an aborted upload id instead of
    // answering NoSuchUpload (it does not look the upload up).
    backend.delete_object(&bucket, &key).await.expect("delete");
    backend.delete_bucket(&bucket).await.expect("delete bucket");
}

/// The s3proxy binary to use as a backend: `$S3PROXY_BIN`, else the newest of
/// target/debug/s3proxy and target/release/s3proxy (`cargo build -p s3proxy-bin`).
fn s3proxy_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("S3PROXY_BIN").map(PathBuf::from)
        && bin.is_file()
    {
        return Some(bin);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("s3proxy"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn start_s3proxy() -> Option<Server> {
    let Some(bin) = s3proxy_binary() else {
        eprintln!("SKIPPED: no s3proxy binary (cargo build -p s3proxy-bin, or set S3PROXY_BIN)");
        return None;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("s3proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
state_dir = "{state}"

[[credentials]]
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"

[[backends]]
name = "memory"
kind = "memory"
"#,
            state = dir.path().join("state").display(),
        ),
    )
    .expect("write the config");
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3proxy");
    let mut server = Server {
        child,
        name: "s3proxy",
        port,
        _dir: Some(dir),
    };
    server.wait_ready();
    Some(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3proxy_passes_the_suite() {
    let Some(server) = start_s3proxy() else {
        return;
    };
    run_suite(backend("s3proxy", &server, None).await, "prx").await;
}
