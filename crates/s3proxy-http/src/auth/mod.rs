//! Request authentication: SigV4 (header and presigned) and the payload modes it implies,
//! and SigV2 (header and presigned).

pub mod chunked;
pub mod grants;
pub mod sigv2;
pub mod sigv4;

use grants::Grants;
use http::HeaderMap;
use s3proxy_core::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// One access key, its secret and the buckets it may reach.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The access key id clients send.
    pub access_key: String,
    /// The secret key they sign with.
    pub secret_key: String,
    /// The buckets it reaches ([`Grants::All`] by default).
    pub grants: Grants,
}

impl Credential {
    /// A credential reaching every bucket.
    ///
    /// ```
    /// let c = s3proxy_http::auth::Credential::new("AKEXAMPLE", "secretexample");
    /// assert!(!format!("{c:?}").contains("secretexample"));
    /// ```
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credential {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            grants: Grants::All,
        }
    }

    /// The same credential limited to `grants`.
    pub fn with_grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }
}

/// Secrets never reach a log line through `{:?}`.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("grants", &self.grants)
            .finish()
    }
}

/// The credentials the server accepts, by access key.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: HashMap<String, (String, Arc<Grants>)>,
    /// Derived SigV4 signing keys by (access key, date, region, service): four HMACs
    /// per request otherwise, for a key that changes once a day.
    signing_keys: Arc<std::sync::Mutex<HashMap<SigningScope, [u8; 32]>>>,
}

type SigningScope = (String, String, String, String);

/// Past this many cached signing keys (credentials times regions times days) the cache
/// starts over, so a client inventing scopes cannot grow it.
const MAX_CACHED_SIGNING_KEYS: usize = 1024;

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("access_keys", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring holding `credentials`.
    pub fn new(credentials: impl IntoIterator<Item = Credential>) -> Self {
        Keyring {
            keys: credentials
                .into_iter()
                .map(|c| (c.access_key, (c.secret_key, Arc::new(c.grants))))
                .collect(),
            signing_keys: Default::default(),
        }
    }

    /// The SigV4 signing key of `access_key` for a credential scope, cached.
    fn signing_key(
        &self,
        access_key: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> Result<[u8; 32]> {
        let scope = (
            access_key.to_string(),
            date.to_string(),
            region.to_string(),
            service.to_string(),
        );
        let mut cache = self.signing_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cache.get(&scope) {
            return Ok(*key);
        }
        let key = sigv4::signing_key(self.secret(access_key)?, date, region, service);
        if cache.len() >= MAX_CACHED_SIGNING_KEYS {
            cache.clear();
        }
        cache.insert(scope, key);
        Ok(key)
    }

    fn secret(&self, access_key: &str) -> Result<&str> {
        self.keys
            .get(access_key)
            .map(|(secret, _)| secret.as_str())
            .ok_or(Error::InvalidAccessKeyId)
    }

    /// Called only for a key whose signature checked out, so it is in the keyring; an
    /// unknown one would reach nothing.
    fn grants(&self, access_key: &str) -> Arc<Grants> {
        self.keys
            .get(access_key)
            .map(|(_, grants)| grants.clone())
            .unwrap_or_else(|| Arc::new(Grants::Only(vec![])))
    }
}

/// What the signature says about the body, and how to check it while it streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// `UNSIGNED-PAYLOAD`: nothing to check.
    Unsigned,
    /// The hex SHA-256 the body must have.
    Sha256(String),
    /// An `aws-chunked` body; `signing` is set when each chunk carries a signature,
    /// `trailer` when a trailer with a checksum follows the last chunk.
    Chunked {
        /// Chunk-signing context, for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`.
        signing: Option<ChunkSigning>,
        /// Whether a trailer follows the final chunk.
        trailer: bool,
    },
}

/// What is needed to verify the signature of each chunk of a streaming upload.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSigning {
    /// The signing key of the request.
    pub key: [u8; 32],
    /// `x-amz-date` of the request.
    pub amz_date: String,
    /// Credential scope.
    pub scope: String,
    /// The request's own signature, which the first chunk's signature chains from.
    pub seed_signature: String,
}

/// The signing key stays out of `{:?}`.
impl std::fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigning")
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A request whose signature checked out.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// Who signed it.
    pub access_key: String,
    /// How to check the body.
    pub payload: Payload,
    /// The buckets the signer may reach.
    pub grants: Arc<Grants>,
    /// `x-amz-*` parameters of a presigned SigV4 URL besides its own (`x-amz-meta-*`,
    /// `x-amz-acl`, ...), names lowercased: signed with the whole query, so S3 applies
    /// them like headers.
    pub query_headers: Vec<(String, String)>,
}

/// The parts of a request that authentication reads.
pub struct RequestParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Raw path, as sent.
    pub raw_path: &'a str,
    /// Raw query string, as sent (without `?`).
    pub raw_query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The bucket, when the request names it in the Host header (virtual-hosted style);
    /// SigV2 signs it as part of the resource.
    pub vhost_bucket: Option<&'a str>,
}

/// Authentication settings.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Accepted credentials.
    pub keyring: Keyring,
    /// Largest accepted difference between the request's time and ours.
    pub max_skew: Duration,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What AWS answers for a presigned URL whose query parameters are missing or invalid.
fn query_error(why: &str) -> Error {
    Error::AuthorizationQueryParameters(why.into())
}

fn malformed(why: &str) -> Error {
    Error::AuthorizationMalformed(format!("The authorization information is malformed: {why}"))
}

/// Parse an ISO 8601 basic timestamp (`20130524T000000Z`).
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, se) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(y as i64, mo as u32, d as u32);
    let time_of_day = h
        .checked_mul(3600)?
        .checked_add(mi.checked_mul(60)?)?
        .checked_add(se)?;
    let time_of_day = i64::try_from(time_of_day).ok()?;
    let secs = days.checked_mul(86400)?.checked_add(time_of_day)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The credential scope's date is the 8 digits that start the request's timestamp.
fn scope_date_matches(scope_date: &str, amz_date: &str) -> bool {
    scope_date.len() == 8
        && scope_date.bytes().all(|b| b.is_ascii_digit())
        && amz_date.get(..8) == Some(scope_date)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

struct SignatureInput<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    amz_date: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
    payload_hash: &'a str,
    /// Whether the signature came in the query (a presigned URL).
    presigned: bool,
}

/// Check a SigV4 signature; returns the signing key for chunk verification.
fn verify_v4(
    req: &RequestParts<'_>,
    config: &AuthConfig,
    input: &SignatureInput<'_>,
) -> Result<[u8; 32]> {
    // An unknown key is InvalidAccessKeyId before anything else is looked at.
    config.keyring.secret(input.access_key)?;
    if input.service != "s3" {
        return Err(malformed("the credential scope's service must be s3"));
    }
    let names: Vec<&str> = input.signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(malformed("SignedHeaders must include host"));
    }
    let mut headers = Vec::with_capacity(names.len());
    for name in &names {
        let values: Vec<String> = req
            .headers
            .get_all(*name)
            .iter()
            .map(|v| sigv4::canonical_header_value(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        headers.push((name.to_string(), values.join(",")));
    }
    let scope = format!(
        "{}/{}/{}/aws4_request",
        input.date, input.region, input.service
    );
    let key =
        config
            .keyring
            .signing_key(input.access_key, input.date, input.region, input.service)?;
    let query = sigv4::canonical_query(req.raw_query, input.presigned);
    // Clients encode keys slightly differently; the normalised form covers SDKs, the raw
    // form clients that sign exactly what they send.
    let normalised = sigv4::canonical_uri(req.raw_path);
    let mut uris = vec![normalised.clone()];
    if req.raw_path != normalised {
        uris.push(req.raw_path.to_string());
    }
    for uri in uris {
        let creq = sigv4::canonical_request(
            req.method,
            &uri,
            &query,
            &headers,
            input.signed_headers,
            input.payload_hash,
        );
        let expected = sigv4::sign(&key, &sigv4::string_to_sign(input.amz_date, &scope, &creq));
        if constant_time_eq(&expected, input.signature) {
            refuse_unsigned_amz_headers(req.headers, &names)?;
            return Ok(key);
        }
    }
    Err(Error::SignatureDoesNotMatch)
}

/// S3 refuses a request carrying an `x-amz-*` header its signature does not cover: such a
/// header could have been added by anyone who saw the request or holds a presigned URL
/// (`x-amz-copy-source` turns an upload link into a copy of any object). The payload
/// hash is exempt: it is part of every canonical request whether listed or not.
fn refuse_unsigned_amz_headers(headers: &HeaderMap, signed: &[&str]) -> Result<()> {
    let unsigned = headers.keys().map(|n| n.as_str()).find(|name| {
        name.starts_with("x-amz-") && *name != "x-amz-content-sha256" && !signed.contains(name)
    });
    match unsigned {
        Some(name) => {
            log::debug!("refused: header {name} present but not signed");
            Err(Error::AccessDenied(
                "There were headers present in the request which were not signed".into(),
            ))
        }
        None => Ok(()),
    }
}

fn check_skew(time: SystemTime, now: SystemTime, max: Duration) -> Result<()> {
    let skew = match time.duration_since(now) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    if skew > max {
        Err(Error::RequestTimeTooSkewed)
    } else {
        Ok(())
    }
}

/// The query's parameters by name, read as the router reads them. A parameter of
/// `auth_names` given twice is refused: the signature check and the handler must not
/// pick different copies.
fn query_params(raw_query: &str, auth_names: &[&str]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in crate::query::pairs(raw_query) {
        let repeated = auth_names.contains(&k.as_str()).then(|| k.clone());
        if out.insert(k, v).is_some()
            && let Some(name) = repeated
        {
            return Err(query_error(&format!("{name} is given more than once")));
        }
    }
    Ok(out)
}

/// Both signature versions sign a repeated header as its values joined with commas, but
/// the handlers read one value: `x-amz-copy-source: /b/a` and `x-amz-copy-source: b` would
/// sign as `/b/a,b` and copy `/b/a`. An `x-amz-*` header is therefore given once or refused.
fn refuse_repeated_amz_headers(headers: &HeaderMap) -> Result<()> {
    match headers
        .keys()
        .map(|n| n.as_str())
        .find(|n| n.starts_with("x-amz-") && headers.get_all(*n).iter().nth(1).is_some())
    {
        Some(name) => Err(Error::InvalidArgument(format!(
            "The header {name} may be given only once"
        ))),
        None => Ok(()),
    }
}

/// The query parameters of a presigned SigV4 URL.
const PRESIGNED_V4_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
];

/// Authenticate a request signed with SigV4 or SigV2, in the Authorization header or the
/// query.
pub fn authenticate(
    req: &RequestParts<'_>,
    config: &AuthConfig,
    now: SystemTime,
) -> Result<Authenticated> {
    refuse_repeated_amz_headers(req.headers)?;
    if let Some(auth) = header(req.headers, "authorization") {
        if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") {
            return authenticate_header(req, config, now, rest);
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return sigv2::authenticate_header(req, config, now, rest);
        }
        return Err(malformed("unsupported authorization type"));
    }
    // Any SigV4 query parameter makes it a presigned request: one missing the others is
    // told what is missing, not treated as anonymous.
    let names: Vec<String> = crate::query::pairs(req.raw_query).map(|(k, _)| k).collect();
    if names
        .iter()
        .any(|n| PRESIGNED_V4_PARAMS.contains(&n.as_str()))
    {
        return authenticate_presigned(req, config, now);
    }
    if names
        .iter()
        .any(|n| n == "AWSAccessKeyId" || n == "Signature")
    {
        return sigv2::authenticate_presigned(req, config, now);
    }
    Err(Error::AccessDenied(
        "Anonymous access is not allowed; sign the request.".into(),
    ))
}

fn authenticate_header(
    req: &RequestParts<'_>,
    config: &AuthConfig,
    now: SystemTime,
    rest: &str,
) -> Result<Authenticated> {
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("expected key=value pairs"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| malformed("missing Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("missing Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(malformed("bad Credential scope"));
    };
    // x-amz-date wins over Date; Date serves when it is alone and in the ISO 8601 basic
    // form the signature needs. Empty values count as absent.
    let amz_date = [
        header(req.headers, "x-amz-date"),
        header(req.headers, "date"),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|d| !d.is_empty())
    .ok_or_else(|| {
        Error::AccessDenied("AWS authentication requires a valid Date or x-amz-date header".into())
    })?;
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        Error::AccessDenied("AWS authentication requires a valid Date or x-amz-date header".into())
    })?;
    if !scope_date_matches(date, amz_date) {
        return Err(malformed("the credential date does not match x-amz-date"));
    }
    let payload_hash = header(req.headers, "x-amz-content-sha256").ok_or_else(|| {
        Error::InvalidRequest(
            "Missing required header for this request: x-amz-content-sha256".into(),
        )
    })?;
    let input = SignatureInput {
        access_key,
        date,
        region,
        service,
        amz_date,
        signed_headers,
        signature,
        payload_hash,
        presigned: false,
    };
    let key = verify_v4(req, config, &input)?;
    check_skew(time, now, config.max_skew)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let signing = || ChunkSigning {
        key,
        amz_date: amz_date.to_string(),
        scope: scope.clone(),
        seed_signature: signature.to_string(),
    };
    let payload = match payload_hash {
        "UNSIGNED-PAYLOAD" => Payload::Unsigned,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Payload::Chunked {
            signing: None,
            trailer: true,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Payload::Chunked {
            signing: Some(signing()),
            trailer: false,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Payload::Chunked {
            signing: Some(signing()),
            trailer: true,
        },
        hash if is_sha256_hex(hash) => Payload::Sha256(hash.to_ascii_lowercase()),
        _ => {
            return Err(Error::InvalidArgument(
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or a SHA-256".into(),
            ));
        }
    };
    Ok(Authenticated {
        access_key: access_key.to_string(),
        payload,
        grants: config.keyring.grants(access_key),
        query_headers: vec![],
    })
}

fn authenticate_presigned(
    req: &RequestParts<'_>,
    config: &AuthConfig,
    now: SystemTime,
) -> Result<Authenticated> {
    let q = query_params(req.raw_query, PRESIGNED_V4_PARAMS)?;
    let get = |name: &str| {
        q.get(name)
            .map(String::as_str)
            .ok_or_else(|| query_error(&format!("Query-string authentication requires {name}")))
    };
    if get("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err(query_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let credential = get("X-Amz-Credential")?;
    let amz_date = get("X-Amz-Date")?;
    let expires: u64 = get("X-Amz-Expires")?
        .parse()
        .map_err(|_| query_error("X-Amz-Expires should be a number"))?;
    if expires > 604_800 {
        return Err(query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    let signed_headers = get("X-Amz-SignedHeaders")?;
    let signature = get("X-Amz-Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(query_error(&format!(
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; \
             expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\", got {credential:?}"
        )));
    };
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    if !scope_date_matches(date, amz_date) {
        return Err(query_error(
            "the date of X-Amz-Credential does not match X-Amz-Date",
        ));
    }
    let payload_hash = header(req.headers, "x-amz-content-sha256").unwrap_or("UNSIGNED-PAYLOAD");
    let input = SignatureInput {
        access_key,
        date,
        region,
        service,
        amz_date,
        signed_headers,
        signature,
        payload_hash,
        presigned: true,
    };
    verify_v4(req, config, &input)?;
    if now.checked_add(config.max_skew).is_some_and(|t| time > t) {
        return Err(Error::AccessDenied("Request is not valid yet".into()));
    }
    if time
        .checked_add(Duration::from_secs(expires))
        .is_none_or(|end| now > end)
    {
        return Err(Error::AccessDenied("Request has expired".into()));
    }
    let payload = match payload_hash {
        "UNSIGNED-PAYLOAD" => Payload::Unsigned,
        hash if is_sha256_hex(hash) => Payload::Sha256(hash.to_ascii_lowercase()),
        _ => {
            return Err(Error::InvalidArgument(
                "x-amz-content-sha256 of a presigned request must be UNSIGNED-PAYLOAD or a SHA-256"
                    .into(),
            ));
        }
    };
    Ok(Authenticated {
        access_key: access_key.to_string(),
        payload,
        grants: config.keyring.grants(access_key),
        query_headers: signed_query_headers(req.raw_query),
    })
}

/// The `x-amz-*` parameters of a presigned SigV4 query that stand for headers: all but
/// the URL's own authentication parameters and those authentication has read already
/// (the payload hash, the date, a session token).
fn signed_query_headers(raw_query: &str) -> Vec<(String, String)> {
    const NOT_HEADERS: &[&str] = &["x-amz-content-sha256", "x-amz-date", "x-amz-security-token"];
    crate::query::pairs(raw_query)
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let own = PRESIGNED_V4_PARAMS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&name));
            (name.starts_with("x-amz-") && !own && !NOT_HEADERS.contains(&name.as_str()))
                .then_some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_query_headers_are_the_other_amz_parameters() {
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2Fb&X-Amz-Date=x\
                 &X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=s\
                 &x-amz-meta-color=dark%20blue&X-Amz-Acl=private&x-amz-content-sha256=h\
                 &partNumber=1";
        assert_eq!(
            signed_query_headers(q),
            vec![
                ("x-amz-meta-color".to_string(), "dark blue".to_string()),
                ("x-amz-acl".to_string(), "private".to_string()),
            ]
        );
    }

    #[test]
    fn amz_dates() {
        let t = parse_amz_date("20130524T000000Z").unwrap();
        assert_eq!(httpdate::fmt_http_date(t), "Fri, 24 May 2013 00:00:00 GMT");
        assert!(parse_amz_date("2013-05-24T00:00:00Z").is_none());
        assert!(parse_amz_date("20131324T000000Z").is_none());
        assert!(parse_amz_date("").is_none());
        assert!(parse_amz_date("2013052éT00000Z").is_none());
    }

    fn parts<'a>(headers: &'a HeaderMap, query: &'a str) -> RequestParts<'a> {
        RequestParts {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: query,
            headers,
            vhost_bucket: None,
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            keyring: Keyring::new([Credential::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )]),
            max_skew: Duration::from_secs(900),
        }
    }

    fn aws_example_headers(signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        h.insert("range", "bytes=0-9".parse().unwrap());
        h.insert("x-amz-content-sha256", sigv4::EMPTY_SHA256.parse().unwrap());
        h.insert("x-amz-date", "20130524T000000Z".parse().unwrap());
        h.insert("authorization", format!("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}").parse().unwrap());
        h
    }

    #[test]
    fn header_auth_accepts_the_aws_example_and_rejects_changes() {
        let good = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let then = parse_amz_date("20130524T000100Z").unwrap();
        let h = aws_example_headers(good);
        let ok = authenticate(&parts(&h, ""), &config(), then).unwrap();
        assert_eq!(ok.access_key, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(ok.payload, Payload::Sha256(sigv4::EMPTY_SHA256.into()));
        // A different signature, query, or clock.
        let bad = aws_example_headers(&good.replace('f', "e"));
        assert!(matches!(
            authenticate(&parts(&bad, ""), &config(), then),
            Err(Error::SignatureDoesNotMatch)
        ));
        assert!(matches!(
            authenticate(&parts(&h, "acl"), &config(), then),
            Err(Error::SignatureDoesNotMatch)
        ));
        let later = parse_amz_date("20130524T010000Z").unwrap();
        assert!(matches!(
            authenticate(&parts(&h, ""), &config(), later),
            Err(Error::RequestTimeTooSkewed)
        ));
        let mut unknown = h.clone();
        unknown.insert("authorization", "AWS4-HMAC-SHA256 Credential=NOPE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=00".parse().unwrap());
        assert!(matches!(
            authenticate(&parts(&unknown, ""), &config(), then),
            Err(Error::InvalidAccessKeyId)
        ));
        for garbage in [
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA256 Credential=a",
            "Bearer x",
            "AWS4-HMAC-SHA256 Credential=a/b,SignedHeaders=host,Signature=x",
        ] {
            let mut g = h.clone();
            g.insert("authorization", garbage.parse().unwrap());
            let r = authenticate(&parts(&g, ""), &config(), then);
            assert!(
                r.is_err() && r.as_ref().unwrap_err().status() < 500,
                "{garbage}: {r:?}"
            );
        }
        assert!(matches!(
            authenticate(&parts(&HeaderMap::new(), ""), &config(), then),
            Err(Error::AccessDenied(_))
        ));
    }

    #[test]
    fn scope_dates_are_the_request_day_exactly() {
        assert!(scope_date_matches("20130524", "20130524T000000Z"));
        for bad in ["", "2013", "2013052", "201305240", "2013052x", "20130525"] {
            assert!(!scope_date_matches(bad, "20130524T000000Z"), "{bad:?}");
        }
    }

    #[test]
    fn presigned_expiry() {
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let mut h = HeaderMap::new();
        h.insert("host", "examplebucket.s3.amazonaws.com".parse().unwrap());
        let within = parse_amz_date("20130524T230000Z").unwrap();
        assert!(authenticate(&parts(&h, query), &config(), within).is_ok());
        let after = parse_amz_date("20130525T000001Z").unwrap();
        assert!(matches!(
            authenticate(&parts(&h, query), &config(), after),
            Err(Error::AccessDenied(_))
        ));
    }
}
