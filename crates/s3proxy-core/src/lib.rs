//! # s3proxy-core
//!
//! The foundation every other s3proxy crate builds on:
//!
//! - [`Backend`]: one object-safe async trait modelled on what S3 offers (buckets, objects,
//!   multipart uploads). Storage engines, the encryption layer and the replication layer all
//!   implement it, so layers compose into stacks. [`forward::Forward`] makes a wrapper that changes
//!   a few calls and passes the rest on.
//! - The object model: [`ObjectInfo`], [`ObjectMetadata`], the option structs
//!   ([`PutOptions`], [`GetOptions`], [`CopyOptions`], [`ListOptions`]) and results.
//! - Validated names: [`BucketName`] and [`ObjectKey`]; entity tags: [`ETag`].
//! - [`Error`]: one error enum whose variants map onto S3 error codes and HTTP statuses.
//! - Shared S3 semantics that every backend needs the same way: listing with delimiters and
//!   pagination ([`list::paginate`]), byte ranges ([`ByteRange`]) and conditional requests
//!   ([`Conditions`]).
//!
//! ```
//! use s3proxy_core::{BucketName, ObjectKey};
//! let bucket = BucketName::new("photos").unwrap();
//! let key = ObjectKey::new("2024/holiday.jpg").unwrap();
//! assert_eq!(bucket.as_str(), "photos");
//! assert_eq!(key.as_str(), "2024/holiday.jpg");
//! assert!(BucketName::new("Not_Valid").is_err());
//! ```
// An `unwrap` on request input or a backend's answer is a panic a client can cause:
// outside tests, errors are handled or the invariant is named with `expect`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod backend;
mod body;
mod conditions;
mod error;
mod etag;
pub mod forward;
pub mod list;
mod model;
mod names;
mod range;
pub mod replicas;

pub use backend::{Backend, DynBackend};
pub use body::{ByteStream, Md5Stream, collect_body};
pub use conditions::Conditions;
pub use error::{BackendErrorKind, Error, Result};
pub use etag::ETag;
/// The type of the `extensions` of [`GetOptions`] and [`GetResult`] (see [`replicas`]).
pub use http::Extensions;
pub use model::*;
pub use names::{BucketName, ObjectKey, UploadId};
pub use range::ByteRange;
