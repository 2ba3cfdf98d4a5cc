#!/bin/bash
# Peak memory of a streaming put: `aslctl ingest -` of GIB GiB of AES-CTR
# noise (incompressible, no repeats) into a fresh store; prints the peak RSS
# and the times /usr/bin/time reports. The store is removed afterwards.
# usage: benches/mem.sh ASLCTL GIB [WORKDIR]
set -u
bin=$1
gib=$2
work=$(mktemp -d "${3:-${TMPDIR:-/tmp}}/asl-mem.XXXXXX")
trap 'rm -rf "$work"' EXIT
openssl enc -aes-256-ctr -pass pass:asl -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c $((gib << 30)) |
    /usr/bin/time -f "%M KiB peak RSS, %e s wall, %U s user, %S s sys" "$bin" --store "$work/store" ingest - 2>&1 >/dev/null |
    tail -1
