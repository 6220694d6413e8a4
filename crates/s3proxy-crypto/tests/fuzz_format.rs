//! Property tests over what the crypto layer parses from backends and clients: part
//! layouts, wrapped keys, sealed info records, segments and upload ids. Backends' bytes and
//! clients' upload ids are untrusted: no input panics, and nothing forged is accepted.

use proptest::prelude::*;
use s3proxy_crypto::format::*;
use s3proxy_crypto::{Keyring, MasterKey};

fn ring() -> Keyring {
    Keyring::single(MasterKey::new("k1", [7; 32]).unwrap())
}

/// The case a property run once found: whole segments and one empty segment, the stored
/// size of a multipart object with an empty last part.
#[test]
fn a_stored_size_ending_in_an_empty_segment_is_a_multipart_objects() {
    let stored = 18_249_570_723_192_343_064u64;
    assert_eq!(stored % STORED_SEGMENT, SEGMENT_OVERHEAD);
    let plain = plain_size(stored).unwrap();
    assert_eq!(stored_size(plain) + SEGMENT_OVERHEAD, stored);
    assert_eq!(plain % SEGMENT_SIZE, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// A layout read from a backend's metadata: an error or a layout whose sizes add up,
    /// whatever the text (huge sizes and counts included).
    #[test]
    fn layouts_decode_or_fail_cleanly(
        text in "([0-9]{1,10}\\+[0-9]{1,5}\\*[0-9]{1,20},?){1,4}|\\PC{0,30}",
    ) {
        if let Ok(layout) = Layout::decode(&text) {
            // Summed wide, so a wrapped sum (release builds do not check) shows up here.
            let plain: u128 = layout.parts().iter().map(|p| p.plain_len as u128).sum();
            prop_assert_eq!(layout.plain_size() as u128, plain);
            prop_assert!(layout.stored_size() as u128 >= plain);
            prop_assert_eq!(Layout::decode(&layout.encode()).unwrap(), layout);
        }
    }

    /// Stored sizes from a backend's LIST: the inverse of `stored_size` where one exists.
    #[test]
    fn plain_size_inverts_stored_size(plain in 0u64..(1 << 44), stored in any::<u64>()) {
        prop_assert_eq!(plain_size(stored_size(plain)), Some(plain));
        if let Some(p) = plain_size(stored) {
            // A single PUT's size, or (whole segments, then one empty segment) a multipart
            // object whose last part is empty after parts of whole segments: plain_size's
            // documented answer, which no single PUT's stored size gives.
            let empty_last_part = stored % STORED_SEGMENT == SEGMENT_OVERHEAD
                && stored > SEGMENT_OVERHEAD
                && stored_size(p) + SEGMENT_OVERHEAD == stored;
            prop_assert!(stored_size(p) == stored || empty_last_part, "{} -> {}", stored, p);
        }
    }

    /// Wrapped keys and sealed info records from a backend: any text is refused, never a
    /// panic; so is a real one with any character changed.
    #[test]
    fn wrapped_keys_and_info_records_are_authenticated(
        junk in "\\PC{0,120}",
        at in any::<proptest::sample::Index>(),
        with in "[A-Za-z0-9+/=._-]",
    ) {
        let ring = ring();
        prop_assert!(unwrap_data_key(&ring, &junk).is_err());
        prop_assert!(open_info(&[1; 32], &junk).is_err());
        let wrapped = wrap_data_key(ring.active(), &[9; 32]);
        let mut changed: Vec<char> = wrapped.chars().collect();
        let i = at.index(changed.len());
        let c = with.chars().next().unwrap();
        if changed[i] != c {
            changed[i] = c;
            let changed: String = changed.into_iter().collect();
            if let Ok(key) = unwrap_data_key(&ring, &changed) {
                // Base64 may have two spellings of one byte string; the key is the same.
                prop_assert_eq!(key, [9; 32]);
            }
        }
    }

    /// Segments: any bytes are refused (or authenticated), never a panic.
    #[test]
    fn segments_open_only_when_authentic(stored in proptest::collection::vec(any::<u8>(), 0..200), last in any::<bool>()) {
        let cipher = data_cipher(&[5; 32]);
        prop_assert!(open_segment(&cipher, 0, 0, last, &stored).is_err());
    }

    /// Upload ids from clients: only an id issued for this bucket and key is accepted.
    #[test]
    fn upload_ids_cannot_be_forged(
        junk in "e1\\.[a-z0-9]{0,4}\\.[A-Za-z0-9+/=]{0,30}\\.\\PC{0,20}|\\PC{0,40}",
        inner in "[A-Za-z0-9._~-]{1,40}",
        at in any::<proptest::sample::Index>(),
    ) {
        let ring = ring();
        prop_assert!(parse_upload_token(&ring, "b", "k", &junk).is_none());
        let id = upload_token(ring.active(), "b", "k", &inner);
        prop_assert_eq!(parse_upload_token(&ring, "b", "k", &id).map(|(i, _)| i), Some(inner.clone()));
        prop_assert!(parse_upload_token(&ring, "b", "k2", &id).is_none());
        prop_assert!(parse_upload_token(&ring, "b2", "k", &id).is_none());
        // Another inner id under the same MAC.
        let (head, _) = id.rsplit_once('.').unwrap();
        let other_inner = format!("{head}.{inner}x");
        prop_assert!(parse_upload_token(&ring, "b", "k", &other_inner).is_none());
        let mut chars: Vec<char> = id.chars().collect();
        let i = at.index(chars.len());
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let changed: String = chars.into_iter().collect();
        if let Some((got, _)) = parse_upload_token(&ring, "b", "k", &changed) {
            prop_assert_eq!(got, inner);
        }
    }
}
