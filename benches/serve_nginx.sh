#!/bin/bash
# GETs from `aslctl serve` against nginx serving the same files from disk,
# both on loopback, with the same load generator (wrk): a 4 KiB and a
# 4 MiB artifact, each read by CONN connections for SECS seconds, the two
# servers alternating, ROUNDS times. Prints one line per run (requests/s,
# bytes/s) and the load average before it. nginx runs with as many workers
# as cores, sendfile, no access log; aslctl serve with --quiet and any
# SERVE-OPTIONs given (`--block-cache 0` reads every chunk from disk and
# proves it again on every GET).
# usage: benches/serve_nginx.sh ASLCTL [SECS] [ROUNDS] [CONN] [SERVE-OPTION...]
set -u
bin=$1
secs=${2:-15}
rounds=${3:-3}
conn=${4:-16}
shift $(($# < 4 ? $# : 4))
command -v nginx > /dev/null || { echo "nginx is not installed (apt-get install nginx-light)"; exit 2; }
command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/asl-serve-nginx.XXXXXX")
trap 'kill $pid 2>/dev/null; nginx -p "$work" -c nginx.conf -s stop 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/www" "$work/logs"
# nginx's workers run as another user when started as root.
chmod 755 "$work" "$work/www"
head -c 4096 /dev/urandom > "$work/www/f4k"
head -c $((4 << 20)) /dev/urandom > "$work/www/f4m"
chmod 644 "$work/www/"*
id4k=$("$bin" --store "$work/store" ingest "$work/www/f4k" | cut -d' ' -f1)
id4m=$("$bin" --store "$work/store" ingest "$work/www/f4m" | cut -d' ' -f1)
"$bin" --store "$work/store" serve --listen 127.0.0.1:0 --quiet "$@" >"$work/addr" 2>"$work/log" &
pid=$!
while ! grep -q listening "$work/addr" 2>/dev/null; do sleep 0.1; done
asl=$(sed 's/listening on //' "$work/addr")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        root $work/www;
    }
}
EOF
nginx -p "$work" -c nginx.conf || exit 2
ngx=http://127.0.0.1:$port
# Both answer with the same bytes, or the comparison means nothing.
cmp <(curl -s "$asl/v1/artifacts/$id4m") <(curl -s "$ngx/f4m") || { echo "the servers differ"; exit 1; }
run() {
    local out
    out=$(wrk -t2 -c"$conn" -d"${secs}s" "$2" 2>&1)
    printf '%-6s %-5s load %s  %s req/s  %s/s\n' "$1" "$3" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '/Transfer\/sec/ {print $2}' <<<"$out")"
}
echo "wrk -t2 -c$conn -d${secs}s; $(nproc) cores; aslctl serve $*"
for r in $(seq "$rounds"); do
    for size in 4k 4m; do
        id=id$size
        run asl "$asl/v1/artifacts/${!id}" "$size"
        run nginx "$ngx/f$size" "$size"
    done
done
