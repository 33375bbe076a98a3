#!/usr/bin/env python3
"""Labs: how long `vmrun lab up` takes to all-ready, what a node costs, and how many
frames a cable and a LAN carry, side by side with two QEMU VMs on `-netdev dgram`.

  (a) `lab up` wall time to "every node ready" for 1, 4 and 8 nodes (microvm probes
      that report, then idle: ready = the console printed "PROBE done"), median of
      --runs; then `lab down`.
  (b) peak RSS of each node's vmrun process (VmHWM from /proc/PID/status, read while
      the 8-node lab idles), median and max.
  (c) frames/s one way across a cable (a two-node link) and across a LAN (a three-port
      network: sender, receiver, an idle third node that gets the floods too): the
      sender's probe sends `netbench=N` frames of 1514 bytes, the receiver's times their
      arrival (`netrecv`, the guest's TSC); QEMU: the same probe pair with `-netdev
      dgram` between the two VMs directly (QEMU's own path, no switch).

Usage: benches/lab.py [--runs 3] [--frames 3000]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMRUN = os.path.join(ROOT, "target/release/vmrun")
OPTS = "memtest=0 timer=0 rtc=0 smp=0 fwcfg=0 blk=0 vga=0 pci=0"
RX = re.compile(r"PROBE net rx ok frames=(\d+) from=\S+ us=(\d+)")


def lab(d, *args, check=True):
    p = subprocess.run([VMRUN, "lab", *args], cwd=d, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"vmrun lab {' '.join(args)}: {p.stderr}")
    return p


def write_lab(d, nodes, nets="", cmdline=None, ready=True):
    with open(os.path.join(d, "node.toml"), "w") as f:
        f.write('[machine]\nboard = "microvm"\nmemory = "64MiB"\n'
                f'[boot]\ncmdline = "{OPTS} idle=1"\n'
                '[[device]]\nid = "eth0"\nkind = "nic"\n')
    text = '[lab]\nname = "bench"\n'
    for n in nodes:
        text += f'[node.{n}]\nmachine = "node.toml"\n'
        if ready:
            text += 'ready = { serial = "PROBE done" }\n'
        if cmdline and n in cmdline:
            text += f'cmdline = "{cmdline[n]}"\n'
    text += nets
    with open(os.path.join(d, "lab.toml"), "w") as f:
        f.write(text)


def up_time(n, runs):
    times = []
    rss = []
    for _ in range(runs):
        d = tempfile.mkdtemp(prefix="vmrun-labbench-")
        nodes = [f"n{i}" for i in range(n)]
        eps = ", ".join(f'"{x}:eth0"' for x in nodes)
        write_lab(d, nodes, f"[network.lan]\nendpoints = [{eps}]\n")
        t = time.perf_counter()
        lab(d, "up", "lab.toml")
        times.append(time.perf_counter() - t)
        st = json.loads(lab(d, "status", "--json", "lab.toml").stdout)
        for node in st["nodes"]:
            with open(f"/proc/{node['pid']}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        rss.append(int(line.split()[1]) / 1024)
        lab(d, "down", "--timeout", "5s", "lab.toml")
        shutil.rmtree(d, ignore_errors=True)
    return statistics.median(times), rss


def lab_fps(kind, frames):
    d = tempfile.mkdtemp(prefix="vmrun-labbench-")
    nodes = ["tx", "rx"] + (["idle"] if kind == "lan" else [])
    cmd = {
        "tx": f"{OPTS} netwait=60000 netsend=1 netbench={frames} idle=1",
        "rx": f"{OPTS} netwait=60000 netrecv={frames + 1} idle=1",
    }
    if kind == "link":
        nets = '[[link]]\nendpoints = ["tx:eth0", "rx:eth0"]\n'
    else:
        nets = '[network.lan]\nendpoints = ["tx:eth0", "rx:eth0", "idle:eth0"]\n'
    write_lab(d, nodes, nets, cmd, ready=False)
    # The receiver first, so the sender's frames find it listening.
    lab(d, "up", "lab.toml", "rx")
    time.sleep(1.0)
    lab(d, "up", "lab.toml")
    path = os.path.join(d, ".vmrun/bench/rx/console.log")
    deadline = time.time() + 120
    while time.time() < deadline and "PROBE done" not in open(path).read():
        time.sleep(0.2)
    log = open(path).read()
    lab(d, "down", "--timeout", "5s", "lab.toml")
    shutil.rmtree(d, ignore_errors=True)
    m = RX.search(log)
    return int(m.group(1)) * 1e6 / int(m.group(2)) if m and int(m.group(2)) else float("nan")


def qemu_fps(frames):
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        return float("nan")
    d = tempfile.mkdtemp(prefix="vmrun-labbench-q-")
    elf = os.path.join(ROOT, "firmware/build/probe.elf")
    a, b = os.path.join(d, "a.sock"), os.path.join(d, "b.sock")

    def vm(local, remote, mac, opts, log):
        return subprocess.Popen([
            qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-reboot",
            "-display", "none", "-m", "64M", "-serial", f"file:{log}",
            "-global", "virtio-mmio.force-legacy=false",
            "-netdev", f"dgram,id=n0,local.type=unix,local.path={local},remote.type=unix,remote.path={remote}",
            "-device", f"virtio-net-device,netdev=n0,mac={mac}",
            "-kernel", elf, "-append",
            f"exit=triple virtio_mmio=0xfeb00000 virtio_mmio_n=24 {OPTS} netwait=60000 {opts}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rxlog, txlog = os.path.join(d, "rx.log"), os.path.join(d, "tx.log")
    rx = vm(b, a, "52:54:00:00:00:02", f"netrecv={frames + 1}", rxlog)
    time.sleep(1.0)
    tx = vm(a, b, "52:54:00:00:00:01", f"netsend=1 netbench={frames} pio=20000", txlog)
    for p in (tx, rx):
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
    log = open(rxlog).read()
    shutil.rmtree(d, ignore_errors=True)
    m = RX.search(log)
    return int(m.group(1)) * 1e6 / int(m.group(2)) if m and int(m.group(2)) else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=3000)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    subprocess.run(["make", "-s", "-C", "firmware"], cwd=ROOT, check=True)
    print(f"\nlab up to all-ready (microvm probe nodes on one LAN), median of {args.runs} runs\n")
    print("| nodes | lab up | vs 1 node | node RSS median | node RSS max |")
    print("|---|---|---|---|---|")
    one = None
    for n in (1, 4, 8):
        t, rss = up_time(n, args.runs)
        one = one or t
        print(f"| {n} | {t * 1e3:.0f} ms | {t / one:.2f}x | {statistics.median(rss):.1f} MiB | {max(rss):.1f} MiB |")
    print(f"\nframes/s one way ({args.frames} frames of 1514 bytes, the receiver's probe times them)\n")
    print("| path | frames/s |")
    print("|---|---|")
    print(f"| vmrun lab cable | {lab_fps('link', args.frames):.0f} |")
    print(f"| vmrun lab LAN (3 ports) | {lab_fps('lan', args.frames):.0f} |")
    print(f"| two QEMU VMs, -netdev dgram | {qemu_fps(args.frames):.0f} |")


if __name__ == "__main__":
    main()
