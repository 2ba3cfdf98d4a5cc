//! ASL's canonical CBOR against an independent implementation, Python's
//! `cbor2` (installed by `.ci/run`): the same bytes both ways on generated
//! values, and ASL's decoder rejecting what cbor2 writes non-canonically.
//!
//! cbor2's `canonical=True` orders map keys length-first (RFC 7049), which
//! agrees with RFC 8949's bytewise order whenever the keys are all text (or
//! all non-negative integers); the generated values keep to text keys, and
//! maps with mixed keys are checked on their own to be rejected.

use std::io::Write;
use std::process::{Command, Stdio};

use asl::records::cbor::{decode, encode, CborError, Value};

fn python(args: &[&str], input: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/cbor2_check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the cross-check needs it and cbor2: pip install cbor2)");
    // Written from a thread of its own: the script answers line by line,
    // and a full pipe each way would otherwise hold both sides.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "cbor2_check.py {args:?} failed (is cbor2 installed? pip install cbor2):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self, max: u64) -> String {
        const PIECES: &[&str] = &["a", "Z", "0", " ", "\n", "\"", "\\", "ä", "水", "€", "😀", "\u{7f}"];
        (0..self.below(max + 1))
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    fn float(&mut self) -> f64 {
        match self.below(5) {
            0 => [
                0.0,
                -0.0,
                1.0,
                1.5,
                65504.0,
                65520.0,
                1e-8,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ][self.below(10) as usize],
            1 => (self.below(140_000) as f64 - 70_000.0) / 8.0,
            2 => f32::from_bits(self.next() as u32) as f64,
            _ => f64::from_bits(self.next()),
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        let kinds = if depth < 4 { 11 } else { 7 };
        match self.below(kinds) {
            0 => {
                let bits = [5, 8, 16, 32, 64][self.below(5) as usize];
                Value::Unsigned(if bits == 64 {
                    self.next()
                } else {
                    self.next() % (1 << bits)
                })
            }
            1 => Value::Negative(self.next() >> self.below(64)),
            2 => Value::Bytes(
                (0..[0, 3, 23, 24, 300][self.below(5) as usize])
                    .map(|_| self.next() as u8)
                    .collect(),
            ),
            3 => Value::Text(self.text(30)),
            4 => Value::Float(self.float()),
            5 => [Value::Bool(true), Value::Bool(false), Value::Null][self.below(3) as usize].clone(),
            6 => Value::Text(self.text(2)),
            7 | 8 => Value::Array((0..self.below(5)).map(|_| self.value(depth + 1)).collect()),
            9 => {
                let mut keys = std::collections::BTreeSet::new();
                for _ in 0..self.below(6) {
                    keys.insert(self.text(8));
                }
                Value::Map(
                    keys.into_iter()
                        .map(|k| (Value::Text(k), self.value(depth + 1)))
                        .collect(),
                )
            }
            _ => Value::Tag(30_000 + self.below(10_000), Box::new(self.value(depth + 1))),
        }
    }
}

#[test]
fn cbor2_reencodes_our_encodings_to_the_same_bytes() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let ours: Vec<String> = (0..3000).map(|_| hex(&encode(&g.value(0)).unwrap())).collect();
    let theirs = python(&["reencode"], &(ours.join("\n") + "\n"));
    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), ours.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "value {i}: ASL wrote {a}, cbor2 re-encoded it as {b}");
    }
}

#[test]
fn we_accept_cbor2s_canonical_bytes_and_reject_its_default_ones() {
    let out = python(&["generate", "3000", "11"], "");
    let (mut rejected, mut n) = (0, 0);
    for line in out.lines() {
        let (canon, default) = line.split_once(' ').unwrap();
        let bytes = unhex(canon);
        let v = decode(&bytes).unwrap_or_else(|e| panic!("cbor2's canonical {canon}: {e}"));
        assert_eq!(hex(&encode(&v).unwrap()), canon);
        if default != "-" {
            match decode(&unhex(default)) {
                Err(CborError::NotCanonical { .. }) => rejected += 1,
                other => panic!("cbor2's default encoding {default} of {canon}: {other:?}"),
            }
        }
        n += 1;
    }
    assert_eq!(n, 3000);
    // Doubles where a shorter float holds the value, maps in insertion
    // order: most generated values have one or the other.
    assert!(
        rejected > 500,
        "only {rejected} non-canonical encodings came back from cbor2"
    );
}

#[test]
fn cbor2s_length_first_key_order_is_rejected() {
    let out = python(&["mixed"], "");
    let mut n = 0;
    for line in out.lines() {
        let e = decode(&unhex(line)).expect_err(line);
        assert!(e.to_string().contains("bytewise order"), "{line}: {e}");
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn cbor2_reads_a_record_envelope_as_spec_records_md_says() {
    use asl::records::Record;
    let mut g = Gen(7);
    let recs: Vec<Record> = (0..50)
        .map(|i| Record::new(format!("lab/t{i}"), 1 + i as u64, g.value(0)))
        .collect();
    let input: String = recs.iter().map(|r| hex(&r.encode().unwrap()) + "\n").collect();
    let seen = python(&["envelope"], &input);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), recs.len());
    for (r, line) in recs.iter().zip(lines) {
        assert_eq!(line, format!("55799 asl {} {} same", r.type_name, r.version));
    }
}
