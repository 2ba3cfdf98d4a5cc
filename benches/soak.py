#!/usr/bin/env python3
"""A soak of `aslctl serve`: mixed load for a while, with the build caches
under --max-size so eviction and online GC run throughout.

usage: benches/soak.py ASLCTL [MINUTES] [WORKERS] [SERVE-OPTION...]

Starts a server on a fresh store (--max-size 64M --segment-size 4M, and any
SERVE-OPTIONs given), then
WORKERS threads (one keep-alive connection each, and one gRPC channel)
pick, over and over: a /v1 upload, a whole read and a range read of an
earlier upload (bytes checked against their SHA-256), a `missing` batch, a
CAS put and get, an AC put and get, a ccache put and get, and a REAPI
round (BatchUpdateBlobs, FindMissingBlobs, BatchReadBlobs,
UpdateActionResult naming the blob, GetActionResult); past KEEP live /v1
uploads the oldest is deleted, so the store's size levels off; and every
minute a GC through the API. A 5xx, a wrong byte or an unexpected status
is an error; a cache miss after eviction is not. Every 10 s it samples the
server's RSS and the bytes of its segment files. Prints per-route counts
and p50/p99 latency, the errors, RSS and its anonymous part (the heap; the
rest is mapped segment pages) after warm-up (once the block cache and the
index memtable are 90 % full: min, max, last, and five-minute means), the heap
by its parts every five minutes as the server's /metrics counts them
(block cache, index memtable, query index cache and memtables, read
buffers; the allocator's in-use and free-but-held bytes) and the heap in use less
those parts (what is bounded by no setting: it should stay flat), the largest segments
total (less the live uploads; then also less the garbage awaiting GC, by
/v1/stat) beside the limit plus one segment, and the largest size of each of
the store's directories (segments, index, log, derived).

The REAPI calls need Python's grpcio (`pip install grpcio`); without it
the soak runs without them and says so.
"""
import hashlib
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

bin_, minutes, workers = sys.argv[1], float(sys.argv[2] if len(sys.argv) > 2 else 30), int(
    sys.argv[3] if len(sys.argv) > 3 else 4)
MAX, SEGMENT = 64 << 20, 4 << 20
KEEP = 2000  # live /v1 uploads, about 64 MiB
try:
    import grpc
except ImportError:
    grpc = None
work = tempfile.mkdtemp(prefix="asl-soak.")
store = os.path.join(work, "store")
srv = subprocess.Popen([bin_, "--store", store, "serve", "--listen", "127.0.0.1:0", "--quiet",
                        "--max-size", "64M", "--segment-size", "4M", *sys.argv[4:]],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
host = srv.stdout.readline().strip().removeprefix("listening on http://")

lock = threading.Lock()
lat = {}       # route -> [seconds]
errors = []    # (route, what)
uploads = []   # (id, sha256, len)
gone = set()   # ids of uploads deleted (a read racing the deletion may miss)
stop = time.time() + minutes * 60


def note(route, t, ok=True, what=""):
    with lock:
        lat.setdefault(route, []).append(t)
        if not ok:
            errors.append((route, what))


def call(conn, method, path, body=None, headers=None):
    t = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r.status, data, time.perf_counter() - t


# Protocol buffers by hand (the REAPI messages used here are small), so
# that the soak needs no generated code.
def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    return varint(num << 3 | 2) + varint(len(value)) + value


def unpb(b):
    out, i = {}, 0

    def rd(i):
        n = shift = 0
        while True:
            x = b[i]
            i += 1
            n |= (x & 0x7F) << shift
            shift += 7
            if x < 0x80:
                return n, i

    while i < len(b):
        key, i = rd(i)
        if key & 7 == 0:
            v, i = rd(i)
        else:
            n, i = rd(i)
            v, i = b[i:i + n], i + n
        out.setdefault(key >> 3, []).append(v)
    return out


def digest(b):
    return pb(1, hashlib.sha256(b).hexdigest().encode()) + pb(2, len(b))


CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
AC = "/build.bazel.remote.execution.v2.ActionCache/"


def reapi(ch, rng):
    """One round; returns (method, seconds, ok, what) for each call."""
    blob = rng.randbytes(rng.randint(1 << 10, 256 << 10))
    d = digest(blob)
    rounds = []

    def rpc(method, req, check):
        t = time.perf_counter()
        try:
            resp = ch.unary_unary(method)(req, timeout=120)
            rounds.append((method.rsplit("/", 1)[1], time.perf_counter() - t, check(unpb(resp)), ""))
            return unpb(resp)
        except grpc.RpcError as e:
            rounds.append((method.rsplit("/", 1)[1], time.perf_counter() - t, False, str(e.code())))
            return None

    ok_status = lambda r: all(2 not in unpb(x) or unpb(unpb(x)[2][0]).get(1, [0])[0] == 0 for x in r.get(1, []))
    rpc(CAS + "BatchUpdateBlobs", pb(2, pb(1, d) + pb(2, blob)), ok_status)
    rpc(CAS + "FindMissingBlobs", pb(2, d), lambda r: 2 not in r)
    # Evicted since is a miss (NOT_FOUND, code 5), not an error.
    rpc(CAS + "BatchReadBlobs", pb(2, d), lambda r: all(
        unpb(x).get(2, [b""])[0] == blob or unpb(unpb(x)[3][0]).get(1, [0])[0] == 5 for x in r.get(1, [])))
    action = digest(rng.randbytes(16))
    result = pb(2, pb(1, b"out/blob") + pb(2, d))
    rpc(AC + "UpdateActionResult", pb(2, action) + pb(3, result), lambda r: True)
    t = time.perf_counter()
    try:
        r = unpb(ch.unary_unary(AC + "GetActionResult")(pb(2, action), timeout=120))
        rounds.append(("GetActionResult", time.perf_counter() - t, unpb(r[2][0]).get(2) == [d], ""))
    except grpc.RpcError as e:
        # Evicted since: NOT_FOUND.
        rounds.append(("GetActionResult", time.perf_counter() - t, e.code() == grpc.StatusCode.NOT_FOUND,
                       str(e.code())))
    return rounds


def worker(seed):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(host, timeout=120)
    ch = grpc.insecure_channel(host) if grpc else None
    while time.time() < stop:
        op = rng.choices(["put", "get", "range", "missing", "cas", "ac", "ccache", "reapi"],
                         [2, 4, 2, 1, 3, 2, 2, 2 if ch else 0])[0]
        try:
            if op == "reapi":
                for method, t, ok, what in reapi(ch, rng):
                    note(f"gRPC {method}", t, ok, what)
            elif op == "put":
                b = rng.randbytes(rng.randint(1 << 10, 64 << 10))
                s, data, t = call(conn, "PUT", "/v1/artifacts", b)
                note("PUT /v1/artifacts", t, s in (200, 201), s)
                old = None
                if s in (200, 201):
                    with lock:
                        uploads.append((json.loads(data)["id"], hashlib.sha256(b).digest(), len(b)))
                        if len(uploads) > KEEP:
                            old = uploads.pop(0)
                            gone.add(old[0])
                if old:
                    s, _, t = call(conn, "DELETE", f"/v1/artifacts/{old[0]}")
                    note("DELETE /v1/artifacts/{id}", t, s in (200, 404), s)
            elif op in ("get", "range", "missing") and uploads:
                with lock:
                    picks = [rng.choice(uploads) for _ in range(10)]
                i, sha, n = picks[0]
                if op == "get":
                    s, data, t = call(conn, "GET", f"/v1/artifacts/{i}")
                    note("GET /v1/artifacts/{id}", t,
                         (s == 200 and hashlib.sha256(data).digest() == sha) or (s == 404 and i in gone), s)
                elif op == "range":
                    a = rng.randrange(n)
                    s, data, t = call(conn, "GET", f"/v1/artifacts/{i}", headers={"Range": f"bytes={a}-{a + 99}"})
                    note("GET /v1/artifacts/{id} range", t,
                         (s == 206 and len(data) == min(100, n - a)) or (s == 404 and i in gone), s)
                else:
                    body = json.dumps({"ids": [p[0] for p in picks]})
                    s, data, t = call(conn, "POST", "/v1/artifacts:missing", body,
                                      {"content-type": "application/json"})
                    note("POST /v1/artifacts:missing", t, s == 200 and set(json.loads(data)["missing"]) <= gone, s)
            elif op == "cas":
                b = rng.randbytes(rng.randint(4 << 10, 256 << 10))
                k = hashlib.sha256(b).hexdigest()
                s, _, t = call(conn, "PUT", f"/cas/{k}", b)
                note("PUT /cas/{key}", t, s in (200, 201), s)
                s, data, t = call(conn, "GET", f"/cas/{k}")
                note("GET /cas/{key}", t, s == 404 or (s == 200 and data == b), s)
            elif op in ("ac", "ccache"):
                b = rng.randbytes(rng.randint(1 << 10, 128 << 10))
                if op == "ac":
                    path = "/ac/" + hashlib.sha256(rng.randbytes(8)).hexdigest()
                else:
                    path = "/ccache/" + "".join(rng.choices("0123456789abcdefghijklmnopqrstuv", k=32))
                s, _, t = call(conn, "PUT", path, b)
                note(f"PUT /{op}", t, s in (200, 201), s)
                s, data, t = call(conn, "GET", path)
                note(f"GET /{op}", t, s == 404 or (s == 200 and data == b), s)
        except Exception as e:  # a broken connection is an error too
            note(op, 0, False, repr(e))
            conn = http.client.HTTPConnection(host, timeout=120)


def gc():
    conn = http.client.HTTPConnection(host, timeout=600)
    while time.time() < stop:
        time.sleep(60)
        s, _, t = call(conn, "POST", "/v1/gc", "{}", {"content-type": "application/json"})
        note("POST /v1/gc", t, s == 200, s)


def rss():
    """Resident memory, and of it the anonymous part (the heap): the rest
    is file pages, the segments the server maps and reads."""
    with open(f"/proc/{srv.pid}/status") as f:
        text = f.read()
    kib = lambda k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) << 10
    return kib("VmRSS"), kib("RssAnon")


def memory():
    """The server's own account of its heap (/metrics): each bounded part
    (asl_memory_bytes{part=...}) and glibc's in_use and free (asl_heap_bytes)."""
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.request("GET", "/metrics")
    parts = {}
    for line in conn.getresponse().read().decode().splitlines():
        m = re.match(r'asl_(memory|heap|memory_bound)_bytes\{part="(\w+)"\} (\d+)', line)
        if m:
            parts[m.group(2) + ("_bound" if m.group(1) == "memory_bound" else "")] = int(m.group(3))
    conn.close()
    return parts


def du(sub):
    total = 0
    for root, _, files in os.walk(os.path.join(store, sub)):
        for f in files:
            # GC may delete a segment between the listing and its size.
            try:
                total += os.path.getsize(os.path.join(root, f))
            except FileNotFoundError:
                pass
    return total


def garbage():
    """Logical bytes nothing retains, awaiting GC (the server's /v1/stat)."""
    conn = http.client.HTTPConnection(host, timeout=60)
    conn.request("GET", "/v1/stat")
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return json.loads(body)["garbage_bytes"] if r.status == 200 else 0


threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)] + [threading.Thread(target=gc)]
for t in threads:
    t.start()
start = time.time()
samples = []
while time.time() < stop:
    time.sleep(10)
    with lock:
        uploaded = sum(n for (_, _, n) in uploads)
    total, anon = rss()
    dirs = {d: du(d) for d in ("segments", "index", "log", "derived")}
    held = dirs["segments"] - uploaded
    samples.append((time.time() - start, total, held, anon, memory(), dirs, held - garbage()))
for t in threads:
    t.join()

print(f"load at the end: {os.getloadavg()[0]:.2f}; {minutes:g} min, {workers} workers")
print(f"{'route':36} {'calls':>8} {'p50 ms':>8} {'p99 ms':>8}")
for route in sorted(lat):
    xs = sorted(lat[route])
    print(f"{route:36} {len(xs):8} {xs[len(xs) // 2] * 1e3:8.2f} {xs[int(len(xs) * 0.99)] * 1e3:8.2f}")
print(f"errors: {len(errors)}", errors[:10])
CACHES = ("block_cache", "index_memtable", "query_cache", "query_memtables", "read_buffers")
# Warm-up ends when the two largest bounded parts, the block cache and the
# index memtable, are both 90 % full: before that, growth is caches filling
# as they should.
FILLING = ("block_cache", "index_memtable")
full = [x[0] for x in samples if all(x[4].get(p, 0) >= 0.9 * x[4].get(p + "_bound", 1 << 62) for p in FILLING)]
warmup = full[0] if full else 120
print(f"warm-up: {warmup / 60:.1f} min " + ("(block cache and index memtable 90 % full)" if full
                                            else "(2 min; the caches never filled)"))
for name, value in (("RSS", lambda x: x[1]), ("of which anonymous", lambda x: x[3]),
                    ("heap in use less the bounded parts", lambda x: x[4].get("in_use", 0) - sum(
                        x[4].get(p, 0) for p in CACHES))):
    warm = [value(x) for x in samples if x[0] >= warmup] or [value(x) for x in samples]
    print(f"{name} after warm-up: min {min(warm) >> 20} MiB, max {max(warm) >> 20} MiB, last {warm[-1] >> 20} MiB "
          f"(max/min {max(warm) / max(min(warm), 1):.2f})")
# Single samples swing with the uploads in flight (each holds its windows)
# and the mapped pages between upkeep rounds; five-minute means show a drift.
windows = {}
for x in samples:
    if x[0] >= warmup:
        windows.setdefault(int((x[0] - warmup) // 300), []).append(x)
means = [(sum(x[1] for x in w) / len(w), sum(x[3] for x in w) / len(w)) for _, w in sorted(windows.items())
         if len(w) >= 20]
if means:
    for i, name in ((0, "RSS"), (1, "anonymous")):
        ms = [m[i] for m in means]
        print(f"{name}, five-minute means after warm-up (MiB): " + " ".join(f"{m / 2**20:.0f}" for m in ms)
              + f" (max/min {max(ms) / min(ms):.2f})")
print("RSS / anonymous by minute (MiB): " + " ".join(
    f"{x[1] >> 20}/{x[3] >> 20}" for x in samples if int(x[0]) % 60 < 10))
parts = sorted({k for x in samples for k in x[4] if not k.endswith("_bound")})
print("the heap by its parts, MiB, every 5 minutes (in_use and free: glibc's account):")
print(f"{'min':>5} {'RSS':>6} {'anon':>6} " + " ".join(f"{p[:15]:>15}" for p in parts))
for x in samples:
    if int(x[0]) % 300 < 10 or x is samples[0] or x is samples[-1]:
        print(f"{x[0] / 60:5.1f} {x[1] / 2**20:6.1f} {x[3] / 2**20:6.1f} "
              + " ".join(f"{x[4].get(p, 0) / 2**20:15.1f}" for p in parts))
print("REAPI calls: " + ("yes" if grpc else "no (pip install grpcio)"))
print(f"segments less the live /v1 uploads (never evicted; {sum(n for (_, _, n) in uploads) >> 20} MiB at the end): "
      f"largest {max(x[2] for x in samples) / (1 << 20):.1f} MiB, and less the garbage awaiting GC "
      f"{max(x[6] for x in samples) / (1 << 20):.1f} MiB; limit + one segment {(MAX + SEGMENT) >> 20} MiB")
print("the store's directories, MiB, largest (last): " + ", ".join(
    f"{d} {max(x[5][d] for x in samples) / 2**20:.1f} ({samples[-1][5][d] / 2**20:.1f})" for d in samples[-1][5]))
m = http.client.HTTPConnection(host)
m.request("GET", "/metrics")
for line in m.getresponse().read().decode().splitlines():
    if line.startswith(("asl_cache_evictions_total", "asl_cache_size_bytes", "asl_gc_runs_total")):
        print(line)
srv.terminate()
srv.wait()
subprocess.run(["rm", "-rf", work])
