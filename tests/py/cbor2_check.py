"""The other side of tests/cbor2.rs: cbor2, an independent CBOR
implementation, checks ASL's canonical encoder and feeds its decoder.

  reencode:  reads hex lines (ASL's encodings) from stdin, decodes each with
             cbor2 and writes cbor2's canonical re-encoding, one hex line each.
  generate N SEED: writes N random values as cbor2 encodes them, a line each:
             "<canonical hex> <default-encoding hex or ->", the second only
             when cbor2's default encoding differs from its canonical one.
  envelope:  reads hex lines (ASL records) and writes what cbor2 sees in
             each: tag, magic, type, version, and whether it re-encodes the
             same.
  mixed:     writes cbor2's canonical=True encoding of maps whose keys mix
             integer signs and types, where cbor2 orders keys length-first
             (RFC 7049) and RFC 8949 section 4.2.1 orders them bytewise.
"""
import random
import string
import struct
import sys

import cbor2


def rand_float(r):
    k = r.randrange(6)
    if k == 0:
        return r.choice([0.0, -0.0, 1.0, -2.5, 65504.0, 5.960464477539063e-08,
                         float("inf"), float("-inf"), float("nan")])
    if k == 1:
        return r.randrange(-70000, 70000) / 8.0
    if k == 2:  # exactly a single-precision value
        return struct.unpack(">f", struct.pack(">f", r.uniform(-1e30, 1e30)))[0]
    if k == 3:
        return struct.unpack(">e", r.randbytes(2))[0]
    return struct.unpack(">d", r.randbytes(8))[0]


def rand_text(r, n):
    alphabet = string.ascii_letters + "äöü水€😀 \t\n\"\\"
    return "".join(r.choice(alphabet) for _ in range(r.randrange(n)))


def rand_value(r, depth=0):
    k = r.randrange(11 if depth < 4 else 7)
    if k == 0:
        return r.choice([r.randrange(24), r.randrange(1 << 8), r.randrange(1 << 16),
                         r.randrange(1 << 32), r.randrange(1 << 64)])
    if k == 1:
        return -1 - r.choice([r.randrange(24), r.randrange(1 << 16), r.randrange(1 << 64)])
    if k == 2:
        return r.randbytes(r.choice([0, 3, 23, 24, 300]))
    if k == 3:
        return rand_text(r, 30)
    if k == 4:
        return rand_float(r)
    if k == 5:
        return r.choice([True, False, None])
    if k == 6:
        return rand_text(r, 3)
    if k in (7, 8):
        return [rand_value(r, depth + 1) for _ in range(r.randrange(5))]
    if k == 9:
        # Keys inserted in random order: cbor2's default keeps that order.
        keys = [rand_text(r, 8) for _ in range(r.randrange(6))]
        return {key: rand_value(r, depth + 1) for key in keys}
    return cbor2.CBORTag(r.randrange(30000, 40000), rand_value(r, depth + 1))


def main():
    cmd = sys.argv[1]
    if cmd == "reencode":
        for line in sys.stdin:
            v = cbor2.loads(bytes.fromhex(line.strip()))
            print(cbor2.dumps(v, canonical=True).hex())
    elif cmd == "generate":
        n, seed = int(sys.argv[2]), int(sys.argv[3])
        r = random.Random(seed)
        for _ in range(n):
            v = rand_value(r)
            canon = cbor2.dumps(v, canonical=True)
            default = cbor2.dumps(v)
            print(canon.hex(), default.hex() if default != canon else "-")
    elif cmd == "envelope":
        # A record: cbor2 sees tag 55799 over ["asl", type, version, body]
        # and writes the same bytes back.
        for line in sys.stdin:
            b = bytes.fromhex(line.strip())
            magic = b"\xd9\xd9\xf7"
            # cbor2 reads through the self-described tag and drops it.
            v = cbor2.loads(b)
            same = magic + cbor2.dumps(v, canonical=True) == b
            tag = 55799 if b.startswith(magic) else None
            print(tag, v[0], v[1], v[2], "same" if same else "differs")
    elif cmd == "mixed":
        for m in [{24: 1, -1: 2}, {"a": 1, 24: 2, -1: 3}, {b"x": 1, 1000: 2, -1: 3}]:
            print(cbor2.dumps(m, canonical=True).hex())
    else:
        sys.exit(f"unknown command {cmd}")


main()
