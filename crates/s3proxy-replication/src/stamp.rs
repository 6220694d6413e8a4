//! Version stamps: a hybrid logical clock, so that versions written by different proxy
//! instances are ordered even when their clocks disagree a little, and a MAC that makes a
//! stamp the proxy's own.
//!
//! A stamp in an object's metadata is `MMMMMMMMMMMM-CCCCCC-NODE.MAC`: the clock's reading
//! and a MAC over (bucket, key, reading) with the stamp key, which every instance derives
//! from the shared `upload_id_secret`. Whoever can write to one backend can put any string
//! there, but not a MAC: a stamp that does not verify ranks below every one that does
//! ([`Rank`]), is never observed by the clock, and is counted and logged. Stamps written
//! before stamps were authenticated (no MAC) rank with those, compared among themselves as
//! they always were, so such objects stay readable and lose only to a newer write.

use hmac::{Hmac, Mac};
use s3proxy_core::ObjectMetadata;
use sha2::Sha256;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Internal metadata key holding an object version's stamp.
pub const VERSION_KEY: &str = "s3proxy-version";

/// Internal metadata key holding the client-visible ETag of a version when a replica's own
/// ETag may differ (a multipart object repaired as a single PUT).
pub const ETAG_KEY: &str = "s3proxy-etag";

/// How far ahead of this instance's clock a verified stamp may be and still be observed
/// by it. A stamp further ahead (an instance whose clock is badly wrong) still ranks as
/// it is, but does not drag this clock, and so every stamp it issues, into the future.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// Hex digits of the MAC appended to a stamp (16 bytes).
const MAC_HEX: usize = 32;

/// The largest counter and milliseconds the fixed-width fields hold: stamps order as
/// strings only while every field keeps its width.
const MAX_COUNTER: u32 = 0xff_ffff;
const MAX_MS: u64 = 0xffff_ffff_ffff;

/// The version stamp in an object's internal metadata.
pub(crate) fn version_of(meta: &ObjectMetadata) -> Option<&str> {
    meta.internal.get(VERSION_KEY).map(String::as_str)
}

/// A hybrid logical clock. Readings are strings `MMMMMMMMMMMM-CCCCCC-NODE` (physical
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
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
        .min(MAX_MS)
}

impl Hlc {
    /// A clock for one proxy instance.
    pub fn new(node: impl Into<String>) -> Self {
        Hlc {
            node: node.into(),
            last: Mutex::new((0, 0)),
        }
    }

    /// A fresh reading, greater than every reading this clock issued or observed (until
    /// the fields' widths run out, which the skew bound on observing keeps millennia away).
    pub fn next(&self) -> String {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        *last = if now > last.0 {
            (now, 0)
        } else if last.1 < MAX_COUNTER {
            (last.0, last.1 + 1)
        } else {
            // The counter is full: borrow the next millisecond.
            ((last.0 + 1).min(MAX_MS), 0)
        };
        format!("{:012x}-{:06x}-{}", last.0, last.1, self.node)
    }

    /// Move the clock past a reading seen on a replica (written by another instance).
    /// Only call this with a verified stamp's reading; one more than [`MAX_CLOCK_SKEW`]
    /// ahead of this clock's wall time is ignored (returns false).
    pub fn observe(&self, reading: &str) -> bool {
        let Some((ms, counter)) = parse(reading) else {
            return false;
        };
        let limit = now_ms().saturating_add(MAX_CLOCK_SKEW.as_millis() as u64);
        if ms > limit {
            return false;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if (ms, counter) > *last {
            *last = (ms, counter);
        }
        true
    }
}

/// The milliseconds and counter of a reading (or of a stamp: the MAC is after the node),
/// if its first two fields have their exact widths.
fn parse(stamp: &str) -> Option<(u64, u32)> {
    let mut parts = stamp.splitn(3, '-');
    let (ms, counter, _node) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, width: usize| s.len() == width && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(ms, 12) || !hex(counter, 6) {
        return None;
    }
    Some((
        u64::from_str_radix(ms, 16).ok()?,
        u32::from_str_radix(counter, 16).ok()?,
    ))
}

/// The last millisecond of the year 9999: HTTP dates cannot say later (and the date
/// formatter panics on them), so a stamp beyond it gives no time.
const LAST_HTTP_MS: u64 = 253_402_300_799_999;

/// The wall-clock time a stamp was issued at (millisecond precision); `None` for a
/// string that is not a stamp or one beyond the year 9999.
pub fn stamp_time(stamp: &str) -> Option<SystemTime> {
    parse(stamp)
        .filter(|(ms, _)| *ms <= LAST_HTTP_MS)
        .map(|(ms, _)| UNIX_EPOCH + Duration::from_millis(ms))
}

/// What a stamp found on a replica is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trust {
    /// Anything else: no stamp, not a clock reading, a MAC that does not verify, or a
    /// stamp of the earlier format more than [`MAX_CLOCK_SKEW`] in the future.
    Invalid,
    /// No stamp at all (an object written before replication was configured).
    Absent,
    /// A clock reading without a MAC: written before stamps were authenticated.
    Legacy,
    /// A reading with a MAC that verifies for this bucket and key: the proxy's own.
    Authenticated,
}

impl Trust {
    /// The name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Trust::Invalid => "invalid",
            Trust::Absent => "absent",
            Trust::Legacy => "legacy",
            Trust::Authenticated => "authenticated",
        }
    }
}

/// The order replicas' versions are compared in: every authenticated stamp above every
/// other; within each side, by the stamp string (as stamps always were compared). The
/// unauthenticated kinds (invalid, absent, legacy) are one side: they are told apart for
/// reporting only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rank {
    pub(crate) trust: Trust,
    pub(crate) stamp: String,
}

impl Rank {
    fn key(&self) -> (bool, &str) {
        (self.trust == Trust::Authenticated, &self.stamp)
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// The key that authenticates stamps, derived from the upload id key (so from the one
/// secret every instance already shares) for this one use.
pub(crate) struct StampKey([u8; 32]);

impl StampKey {
    pub(crate) fn derive(secret: &[u8; 32]) -> StampKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(b"s3proxy version stamp key v1");
        StampKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, bucket: &str, key: &str, reading: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        // Length-prefixed, so no two (bucket, key, reading) give the same input.
        for part in [bucket, key, reading] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// A clock reading as the stamp of a version of (bucket, key).
    pub(crate) fn seal(&self, bucket: &str, key: &str, reading: &str) -> String {
        let tag = self.mac(bucket, key, reading).finalize().into_bytes();
        format!("{reading}.{}", hex::encode(&tag[..MAC_HEX / 2]))
    }

    /// How far a stamp found on a replica of (bucket, key) can be trusted, and its rank.
    pub(crate) fn rank(&self, bucket: &str, key: &str, stamp: Option<&str>) -> Rank {
        let trust = match stamp {
            None => Trust::Absent,
            Some(s) => self.trust(bucket, key, s),
        };
        Rank {
            trust,
            stamp: stamp.unwrap_or("").to_string(),
        }
    }

    fn trust(&self, bucket: &str, key: &str, stamp: &str) -> Trust {
        if let Some((reading, tag)) = stamp.rsplit_once('.')
            && tag.len() == MAC_HEX
            && parse(reading).is_some()
        {
            let Ok(tag) = hex::decode(tag) else {
                return Trust::Invalid;
            };
            // hmac's own verification compares in constant time.
            return match self.mac(bucket, key, reading).verify_truncated_left(&tag) {
                Ok(()) => Trust::Authenticated,
                Err(_) => Trust::Invalid,
            };
        }
        match parse(stamp) {
            Some((ms, _)) if ms <= now_ms().saturating_add(MAX_CLOCK_SKEW.as_millis() as u64) => {
                Trust::Legacy
            }
            _ => Trust::Invalid,
        }
    }
}

/// The clock reading of a stamp (without its MAC, if it has one).
pub(crate) fn reading_of(stamp: &str) -> &str {
    match stamp.rsplit_once('.') {
        Some((reading, tag)) if tag.len() == MAC_HEX => reading,
        _ => stamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordered_and_observing() {
        let a = Hlc::new("a");
        let b = Hlc::new("b");
        let s1 = a.next();
        let far = format!("{:012x}-{:06x}-z", now_ms() + 60_000, 5);
        assert!(b.observe(&far));
        let s2 = b.next();
        assert!(s2 > far && far > s1, "{s1} {far} {s2}");
        assert!(stamp_time(&s2).unwrap() > SystemTime::now());
        let many: Vec<String> = (0..1000).map(|_| a.next()).collect();
        assert!(many.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_reading_beyond_the_skew_bound_is_not_observed() {
        let c = Hlc::new("c");
        let beyond = now_ms() + MAX_CLOCK_SKEW.as_millis() as u64 + 60_000;
        assert!(!c.observe(&format!("{beyond:012x}-000000-x")));
        assert!(!c.observe("ffffffffffff-ffffff-x"));
        // Past the year 9999 a stamp has no time (an HTTP date cannot say it).
        assert_eq!(stamp_time("ffffffffffff-ffffff-x"), None);
        assert!(stamp_time(&c.next()).unwrap() < SystemTime::now() + Duration::from_secs(5));
    }

    #[test]
    fn a_full_counter_moves_to_the_next_millisecond_and_keeps_the_width() {
        let c = Hlc::new("n");
        let soon = now_ms() + 30 * 60_000;
        assert!(c.observe(&format!("{soon:012x}-{MAX_COUNTER:06x}-n")));
        let (x, y) = (c.next(), c.next());
        assert!(x < y, "{x} {y}");
        assert_eq!(parse(&x), Some((soon + 1, 0)));
        assert_eq!(x.len(), "000000000000-000000-n".len());
    }

    #[test]
    fn sealed_stamps_verify_only_for_their_key_and_outrank_the_rest() {
        let k = StampKey::derive(&[1; 32]);
        let other = StampKey::derive(&[2; 32]);
        let reading = Hlc::new("n").next();
        let stamp = k.seal("b", "k", &reading);
        assert_eq!(reading_of(&stamp), reading);
        assert_eq!(k.rank("b", "k", Some(&stamp)).trust, Trust::Authenticated);
        assert_eq!(k.rank("b", "k2", Some(&stamp)).trust, Trust::Invalid);
        assert_eq!(k.rank("b2", "k", Some(&stamp)).trust, Trust::Invalid);
        assert_eq!(other.rank("b", "k", Some(&stamp)).trust, Trust::Invalid);
        assert_eq!(k.rank("b", "k", Some(&reading)).trust, Trust::Legacy);
        assert_eq!(k.rank("b", "k", None).trust, Trust::Absent);
        let forged = k.rank("b", "k", Some("ffffffffffff-000000-evil"));
        assert_eq!(forged.trust, Trust::Invalid);
        let forged_mac = format!("ffffffffffff-000000-evil.{}", "0".repeat(MAC_HEX));
        assert_eq!(k.rank("b", "k", Some(&forged_mac)).trust, Trust::Invalid);
        let ours = k.rank("b", "k", Some(&stamp));
        assert!(ours > forged && ours > k.rank("b", "k", Some(&forged_mac)));
        // Legacy stamps compare among themselves as before.
        let older = k.rank("b", "k", Some("000000000001-000000-a"));
        assert!(k.rank("b", "k", Some(&reading)) > older);
    }

    proptest! {
        #[test]
        fn every_string_is_handled(s in ".*", b in "[a-z]{1,8}", key in ".{0,20}") {
            let k = StampKey::derive(&[3; 32]);
            let rank = k.rank(&b, &key, Some(&s));
            prop_assert!(rank.trust != Trust::Authenticated);
            if let Some(t) = stamp_time(&s) {
                prop_assert!(t <= UNIX_EPOCH + Duration::from_millis(LAST_HTTP_MS));
            }
            let _ = reading_of(&s);
            let c = Hlc::new("p");
            let before = c.next();
            c.observe(&s);
            let after = c.next();
            prop_assert!(after > before);
            prop_assert!(stamp_time(&after).unwrap() < SystemTime::now() + MAX_CLOCK_SKEW + Duration::from_secs(5));
        }

        #[test]
        fn stamp_shaped_strings_are_handled(ms in "[0-9a-fA-F+-]{0,14}", ctr in "[0-9a-fA-F+-]{0,8}", tail in "[-.0-9a-f]{0,40}") {
            let s = format!("{ms}-{ctr}-{tail}");
            let k = StampKey::derive(&[3; 32]);
            let _ = k.rank("b", "k", Some(&s));
            let _ = stamp_time(&s);
            let c = Hlc::new("p");
            c.observe(&s);
            let next = c.next();
            prop_assert_eq!(next.len(), "000000000000-000000-p".len());
        }
    }
}
