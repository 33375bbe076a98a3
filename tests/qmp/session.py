#!/usr/bin/env python3
"""One QMP session through the QEMU project's own client, qemu.qmp.

    session.py SOCKET OUT.json DIR [powerdown|quit|none]

Runs every command vmrun implements (and a few that must fail), pauses and resumes,
then ends the machine (power button, or quit) and waits for SHUTDOWN. Writes what it
saw to OUT.json: the greeting, each reply ({"return": ...} or {"error": ...}) by
label, and the events in order. The same script runs against vmrun and QEMU, so
their replies can be compared (shapes.py). DIR receives the screenshots.
"""
import asyncio
import json
import os
import sys

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.qmp_client import ExecuteError

QUERIES = [
    "query-version", "query-commands", "query-name", "query-status",
    "query-cpus-fast", "query-chardev", "query-target", "query-kvm", "query-uuid",
    "query-current-machine", "query-memory-size-summary",
]


async def call(qmp, replies, label, cmd, args=None):
    try:
        ret = await qmp.execute(cmd, args) if args else await qmp.execute(cmd)
        replies[label] = {"return": ret}
    except ExecuteError as e:
        replies[label] = {"error": dict(e.received)["error"]}
    return replies[label]


async def next_event(listener, names, timeout=60):
    while True:
        ev = await asyncio.wait_for(listener.get(), timeout)
        if ev["event"] in names:
            return ev


async def session(sock, out, shots, end):
    qmp = QMPClient("vmrun-test")
    listener = EventListener()
    qmp.register_listener(listener)
    await qmp.connect(sock)
    rec = {"greeting": qmp.greeting._asdict(), "replies": {}, "events": []}
    r = rec["replies"]
    for q in QUERIES:
        await call(qmp, r, q, q)
    await call(qmp, r, "unknown-command", "no-such-command")
    await call(qmp, r, "bad-type", "screendump", {"filename": 1})
    await call(qmp, r, "bad-argument", "stop", {"bogus": True})
    await call(qmp, r, "bad-enum", "screendump", {"filename": "x", "format": "gif"})
    await call(qmp, r, "screendump-ppm", "screendump",
               {"filename": os.path.join(shots, "shot.ppm")})
    await call(qmp, r, "screendump-png", "screendump",
               {"filename": os.path.join(shots, "shot.png"), "format": "png"})
    await call(qmp, r, "screendump-nodir", "screendump",
               {"filename": "/nonexistent-dir/x.ppm"})
    await call(qmp, r, "stop", "stop")
    await next_event(listener, ["STOP"])
    await call(qmp, r, "query-status-paused", "query-status")
    await call(qmp, r, "stop-again", "stop")
    await call(qmp, r, "cont", "cont")
    await next_event(listener, ["RESUME"])
    await call(qmp, r, "query-status-running", "query-status")
    if end == "powerdown":
        await call(qmp, r, "system_powerdown", "system_powerdown")
        await next_event(listener, ["POWERDOWN"])
        await next_event(listener, ["SHUTDOWN"])
    elif end == "quit":
        await call(qmp, r, "quit", "quit")
        await next_event(listener, ["SHUTDOWN"])
    rec["events"] = [dict(e) for e in listener.history]
    try:
        await qmp.disconnect()
    except Exception:  # the machine may already be gone
        pass
    with open(out, "w") as f:
        json.dump(rec, f, indent=1)


def main():
    sock, out, shots = sys.argv[1:4]
    end = sys.argv[4] if len(sys.argv) > 4 else "powerdown"
    asyncio.run(session(sock, out, shots, end))


if __name__ == "__main__":
    main()
