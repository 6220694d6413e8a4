//! # s3proxy-erasure
//!
//! Erasure-coded placement: one object stored over k + m backends at (k + m) / k times its
//! size, readable while any k of them are.
//!
//! - An object is cut into stripes (1 MiB by default); each stripe into k data shards and
//!   m parity shards (Reed–Solomon over GF(2^8), `reed-solomon-simd`). Shard i of every
//!   stripe goes to backend i, so each backend holds one *shard object* under the
//!   object's own key: its stripes' shards in order, each followed by a CRC-32C, then a
//!   trailer with the object's MD5. docs/ERASURE.md specifies the format.
//! - Every shard object carries the object's metadata and a record ([`ShardMeta`]) with
//!   the layout, the object's size and ETag, and the version stamp; shards are combined
//!   only within one version, and reads serve the newest version k backends hold.
//! - Writes stream (memory bounded by a few stripes) and are acknowledged once the write
//!   quorum (k by default) stored their shard; backends that missed it are journaled in
//!   the replication layer's [`Journal`](s3proxy_replication::Journal).
//! - Reads fetch k shards, data shards first; a parity shard takes over from one that is
//!   missing, stalls or fails its checksum, and the stripe is rebuilt. A ranged GET reads
//!   only the stripes covering it.
//! - HEAD and LIST show the object as a plain backend would; CopyObject copies shard by
//!   shard on each backend, never through the proxy.
//!
//! Why a crate of its own and not a mode of replication: replication's mechanisms
//! (teeing one body, comparing whole replicas, repairing by copying one) all assume every
//! backend holds the same bytes; erasure coding sends different bytes to each and must
//! decide per stripe. What is shared is reused from there: the write quorum type, the
//! version clock, the repair journal.
//!
//! ```
//! use std::sync::Arc;
//! use s3proxy_core::{Backend, BucketName, DynBackend, GetOptions, ObjectKey, PutOptions};
//! use s3proxy_erasure::{Erasure, ErasureOptions};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backends: Vec<DynBackend> = (0..3)
//!     .map(|i| Arc::new(s3proxy_backends::Memory::new(format!("m{i}"))) as DynBackend)
//!     .collect();
//! let journal = Arc::new(s3proxy_replication::Journal::in_memory());
//! let ec = Erasure::new("ec", backends, ErasureOptions::new(2, 1), journal).unwrap();
//! let (bucket, key) = (BucketName::new("photos").unwrap(), ObjectKey::new("k").unwrap());
//! ec.create_bucket(&bucket).await.unwrap();
//! ec.put_object(&bucket, &key, bytes::Bytes::from("hello").into(), PutOptions::default()).await.unwrap();
//! let got = ec.get_object(&bucket, &key, GetOptions::default()).await.unwrap();
//! let body = s3proxy_core::collect_body(got.body, 100).await.unwrap();
//! assert_eq!(&body[..], b"hello");
//! # });
//! ```
// An `unwrap` on request input or a backend's answer is a panic a client can cause:
// outside tests, errors are handled or the invariant is named with `expect`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

// Where each mechanism lives: the set, its options and fan-out (erasure); the format
// (format); writes (write); reads and rebuilding (read); the Backend impl (backend, with
// copy and listing).
mod backend;
mod copy;
mod erasure;
mod format;
mod inflight;
mod listing;
mod multipart;
mod read;
mod repair;
mod scan;
mod write;

pub use erasure::{Erasure, ErasureOptions};
pub use format::{
    CRC_LEN, DEFAULT_STRIPE, FORMAT_VERSION, Layout, MAX_STRIPE, SHARD_KEY, ShardMeta, TRAILER_LEN,
    check_shard, check_trailer, decode_stripe, encode_stripe, rebuild_shards, shard_crc, trailer,
};
pub use multipart::UPLOADS_PREFIX;
pub use repair::ShardRepairs;
pub use scan::{ScanOptions, ShardScan};
