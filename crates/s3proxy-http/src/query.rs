//! The one way a query string is read: split on `&`, each side of the first `=` decoded
//! with `+` as a space and `%XX` as a byte, as S3 reads it.
//!
//! Routing, presigned authentication and SigV4/SigV2 canonicalisation all read the query
//! through [`pairs`], so a parameter can never mean one thing to the signature check and
//! another to the handler (a raw `+` is a space to both; a client that means a plus sends
//! `%2B`).
//!
//! ```
//! let pairs: Vec<_> = s3proxy_http::query::pairs("prefix=a+b%2Bc&uploads").collect();
//! assert_eq!(pairs, [("prefix".to_string(), "a b+c".to_string()), ("uploads".into(), "".into())]);
//! ```

use percent_encoding::percent_decode;

/// Decode one query component: `+` is a space, `%XX` a byte, invalid UTF-8 replaced.
pub fn decode_component(raw: &str) -> String {
    if !raw.contains(['+', '%']) {
        return raw.to_string();
    }
    let bytes: Vec<u8> = raw
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&bytes).decode_utf8_lossy().into_owned()
}

/// The decoded `(name, value)` pairs of a raw query string (without `?`), in order, empty
/// parts skipped; a part without `=` has the empty value.
pub fn pairs(raw: &str) -> impl Iterator<Item = (String, String)> + '_ {
    raw.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode_component(k), decode_component(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plus_is_a_space_and_percent_a_byte() {
        assert_eq!(decode_component("a+b%2Bc%20d"), "a b+c d");
        assert_eq!(decode_component("%"), "%");
        assert_eq!(decode_component("%zz%4"), "%zz%4");
        assert_eq!(decode_component("%ff"), "\u{fffd}");
        let p: Vec<_> = pairs("&a=1&&b&c==2&").collect();
        assert_eq!(
            p,
            [
                ("a".into(), "1".into()),
                ("b".into(), "".into()),
                ("c".into(), "=2".into())
            ]
        );
    }

    /// A straightforward reference: form decoding by the byte.
    fn reference(raw: &str) -> String {
        let b = raw.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoding_agrees_with_the_reference(raw in "[a-zA-Z0-9%+=&._~ -]{0,40}|\\PC{0,20}") {
            prop_assert_eq!(decode_component(&raw), reference(&raw));
            // Splitting never loses a name: every non-empty part gives one pair.
            let parts = raw.split('&').filter(|p| !p.is_empty()).count();
            prop_assert_eq!(pairs(&raw).count(), parts);
        }
    }
}
