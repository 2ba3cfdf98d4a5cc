# GC of ASL against `restic forget --prune` on the same workload, in one run:
#   N artifacts of 256 B to 1.75 KiB (incompressible), every tenth removed.
#   ASL:    the store built in-process by `cargo bench --bench gc` (with
#           ASL_GC_BUILD_ONLY: build and remove only), then `aslctl gc` with
#           the default policy, timed by /usr/bin/time, which also gives the
#           process's peak RSS (GC reports its own measurement too). The same
#           GC with a reader and a writer running is `cargo bench --bench gc`.
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
timed() { # prints "seconds peak_rss_kib" of a command; its stdout goes to $work/out
    /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" > "$work/out" 2>/dev/null
    cat "$work/time.out"
}

echo "== ASL: $n artifacts, 10 % removed (also writing the corpus for restic)" >&2
ASL_GC_N=$n ASL_GC_DIR="$work/asl" ASL_GC_CORPUS="$work/corpus" ASL_GC_BUILD_ONLY=1 \
    cargo bench -q --bench gc > /dev/null
cargo build --release -q --bin aslctl
sync
echo "== aslctl gc (default policy)" >&2
dir_before=$(du -sb "$work/asl/store" | cut -f1)
read -r asl_s asl_rss < <(timed target/release/aslctl --store "$work/asl/store" --json gc)
dir_after=$(du -sb "$work/asl/store" | cut -f1)
cp "$work/out" "$work/asl.json"
cat "$work/asl.json"
python3 - "$work/asl.json" "$dir_before" "$dir_after" "$(du -sb "$work/asl/store/log" | cut -f1)" << 'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
before, after, log = map(int, sys.argv[2:5])
freed = a["garbage_before"] - a["garbage_after"]
print(f"store directory {before/1e6:.1f} -> {after/1e6:.1f} MB: shrank {(before-after)/1e6:.1f} MB = "
      f"{100*(before-after)/max(freed,1):.0f} % of the {freed/1e6:.1f} MB GC reclaimed (log/ now {log/1e6:.1f} MB)")
EOF

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

python3 - "$work/asl.json" "$b1" "$b2" "$prune" "$prune_rss" "$before" "$after" "$check" "$asl_s" "$asl_rss" << 'EOF'
import json, sys
a = json.load(open(sys.argv[1]))
b1, b2, prune = map(float, sys.argv[2:5])
rss, before, after = map(int, sys.argv[5:8])
asl_s, asl_rss = float(sys.argv[9]), int(sys.argv[10])
print(f"restic backup: {b1:.1f} s, second backup: {b2:.1f} s")
print(f"restic forget --prune: {prune:.2f} s, peak RSS {rss/1024:.0f} MiB, "
      f"repository {before/2**20:.0f} -> {after/2**20:.0f} MiB, check {sys.argv[8]}")
g0, g1 = a["garbage_before"], a["garbage_after"]
print(f"aslctl gc (default policy): {asl_s:.2f} s wall ({a['seconds']:.2f} s in GC), peak RSS {asl_rss/1024:.0f} MiB "
      f"(GC's own measurement {a['peak_rss_bytes']/2**20:.0f} MiB), reclaimed {a['reclaimed_bytes']/2**20:.0f} MiB, "
      f"copied {a['artifacts_copied']} artifacts, garbage {g0/2**20:.1f} -> {g1/2**20:.1f} MiB "
      f"({100 * (g0 - g1) / max(g0, 1):.1f} % reclaimed)")
print(f"ratio restic prune / aslctl gc: {prune / asl_s:.1f}x")
EOF
