//! The shard format (version 1): how an object's bytes become stripes and shards, where
//! each stripe's shard lies in a shard object, its checksum, and the metadata every shard
//! object carries. docs/ERASURE.md is the specification; this is its code.

use bytes::{BufMut, Bytes, BytesMut};
use s3proxy_core::{ETag, Error, ObjectMetadata, Result};
use serde::{Deserialize, Serialize};

/// Internal metadata key of a shard object's [`ShardMeta`] (JSON).
pub const SHARD_KEY: &str = "s3proxy-ec";

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Object bytes per stripe by default: 1 MiB, so a ranged GET reads at most about one
/// stripe more than it covers, and a write buffers a few MiB whatever the object size.
pub const DEFAULT_STRIPE: u64 = 1 << 20;

/// The largest stripe a reader accepts in a shard record (64 MiB): a record is read from
/// backends, so its stripe bounds what one stripe's read may allocate.
pub const MAX_STRIPE: u64 = 64 << 20;

/// Bytes of the checksum that follows every shard in a shard object.
pub const CRC_LEN: u64 = 4;

/// Bytes of the trailer that ends every shard object: the object's MD5 and a checksum.
pub const TRAILER_LEN: u64 = 20;

/// What every shard object of one version carries in its internal metadata under
/// [`SHARD_KEY`]: the same for all shards of the version except `i`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// Data shards per stripe.
    pub k: usize,
    /// Parity shards per stripe.
    pub m: usize,
    /// This shard's index: `0..k` data, `k..k+m` parity.
    pub i: usize,
    /// Object bytes per stripe (the last stripe may be shorter).
    pub stripe: u64,
    /// Size of the object this layer stores (what HEAD shows).
    pub size: u64,
    /// The ETag this layer shows (hex MD5 of the object's bytes), when it was known before
    /// the write began (the object fits one stripe, or Content-MD5 was sent); else it is
    /// read from the shard objects' trailer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<ETag>,
    /// The version stamp: shards are combined only with shards of the same stamp.
    pub ver: String,
}

impl ShardMeta {
    /// The layout of this version's object.
    pub fn layout(&self) -> Layout {
        Layout {
            k: self.k,
            m: self.m,
            stripe: self.stripe,
            size: self.size,
        }
    }

    /// Whether `other` is a shard of the same version (everything but the index agrees).
    pub fn same_version(&self, other: &ShardMeta) -> bool {
        ShardMeta {
            i: 0,
            ..self.clone()
        } == ShardMeta {
            i: 0,
            ..other.clone()
        }
    }

    /// Read a shard object's metadata; `None` when it carries none or a malformed one.
    pub fn from_metadata(meta: &ObjectMetadata) -> Option<ShardMeta> {
        let raw = meta.internal.get(SHARD_KEY)?;
        let parsed: ShardMeta = serde_json::from_str(raw).ok()?;
        // The record comes from a backend: nothing in it may overflow the layout arithmetic
        // or ask for an unbounded allocation.
        let total = parsed.k.checked_add(parsed.m)?;
        let sane = parsed.v == FORMAT_VERSION
            && parsed.k > 0
            && parsed.i < total
            && (parsed.k as u64).checked_mul(2)? <= parsed.stripe
            && parsed.stripe <= MAX_STRIPE
            && parsed.layout().checked_object_len().is_some();
        sane.then_some(parsed)
    }

    /// Store this record in `meta`.
    pub fn store(&self, meta: &mut ObjectMetadata) {
        let json = serde_json::to_string(self).expect("a ShardMeta always serializes");
        meta.internal.insert(SHARD_KEY.into(), json);
    }
}

/// Remove this layer's record from metadata read from a shard object, leaving what the
/// layer above stored.
pub fn strip(meta: &mut ObjectMetadata) {
    meta.internal.remove(SHARD_KEY);
}

/// Where an object's bytes lie in its stripes and shard objects.
///
/// ```
/// use s3proxy_erasure::Layout;
/// let l = Layout { k: 2, m: 1, stripe: 8, size: 11 };
/// assert_eq!(l.stripes(), 2);
/// assert_eq!(l.stripe_len(1), 3);
/// assert_eq!(l.shard_len(0), 4);
/// assert_eq!(l.shard_len(1), 2); // 3 bytes over 2 shards, rounded up to even
/// assert_eq!(l.shard_object_len(), (4 + 4) + (2 + 4) + 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Data shards per stripe.
    pub k: usize,
    /// Parity shards per stripe.
    pub m: usize,
    /// Object bytes per stripe.
    pub stripe: u64,
    /// Object size.
    pub size: u64,
}

impl Layout {
    /// Number of stripes (0 for an empty object).
    pub fn stripes(&self) -> u64 {
        self.size.div_ceil(self.stripe)
    }

    /// Object bytes in stripe `s`.
    pub fn stripe_len(&self, s: u64) -> u64 {
        (self.size - s * self.stripe).min(self.stripe)
    }

    /// Bytes of each shard of stripe `s`: the stripe split in `k`, rounded up to an even
    /// number (the codec works on 16-bit words).
    pub fn shard_len(&self, s: u64) -> u64 {
        let per = self.stripe_len(s).div_ceil(self.k as u64);
        per + (per & 1)
    }

    /// Where stripe `s`'s shard starts in a shard object.
    pub fn shard_offset(&self, s: u64) -> u64 {
        // Every stripe before the last is full, so they all have the first one's length.
        s * (self.shard_len(0) + CRC_LEN)
    }

    /// Bytes of stripes in each shard object (the trailer follows).
    pub fn shards_len(&self) -> u64 {
        match self.stripes() {
            0 => 0,
            n => self.shard_offset(n - 1) + self.shard_len(n - 1) + CRC_LEN,
        }
    }

    /// Size of each shard object: its stripes' shards, then the trailer.
    pub fn shard_object_len(&self) -> u64 {
        self.shards_len() + TRAILER_LEN
    }

    /// [`Layout::shard_object_len`], or `None` when it does not fit a `u64` (a hostile
    /// record): a layout for which this is `Some` computes every offset without overflow.
    pub fn checked_object_len(&self) -> Option<u64> {
        if self.k == 0 || self.stripe == 0 {
            return None;
        }
        match self.stripes() {
            0 => Some(TRAILER_LEN),
            n => (n - 1)
                .checked_mul(self.shard_len(0).checked_add(CRC_LEN)?)?
                .checked_add(self.shard_len(n - 1))?
                .checked_add(CRC_LEN + TRAILER_LEN),
        }
    }

    /// The stripes covering the inclusive byte range `(start, end)`.
    pub fn covering(&self, (start, end): (u64, u64)) -> (u64, u64) {
        (start / self.stripe, end / self.stripe)
    }
}

/// The checksum of shard `index` of stripe `stripe`: CRC-32C over both numbers and the
/// bytes, so a shard moved to another stripe or backend fails it as surely as a changed one.
///
/// ```
/// assert_eq!(s3proxy_erasure::shard_crc(0, 0, b"ab"), s3proxy_erasure::shard_crc(0, 0, b"ab"));
/// assert_ne!(s3proxy_erasure::shard_crc(0, 1, b"ab"), s3proxy_erasure::shard_crc(0, 0, b"ab"));
/// ```
pub fn shard_crc(stripe: u64, index: usize, bytes: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[..8].copy_from_slice(&stripe.to_le_bytes());
    head[8..].copy_from_slice(&(index as u32).to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), bytes)
}

/// The trailer of every shard object of version `ver`: the object's MD5, then CRC-32C over
/// the version stamp and the MD5 (so a trailer from another version fails it).
///
/// ```
/// let t = s3proxy_erasure::trailer("v1", &[7; 16]);
/// assert_eq!(s3proxy_erasure::check_trailer("v1", &t), Some([7; 16]));
/// assert_eq!(s3proxy_erasure::check_trailer("v2", &t), None);
/// ```
pub fn trailer(ver: &str, md5: &[u8; 16]) -> Bytes {
    let mut out = BytesMut::with_capacity(TRAILER_LEN as usize);
    out.extend_from_slice(md5);
    out.put_u32_le(crc32c::crc32c_append(crc32c::crc32c(ver.as_bytes()), md5));
    out.freeze()
}

/// The MD5 in a sound trailer of version `ver`.
pub fn check_trailer(ver: &str, stored: &[u8]) -> Option<[u8; 16]> {
    let md5: [u8; 16] = stored.get(..16)?.try_into().ok()?;
    (stored.len() as u64 == TRAILER_LEN && trailer(ver, &md5) == stored).then_some(md5)
}

fn codec(e: reed_solomon_simd::Error) -> Error {
    Error::Internal(format!("erasure codec: {e}"))
}

/// Cut stripe `s` of an object (its `data`, at most `layout.stripe` bytes) into its k + m
/// shards, each followed by its checksum, as they are stored.
///
/// ```
/// use s3proxy_erasure::{Layout, encode_stripe};
/// let l = Layout { k: 2, m: 1, stripe: 8, size: 3 };
/// let shards = encode_stripe(&l, 0, b"abc").unwrap();
/// assert_eq!(shards.len(), 3);
/// assert_eq!(&shards[0][..2], b"ab");
/// assert_eq!(&shards[1][..2], b"c\0");
/// ```
pub fn encode_stripe(layout: &Layout, s: u64, data: &[u8]) -> Result<Vec<Bytes>> {
    let len = layout.shard_len(s) as usize;
    let mut padded = vec![0u8; len * layout.k];
    padded[..data.len()].copy_from_slice(data);
    let originals: Vec<&[u8]> = padded.chunks(len).collect();
    let parity = reed_solomon_simd::encode(layout.k, layout.m, &originals).map_err(codec)?;
    let framed = |index: usize, shard: &[u8]| {
        let mut out = BytesMut::with_capacity(len + CRC_LEN as usize);
        out.extend_from_slice(shard);
        out.put_u32_le(shard_crc(s, index, shard));
        out.freeze()
    };
    let mut shards: Vec<Bytes> = originals
        .iter()
        .enumerate()
        .map(|(i, d)| framed(i, d))
        .collect();
    shards.extend(
        parity
            .iter()
            .enumerate()
            .map(|(j, p)| framed(layout.k + j, p)),
    );
    Ok(shards)
}

/// Check a stored shard (bytes and checksum) of stripe `s`; the shard's bytes when sound.
pub fn check_shard(s: u64, index: usize, stored: &[u8]) -> Option<&[u8]> {
    let (bytes, crc) = stored.split_at_checked(stored.len().checked_sub(CRC_LEN as usize)?)?;
    let want = u32::from_le_bytes(crc.try_into().ok()?);
    (shard_crc(s, index, bytes) == want).then_some(bytes)
}

/// Rebuild stripe `s`'s object bytes from k sound shards (index, bytes without checksum).
///
/// ```
/// use s3proxy_erasure::{Layout, encode_stripe, decode_stripe};
/// let l = Layout { k: 2, m: 1, stripe: 8, size: 5 };
/// let shards = encode_stripe(&l, 0, b"hello").unwrap();
/// // Data shard 0 lost: rebuilt from shard 1 and the parity shard.
/// let have = vec![(1, shards[1][..4].to_vec()), (2, shards[2][..4].to_vec())];
/// assert_eq!(decode_stripe(&l, 0, have).unwrap(), b"hello".as_slice());
/// ```
pub fn decode_stripe(layout: &Layout, s: u64, shards: Vec<(usize, Vec<u8>)>) -> Result<Bytes> {
    let all = rebuild_shards(layout, shards)?;
    let mut out = BytesMut::with_capacity(layout.shard_len(s) as usize * layout.k);
    for shard in &all[..layout.k] {
        out.extend_from_slice(shard);
    }
    out.truncate(layout.stripe_len(s) as usize);
    Ok(out.freeze())
}

/// All k + m shards of a stripe (without checksums) from any k of them.
pub fn rebuild_shards(layout: &Layout, shards: Vec<(usize, Vec<u8>)>) -> Result<Vec<Vec<u8>>> {
    let (k, m) = (layout.k, layout.m);
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; k + m];
    for (i, bytes) in shards {
        if i < k + m {
            slots[i] = Some(bytes);
        }
    }
    if slots[..k].iter().any(Option::is_none) {
        let originals = slots[..k]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.as_ref()?)));
        let recovery = slots[k..]
            .iter()
            .enumerate()
            .filter_map(|(j, s)| Some((j, s.as_ref()?)));
        let restored = reed_solomon_simd::decode(k, m, originals, recovery).map_err(codec)?;
        for (i, bytes) in restored {
            slots[i] = Some(bytes);
        }
    }
    let data: Vec<&[u8]> = slots[..k]
        .iter()
        .map(|s| s.as_deref().unwrap_or_default())
        .collect();
    if slots[k..].iter().any(Option::is_none) {
        let parity = reed_solomon_simd::encode(k, m, &data).map_err(codec)?;
        for (j, p) in parity.into_iter().enumerate() {
            slots[k + j].get_or_insert(p);
        }
    }
    Ok(slots.into_iter().map(Option::unwrap_or_default).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sizes() {
        let l = Layout {
            k: 2,
            m: 1,
            stripe: DEFAULT_STRIPE,
            size: 0,
        };
        assert_eq!(l.stripes(), 0);
        assert_eq!(l.shard_object_len(), TRAILER_LEN);
        let l = Layout {
            size: 3 * DEFAULT_STRIPE + 1,
            ..l
        };
        assert_eq!(l.stripes(), 4);
        assert_eq!(l.shard_len(3), 2);
        assert_eq!(l.shards_len(), 3 * (DEFAULT_STRIPE / 2 + 4) + 2 + 4);
        assert_eq!(l.covering((0, DEFAULT_STRIPE)), (0, 1));
    }

    #[test]
    fn every_k_subset_rebuilds() {
        let l = Layout {
            k: 3,
            m: 2,
            stripe: 30,
            size: 29,
        };
        let data: Vec<u8> = (0..29u8).collect();
        let shards = encode_stripe(&l, 0, &data).unwrap();
        for lost in [[0, 1], [0, 4], [2, 3], [3, 4], [1, 2]] {
            let have = (0..5)
                .filter(|i| !lost.contains(i))
                .map(|i| (i, check_shard(0, i, &shards[i]).unwrap().to_vec()))
                .collect();
            assert_eq!(decode_stripe(&l, 0, have).unwrap(), data.as_slice());
        }
    }

    #[test]
    fn checksum_catches_a_flipped_bit_and_a_moved_shard() {
        let l = Layout {
            k: 2,
            m: 1,
            stripe: 8,
            size: 8,
        };
        let shards = encode_stripe(&l, 0, b"abcdefgh").unwrap();
        let mut bad = shards[0].to_vec();
        bad[1] ^= 1;
        assert!(check_shard(0, 0, &bad).is_none());
        assert!(check_shard(0, 1, &shards[0]).is_none());
        assert!(check_shard(1, 0, &shards[0]).is_none());
        assert!(check_shard(0, 0, &shards[0]).is_some());
    }

    /// The test vector of docs/ERASURE.md.
    #[test]
    fn test_vector() {
        let l = Layout {
            k: 2,
            m: 1,
            stripe: 8,
            size: 5,
        };
        let shards = encode_stripe(&l, 0, b"hello").unwrap();
        let hex: Vec<String> = shards.iter().map(hex::encode).collect();
        assert_eq!(&hex[0][..8], "68656c6c", "data shard 0: 'hell'");
        assert_eq!(&hex[1][..8], "6f000000");
        // Parity and checksums, pinned so the format cannot change unnoticed.
        assert_eq!(hex, VECTOR.map(String::from).to_vec());
    }

    const VECTOR: [&str; 3] = ["68656c6c19248eaa", "6f0000008d778b98", "07656c6c174e31ab"];

    #[test]
    fn trailer_vector() {
        let md5: [u8; 16] = hex::decode("5d41402abc4b2a76b9719d911017c592")
            .unwrap()
            .try_into()
            .unwrap();
        let t = trailer("00018d3c5e2a1b-000000-n1", &md5);
        assert_eq!(hex::encode(&t[..16]), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(hex::encode(&t[16..]), TRAILER_CRC);
    }

    const TRAILER_CRC: &str = "3d7300c0";
}
