//! What a replicated set is configured with: the write quorum, which replica reads prefer,
//! the other options, and the backends themselves.

use s3proxy_core::DynBackend;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How many backends must acknowledge a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteQuorum {
    /// One backend.
    #[default]
    One,
    /// More than half.
    Majority,
    /// Every backend.
    All,
    /// This many (capped at the number of backends).
    Count(usize),
}

impl WriteQuorum {
    /// Acknowledgements needed out of `n` backends.
    ///
    /// ```
    /// use s3proxy_replication::WriteQuorum;
    /// assert_eq!(WriteQuorum::Majority.required(3), 2);
    /// assert_eq!(WriteQuorum::Count(5).required(3), 3);
    /// ```
    pub fn required(&self, n: usize) -> usize {
        match *self {
            WriteQuorum::One => 1,
            WriteQuorum::Majority => n / 2 + 1,
            WriteQuorum::All => n,
            WriteQuorum::Count(c) => c.clamp(1, n.max(1)),
        }
    }
}

impl Serialize for WriteQuorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            WriteQuorum::One => s.serialize_u64(1),
            WriteQuorum::Majority => s.serialize_str("majority"),
            WriteQuorum::All => s.serialize_str("all"),
            WriteQuorum::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for WriteQuorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(0) => Err(serde::de::Error::custom("write_quorum must be at least 1")),
            Raw::N(1) => Ok(WriteQuorum::One),
            Raw::N(n) => Ok(WriteQuorum::Count(n as usize)),
            Raw::S(s) => match s.as_str() {
                "majority" => Ok(WriteQuorum::Majority),
                "all" => Ok(WriteQuorum::All),
                other => other
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(|n| if n == 1 { WriteQuorum::One } else { WriteQuorum::Count(n as usize) })
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "write_quorum must be 1, \"majority\", \"all\" or a number, not {other:?}"
                        ))
                    }),
            },
        }
    }
}

/// Which replica reads go to first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadPreference {
    /// In configuration order.
    #[default]
    Ordered,
    /// The one with the lowest smoothed latency.
    Latency,
}

/// When a read asks the next replica too (see `hedge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Hedge {
    /// After the replica's recent read latency (95th percentile), clamped to
    /// [`Hedge::MIN`]..[`Hedge::MAX`]; [`Hedge::DEFAULT`] before it has enough samples.
    #[default]
    Adaptive,
    /// After this long, whatever the replica's latency.
    After(Duration),
    /// Never: each read waits for its replica's answer or timeout, as before hedging.
    Off,
}

impl Hedge {
    /// The shortest adaptive delay: below it, jitter of a healthy backend would double
    /// the requests.
    pub const MIN: Duration = Duration::from_millis(20);
    /// The longest adaptive delay.
    pub const MAX: Duration = Duration::from_secs(1);
    /// The adaptive delay before a backend has enough samples.
    pub const DEFAULT: Duration = Duration::from_millis(200);
}

/// Settings of a [`Replicated`](crate::Replicated) backend.
#[derive(Clone, Debug)]
pub struct ReplicationOptions {
    /// Acknowledgements a write needs.
    pub write_quorum: WriteQuorum,
    /// Which replica reads prefer.
    pub read_preference: ReadPreference,
    /// Retries of a transient failure (jittered exponential backoff), for calls without a
    /// streaming body.
    pub retries: u32,
    /// Key authenticating the multipart upload ids handed to clients; every proxy instance
    /// in front of the same backends must share it.
    pub upload_id_key: [u8; 32],
    /// This instance's id in version stamps.
    pub node_id: String,
    /// When a read that has no answer yet asks the next replica too.
    pub hedge: Hedge,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            write_quorum: WriteQuorum::One,
            read_preference: ReadPreference::Ordered,
            retries: 2,
            upload_id_key: rand::random(),
            node_id: hex::encode(rand::random::<[u8; 4]>()),
            hedge: Hedge::Adaptive,
        }
    }
}

/// One backend of a [`Replicated`](crate::Replicated) set.
pub struct Replica {
    /// The backend.
    pub backend: DynBackend,
    /// Limit for one call without a streaming body, and for a stall within a body.
    pub timeout: Duration,
}
