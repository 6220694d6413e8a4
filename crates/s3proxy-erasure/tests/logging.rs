//! What the erasure layer logs at WARN, as an operator watching warnings sees it: a key
//! that no backend holds is an ordinary answer (s3fs asks for several absent names before
//! every file it creates), not a failure of three backends; a backend that does not answer
//! is one. Its own test binary: the logger is process-wide.

#[path = "../../s3proxy-replication/tests/common/mod.rs"]
mod common;

use common::{DOWN, Faulty, UP, bucket, key};
use s3proxy_core::*;
use s3proxy_erasure::*;
use s3proxy_replication::Journal;
use std::sync::{Arc, Mutex};

/// Every WARN (and worse) record's text, from every thread.
struct Warnings(Mutex<Vec<String>>);

impl log::Log for Warnings {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
            seen.push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings(Mutex::new(Vec::new()));

fn take_warnings() -> Vec<String> {
    std::mem::take(&mut *WARNINGS.0.lock().unwrap_or_else(|e| e.into_inner()))
}

#[tokio::test]
async fn an_absent_key_is_no_warning_and_a_backend_down_is_one() {
    log::set_logger(&WARNINGS).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let disks: Vec<Arc<Faulty>> = (0..3).map(|i| Faulty::new(&format!("d{i}"))).collect();
    let backends = disks.iter().map(|d| d.clone() as DynBackend).collect();
    let opts = ErasureOptions {
        timeout: std::time::Duration::from_secs(2),
        ..ErasureOptions::new(2, 1)
    };
    let ec = Erasure::new("ec", backends, opts, Arc::new(Journal::in_memory())).unwrap();
    ec.create_bucket(&bucket()).await.unwrap();
    let put = PutOptions::default();
    ec.put_object(
        &bucket(),
        &key("here"),
        bytes::Bytes::from_static(b"x").into(),
        put,
    )
    .await
    .unwrap();
    take_warnings();

    // What s3fs does before it creates a file: HEAD the name, the name + "/", and the
    // name + "_$folder$"; a GET of an absent key; a DELETE of one (204, nothing to do).
    for name in ["absent", "absent/", "absent_$folder$"] {
        let got = ec
            .head_object(&bucket(), &key(name), GetOptions::default())
            .await;
        assert!(matches!(got, Err(Error::NoSuchKey)), "{name}: {got:?}");
    }
    let got = ec
        .get_object(&bucket(), &key("absent"), GetOptions::default())
        .await;
    assert!(matches!(got, Err(Error::NoSuchKey)), "{:?}", got.err());
    ec.delete_object(&bucket(), &key("absent")).await.unwrap();
    let warned = take_warnings();
    assert!(
        warned.is_empty(),
        "absent keys logged as failures: {warned:#?}"
    );

    // A backend that does not answer is worth a warning, naming it.
    disks[1].set(DOWN);
    let info = ec
        .head_object(&bucket(), &key("here"), GetOptions::default())
        .await;
    assert_eq!(info.unwrap().size, 1);
    let warned = take_warnings();
    assert!(
        warned
            .iter()
            .any(|w| w.contains("1 of 3 backends failed") && w.contains("d1")),
        "{warned:#?}"
    );
    // Once: a backend that stays down is not warned of again on every request.
    for _ in 0..3 {
        ec.head_object(&bucket(), &key("here"), GetOptions::default())
            .await
            .unwrap();
    }
    let warned = take_warnings();
    assert!(warned.is_empty(), "warned again: {warned:#?}");
    // So is one that lacks a shard the others hold (it missed the write, or lost it).
    disks[1].set(UP);
    disks[1]
        .inner
        .delete_object(&bucket(), &key("here"))
        .await
        .unwrap();
    ec.head_object(&bucket(), &key("here"), GetOptions::default())
        .await
        .unwrap();
    let warned = take_warnings();
    assert!(
        warned
            .iter()
            .any(|w| w.contains("1 of 3 backends failed") && w.contains("d1")),
        "{warned:#?}"
    );
}
