//! # s3proxy-http
//!
//! The S3 REST protocol over hyper, serving any [`s3proxy_core::Backend`]: addressing
//! (path-style and virtual-hosted), SigV4 authentication (header, presigned, aws-chunked
//! with signed chunks or checksum trailers) and SigV2 (header and presigned), the S3 XML
//! documents and error responses.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use s3proxy_http::{S3Server, ServerConfig, auth::Credential};
//! let backend = std::sync::Arc::new(s3proxy_backends::Memory::new("mem"));
//! let config = ServerConfig::new(vec![Credential::new("AKEXAMPLE", "secretexample")]);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! S3Server::new(backend, config).serve(listener).await
//! # }
//! ```
// An `unwrap` on request input or a backend's answer is a panic a client can cause:
// outside tests, errors are handled or the invariant is named with `expect`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

// Inside the crate, by job: `server.rs` accepts connections (TLS, limits, graceful stop)
// over `conn.rs`; `dispatch.rs` takes each request from arrival to answer (`S3Server`:
// request id, request limit, authentication in `auth/`, routing in `router.rs`, the log
// line and metrics) and calls its handler (`bucket.rs`, `list.rs`, `object.rs`, `copy.rs`,
// `multipart.rs`, `subresource.rs`). Handlers read requests with `request.rs`, `body.rs`
// and `spill.rs`, and answer with `response.rs`, `body.rs`, `xml.rs` and `error.rs` (the
// S3 error document). `config.rs` holds `ServerConfig`.

// Request-path parsers: no indexing or arithmetic that can panic on input.
#[cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]
pub mod auth;
mod body;
mod bucket;
pub mod checksum;
mod config;
mod conn;
mod copy;
mod dispatch;
mod error;
#[cfg(test)]
mod fuzz;
mod list;
mod multipart;
mod object;
// Request-path parsers: no indexing or arithmetic that can panic on input.
#[cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]
pub mod query;
pub mod request;
mod response;
pub mod router;
pub mod server;
mod spill;
mod stats;
mod subresource;
pub mod time;
pub mod tls;
pub mod xml;

pub use body::{MAX_XML_BODY, ResponseBody};
pub use config::{DEFAULT_MAX_HEADER_BYTES, ServerConfig};
pub use dispatch::{S3Server, current_request_id};
