//! Version stamps: a hybrid logical clock, so that versions written by different proxy
//! instances are ordered even when their clocks disagree a little.

use s3proxy_core::ObjectMetadata;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Internal metadata key holding an object version's stamp.
pub const VERSION_KEY: &str = "s3proxy-version";

/// Internal metadata key holding the client-visible ETag of a version when a replica's own
/// ETag may differ (a multipart object repaired as a single PUT).
pub const ETAG_KEY: &str = "s3proxy-etag";

/// The version stamp in an object's internal metadata.
pub(crate) fn version_of(meta: &ObjectMetadata) -> Option<&str> {
    meta.internal.get(VERSION_KEY).map(String::as_str)
}

/// A hybrid logical clock. Stamps are strings `MMMMMMMMMMMM-CCCCCC-NODE` (physical
/// milliseconds and a counter in fixed-width hex, then the node id) that order correctly
/// as plain strings.
///
/// ```
/// use s3proxy_replication::Hlc;
/// let clock = Hlc::new("node-a");
/// let (a, b) = (clock.next(), clock.next());
/// assert!(a < b);
/// ```
pub struct Hlc {
    node: String,
    last: Mutex<(u64, u32)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Hlc {
    /// A clock for one proxy instance.
    pub fn new(node: impl Into<String>) -> Self {
        Hlc {
            node: node.into(),
            last: Mutex::new((0, 0)),
        }
    }

    /// A fresh stamp, greater than every stamp this clock issued or observed.
    pub fn next(&self) -> String {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        *last = if now > last.0 {
            (now, 0)
        } else {
            (last.0, last.1 + 1)
        };
        format!("{:012x}-{:06x}-{}", last.0, last.1, self.node)
    }

    /// Move the clock past a stamp seen on a replica (written by another instance).
    pub fn observe(&self, stamp: &str) {
        if let Some((ms, counter)) = parse(stamp) {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if (ms, counter) > *last {
                *last = (ms, counter);
            }
        }
    }
}

fn parse(stamp: &str) -> Option<(u64, u32)> {
    let mut parts = stamp.splitn(3, '-');
    let ms = u64::from_str_radix(parts.next()?, 16).ok()?;
    let counter = u32::from_str_radix(parts.next()?, 16).ok()?;
    Some((ms, counter))
}

/// The wall-clock time a stamp was issued at (millisecond precision).
pub fn stamp_time(stamp: &str) -> Option<SystemTime> {
    parse(stamp).map(|(ms, _)| UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_and_observing() {
        let a = Hlc::new("a");
        let b = Hlc::new("b");
        let s1 = a.next();
        let far = format!("{:012x}-{:06x}-z", now_ms() + 60_000, 5);
        b.observe(&far);
        let s2 = b.next();
        assert!(s2 > far && far > s1, "{s1} {far} {s2}");
        assert!(stamp_time(&s2).unwrap() > SystemTime::now());
        let many: Vec<String> = (0..1000).map(|_| a.next()).collect();
        assert!(many.windows(2).all(|w| w[0] < w[1]));
    }
}
