//! What a layer that verifies what it reads (the encryption layer) and a replicating layer
//! beneath it tell each other: which replicas not to read from, which one served a read,
//! and where to report a replica that served unauthentic data.
//!
//! These travel in the `extensions` of [`GetOptions`] and [`GetResult`], so the general
//! [`crate::Backend`] trait and the backends that hold a single copy know nothing of them.

use crate::{BucketName, GetOptions, GetResult, ObjectKey};
use async_trait::async_trait;
use std::sync::Arc;

/// In [`GetOptions::extensions`]: the replicas (by backend name) not to read from,
/// because a layer above found their copy unauthentic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExcludeReplicas(pub Vec<String>);

/// In [`GetResult::extensions`], set by a replicating layer: the replica that served the
/// data, and the layer to tell when that data fails verification.
#[derive(Clone)]
pub struct ServedBy {
    /// The replica's backend name.
    pub replica: String,
    /// The replicating layer that served it.
    pub layer: Arc<dyn ReportCorrupt>,
}

impl std::fmt::Debug for ServedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedBy")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// A replicating layer, told that a replica's copy of a key failed verification above it:
/// it stops reading from that replica and repairs it.
#[async_trait]
pub trait ReportCorrupt: Send + Sync + 'static {
    /// The copy of `key` that `replica` served is unauthentic (corrupt or tampered).
    async fn report_corrupt(&self, bucket: &BucketName, key: &ObjectKey, replica: &str);
}

/// The replicas `opts` asks not to read from (none unless a layer above set them).
pub fn excluded(opts: &GetOptions) -> &[String] {
    opts.extensions
        .get::<ExcludeReplicas>()
        .map_or(&[], |e| e.0.as_slice())
}

/// Extensions for a [`GetOptions`] that asks not to read from `replicas`.
///
/// ```
/// use s3proxy_core::{GetOptions, replicas};
/// let opts = GetOptions { extensions: replicas::excluding(&["r2".to_string()]), ..Default::default() };
/// assert_eq!(replicas::excluded(&opts), ["r2"]);
/// assert!(replicas::excluded(&GetOptions::default()).is_empty());
/// ```
pub fn excluding(replicas: &[String]) -> http::Extensions {
    let mut extensions = http::Extensions::new();
    if !replicas.is_empty() {
        extensions.insert(ExcludeReplicas(replicas.to_vec()));
    }
    extensions
}

/// Extensions for a [`GetResult`] that `replica` served, for `layer` to be told if its data
/// fails verification.
pub fn serving(replica: impl Into<String>, layer: Arc<dyn ReportCorrupt>) -> http::Extensions {
    let mut extensions = http::Extensions::new();
    extensions.insert(ServedBy {
        replica: replica.into(),
        layer,
    });
    extensions
}

/// The replica that served `got`, when a replicating layer served it.
pub fn served_by(got: &GetResult) -> Option<&ServedBy> {
    got.extensions.get::<ServedBy>()
}
