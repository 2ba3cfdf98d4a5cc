"""Checks an ASL attestation with tools that share no code with ASL.

Usage: check_attestation.py ENVELOPE.json PROV.json PUBLIC_KEY_HEX

- the DSSE signature, with the `cryptography` package's Ed25519 over the
  pre-authentication encoding the DSSE spec defines;
- the in-toto Statement v1, with the in-toto-attestation package's protobuf
  schema and its own validate();
- the SLSA Provenance v1 predicate, parsed into that package's provenance
  protobuf (unknown or mistyped fields are refused);
- the PROV-JSON document, read by the W3C PROV reference package `prov`.

Prints one summary line; exits non-zero (with a traceback) on any failure.
"""
import base64
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
import prov

envelope_path, prov_path, key_hex = sys.argv[1:4]
env = json.load(open(envelope_path))
payload = base64.b64decode(env["payload"])
ptype = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
sigs = [s for s in env["signatures"] if s["keyid"] == key_hex]
assert sigs, "no signature by the store's key"
Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(base64.b64decode(sigs[0]["sig"]), pae)

st = json_format.Parse(payload, statement_pb2.Statement())
Statement.copy_from_pb(st).validate()
assert st.predicate_type == "https://slsa.dev/provenance/v1", st.predicate_type
for s in st.subject:
    assert set(s.digest) == {"sha256", "blake3"}, s.digest
    assert len(s.digest["sha256"]) == 64 and len(s.digest["blake3"]) == 64
pv = json_format.ParseDict(json.loads(payload)["predicate"], provenance_pb2.Provenance())
assert pv.build_definition.build_type == "urn:asl:pel:run:v1"
assert pv.run_details.builder.id.startswith("urn:asl:pel:key:")
deps = len(pv.build_definition.resolved_dependencies)

doc = prov.read(prov_path, format="json")
records = doc.get_records()
kinds = {}
for r in records:
    kinds[r.get_type().localpart] = kinds.get(r.get_type().localpart, 0) + 1
assert kinds.get("Entity", 0) > 0 and kinds.get("Activity", 0) > 0 and kinds.get("Usage", 0) > 0, kinds
assert kinds.get("Generation", 0) > 0 and kinds.get("Agent", 0) == 1, kinds
print(
    "ok: dsse signature valid; statement with %d subjects, %d dependencies; prov: %s"
    % (len(st.subject), deps, ", ".join("%s=%d" % kv for kv in sorted(kinds.items())))
)
