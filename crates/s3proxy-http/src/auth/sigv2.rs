//! AWS Signature Version 2: `Authorization: AWS key:signature` and presigned URLs with
//! `AWSAccessKeyId`, `Expires` and `Signature` in the query.
//!
//! Still sent by s3fs (`-o sigv2`, and as its fallback when SigV4 fails), s3cmd with
//! `signature_v2 = True` and older SDKs. The signature is a base64 HMAC-SHA1 of:
//!
//! ```text
//! VERB \n Content-MD5 \n Content-Type \n Date-or-Expires \n CanonicalizedAmzHeaders CanonicalizedResource
//! ```

use super::{
    AuthConfig, Authenticated, Payload, RequestParts, constant_time_eq, header, malformed,
};
use crate::query::decode_component;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use s3proxy_core::{Error, Result};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Query parameters that are part of the signed resource: the sub-resources and the
/// response header overrides. Everything else in the query (prefix, marker, ...) is not.
const SIGNED_SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The base64 HMAC-SHA1 of `string_to_sign` under `secret`.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `CanonicalizedAmzHeaders`: every `x-amz-*` header, lowercased, sorted, repeated values
/// joined with commas, each line `name:value\n`. `skip` names a header left out.
pub fn canonical_amz_headers(headers: &HeaderMap, skip: Option<&str>) -> String {
    let mut names: Vec<&str> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| n.starts_with("x-amz-") && Some(*n) != skip)
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                // Unfold and trim, as the spec asks; inner spaces stay as sent.
                String::from_utf8_lossy(v.as_bytes())
                    .replace(['\r', '\n'], " ")
                    .trim()
                    .to_string()
            })
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

/// `CanonicalizedResource`: `/bucket` for virtual-hosted requests, then the path as sent,
/// then the signed sub-resources of the query, sorted, with their decoded values.
pub fn canonical_resource(vhost_bucket: Option<&str>, path: &str, raw_query: &str) -> String {
    let mut out = String::new();
    if let Some(bucket) = vhost_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(path);
    let mut subs: Vec<(String, Option<String>)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = match p.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (p, None),
            };
            let k = decode_component(k);
            SIGNED_SUBRESOURCES
                .contains(&k.as_str())
                .then(|| (k, v.map(decode_component)))
        })
        .collect();
    subs.sort();
    for (i, (k, v)) in subs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The whole string to sign.
pub fn string_to_sign(
    method: &str,
    content_md5: &str,
    content_type: &str,
    date: &str,
    amz_headers: &str,
    resource: &str,
) -> String {
    format!("{method}\n{content_md5}\n{content_type}\n{date}\n{amz_headers}{resource}")
}

/// The paths a client may have signed: as sent, and in the normalised encoding SDKs use.
/// A bucket-level path-style request (`/bucket`) may also be signed as `/bucket/`, the
/// form AWS's examples give and botocore signs.
fn candidate_paths(raw_path: &str, vhost: bool) -> Vec<String> {
    let mut paths = vec![raw_path.to_string()];
    let normalised = super::sigv4::canonical_uri(raw_path);
    if normalised != raw_path {
        paths.push(normalised);
    }
    if !vhost && raw_path.len() > 1 && !raw_path[1..].contains('/') {
        paths.push(format!("{raw_path}/"));
    }
    paths
}

/// Check `signature` against every string the request may have been signed as, in
/// constant time per comparison.
fn verify(secret: &str, strings: &[String], signature: &str) -> Result<()> {
    let mut ok = false;
    for s in strings {
        ok |= constant_time_eq(&sign(secret, s), signature);
    }
    if ok {
        Ok(())
    } else {
        Err(Error::SignatureDoesNotMatch)
    }
}

/// Parse the date of a SigV2 request: RFC 1123 with `GMT` or with a `+0000` offset.
fn parse_date(value: &str) -> Option<SystemTime> {
    let v = value.trim();
    let v = v
        .strip_suffix("+0000")
        .map(|d| format!("{}GMT", d))
        .unwrap_or_else(|| v.to_string());
    httpdate::parse_http_date(&v).ok()
}

/// `Authorization: AWS <access key>:<signature>`; `rest` is what follows `AWS `.
pub(crate) fn authenticate_header(
    req: &RequestParts<'_>,
    config: &AuthConfig,
    now: SystemTime,
    rest: &str,
) -> Result<Authenticated> {
    let (access_key, signature) = rest
        .trim()
        .rsplit_once(':')
        .filter(|(k, s)| !k.is_empty() && !s.is_empty())
        .ok_or_else(|| malformed("expected AWS AccessKeyId:Signature"))?;
    let secret = config.keyring.secret(access_key)?;
    let h = |name: &str| header(req.headers, name).unwrap_or("");
    // x-amz-date replaces Date (an empty one counts as absent): its time is the one checked.
    let amz_date = header(req.headers, "x-amz-date").filter(|d| !d.trim().is_empty());
    let date = amz_date
        .or_else(|| header(req.headers, "date"))
        .ok_or_else(|| {
            Error::AccessDenied(
                "AWS authentication requires a valid Date or x-amz-date header".into(),
            )
        })?;
    let time = parse_date(date).ok_or_else(|| {
        Error::AccessDenied("AWS authentication requires a valid Date or x-amz-date header".into())
    })?;
    let mut strings = vec![];
    for path in candidate_paths(req.raw_path, req.vhost_bucket.is_some()) {
        let resource = canonical_resource(req.vhost_bucket, &path, req.raw_query);
        let sts = |date: &str, skip: Option<&str>| {
            string_to_sign(
                req.method,
                h("content-md5"),
                h("content-type"),
                date,
                &canonical_amz_headers(req.headers, skip),
                &resource,
            )
        };
        // With x-amz-date the date line is empty and x-amz-date is signed among the amz
        // headers; AWS's own examples also show its value on the date line instead.
        match amz_date {
            Some(d) => {
                strings.push(sts("", None));
                strings.push(sts(d, Some("x-amz-date")));
            }
            None => strings.push(sts(h("date"), None)),
        }
    }
    verify(secret, &strings, signature)?;
    super::check_skew(time, now, config.max_skew)?;
    Ok(Authenticated {
        access_key: access_key.to_string(),
        payload: Payload::Unsigned,
        grants: config.keyring.grants(access_key),
        query_headers: vec![],
    })
}

/// A presigned SigV2 URL: `?AWSAccessKeyId=..&Expires=<epoch seconds>&Signature=..`.
pub(crate) fn authenticate_presigned(
    req: &RequestParts<'_>,
    config: &AuthConfig,
    now: SystemTime,
) -> Result<Authenticated> {
    let q = super::query_params(req.raw_query, &["AWSAccessKeyId", "Expires", "Signature"])?;
    let get = |name: &str| {
        q.get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::AuthorizationMalformed(format!("missing {name} in query")))
    };
    let access_key = get("AWSAccessKeyId")?;
    let signature = get("Signature")?;
    let expires = get("Expires")?;
    let expires_at: u64 = expires
        .parse()
        .map_err(|_| Error::AccessDenied("Invalid date (should be seconds since epoch)".into()))?;
    let secret = config.keyring.secret(access_key)?;
    let h = |name: &str| header(req.headers, name).unwrap_or("");
    let strings: Vec<String> = candidate_paths(req.raw_path, req.vhost_bucket.is_some())
        .iter()
        .map(|path| {
            string_to_sign(
                req.method,
                h("content-md5"),
                h("content-type"),
                expires,
                &canonical_amz_headers(req.headers, None),
                &canonical_resource(req.vhost_bucket, path, req.raw_query),
            )
        })
        .collect();
    verify(secret, &strings, signature)?;
    // An Expires beyond what the clock can hold never expires (and must not overflow).
    let expired = UNIX_EPOCH
        .checked_add(Duration::from_secs(expires_at))
        .is_some_and(|at| now > at);
    if expired {
        return Err(Error::AccessDenied("Request has expired".into()));
    }
    Ok(Authenticated {
        access_key: access_key.to_string(),
        payload: Payload::Unsigned,
        grants: config.keyring.grants(access_key),
        query_headers: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, Keyring, authenticate};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    /// The examples of AWS's "Signing and Authenticating REST Requests" (SigV2) page.
    #[test]
    fn aws_string_to_sign_examples() {
        for (sts, sig) in [
            (
                "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg",
                "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
            ),
            (
                "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg",
                "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
            ),
            (
                "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/",
                "htDYFYduRNen8P9ZfE/s9SuKy0U=",
            ),
            (
                "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/johnsmith/?acl",
                "c2WLPFtWHVgbEmeEG93a4cG37dM=",
            ),
            (
                "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/johnsmith/photos/puppy.jpg",
                "lx3byBScXR6KzyMaifNkardMwNk=",
            ),
            (
                "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\nx-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\nx-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n/static.johnsmith.net/db-backup.dat.gz",
                "ilyl83RwaSoYIEdixDQcA4OnAnc=",
            ),
            (
                "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
                "qGdzdERIC03wnaRNKh6OqZehG9s=",
            ),
            (
                "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
                "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
            ),
            (
                "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg",
                "NpgCjnDzrM+WFzoENXmpNDUsSn8=",
            ),
        ] {
            assert_eq!(sign(SECRET, sts), sig, "{sts:?}");
        }
    }

    #[test]
    fn canonicalisation_matches_the_aws_examples() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-acl", "public-read".parse().unwrap());
        h.insert("content-type", "application/x-download".parse().unwrap());
        h.append(
            "X-Amz-Meta-ReviewedBy",
            "joe@johnsmith.net".parse().unwrap(),
        );
        h.append(
            "X-Amz-Meta-ReviewedBy",
            "jane@johnsmith.net".parse().unwrap(),
        );
        h.insert("X-Amz-Meta-FileChecksum", "0x02661779".parse().unwrap());
        h.insert("X-Amz-Meta-ChecksumAlgorithm", " crc32 ".parse().unwrap());
        assert_eq!(
            canonical_amz_headers(&h, None),
            "x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\nx-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n"
        );
        assert_eq!(
            canonical_resource(Some("static.johnsmith.net"), "/db-backup.dat.gz", ""),
            "/static.johnsmith.net/db-backup.dat.gz"
        );
        assert_eq!(
            canonical_resource(
                Some("johnsmith"),
                "/",
                "prefix=photos&max-keys=50&marker=puppy"
            ),
            "/johnsmith/"
        );
        assert_eq!(
            canonical_resource(None, "/b/k", "uploadId=abc&partNumber=2&x=y"),
            "/b/k?partNumber=2&uploadId=abc"
        );
        assert_eq!(
            canonical_resource(None, "/b/k", "response-content-type=text%2Fplain&uploads"),
            "/b/k?response-content-type=text/plain&uploads"
        );
    }

    fn config() -> AuthConfig {
        AuthConfig {
            keyring: Keyring::new([Credential::new("AKIAIOSFODNN7EXAMPLE", SECRET)]),
            max_skew: Duration::from_secs(900),
        }
    }

    fn at(date: &str) -> SystemTime {
        parse_date(date).unwrap()
    }

    fn parts<'a>(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        vhost: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> RequestParts<'a> {
        RequestParts {
            method,
            raw_path: path,
            raw_query: query,
            headers,
            vhost_bucket: vhost,
        }
    }

    #[test]
    fn header_requests_from_the_aws_examples() {
        let mut h = HeaderMap::new();
        h.insert("host", "johnsmith.s3.amazonaws.com".parse().unwrap());
        h.insert("date", "Tue, 27 Mar 2007 19:36:42 +0000".parse().unwrap());
        h.insert(
            "authorization",
            "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU="
                .parse()
                .unwrap(),
        );
        let now = at("Tue, 27 Mar 2007 19:40:00 GMT");
        let cfg = config();
        // Virtual-hosted, and the same request path-style.
        let ok = authenticate(
            &parts("GET", "/photos/puppy.jpg", "", Some("johnsmith"), &h),
            &cfg,
            now,
        )
        .unwrap();
        assert_eq!(ok.access_key, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(ok.payload, Payload::Unsigned);
        authenticate(
            &parts("GET", "/johnsmith/photos/puppy.jpg", "", None, &h),
            &cfg,
            now,
        )
        .unwrap();
        // Another key, method, sub-resource or a stale clock fails.
        for (method, path, query) in [
            ("GET", "/johnsmith/photos/kitten.jpg", ""),
            ("HEAD", "/johnsmith/photos/puppy.jpg", ""),
            ("GET", "/johnsmith/photos/puppy.jpg", "acl"),
        ] {
            assert!(matches!(
                authenticate(&parts(method, path, query, None, &h), &cfg, now),
                Err(Error::SignatureDoesNotMatch)
            ));
        }
        // Query parameters that are not sub-resources are not signed.
        authenticate(
            &parts("GET", "/johnsmith/photos/puppy.jpg", "foo=bar", None, &h),
            &cfg,
            now,
        )
        .unwrap();
        assert!(matches!(
            authenticate(
                &parts("GET", "/johnsmith/photos/puppy.jpg", "", None, &h),
                &cfg,
                at("Tue, 27 Mar 2007 20:00:00 GMT")
            ),
            Err(Error::RequestTimeTooSkewed)
        ));

        // PUT with a Content-Type.
        let mut put = HeaderMap::new();
        put.insert("date", "Tue, 27 Mar 2007 21:15:45 +0000".parse().unwrap());
        put.insert("content-type", "image/jpeg".parse().unwrap());
        put.insert(
            "authorization",
            "AWS AKIAIOSFODNN7EXAMPLE:MyyxeRY7whkBe+bq8fHCL/2kKUg="
                .parse()
                .unwrap(),
        );
        let now = at("Tue, 27 Mar 2007 21:15:45 GMT");
        authenticate(
            &parts("PUT", "/johnsmith/photos/puppy.jpg", "", None, &put),
            &cfg,
            now,
        )
        .unwrap();
        put.insert("content-type", "image/png".parse().unwrap());
        assert!(
            authenticate(
                &parts("PUT", "/johnsmith/photos/puppy.jpg", "", None, &put),
                &cfg,
                now
            )
            .is_err()
        );

        // DELETE dated by x-amz-date, as in AWS's example.
        let mut del = HeaderMap::new();
        del.insert("date", "Tue, 27 Mar 2007 21:20:27 +0000".parse().unwrap());
        del.insert(
            "x-amz-date",
            "Tue, 27 Mar 2007 21:20:26 +0000".parse().unwrap(),
        );
        del.insert(
            "authorization",
            "AWS AKIAIOSFODNN7EXAMPLE:lx3byBScXR6KzyMaifNkardMwNk="
                .parse()
                .unwrap(),
        );
        authenticate(
            &parts("DELETE", "/johnsmith/photos/puppy.jpg", "", None, &del),
            &cfg,
            at("Tue, 27 Mar 2007 21:20:26 GMT"),
        )
        .unwrap();

        // Unknown key, malformed header, missing date.
        let mut bad = h.clone();
        bad.insert("authorization", "AWS NOPE:abc=".parse().unwrap());
        assert!(matches!(
            authenticate(
                &parts("GET", "/johnsmith/photos/puppy.jpg", "", None, &bad),
                &cfg,
                now
            ),
            Err(Error::InvalidAccessKeyId)
        ));
        for garbage in ["AWS ", "AWS nocolon", "AWS :sig", "AWS key:"] {
            bad.insert("authorization", garbage.parse().unwrap());
            let r = authenticate(
                &parts("GET", "/johnsmith/photos/puppy.jpg", "", None, &bad),
                &cfg,
                now,
            );
            assert!(
                r.is_err() && r.as_ref().unwrap_err().status() < 500,
                "{garbage}: {r:?}"
            );
        }
        let mut undated = h.clone();
        undated.remove("date");
        assert!(matches!(
            authenticate(
                &parts("GET", "/johnsmith/photos/puppy.jpg", "", None, &undated),
                &cfg,
                now
            ),
            Err(Error::AccessDenied(_))
        ));
    }

    #[test]
    fn bucket_level_path_style_is_signed_with_a_trailing_slash() {
        // AWS's list example ("/johnsmith/"), sent path-style as botocore does: `/johnsmith`.
        let mut h = HeaderMap::new();
        h.insert("date", "Tue, 27 Mar 2007 19:42:41 +0000".parse().unwrap());
        h.insert(
            "authorization",
            "AWS AKIAIOSFODNN7EXAMPLE:htDYFYduRNen8P9ZfE/s9SuKy0U="
                .parse()
                .unwrap(),
        );
        let query = "prefix=photos&max-keys=50&marker=puppy";
        let then = at("Tue, 27 Mar 2007 19:42:41 GMT");
        for path in ["/johnsmith", "/johnsmith/"] {
            assert!(authenticate(&parts("GET", path, query, None, &h), &config(), then).is_ok());
        }
        // Only for the bucket itself: a key's signature never covers the key plus a slash.
        let mut k = h.clone();
        k.insert(
            "authorization",
            format!(
                "AWS AKIAIOSFODNN7EXAMPLE:{}",
                sign(
                    SECRET,
                    "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/key/"
                )
            )
            .parse()
            .unwrap(),
        );
        assert!(matches!(
            authenticate(
                &parts("GET", "/johnsmith/key", "", None, &k),
                &config(),
                then
            ),
            Err(Error::SignatureDoesNotMatch)
        ));
        assert!(
            authenticate(
                &parts("GET", "/johnsmith/key/", "", None, &k),
                &config(),
                then
            )
            .is_ok()
        );
    }

    #[test]
    fn presigned_from_the_aws_example() {
        let h = HeaderMap::new();
        let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D";
        let cfg = config();
        let before = UNIX_EPOCH + Duration::from_secs(1175139000);
        let ok = authenticate(
            &parts("GET", "/photos/puppy.jpg", query, Some("johnsmith"), &h),
            &cfg,
            before,
        )
        .unwrap();
        assert_eq!(ok.access_key, "AKIAIOSFODNN7EXAMPLE");
        let after = UNIX_EPOCH + Duration::from_secs(1175139621);
        assert!(matches!(
            authenticate(
                &parts("GET", "/photos/puppy.jpg", query, Some("johnsmith"), &h),
                &cfg,
                after
            ),
            Err(Error::AccessDenied(_))
        ));
        let tampered = query.replace("1175139620", "1275139620");
        assert!(matches!(
            authenticate(
                &parts("GET", "/photos/puppy.jpg", &tampered, Some("johnsmith"), &h),
                &cfg,
                before
            ),
            Err(Error::SignatureDoesNotMatch)
        ));
    }
}
