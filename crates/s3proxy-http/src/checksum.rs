//! The additional checksums S3 clients send (`x-amz-checksum-*`), verified as bodies stream.

use base64::Engine;
use s3proxy_core::{Error, Result};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A running checksum of one of S3's additional checksum algorithms.
pub enum Checksum {
    /// CRC-32 (IEEE).
    Crc32(crc32fast::Hasher),
    /// CRC-32C (Castagnoli).
    Crc32c(u32),
    /// SHA-1.
    Sha1(Sha1),
    /// SHA-256.
    Sha256(Sha256),
    /// CRC-64/NVME.
    Crc64Nvme(Box<crc64fast_nvme::Digest>),
}

/// The `x-amz-checksum-*` headers that carry a checksum value.
pub const CHECKSUM_HEADERS: &[&str] = &[
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

impl Checksum {
    /// The checksum for a header name such as `x-amz-checksum-crc32`.
    pub fn for_header(name: &str) -> Result<Self> {
        match name {
            "x-amz-checksum-crc32" => Ok(Checksum::Crc32(crc32fast::Hasher::new())),
            "x-amz-checksum-crc32c" => Ok(Checksum::Crc32c(0)),
            "x-amz-checksum-sha1" => Ok(Checksum::Sha1(Sha1::new())),
            "x-amz-checksum-sha256" => Ok(Checksum::Sha256(Sha256::new())),
            "x-amz-checksum-crc64nvme" => Ok(Checksum::Crc64Nvme(Box::default())),
            other => Err(Error::InvalidArgument(format!(
                "unsupported checksum algorithm {other}"
            ))),
        }
    }

    /// Feed data.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Checksum::Crc32(h) => h.update(data),
            Checksum::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Checksum::Sha1(h) => h.update(data),
            Checksum::Sha256(h) => h.update(data),
            Checksum::Crc64Nvme(h) => h.write(data),
        }
    }

    /// The checksum, base64 of its big-endian bytes, as S3 transmits it.
    pub fn finish_base64(self) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Checksum::Crc32(h) => b64(&h.finalize().to_be_bytes()),
            Checksum::Crc32c(c) => b64(&c.to_be_bytes()),
            Checksum::Sha1(h) => b64(&h.finalize()),
            Checksum::Sha256(h) => b64(&h.finalize()),
            Checksum::Crc64Nvme(h) => b64(&h.sum64().to_be_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // "123456789" is the standard check input for CRCs.
        let check = |name: &str, want: &str| {
            let mut c = Checksum::for_header(name).unwrap();
            c.update(b"1234");
            c.update(b"56789");
            assert_eq!(c.finish_base64(), want, "{name}");
        };
        check("x-amz-checksum-crc32", "y/Q5Jg=="); // 0xCBF43926
        check("x-amz-checksum-crc32c", "4waSgw=="); // 0xE3069283
        check(
            "x-amz-checksum-sha256",
            "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=",
        );
        assert!(Checksum::for_header("x-amz-checksum-md4").is_err());
    }
}
