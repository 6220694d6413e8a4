//! # s3proxy-replication
//!
//! Fan-out replication: several backends behaving as one, under a write quorum, with
//! failover on reads and repair that loses no acknowledged write.
//!
//! - Writes go to every backend concurrently (the body teed as it streams). A write
//!   succeeds once the write quorum acknowledged it; backends that missed it are recorded
//!   in the durable [`Journal`] and repaired when they are healthy again (also after a
//!   restart). Below the quorum the write fails with 503 and every replica keeps
//!   serving the version it had: the write is withdrawn before any backend can commit
//!   it (see `quorum`), and nothing is deleted.
//! - Every version carries a [`Stamp`] from the [`Hlc`] in its internal metadata, authenticated with a
//!   key derived from the shared secret; replicas are compared by it (a stamp that does
//!   not verify ranks below every one that does), never by backend timestamps, and clients see the same ETag, size, metadata and
//!   Last-Modified whichever replica answers.
//! - Reads ask every available replica for the object's metadata, serve from one holding
//!   the newest version, fail over on error or stall (also in the middle of a body), and
//!   repair replicas found missing, stale or corrupt. A replica that has not answered
//!   within its hedge delay is raced by another ([`Hedge`]); the metadata lookup goes on
//!   without it only once enough replicas answered that it cannot hold a newer
//!   acknowledged version.
//! - Deletes are journaled as tombstones for backends that missed them, so no repair brings
//!   a deleted object back.
//! - Each backend has a circuit breaker; every fan-out logs one line with each backend's
//!   outcome.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use s3proxy_core::DynBackend;
//! use s3proxy_replication::*;
//!
//! fn three_way(a: DynBackend, b: DynBackend, c: DynBackend) -> s3proxy_core::Result<Replicated> {
//!     let replicas = [a, b, c]
//!         .into_iter()
//!         .map(|backend| Replica { backend, timeout: Duration::from_secs(10) })
//!         .collect();
//!     let opts = ReplicationOptions { write_quorum: WriteQuorum::Majority, ..Default::default() };
//!     Replicated::new("replicated", replicas, opts, Arc::new(Journal::in_memory()))
//! }
//! ```
// An `unwrap` on request input or a backend's answer is a panic a client can cause:
// outside tests, errors are handled or the invariant is named with `expect`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

// Where each mechanism lives: the set and its options (replicated, options); calling the
// backends (fanout); reads, hedged first answers and mid-body failover (read, hedge, failover); writes under the quorum
// and what a missed quorum leaves (write, tee, quorum); operations in flight per key
// (inflight); version stamps and their authentication (stamp); counters for operators
// (stats); the repair journal and repair (journal, repair,
// background, repair_scan, failing_repairs); backend health (health); multipart uploads
// (upload_id, uploads, part_turns); the Backend impl (backend, with copy and listing).
mod backend;
mod background;
mod copy;
mod failing_repairs;
mod failover;
mod fanout;
mod health;
mod hedge;
mod inflight;
mod journal;
mod listing;
mod options;
mod part_turns;
mod quorum;
mod read;
mod repair;
mod repair_scan;
mod replicated;
mod stamp;
mod stats;
mod tee;
mod upload_id;
mod uploads;
mod write;

pub use health::{Health, HealthSnapshot};
pub use journal::{Entry, Journal, Missed, Repair, Target};
pub use options::{Hedge, ReadPreference, Replica, ReplicationOptions, WriteQuorum};
pub use repair_scan::RepairSummary;
pub use replicated::Replicated;
pub use stamp::{
    ETAG_KEY, Hlc, MAX_CLOCK_SKEW, MalformedStamp, Stamp, Trust, VERSION_KEY, stamp_time,
};
pub use stats::ReplicaStats;
