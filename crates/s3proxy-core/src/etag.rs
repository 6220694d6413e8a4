//! Entity tags: kept plain inside s3proxy, quoted on the wire.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An object's (or a part's) entity tag as S3 gives it: the hex MD5 of the data for a
/// single PUT, `hex-N` for an object completed from N parts, or whatever opaque token a
/// backend chose. Held without the quotes HTTP puts around it; [`ETag::quoted`] (and
/// `Display`) give the wire form, [`ETag::parse`] reads it back.
///
/// S3 never sends weak tags, so [`ETag::parse`] refuses a `W/` prefix; the S3 backend reads
/// its servers' ETag headers leniently instead (quotes dropped, anything else kept), as it
/// always has. Conditional headers, which may list weak tags, are matched by
/// [`ETag::listed_in`], which ignores the prefix as S3 does.
///
/// ```
/// use s3proxy_core::ETag;
/// let tag = ETag::parse("\"9b2cf535f27731c974343645a3985328-3\"").unwrap();
/// assert_eq!(tag.as_str(), "9b2cf535f27731c974343645a3985328-3");
/// assert_eq!(tag.parts(), Some(3));
/// assert_eq!(tag.to_string(), "\"9b2cf535f27731c974343645a3985328-3\"");
/// assert!(ETag::parse("W/\"abc\"").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
// Stored as its plain text; read back through `ETag::new`, as every other way in.
#[serde(from = "String", into = "String")]
pub struct ETag(String);

impl ETag {
    /// The tag whose plain (unquoted) form is `plain`, as the model structs hold it.
    /// Quotes around it, as some callers still pass them, are dropped.
    ///
    /// Every leading and trailing quote goes, not only one balanced pair: the rule the
    /// proxy has always applied to tags from clients (CompleteMultipartUpload) and
    /// backends, so `"abc`, `abc"` and `""abc""` all mean `abc`.
    pub fn new(plain: impl Into<String>) -> Self {
        let plain = plain.into();
        if plain.starts_with('"') || plain.ends_with('"') {
            ETag(plain.trim_matches('"').to_string())
        } else {
            ETag(plain)
        }
    }

    /// Read an `ETag` header value: `"tag"`, or a bare `tag` as some servers send. A
    /// weak tag (`W/"..."`), a stray quote inside, or a character a header cannot carry
    /// is [`Error::InvalidArgument`].
    pub fn parse(wire: &str) -> Result<Self> {
        let wire = wire.trim();
        if wire.starts_with("W/") {
            return Err(Error::InvalidArgument(format!(
                "weak ETag {wire:?}: S3 entity tags are strong"
            )));
        }
        let plain = match (
            wire.strip_prefix('"'),
            wire.ends_with('"') && wire.len() >= 2,
        ) {
            (Some(rest), true) => &rest[..rest.len() - 1],
            (None, false) => wire,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "ETag {wire:?} has an unmatched quote"
                )));
            }
        };
        // RFC 9110 etagc: visible ASCII but the quote, or obs-text; S3's are hex and '-'.
        if plain.bytes().any(|b| b == b'"' || b < 0x21 || b == 0x7f) {
            return Err(Error::InvalidArgument(format!(
                "ETag {wire:?} holds a character an entity tag cannot"
            )));
        }
        Ok(ETag(plain.to_string()))
    }

    /// The plain tag, without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as HTTP carries it (header, XML element, condition): in double quotes,
    /// never doubled.
    ///
    /// ```
    /// use s3proxy_core::ETag;
    /// assert_eq!(ETag::new("abc").quoted(), "\"abc\"");
    /// assert_eq!(ETag::new("\"abc\"").quoted(), "\"abc\"");
    /// ```
    pub fn quoted(&self) -> String {
        quote(&self.0)
    }

    /// The number of parts of a multipart tag (`hex-N`); `None` for any other.
    pub fn parts(&self) -> Option<u32> {
        let (hash, count) = self.0.rsplit_once('-')?;
        if hash.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        count.parse().ok().filter(|n| *n > 0)
    }

    /// Whether nothing is known of the tag (a backend that sent none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The plain tag, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether a conditional header's list (`If-Match`, `If-None-Match` and their
    /// `x-amz-copy-source-` forms: comma-separated tags, quoted or not, weak or strong,
    /// or `*`) names this tag. Weak tags compare by their opaque part, as S3 does.
    ///
    /// ```
    /// use s3proxy_core::ETag;
    /// let tag = ETag::new("abc");
    /// assert!(tag.listed_in("\"x\", W/\"abc\""));
    /// assert!(tag.listed_in("*"));
    /// assert!(!tag.listed_in("\"abcd\""));
    /// ```
    pub fn listed_in(&self, list: &str) -> bool {
        list.split(',').map(str::trim).any(|candidate| {
            candidate == "*" || candidate.trim_start_matches("W/").trim_matches('"') == self.0
        })
    }
}

/// The quoted form of the plain tag `plain` (quotes it already has are not doubled): the
/// one place the wire's quoting is written.
fn quote(plain: &str) -> String {
    let inner = plain
        .strip_prefix('"')
        .and_then(|p| p.strip_suffix('"'))
        .unwrap_or(plain);
    format!("\"{inner}\"")
}

/// The wire form, in quotes.
impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

impl std::str::FromStr for ETag {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ETag::parse(s)
    }
}

impl AsRef<str> for ETag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A plain tag (quotes around it are dropped), as [`ETag::new`].
impl From<String> for ETag {
    fn from(plain: String) -> Self {
        ETag::new(plain)
    }
}

/// A plain tag (quotes around it are dropped), as [`ETag::new`].
impl From<&str> for ETag {
    fn from(plain: &str) -> Self {
        ETag::new(plain)
    }
}

impl From<ETag> for String {
    fn from(tag: ETag) -> String {
        tag.0
    }
}

impl PartialEq<str> for ETag {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ETag {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for ETag {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<ETag> for str {
    fn eq(&self, other: &ETag) -> bool {
        self == other.0
    }
}

impl PartialEq<ETag> for &str {
    fn eq(&self, other: &ETag) -> bool {
        *self == other.0
    }
}

impl PartialEq<ETag> for String {
    fn eq(&self, other: &ETag) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_parse_to_their_plain_tag_and_back() {
        let vectors = [
            // (wire, plain, parts)
            (
                "\"d41d8cd98f00b204e9800998ecf8427e\"",
                "d41d8cd98f00b204e9800998ecf8427e",
                None,
            ),
            // A multipart tag: MD5 of the parts' MD5s, then the part count.
            (
                "\"9b2cf535f27731c974343645a3985328-3\"",
                "9b2cf535f27731c974343645a3985328-3",
                Some(3),
            ),
            (
                "\"9b2cf535f27731c974343645a3985328-10000\"",
                "9b2cf535f27731c974343645a3985328-10000",
                Some(10000),
            ),
            // Servers that send the tag bare.
            ("abc123", "abc123", None),
            // Opaque tags of other servers: not multipart for having a '-'.
            ("\"v-1-x\"", "v-1-x", None),
            ("\"abc-\"", "abc-", None),
            ("\"-3\"", "-3", None),
            ("\"abc-0\"", "abc-0", None),
            ("\"\"", "", None),
        ];
        for (wire, plain, parts) in vectors {
            let tag = ETag::parse(wire).unwrap_or_else(|e| panic!("{wire}: {e}"));
            assert_eq!(tag.as_str(), plain, "{wire}");
            assert_eq!(tag.parts(), parts, "{wire}");
            assert_eq!(tag.quoted(), format!("\"{plain}\""), "{wire}");
            assert_eq!(tag.to_string(), tag.quoted());
            assert_eq!(ETag::parse(&tag.quoted()).unwrap(), tag);
            assert_eq!(ETag::new(plain), tag);
        }
    }

    #[test]
    fn weak_unbalanced_and_unprintable_tags_are_refused() {
        for bad in [
            "W/\"abc\"",
            "W/abc",
            "\"abc",
            "abc\"",
            "\"",
            "\"a\"b\"",
            "\"a b\"",
            "\"a\tb\"",
            "\"a\u{7f}\"",
        ] {
            assert!(
                matches!(ETag::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn quoting_never_doubles_quotes() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("\"abc\""), "\"abc\"");
        assert_eq!(ETag::new("\"abc\"").as_str(), "abc");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn every_surrounding_quote_is_dropped_as_the_proxy_always_did() {
        // Unbalanced or doubled quotes from a client's CompleteMultipartUpload or a backend
        // mean the same tag (the rule of the `trim_matches('"')` this type replaced).
        for sent in ["\"abc", "abc\"", "\"\"abc\"\"", "abc"] {
            assert_eq!(ETag::new(sent).as_str(), "abc", "{sent}");
            assert_eq!(ETag::new(sent).quoted(), "\"abc\"", "{sent}");
        }
        assert!(ETag::new("\"abc").listed_in("\"abc\""));
    }
}
