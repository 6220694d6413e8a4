//! The replicated set passes the conformance suite every backend passes.

mod common;

use common::*;
use s3proxy_backends::conformance;
use s3proxy_replication::*;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_passes_the_conformance_suite() {
    let s = stack(WriteQuorum::Majority, Arc::new(Journal::in_memory()));
    conformance::run_all(Arc::new(s.replicated.clone()), "rep").await;
    conformance::concurrent_writers(Arc::new(s.replicated), "rep").await;
}
