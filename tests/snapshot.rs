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
    machine_with(dir, name, board, cpus, "")
}

/// [`machine`] with more `[boot]` lines.
fn machine_with(dir: &Path, name: &str, board: &str, cpus: u32, boot: &str) -> PathBuf {
    let base = dir.join("base.img");
    raw_image(&base, 1 << 20);
    let text = format!(
        "[machine]\nname = \"{name}\"\nboard = \"{board}\"\nmemory = \"128MiB\"\ncpus = {cpus}\n\n\
         [boot]\n{boot}cmdline = \"idle=1 tickms=100 work=1 smp=1 acpi=0\"\n\n\
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
            (
                g("n").parse().unwrap_or(0),
                g("blk"),
                g("sum"),
                g("cpus"),
                g("moving"),
            )
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
    cmd.args([
        "run",
        "--restore",
        snap.to_str().unwrap(),
        "--timeout",
        "60s",
    ]);
    let mut g = Guest::spawn(cmd);
    g.wait_for("work n+2", T, |l| work_n(l).is_some_and(|n| n >= last + 2));
    g.send("after");
    g.wait_for("the echo after restore", T, |l| {
        l.contains("echo \"after\"")
    });
    g.wait_for("work n+4", T, |l| work_n(l).is_some_and(|n| n >= last + 4));
    let _ = g.child.kill();
    let (_, lines, err) = g.finish(T);
    let w = work_lines(&lines);
    let ctx = format!("{}\nstderr: {err}", lines.join("\n"));
    assert_eq!(
        w.first().map(|x| x.0),
        Some(last + 1),
        "the counter goes on:\n{ctx}"
    );
    for x in &w {
        assert_eq!(x.1, "ok", "disk stream after restore:\n{ctx}");
        assert_eq!(x.3, cpus.to_string(), "CPUs:\n{ctx}");
        assert_eq!(x.4, "ok", "the other CPUs wake:\n{ctx}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("echo \"before\"")),
        "{ctx}"
    );
    w
}

fn round_trip(board: &str, cpus: u32) {
    round_trip_with(board, cpus, "", "")
}

fn round_trip_with(board: &str, cpus: u32, boot: &str, tag: &str) {
    if !common::kvm_usable() {
        return;
    }
    let name = format!("snap-{board}-{cpus}{tag}");
    let dir = common::temp_dir("snapshot", &name);
    let file = machine_with(&dir, &name, board, cpus, boot);
    let snap = dir.join("snap");
    let last = take_snapshot(&file, &name, &snap);
    let a = restore(&snap, last, cpus);
    let b = restore(&snap, last, cpus);
    // The same guest from the same snapshot: the same work, tick for tick, up to
    // the echo (whose tick depends on when the line arrived).
    assert_eq!(a[..2], b[..2], "two restores of one snapshot differ");
    let base = std::fs::read(dir.join("base.img")).unwrap();
    assert!(
        base.iter().all(|&b| b == 0),
        "the overlay's base was written"
    );
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

/// SeaBIOS booted the probe: the firmware's ROM and fw_cfg are rebuilt on restore,
/// the RAM it shadowed comes from the snapshot.
#[test]
fn q35_seabios_2_vcpus() {
    let bios = "/usr/share/seabios/bios-256k.bin";
    if !common::have_file(bios, "seabios") {
        return;
    }
    round_trip_with("q35", 2, &format!("firmware = \"{bios}\"\n"), "-bios");
}

/// A snapshot of a small microvm probe (idle, ticking) in `dir/snap`, and its machine
/// file.
fn small_snapshot(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let file = machine(dir, name, "microvm", 1);
    let snap = dir.join("snap");
    take_snapshot(&file, name, &snap);
    (file, snap)
}

/// `vmrun run --restore` (plus `extra`) fails; its stderr.
fn refused(snap: &Path, extra: &[&str]) -> String {
    let out = common::vmrun()
        .args([
            "run",
            "--restore",
            snap.to_str().unwrap(),
            "--timeout",
            "5s",
        ])
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "not refused: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn set_manifest(snap: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = snap.join("manifest.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    vmrun::snapshot::manifest::sha256(bytes)
}

#[test]
fn broken_snapshots_are_refused_whole() {
    if !common::kvm_usable() {
        return;
    }
    let dir = common::temp_dir("snapshot", "broken");
    let (file, snap) = small_snapshot(&dir, "snap-broken");
    let case = |name: &str| {
        let d = dir.join(name);
        copy_dir(&snap, &d);
        d
    };

    // Truncated and corrupted parts: their digests do not match.
    let d = case("truncated");
    let state = std::fs::read(d.join("state.bin")).unwrap();
    std::fs::write(d.join("state.bin"), &state[..state.len() / 2]).unwrap();
    assert!(refused(&d, &[]).contains("state.bin: its sha256 is"));
    let d = case("flipped");
    let mut s = state.clone();
    s[100] ^= 0x40;
    std::fs::write(d.join("state.bin"), &s).unwrap();
    assert!(refused(&d, &[]).contains("the snapshot is corrupt or was changed"));

    // Corrupt state whose digest was fixed up: the parser refuses it.
    let d = case("garbage");
    let junk: Vec<u8> = b"VMRUNSTA\x01\x00\x00\x00"
        .iter()
        .copied()
        .chain([0xff; 64])
        .collect();
    std::fs::write(d.join("state.bin"), &junk).unwrap();
    set_manifest(&d, |m| {
        m["state"]["sha256"] = sha256_hex(&junk).into();
        m["state"]["size"] = junk.len().into();
    });
    assert!(refused(&d, &[]).contains("truncated or corrupt"));

    // A foreign or newer format: named as such.
    let d = case("foreign");
    set_manifest(&d, |m| m["version"] = 99.into());
    assert!(refused(&d, &[]).contains("version 99"));
    let d = case("foreign-state");
    let mut s = state.clone();
    s[8] = 7;
    std::fs::write(d.join("state.bin"), &s).unwrap();
    set_manifest(&d, |m| m["state"]["sha256"] = sha256_hex(&s).into());
    assert!(refused(&d, &[]).contains("state format version 7"));
    let d = case("not-a-manifest");
    std::fs::write(d.join("manifest.json"), b"{\"format\": 1").unwrap();
    assert!(refused(&d, &[]).contains("not a vmrun snapshot manifest"));

    // Memory of the wrong size.
    let d = case("memory");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("memory.bin"))
        .unwrap();
    f.set_len(1 << 20).unwrap();
    assert!(refused(&d, &[]).contains("memory.bin is 1048576 bytes"));
    let d = case("missing");
    std::fs::remove_file(d.join("memory.bin")).unwrap();
    assert!(refused(&d, &[]).contains("memory.bin"));

    // Another machine than the snapshot's.
    let other = dir.join("other.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("128MiB", "256MiB");
    std::fs::write(&other, text).unwrap();
    let err = refused(&snap, &[other.to_str().unwrap()]);
    assert!(err.contains("it is of another machine"), "{err}");

    // The disk under the overlay changed since.
    std::fs::write(dir.join("base.img"), vec![1u8; 1 << 20]).unwrap();
    assert!(refused(&snap, &[]).contains("disk `disk0`"));
    assert!(refused(&snap, &["--allow-disk-change"]).contains("disk `disk0`"));
}

#[test]
fn boot_snapshot_key_pins_the_manifest() {
    if !common::kvm_usable() {
        return;
    }
    let dir = common::temp_dir("snapshot", "pinned");
    let (file, snap) = small_snapshot(&dir, "snap-pinned");
    let sha = sha256_hex(&std::fs::read(snap.join("manifest.json")).unwrap());
    let base = std::fs::read_to_string(&file).unwrap();
    let with = |sha: &str| {
        base.replace(
            "[boot]\n",
            &format!("[boot]\nsnapshot = {{ path = \"snap\", sha256 = \"{sha}\" }}\n"),
        )
    };
    let good = dir.join("good.toml");
    std::fs::write(&good, with(&sha)).unwrap();
    let out = common::vmrun()
        .args(["check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = common::vmrun();
    cmd.args(["run", good.to_str().unwrap(), "--timeout", "60s"]);
    let mut g = Guest::spawn(cmd);
    g.wait_for("a work line from the snapshot", T, |l| {
        l.starts_with("PROBE work")
    });
    let _ = g.child.kill();
    let (_, lines, _) = g.finish(T);
    assert!(
        !lines.iter().any(|l| l.starts_with("PROBE cmdline")),
        "it booted"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, with(&"0".repeat(64))).unwrap();
    let out = common::vmrun()
        .args(["check", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not match its sha256"),
        "{err}"
    );
    assert!(err.contains("bad.toml:"), "located: {err}");
}
