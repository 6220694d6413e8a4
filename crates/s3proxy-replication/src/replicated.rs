//! The replicated set: its backends with their health, its clock, its journal and the
//! state its mechanisms share, and how it is built.

use crate::health::{Health, HealthSnapshot};
use crate::inflight::InflightSlot;
use crate::journal::{EntryId, Journal};
use crate::options::{Replica, ReplicationOptions};
use crate::stamp::{Hlc, StampKey};
use crate::stats::Counters;
use s3proxy_core::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One backend of the set, with its health.
pub(crate) struct ReplicaState {
    pub(crate) backend: DynBackend,
    pub(crate) timeout: Duration,
    pub(crate) health: Health,
    pub(crate) counters: Counters,
}

/// What every clone of a [`Replicated`] shares.
/// See [`Shared::repair_backoff`].
pub(crate) type RepairBackoff = std::collections::HashMap<EntryId, (u32, Instant, String, Instant)>;

pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) replicas: Vec<ReplicaState>,
    pub(crate) opts: ReplicationOptions,
    pub(crate) clock: Hlc,
    /// Authenticates version stamps (derived from the upload id key).
    pub(crate) stamp_key: StampKey,
    pub(crate) journal: Arc<Journal>,
    pub(crate) wake_repair: tokio::sync::Notify,
    /// Writes, deletes and repairs in flight per (bucket, key).
    pub(crate) inflight:
        std::sync::Mutex<std::collections::HashMap<(String, String), InflightSlot>>,
    /// Journal entries whose repair failed: (failures so far, not before, the stamp of the
    /// entry that failed, when). A newer entry of the key waits only a second. Keeps one key a backend cannot take from being retried on every
    /// pass, which would keep tripping that backend's circuit and starve the repair of
    /// every other key.
    pub(crate) repair_backoff: std::sync::Mutex<RepairBackoff>,
    /// Part writes to each replica take turns per part (see `part_turns`).
    pub(crate) part_turns: crate::part_turns::PartTurns,
}

/// Several backends behaving as one; see the [crate documentation](crate).
#[derive(Clone)]
pub struct Replicated {
    pub(crate) shared: Arc<Shared>,
}

impl Replicated {
    /// Replicate over `replicas`, recording missed writes in `journal`.
    pub fn new(
        name: impl Into<String>,
        replicas: Vec<Replica>,
        opts: ReplicationOptions,
        journal: Arc<Journal>,
    ) -> Result<Self> {
        if replicas.is_empty() {
            return Err(Error::InvalidArgument(
                "replication needs at least one backend".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for r in &replicas {
            if !names.insert(r.backend.name().to_string()) {
                return Err(Error::InvalidArgument(format!(
                    "two backends are named {:?}",
                    r.backend.name()
                )));
            }
        }
        let clock = Hlc::new(opts.node_id.clone());
        let stamp_key = StampKey::derive(&opts.upload_id_key);
        Ok(Replicated {
            shared: Arc::new(Shared {
                name: name.into(),
                replicas: replicas
                    .into_iter()
                    .map(|r| ReplicaState {
                        backend: r.backend,
                        timeout: r.timeout,
                        health: Health::default(),
                        counters: Counters::default(),
                    })
                    .collect(),
                opts,
                clock,
                stamp_key,
                journal,
                wake_repair: tokio::sync::Notify::new(),
                inflight: Default::default(),
                repair_backoff: Default::default(),
                part_turns: Default::default(),
            }),
        })
    }

    pub(crate) fn replicas(&self) -> &[ReplicaState] {
        &self.shared.replicas
    }

    /// The repair journal.
    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// Health of each backend, by name.
    pub fn health(&self) -> Vec<(String, HealthSnapshot)> {
        self.replicas()
            .iter()
            .map(|r| (r.backend.name().to_string(), r.health.snapshot()))
            .collect()
    }

    pub(crate) fn required(&self) -> usize {
        self.shared
            .opts
            .write_quorum
            .required(self.replicas().len())
    }

    /// The longest timeout of any replica: how long a write may stall there.
    pub(crate) fn longest_timeout(&self) -> Duration {
        self.replicas()
            .iter()
            .map(|r| r.timeout)
            .max()
            .unwrap_or(Duration::from_secs(30))
    }

    /// NoSuchBucket when the bucket was deleted through the proxy and some backend that
    /// missed the delete still holds it.
    pub(crate) fn check_bucket_not_deleted(&self, bucket: &BucketName) -> Result<()> {
        if self.shared.journal.bucket_deleted(bucket.as_str()) {
            Err(Error::NoSuchBucket)
        } else {
            Ok(())
        }
    }
}
