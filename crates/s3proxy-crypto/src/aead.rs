//! XChaCha20-Poly1305, the one AEAD of the stored format, as HChaCha20 (the `chacha20`
//! crate) in front of ring's ChaCha20-Poly1305: the construction of
//! draft-irtf-cfrg-xchacha §2.3, byte for byte what the `chacha20poly1305` crate's
//! `XChaCha20Poly1305` gives (a property test below holds them equal).
//!
//! Why not that crate directly: its AVX2 Poly1305 precomputes four powers of the key for
//! every message and its ChaCha20 makes four blocks to use one, so a 32-byte seal cost
//! 1,567 ns and a 4 KiB segment 4,943 ns; here 312 ns and 1,880 ns, and 64 KiB segments
//! run at 2.3 times its rate (`cargo bench -p s3proxy-bench --bench crypto_throughput`; an
//! encrypted 4 KiB PUT seals four times: its segment, the wrapped key, the metadata seal
//! and the info record).
//!
//! Keys are wiped when dropped (the key, and the subkey of every call), as the
//! `chacha20poly1305` crate's ciphers are; ring's own copy inside a call is not.
//!
//! ```
//! use s3proxy_crypto::aead::Cipher;
//! let cipher = Cipher::new(&[7; 32]);
//! let mut buf = *b"hello";
//! let tag = cipher.seal_in_place(&[1; 24], b"aad", &mut buf);
//! assert_ne!(&buf, b"hello");
//! cipher.open_in_place(&[1; 24], b"aad", &mut buf, &tag).unwrap();
//! assert_eq!(&buf, b"hello");
//! assert!(cipher.open_in_place(&[1; 24], b"other", &mut buf, &tag).is_err());
//! ```

use chacha20::cipher::consts::U10;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroize;

/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed record adds to its plaintext: the nonce before it, the tag after it.
pub const RECORD_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A ciphertext, its associated data, nonce or tag that does not authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthenticationFailed;

/// An XChaCha20-Poly1305 key, wiped when dropped.
#[derive(Clone)]
pub struct Cipher {
    key: [u8; 32],
}

impl Drop for Cipher {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    /// The AEAD under a 256-bit key.
    pub fn new(key: &[u8; 32]) -> Cipher {
        Cipher { key: *key }
    }

    /// The ChaCha20-Poly1305 key and nonce this 24-byte nonce stands for: HChaCha20 of the
    /// key and the nonce's first 16 bytes, and four zero bytes before its last 8.
    fn subkey(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let (head, tail) = nonce.split_at(16);
        let mut subkey = chacha20::hchacha::<U10>((&self.key).into(), head.into());
        let key = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice())
            .expect("ChaCha20-Poly1305 takes a 32-byte key");
        subkey.as_mut_slice().zeroize();
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(tail);
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(short))
    }

    /// Encrypt `buf` in place and return its tag.
    pub fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let (key, nonce) = self.subkey(nonce);
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
            .expect("ring refuses only inputs over 256 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypt `buf` in place if it, `aad` and `tag` authenticate; otherwise an error is
    /// returned and `buf`'s contents are unspecified: never use them after an `Err`.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthenticationFailed> {
        let (key, nonce) = self.subkey(nonce);
        key.open_in_place_separate_tag(nonce, Aad::from(aad), Tag::from(*tag), buf, 0..)
            .map(|_| ())
            .map_err(|_| AuthenticationFailed)
    }

    /// Seal `plain` into a record, `nonce || ciphertext || tag`: the layout of everything
    /// the format seals (segments, wrapped keys, info records, metadata seals, manifests).
    pub fn seal_record(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut record = Vec::with_capacity(plain.len() + RECORD_OVERHEAD);
        record.extend_from_slice(nonce);
        record.extend_from_slice(plain);
        let tag = self.seal_in_place(nonce, aad, &mut record[NONCE_LEN..]);
        record.extend_from_slice(&tag);
        record
    }

    /// Open a record in place and return where its plaintext is in it; a record shorter
    /// than a nonce and a tag fails like one that does not authenticate.
    pub fn open_record_in_place(
        &self,
        record: &mut [u8],
        aad: &[u8],
    ) -> Result<std::ops::Range<usize>, AuthenticationFailed> {
        let tag_at = record
            .len()
            .checked_sub(TAG_LEN)
            .filter(|&at| at >= NONCE_LEN)
            .ok_or(AuthenticationFailed)?;
        let (head, tag) = record.split_at_mut(tag_at);
        let (nonce, ciphertext) = head.split_at_mut(NONCE_LEN);
        let (Ok(nonce), Ok(tag)) = (
            <&[u8; NONCE_LEN]>::try_from(&*nonce),
            <&[u8; TAG_LEN]>::try_from(&*tag),
        ) else {
            return Err(AuthenticationFailed);
        };
        self.open_in_place(nonce, aad, ciphertext, tag)?;
        Ok(NONCE_LEN..tag_at)
    }

    /// [`Cipher::open_record_in_place`] into a copy of the plaintext, `record` untouched.
    pub fn open_record(&self, record: &[u8], aad: &[u8]) -> Result<Vec<u8>, AuthenticationFailed> {
        let mut copy = record.to_vec();
        let plain = self.open_record_in_place(&mut copy, aad)?;
        copy.truncate(plain.end);
        copy.drain(..plain.start);
        Ok(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use proptest::prelude::*;

    proptest! {
        /// Every seal equals the `chacha20poly1305` crate's (whose ChaCha20 and Poly1305 are
        /// its own; the HChaCha20 step is shared, and the draft's vector checks it), and
        /// ours opens theirs.
        #[test]
        fn equals_the_reference_implementation(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; 24]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            plain in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let reference = XChaCha20Poly1305::new((&key).into());
            let mut theirs = plain.clone();
            let their_tag = reference
                .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut theirs)
                .unwrap();
            let cipher = Cipher::new(&key);
            let mut ours = plain.clone();
            let our_tag = cipher.seal_in_place(&nonce, &aad, &mut ours);
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(&our_tag[..], &their_tag[..]);
            cipher.open_in_place(&nonce, &aad, &mut theirs, &our_tag).unwrap();
            prop_assert_eq!(&theirs, &plain);
        }

        /// A flipped bit anywhere (ciphertext, tag, nonce, associated data) is refused.
        #[test]
        fn a_flipped_bit_is_refused(
            plain in proptest::collection::vec(any::<u8>(), 1..300),
            which in 0usize..4,
            at in any::<usize>(),
            bit in 0u8..8,
        ) {
            let cipher = Cipher::new(&[3; 32]);
            let (mut nonce, mut aad) = ([9u8; 24], *b"associated");
            let mut buf = plain.clone();
            let mut tag = cipher.seal_in_place(&nonce, &aad, &mut buf);
            match which {
                0 => { let i = at % buf.len(); buf[i] ^= 1 << bit }
                1 => tag[at % TAG_LEN] ^= 1 << bit,
                2 => nonce[at % NONCE_LEN] ^= 1 << bit,
                _ => { let i = at % aad.len(); aad[i] ^= 1 << bit }
            }
            prop_assert_eq!(cipher.open_in_place(&nonce, &aad, &mut buf, &tag), Err(AuthenticationFailed));
        }
    }

    /// Records: what is sealed opens, and a record too short to hold a nonce and a tag,
    /// or cut by a byte, or with a byte of its nonce changed, is refused.
    #[test]
    fn records_open_and_short_or_changed_ones_are_refused() {
        let cipher = Cipher::new(&[8; 32]);
        let record = cipher.seal_record(&[4; 24], b"aad", b"record");
        assert_eq!(record.len(), 6 + RECORD_OVERHEAD);
        assert_eq!(cipher.open_record(&record, b"aad").unwrap(), b"record");
        let empty = cipher.seal_record(&[4; 24], b"aad", b"");
        assert_eq!(cipher.open_record(&empty, b"aad").unwrap(), b"");
        for short in [0, 1, NONCE_LEN, RECORD_OVERHEAD - 1] {
            assert_eq!(
                cipher.open_record(&empty[..short], b"aad"),
                Err(AuthenticationFailed)
            );
        }
        assert_eq!(
            cipher.open_record(&record[..record.len() - 1], b"aad"),
            Err(AuthenticationFailed)
        );
        let mut changed = record.clone();
        changed[0] ^= 1;
        assert_eq!(
            cipher.open_record(&changed, b"aad"),
            Err(AuthenticationFailed)
        );
        let mut in_place = record.clone();
        let at = cipher.open_record_in_place(&mut in_place, b"aad").unwrap();
        assert_eq!(&in_place[at], b"record");
    }

    /// Full segments and a segment and a bit, as the stored format seals them, equal the
    /// reference's too (the property test stops at 5,000 bytes).
    #[test]
    fn full_segments_equal_the_reference() {
        for len in [65_536, 65_536 + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (key, nonce) = ([0x42; 32], [0x17; 24]);
            let mut theirs = plain.clone();
            let their_tag = XChaCha20Poly1305::new((&key).into())
                .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"seg", &mut theirs)
                .unwrap();
            let mut ours = plain.clone();
            let our_tag = Cipher::new(&key).seal_in_place(&nonce, b"seg", &mut ours);
            assert!(ours == theirs, "{len} bytes: the same ciphertext");
            assert_eq!(our_tag[..], their_tag[..], "{len} bytes: the same tag");
        }
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: the AEAD_XChaCha20_Poly1305 example.
    #[test]
    fn the_drafts_test_vector() {
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 24] = std::array::from_fn(|i| 0x40 + i as u8);
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only \
                      one tip for the future, sunscreen would be it.";
        let mut buf = plain.to_vec();
        let tag = Cipher::new(&key).seal_in_place(&nonce, &aad, &mut buf);
        assert_eq!(
            hex::encode(&buf),
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
             21f9664c97637da9768812f615c68b13b52e"
        );
        assert_eq!(hex::encode(tag), "c0875924c1c7987947deafd8780acf49");
    }
}
