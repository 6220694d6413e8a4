//! The test vectors of docs/FORMAT.md, recomputed.

use s3proxy_crypto::format::*;
use s3proxy_crypto::{Keyring, MasterKey};

fn vectors() -> Vec<(&'static str, String)> {
    let master = MasterKey::new("test", [0x01; 32]).unwrap();
    let data_key = [0x02; 32];
    let cipher = data_cipher(&data_key);
    let seg = seal_segment(&cipher, &[0x04; 24], 0, 0, true, b"s3proxy test vector");
    let seg2 = seal_segment(&cipher, &[0x05; 24], 3, 7, false, b"part 3, segment 7");
    let info = Info {
        size: 19,
        etag: "a0f3d2bb8a0e1c1bbd41b26e5d6b1b62".into(),
        parts: None,
        meta: metadata_hash(&s3proxy_core::ObjectMetadata::default()),
        trailer: None,
    };
    vec![
        ("fingerprint", master.fingerprint()),
        (
            "wrapped",
            wrap_data_key_with_nonce(&master, &data_key, &[0x03; 24]),
        ),
        ("segment", hex::encode(&seg)),
        ("segment2", hex::encode(&seg2)),
        (
            "metahash",
            metadata_hash(&s3proxy_core::ObjectMetadata::default()),
        ),
        ("info", seal_info_with_nonce(&data_key, &info, &[0x06; 24])),
        (
            "uploadkey",
            hex::encode(upload_data_key(&master, "bucket", "key", "inner-1")),
        ),
        (
            "uploadid",
            upload_token(&master, "bucket", "key", "inner-1"),
        ),
    ]
}

#[test]
fn format_md_vectors_match() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    for (name, value) in vectors() {
        let line = format!("{name}: {value}");
        assert!(doc.contains(&line), "docs/FORMAT.md lacks `{line}`");
    }
    // And they decode.
    let ring = Keyring::single(MasterKey::new("test", [0x01; 32]).unwrap());
    let v = vectors();
    assert_eq!(unwrap_data_key(&ring, &v[1].1).unwrap(), [0x02; 32]);
    let seg = hex::decode(&v[2].1).unwrap();
    assert_eq!(
        &open_segment(&data_cipher(&[0x02; 32]), 0, 0, true, &seg).unwrap()[..],
        b"s3proxy test vector"
    );
}

#[test]
#[ignore]
fn print_vectors() {
    for (name, value) in vectors() {
        println!("{name}: {value}");
    }
}
