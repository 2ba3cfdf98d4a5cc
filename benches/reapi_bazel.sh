#!/bin/bash
# A warm Bazel build from `aslctl serve`'s REAPI cache (grpc://) against the
# same build from a warm local disk cache (--disk_cache), both from a clean
# output base, alternating. The workspace has N genrules, each writing SIZE
# bytes of noise, so every build is N cache hits. Prints each run's wall
# time and the medians' ratio (remote / disk). Extra arguments go to both
# Bazel builds (`--jobs=32`, say).
#
# By default every build is `bazel --batch` in a fresh output base, so each
# one also pays a cold JVM (its gRPC client is interpreted, not yet
# compiled). With WARM=1 each cache keeps one Bazel server for the whole
# run, and each timed build follows `bazel clean`, which drops the outputs
# and Bazel's local action cache but keeps the JIT-compiled server: the
# way a developer or a CI worker with a persistent Bazel server rebuilds.
# usage: [WARM=1] benches/reapi_bazel.sh ASLCTL [N] [SIZE] [ROUNDS] [BAZEL-ARGS...]
set -eu
bin=$1
n=${2:-200}
size=${3:-100000}
rounds=${4:-5}
shift $(($# < 4 ? $# : 4))
extra=("$@")
work=$(mktemp -d "${TMPDIR:-/tmp}/asl-reapi-bazel.XXXXXX")
warm=${WARM:-0}
shutdown() { # Bazel servers started with WARM=1
    for root in "$work"/root-*; do
        [ -d "$root" ] && (cd "$work/ws" && bazel --output_user_root="$root" shutdown) >/dev/null 2>&1
    done
    return 0
}
trap 'shutdown; kill $pid 2>/dev/null; rm -rf "$work"' EXIT
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
    local startup=(--batch)
    if [ "$warm" = 1 ]; then
        startup=()
        (cd "$work/ws" && bazel --output_user_root="$root" clean >/dev/null 2>&1)
    else
        rm -rf "$root"
    fi
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$work/ws" && bazel "${startup[@]}" --output_user_root="$root" build //:all "$@" >"$work/out" 2>&1) || {
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
build remote "${remote[@]}" >/dev/null
build disk "${disk[@]}" >/dev/null
if [ "$warm" = 1 ]; then # a first round each, so both servers' JITs have run the cache paths
    build remote "${remote[@]}" >/dev/null
    build disk "${disk[@]}" >/dev/null
fi
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $n actions of $size bytes, $rounds rounds, WARM=$warm"
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
