#!/usr/bin/env python3
"""Checks aslctl's --json output against the JSON Schemas in spec/cli, with
the `jsonschema` package (an implementation independent of ours).

usage: cli_json.py SPEC_DIR SCHEMA          (the output on stdin)
       cli_json.py SPEC_DIR --batch FILE    (FILE: [{"schema", "output", "what"}...])

Every line of an output is one JSON value checked against the schema; a
schema whose "x-lines" is "one" wants exactly one line. Prints each failure
and exits 1 if there was one.
"""
import json
import pathlib
import sys

import jsonschema
from referencing import Registry, Resource


def load(spec):
    schemas = {}
    for p in sorted(pathlib.Path(spec).glob("*.schema.json")):
        doc = json.loads(p.read_text())
        jsonschema.Draft202012Validator.check_schema(doc)
        schemas[p.name.removesuffix(".schema.json")] = doc
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in schemas.values())
    return schemas, registry


def check(schemas, registry, name, output, what):
    if name not in schemas:
        return [f"{what}: no schema {name}.schema.json"]
    schema = schemas[name]
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    lines = output.splitlines()
    problems = []
    if schema.get("x-lines") == "one" and len(lines) != 1:
        problems.append(f"{what}: {name} prints one line, got {len(lines)}: {output[:300]!r}")
    for n, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{what}: line {n} is not JSON ({e}): {line[:300]!r}")
            continue
        for err in validator.iter_errors(value):
            where = "/".join(str(p) for p in err.absolute_path) or "(top)"
            problems.append(f"{what}: line {n} at {where}: {err.message[:300]}")
    return problems


def main():
    spec = sys.argv[1]
    schemas, registry = load(spec)
    if sys.argv[2] == "--batch":
        cases = json.loads(pathlib.Path(sys.argv[3]).read_text())
    else:
        cases = [{"schema": sys.argv[2], "output": sys.stdin.read(), "what": sys.argv[2]}]
    problems = []
    for c in cases:
        problems += check(schemas, registry, c["schema"], c["output"], c.get("what", c["schema"]))
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
