//! The encryption layer passes the backend conformance suite like any backend.

use s3proxy_backends::{Memory, conformance};
use s3proxy_crypto::{Encrypted, Keyring, MasterKey};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_memory_passes_the_suite() {
    let inner = Arc::new(Memory::new("memory"));
    let enc = Arc::new(Encrypted::new(
        inner,
        Keyring::single(MasterKey::generate()),
    ));
    conformance::run_all(enc.clone(), "enc").await;
    conformance::concurrent_writers(enc, "enc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_filesystem_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(s3proxy_backends::Filesystem::new("fs", dir.path()).unwrap());
    let enc = Arc::new(Encrypted::new(
        inner,
        Keyring::single(MasterKey::generate()),
    ));
    conformance::run_all(enc, "encfs").await;
}
