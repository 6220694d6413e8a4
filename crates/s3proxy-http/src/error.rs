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

/// The `<Error>` document itself, with its XML declaration.
pub fn error_document(err: &Error, resource: &str, request_id: &str) -> String {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // Server-side details stay in the log; clients get the S3 message.
    let message = if status.is_server_error()
        && !matches!(
            err,
            Error::ServiceUnavailable(_)
                | Error::NotImplemented(_)
                | Error::SlowDown
                | Error::Backend {
                    kind: BackendErrorKind::Unavailable,
                    ..
                }
        ) {
        "We encountered an internal error. Please try again.".to_string()
    } else {
        err.to_string()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
        err.code(),
        escape(&message),
        escape(resource),
        request_id
    )
}
