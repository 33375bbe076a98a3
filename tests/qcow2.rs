//! qcow2 disks end to end. `vmrun check` accepts writable qcow2 images, refuses bad
//! images and broken backing chains with a located message, and compares images by
//! device and inode. The probe reads a qcow2 image read-only; writes a writable one
//! and an overlay made by `create_overlay` over a base qemu-io wrote (the base's
//! bytes never change); two overlays of one base run at once; kill -9 right after
//! the guest's flush leaves the flushed data and an image `qemu-img check` finds no
//! corruption in. Every written image is judged by qemu-img check / qemu-io /
//! qemu-img convert. Needs qemu-utils (and /dev/kvm for the boots).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use vmrun::backends::disk::Format;
use vmrun::backends::qcow2::create_overlay;
use vmrun::boot::probe::{parse_report, ProbeLine};

mod common;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-qcow2-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tools() -> bool {
    common::have_tool("qemu-img", "qemu-utils") && common::have_tool("qemu-io", "qemu-utils")
}

fn tool(name: &str, args: &[&str]) -> std::process::Output {
    let o = Command::new(name).args(args).output().unwrap();
    assert!(o.status.success(), "{name} {args:?}: {o:?}");
    o
}

/// A qcow2 image of `size` (qemu-img create), then each qemu-io command.
fn qcow2(p: &Path, size: &str, io: &[&str]) {
    let s = p.to_str().unwrap();
    tool("qemu-img", &["create", "-q", "-f", "qcow2", s, size]);
    for c in io {
        tool("qemu-io", &["-f", "qcow2", "-c", c, s]);
    }
}

/// A microvm machine with the given disks (path, readonly, format) and COM1 into
/// `log`.
fn machine(dir: &Path, name: &str, disks: &[(&Path, bool, &str)]) -> PathBuf {
    let mut t = format!(
        "[machine]\nname = \"{name}\"\nboard = \"microvm\"\nmemory = \"64MiB\"\ncpus = 1\n"
    );
    for (i, (p, ro, fmt)) in disks.iter().enumerate() {
        t += &format!(
            "\n[[device]]\nid = \"disk{i}\"\nkind = \"disk\"\npath = \"{}\"\nformat = \"{fmt}\"\nreadonly = {ro}\n",
            p.display()
        );
    }
    t += &format!(
        "\n[[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        dir.join(format!("{name}.log")).display()
    );
    let f = dir.join(format!("{name}.toml"));
    std::fs::write(&f, t).unwrap();
    f
}

fn vmrun(args: &[&str]) -> std::process::Output {
    common::vmrun().args(args).output().unwrap()
}

fn check(m: &Path) -> (bool, String) {
    let out = vmrun(&["check", m.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code() == Some(0), err)
}

const QUICK: &str = "quick=1 smp=0 fwcfg=0 net=0";

fn probe(m: &Path, opts: &str) -> Command {
    let mut c = common::vmrun();
    c.args(["probe", m.to_str().unwrap(), "--timeout", "60s", "--"]);
    c.args(opts.split_whitespace());
    c
}

/// The report of machine `name` in `dir` (whole lines only).
fn report(dir: &Path, name: &str) -> (String, Vec<ProbeLine>) {
    let mut log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    log.truncate(log.rfind('\n').map_or(0, |i| i + 1));
    let lines = parse_report(&log).unwrap_or_else(|e| panic!("bad report ({e}):\n{log}"));
    (log, lines)
}

fn has(lines: &[ProbeLine], tag: &str) -> bool {
    lines.iter().any(|l| l.tag == tag)
}

/// The image's guest bytes, through qemu-img convert.
fn contents(p: &Path) -> Vec<u8> {
    let raw = p.with_extension("converted");
    tool(
        "qemu-img",
        &[
            "convert",
            "-q",
            "-O",
            "raw",
            p.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let v = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    v
}

/// The first `sectors` sectors hold the probe's pattern; `rest` is what follows.
fn assert_pattern(p: &Path, sectors: usize, rest: u8) {
    common::assert_blk_pattern(&contents(p), sectors, rest, &p.display().to_string());
    // qemu-io agrees on single bytes of it.
    let ps = p.to_str().unwrap();
    for (s, i) in [(0usize, 0usize), (7, 511), (sectors - 1, 300)] {
        let cmd = format!("read -P {} {} 1", common::blk_pattern(s, i), s * 512 + i);
        let out = tool("qemu-io", &["-r", "-f", "qcow2", "-c", &cmd, ps]);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("fail"),
            "{cmd}"
        );
    }
}

/// `qemu-img check`: (corruptions, leaks, report).
fn qemu_check(p: &Path) -> (u64, u64, String) {
    let o = Command::new("qemu-img")
        .args(["check", "--output=json", p.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {o:?}"));
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    assert_eq!(n("check-errors"), 0, "{text}");
    (n("corruptions"), n("leaks"), text)
}

fn assert_clean(p: &Path) {
    let (c, l, text) = qemu_check(p);
    assert_eq!((c, l), (0, 0), "{}: {text}", p.display());
}

fn sha(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

/// Waits until the report of `name` has a `tag` line.
fn wait_for(dir: &Path, name: &str, tag: &str, child: &mut Child) {
    let t0 = Instant::now();
    while !has(&report(dir, name).1, tag) {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("vmrun ended ({st}) before {tag}: {}", report(dir, name).0);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no {tag}: {}",
            report(dir, name).0
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn check_accepts_writable_qcow2_and_refuses_bad_chains() {
    if !tools() {
        return;
    }
    let dir = tmpdir("check");
    let img = dir.join("disk.qcow2");
    qcow2(&img, "1M", &["write -P 0xab 0 32k"]);
    for ro in [true, false] {
        let (ok, err) = check(&machine(&dir, "m", &[(&img, ro, "qcow2")]));
        assert!(ok, "readonly = {ro}: {err}");
    }
    // A raw file declared qcow2: the header is checked at check time.
    let raw = dir.join("raw.img");
    std::fs::write(&raw, vec![0u8; 4096]).unwrap();
    let (ok, err) = check(&machine(&dir, "m", &[(&raw, true, "qcow2")]));
    assert!(!ok && err.contains("not a usable qcow2 image"), "{err}");
    // A missing backing file, named with where the disk's path is.
    let over = dir.join("over.qcow2");
    let base = dir.join("base.raw");
    std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
    create_overlay(&over, &base, Format::Raw).unwrap();
    std::fs::remove_file(&base).unwrap();
    let (ok, err) = check(&machine(&dir, "m", &[(&over, false, "qcow2")]));
    assert!(!ok, "{err}");
    assert!(
        err.contains("backing file of") && err.contains("base.raw") && err.contains("m.toml:"),
        "{err}"
    );
    // One device writes the base that another's overlay reads.
    std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
    let m = machine(&dir, "m", &[(&over, false, "qcow2"), (&base, false, "raw")]);
    let (ok, err) = check(&m);
    assert!(!ok && err.contains("use the same image"), "{err}");
    // Two overlays of one base, both written: fine.
    let over2 = dir.join("over2.qcow2");
    create_overlay(&over2, &base, Format::Raw).unwrap();
    let m = machine(
        &dir,
        "m",
        &[(&over, false, "qcow2"), (&over2, false, "qcow2")],
    );
    let (ok, err) = check(&m);
    assert!(ok, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_compares_images_by_inode() {
    let dir = tmpdir("inode");
    let img = dir.join("disk.img");
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let (hard, soft) = (dir.join("hard.img"), dir.join("soft.img"));
    std::fs::hard_link(&img, &hard).unwrap();
    std::os::unix::fs::symlink(&img, &soft).unwrap();
    for other in [&hard, &soft] {
        let m = machine(&dir, "m", &[(&img, false, "raw"), (other, false, "raw")]);
        let (ok, err) = check(&m);
        assert!(!ok && err.contains("use the same image"), "{err}");
        let m = machine(&dir, "m", &[(&img, true, "raw"), (other, true, "raw")]);
        assert!(check(&m).0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn microvm_probe_reads_a_qcow2_disk() {
    if !common::kvm_usable() || !tools() {
        return;
    }
    let dir = tmpdir("read");
    let img = dir.join("disk.qcow2");
    qcow2(&img, "1M", &["write -P 0xab 0 32k"]);
    let before = sha(&img);
    let m = machine(&dir, "q", &[(&img, true, "qcow2")]);
    let out = probe(&m, &format!("{QUICK} blkwrite=0 blksectors=128"))
        .output()
        .unwrap();
    let (log, lines) = report(&dir, "q");
    let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let get = |tag: &str| lines.iter().find(|l| l.tag == tag);
    let dev = get("blk").unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(dev.get_u64("capacity"), Some(2048), "{ctx}");
    assert_eq!(dev.get_u64("ro"), Some(1), "{ctx}");
    assert!(get("blk ro ok").is_some(), "{ctx}");
    let read = get("blk read ok").unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(read.get_u64("sectors"), Some(128), "{ctx}");
    // 32 KiB of 0xab, then 32 KiB of unallocated zeros.
    assert_eq!(read.get_u64("sum"), Some(32768 * 0xab), "{ctx}");
    assert_eq!(sha(&img), before, "image changed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn microvm_probe_writes_a_qcow2_disk() {
    if !common::kvm_usable() || !tools() {
        return;
    }
    let dir = tmpdir("write");
    let img = dir.join("disk.qcow2");
    qcow2(&img, "4M", &[]);
    let m = machine(&dir, "w", &[(&img, false, "qcow2")]);
    let out = probe(&m, &format!("{QUICK} blksectors=128"))
        .output()
        .unwrap();
    let (log, lines) = report(&dir, "w");
    let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert!(has(&lines, "blk rw ok"), "{ctx}");
    assert_clean(&img);
    assert_pattern(&img, 128, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 1 MiB base of 0x5a written by qemu-io, and `n` overlays on it.
fn base_and_overlays(dir: &Path, n: usize) -> (PathBuf, Vec<PathBuf>) {
    let base = dir.join("base.qcow2");
    qcow2(&base, "1M", &["write -P 0x5a 0 1M"]);
    let overlays = (0..n)
        .map(|i| {
            let o = dir.join(format!("node{i}.qcow2"));
            assert_eq!(create_overlay(&o, &base, Format::Qcow2).unwrap(), 1 << 20);
            o
        })
        .collect();
    (base, overlays)
}

#[test]
fn guest_writes_land_in_the_overlay() {
    if !common::kvm_usable() || !tools() {
        return;
    }
    let dir = tmpdir("overlay");
    let (base, over) = base_and_overlays(&dir, 1);
    let before = sha(&base);
    let m = machine(&dir, "o", &[(&over[0], false, "qcow2")]);
    let out = probe(&m, &format!("{QUICK} blksectors=100"))
        .output()
        .unwrap();
    let (log, lines) = report(&dir, "o");
    let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert!(has(&lines, "blk rw ok"), "{ctx}");
    assert_eq!(sha(&base), before, "the base changed");
    assert_clean(&over[0]);
    // The guest's sectors, then the base's bytes (the first cluster copied up).
    assert_pattern(&over[0], 100, 0x5a);
    let info = tool(
        "qemu-img",
        &["info", "--output=json", over[0].to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["backing-filename"], base.to_str().unwrap());
    assert_eq!(v["backing-filename-format"], "qcow2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_overlays_of_one_base_run_at_once() {
    if !common::kvm_usable() || !tools() {
        return;
    }
    let dir = tmpdir("two");
    let (base, over) = base_and_overlays(&dir, 2);
    let before = sha(&base);
    let mut vms: Vec<Child> = over
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let m = machine(&dir, &format!("n{i}"), &[(o, false, "qcow2")]);
            probe(&m, &format!("{QUICK} blksectors={} exit=halt", 16 + 8 * i))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, vm) in vms.iter_mut().enumerate() {
        wait_for(&dir, &format!("n{i}"), "blk rw ok", vm);
    }
    // Both halted with their disks open; SIGTERM ends them cleanly.
    for vm in &mut vms {
        // SAFETY: kill(2) on our own child's pid; no memory is passed.
        unsafe { libc::kill(vm.id() as i32, libc::SIGTERM) };
        vm.wait().unwrap();
    }
    assert_eq!(sha(&base), before, "the base changed");
    for (i, o) in over.iter().enumerate() {
        assert_clean(o);
        assert_pattern(o, 16 + 8 * i, 0x5a);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kill_9_after_the_guest_flush() {
    if !common::kvm_usable() || !tools() {
        return;
    }
    let dir = tmpdir("kill");
    let (base, over) = base_and_overlays(&dir, 1);
    let m = machine(&dir, "k", &[(&over[0], false, "qcow2")]);
    // The probe writes, reads back, flushes, reports, then halts until killed.
    let mut vm = probe(&m, &format!("{QUICK} blksectors=128 exit=halt"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&dir, "k", "blk rw ok", &mut vm);
    vm.kill().unwrap(); // SIGKILL
    vm.wait().unwrap();
    let (corruptions, _leaks, text) = qemu_check(&over[0]);
    assert_eq!(corruptions, 0, "{text}");
    assert_pattern(&over[0], 128, 0x5a);
    assert!(contents(&base).iter().all(|&b| b == 0x5a));
    let _ = std::fs::remove_dir_all(&dir);
}
