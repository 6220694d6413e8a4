//! Building S3 responses: an XML document, an empty answer with a status, an XML answer
//! that keeps a slow request's connection alive, and the answer to stalled headers.

use crate::body::{ResponseBody, empty_body, full_body, stream_body};
use crate::dispatch::Ctx;
use crate::{error, time};
use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use s3proxy_core::{Error, Result};
use std::time::SystemTime;

/// A response with an XML body.
pub(crate) fn xml_response(body: String) -> Result<Response<ResponseBody>> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml")
        .header("content-length", body.len())
        .body(full_body(body))
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// The XML declaration every document starts with.
const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Answer with the XML document `work` produces, keeping the connection alive while it
/// runs. Copies and multipart completions of big objects can take minutes (longer through
/// encryption and replication) without the client hearing a byte, and clients give up:
/// s3fs aborts after `readwrite_timeout` (120 s) and retries, starting the work again. S3's
/// answer, followed here: when the work outlasts `keepalive_after`, send 200 with the XML
/// declaration at once, a space every `keepalive_every`, then the result document, or an
/// `<Error>` document, which S3 clients look for in a 200 to these operations.
pub(crate) async fn xml_keepalive<F>(ctx: &Ctx, work: F) -> Result<Response<ResponseBody>>
where
    F: std::future::Future<Output = Result<String>> + Send + 'static,
{
    let mut work = Box::pin(work);
    if let Ok(done) = tokio::time::timeout(ctx.config.keepalive_after, work.as_mut()).await {
        return xml_response(done?);
    }
    let every = ctx.config.keepalive_every;
    let (resource, request_id) = (ctx.resource.clone(), ctx.request_id.clone());
    let rest = futures::stream::unfold(Some(work), move |state| {
        let (resource, request_id) = (resource.clone(), request_id.clone());
        async move {
            let mut work = state?;
            tokio::select! {
                done = work.as_mut() => {
                    let doc = done.unwrap_or_else(|e| {
                        log::warn!("{request_id} {resource}: {e} (sent in a 200 body)");
                        error::error_document(&e, &resource, &request_id)
                    });
                    let doc = doc.strip_prefix(XML_DECLARATION).unwrap_or(&doc).to_string();
                    Some((Ok(Bytes::from(doc)), None))
                }
                _ = tokio::time::sleep(every) => Some((Ok(Bytes::from_static(b" ")), Some(work))),
            }
        }
    });
    let stream =
        futures::stream::once(async { Ok(Bytes::from_static(XML_DECLARATION.as_bytes())) })
            .chain(rest);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml")
        .body(stream_body(Box::pin(stream)))
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// An empty response with a status.
pub(crate) fn empty_response(status: StatusCode) -> Result<Response<ResponseBody>> {
    Response::builder()
        .status(status)
        .header("content-length", 0)
        .body(empty_body())
        .map_err(|e| Error::Internal(format!("building response: {e}")))
}

/// The complete response sent to a client whose request headers stalled.
pub(crate) fn timeout_response() -> Vec<u8> {
    let request_id = hex::encode(rand::random::<[u8; 8]>()).to_uppercase();
    let body = error::error_document(&Error::RequestTimeout, "", &request_id);
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nx-amz-request-id: {request_id}\r\nconnection: close\r\nserver: s3proxy\r\ndate: {}\r\n\r\n{body}",
        body.len(),
        time::http_date(SystemTime::now()),
    )
    .into_bytes()
}

/// The owner shown in listings.
pub(crate) fn owner_xml(out: &mut String) {
    out.push_str("<Owner><ID>s3proxy</ID><DisplayName>s3proxy</DisplayName></Owner>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::time::Duration;

    fn ctx(after_ms: u64, every_ms: u64) -> Ctx {
        let mut config = ServerConfig::new(vec![]);
        config.keepalive_after = Duration::from_millis(after_ms);
        config.keepalive_every = Duration::from_millis(every_ms);
        Ctx {
            backend: Arc::new(s3proxy_backends::Memory::new("mem")),
            config: Arc::new(config),
            request_id: "RID".into(),
            resource: "/b/k".into(),
        }
    }

    async fn body_text(r: Response<ResponseBody>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn doc(root: &str) -> String {
        format!("{}<{root}/>", XML_DECLARATION)
    }

    #[tokio::test]
    async fn quick_work_answers_plainly() {
        let r = xml_keepalive(&ctx(1000, 1000), async { Ok(doc("Done")) })
            .await
            .unwrap();
        assert!(r.headers().contains_key("content-length"));
        assert_eq!(body_text(r).await, doc("Done"));
        let e = xml_keepalive(&ctx(1000, 1000), async {
            Err::<String, _>(Error::NoSuchKey)
        })
        .await
        .unwrap_err();
        assert!(matches!(e, Error::NoSuchKey));
    }

    #[tokio::test]
    async fn slow_work_keeps_the_connection_alive() {
        let slow = |result: Result<String>| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            result
        };
        let r = xml_keepalive(&ctx(20, 50), slow(Ok(doc("Done"))))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r.headers().contains_key("content-length"));
        let text = body_text(r).await;
        // One declaration, then spaces, then the document: still well-formed XML.
        assert!(text.starts_with(XML_DECLARATION), "{text:?}");
        let rest = &text[XML_DECLARATION.len()..];
        let spaces = rest.len() - rest.trim_start().len();
        assert!(spaces >= 2, "{text:?}");
        assert_eq!(rest.trim_start(), "<Done/>");
        // A failure after the 200 went out is an <Error> document in the body.
        let r = xml_keepalive(&ctx(20, 50), slow(Err(Error::NoSuchKey)))
            .await
            .unwrap();
        let text = body_text(r).await;
        assert_eq!(text.matches("<?xml").count(), 1, "{text:?}");
        assert!(
            text.trim_end()
                .ends_with("<RequestId>RID</RequestId></Error>")
        );
        assert!(text.contains("<Code>NoSuchKey</Code><Message>"), "{text:?}");
    }
}
