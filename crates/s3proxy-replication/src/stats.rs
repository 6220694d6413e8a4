//! What the replication layer counts per backend for operators (the admin listener's
//! `/metrics` reads it at scrape time): repairs, tampering found, stamps that are not the
//! proxy's own; and the reporting of such stamps when a replica's version is ranked.

use crate::Replicated;
use crate::stamp::{Rank, Stamp, Trust};
use s3proxy_core::ObjectMetadata;
use std::sync::atomic::{AtomicU64, Ordering};

/// One backend's counters.
#[derive(Default)]
pub(crate) struct Counters {
    repair_copies: AtomicU64,
    repair_bytes: AtomicU64,
    tamper_detections: AtomicU64,
    invalid_stamps: AtomicU64,
    absent_stamps: AtomicU64,
    legacy_stamps: AtomicU64,
    hedged_reads: AtomicU64,
}

impl Counters {
    pub(crate) fn repaired(&self, bytes: u64) {
        self.repair_copies.fetch_add(1, Ordering::Relaxed);
        self.repair_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A read gave up waiting for this backend's first answer and asked another replica
    /// (or, in a lookup, went on without it).
    pub(crate) fn hedged(&self) {
        self.hedged_reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tampered(&self) {
        self.tamper_detections.fetch_add(1, Ordering::Relaxed);
    }

    fn unauthenticated(&self, trust: Trust) {
        let counter = match trust {
            Trust::Invalid => &self.invalid_stamps,
            Trust::Absent => &self.absent_stamps,
            Trust::Legacy => &self.legacy_stamps,
            Trust::Authenticated => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One backend's counters since the process started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Replicas of objects this process's repair copied onto the backend.
    pub repair_copies: u64,
    /// Bytes those copies moved.
    pub repair_bytes: u64,
    /// Reads from the backend that failed authentication (reported with
    /// [`Replicated::report_corrupt`](crate::Replicated::report_corrupt)).
    pub tamper_detections: u64,
    /// Versions seen on the backend whose stamp is not authenticated, by kind: a MAC that
    /// does not verify or no clock reading at all (`invalid`), no stamp (`absent`), a
    /// stamp of the format before stamps were authenticated (`legacy`).
    pub unauthenticated_stamps: [(Trust, u64); 3],
    /// Reads that stopped waiting for the backend's first answer after the hedge delay
    /// and asked another replica (or went on without it).
    pub hedged_reads: u64,
}

impl Replicated {
    /// Each backend's counters, by name.
    pub fn stats(&self) -> Vec<(String, ReplicaStats)> {
        self.replicas()
            .iter()
            .map(|r| {
                let c = &r.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let stats = ReplicaStats {
                    repair_copies: get(&c.repair_copies),
                    repair_bytes: get(&c.repair_bytes),
                    tamper_detections: get(&c.tamper_detections),
                    unauthenticated_stamps: [
                        (Trust::Invalid, get(&c.invalid_stamps)),
                        (Trust::Absent, get(&c.absent_stamps)),
                        (Trust::Legacy, get(&c.legacy_stamps)),
                    ],
                    hedged_reads: get(&c.hedged_reads),
                };
                (r.backend.name().to_string(), stats)
            })
            .collect()
    }

    /// The rank of the version replica `index` holds of (bucket, key); a stamp that is not
    /// the proxy's own is counted, and logged (a warning when it cannot be a stamp the
    /// proxy ever wrote).
    pub(crate) fn rank_seen(
        &self,
        bucket: &str,
        key: &str,
        index: usize,
        meta: &ObjectMetadata,
    ) -> Rank {
        let stamp = crate::stamp::version_of(meta);
        let rank = self.shared.stamp_key.rank(bucket, key, stamp);
        if rank.trust != Trust::Authenticated {
            let replica = &self.replicas()[index];
            replica.counters.unauthenticated(rank.trust);
            let name = replica.backend.name();
            if rank.trust == Trust::Invalid {
                log::warn!(
                    "{bucket}/{key}: replica {name} holds a version whose stamp {:?} does not verify; \
                     it ranks below every authenticated version",
                    stamp.unwrap_or("")
                );
            } else {
                log::debug!(
                    "{bucket}/{key}: replica {name} holds a version with an unauthenticated ({}) stamp",
                    rank.trust.name()
                );
            }
        }
        rank
    }

    /// The rank of a stamp, without reporting it (listings rank every object they list).
    pub(crate) fn rank_quietly(&self, bucket: &str, key: &str, stamp: Option<&str>) -> Rank {
        self.shared.stamp_key.rank(bucket, key, stamp)
    }

    /// A fresh stamp for a version of (bucket, key): the clock's next reading, sealed.
    pub(crate) fn new_stamp(&self, bucket: &str, key: &str) -> Stamp {
        self.shared
            .stamp_key
            .seal(bucket, key, &self.shared.clock.next())
    }

    /// Move the clock past the newest version located, when that is the proxy's own
    /// and within the skew bound.
    pub(crate) fn observe(&self, bucket: &str, key: &str, newest: &Rank) {
        if newest.trust != Trust::Authenticated {
            return;
        }
        // Authenticated, so a clock reading: parsing it cannot fail, but is not assumed.
        let Ok(stamp) = newest.stamp.parse::<Stamp>() else {
            return;
        };
        if !self.shared.clock.observe(&stamp) {
            log::warn!(
                "{bucket}/{key}: version stamp {} is more than {:?} ahead of this \
                 instance's clock; not adopting it (is another instance's clock wrong?)",
                stamp.reading(),
                crate::stamp::MAX_CLOCK_SKEW
            );
        }
    }
}
