#!/usr/bin/env python3
"""Boot speed, memory and exit cost: vmrun side by side with QEMU microvm and a floor.

All three run the same guest, the probe ELF (firmware/), with 128 MiB of RAM:
  vmrun  the release build, `vmrun probe` on a microvm machine file
  qemu   qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-reboot -kernel probe.elf
  floor  benches/floor/floor: a minimal C program running the probe with bare KVM ioctls

Figures (medians of one run of this script; the machine is noisy, compare ratios):
  (a) wall time from process start to guest poweroff to process exit (probe quick=1)
  (b) peak RSS of the process (ru_maxrss)
  (c) the cost of one port-I/O exit (`outb` to port 0x80, which each VMM handles in
      user space): the probe's own TSC count around N exits (`PROBE pio cycles=`) / N,
      the median of --pio-runs runs taken in alternation (vmrun, floor, qemu, vmrun,
      ...) so that the host's load drifts hit all three alike; converted to us with the
      host's TSC frequency (/proc/cpuinfo "cpu MHz" when the kernel gives no tsc_khz).
      Process wall times differ by milliseconds from run to run on a shared host, which
      swamps a sub-microsecond difference per exit: do not derive (c) from them.

Usage: benches/compare.py [--runs 20] [--pio 20000] [--pio-runs 15]
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(*cmd):
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def measure(cmd):
    """Runs cmd once; returns (seconds, peak RSS in KiB, exit status).

    The peak RSS comes from GNU time, which forks from a small process: a child forked
    from this Python process would count Python's pages until it execs."""
    out = tempfile.NamedTemporaryFile(mode="r", suffix=".rss")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", out.name, *cmd],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    rss = int(out.read().strip().splitlines()[-1])
    return dt, rss, p.returncode


def tsc_mhz():
    try:
        with open("/sys/devices/system/cpu/cpu0/tsc_freq_khz") as f:
            return int(f.read()) / 1000
    except OSError:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":")[1])
    return None


def pio_cycles(cmd, n):
    """Cycles per exit from the probe's `PROBE pio count=N cycles=C` line, or None."""
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    for line in p.stdout.decode(errors="replace").splitlines():
        if line.startswith("PROBE pio "):
            kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
            return int(kv["cycles"]) / n
    return None


def median_runs(cmd, runs):
    ts, rss = [], []
    for _ in range(runs):
        t, r, code = measure(cmd)
        if code not in (0, 4, 2):
            print(f"warning: {cmd[0]} exited {code}", file=sys.stderr)
        ts.append(t)
        rss.append(r)
    return statistics.median(ts), statistics.median(rss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pio", type=int, default=20000)
    ap.add_argument("--pio-runs", type=int, default=15)
    args = ap.parse_args()

    sh("cargo", "build", "--release", "--quiet")
    sh("make", "-s", "-C", "firmware")
    sh("make", "-s", "-C", "benches/floor")
    probe = os.path.join(ROOT, "firmware/build/probe.elf")
    vmrun = os.path.join(ROOT, "target/release/vmrun")
    floor = os.path.join(ROOT, "benches/floor/floor")
    qemu = shutil.which("qemu-system-x86_64")

    tmp = tempfile.mkdtemp(prefix="vmrun-bench-")
    machine = os.path.join(tmp, "bench.toml")
    with open(machine, "w") as f:
        f.write('[machine]\nboard = "microvm"\nmemory = "128MiB"\ncpus = 1\n'
                '[[device]]\nid = "com1"\nbackend = "null"\n')

    # The exit-cost runs print the probe's report: COM1 on stdout.
    machine_out = os.path.join(tmp, "bench-stdio.toml")
    with open(machine_out, "w") as f:
        f.write('[machine]\nboard = "microvm"\nmemory = "128MiB"\ncpus = 1\n'
                '[[device]]\nid = "com1"\nbackend = "stdio"\n')

    def cmds(opts, serial_out=False):
        c = {
            "vmrun": [vmrun, "probe", machine_out if serial_out else machine, "--", *opts.split()],
            "floor": [floor, probe, "pm=0x604 s5=0 " + opts],
        }
        if qemu:
            # QEMU's microvm has no PM1 block at 0x604: the probe ends with a triple
            # fault, which -no-reboot turns into an exit.
            c["qemu"] = [qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-reboot",
                         "-display", "none", "-m", "128M",
                         "-serial", "stdio" if serial_out else "null",
                         "-kernel", probe, "-append", "exit=triple " + opts]
        return c

    # The same minimal guest work everywhere: no device discovery (the floor has no
    # ACPI, PCI or VGA, and scanning for what isn't there costs the guest time).
    quick = "quick=1 acpi=0 pci=0 virtio_pci=0 vga=0 blk=0 net=0"
    boot = {k: median_runs(v, args.runs) for k, v in cmds(quick).items()}
    pio_cmds = cmds(f"{quick} pio={args.pio}", serial_out=True)
    samples = {k: [] for k in pio_cmds}
    for _ in range(args.pio_runs):
        for k, c in pio_cmds.items():
            v = pio_cycles(c, args.pio)
            if v is not None:
                samples[k].append(v)
    mhz = tsc_mhz()
    per_exit = {k: statistics.median(v) / mhz if v and mhz else float("nan")
                for k, v in samples.items()}

    f_t, f_rss = boot["floor"]
    print(f"\nprobe quick boot, 128 MiB, 1 vCPU; medians of {args.runs} runs (exit cost: "
          f"{args.pio_runs} alternating runs of N={args.pio}, TSC {mhz} MHz)\n")
    print("| VMM | (a) wall time | vs floor | (b) peak RSS | (c) one PIO exit | over floor |")
    print("|---|---|---|---|---|---|")
    for k in ["floor", "vmrun", "qemu"]:
        if k not in boot:
            continue
        t, rss = boot[k]
        print(f"| {k} | {t * 1e3:.1f} ms | {t / f_t:.2f}x | {rss / 1024:.1f} MiB | {per_exit[k]:.2f} us | {per_exit[k] - per_exit['floor']:+.2f} us |")


if __name__ == "__main__":
    main()
