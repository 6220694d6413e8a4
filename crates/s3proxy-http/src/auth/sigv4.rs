//! AWS Signature Version 4 canonicalisation and signing, as S3 defines it.
//!
//! Pure functions over strings, tested against AWS's published S3 examples.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The SHA-256 of the empty string, hex.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Characters UriEncode leaves alone: `A-Z a-z 0-9 - _ . ~`.
const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same, keeping `/` (object key paths).
const URI_ENCODE_PATH: &AsciiSet = &URI_ENCODE.remove(b'/');

/// AWS's UriEncode of a string; `/` is kept when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        URI_ENCODE_PATH
    } else {
        URI_ENCODE
    };
    utf8_percent_encode(s, set).to_string()
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The signing key: HMAC chain over date (YYYYMMDD), region, service and "aws4_request".
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Hex HMAC-SHA256 of `string_to_sign` under `key`.
pub fn sign(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

/// The canonical URI of a raw request path: each byte decoded, then UriEncoded with `/`
/// kept (S3 does not normalise `.`/`..` segments or double slashes).
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = percent_decode_str(raw_path).decode_utf8_lossy();
    let path = if decoded.is_empty() { "/" } else { &decoded };
    uri_encode(path, true)
}

/// The canonical query string: parameters decoded (as [`crate::query::pairs`] reads them,
/// so what is signed is what the handler sees), re-encoded, sorted by name then value.
/// `X-Amz-Signature` is left out when `presigned`, where it carries the signature itself;
/// anywhere else it is an ordinary, signed parameter.
pub fn canonical_query(raw_query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = crate::query::pairs(raw_query)
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as canonicalised: trimmed, inner runs of spaces collapsed to one.
pub fn canonical_header_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request.
///
/// `headers` are (lowercase name, canonical value) pairs for exactly the signed headers, in
/// the order of `signed_headers` (which is sorted and `;`-separated).
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    out.push_str(canonical_uri);
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    for (name, value) in headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// The string to sign for a request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The string to sign for one chunk of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` body.
pub fn chunk_string_to_sign(amz_date: &str, scope: &str, previous: &str, chunk: &[u8]) -> String {
    format!(
        "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{}",
        sha256_hex(chunk)
    )
}

/// The string to sign for the trailer of a `...-PAYLOAD-TRAILER` body.
pub fn trailer_string_to_sign(
    amz_date: &str,
    scope: &str,
    previous: &str,
    canonical_trailer: &str,
) -> String {
    format!(
        "AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{previous}\n{}",
        sha256_hex(canonical_trailer.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    //! AWS's published examples for S3 SigV4 ("Signature Calculations for the Authorization
    //! Header: Transferring Payload in a Single Chunk", "... in Multiple Chunks", and
    //! "Authenticating Requests: Using Query Parameters").
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const SCOPE: &str = "20130524/us-east-1/s3/aws4_request";
    const DATE: &str = "20130524T000000Z";

    fn key() -> [u8; 32] {
        signing_key(SECRET, "20130524", "us-east-1", "s3")
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), canonical_header_value(v)))
            .collect()
    }

    /// Cases of AWS's generic "aws-sig-v4-test-suite" (service `service`, 2015-08-30) whose
    /// rules S3 shares: key derivation, query ordering, UTF-8 paths, empty POST bodies.
    #[test]
    fn aws_sig_v4_test_suite() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let key = signing_key(secret, "20150830", "us-east-1", "service");
        assert_eq!(
            hex::encode(key),
            "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75"
        );
        let scope = "20150830/us-east-1/service/aws4_request";
        let date = "20150830T123600Z";
        let headers = h(&[("host", "example.amazonaws.com"), ("x-amz-date", date)]);
        for (name, method, path, query, signature) in [
            (
                "get-vanilla",
                "GET",
                "/",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "get-vanilla-query-order-key-case",
                "GET",
                "/",
                "Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            (
                "get-utf8",
                "GET",
                "/%E1%88%B4",
                "",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ),
            (
                "post-vanilla",
                "POST",
                "/",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let creq = canonical_request(
                method,
                &canonical_uri(path),
                &canonical_query(query, false),
                &headers,
                "host;x-amz-date",
                EMPTY_SHA256,
            );
            assert_eq!(
                sign(&key, &string_to_sign(date, scope, &creq)),
                signature,
                "{name}"
            );
        }
        // The published intermediate of get-vanilla: the hash of its canonical request.
        let creq = canonical_request("GET", "/", "", &headers, "host;x-amz-date", EMPTY_SHA256);
        assert!(
            string_to_sign(date, scope, &creq)
                .ends_with("bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        );
    }

    #[test]
    fn get_object_with_range() {
        let creq = canonical_request(
            "GET",
            &canonical_uri("/test.txt"),
            &canonical_query("", false),
            &h(&[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ]),
            "host;range;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256,
        );
        assert_eq!(
            sign(&key(), &string_to_sign(DATE, SCOPE, &creq)),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn put_object() {
        let payload = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        assert_eq!(sha256_hex(b"Welcome to Amazon S3."), payload);
        let creq = canonical_request(
            "PUT",
            &canonical_uri("/test%24file.text"),
            &canonical_query("", false),
            &h(&[
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", payload),
                ("x-amz-date", DATE),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ]),
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            payload,
        );
        assert_eq!(
            sign(&key(), &string_to_sign(DATE, SCOPE, &creq)),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn get_bucket_lifecycle() {
        let creq = canonical_request(
            "GET",
            &canonical_uri("/"),
            &canonical_query("lifecycle", false),
            &h(&[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ]),
            "host;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256,
        );
        assert_eq!(
            sign(&key(), &string_to_sign(DATE, SCOPE, &creq)),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn list_objects() {
        let creq = canonical_request(
            "GET",
            &canonical_uri("/"),
            &canonical_query("prefix=J&max-keys=2", false),
            &h(&[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", DATE),
            ]),
            "host;x-amz-content-sha256;x-amz-date",
            EMPTY_SHA256,
        );
        assert_eq!(
            sign(&key(), &string_to_sign(DATE, SCOPE, &creq)),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn presigned_get() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=ignored";
        let creq = canonical_request(
            "GET",
            &canonical_uri("/test.txt"),
            &canonical_query(query, true),
            &h(&[("host", "examplebucket.s3.amazonaws.com")]),
            "host",
            "UNSIGNED-PAYLOAD",
        );
        assert_eq!(
            sign(&key(), &string_to_sign(DATE, SCOPE, &creq)),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn streaming_chunks() {
        let creq = canonical_request(
            "PUT",
            &canonical_uri("/examplebucket/chunkObject.txt"),
            "",
            &h(&[
                ("content-encoding", "aws-chunked"),
                ("content-length", "66824"),
                ("host", "s3.amazonaws.com"),
                ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
                ("x-amz-date", DATE),
                ("x-amz-decoded-content-length", "66560"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ]),
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        );
        let seed = sign(&key(), &string_to_sign(DATE, SCOPE, &creq));
        assert_eq!(
            seed,
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
        );
        let c1 = sign(
            &key(),
            &chunk_string_to_sign(DATE, SCOPE, &seed, &[b'a'; 65536]),
        );
        assert_eq!(
            c1,
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        let c2 = sign(
            &key(),
            &chunk_string_to_sign(DATE, SCOPE, &c1, &[b'a'; 1024]),
        );
        assert_eq!(
            c2,
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        let c3 = sign(&key(), &chunk_string_to_sign(DATE, SCOPE, &c2, b""));
        assert_eq!(
            c3,
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        );
    }

    #[test]
    fn uri_encoding_rules() {
        assert_eq!(canonical_uri("/a b/%2B+~"), "/a%20b/%2B%2B~");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_query("b=2&a=&a=1&c", false), "a=&a=1&b=2&c=");
        assert_eq!(canonical_query("prefix=a%2Fb c", false), "prefix=a%2Fb%20c");
        // A raw `+` is a space, as the handler reads it; `%2B` is a plus.
        assert_eq!(canonical_query("prefix=a+b%2Bc", false), "prefix=a%20b%2Bc");
        // X-Amz-Signature is signed like any parameter outside a presigned URL.
        assert_eq!(
            canonical_query("X-Amz-Signature=x", false),
            "X-Amz-Signature=x"
        );
        assert_eq!(canonical_query("X-Amz-Signature=x&a=b", true), "a=b");
    }
}
