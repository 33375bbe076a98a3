#!/usr/bin/env python3
"""NIC frames per second from the probe: vmrun side by side with QEMU.

Both run the same guest (the probe ELF, firmware/) with its polled NIC driver:
`netbench=N` sends N 1514-byte frames as fast as the transmit ring takes them and
reports `PROBE net bench frames=N ... fps=F` (TSC-timed in the guest). The model is
virtio-net over virtio-mmio on microvm (default), or with `--model e1000` an Intel
e1000 on q35 (QEMU boots the probe through SeaBIOS there; the figure is the guest's).
Both VMMs hand the frames to the same kind of host peer, a unix datagram socket that
this script binds and drains (one datagram = one frame):

  vmrun  the release build, a microvm NIC on the lab switch: the switch directory holds
         the sink's socket (named like a NIC's port), so every broadcast frame the
         probe sends is one datagram to the sink
  qemu   -netdev dgram with a unix-socket remote (the sink) and
         -device virtio-net-device (-global virtio-mmio.force-legacy=false), or
         -device e1000

Usage: benches/net.py [--frames 5000] [--runs 3] [--model virtio-net|e1000]
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = re.compile(r"PROBE net bench (.*)")
OPTS = "smp=0 memtest=0 timer=0 rtc=0 fwcfg=0 blk=0 vga=0 pci=0"


def fps(log):
    m = BENCH.search(log or "")
    if not m:
        return None
    kv = dict(w.split("=", 1) for w in m.group(1).split() if "=" in w)
    return int(kv["fps"]) if "fps" in kv else None


class Sink:
    """A unix datagram socket that counts and drops what it receives."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(path)
        self.sock.settimeout(0.5)
        self.frames = 0
        self.stop = False
        self.t = threading.Thread(target=self.drain, daemon=True)
        self.t.start()

    def drain(self):
        while not self.stop:
            try:
                self.sock.recv(65536)
                self.frames += 1
            except socket.timeout:
                pass

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


def run_vmrun(vmrun, tmp, frames, model):
    switch = os.path.join(tmp, "switch")
    os.makedirs(switch, exist_ok=True)
    sink = Sink(os.path.join(switch, "020000000001.sock"))
    log = os.path.join(tmp, "com1.log")
    machine = os.path.join(tmp, "m.toml")
    with open(machine, "w") as f:
        board = "q35" if model == "e1000" else "microvm"
        f.write(f'[machine]\nboard = "{board}"\nmemory = "128MiB"\n'
                f'[[device]]\nid = "net0"\nkind = "nic"\nmodel = "{model}"\nbackend = "switch"\nswitch = "{switch}"\n'
                f'[[device]]\nid = "com1"\nbackend = "file"\npath = "{log}"\n')
    subprocess.run([vmrun, "probe", machine, "--timeout", "300s", "--", *OPTS.split(), f"netbench={frames}"],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sink.close()
    with open(log) as f:
        return fps(f.read()), sink.frames


def run_qemu(qemu, probe, tmp, frames, model):
    sink_path = os.path.join(tmp, "qsink.sock")
    local = os.path.join(tmp, "qemu.sock")
    for p in (sink_path, local):
        if os.path.exists(p):
            os.unlink(p)
    sink = Sink(sink_path)
    netdev = f"dgram,id=n0,local.type=unix,local.path={local},remote.type=unix,remote.path={sink_path}"
    if model == "e1000":
        machine = ["-M", "q35", "-device", "e1000,netdev=n0,mac=52:54:00:12:34:56"]
        append = f"s5=7 {OPTS} netbench={frames}"
    else:
        machine = ["-M", "microvm", "-global", "virtio-mmio.force-legacy=false",
                   "-device", "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56"]
        append = f"exit=triple virtio_mmio=0xfeb00000 virtio_mmio_n=24 {OPTS} netbench={frames}"
    cmd = [qemu, *machine, "-accel", "kvm", "-nodefaults", "-no-reboot", "-nographic",
           "-serial", "stdio", "-m", "128M", "-netdev", netdev,
           "-kernel", probe, "-append", append]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    sink.close()
    return fps(p.stdout), sink.frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", choices=["virtio-net", "e1000"], default="virtio-net")
    a = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    vmrun = os.path.join(ROOT, "target", "release", "vmrun")
    fw = tempfile.mkdtemp(prefix="vmrun-net-fw-")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "firmware"), f"O={fw}"], check=True)
    probe = os.path.join(fw, "probe.elf")
    qemu = shutil.which("qemu-system-x86_64")

    results = {"vmrun": [], "qemu": []}
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory(prefix="vmrun-net-") as tmp:
            results["vmrun"].append(run_vmrun(vmrun, tmp, a.frames, a.model))
            if qemu:
                results["qemu"].append(run_qemu(qemu, probe, tmp, a.frames, a.model))

    print(f"{a.model}, probe netbench={a.frames} frames of 1514 bytes to a unix-datagram sink, median of {a.runs} runs")
    print(f"{'':8}{'frames/s (guest)':>18}{'frames at sink':>16}")
    for k, v in results.items():
        ok = [x for x in v if x[0] is not None]
        if not ok:
            print(f"{k:8}{'n/a':>18}{'n/a':>16}")
            continue
        print(f"{k:8}{statistics.median(x[0] for x in ok):>18.0f}{statistics.median(x[1] for x in ok):>16.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
