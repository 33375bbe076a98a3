#!/usr/bin/env python3
"""Snapshots: save time and size, restore time, lab checkpoints; each beside a cold boot
to the same point, in the same run.

  (a) save: a microvm probe that reported and idles (`idle=1`, ticking), 128 MiB and
      1 GiB of RAM: how long `vmrun ctl NAME snapshot DIR` kept it paused (its own
      figure) and the whole command's wall time; the snapshot's size on disk (memory.bin
      is sparse) and its apparent size.
  (b) restore: `vmrun run --restore DIR` start -> the first KVM_RUN of the boot vCPU
      (`VMRUN_TIMING=1`); the same for a cold boot, and the cold boot's start -> the
      guest reaching the snapshot's point (`PROBE idle ready` on COM1).
  (c) labs of 3 and 8 such nodes on one LAN: `vmrun lab restore` wall time against a
      cold `vmrun lab up` to every node ready.

Medians of --runs. Usage: benches/snapshot.py [--runs 5]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMRUN = os.path.join(ROOT, "target/release/vmrun")
OPTS = "memtest=0 timer=0 rtc=0 smp=0 fwcfg=0 blk=0 vga=0 pci=0 net=0 idle=1"
FIRST_RUN = re.compile(r"first KVM_RUN ([\d.]+) ms")
SAVED = re.compile(r"memory_bytes=(\d+) paused_ms=(\d+)")


def machine(d, name, mem):
    path = os.path.join(d, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f'[machine]\nname = "{name}"\nboard = "microvm"\nmemory = "{mem}"\n'
                f'[boot]\ncmdline = "{OPTS}"\n')
    return path


def env(d):
    e = dict(os.environ, XDG_RUNTIME_DIR=os.path.join(d, "rt"), VMRUN_TIMING="1")
    os.makedirs(e["XDG_RUNTIME_DIR"], exist_ok=True)
    return e


def boot_until(args, d, pattern):
    """Starts vmrun, returns (process, seconds to the first stdout line with pattern,
    the first-KVM_RUN figure from stderr)."""
    t0 = time.monotonic()
    p = subprocess.Popen([VMRUN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env(d))
    for line in p.stdout:
        if pattern in line:
            return p, time.monotonic() - t0
    raise SystemExit(f"vmrun {args}: no {pattern!r}: {p.stderr.read()}")


def quit(p, name, d):
    subprocess.run([VMRUN, "ctl", name, "quit"], env=env(d), capture_output=True)
    _, err = p.communicate(timeout=30)
    m = FIRST_RUN.search(err)
    return float(m.group(1)) if m else None


def du(path):
    alloc = apparent = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            alloc += st.st_blocks * 512
            apparent += st.st_size
    return alloc, apparent


def save_and_restore(d, mem, runs):
    name = f"s{mem.lower()}"
    m = machine(d, name, mem)
    paused, wall, cold_first, cold_ready, rest_first, rest_ready = [], [], [], [], [], []
    snap = os.path.join(d, f"snap-{name}")
    for _ in range(runs):
        p, ready = boot_until(["run", m, "--timeout", "60s"], d, "PROBE tick n=1 ")
        cold_ready.append(ready * 1000)
        shutil.rmtree(snap, ignore_errors=True)
        t0 = time.monotonic()
        out = subprocess.run([VMRUN, "ctl", name, "snapshot", snap], env=env(d),
                             capture_output=True, text=True, check=True).stdout
        wall.append((time.monotonic() - t0) * 1000)
        s = SAVED.search(out)
        paused.append(int(s.group(2)))
        cold_first.append(quit(p, name, d))
        p, ready = boot_until(["run", "--restore", snap, "--timeout", "60s"], d,
                              "PROBE tick")
        rest_ready.append(ready * 1000)
        rest_first.append(quit(p, name, d))
    alloc, apparent = du(snap)
    med = statistics.median
    return {
        "mem": mem, "paused": med(paused), "wall": med(wall),
        "alloc": alloc, "apparent": apparent,
        "cold_first": med(cold_first), "cold_ready": med(cold_ready),
        "rest_first": med(rest_first), "rest_ready": med(rest_ready),
    }


def lab(d, *args):
    p = subprocess.run([VMRUN, "lab", *args], cwd=d, capture_output=True, text=True,
                       env=env(d))
    if p.returncode != 0:
        raise SystemExit(f"vmrun lab {' '.join(args)}: {p.stderr}")
    return p


def lab_times(d, n, runs):
    ld = os.path.join(d, f"lab{n}")
    os.makedirs(ld, exist_ok=True)
    with open(os.path.join(ld, "node.toml"), "w") as f:
        f.write(f'[machine]\nboard = "microvm"\nmemory = "64MiB"\n[boot]\ncmdline = "{OPTS}"\n'
                '[[device]]\nid = "eth0"\nkind = "nic"\n')
    text = '[lab]\nname = "snapbench"\n'
    names = [f"n{i}" for i in range(n)]
    for x in names:
        text += f'[node.{x}]\nmachine = "node.toml"\nready = {{ serial = "PROBE idle ready" }}\n'
    text += "[network.lan]\nendpoints = [" + ", ".join(f'"{x}:eth0"' for x in names) + "]\n"
    with open(os.path.join(ld, "lab.toml"), "w") as f:
        f.write(text)
    ups, restores = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        lab(ld, "up", "lab.toml")
        ups.append((time.monotonic() - t0) * 1000)
        lab(ld, "snapshot", "lab.toml", "cp")
        t0 = time.monotonic()
        lab(ld, "restore", "lab.toml", "cp")
        restores.append((time.monotonic() - t0) * 1000)
        lab(ld, "down", "lab.toml")
    return statistics.median(ups), statistics.median(restores)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    if not os.path.exists(VMRUN):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    d = tempfile.mkdtemp(prefix="vmrun-snapbench-")
    try:
        rows = [save_and_restore(d, m, a.runs) for m in ("128MiB", "1GiB")]
        print("| guest | paused for save | `ctl snapshot` wall | on disk (apparent) |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['mem']} | {r['paused']:.0f} ms | {r['wall']:.0f} ms | "
                  f"{r['alloc'] / 2**20:.2f} MiB ({r['apparent'] / 2**20:.0f} MiB) |")
        print()
        print("| guest | restore: start → first KVM_RUN | cold boot: start → first KVM_RUN "
              "| restore: start → next tick | cold boot: start → first tick |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['mem']} | {r['rest_first']:.2f} ms | {r['cold_first']:.2f} ms | "
                  f"{r['rest_ready']:.0f} ms | {r['cold_ready']:.0f} ms |")
        print()
        print("| lab | `lab restore` | cold `lab up` (all ready) |")
        print("|---|---|---|")
        for n in (3, 8):
            up, rest = lab_times(d, n, max(1, a.runs // 2))
            print(f"| {n} nodes | {rest:.0f} ms | {up:.0f} ms |")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
