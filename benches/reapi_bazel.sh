#!/bin/bash
# A warm Bazel build from `aslctl serve`'s REAPI cache (grpc://) against the
# same build from a warm local disk cache (--disk_cache), both from a clean
# output base, alternating. The workspace has N genrules, each writing SIZE
# bytes of noise, so every build is N cache hits. Prints each run's wall
# time and the medians' ratio (remote / disk). Extra arguments go to both
# Bazel builds (`--jobs=32`, say).
# usage: benches/reapi_bazel.sh ASLCTL [N] [SIZE] [ROUNDS] [BAZEL-ARGS...]
set -eu
bin=$1
n=${2:-200}
size=${3:-100000}
rounds=${4:-5}
shift $(($# < 4 ? $# : 4))
extra=("$@")
work=$(mktemp -d "${TMPDIR:-/tmp}/asl-reapi-bazel.XXXXXX")
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
"$bin" --store "$work/store" serve --listen 127.0.0.1:0 --quiet >"$work/addr" 2>"$work/log" &
pid=$!
while ! grep -q listening "$work/addr" 2>/dev/null; do sleep 0.1; done
addr=$(sed 's|listening on http://||' "$work/addr")
mkdir "$work/ws"
touch "$work/ws/WORKSPACE"
for i in $(seq 1 "$n"); do
    printf 'genrule(name = "g%d", outs = ["g%d.bin"], cmd = "head -c %d /dev/urandom > $@")\n' "$i" "$i" "$size"
done >"$work/ws/BUILD"
build() { # output-base-name, cache flags...
    local root="$work/root-$1"
    shift
    rm -rf "$root"
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$work/ws" && bazel --batch --output_user_root="$root" build //:all "$@" >"$work/out" 2>&1) || {
        cat "$work/out" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    grep -o '[0-9]* \(remote\|disk\) cache hit' "$work/out" | head -1 >&2 || true
    echo "$t1 - $t0" | bc
}
remote=(--remote_cache="grpc://$addr" "${extra[@]}")
disk=(--disk_cache="$work/disk" "${extra[@]}")
# Fill both caches (the same actions, so the same keys).
build fill-remote "${remote[@]}" >/dev/null
build fill-disk "${disk[@]}" >/dev/null
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $n actions of $size bytes, $rounds rounds"
r=() d=()
for i in $(seq 1 "$rounds"); do
    r+=("$(build remote "${remote[@]}")")
    d+=("$(build disk "${disk[@]}")")
    echo "round $i: remote ${r[-1]} s, disk ${d[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mr=$(median "${r[@]}")
md=$(median "${d[@]}")
echo "median: remote $mr s, disk $md s, remote/disk $(echo "scale=2; $mr / $md" | bc)"
