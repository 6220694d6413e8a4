//! # s3proxy-crypto
//!
//! The encryption layer of s3proxy: [`Encrypted`] is a [`s3proxy_core::Backend`] that wraps
//! another backend, storing every object as authenticated, segmented ciphertext
//! (XChaCha20-Poly1305, 64 KiB segments) while its callers see exactly what a plain S3
//! server shows: plaintext data, sizes, ETags and ranges. The format is specified in
//! docs/FORMAT.md; [`format`] implements it.
//!
//! Keys: [`MasterKey`]s with ids in a [`Keyring`] (one active), key files
//! ([`generate_key_file`], [`load_key_file`]) and the `[encryption]` configuration
//! ([`EncryptionConfig`]).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use s3proxy_crypto::{EncryptionConfig, KeyConfig};
//! let config = EncryptionConfig {
//!     keys: vec![KeyConfig { id: "k1".into(), key: Some(format!("{}=", "A".repeat(43))), key_file: None }],
//!     ..Default::default()
//! };
//! let backend = config.build(std::sync::Arc::new(s3proxy_backends::Memory::new("mem"))).unwrap();
//! backend.create_bucket(&s3proxy_core::BucketName::new("b00").unwrap()).await.unwrap();
//! # });
//! ```
// An `unwrap` on request input or a backend's answer is a panic a client can cause:
// outside tests, errors are handled or the invariant is named with `expect`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod aead;
pub mod format;
mod generations;
mod keys;
mod layer;
mod list_cache;
pub mod manifest;

pub use keys::{
    EncryptionConfig, KeyConfig, Keyring, MasterKey, generate_key_file, load_key_file,
    load_or_generate_key_file,
};
pub use layer::Encrypted;
