//! The test vectors of docs/FORMAT.md, recomputed.

use s3proxy_crypto::format::*;
use s3proxy_crypto::manifest::*;
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
    let metahash = metadata_hash(&s3proxy_core::ObjectMetadata::default());
    let manifest_info = Info {
        size: 5_243_657,
        etag: "0123456789abcdef0123456789abcdef-2".into(),
        parts: Some("1+1*5242880,2+1*777".into()),
        meta: String::new(),
        trailer: None,
    };
    // The trailer of a manifest part of its own: padding, record, footer.
    let trailer = seal_manifest_with_nonce(
        &master,
        "bucket",
        "key",
        "inner-1",
        &manifest_info,
        &[0x07; 24],
        0,
    );
    let record_len = footer_record_len(&trailer).unwrap() as usize;
    let record = &trailer[trailer.len() - 12 - record_len..];
    vec![
        ("fingerprint", master.fingerprint().to_string()),
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
        ("manifestpad", (trailer.len() - 12 - record_len).to_string()),
        ("manifest", hex::encode(record)),
        (
            "umeta",
            upload_meta_tag(&master, "bucket", "key", &metahash),
        ),
        (
            "metaseal",
            seal_meta_with_nonce(&data_key, &metahash, &[0x08; 24]),
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
