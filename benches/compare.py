#!/usr/bin/env python3
"""What the VMM costs: vmrun side by side with a bare-KVM floor and QEMU, same run.

Two guests, 128 MiB of RAM, one vCPU, run by three VMMs:
  floor  benches/floor/floor: a minimal C program with bare KVM ioctls and the in-kernel
         devices vmrun creates (irqchip, PIT)
  vmrun  the release build, a microvm machine file
  qemu   qemu-system-x86_64 -M microvm -accel kvm -nodefaults -no-reboot -kernel ELF

1. The minimal guest (firmware/mini.S, built into firmware/build/mini.elf): ten
   instructions that print one line on COM1 and power off, so what is measured is the
   VMM, not the guest. vmrun boots it as `[boot] kernel`. Figures, medians of --runs
   runs taken in alternation (floor, vmrun, qemu, floor, ...) so that the host's load
   drifts hit all three alike:
     first  process start to the first byte of the line on the VMM's stdout
     exit   process start to the VMM's exit as its parent sees it (wait4), the VM's
            teardown in the kernel included
     RSS    peak RSS of the process (wait4's ru_maxrss)
   Every run goes through benches/floor/stopwatch (a small static C parent: see there
   why the parent must be small for ru_maxrss to be the child's).

2. The probe (firmware/, quick=1, no device discovery), as before:
  (a) wall time from process start to guest poweroff to process exit
  (b) peak RSS of the process (ru_maxrss)
  (c) the cost of one port-I/O exit (`outb` to port 0x80, which each VMM handles in
      user space): the probe's own TSC count around N exits (`PROBE pio cycles=`) / N,
      the median of --pio-runs alternating runs; converted to us with the host's TSC
      frequency (/proc/cpuinfo "cpu MHz" when the kernel gives no tsc_khz). Process
      wall times differ by milliseconds from run to run on a shared host, which
      swamps a sub-microsecond difference per exit: do not derive (c) from them.

Usage: benches/compare.py [--runs 30] [--probe-runs 10] [--pio 20000] [--pio-runs 15]
       [--only mini]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOPWATCH = os.path.join(ROOT, "benches/floor/stopwatch")
MINI_LINE = "mini: hello from the minimal guest"


def sh(*cmd):
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def measure(cmd):
    """Runs cmd once under the stopwatch: {first, exit (seconds), rss (KiB), status, out}."""
    p = subprocess.run([STOPWATCH, *cmd], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=300)
    fig = None
    for line in p.stderr.decode(errors="replace").splitlines():
        if line.startswith("STOPWATCH "):
            fig = dict(w.split("=", 1) for w in line.split()[1:])
    if p.returncode != 0 or fig is None:
        raise RuntimeError(f"stopwatch failed on {cmd[0]}: {p.stderr.decode(errors='replace')}")
    first = int(fig["first_us"])
    return {
        "first": first / 1e6 if first >= 0 else float("nan"),
        "exit": int(fig["exit_us"]) / 1e6,
        "rss": int(fig["maxrss_kib"]),
        "status": int(fig["status"]),
        "out": p.stdout.decode(errors="replace"),
    }


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


def alternate(cmds, runs, check=None):
    """Runs every command `runs` times in turn; returns {name: [measurement, ...]}."""
    samples = {k: [] for k in cmds}
    for _ in range(runs):
        for k, c in cmds.items():
            m = measure(c)
            if m["status"] not in (0, 2, 4):
                print(f"warning: {k} exited {m['status']}", file=sys.stderr)
            if check and not check(m):
                print(f"warning: {k}: the guest's line is missing", file=sys.stderr)
            samples[k].append(m)
    return samples


def med(ms, key):
    return statistics.median(m[key] for m in ms)


def write_machine(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def qemu_cmd(qemu, kernel, serial, append=None):
    # QEMU's microvm has no PM1 block at 0x604: both guests end with a triple fault,
    # which -no-reboot turns into an exit.
    c = [qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-reboot",
         "-display", "none", "-m", "128M", "-serial", serial, "-kernel", kernel]
    return c + (["-append", append] if append is not None else [])


def bench_mini(args, tmp, vmrun, floor, qemu):
    mini = os.path.join(ROOT, "firmware/build/mini.elf")
    machine = write_machine(tmp, "mini.toml",
                            '[machine]\nboard = "microvm"\nmemory = "128MiB"\ncpus = 1\n'
                            f'[boot]\nkernel = "{mini}"\n'
                            '[[device]]\nid = "com1"\nbackend = "stdio"\n')
    cmds = {"floor": [floor, mini], "vmrun": [vmrun, machine]}
    if qemu:
        cmds["qemu"] = qemu_cmd(qemu, mini, "stdio")
    s = alternate(cmds, args.runs, check=lambda m: MINI_LINE in m["out"])
    f_first, f_exit, f_rss = (med(s["floor"], k) for k in ("first", "exit", "rss"))
    print(f"\nminimal guest (firmware/mini.S), microvm, 128 MiB, 1 vCPU; medians of "
          f"{args.runs} alternating runs\n")
    print("| VMM | start→first output | vs floor | start→exit | vs floor | peak RSS | vs floor |")
    print("|---|---|---|---|---|---|---|")
    for k in ["floor", "vmrun", "qemu"]:
        if k not in s:
            continue
        first, exit_, rss = (med(s[k], key) for key in ("first", "exit", "rss"))
        print(f"| {k} | {first * 1e3:.2f} ms | {first / f_first:.2f}x | {exit_ * 1e3:.1f} ms | "
              f"{exit_ / f_exit:.2f}x | {rss / 1024:.2f} MiB | {rss / f_rss:.2f}x |")
    lo_hi = {k: (min(m["exit"] for m in v) * 1e3, max(m["exit"] for m in v) * 1e3)
             for k, v in s.items()}
    print("\nstart→exit range (ms): " +
          ", ".join(f"{k} {lo:.1f}–{hi:.1f}" for k, (lo, hi) in lo_hi.items()))


def bench_probe(args, tmp, vmrun, floor, qemu):
    probe = os.path.join(ROOT, "firmware/build/probe.elf")
    board = '[machine]\nboard = "microvm"\nmemory = "128MiB"\ncpus = 1\n'
    machine = write_machine(tmp, "probe.toml",
                            board + '[[device]]\nid = "com1"\nbackend = "null"\n')
    # The exit-cost runs print the probe's report: COM1 on stdout.
    machine_out = write_machine(tmp, "probe-stdio.toml",
                                board + '[[device]]\nid = "com1"\nbackend = "stdio"\n')

    def cmds(opts, serial_out=False):
        c = {
            "floor": [floor, probe, "pm=0x604 s5=0 " + opts],
            "vmrun": [vmrun, "probe", machine_out if serial_out else machine, "--",
                      *opts.split()],
        }
        if qemu:
            c["qemu"] = qemu_cmd(qemu, probe, "stdio" if serial_out else "null",
                                 "exit=triple " + opts)
        return c

    # The same guest work everywhere: no device discovery (the floor has no ACPI, PCI
    # or VGA, and scanning for what isn't there costs the guest time).
    quick = "quick=1 acpi=0 pci=0 virtio_pci=0 vga=0 blk=0 net=0"
    boot = alternate(cmds(quick), args.probe_runs)
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

    f_t = med(boot["floor"], "exit")
    print(f"\nprobe quick boot, microvm, 128 MiB, 1 vCPU; medians of {args.probe_runs} runs "
          f"(exit cost: {args.pio_runs} alternating runs of N={args.pio}, TSC {mhz} MHz)\n")
    print("| VMM | (a) wall time | vs floor | (b) peak RSS | (c) one PIO exit | over floor |")
    print("|---|---|---|---|---|---|")
    for k in ["floor", "vmrun", "qemu"]:
        if k not in boot:
            continue
        t, rss = med(boot[k], "exit"), med(boot[k], "rss")
        print(f"| {k} | {t * 1e3:.1f} ms | {t / f_t:.2f}x | {rss / 1024:.1f} MiB | "
              f"{per_exit[k]:.2f} us | {per_exit[k] - per_exit['floor']:+.2f} us |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--probe-runs", type=int, default=10)
    ap.add_argument("--pio", type=int, default=20000)
    ap.add_argument("--pio-runs", type=int, default=15)
    ap.add_argument("--only", choices=["mini", "probe"])
    ap.add_argument("--vmrun", help="the vmrun binary (default: target/release/vmrun, built)")
    args = ap.parse_args()

    if not args.vmrun:
        sh("cargo", "build", "--release", "--quiet")
    sh("make", "-s", "-C", "firmware")
    sh("make", "-s", "-C", "benches/floor")
    vmrun = args.vmrun or os.path.join(ROOT, "target/release/vmrun")
    floor = os.path.join(ROOT, "benches/floor/floor")
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        print("note: no qemu-system-x86_64 (apt-get install qemu-system-x86): no QEMU column",
              file=sys.stderr)
    # The stopwatch run on itself (it prints its usage): the least a child can report.
    base = measure([STOPWATCH])
    print(f"stopwatch floor (a static child's peak RSS): {base['rss'] / 1024:.2f} MiB")

    tmp = tempfile.mkdtemp(prefix="vmrun-bench-")
    if args.only in (None, "mini"):
        bench_mini(args, tmp, vmrun, floor, qemu)
    if args.only in (None, "probe"):
        bench_probe(args, tmp, vmrun, floor, qemu)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
