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
use std::fmt;
use std::str::FromStr;
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

/// A version stamp, parsed once: a clock reading `MMMMMMMMMMMM-CCCCCC-NODE` (physical
/// milliseconds and a counter in fixed-width hex, then the node id), followed by `.MAC`
/// once it is sealed for a version ([`StampKey::seal`]). Stamps order as their text, as
/// they always have (the fixed widths make that the clock's order), and `Display` gives
/// the text as stored, unchanged.
///
/// Parsing refuses what is not a reading (the first two fields must have their exact
/// widths and a node must follow), never panics, and keeps the text it was given: a
/// stamp read back from storage is the same stamp.
///
/// ```
/// use s3proxy_replication::{Hlc, Stamp};
/// let stamp = Hlc::new("node-a").next();
/// let back: Stamp = stamp.to_string().parse().unwrap();
/// assert_eq!(back, stamp);
/// assert!("not-a-stamp".parse::<Stamp>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    text: String,
    ms: u64,
    counter: u32,
}

/// A string that is not a version stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedStamp(String);

impl fmt::Display for MalformedStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a version stamp", self.0)
    }
}

impl std::error::Error for MalformedStamp {}

impl Stamp {
    /// The stamp's text, as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The wall-clock time the stamp was issued at (millisecond precision); `None` beyond
    /// the year 9999, which an HTTP date cannot say.
    pub fn time(&self) -> Option<SystemTime> {
        (self.ms <= LAST_HTTP_MS).then(|| UNIX_EPOCH + Duration::from_millis(self.ms))
    }

    /// The clock reading: the text without its MAC, if it has one.
    pub fn reading(&self) -> &str {
        reading_of(&self.text)
    }
}

impl FromStr for Stamp {
    type Err = MalformedStamp;
    fn from_str(s: &str) -> Result<Self, MalformedStamp> {
        Stamp::try_from(s.to_string())
    }
}

impl TryFrom<String> for Stamp {
    type Error = MalformedStamp;
    fn try_from(text: String) -> Result<Self, MalformedStamp> {
        match parse(&text) {
            Some((ms, counter)) => Ok(Stamp { text, ms, counter }),
            None => Err(MalformedStamp(text)),
        }
    }
}

impl TryFrom<&str> for Stamp {
    type Error = MalformedStamp;
    fn try_from(text: &str) -> Result<Self, MalformedStamp> {
        text.parse()
    }
}

/// The text as stored.
impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for Stamp {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<Stamp> for String {
    fn from(stamp: Stamp) -> String {
        stamp.text
    }
}

/// By the text, as stamps were always compared.
impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A hybrid logical clock, whose readings are [`Stamp`]s.
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
    pub fn next(&self) -> Stamp {
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
        let (ms, counter) = *last;
        Stamp {
            text: format!("{ms:012x}-{counter:06x}-{}", self.node),
            ms,
            counter,
        }
    }

    /// Move the clock past a stamp seen on a replica (written by another instance).
    /// Only call this with a verified stamp; one more than [`MAX_CLOCK_SKEW`] ahead of
    /// this clock's wall time is ignored (returns false).
    pub fn observe(&self, stamp: &Stamp) -> bool {
        let (ms, counter) = (stamp.ms, stamp.counter);
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
    stamp.parse::<Stamp>().ok()?.time()
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
    pub(crate) fn seal(&self, bucket: &str, key: &str, reading: &Stamp) -> Stamp {
        let tag = self
            .mac(bucket, key, reading.as_str())
            .finalize()
            .into_bytes();
        Stamp {
            text: format!("{reading}.{}", hex::encode(&tag[..MAC_HEX / 2])),
            ms: reading.ms,
            counter: reading.counter,
        }
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
        let far: Stamp = format!("{:012x}-{:06x}-z", now_ms() + 60_000, 5)
            .parse()
            .unwrap();
        assert!(b.observe(&far));
        let s2 = b.next();
        assert!(s2 > far && far > s1, "{s1} {far} {s2}");
        assert!(stamp_time(s2.as_str()).unwrap() > SystemTime::now());
        let many: Vec<Stamp> = (0..1000).map(|_| a.next()).collect();
        assert!(many.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_reading_beyond_the_skew_bound_is_not_observed() {
        let c = Hlc::new("c");
        let beyond = now_ms() + MAX_CLOCK_SKEW.as_millis() as u64 + 60_000;
        let stamp = |s: String| s.parse::<Stamp>().unwrap();
        assert!(!c.observe(&stamp(format!("{beyond:012x}-000000-x"))));
        assert!(!c.observe(&stamp("ffffffffffff-ffffff-x".into())));
        // Past the year 9999 a stamp has no time (an HTTP date cannot say it).
        assert_eq!(stamp_time("ffffffffffff-ffffff-x"), None);
        assert!(c.next().time().unwrap() < SystemTime::now() + Duration::from_secs(5));
    }

    #[test]
    fn a_full_counter_moves_to_the_next_millisecond_and_keeps_the_width() {
        let c = Hlc::new("n");
        let soon = now_ms() + 30 * 60_000;
        let full: Stamp = format!("{soon:012x}-{MAX_COUNTER:06x}-n").parse().unwrap();
        assert!(c.observe(&full));
        let (x, y) = (c.next(), c.next());
        assert!(x < y, "{x} {y}");
        assert_eq!(parse(x.as_str()), Some((soon + 1, 0)));
        assert_eq!(x.as_str().len(), "000000000000-000000-n".len());
    }

    #[test]
    fn sealed_stamps_verify_only_for_their_key_and_outrank_the_rest() {
        let k = StampKey::derive(&[1; 32]);
        let other = StampKey::derive(&[2; 32]);
        let reading = Hlc::new("n").next();
        let sealed = k.seal("b", "k", &reading);
        let stamp = sealed.to_string();
        let reading = reading.to_string();
        assert_eq!(reading_of(&stamp), reading);
        assert_eq!(sealed.reading(), reading);
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
            if let Ok(stamp) = s.parse::<Stamp>() {
                c.observe(&stamp);
            }
            let after = c.next();
            prop_assert!(after > before);
            prop_assert!(after.time().unwrap() < SystemTime::now() + MAX_CLOCK_SKEW + Duration::from_secs(5));
        }

        #[test]
        fn stamp_shaped_strings_are_handled(ms in "[0-9a-fA-F+-]{0,14}", ctr in "[0-9a-fA-F+-]{0,8}", tail in "[-.0-9a-f]{0,40}") {
            let s = format!("{ms}-{ctr}-{tail}");
            let k = StampKey::derive(&[3; 32]);
            let _ = k.rank("b", "k", Some(&s));
            let _ = stamp_time(&s);
            let c = Hlc::new("p");
            if let Ok(stamp) = s.parse::<Stamp>() {
                c.observe(&stamp);
            }
            let next = c.next();
            prop_assert_eq!(next.as_str().len(), "000000000000-000000-p".len());
        }

        #[test]
        fn parsing_any_string_keeps_it_or_refuses_it(
            s in prop_oneof![
                "\\PC*",
                // Stamps, in either case, sealed or not.
                "[0-9a-fA-F]{12}-[0-9a-fA-F]{6}-[-.0-9a-zA-Z]{0,40}",
                // Near misses: a field a digit short or long, a non-digit, no node.
                "[0-9a-fA-Fg+-]{11,13}-[0-9a-fA-F+-]{5,7}(-[-.0-9a-z]{0,40})?",
            ],
        ) {
            match s.parse::<Stamp>() {
                Ok(stamp) => {
                    prop_assert_eq!(stamp.as_str(), s.as_str());
                    prop_assert_eq!(stamp.to_string(), s.clone());
                    prop_assert_eq!(stamp.time(), stamp_time(&s));
                    prop_assert_eq!(stamp.reading(), reading_of(&s));
                }
                Err(e) => {
                    prop_assert!(parse(&s).is_none());
                    prop_assert!(e.to_string().contains("not a version stamp"));
                }
            }
        }

        #[test]
        fn every_stamp_issued_parses_back_to_itself(
            node in "[-.a-z0-9]{0,16}",
            ahead in 0u64..MAX_CLOCK_SKEW.as_millis() as u64,
            counter in 0u32..=MAX_COUNTER,
            bucket in "[a-z]{1,8}",
            key in "\\PC{0,20}",
        ) {
            let c = Hlc::new(node);
            let seen: Stamp = format!("{:012x}-{counter:06x}-x", now_ms() + ahead).parse().unwrap();
            prop_assert!(c.observe(&seen));
            let k = StampKey::derive(&[4; 32]);
            for stamp in [c.next(), c.next()] {
                let back: Stamp = stamp.to_string().parse().unwrap();
                prop_assert_eq!(&back, &stamp);
                prop_assert!(stamp > seen);
                let sealed = k.seal(&bucket, &key, &stamp);
                let back: Stamp = sealed.as_str().parse().unwrap();
                prop_assert_eq!(&back, &sealed);
                prop_assert_eq!(back.reading(), stamp.as_str());
                prop_assert_eq!(back.time(), stamp.time());
                prop_assert_eq!(k.rank(&bucket, &key, Some(sealed.as_str())).trust, Trust::Authenticated);
            }
        }
    }
}
