#!/usr/bin/env python3
"""Compares two session.py recordings by shape: the keys of every object and the JSON
type of every value (lists by their first element; an empty list matches any list,
e.g. vmrun's greeting offers no capabilities where QEMU offers "oob"), for every reply
label and event both have, and the greeting. Error replies must be identical (class
and text). Prints each difference; exits 1 if there is one.

    shapes.py VMRUN.json QEMU.json
"""
import json
import sys


def shape(v):
    if isinstance(v, dict):
        return {k: shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if v is None:
        return "null"
    return "string"


def same(x, y):
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return not x or not y or same(x[0], y[0])
    return x == y


def main():
    a, b = (json.load(open(p)) for p in sys.argv[1:3])
    bad = 0
    pairs = [("greeting", a["greeting"], b["greeting"])]
    for label in sorted(set(a["replies"]) & set(b["replies"])):
        pairs.append((label, a["replies"][label], b["replies"][label]))
    ev_a = {e["event"]: e for e in a["events"]}
    ev_b = {e["event"]: e for e in b["events"]}
    for name in sorted(set(ev_a) & set(ev_b)):
        pairs.append(("event " + name, ev_a[name], ev_b[name]))
    for label, x, y in pairs:
        sx, sy = shape(x), shape(y)
        errors = isinstance(x, dict) and "error" in x and "error" in y
        if not same(sx, sy) or (errors and x != y):
            if errors:
                sx, sy = x, y
            bad += 1
            print(f"{label}:\n  vmrun {json.dumps(sx)}\n  qemu  {json.dumps(sy)}")
    print(f"{len(pairs)} compared, {bad} differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
