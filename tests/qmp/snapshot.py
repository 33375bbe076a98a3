#!/usr/bin/env python3
"""snapshot-save through the QEMU project's own client, qemu.qmp.

    snapshot.py SOCKET DIR OUT.json

Saves a snapshot of the running machine to DIR, staying paused (`paused: true`), checks
the status, saves again to DIR (resuming this time), asks for a snapshot in a place
that cannot be written, and writes the replies and events it saw to OUT.json.
"""
import asyncio
import json
import sys

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.qmp_client import ExecuteError


async def call(qmp, replies, label, cmd, args=None):
    try:
        ret = await qmp.execute(cmd, args) if args else await qmp.execute(cmd)
        replies[label] = {"return": ret}
    except ExecuteError as e:
        replies[label] = {"error": dict(e.received)["error"]}


async def main(sock, snap, out):
    qmp = QMPClient("vmrun-snapshot-test")
    listener = EventListener()
    qmp.register_listener(listener)
    await qmp.connect(sock)
    r = {}
    await call(qmp, r, "save-paused", "snapshot-save", {"path": snap, "paused": True})
    await call(qmp, r, "status-after", "query-status")
    await call(qmp, r, "cont", "cont")
    await call(qmp, r, "save-again", "snapshot-save", {"path": snap})
    await call(qmp, r, "status-running", "query-status")
    await call(qmp, r, "save-nowhere", "snapshot-save", {"path": "/proc/no/such/dir"})
    await call(qmp, r, "save-bad-type", "snapshot-save", {"path": 7})
    await call(qmp, r, "save-no-path", "snapshot-save")
    await asyncio.sleep(0.2)
    events = [e["event"] for e in listener.history]
    await qmp.disconnect()
    with open(out, "w") as f:
        json.dump({"replies": r, "events": events}, f, indent=1)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
