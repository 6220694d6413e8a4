//! SDK errors, and the error codes S3 servers answer with, as the core's [`Error`].
//!
//! Most failures map onto the S3 error the client is to see, or onto an
//! [`Error::Backend`]: [`BackendErrorKind::Unavailable`] when the backend is down or
//! refuses our credentials, [`BackendErrorKind::Failed`] when it answered that the request
//! failed there (a 500 without a code we know, an answer the proxy cannot use). A request
//! the SDK could not build is the proxy's own [`Error::Internal`]. A failed request's or
//! internal error is logged and never shown to clients (they get S3's generic message),
//! and nothing else records it, so its detail carries all that is known: the bucket, key
//! and upload it was about, and the SDK's error with its whole chain of sources (its kind,
//! the server's code, message and request id). The SDK's error is also kept as the
//! [`Error::Backend`]'s source.

use super::S3;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use s3proxy_core::{BackendErrorKind, BucketName, Error, UploadId};

/// The HTTP response type of the SDK's errors.
pub(super) type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// One request to the server, as the detail of an error names it.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    /// The S3 operation, e.g. `PutObject`; in every message.
    op: &'static str,
    bucket: Option<&'a BucketName>,
    key: Option<&'a str>,
    upload_id: Option<&'a UploadId>,
    /// The source of a copy: bucket and key.
    source: Option<(&'a BucketName, &'a str)>,
}

impl<'a> Call<'a> {
    /// An operation on no bucket in particular (ListBuckets).
    pub(super) fn new(op: &'static str) -> Self {
        Call {
            op,
            bucket: None,
            key: None,
            upload_id: None,
            source: None,
        }
    }

    /// An operation on `bucket`.
    pub(super) fn bucket(op: &'static str, bucket: &'a BucketName) -> Self {
        Call {
            bucket: Some(bucket),
            ..Call::new(op)
        }
    }

    /// An operation on the object `key` in `bucket`.
    pub(super) fn object(op: &'static str, bucket: &'a BucketName, key: &'a str) -> Self {
        Call {
            key: Some(key),
            ..Call::bucket(op, bucket)
        }
    }

    /// The same, within the multipart upload `upload_id`.
    pub(super) fn upload(self, upload_id: &'a UploadId) -> Self {
        Call {
            upload_id: Some(upload_id),
            ..self
        }
    }

    /// The same, copying from `key` in `bucket`.
    pub(super) fn source(self, bucket: &'a BucketName, key: &'a str) -> Self {
        Call {
            source: Some((bucket, key)),
            ..self
        }
    }

    /// The S3 operation.
    pub(super) fn op(&self) -> &'static str {
        self.op
    }
}

impl S3 {
    /// `err` with what `call` was about appended, and `cause` (the SDK's error) with its
    /// chain of sources, when it is an [`Error::Internal`] or a failed request
    /// ([`BackendErrorKind::Failed`]); any other error is returned as it is, since
    /// clients may see its message.
    pub(super) fn internal_context(
        &self,
        call: Call<'_>,
        err: Error,
        cause: Option<&dyn std::error::Error>,
    ) -> Error {
        let (message, rebuild): (String, Box<dyn FnOnce(String) -> Error>) = match err {
            Error::Internal(message) => (message, Box::new(Error::Internal)),
            Error::Backend {
                backend,
                operation,
                kind: BackendErrorKind::Failed,
                detail,
                source,
            } => (
                detail,
                Box::new(move |detail| Error::Backend {
                    backend,
                    operation,
                    kind: BackendErrorKind::Failed,
                    detail,
                    source,
                }),
            ),
            err => return err,
        };
        // The backend's own bucket names: what the server's logs show.
        let mut about = Vec::new();
        if let Some(bucket) = call.bucket {
            about.push(format!("bucket {}", self.backend_bucket(bucket)));
        }
        if let Some(key) = call.key {
            about.push(format!("key {key:?}"));
        }
        if let Some(id) = call.upload_id {
            about.push(format!("upload id {}", id.as_str()));
        }
        if let Some((bucket, key)) = call.source {
            about.push(format!(
                "copy source {}/{key:?}",
                self.backend_bucket(bucket)
            ));
        }
        let mut parts = Vec::new();
        if !about.is_empty() {
            parts.push(about.join(", "));
        }
        if let Some(cause) = cause {
            parts.push(source_chain(cause));
        }
        if parts.is_empty() {
            return rebuild(message);
        }
        rebuild(format!("{message} [{}]", parts.join("; ")))
    }

    /// The [`Error::Internal`] for a request the SDK's builders refused to build: a bug
    /// here rather than a failure of the server.
    pub(super) fn request_not_built(&self, call: Call<'_>, err: &dyn std::error::Error) -> Error {
        let internal = Error::Internal(format!(
            "backend {}: {}: the request could not be built",
            self.name, call.op
        ));
        self.internal_context(call, internal, Some(err))
    }

    /// This backend unreachable (or refusing us) at `op`: [`BackendErrorKind::Unavailable`].
    pub(super) fn unavailable(&self, op: &str, why: impl std::fmt::Display) -> Error {
        Error::backend(
            &self.name,
            op,
            BackendErrorKind::Unavailable,
            why.to_string(),
        )
    }

    /// This backend answering that `op` failed there: [`BackendErrorKind::Failed`].
    pub(super) fn failed(&self, op: &str, why: impl std::fmt::Display) -> Error {
        Error::backend(&self.name, op, BackendErrorKind::Failed, why.to_string())
    }

    /// Map the SDK's error for `call` onto the core's. `not_found` is what a 404 without
    /// an error code means for this operation (HEAD responses carry no body, hence no
    /// code).
    pub(super) fn map_err<E>(
        &self,
        call: Call<'_>,
        err: SdkError<E, HttpResponse>,
        not_found: Error,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let op = call.op;
        let mapped = match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().map(str::to_string);
                let message = service.err().message().unwrap_or("").to_string();
                self.map_code(op, code.as_deref(), status, &message, not_found)
            }
            SdkError::ResponseError(response) => {
                let status = response.raw().status().as_u16();
                match status {
                    404 => not_found,
                    304 => Error::NotModified,
                    412 => Error::PreconditionFailed,
                    416 => Error::InvalidRange,
                    500 => self.failed(op, "HTTP 500 (no code)"),
                    _ => self.unavailable(op, DisplayErrorContext(&err)),
                }
            }
            SdkError::TimeoutError(_) => self.unavailable(op, "timed out"),
            SdkError::DispatchFailure(_) => self.unavailable(op, DisplayErrorContext(&err)),
            // The SDK's chain is in the message already; add only what the request was for.
            _ => {
                let internal = Error::Internal(format!(
                    "backend {}: {op}: {}",
                    self.name,
                    DisplayErrorContext(&err)
                ));
                return self.internal_context(call, internal, None);
            }
        };
        self.internal_context(call, mapped, Some(&err))
            .with_source(err)
    }

    /// Map an S3 error code (with the HTTP status it came with) onto the core's error.
    /// A failed request it returns names only the backend and `op`: callers add the rest
    /// with [`S3::internal_context`].
    pub(super) fn map_code(
        &self,
        op: &str,
        code: Option<&str>,
        status: u16,
        message: &str,
        not_found: Error,
    ) -> Error {
        let named = |what: &str| format!("backend {}: {op}: {what}", self.name);
        match code {
            Some("NoSuchKey") => Error::NoSuchKey,
            Some("NoSuchBucket") => Error::NoSuchBucket,
            Some("NoSuchUpload") => Error::NoSuchUpload,
            Some("PreconditionFailed") => Error::PreconditionFailed,
            Some("NotModified") => Error::NotModified,
            Some("InvalidRange") => Error::InvalidRange,
            Some("InvalidPartNumber") => Error::InvalidPartNumber,
            Some("InvalidPart") => Error::InvalidPart,
            Some("InvalidPartOrder") => Error::InvalidPartOrder,
            Some("EntityTooSmall") => Error::EntityTooSmall,
            Some("EntityTooLarge") => Error::EntityTooLarge,
            Some("BadDigest") => Error::BadDigest,
            Some("InvalidDigest") => Error::InvalidDigest,
            Some("IncompleteBody") => Error::IncompleteBody,
            Some("MetadataTooLarge") => Error::MetadataTooLarge,
            Some("KeyTooLongError") => Error::KeyTooLong,
            Some("MalformedXML") => Error::MalformedXml,
            // Our create_bucket looks first, so "exists" after "not found" is a race with
            // another creator of the same name, normally another s3proxy instance.
            Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists") => {
                Error::BucketAlreadyOwnedByYou
            }
            Some("BucketNotEmpty") => Error::BucketNotEmpty,
            Some("InvalidBucketName") => Error::InvalidBucketName(named(message)),
            Some("SlowDown") => Error::SlowDown,
            Some("NotImplemented") => Error::NotImplemented(named(message)),
            Some("InvalidArgument") => Error::InvalidArgument(named(message)),
            Some("InvalidRequest") => Error::InvalidRequest(named(message)),
            // The backend rejecting *our* credentials is a misconfigured or failing
            // replica, not something the client did.
            Some(
                c @ ("AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "RequestTimeTooSkewed"
                | "ExpiredToken"
                | "InvalidToken"),
            ) => self.unavailable(op, format!("{c}: {message}")),
            _ => match status {
                304 => Error::NotModified,
                404 => not_found,
                412 => Error::PreconditionFailed,
                416 => Error::InvalidRange,
                503 => Error::SlowDown,
                429 => Error::SlowDown,
                // Refused without a code (a HEAD's answer has no body; a gateway's page):
                // our credentials or the backend's setup, never the client's doing.
                401 | 403 | 407 => self.unavailable(
                    op,
                    format!("HTTP {status} {}: {message}", code.unwrap_or("(no code)")),
                ),
                // The server is up and answered: this request failed there (s3s-fs answers
                // 500 to keys its file layout cannot hold). Retried, but not a sign the
                // backend is down; 502 and 504 (a gateway without its server) are.
                500 => self.failed(
                    op,
                    format!("HTTP 500 {}: {message}", code.unwrap_or("(no code)")),
                ),
                s if s >= 500 => self.unavailable(
                    op,
                    format!("HTTP {s} {}: {message}", code.unwrap_or("(no code)")),
                ),
                s => Error::InvalidRequest(named(&format!(
                    "HTTP {s} {}: {message}",
                    code.unwrap_or("(no code)")
                ))),
            },
        }
    }
}

/// `err` and its sources, each as it displays, joined by `: `. The SDK's
/// `DisplayErrorContext` says the same and then dumps the error's `Debug`, which for a
/// service error is the whole raw response; the chain already holds the SDK's kind of
/// error and the server's code, message and request id.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::S3Options;

    /// A refusal without a code (a HEAD's empty body, a gateway's page) is the backend's
    /// trouble, counted against it, never answered to the client as its own mistake.
    #[test]
    fn refusals_without_a_code_are_the_backends() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            access_key: Some("key".into()),
            secret_key: Some("secret".into()),
            ..Default::default()
        };
        let s3 = rt.block_on(S3::new("r1", opts)).unwrap();
        for status in [401, 403, 407] {
            let e = s3.map_code("HeadObject", None, status, "", Error::NoSuchKey);
            assert!(
                e.is_backend(BackendErrorKind::Unavailable) && e.status() == 503,
                "{status}: {e:?}"
            );
        }
        let e = s3.map_code("GetObject", None, 429, "", Error::NoSuchKey);
        assert!(matches!(e, Error::SlowDown), "{e:?}");
        let e = s3.map_code("HeadObject", None, 404, "", Error::NoSuchKey);
        assert!(matches!(e, Error::NoSuchKey), "{e:?}");
    }

    #[test]
    fn internal_errors_name_the_request_and_the_cause() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let opts = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            access_key: Some("key".into()),
            secret_key: Some("secret".into()),
            bucket_prefix: Some("r1-".into()),
            ..Default::default()
        };
        let s3 = rt.block_on(S3::new("r1", opts)).unwrap();
        let bucket = BucketName::new("photos").unwrap();
        let id = UploadId::new("u1").unwrap();
        let call = Call::object("UploadPart", &bucket, "a b").upload(&id);
        let cause = std::io::Error::other("connection reset");
        let err = s3.failed("UploadPart", "HTTP 500 (no code)");
        let text = s3.internal_context(call, err, Some(&cause)).to_string();
        assert!(
            text.starts_with(
                "backend r1: UploadPart: HTTP 500 (no code) \
                 [bucket r1-photos, key \"a b\", upload id u1; connection reset"
            ),
            "{text}"
        );
        let meta = aws_sdk_s3::error::ErrorMetadata::builder()
            .code("InternalError")
            .message("We encountered an internal error")
            .custom("aws_request_id", "REQ1")
            .build();
        let raw = HttpResponse::new(
            500u16.try_into().unwrap(),
            aws_sdk_s3::primitives::SdkBody::empty(),
        );
        let sdk = SdkError::service_error(
            aws_sdk_s3::operation::get_object::GetObjectError::generic(meta),
            raw,
        );
        let get = Call::object("GetObject", &bucket, "k");
        let mapped = s3.map_err(get, sdk, Error::NoSuchKey);
        // A failure of the backend, in its type: not counted against its health, and the
        // SDK's error kept as the source.
        assert!(mapped.is_backend(BackendErrorKind::Failed), "{mapped:?}");
        let source = std::error::Error::source(&mapped).map(|s| s.to_string());
        assert!(
            source
                .as_deref()
                .is_some_and(|s| s.starts_with("service error")),
            "{source:?}"
        );
        let text = mapped.to_string();
        assert!(
            text.starts_with(
                "backend r1: GetObject: HTTP 500 InternalError: We encountered an internal error \
                 [bucket r1-photos, key \"k\"; service error: "
            ),
            "{text}"
        );
        assert!(text.contains("REQ1"), "{text}");
        // Errors clients may see keep their message.
        let err = Error::InvalidRequest("backend r1: UploadPart: HTTP 400".into());
        let text = s3.internal_context(call, err, Some(&cause)).to_string();
        assert_eq!(text, "backend r1: UploadPart: HTTP 400");
        let copy = Call::object("CopyObject", &bucket, "b").source(&bucket, "a");
        let err = s3.request_not_built(copy, &cause).to_string();
        assert!(
            err.starts_with(
                "backend r1: CopyObject: the request could not be built \
                 [bucket r1-photos, key \"b\", copy source r1-photos/\"a\"; connection reset"
            ),
            "{err}"
        );
    }
}
