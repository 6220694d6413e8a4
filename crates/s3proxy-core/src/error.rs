//! The one error type of s3proxy, mapped onto S3 error codes and HTTP statuses.

/// Result alias used across s3proxy.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a storage backend failed ([`Error::Backend`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// Unreachable, timed out, overloaded at the gateway, or refusing the proxy's own
    /// credentials: 503 ServiceUnavailable, and a sign the backend is down.
    Unavailable,
    /// The backend is up and answered, but this request failed there (an HTTP 500, an
    /// answer the proxy cannot use): 500 InternalError, retried, and not a sign the
    /// backend is down.
    Failed,
}

/// Every failure s3proxy can report. Each variant maps onto exactly one S3 error code
/// ([`Error::code`]) and HTTP status ([`Error::status`]); the message is what a client sees
/// in the `<Message>` element of the S3 error document.
///
/// ```
/// use s3proxy_core::Error;
/// let e = Error::NoSuchKey;
/// assert_eq!(e.code(), "NoSuchKey");
/// assert_eq!(e.status(), 404);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bucket does not exist.
    #[error("The specified bucket does not exist")]
    NoSuchBucket,
    /// The key does not exist.
    #[error("The specified key does not exist.")]
    NoSuchKey,
    /// The multipart upload does not exist (aborted, completed, or never created).
    #[error(
        "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."
    )]
    NoSuchUpload,
    /// CreateBucket on a bucket that already exists (and is ours).
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    /// CreateBucket on a bucket that exists and belongs to another credential.
    #[error(
        "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
    )]
    BucketAlreadyExists,
    /// DeleteBucket on a bucket that still holds objects.
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    /// A bucket name breaks S3's naming rules.
    #[error("The specified bucket is not valid: {0}")]
    InvalidBucketName(String),
    /// A key longer than 1024 bytes.
    #[error("Your key is too long")]
    KeyTooLong,
    /// A malformed or unsupported argument; the string says which.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request the server could not parse.
    #[error("{0}")]
    InvalidRequest(String),
    /// The requested range is not satisfiable.
    #[error("The requested range is not satisfiable")]
    InvalidRange,
    /// GET or HEAD `?partNumber=N` beyond the object's parts.
    #[error("The requested partnumber is not satisfiable")]
    InvalidPartNumber,
    /// A precondition (If-Match, If-Unmodified-Since, ...) failed.
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// If-None-Match / If-Modified-Since matched: the client's copy is current.
    #[error("Not Modified")]
    NotModified,
    /// The Content-MD5 or checksum sent did not match the received body.
    #[error("The Content-MD5 or checksum you specified did not match what we received.")]
    BadDigest,
    /// The Content-MD5 header could not be decoded.
    #[error("The Content-MD5 you specified is not valid.")]
    InvalidDigest,
    /// The body ended before the declared Content-Length.
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,
    /// PUT without Content-Length.
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,
    /// A body larger than S3 allows for the operation.
    #[error("Your proposed upload exceeds the maximum allowed object size.")]
    EntityTooLarge,
    /// A multipart part other than the last is smaller than 5 MiB.
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    /// A part listed in CompleteMultipartUpload is missing or its ETag differs.
    #[error(
        "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."
    )]
    InvalidPart,
    /// Parts in CompleteMultipartUpload are not in ascending order.
    #[error(
        "The list of parts was not in ascending order. The parts list must be specified in order by part number."
    )]
    InvalidPartOrder,
    /// User metadata above S3's 2 KB limit.
    #[error("Your metadata headers exceed the maximum allowed metadata size.")]
    MetadataTooLarge,
    /// The XML body is not well formed or not valid against the schema.
    #[error(
        "The XML you provided was not well-formed or did not validate against our published schema."
    )]
    MalformedXml,
    /// The request's header section is larger than the server accepts.
    #[error("Your request header section exceeds the maximum allowed size.")]
    RequestHeaderSectionTooLarge,
    /// A request document (XML body) larger than the server accepts.
    #[error("Your request was too big.")]
    MaxMessageLengthExceeded,
    /// Access denied (no or bad credentials).
    #[error("{0}")]
    AccessDenied(String),
    /// The access key id is not known.
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    /// The signature does not match the request.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    )]
    SignatureDoesNotMatch,
    /// The body's SHA-256 differs from `x-amz-content-sha256`.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// The Authorization header (or presigned query) is malformed; the string says how.
    #[error("{0}")]
    AuthorizationMalformed(String),
    /// A presigned URL's query parameters are missing or invalid; the string says how.
    #[error("{0}")]
    AuthorizationQueryParameters(String),
    /// The request time differs too much from the server's clock.
    #[error("The difference between the request time and the server's time is too large.")]
    RequestTimeTooSkewed,
    /// The HTTP method is not allowed on this resource.
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    /// An S3 operation s3proxy does not implement.
    #[error("{0} is not implemented by s3proxy")]
    NotImplemented(String),
    /// A backend, or too few backends, could answer; the string says which and why.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A backend asked us to slow down.
    #[error("Please reduce your request rate.")]
    SlowDown,
    /// The client was too slow sending the request.
    #[error(
        "Your socket connection to the server was not read from or written to within the timeout period."
    )]
    RequestTimeout,
    /// Stored data failed authentication or is otherwise unreadable.
    #[error("stored data failed verification: {0}")]
    Corrupt(String),
    /// A storage backend failed a request that the client did not cause: it could not be
    /// reached, timed out, refused the proxy's credentials, or answered that the request
    /// failed there. [`BackendErrorKind`] says which, and so the status and whether the
    /// failure counts against the backend's health.
    #[error("backend {backend}: {operation}: {detail}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What was asked of it: the S3 operation (`PutObject`), or the step of one.
        operation: String,
        /// How it failed.
        kind: BackendErrorKind,
        /// What is known of the failure and of the request it was about (for the logs;
        /// shown to clients only for [`BackendErrorKind::Unavailable`], as S3 does for
        /// 503s).
        detail: String,
        /// The underlying error (the SDK's or the transport's), when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An I/O error in a backend, with context.
    #[error("{context}: {source}")]
    Io {
        /// What the backend was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Anything else that is the server's fault.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The answer to a request for a part (`partNumber`) and a byte range at once.
    pub fn part_with_range() -> Error {
        Error::InvalidRequest(
            "Cannot specify both Range header and partNumber query parameter".into(),
        )
    }

    /// The S3 error code (`<Code>` in the error document).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoSuchBucket => "NoSuchBucket",
            Error::NoSuchKey => "NoSuchKey",
            Error::NoSuchUpload => "NoSuchUpload",
            Error::BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            Error::BucketAlreadyExists => "BucketAlreadyExists",
            Error::BucketNotEmpty => "BucketNotEmpty",
            Error::InvalidBucketName(_) => "InvalidBucketName",
            Error::KeyTooLong => "KeyTooLongError",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::InvalidRequest(_) => "InvalidRequest",
            Error::InvalidRange => "InvalidRange",
            Error::InvalidPartNumber => "InvalidPartNumber",
            Error::PreconditionFailed => "PreconditionFailed",
            Error::NotModified => "NotModified",
            Error::BadDigest => "BadDigest",
            Error::InvalidDigest => "InvalidDigest",
            Error::IncompleteBody => "IncompleteBody",
            Error::MissingContentLength => "MissingContentLength",
            Error::EntityTooLarge => "EntityTooLarge",
            Error::EntityTooSmall => "EntityTooSmall",
            Error::InvalidPart => "InvalidPart",
            Error::InvalidPartOrder => "InvalidPartOrder",
            Error::MetadataTooLarge => "MetadataTooLarge",
            Error::MalformedXml => "MalformedXML",
            Error::RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            Error::MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            Error::AccessDenied(_) => "AccessDenied",
            Error::InvalidAccessKeyId => "InvalidAccessKeyId",
            Error::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Error::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Error::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            Error::AuthorizationMalformed(_) => "AuthorizationHeaderMalformed",
            Error::AuthorizationQueryParameters(_) => "AuthorizationQueryParametersError",
            Error::MethodNotAllowed => "MethodNotAllowed",
            Error::NotImplemented(_) => "NotImplemented",
            Error::ServiceUnavailable(_) => "ServiceUnavailable",
            Error::SlowDown => "SlowDown",
            Error::RequestTimeout => "RequestTimeout",
            Error::Backend { kind, .. } => match kind {
                BackendErrorKind::Unavailable => "ServiceUnavailable",
                BackendErrorKind::Failed => "InternalError",
            },
            Error::Corrupt(_) | Error::Io { .. } | Error::Internal(_) => "InternalError",
        }
    }

    /// The HTTP status code S3 answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotModified => 304,
            Error::NoSuchBucket | Error::NoSuchKey | Error::NoSuchUpload => 404,
            Error::BucketAlreadyOwnedByYou | Error::BucketAlreadyExists | Error::BucketNotEmpty => {
                409
            }
            Error::InvalidBucketName(_)
            | Error::KeyTooLong
            | Error::InvalidArgument(_)
            | Error::InvalidRequest(_)
            | Error::BadDigest
            | Error::InvalidDigest
            | Error::IncompleteBody
            | Error::EntityTooLarge
            | Error::EntityTooSmall
            | Error::InvalidPart
            | Error::InvalidPartOrder
            | Error::MetadataTooLarge
            | Error::MalformedXml
            | Error::RequestHeaderSectionTooLarge
            | Error::MaxMessageLengthExceeded
            | Error::ContentSha256Mismatch
            | Error::AuthorizationMalformed(_)
            | Error::AuthorizationQueryParameters(_)
            | Error::RequestTimeout => 400,
            Error::MissingContentLength => 411,
            Error::InvalidRange | Error::InvalidPartNumber => 416,
            Error::PreconditionFailed => 412,
            Error::AccessDenied(_)
            | Error::InvalidAccessKeyId
            | Error::SignatureDoesNotMatch
            | Error::RequestTimeTooSkewed => 403,
            Error::MethodNotAllowed => 405,
            Error::NotImplemented(_) => 501,
            Error::ServiceUnavailable(_) | Error::SlowDown => 503,
            Error::Backend { kind, .. } => match kind {
                BackendErrorKind::Unavailable => 503,
                BackendErrorKind::Failed => 500,
            },
            Error::Corrupt(_) | Error::Io { .. } | Error::Internal(_) => 500,
        }
    }

    /// Whether retrying the same request later may succeed (timeouts, 5xx, throttling).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ServiceUnavailable(_)
                | Error::SlowDown
                | Error::Internal(_)
                | Error::Io { .. }
                | Error::Backend { .. }
        )
    }

    /// A failure of the backend `backend` at `operation` ([`Error::Backend`]), without an
    /// underlying error.
    pub fn backend(
        backend: impl Into<String>,
        operation: impl Into<String>,
        kind: BackendErrorKind,
        detail: impl Into<String>,
    ) -> Self {
        Error::Backend {
            backend: backend.into(),
            operation: operation.into(),
            kind,
            detail: detail.into(),
            source: None,
        }
    }

    /// The same error with `source` as its underlying error, when it is an
    /// [`Error::Backend`]; any other error is returned as it is.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        match self {
            Error::Backend {
                backend,
                operation,
                kind,
                detail,
                ..
            } => Error::Backend {
                backend,
                operation,
                kind,
                detail,
                source: Some(Box::new(source)),
            },
            e => e,
        }
    }

    /// Whether this is a backend's failure of the given kind.
    pub fn is_backend(&self, of: BackendErrorKind) -> bool {
        matches!(self, Error::Backend { kind, .. } if *kind == of)
    }

    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_error_is_4xx_and_server_error_5xx() {
        let cases = [
            (Error::NoSuchBucket, 404),
            (Error::NoSuchKey, 404),
            (Error::InvalidRange, 416),
            (Error::InvalidPartNumber, 416),
            (Error::PreconditionFailed, 412),
            (Error::SignatureDoesNotMatch, 403),
            (Error::KeyTooLong, 400),
            (Error::MissingContentLength, 411),
            (Error::Internal("x".into()), 500),
            (Error::ServiceUnavailable("x".into()), 503),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status, "{}", err.code());
        }
        assert_eq!(Error::KeyTooLong.code(), "KeyTooLongError");
        // A backend's failure answers as the string variants it replaces did.
        let down = Error::backend(
            "r1",
            "PutObject",
            BackendErrorKind::Unavailable,
            "timed out",
        );
        assert_eq!((down.status(), down.code()), (503, "ServiceUnavailable"));
        assert_eq!(down.to_string(), "backend r1: PutObject: timed out");
        let failed = Error::backend("r1", "PutObject", BackendErrorKind::Failed, "HTTP 500");
        assert_eq!((failed.status(), failed.code()), (500, "InternalError"));
        assert!(down.is_transient() && failed.is_transient());
        assert_eq!(Error::MalformedXml.code(), "MalformedXML");
    }
}
