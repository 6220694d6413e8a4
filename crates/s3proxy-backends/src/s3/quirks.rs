//! Server-specific fixes to a response before the SDK reads it.
//!
//! Quirks that only change what an operation checks or asks for are handled in that
//! operation, with a comment naming the server: moto's bare 500 for a part of a finished
//! upload and its order of listed uploads, and servers that do not check a completion's
//! part list or list parts out of order ([`multipart`](super::multipart)); s3s-fs
//! listing raw names under `encoding-type=url` ([`listing`](super::listing)); s3s-fs
//! deleting non-empty buckets, and servers ignoring conditional headers
//! ([`backend`](super::backend)); s3s-fs answering 500 to keys it cannot store
//! ([`errors`](super::errors)).

use super::body::BoxError;
use aws_sdk_s3::primitives::SdkBody;
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Renames the root element of a response document (`<XResponse>` to `<XResult>`)
/// before the SDK parses it.
///
/// moto answers ListParts and CompleteMultipartUpload with `ListPartsResponse` and
/// `CompleteMultipartUploadResponse` roots where S3 sends `...Result`; boto3 does not look
/// at the root, but the Rust SDK refuses the document. Installed only on those two
/// operations, whose responses are small (ListParts: at most 1000 parts), so the body is
/// read whole before renaming; a correctly named root passes through unchanged.
#[derive(Debug)]
pub(super) struct RootFix {
    /// The operation whose response this fixes, e.g. `ListParts`.
    pub(super) operation: &'static str,
}

impl aws_sdk_s3::config::Intercept for RootFix {
    fn name(&self) -> &'static str {
        "RootFix"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let body = std::mem::replace(context.response_mut().body_mut(), SdkBody::taken());
        *context.response_mut().body_mut() = SdkBody::from_body_1_x(RenameRoot {
            inner: body,
            operation: self.operation,
            buf: Vec::new(),
            done: false,
        });
        Ok(())
    }
}

/// The response body [`RootFix`] installs: the original, read whole, root renamed.
struct RenameRoot {
    inner: SdkBody,
    operation: &'static str,
    buf: Vec<u8>,
    done: bool,
}

impl http_body::Body for RenameRoot {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let text = String::from_utf8_lossy(&this.buf);
                    let op = this.operation;
                    let fixed = if text.contains(&format!("<{op}Response")) {
                        text.replacen(&format!("<{op}Response"), &format!("<{op}Result"), 1)
                            .replacen(&format!("</{op}Response>"), &format!("</{op}Result>"), 1)
                            .into_bytes()
                    } else {
                        std::mem::take(&mut this.buf)
                    };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(fixed)))));
                }
            }
        }
    }
}
