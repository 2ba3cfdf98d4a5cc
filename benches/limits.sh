#!/usr/bin/env bash
# Measures the machine's limits and `aslctl ingest` in one run, so the figures can
# be compared as ratios on a shared, noisy machine:
#   disk:  dd of the input with conv=fdatasync       (sequential write limit)
#   hash:  b3sum --num-threads 1 of the input        (single-thread BLAKE3 limit)
#   ASL:   aslctl ingest of the input into a new store (new data), then again (dedup)
# Usage: benches/limits.sh [SIZE_MIB] [WORK_DIR]     (defaults: 1024, ./bench-out)
set -euo pipefail
size_mib=${1:-1024}
work=${2:-bench-out}
cd "$(dirname "$0")/.."
cargo build --release --bin aslctl -q
bin=$PWD/target/release/aslctl
mkdir -p "$work"
cd "$work"
rm -rf store dd.out
[ -f "input-$size_mib" ] || head -c $((size_mib << 20)) /dev/urandom > "input-$size_mib"
in=input-$size_mib
cat "$in" > /dev/null # warm the page cache so every run reads from memory

secs() { local s e; s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
mbps() { echo "scale=0; $size_mib * 1.048576 / $1" | bc -l; }

t_dd=$(secs dd if="$in" of=dd.out bs=1M conv=fdatasync)
rm -f dd.out
t_b3=$(secs b3sum --num-threads 1 "$in")
t_new=$(secs "$bin" --store store ingest "$in")
t_dup=$(secs "$bin" --store store ingest "$in")
"$bin" --store store verify > /dev/null 2>&1

printf '%-44s %8s MB/s\n' "dd conv=fdatasync (disk limit)" "$(mbps "$t_dd")"
printf '%-44s %8s MB/s\n' "b3sum --num-threads 1 (hash limit)" "$(mbps "$t_b3")"
printf '%-44s %8s MB/s  = %.2f x dd\n' "aslctl ingest, new data" "$(mbps "$t_new")" "$(echo "$t_dd / $t_new" | bc -l)"
printf '%-44s %8s MB/s  = %.2f x b3sum\n' "aslctl ingest, already stored (dedup)" "$(mbps "$t_dup")" "$(echo "$t_b3 / $t_dup" | bc -l)"
rm -rf store
