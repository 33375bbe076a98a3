//! qcow2 disks end to end: `vmrun check` refuses a writable qcow2 disk and a bad
//! image; the probe (blkwrite=0) reads a qcow2 image made by qemu-img/qemu-io through
//! virtio-mmio on microvm and sees the pattern. Needs qemu-utils (and /dev/kvm for
//! the boot); says so and skips without them.

use std::path::{Path, PathBuf};
use std::process::Command;

use vmrun::boot::probe::parse_report;

mod common;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmrun-qcow2-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tool(name: &str, args: &[&str]) -> Option<()> {
    match Command::new(name).args(args).output() {
        Err(_) => {
            common::require(false, &format!("{name} not found (install qemu-utils)"));
            None
        }
        Ok(o) => {
            assert!(o.status.success(), "{name} {args:?}: {o:?}");
            Some(())
        }
    }
}

/// A 1 MiB qcow2 image whose first 32 KiB are 0xab, the rest unallocated.
fn image(dir: &Path) -> Option<PathBuf> {
    let p = dir.join("disk.qcow2");
    let s = p.to_str().unwrap();
    tool("qemu-img", &["create", "-q", "-f", "qcow2", s, "1M"])?;
    tool("qemu-io", &["-f", "qcow2", "-c", "write -P 0xab 0 32k", s])?;
    Some(p)
}

fn machine(dir: &Path, disk: &Path, readonly: bool) -> PathBuf {
    let t = format!(
        "[machine]\nname = \"q\"\nboard = \"microvm\"\nmemory = \"64MiB\"\ncpus = 1\n\n\
         [[device]]\nid = \"disk0\"\nkind = \"disk\"\npath = \"{}\"\nformat = \"qcow2\"\nreadonly = {readonly}\n\n\
         [[device]]\nid = \"com1\"\nbackend = \"file\"\npath = \"{}\"\n",
        disk.display(),
        dir.join("com1.log").display()
    );
    let f = dir.join(format!("m-{readonly}.toml"));
    std::fs::write(&f, t).unwrap();
    f
}

fn vmrun(args: &[&str]) -> std::process::Output {
    common::vmrun().args(args).output().unwrap()
}

#[test]
fn check_refuses_writable_and_bad_images() {
    let dir = tmpdir("check");
    let Some(img) = image(&dir) else {
        return;
    };
    let ok = machine(&dir, &img, true);
    let out = vmrun(&["check", ok.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rw = machine(&dir, &img, false);
    let out = vmrun(&["check", rw.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("qcow2 images are read-only in vmrun: set readonly = true, or convert with qemu-img convert -O raw"),
        "{err}"
    );
    // A raw file declared qcow2: the header is checked at check time.
    let raw = dir.join("raw.img");
    std::fs::write(&raw, vec![0u8; 4096]).unwrap();
    let m = machine(&dir, &raw, true);
    let out = vmrun(&["check", m.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("not a usable qcow2 image"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn microvm_probe_reads_a_qcow2_disk() {
    if !common::kvm_usable() {
        return;
    }
    let dir = tmpdir("boot");
    let Some(img) = image(&dir) else {
        return;
    };
    let before = std::fs::read(&img).unwrap();
    let m = machine(&dir, &img, true);
    let out = common::vmrun()
        .args(["probe", m.to_str().unwrap(), "--timeout", "60s", "--"])
        .args("quick=1 smp=0 fwcfg=0 net=0 blkwrite=0 blksectors=128".split_whitespace())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("com1.log")).unwrap_or_default();
    let ctx = format!("{log}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let lines = parse_report(&log).unwrap_or_else(|e| panic!("bad report ({e}):\n{log}"));
    let get = |tag: &str| lines.iter().find(|l| l.tag == tag);
    let dev = get("blk").unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(dev.get_u64("capacity"), Some(2048), "{ctx}");
    assert_eq!(dev.get_u64("ro"), Some(1), "{ctx}");
    assert!(get("blk ro ok").is_some(), "{ctx}");
    let read = get("blk read ok").unwrap_or_else(|| panic!("{ctx}"));
    assert_eq!(read.get_u64("sectors"), Some(128), "{ctx}");
    // 32 KiB of 0xab, then 32 KiB of unallocated zeros.
    assert_eq!(read.get_u64("sum"), Some(32768 * 0xab), "{ctx}");
    assert_eq!(std::fs::read(&img).unwrap(), before, "image changed");
    let _ = std::fs::remove_dir_all(&dir);
}
