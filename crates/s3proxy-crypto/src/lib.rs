//! Encryption layer of s3proxy (see docs/FORMAT.md).
