//! Property tests over every parser a request feeds: no input panics, none allocates
//! without bound, and where a straightforward reference exists the parser agrees with it.
//! They run with `cargo test` on the stable toolchain, with a bounded number of cases.

use crate::auth::chunked::ChunkedDecoder;
use crate::auth::{self, AuthConfig, ChunkSigning, Credential, Keyring, RequestParts, sigv4};
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;
use proptest::prelude::*;
use s3proxy_core::{ByteRange, ByteStream, Error, Result};
use std::time::{Duration, SystemTime};

const CASES: u32 = 1000;

fn config() -> AuthConfig {
    AuthConfig {
        keyring: Keyring::new([Credential::new("AKEXAMPLE", "secretexample")]),
        max_skew: Duration::from_secs(900),
    }
}

/// Strings shaped like the things they stand for, with odd bytes mixed in.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9/=,;:+%._~ -]{0,24}",
        Just("AKEXAMPLE".to_string()),
        Just("20260101T000000Z".to_string()),
        Just("AWS4-HMAC-SHA256".to_string()),
        Just("host;x-amz-date".to_string()),
        "\\PC{0,12}",
    ]
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            h.append(n, v);
        }
    }
    h
}

fn decode_all(stream: ChunkedDecoder) -> Result<Vec<u8>> {
    futures::executor::block_on(async {
        let mut out = vec![];
        let mut s = Box::pin(stream);
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    })
}

fn pieces(data: Vec<u8>, piece: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// aws-chunked framing of `data` in chunks of `size`, each signed when `signing` is set.
fn frame(data: &[u8], size: usize, signing: Option<&ChunkSigning>) -> Vec<u8> {
    let mut out = vec![];
    let mut previous = signing.map(|s| s.seed_signature.clone());
    let mut chunks: Vec<&[u8]> = data.chunks(size.max(1)).collect();
    chunks.push(&[]);
    for chunk in chunks {
        out.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
        if let (Some(s), Some(prev)) = (signing, previous.as_mut()) {
            let sig = sigv4::sign(
                &s.key,
                &sigv4::chunk_string_to_sign(&s.amz_date, &s.scope, prev, chunk),
            );
            out.extend_from_slice(format!(";chunk-signature={sig}").as_bytes());
            *prev = sig;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn signing() -> ChunkSigning {
    ChunkSigning {
        key: sigv4::signing_key("secretexample", "20260101", "us-east-1", "s3"),
        amz_date: "20260101T000000Z".into(),
        scope: "20260101/us-east-1/s3/aws4_request".into(),
        seed_signature: "0".repeat(64),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any Authorization header, query and headers: an error with a 4xx status, never a
    /// panic, and never a request taken as signed without the secret.
    #[test]
    fn authentication_never_panics_nor_admits(
        scheme in prop_oneof![Just("AWS4-HMAC-SHA256 "), Just("AWS "), Just(""), Just("Bearer ")],
        fields in proptest::collection::vec((token(), token()), 0..5),
        query in proptest::collection::vec((prop_oneof![
            Just("X-Amz-Algorithm".to_string()), Just("X-Amz-Credential".to_string()),
            Just("X-Amz-Date".to_string()), Just("X-Amz-Expires".to_string()),
            Just("X-Amz-SignedHeaders".to_string()), Just("X-Amz-Signature".to_string()),
            Just("AWSAccessKeyId".to_string()), Just("Expires".to_string()),
            Just("Signature".to_string()), token()], token()), 0..7),
        headers in proptest::collection::vec((prop_oneof![
            Just("x-amz-date".to_string()), Just("date".to_string()),
            Just("x-amz-content-sha256".to_string()), Just("host".to_string()),
            Just("x-amz-copy-source".to_string()), "x-amz-[a-z-]{1,10}"], token()), 0..6),
        method in prop_oneof![Just("GET"), Just("PUT"), Just("POST")],
        path in "/[a-z0-9%/+. -]{0,20}",
    ) {
        let auth: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut pairs = headers.clone();
        if !scheme.is_empty() {
            pairs.push(("authorization".into(), format!("{scheme}{auth}")));
        }
        let h = header_map(&pairs);
        let raw_query: String = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let parts = RequestParts {
            method,
            raw_path: &path,
            raw_query: &raw_query,
            headers: &h,
            vhost_bucket: None,
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        match auth::authenticate(&parts, &config(), now) {
            Ok(a) => prop_assert!(false, "admitted without the secret: {a:?}"),
            Err(e) => prop_assert!(e.status() < 500, "{e:?}"),
        }
    }

    /// Valid framing of any data in any chunk size, delivered in any pieces, decodes to the
    /// data; with signatures too, and no flipped byte anywhere yields other data.
    #[test]
    fn aws_chunked_decodes_exactly_what_was_framed(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        size in 1usize..700,
        piece in 1usize..900,
        flip in any::<proptest::sample::Index>(),
    ) {
        let plain = frame(&data, size, None);
        let out = decode_all(ChunkedDecoder::new(pieces(plain, piece), None, None).unwrap());
        prop_assert_eq!(out.unwrap(), data.clone());
        let s = signing();
        let signed = frame(&data, size, Some(&s));
        let out = decode_all(ChunkedDecoder::new(pieces(signed.clone(), piece), Some(s.clone()), None).unwrap());
        prop_assert_eq!(out.unwrap(), data.clone());
        let mut bad = signed;
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        let out = decode_all(ChunkedDecoder::new(pieces(bad, piece), Some(s), None).unwrap());
        // A flip in the framing's whitespace may leave the same data; other data, never.
        if let Ok(got) = out {
            prop_assert_eq!(got, data, "a flipped byte at {} changed the data", i);
        }
    }

    /// Arbitrary bytes as an aws-chunked body, with or without a trailer: an error or some
    /// data, never a panic, and never more data than bytes sent.
    #[test]
    fn aws_chunked_survives_any_input(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            "[0-9a-fA-F;=\\r\\n:x-]{0,200}".prop_map(String::into_bytes),
        ],
        piece in 1usize..64,
        trailer in prop_oneof![Just(None), Just(Some("x-amz-checksum-crc32"))],
    ) {
        let len = body.len();
        if let Ok(out) = decode_all(ChunkedDecoder::new(pieces(body, piece), None, trailer).unwrap()) {
            prop_assert!(out.len() <= len);
        }
    }

    /// XML bodies: any input is a result or MalformedXml, never a panic; a generated
    /// DeleteObjects document gives back exactly its keys.
    #[test]
    fn xml_bodies_survive_any_input(body in "\\PC{0,200}|<[A-Za-z]{1,12}>[^<]{0,30}</[A-Za-z]{1,12}>") {
        let _ = crate::xml::parse_delete(&body);
        let _ = crate::xml::parse_complete(&body);
        let _ = crate::xml::parse_create_bucket(&body);
    }

    #[test]
    fn delete_keys_round_trip(keys in proptest::collection::vec("[a-zA-Z0-9/._&<>'\"é \t-]{1,32}", 1..5)) {
        let mut doc = String::from("<Delete>");
        for k in &keys {
            doc.push_str(&format!("<Object><Key>{}</Key></Object>", crate::xml::escape(k)));
        }
        doc.push_str("</Delete>");
        let parsed = crate::xml::parse_delete(&doc).unwrap();
        let got: Vec<String> = parsed.objects.into_iter().map(|o| o.key).collect();
        prop_assert_eq!(got, keys);
    }

    /// Range headers: whatever the value and size, a resolved range lies inside the object.
    #[test]
    fn ranges_stay_inside_the_object(value in "bytes=[0-9]{0,21}-[0-9]{0,21}|\\PC{0,20}", size in any::<u64>()) {
        if let Ok(Some(r)) = ByteRange::parse(&value)
            && let Ok((start, end)) = r.resolve(size)
        {
            prop_assert!(start <= end && end < size);
        }
    }

    /// Dates, addresses and copy sources: no panic on any value.
    #[test]
    fn small_parsers_survive_any_input(value in "\\PC{0,40}|[0-9TZ]{16}", host in "\\PC{0,20}") {
        let _ = auth::parse_amz_date(&value);
        let _ = crate::request::address(&value, Some(&host), &["s3.local".to_string()]);
        let h = header_map(&[("x-amz-copy-source".into(), value.clone())]);
        let req = crate::dispatch::S3Request {
            headers: h,
            query: crate::request::Query::default(),
            body: Box::pin(futures::stream::empty()),
            chunked: false,
            grants: Default::default(),
        };
        if let Ok((bucket, key)) = crate::copy::copy_source(&req) {
            prop_assert!(!bucket.as_str().is_empty() && !key.as_str().is_empty());
        }
    }
}

#[test]
fn oversized_chunk_sizes_are_refused_before_any_allocation() {
    // A chunk header claiming more than S3's largest chunk, or more than u64 holds.
    for header in [
        "ffffffffffffffff\r\n",
        "fffffffffffffffffffff\r\n",
        "8000000\r\n",
    ] {
        let out = decode_all(
            ChunkedDecoder::new(pieces(header.as_bytes().to_vec(), 7), None, None).unwrap(),
        );
        assert!(
            matches!(
                out,
                Err(Error::InvalidRequest(_)) | Err(Error::IncompleteBody)
            ),
            "{header:?}: {out:?}"
        );
    }
}
