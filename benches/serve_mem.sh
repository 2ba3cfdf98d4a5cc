#!/bin/bash
# Memory of `aslctl serve` under concurrent uploads: starts a server on a
# fresh store, sends N uploads of SIZE bytes at once (each body distinct),
# ROUNDS times, then idles. Prints the server's RSS at start, its peak
# (VmHWM) and its RSS after IDLE seconds without requests, and how the
# uploads were answered. Extra arguments go to `aslctl serve`.
# usage: benches/serve_mem.sh ASLCTL [N] [SIZE] [ROUNDS] [IDLE] [-- SERVE-ARGS...]
set -u
bin=$1
n=${2:-1000}
size=${3:-400000}
rounds=${4:-1}
idle=${5:-10}
shift $(($# < 5 ? $# : 5))
[ "${1:-}" = "--" ] && shift
work=$(mktemp -d "${TMPDIR:-/tmp}/asl-serve-mem.XXXXXX")
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
"$bin" --store "$work/store" serve --listen 127.0.0.1:0 --quiet "$@" >"$work/addr" 2>"$work/log" &
pid=$!
while ! grep -q listening "$work/addr" 2>/dev/null; do sleep 0.1; done
url=$(sed 's/listening on //' "$work/addr")
rss() { awk -v k="$1:" '$1 == k {print $2}' /proc/$pid/status; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg); $n uploads of $size bytes at once, $rounds round(s)"
echo "start: $(rss VmRSS) KiB RSS"
python3 - "$url" "$n" "$size" "$rounds" <<'PY'
import http.client, os, sys, threading, collections, time
url, n, size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host = url.split("//")[1]
codes = collections.Counter()
lock = threading.Lock()
def one(i, r):
    body = os.urandom(size)
    try:
        c = http.client.HTTPConnection(host, timeout=600)
        c.request("PUT", "/v1/artifacts", body=body)
        code = c.getresponse().status
    except Exception as e:
        code = type(e).__name__
    with lock:
        codes[code] += 1
for r in range(rounds):
    t0 = time.time()
    ts = [threading.Thread(target=one, args=(i, r)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(f"round {r + 1}: {time.time() - t0:.1f} s, answers {dict(codes)}", flush=True)
    codes.clear()
PY
echo "peak: $(rss VmHWM) KiB RSS"
echo "after the load: $(rss VmRSS) KiB RSS"
sleep "$idle"
echo "after $idle s idle: $(rss VmRSS) KiB RSS"
