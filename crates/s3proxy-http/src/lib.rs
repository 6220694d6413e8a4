//! S3 protocol.
