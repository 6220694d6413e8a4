//! The S3 error document.

use crate::body::{ResponseBody, empty_body, full_body};
use crate::xml::escape;
use http::{Response, StatusCode};
use s3proxy_core::{BackendErrorKind, Error};

/// The XML error response S3 sends: `<Error><Code/><Message/><Resource/><RequestId/></Error>`.
/// HEAD requests and 304s get the status and headers without a body.
pub fn error_response(
    err: &Error,
    resource: &str,
    request_id: &str,
    with_body: bool,
) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let builder = Response::builder()
        .status(status)
        .header("x-amz-request-id", request_id)
        .header("x-amz-id-2", request_id);
    if !with_body || status == StatusCode::NOT_MODIFIED {
        return builder
            .body(empty_body())
            .expect("static headers are valid");
    }
    let body = error_document(err, resource, request_id);
    builder
        .header("content-type", "application/xml")
        .header("content-length", body.len())
        .body(full_body(body))
        .expect("static headers are valid")
}

/// The message a client is shown for `err`: S3's own text, but for server-side failures
/// whose details (backend names, buckets, server messages) stay in the log. Used by every
/// answer that carries an error, the per-key results of DeleteObjects included.
pub(crate) fn client_message(err: &Error) -> String {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error()
        && !matches!(
            err,
            Error::ServiceUnavailable(_)
                | Error::NotImplemented(_)
                | Error::SlowDown
                | Error::Backend {
                    kind: BackendErrorKind::Unavailable,
                    ..
                }
        )
    {
        "We encountered an internal error. Please try again.".to_string()
    } else {
        err.to_string()
    }
}

/// The `<Error>` document itself, with its XML declaration.
pub fn error_document(err: &Error, resource: &str, request_id: &str) -> String {
    let message = client_message(err);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
        err.code(),
        escape(&message),
        escape(resource),
        request_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend's own failure text (its bucket names, its server's message) stays in the
    /// log: neither the error document nor the message of a per-key DeleteObjects result
    /// shows it. An outage's text is shown: it says which backend is down, and retrying helps.
    #[test]
    fn server_side_details_stay_in_the_log() {
        let failed = Error::backend(
            "moto",
            "DeleteObject",
            BackendErrorKind::Failed,
            "s3proxy-prefix-secret-bucket/key: InternalError from the server",
        );
        for text in [
            client_message(&failed),
            error_document(&failed, "/b/k", "req-1"),
        ] {
            assert!(!text.contains("secret-bucket"), "{text}");
            assert!(!text.contains("moto"), "{text}");
        }
        assert_eq!(
            client_message(&failed),
            "We encountered an internal error. Please try again."
        );
        let down = Error::backend(
            "moto",
            "GetObject",
            BackendErrorKind::Unavailable,
            "timed out",
        );
        assert_eq!(client_message(&down), down.to_string());
        assert_eq!(
            client_message(&Error::NoSuchKey),
            Error::NoSuchKey.to_string()
        );
    }
}
