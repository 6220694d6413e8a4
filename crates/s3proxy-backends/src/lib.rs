//! # s3proxy-backends
//!
//! Storage engines behind s3proxy, each an implementation of [`s3proxy_core::Backend`]:
//!
//! - [`Memory`]: everything in process memory; for tests and as a fast backend for
//!   benchmarks.
//! - [`Filesystem`]: objects as files under a directory; the embedded default. Every key S3
//!   accepts is stored (names are hashed, so `a`, `a/` and `a/b` coexist and no key can
//!   reach outside its bucket), and writes are atomic and crash-safe.
//! - [`S3`]: any S3-compatible service (AWS, MinIO, Ceph, Garage, another s3proxy),
//!   through the official `aws-sdk-s3` (HEAD, GET, PUT and DELETE of one object over a
//!   lean hyper client signed by `aws-sigv4` for plain-HTTP endpoints), configured by
//!   [`S3Options`].
//!
//! `conformance` (behind the `conformance` feature) is the behaviour suite every backend
//! must pass; the tests of this crate and of the layers above run it.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use s3proxy_core::{Backend, BucketName};
//! use s3proxy_backends::Memory;
//! let backend = Memory::new("mem");
//! backend.create_bucket(&BucketName::new("demo").unwrap()).await.unwrap();
//! assert_eq!(backend.list_buckets().await.unwrap()[0].name, "demo");
//! # });
//! ```
// An `unwrap` on request input or a backend's answer is a panic a client can cause:
// outside tests, errors are handled or the invariant is named with `expect`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod common;
#[cfg(feature = "conformance")]
pub mod conformance;
mod filesystem;
mod memory;
mod s3;

pub use filesystem::Filesystem;
pub use memory::Memory;
pub use s3::{RESERVED_PREFIX, S3, S3Options, USER_ESCAPE};
