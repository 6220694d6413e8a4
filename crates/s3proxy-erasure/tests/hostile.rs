//! Shard records read from a backend are untrusted: hostile ones are refused, never a
//! panic or an unbounded allocation (E8).

use s3proxy_core::ObjectMetadata;
use s3proxy_erasure::*;

fn record(json: &str) -> Option<ShardMeta> {
    let mut meta = ObjectMetadata::default();
    meta.internal.insert(SHARD_KEY.into(), json.into());
    ShardMeta::from_metadata(&meta)
}

fn json(k: &str, m: &str, i: &str, stripe: &str, size: &str) -> String {
    format!(r#"{{"v":1,"k":{k},"m":{m},"i":{i},"stripe":{stripe},"size":{size},"ver":"x"}}"#)
}

#[test]
fn a_sane_record_is_read() {
    let r = record(&json("2", "1", "2", "1048576", "10000000")).unwrap();
    assert_eq!((r.k, r.m, r.i), (2, 1, 2));
}

#[test]
fn hostile_records_are_refused() {
    let max = u64::MAX.to_string();
    let umax = usize::MAX.to_string();
    let cases = [
        // k + m overflows.
        json(&umax, "1", "0", "1048576", "10"),
        json("2", &umax, "0", "1048576", "10"),
        // A stripe over MAX_STRIPE (a huge allocation per stripe read).
        json("2", "1", "0", &max, "10"),
        json("2", "1", "0", &(MAX_STRIPE + 1).to_string(), "10"),
        // A size whose shard object length overflows.
        json("1", "1", "0", "2", &max),
        json("2", "1", "0", "4", &max),
        // 2 * k overflows.
        json(&(usize::MAX / 2 + 1).to_string(), "0", "0", "4", "10"),
    ];
    for c in &cases {
        assert_eq!(record(c), None, "{c}");
    }
}

#[test]
fn checked_object_len_agrees_with_the_plain_one() {
    for size in [0, 1, 7, 8, 9, 1000] {
        let l = Layout {
            k: 2,
            m: 1,
            stripe: 8,
            size,
        };
        assert_eq!(l.checked_object_len(), Some(l.shard_object_len()));
    }
    let huge = Layout {
        k: 1,
        m: 1,
        stripe: 2,
        size: u64::MAX,
    };
    assert_eq!(huge.checked_object_len(), None);
}
