#!/usr/bin/env bash
# GC of ASL against `restic forget --prune` on the same workload, in one run:
#   N artifacts of 256 B to 1.75 KiB (incompressible), every tenth removed.
#   ASL:    `cargo bench --bench gc` (store built in-process, 10 % removed,
#           GC at threshold 0.5 and 1.0 with a reader and a writer running).
#   restic: the same N files backed up, the same tenth deleted, backed up
#           again, then `restic forget --keep-last 1 --prune` (default
#           --max-unused 5 %), timed with peak memory.
# Usage: benches/gc_vs_restic.sh [N] [WORK_DIR]   (defaults: 1000000, ./bench-out/gc)
# Needs restic (Debian package `restic`); installs it with apt-get when run as
# root, otherwise skips the restic half with a message.
set -euo pipefail
n=${1:-1000000}
work=$(realpath -m "${2:-bench-out/gc}")
cd "$(dirname "$0")/.."
mkdir -p "$work"

echo "== ASL: $n artifacts, 10 % removed (also writing the corpus for restic)" >&2
ASL_GC_N=$n ASL_GC_DIR="$work/asl" ASL_GC_CORPUS="$work/corpus" \
    cargo bench -q --bench gc 2>/dev/null | tail -1 > "$work/asl.json"
cat "$work/asl.json"
asl_full=$(python3 -c "import json;print(json.load(open('$work/asl.json'))['gc_full']['seconds'])")
asl_default=$(python3 -c "import json;print(json.load(open('$work/asl.json'))['gc_default']['seconds'])")

if ! command -v restic > /dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        apt-get install -y -q restic > /dev/null || true
    fi
fi
if ! command -v restic > /dev/null; then
    echo "restic is not installed and could not be installed: skipping the peer run" >&2
    exit 0
fi

export RESTIC_REPOSITORY="$work/restic" RESTIC_PASSWORD=asl-bench
rm -rf "$RESTIC_REPOSITORY"
restic init -q > /dev/null
timed() { # prints "seconds peak_rss_kib" of a command
    /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" > /dev/null 2>&1
    cat "$work/time.out"
}
echo "== restic $(restic version | cut -d' ' -f2): backup of $n files" >&2
read -r b1 _ < <(timed restic backup -q "$work/corpus")
# The same tenth ASL removed: file names are the artifact index, i % 10 == 3.
find "$work/corpus" -type f -name '*3' -delete
read -r b2 _ < <(timed restic backup -q "$work/corpus")
before=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
echo "== restic forget --keep-last 1 --prune" >&2
read -r prune prune_rss < <(timed restic forget -q --keep-last 1 --prune)
after=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
restic check -q > /dev/null 2>&1 && check=ok || check=FAILED

python3 - "$work/asl.json" "$b1" "$b2" "$prune" "$prune_rss" "$before" "$after" "$check" << 'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
b1, b2, prune = map(float, sys.argv[2:5])
rss, before, after = map(int, sys.argv[5:8])
full, dflt = a["gc_full"], a["gc_default"]
print(f"workload: {a['artifacts']} artifacts, {a['removed']} removed")
print(f"restic backup: {b1:.1f} s, second backup: {b2:.1f} s")
print(f"restic forget --prune: {prune:.2f} s, peak RSS {rss/1024:.0f} MiB, "
      f"repository {before/2**20:.0f} -> {after/2**20:.0f} MiB, check {sys.argv[8]}")
print(f"ASL gc (threshold 1.0): {full['seconds']:.2f} s, reclaimed {full['reclaimed_bytes']/2**20:.0f} MiB, "
      f"copied {full['artifacts_copied']} artifacts, garbage left {full['garbage_after']} B, "
      f"GC bookkeeping {full['peak_memory_bytes']/2**20:.1f} MiB")
l = a["gc_full_load"]
print(f"  during it: {l['reads']} verified reads (worst {l['worst_read_ms']:.1f} ms), "
      f"{l['puts']} puts committed (worst batch {l['worst_put100_commit_ms']:.1f} ms); "
      f"heap {l['anon_rss_before_kib']/1024:.0f} -> peak {l['anon_rss_peak_kib']/1024:.0f} MiB")
print(f"  segments {a['physical_before']/2**20:.0f} -> {a['physical_after']/2**20:.0f} MiB "
      f"(after includes the {l['puts']} artifacts put during GC)")
print(f"ASL gc (default threshold 0.5): {dflt['seconds']:.3f} s, reclaimed {dflt['reclaimed_bytes']/2**20:.0f} MiB")
print(f"ratio restic prune / ASL gc (threshold 1.0): {prune / full['seconds']:.1f}x")
EOF
