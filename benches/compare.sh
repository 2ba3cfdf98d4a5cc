#!/usr/bin/env bash
# Before/after comparison of two `aslctl` builds in one run, alternating them
# so that machine noise hits both alike: ingest of a large random file (new
# data, then already stored) and of a tree of many small files.
# Usage: benches/compare.sh OLD_ASLCTL NEW_ASLCTL [TREE] [WORK_DIR] [ROUNDS]
#   TREE defaults to ~/.cargo/registry/src, WORK_DIR to ./bench-out, ROUNDS to 3.
set -euo pipefail
old=$1
new=$2
tree=${3:-$HOME/.cargo/registry/src}
work=${4:-bench-out}
rounds=${5:-3}
mkdir -p "$work"
in=$work/input-1024
[ -f "$in" ] || head -c $((1024 << 20)) /dev/urandom > "$in"
cat "$in" > /dev/null
tar cf - "$tree" 2>/dev/null | cat > /dev/null # warm the tree's pages too

secs() { local s e; s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
declare -A sum
for r in $(seq "$rounds"); do
    for which in old new; do
        bin=${!which}
        rm -rf "$work/store-$which"
        t=$(secs "$bin" --store "$work/store-$which" ingest "$in")
        sum[$which-new]=$(echo "${sum[$which-new]:-0} + $t" | bc -l)
        t=$(secs "$bin" --store "$work/store-$which" ingest "$in")
        sum[$which-dup]=$(echo "${sum[$which-dup]:-0} + $t" | bc -l)
        rm -rf "$work/store-$which"
        t=$(secs "$bin" --store "$work/store-$which" ingest "$tree")
        sum[$which-tree]=$(echo "${sum[$which-tree]:-0} + $t" | bc -l)
        rm -rf "$work/store-$which"
    done
done
files=$(find "$tree" -type f | wc -l)
mib=$(du -sm "$tree" | cut -f1)
printf '%-40s %10s %10s %8s\n' "mean of $rounds rounds, seconds" old new "new/old"
for k in new dup tree; do
    o=$(echo "${sum[old-$k]} / $rounds" | bc -l)
    n=$(echo "${sum[new-$k]} / $rounds" | bc -l)
    case $k in
    new) what="ingest 1 GiB random, new data" ;;
    dup) what="ingest 1 GiB random, already stored" ;;
    tree) what="ingest tree ($files files, $mib MiB)" ;;
    esac
    printf '%-40s %10.3f %10.3f %8.3f\n' "$what" "$o" "$n" "$(echo "$n / $o" | bc -l)"
done
