#!/usr/bin/env python3
"""The lab switch (`vmrun switch`): frames/s and MiB/s between two probe VMs, with and
without capture, side by side with QEMU (-netdev dgram) running the same probe; and
the impairment accuracy (configured vs measured delay, loss, rate).

Throughput: probe A sends N 1514-byte broadcast frames as fast as its transmit queue
takes them (`netbench=N`, TSC-timed in A: the offered rate), probe B counts them
(`netrecv=N`: frames received and the time from the first to the last one: the
carried rate). Every path is a unix-datagram cable (one frame per datagram):

  vmrun-netsw       vmrun <-> switch link <-> vmrun (NICs with backend "dgram")
  vmrun-netsw-pcap  the same with `capture = "link.pcap"` on the link
  vmrun-direct      vmrun <-> vmrun, the two dgram NICs wired to each other
  vmrun-swdir       vmrun <-> vmrun over the standalone switch directory (backend "switch")
  qemu-netsw        QEMU <-> switch link <-> QEMU (-netdev dgram,local.type=unix,...)
  qemu-direct       QEMU <-> QEMU, -netdev dgram sockets wired to each other

Lost frames are "sent - received": the switch itself never drops on these paths
(back-pressure), so a loss is the senders' NIC backend giving up (a receiver that did
not read for 20 ms in vmrun, or QEMU dropping on its full queue).

Impairment accuracy is measured between two host sockets through the switch (so
guest timing noise does not blur it): one-way delay of 500 frames sent one at a time,
loss of 20000 frames, and the receive rate of 3000 1514-byte frames sent at once.
tests/netsw.rs measures the same between two probes (printed as `figure:` lines).

Usage: benches/netsw.py [--frames 5000] [--runs 3] [--skip-impair | --only-impair]
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTS = "smp=0 memtest=0 timer=0 rtc=0 fwcfg=0 blk=0 vga=0 pci=0"
# pio=20000: the guest lingers a little after its net work, so QEMU's main loop sends
# its last frames before QEMU exits.
QEMU_OPTS = "exit=triple virtio_mmio=0xfeb00000 virtio_mmio_n=24 pio=20000"
A_MAC, B_MAC = "52:54:00:00:aa:01", "52:54:00:00:bb:02"


def kv(log, tag):
    m = re.search(rf"PROBE {tag} (.*)", log or "")
    if not m:
        return {}
    return dict(w.split("=", 1) for w in m.group(1).split() if "=" in w)


class Switch:
    def __init__(self, vmrun, d, networks):
        os.makedirs(d, mode=0o700, exist_ok=True)
        cfg = {"control": "ctl", "seed": 1, "networks": networks}
        path = os.path.join(d, "switch.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        self.p = subprocess.Popen([vmrun, "switch", "--config", path])
        self.ctl = os.path.join(d, "ctl")
        for _ in range(500):
            try:
                self.c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.c.connect(self.ctl)
                break
            except OSError:
                time.sleep(0.01)
        self.f = self.c.makefile("rw")

    def req(self, **r):
        self.f.write(json.dumps(r) + "\n")
        self.f.flush()
        a = json.loads(self.f.readline())
        if not a.get("ok"):
            raise RuntimeError(a)
        return a

    def close(self):
        self.req(cmd="shutdown")
        self.p.wait()


def link(capture=None):
    n = {"name": "ab", "kind": "link",
         "ports": [{"name": x, "local": f"sw/{x}", "remote": x} for x in "ab"]}
    if capture:
        n["capture"] = capture
    return n


def machine(d, name, mac, nic):
    path = os.path.join(d, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f'[machine]\nname = "{name}"\nboard = "microvm"\nmemory = "64MiB"\n'
                f'[[device]]\nid = "net0"\nkind = "nic"\nmac = "{mac}"\n{nic}\n'
                f'[[device]]\nid = "com1"\nbackend = "file"\npath = "{name}.log"\n')
    return path


def wait_net(log, proc):
    for _ in range(3000):
        try:
            if "PROBE net " in open(log).read():
                return
        except OSError:
            pass
        if proc.poll() is not None:
            return
        time.sleep(0.01)


def vmrun_pair(vmrun, d, nic_a, nic_b, n):
    fa, fb = machine(d, "a", A_MAC, nic_a), machine(d, "b", B_MAC, nic_b)
    la, lb = os.path.join(d, "a.log"), os.path.join(d, "b.log")
    b = subprocess.Popen([vmrun, "probe", fb, "--timeout", "300s", "--", *OPTS.split(),
                          f"netrecv={n}", "netwait=30000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_net(lb, b)
    subprocess.run([vmrun, "probe", fa, "--timeout", "300s", "--", *OPTS.split(), f"netbench={n}"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b.wait()
    return open(la).read(), open(lb).read()


def qemu_cmd(qemu, probe, local, remote, mac, log, opts):
    return [qemu, "-M", "microvm", "-accel", "kvm", "-nodefaults", "-no-reboot", "-display", "none",
            "-m", "64M", "-global", "virtio-mmio.force-legacy=false", "-serial", f"file:{log}",
            "-netdev", f"dgram,id=n0,local.type=unix,local.path={local},remote.type=unix,remote.path={remote}",
            "-device", f"virtio-net-device,netdev=n0,mac={mac}", "-kernel", probe,
            "-append", f"{QEMU_OPTS} {OPTS} {opts}"]


def qemu_pair(qemu, probe, d, ends, n):
    (la_l, la_r), (lb_l, lb_r) = ends
    la, lb = os.path.join(d, "qa.log"), os.path.join(d, "qb.log")
    b = subprocess.Popen(qemu_cmd(qemu, probe, lb_l, lb_r, B_MAC, lb, f"netrecv={n} netwait=30000"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_net(lb, b)
    subprocess.run(qemu_cmd(qemu, probe, la_l, la_r, A_MAC, la, f"netbench={n}"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    b.wait(timeout=600)
    return open(la).read(), open(lb).read()


def figures(logs, n):
    a, b = logs
    bench = kv(a, "net bench")
    rx = kv(b, "net rx ok") or kv(b, "net rx timeout")
    got = int(rx.get("frames", 0))
    us = int(rx.get("us", 0))
    fps = got * 1e6 / us if us else None
    return (int(bench["fps"]) if "fps" in bench else None, got, fps)


def scenario(name, vmrun, qemu, probe, n):
    d = tempfile.mkdtemp(prefix="vmrun-netsw-bench-")
    os.chmod(d, 0o700)
    dgram = lambda me, to: f'backend = "dgram"\nlocal = "{me}"\nremote = "{to}"'
    sw = None
    try:
        if name in ("vmrun-netsw", "vmrun-netsw-pcap", "qemu-netsw"):
            sw = Switch(vmrun, d, [link("link.pcap" if name.endswith("pcap") else None)])
        if name.startswith("vmrun-netsw"):
            logs = vmrun_pair(vmrun, d, dgram("a", "sw/a"), dgram("b", "sw/b"), n)
        elif name == "vmrun-direct":
            logs = vmrun_pair(vmrun, d, dgram("a", "b"), dgram("b", "a"), n)
        elif name == "vmrun-swdir":
            s = f'backend = "switch"\nswitch = "{d}/swdir"'
            logs = vmrun_pair(vmrun, d, s, s, n)
        elif name == "qemu-netsw":
            j = lambda *p: os.path.join(d, *p)
            logs = qemu_pair(qemu, probe, d, ((j("a"), j("sw/a")), (j("b"), j("sw/b"))), n)
        else:
            j = lambda *p: os.path.join(d, *p)
            logs = qemu_pair(qemu, probe, d, ((j("a"), j("b")), (j("b"), j("a"))), n)
        return figures(logs, n)
    finally:
        if sw:
            sw.close()
        shutil.rmtree(d, ignore_errors=True)


def host_nodes(d):
    out = []
    for x in "ab":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(os.path.join(d, x))
        s.connect(os.path.join(d, "sw", x))
        s.settimeout(2)
        out.append(s)
    time.sleep(0.3)
    return out


def switch_alone(vmrun, capture, n=200000):
    """Host socket A -> switch link -> host socket B as fast as Python sends."""
    d = tempfile.mkdtemp(prefix="vmrun-netsw-alone-")
    os.chmod(d, 0o700)
    sw = Switch(vmrun, d, [link("link.pcap" if capture else None)])
    a, b = host_nodes(d)
    frame = b"\xff" * 6 + bytes.fromhex("525400000001") + b"\x88\xb5" + bytes(1500)
    got = [0, 0.0, 0.0]

    def recv():
        got[1] = time.monotonic()
        for _ in range(n):
            b.recv(2048)
            got[0] += 1
        got[2] = time.monotonic()

    t = threading.Thread(target=recv)
    t.start()
    for _ in range(n):
        a.send(frame)
    t.join()
    counters = sw.req(cmd="status")["status"]["networks"][0]["ports"][1]["counters"]
    sw.close()
    size = os.path.getsize(os.path.join(d, "link.pcap")) if capture else 0
    shutil.rmtree(d, ignore_errors=True)
    fps = got[0] / (got[2] - got[1])
    return fps, counters["tx_dropped"], size


def impairment(vmrun):
    d = tempfile.mkdtemp(prefix="vmrun-netsw-impair-")
    os.chmod(d, 0o700)
    sw = Switch(vmrun, d, [link()])
    a, b = host_nodes(d)
    small = b"\xff" * 6 + bytes.fromhex("525400000001") + b"\x88\xb5" + bytes(46)
    big = small + bytes(1514 - len(small))
    rows = []

    def one_way(n):
        ds = []
        for _ in range(n):
            t = time.monotonic()
            a.send(small)
            b.recv(2048)
            ds.append((time.monotonic() - t) * 1e3)
        return ds

    base = one_way(200)
    rows.append(("none", "-", f"one-way {statistics.mean(base):.3f} ms"))
    for delay, jitter in (("20ms", None), ("20ms", "5ms"), ("100ms", "10ms")):
        imp = {"delay": delay}
        if jitter:
            imp["jitter"] = jitter
        sw.req(cmd="impair", network="ab", impair=imp)
        ds = one_way(300 if delay == "20ms" else 60)
        rows.append((f"delay {delay}" + (f" jitter {jitter}" if jitter else ""),
                     f"{delay}" + (f" +-{jitter} (uniform, sd {float(jitter[:-2]) / 3 ** 0.5:.2f}ms)" if jitter else ""),
                     f"mean {statistics.mean(ds):.2f} ms, sd {statistics.pstdev(ds):.2f}, min {min(ds):.2f}, max {max(ds):.2f}"))
    def drain(wait):
        n = 0
        b.settimeout(wait)
        try:
            while True:
                b.recv(2048)
                n += 1
        except (socket.timeout, BlockingIOError):
            pass
        b.settimeout(2)
        return n

    for loss in ("1%", "10%"):
        sw.req(cmd="impair", network="ab", impair={"loss": loss})
        got = 0
        for i in range(20000):
            a.send(small)
            if i % 100 == 99:
                got += drain(0)
        got += drain(0.3)
        rows.append((f"loss {loss}", loss, f"{(20000 - got) / 200:.2f}% of 20000 lost"))
    for rate in ("10Mbit", "100Mbit"):
        sw.req(cmd="impair", network="ab", impair={"rate": rate, "limit": 4000})
        ts = []
        reader = threading.Thread(target=lambda: [ts.append((b.recv(2048), time.monotonic())[1]) for _ in range(3000)])
        reader.start()
        for _ in range(3000):
            a.send(big)
        reader.join()
        span = ts[-1] - ts[0]
        rows.append((f"rate {rate}", rate, f"{2999 * 1514 * 8 / span / 1e6:.2f} Mbit/s"))
    sw.req(cmd="impair", network="ab", impair=None)
    sw.close()
    shutil.rmtree(d, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-impair", action="store_true")
    ap.add_argument("--only-impair", action="store_true")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    vmrun = os.path.join(ROOT, "target", "release", "vmrun")
    fw = tempfile.mkdtemp(prefix="vmrun-netsw-fw-")
    subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "firmware"), f"O={fw}"], check=True)
    probe = os.path.join(fw, "probe.elf")
    qemu = shutil.which("qemu-system-x86_64")
    names = [] if a.only_impair else ["vmrun-netsw", "vmrun-netsw-pcap", "vmrun-direct", "vmrun-swdir"]
    if qemu and names:
        names += ["qemu-netsw", "qemu-direct"]
    print(f"probe netbench={a.frames} frames of 1514 bytes A -> B, median of {a.runs} runs")
    print(f"{'path':18}{'offered f/s':>12}{'received':>10}{'carried f/s':>13}{'MiB/s':>8}")
    for name in names:
        res = [scenario(name, vmrun, qemu, probe, a.frames) for _ in range(a.runs)]
        ok = [r for r in res if r[2]]
        offered = statistics.median(r[0] or 0 for r in res)
        got = statistics.median(r[1] for r in res)
        fps = statistics.median(r[2] for r in ok) if ok else 0
        print(f"{name:18}{offered:>12.0f}{got:>10.0f}{fps:>13.0f}{fps * 1514 / 2**20:>8.1f}")
    if not a.only_impair:
        print("\nthe switch alone: host socket -> link -> host socket, 200000 frames of 1514 bytes")
        for cap in (False, True):
            fps, drops, size = switch_alone(vmrun, cap)
            what = f"with capture ({size >> 20} MiB pcap)" if cap else "no capture"
            print(f"{what:32}{fps:>10.0f} frames/s {fps * 1514 / 2**20:>8.1f} MiB/s  drops {sum(drops.values())}")
    if not a.skip_impair:
        print("\nimpairment through the switch, measured between two host sockets")
        print(f"{'impairment':28}{'configured':36}measured")
        for row in impairment(vmrun):
            print(f"{row[0]:28}{row[1]:36}{row[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
