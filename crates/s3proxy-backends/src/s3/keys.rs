//! Keys the SDK will not send as they are.
//!
//! `aws-sdk-s3` refuses to build a request whose key is empty once trimmed (a key of
//! spaces, tabs or newlines only: "key was missing", awslabs/aws-sdk-rust#1216), although
//! S3 accepts such keys. Those keys go to the SDK as a placeholder, `MARK` followed by the
//! key's bytes in hex, which it accepts and puts in the URI path unchanged; [`KeyFix`],
//! installed on the client, puts the real key (percent-encoded as the SDK encodes any key)
//! back into the path before the request is signed. A real key that starts with `MARK` is
//! sent the same way (as is one holding `/` then `MARK`), so no key is ever mistaken for a
//! placeholder.

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use std::borrow::Cow;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The placeholder prefix: unreserved characters only, so the SDK leaves it as it is.
const MARK: &str = "s3proxy-key~";

/// The key to hand to the SDK for `key`.
pub(crate) fn wire(key: &str) -> Cow<'_, str> {
    if key.trim().is_empty() || key.starts_with(MARK) || key.contains(&format!("/{MARK}")) {
        Cow::Owned(format!("{MARK}{}", hex::encode(key)))
    } else {
        Cow::Borrowed(key)
    }
}

/// The URI with its placeholder key (the last label of the path) replaced by the real key;
/// `None` when it holds none.
fn unmark(uri: &str) -> Option<String> {
    let (path, query) = match uri.find('?') {
        Some(at) => uri.split_at(at),
        None => (uri, ""),
    };
    let at = path.rfind(&format!("/{MARK}"))? + 1;
    let key = hex::decode(&path[at + MARK.len()..]).ok()?;
    let mut out = String::with_capacity(uri.len() + key.len() * 3);
    out.push_str(&path[..at]);
    for b in key {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(query);
    Some(out)
}

/// Puts keys sent as placeholders back into the request path, before signing.
#[derive(Debug)]
pub(crate) struct KeyFix;

impl Intercept for KeyFix {
    fn name(&self) -> &'static str {
        "KeyFix"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(uri) = unmark(context.request().uri()) {
            context.request_mut().set_uri(uri)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_round_trip_and_other_keys_pass() {
        assert_eq!(wire("a b"), "a b");
        assert_eq!(wire("\t x"), "\t x");
        for (key, path) in [
            (" ", "%20"),
            ("\t\n ", "%09%0A%20"),
            ("\u{3000}", "%E3%80%80"),
            ("s3proxy-key~20", "s3proxy-key~20"),
            ("d/s3proxy-key~41", "d/s3proxy-key~41"),
        ] {
            let sent = wire(key);
            assert!(sent.starts_with(MARK), "{key:?}");
            let uri = format!("http://h:1/bkt/{sent}?x-id=PutObject");
            assert_eq!(
                unmark(&uri).unwrap(),
                format!("http://h:1/bkt/{path}?x-id=PutObject")
            );
        }
        assert_eq!(unmark("http://h:1/bkt/plain?uploads"), None);
        assert_eq!(unmark("http://h:1/bkt/s3proxy-key~zz"), None);
    }
}
