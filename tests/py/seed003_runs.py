"""Writes run artifacts the way seed 003's service does, with its own
hashing helpers (sha256_json: sorted keys, compact separators, UTF-8) and
its file layout (<dir>/<YYYY-MM-DD>/<run_id>.json, json.dumps(indent=2,
ensure_ascii=False, default=str) of the model's dump, unset fields null).

usage: seed003_runs.py DIR  -> prints {"runs": [{run_id, path, status}],
"tampered": path, "full_request": path}
"""
import hashlib
import json
import os
import sys
from datetime import datetime, timezone, timedelta


def sha256_text(s):
    h = hashlib.sha256()
    h.update(s.encode("utf-8"))
    return h.hexdigest()


def sha256_json(obj):
    return sha256_text(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def artifact(run_id, when, mode, tool_id, status, feasibility, decision, outputs, req, toolpaths=None):
    hashes = {"feasibility_sha256": sha256_json(feasibility), "toolpaths_sha256": None,
              "gcode_sha256": None, "opplan_sha256": None}
    if toolpaths is not None:
        hashes["toolpaths_sha256"] = sha256_json(toolpaths)
    if outputs.get("gcode_text") is not None:
        hashes["gcode_sha256"] = sha256_text(outputs["gcode_text"])
    if outputs.get("opplan_json") is not None:
        hashes["opplan_sha256"] = sha256_json(outputs["opplan_json"])
    full_outputs = {"gcode_text": None, "opplan_json": None, "gcode_path": None,
                    "opplan_path": None, "preview_svg_path": None}
    full_outputs.update(outputs)
    return {
        "run_id": run_id, "created_at_utc": when, "mode": mode, "tool_id": tool_id,
        "status": status, "request_summary": req, "feasibility": feasibility,
        "decision": decision, "hashes": hashes, "outputs": full_outputs,
        "meta": {"policy": {"block_on_red": True, "treat_unknown_as_red": True}},
    }


def write(root, a):
    day = a["created_at_utc"].date().isoformat()
    d = os.path.join(root, day)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, a["run_id"] + ".json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(a, indent=2, ensure_ascii=False, default=str))
    return path


root = sys.argv[1]
t0 = datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)
feas_red = {"risk": "RED", "blade_rpm": 3600, "kerf_mm": 3.2, "ratio": 0.1, "tiny": 1e-05,
            "huge": 1e16, "note": "bois dur — éviter", "checks": [{"name": "feed", "ok": False}]}
feas_green = {"risk": "GREEN", "score": 0.92, "depth_mm": 12.0, "passes": 3, "neg": -7,
              "nested": {"b": [1, 2.5, None, True], "a": "\u0001ctl\"q\\"}}
runs = [
    artifact("a1b2c3", t0, "saw", "saw:blade-10in", "BLOCKED", feas_red,
             {"risk_level": "RED", "score": 0.1, "block_reason": "rpm too high", "warnings": ["rpm"], "details": {}},
             {}, {"tool_id": "saw:blade-10in", "rpm": 3600}),
    artifact("d4e5f6", t0 + timedelta(hours=2), "router", "router:vbit", "OK", feas_green,
             {"risk_level": "UNKNOWN", "score": None, "block_reason": None,
              "warnings": ["No decision computed for this mode."], "details": {}},
             {"gcode_text": "G21\nG90\nG1 X10 Y10 F800\n", "opplan_json": {"ops": [{"op": "pocket", "depth": 12.0}]}},
             {"tool_id": "router:vbit", "points": list(range(10))},
             toolpaths={"gcode": "G21\nG90\nG1 X10 Y10 F800\n", "moves": 3}),
    artifact("0a0b0c", t0 + timedelta(days=1), "router", "router:vbit", "ERROR", feas_green,
             {"risk_level": "UNKNOWN", "score": None, "block_reason": None, "warnings": [], "details": {}},
             {}, {"tool_id": "router:vbit"}),
]
paths = [write(os.path.join(root, "runs"), a) for a in runs]

# Tampered after hashing: the feasibility no longer matches its hash.
bad = artifact("bad001", t0, "saw", "saw:blade-10in", "OK", dict(feas_red), runs[0]["decision"], {}, {})
bad["feasibility"]["blade_rpm"] = 1200
tampered = write(os.path.join(root, "tampered"), bad)

# A writer that kept the whole request: the summary rule is applied on request.
full = artifact("full01", t0, "saw", "saw:blade-10in", "OK", feas_green, runs[1]["decision"], {},
                {"tool_id": "saw:x", "feasibility": {"client": "claims"}, "points": list(range(500)),
                 "grid": {str(i): i for i in range(300)}, "small": [1, 2]})
full_request = write(os.path.join(root, "full"), full)

print(json.dumps({"runs": [{"run_id": a["run_id"], "path": p, "status": a["status"]} for a, p in zip(runs, paths)],
                  "tampered": tampered, "full_request": full_request}))
