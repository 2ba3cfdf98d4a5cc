#!/usr/bin/env bash
# Versioned data through ASL and the tools that deduplicate chunks, in one
# run: how many bytes each keeps for a series of versions, and how long each
# takes to take them in.
#   tree:   a source-like tree (TREE_MB, default 300) of text and a few large
#           files; each next version edits ~3 % of the files, appends to a few
#           large ones and rewrites a span in the middle of a few others.
#   binary: one file of BIN_MB (default 256) random bytes; each next version
#           changes 1 % of it at random places, half overwritten, half
#           inserted (the bytes after an insertion shift).
# Every tool takes VERSIONS (default 10) versions of each series, each kept:
#   ASL:    aslctl ingest + aslctl snapshot create (content-defined chunks, zstd)
#   restic: restic backup (compression auto)
#   borg:   borg create (borg's defaults: lz4, buzhash chunker)
#   borg-zstd3: the same with --compression zstd,3 (ASL's compressor)
#   casync: casync make (its defaults: zstd, chunk store)
# Reported per series and tool: stored bytes after the last version (du of the
# repository), ratio to ASL, and the total time of the ingests.
# Usage: benches/versioned.sh [WORK_DIR]     (default ./bench-out/versioned;
# SERIES="tree binary" picks the series)
# Not part of CI. Installs restic, borgbackup and casync with apt-get when run
# as root; skips a tool it cannot run, saying so.
set -euo pipefail
work=$(realpath -m "${1:-bench-out/versioned}")
versions=${VERSIONS:-10}
tree_mb=${TREE_MB:-300}
bin_mb=${BIN_MB:-256}
source "$(dirname "$0")/lib.sh"
asl_setup
install_peers restic:restic borg:borgbackup casync:casync

# Writes version $2 of series $1 into $work/data/$1 (in place, from the
# previous version), deterministically.
generate() {
    python3 - "$1" "$2" "$work/data/$1" "$tree_mb" "$bin_mb" << 'EOF'
import os, random, sys
series, v, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tree_mb, bin_mb = int(sys.argv[4]), int(sys.argv[5])
WORDS = b"fn let match segment block index commit reader writer offset length error result value buffer store".split()

def text(rng, n):
    out = bytearray()
    while len(out) < n:
        r = rng.random()
        if r < 0.12:
            out += str(rng.getrandbits(24)).encode() + b" "
        elif r < 0.2:
            out += b"();\n    "
        else:
            out += rng.choice(WORDS) + b" "
    return bytes(out[:n])

def noise(rng, n):
    return rng.randbytes(n)

if series == "binary":
    path = os.path.join(root, "image.bin")
    rng = random.Random(1000 + v)
    if v == 0:
        os.makedirs(root, exist_ok=True)
        g = random.Random(7)
        with open(path, "wb") as f:
            for _ in range(bin_mb):
                f.write(g.randbytes(1 << 20))
        sys.exit(0)
    data = bytearray(open(path, "rb").read())
    budget = len(data) // 100
    edits = 40
    for i in range(edits):
        n = budget // edits
        at = rng.randrange(0, len(data) - n)
        if i % 2 == 0:
            data[at:at + n] = rng.randbytes(n)
        else:
            data[at:at] = rng.randbytes(n)
    with open(path, "wb") as f:
        f.write(data)
    sys.exit(0)

# The tree: text files (log-normal sizes, median ~6 KiB) in directories, and
# a few large files (logs and data) making up about a third of it.
rng = random.Random(v)
if v == 0:
    g = random.Random(1)
    total, i = 0, 0
    big_total = (tree_mb << 20) // 3
    for k in range(6):
        d = os.path.join(root, "data")
        os.makedirs(d, exist_ok=True)
        n = big_total // 6
        body = text(g, n) if k % 2 == 0 else noise(g, n)
        open(os.path.join(d, f"big{k}.{'log' if k % 2 == 0 else 'bin'}"), "wb").write(body)
        total += n
    while total < tree_mb << 20:
        d = os.path.join(root, f"src/mod{i // 100:03}")
        os.makedirs(d, exist_ok=True)
        n = min(int(g.lognormvariate(8.7, 1.0)), 1 << 20)
        open(os.path.join(d, f"file{i:05}.rs"), "wb").write(text(g, n))
        total += n
        i += 1
    sys.exit(0)
files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, "src")) for f in fs)
for p in rng.sample(files, max(1, len(files) * 3 // 100)):
    b = bytearray(open(p, "rb").read())
    at = rng.randrange(0, max(1, len(b)))
    b[at:at + 200] = text(rng, 300)
    open(p, "wb").write(b)
bigs = sorted(os.listdir(os.path.join(root, "data")))
for name in bigs[:2]:
    with open(os.path.join(root, "data", name), "ab") as f:
        f.write(text(rng, 1 << 20))
for name in bigs[2:4]:
    p = os.path.join(root, "data", name)
    b = bytearray(open(p, "rb").read())
    mid = len(b) // 2 + rng.randrange(-(1 << 20), 1 << 20)
    b[mid:mid + (256 << 10)] = noise(rng, 256 << 10)
    open(p, "wb").write(b)
EOF
}

now() { date +%s.%N; }
declare -A took
add_time() { took[$1]=$(echo "${took[$1]:-0} + $(now) - $2" | bc -l); }

for series in ${SERIES:-tree binary}; do
    echo "== series $series: $versions versions" >&2
    rm -rf "$work/data" "$work/repo"
    mkdir -p "$work/data" "$work/repo"
    export RESTIC_REPOSITORY="$work/repo/restic" RESTIC_PASSWORD=bench BORG_PASSPHRASE=
    export BORG_REPO="$work/repo/borg" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
    have restic && restic init -q > /dev/null
    have borg && borg init --encryption=none "$BORG_REPO" > /dev/null 2>&1
    have borg && borg init --encryption=none "$work/repo/borg-zstd3" > /dev/null 2>&1
    mkdir -p "$work/repo/casync"
    for v in $(seq 0 $((versions - 1))); do
        generate "$series" "$v"
        sync
        t=$(now); "$asl" --store "$work/repo/asl" ingest "$work/data/$series" > /dev/null 2>&1
        "$asl" --store "$work/repo/asl" snapshot create "$series-$v" > /dev/null; add_time "asl-$series" "$t"
        if have restic; then
            t=$(now); restic backup -q "$work/data/$series" > /dev/null; add_time "restic-$series" "$t"
        fi
        if have borg; then
            t=$(now); (cd "$work/data" && borg create "::$series-$v" "$series" > /dev/null 2>&1); add_time "borg-$series" "$t"
            # The same with ASL's compressor, so the comparison is of the
            # layout, not of lz4 against zstd.
            t=$(now)
            (cd "$work/data" && BORG_REPO="$work/repo/borg-zstd3" borg create --compression zstd,3 \
                "::$series-$v" "$series" > /dev/null 2>&1)
            add_time "borg-zstd3-$series" "$t"
        fi
        if have casync; then
            t=$(now)
            casync make --store="$work/repo/casync/store.castr" "$work/repo/casync/$series-$v.caidx" \
                "$work/data/$series" > /dev/null 2>&1
            add_time "casync-$series" "$t"
        fi
        echo "   version $v done" >&2
    done
    logical=$(du -sb "$work/data/$series" | cut -f1)
    asl_bytes=$(du -sb "$work/repo/asl" | cut -f1)
    echo "series $series: $versions versions, last version $logical bytes"
    printf "%-10s %14s %8s %10s\n" tool "stored bytes" "vs ASL" "ingest s"
    for tool in asl restic borg borg-zstd3 casync; do
        dir="$work/repo/$tool"
        [ -d "$dir" ] || continue
        [ -n "${took[$tool-$series]:-}" ] || continue
        bytes=$(du -sb "$dir" | cut -f1)
        printf "%-10s %14d %8.2f %10.1f\n" "$tool" "$bytes" "$(echo "$bytes / $asl_bytes" | bc -l)" "${took[$tool-$series]}"
    done
done
