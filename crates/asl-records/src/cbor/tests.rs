use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn enc(v: &Value) -> String {
    encode(v).unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn rfc_8949_appendix_a_examples_in_their_canonical_form() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::Unsigned(0), "00"),
        (Value::Unsigned(23), "17"),
        (Value::Unsigned(24), "1818"),
        (Value::Unsigned(1000), "1903e8"),
        (Value::Unsigned(1_000_000), "1a000f4240"),
        (Value::Unsigned(u64::MAX), "1bffffffffffffffff"),
        (Value::int(-1), "20"),
        (Value::int(-1000), "3903e7"),
        (Value::Negative(u64::MAX), "3bffffffffffffffff"),
        (Value::Float(0.0), "f90000"),
        (Value::Float(-0.0), "f98000"),
        (Value::Float(1.0), "f93c00"),
        (Value::Float(1.1), "fb3ff199999999999a"),
        (Value::Float(1.5), "f93e00"),
        (Value::Float(65504.0), "f97bff"),
        (Value::Float(100000.0), "fa47c35000"),
        (Value::Float(3.4028234663852886e38), "fa7f7fffff"),
        (Value::Float(1.0e300), "fb7e37e43c8800759c"),
        (Value::Float(5.960464477539063e-8), "f90001"),
        (Value::Float(0.00006103515625), "f90400"),
        (Value::Float(-4.0), "f9c400"),
        (Value::Float(f64::INFINITY), "f97c00"),
        (Value::Float(f64::NAN), "f97e00"),
        (Value::Float(f64::NEG_INFINITY), "f9fc00"),
        (Value::Bool(false), "f4"),
        (Value::Bool(true), "f5"),
        (Value::Null, "f6"),
        (Value::Tag(1, Box::new(Value::Unsigned(1363896240))), "c11a514b67b0"),
        (Value::Bytes(vec![]), "40"),
        (Value::Bytes(vec![1, 2, 3, 4]), "4401020304"),
        (Value::text(""), "60"),
        (Value::text("IETF"), "6449455446"),
        (Value::text("\u{00fc}"), "62c3bc"),
        (Value::text("\u{6c34}"), "63e6b0b4"),
        (Value::Array(vec![]), "80"),
        (
            Value::Array(vec![
                Value::Unsigned(1),
                Value::Array(vec![Value::Unsigned(2), Value::Unsigned(3)]),
            ]),
            "8201820203",
        ),
        (Value::Map(vec![]), "a0"),
        (
            Value::Map(vec![
                (
                    Value::text("b"),
                    Value::Array(vec![Value::Unsigned(2), Value::Unsigned(3)]),
                ),
                (Value::text("a"), Value::Unsigned(1)),
            ]),
            "a26161016162820203",
        ),
    ];
    for (v, h) in cases {
        assert_eq!(enc(&v), h, "{v}");
        let back = decode(&hex(h)).unwrap();
        match (&v, &back) {
            (Value::Float(a), Value::Float(b)) if a.is_nan() => assert!(b.is_nan()),
            (Value::Map(_), _) => assert_eq!(encode(&back).unwrap(), hex(h)),
            _ => assert_eq!(back, v, "{h}"),
        }
    }
}

#[test]
fn map_keys_sort_bytewise_not_length_first() {
    // RFC 7049's canonical order (and cbor2's) puts -1 (one byte) before 24
    // (two bytes); §4.2.1 compares the encodings byte by byte: 0x18 < 0x20.
    let m = Value::Map(vec![
        (Value::int(-1), Value::Unsigned(2)),
        (Value::Unsigned(24), Value::Unsigned(1)),
        (Value::text("a"), Value::Unsigned(3)),
    ]);
    assert_eq!(enc(&m), "a31818012002616103");
    let length_first = hex("a32002181801616103");
    let e = decode(&length_first).unwrap_err();
    assert!(matches!(e, CborError::NotCanonical { .. }), "{e}");
}

#[test]
fn every_rule_is_checked_on_decode() {
    let bad: &[(&str, &str)] = &[
        ("1817", "shortest"),       // 23 in two bytes
        ("190017", "shortest"),     // 23 in three
        ("1a000000ff", "shortest"), // 255 in five
        ("1b00000000ffffffff", "shortest"),
        ("5801ff", "shortest"),             // a one-byte string's length in two bytes
        ("9f01ff", "indefinite"),           // indefinite array
        ("5f4101ff", "indefinite"),         // indefinite bytes
        ("a2616201616101", "order"),        // keys b, a
        ("a2616101616102", "twice"),        // key a twice
        ("fa3fc00000", "shortest"),         // 1.5 as single
        ("fb3ff8000000000000", "shortest"), // 1.5 as double
        ("f97e01", "NaN"),                  // NaN with a payload
        ("fa7fc00000", "NaN"),              // NaN as single
        ("f7", "simple"),                   // undefined
        ("f0", "simple"),                   // simple value 16
        ("f820", "simple"),                 // simple value 32
        ("1c", "reserved"),
        ("ff", "break"),
        ("62c328", "UTF-8"),
        ("0000", "follow"),
        ("19", "ends"),
        ("9b7fffffffffffffff", "ends"), // a length no input could hold
    ];
    for (h, why) in bad {
        let e = decode(&hex(h)).expect_err(h);
        assert!(e.to_string().contains(why), "{h}: {e} (expected {why})");
    }
}

#[test]
fn nesting_is_bounded() {
    let mut deep = vec![0x81u8; MAX_DEPTH + 1];
    deep.push(0x00);
    assert!(decode(&deep).is_ok());
    let mut deeper = vec![0x81u8; MAX_DEPTH + 2];
    deeper.push(0x00);
    let e = decode(&deeper).unwrap_err();
    assert!(e.to_string().contains("deeper"), "{e}");
    // Far beyond: an error, not a stack overflow.
    let mut hostile = vec![0x81u8; 1 << 20];
    hostile.push(0);
    assert!(decode(&hostile).is_err());
}

#[test]
fn the_encoder_refuses_a_key_twice() {
    let m = Value::Map(vec![
        (Value::text("k"), Value::Null),
        (Value::text("k"), Value::Bool(true)),
    ]);
    assert_eq!(encode(&m), Err(CborError::DuplicateKey { key: "\"k\"".into() }));
}

#[test]
fn half_floats_exact_at_every_bit_pattern() {
    for h in 0..=u16::MAX {
        let x = f16_value(h);
        if x.is_nan() {
            continue;
        }
        assert_eq!(f16_exact(x), Some(h), "{h:04x} = {x}");
    }
    for x in [65520.0, 1.0 + 2f64.powi(-11), 2f64.powi(-25), 1.0e-10, 0.1] {
        assert_eq!(f16_exact(x), None, "{x}");
    }
}

pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Value::Unsigned),
        any::<u64>().prop_map(Value::Negative),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ".{0,12}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        any::<f64>().prop_map(Value::Float),
        any::<f32>().prop_map(|f| Value::Float(f as f64)),
        (-70_000i32..70_000).prop_map(|n| Value::Float(n as f64 / 8.0)),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,6}", inner.clone(), 0..6)
                .prop_map(|m| Value::Map(m.into_iter().map(|(k, v)| (Value::Text(k), v)).collect())),
            proptest::collection::vec((any::<i16>(), inner.clone()), 0..5).prop_map(|kv| {
                let mut seen = std::collections::BTreeSet::new();
                Value::Map(
                    kv.into_iter()
                        .filter(|(k, _)| seen.insert(*k))
                        .map(|(k, v)| (Value::int(k as i64), v))
                        .collect(),
                )
            }),
            (0u64..100_000, inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
        ]
    })
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity_on_bytes(v in arb_value()) {
        let b = encode(&v).unwrap();
        let back = decode(&b).unwrap();
        prop_assert_eq!(encode(&back).unwrap(), b);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_accepts_only_canonical(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(v) = decode(&b) {
            prop_assert_eq!(encode(&v).unwrap(), b);
        }
    }
}
