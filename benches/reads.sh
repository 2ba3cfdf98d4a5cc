#!/usr/bin/env bash
# Large verified reads against the machine's limits, in one run: `aslctl cat`
# of a 1 GiB random artifact (stored in content-defined chunks, the default,
# and in fixed chunks) to /dev/null, alternated round by round with
# `b3sum` on all threads and `cat` of the same bytes from the page cache.
# Prints each command's median wall time and ASL's ratios to both.
# Usage: benches/reads.sh [SIZE_MIB] [ROUNDS] [WORK_DIR]   (1024, 9, ./bench-reads)
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-9}
work=${3:-bench-reads}
. "$(dirname "$0")/lib.sh"
asl_setup
in=$work/input
head -c $((size_mib << 20)) /dev/urandom > "$in"
"$asl" --store "$work/cdc" -q ingest "$in" > /dev/null
"$asl" --store "$work/fixed" -q ingest --fixed-chunks "$in" > /dev/null
id=$(b3sum --no-names "$in")
cat "$in" > /dev/null

secs() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
declare -A times
for _ in $(seq "$rounds"); do
    times[cdc]+="$(secs "$asl" --store "$work/cdc" cat "$id") "
    times[b3sum]+="$(secs b3sum "$in") "
    times[fixed]+="$(secs "$asl" --store "$work/fixed" cat "$id") "
    times[cat]+="$(secs cat "$in") "
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A med
for k in cdc fixed b3sum cat; do med[$k]=$(echo "${times[$k]}" | median); done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $rounds alternated rounds, median seconds"
printf '%-46s %6.3f\n' "b3sum (all threads) of the file" "${med[b3sum]}" "cat of the file > /dev/null" "${med[cat]}"
for k in cdc fixed; do
    printf '%-46s %6.3f  = %.2f x b3sum, %.2f x cat\n' "aslctl cat, $k chunks > /dev/null" "${med[$k]}" \
        "$(echo "${med[b3sum]} / ${med[$k]}" | bc -l)" "$(echo "${med[cat]} / ${med[$k]}" | bc -l)"
done
rm -rf "$work"
