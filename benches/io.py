#!/usr/bin/env python3
"""virtio-blk throughput from the probe: vmrun side by side with QEMU microvm.

Both run the same guest (the probe ELF, firmware/) on the same kind of raw scratch
image, with its polled virtio-blk driver over virtio-mmio: `blkbench=MiB` writes MiB
in 64 KiB requests from sector 0, flushes, then reads them back, and reports
`PROBE blk bench ... write_mib_s=W read_mib_s=R` (TSC-timed inside the guest).

  vmrun  the release build: `vmrun probe` on a microvm machine file with one disk
         (I/O runs synchronously on the vCPU thread, a bounce buffer per 1 MiB)
  qemu   qemu-system-x86_64 -M microvm -accel kvm -drive file=IMG,if=none,id=d,format=raw
         -device virtio-blk-device,drive=d; QEMU's virtio-mmio windows start at
         0xfeb00000 too, but it fills its 24 slots from the top, so the probe scans them
         all (virtio_mmio=0xfeb00000 virtio_mmio_n=24); QEMU's virtio-mmio is legacy
         (version 1) unless -global virtio-mmio.force-legacy=false

  overlay  vmrun again, on a fresh qcow2 overlay (made by `qemu-img create -b`, the
         same image create_overlay writes) over the raw image, for every run: all
         writes allocate clusters, reads of them come from the overlay

Usage: benches/io.py [--mib 64] [--runs 3] [--image-mib 128] [--no-overlay]
The network part (virtio-net frames per second) lives with the NIC benchmark.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = re.compile(r"PROBE blk bench (.*)")


def parse(log):
    m = BENCH.search(log)
    if not m:
        return None
    kv = dict(w.split("=", 1) for w in m.group(1).split() if "=" in w)
    if "write_mib_s" not in kv:
        return None
    return int(kv["write_mib_s"]), int(kv["read_mib_s"])


def run_vmrun(vmrun, tmp, img, opts, fmt="raw"):
    log = os.path.join(tmp, "com1.log")
    machine = os.path.join(tmp, "m.toml")
    with open(machine, "w") as f:
        f.write(f"""[machine]
name = "io"
board = "microvm"
memory = "128MiB"
cpus = 1

[[device]]
id = "disk0"
kind = "disk"
path = "{img}"
format = "{fmt}"

[[device]]
id = "com1"
backend = "file"
path = "{log}"
""")
    subprocess.run([vmrun, "probe", machine, "--timeout", "300s", "--"] + opts.split(),
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(log) as f:
        return f.read()


def run_qemu(qemu, probe, img, opts):
    cmd = [qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-reboot",
           "-nographic", "-serial", "stdio", "-m", "128M", "-smp", "1",
           "-global", "virtio-mmio.force-legacy=false",
           "-drive", f"file={img},if=none,id=d,format=raw,cache=writeback",
           "-device", "virtio-blk-device,drive=d",
           "-kernel", probe, "-append",
           "exit=triple virtio_mmio=0xfeb00000 virtio_mmio_n=24 " + opts]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image-mib", type=int, default=128)
    ap.add_argument("--no-overlay", action="store_true")
    a = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    vmrun = os.path.join(ROOT, "target", "release", "vmrun")
    fw = tempfile.mkdtemp(prefix="vmrun-io-fw-")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "firmware"), f"O={fw}"], check=True)
    probe = os.path.join(fw, "probe.elf")
    qemu = shutil.which("qemu-system-x86_64")
    opts = f"smp=0 memtest=0 timer=0 rtc=0 fwcfg=0 net=0 vga=0 pci=0 blksectors=8 blkbench={a.mib}"

    results = {"vmrun": [], "overlay": [], "qemu": []}
    overlay = not a.no_overlay and shutil.which("qemu-img")
    with tempfile.TemporaryDirectory(prefix="vmrun-io-") as tmp:
        img = os.path.join(tmp, "disk.img")
        with open(img, "wb") as f:
            f.truncate(a.image_mib << 20)
        for _ in range(a.runs):
            r = parse(run_vmrun(vmrun, tmp, img, opts))
            if r:
                results["vmrun"].append(r)
            if overlay:
                ovl = os.path.join(tmp, "overlay.qcow2")
                if os.path.exists(ovl):
                    os.remove(ovl)
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", img,
                                "-F", "raw", ovl], check=True)
                r = parse(run_vmrun(vmrun, tmp, ovl, opts, "qcow2"))
                if r:
                    results["overlay"].append(r)
            if qemu:
                r = parse(run_qemu(qemu, probe, img, opts))
                if r:
                    results["qemu"].append(r)

    print(f"virtio-blk, probe blkbench={a.mib} MiB in 64 KiB requests, median of {a.runs} runs")
    print(f"{'':8}{'write MiB/s':>14}{'read MiB/s':>14}")
    for k, v in results.items():
        if not v:
            print(f"{k:8}{'n/a':>14}{'n/a':>14}")
            continue
        w = statistics.median(x[0] for x in v)
        r = statistics.median(x[1] for x in v)
        print(f"{k:8}{w:>14.0f}{r:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
