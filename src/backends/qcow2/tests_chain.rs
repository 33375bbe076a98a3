//! Backing chains opened by path: missing files, loops (through symlinks too),
//! unknown formats, too deep a chain, format probing; and the locks: a writable
//! overlay holds its backing files shared, so the base can't be opened for writing
//! while two overlays on it are written at once.

use std::path::{Path, PathBuf};

use super::test_util::tool;
use super::*;
use crate::backends::disk::{inspect, DiskError, DiskImage, Format};

fn dir(name: &str) -> PathBuf {
    let d = super::test_util::tmp(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An overlay whose backing file name is `backing` (which need not exist), made
/// with qemu-img's -u.
fn unsafe_overlay(p: &Path, backing: &str, fmt: &str) -> Option<()> {
    let args = [
        "create", "-q", "-u", "-f", "qcow2", "-b", backing, "-F", fmt,
    ];
    tool(
        "qemu-img",
        &[&args[..], &[p.to_str().unwrap(), "1M"]].concat(),
    )
    .map(|_| ())
}

/// The innermost error of a chain of `DiskError::Backing`.
fn innermost(e: &DiskError) -> &DiskError {
    match e {
        DiskError::Backing { source, .. } => innermost(source),
        e => e,
    }
}

#[test]
fn broken_chains_are_errors() {
    let d = dir("broken");
    let a = d.join("a.qcow2");
    if unsafe_overlay(&a, "missing.raw", "raw").is_none() {
        return;
    }
    let e = inspect(&a, true, "qcow2").unwrap_err();
    let msg = crate::error_chain(&e);
    assert!(matches!(innermost(&e), DiskError::Open { .. }), "{msg}");
    assert!(
        msg.contains("backing file of") && msg.contains("missing.raw"),
        "{msg}"
    );
    // a -> b -> a, and c -> link -> c.
    let b = d.join("b.qcow2");
    std::fs::remove_file(&a).unwrap();
    unsafe_overlay(&a, "b.qcow2", "qcow2").unwrap();
    unsafe_overlay(&b, "a.qcow2", "qcow2").unwrap();
    let e = inspect(&a, false, "qcow2").unwrap_err();
    assert!(
        matches!(innermost(&e), DiskError::Loop { .. }),
        "{}",
        crate::error_chain(&e)
    );
    let c = d.join("c.qcow2");
    std::os::unix::fs::symlink(&c, d.join("link")).unwrap();
    unsafe_overlay(&c, "link", "qcow2").unwrap();
    let e = DiskImage::open(&c, false, "qcow2").unwrap_err();
    assert!(
        matches!(innermost(&e), DiskError::Loop { .. }),
        "{}",
        crate::error_chain(&e)
    );
    // A format vmrun does not read.
    let v = d.join("v.qcow2");
    unsafe_overlay(&v, "c.qcow2", "vmdk").unwrap();
    let e = inspect(&v, true, "qcow2").unwrap_err();
    assert!(
        matches!(innermost(&e), DiskError::Format { .. }),
        "{}",
        crate::error_chain(&e)
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn deep_chains_stop_and_formats_are_probed() {
    let d = dir("deep");
    let base = d.join("0.raw");
    std::fs::write(&base, vec![7u8; 4096]).unwrap();
    let mut prev = base.clone();
    for i in 1..=chain::MAX_DEPTH + 1 {
        let p = d.join(format!("{i}.qcow2"));
        let fmt = if i == 1 { Format::Raw } else { Format::Qcow2 };
        create_overlay(&p, &prev, fmt).unwrap();
        prev = p;
    }
    // MAX_DEPTH backing files below the top are fine; one more is not.
    let ok = d.join(format!("{}.qcow2", chain::MAX_DEPTH));
    assert_eq!(
        inspect(&ok, false, "qcow2").unwrap().backing.len(),
        chain::MAX_DEPTH
    );
    let e = inspect(&prev, false, "qcow2").unwrap_err();
    assert!(
        matches!(innermost(&e), DiskError::Depth { .. }),
        "{}",
        crate::error_chain(&e)
    );
    // Without a backing format extension the backing file is probed (qemu-img no
    // longer makes such images: the extension's type is overwritten with one
    // nobody knows).
    let (q, r) = (d.join("probe-q.qcow2"), d.join("probe-r.qcow2"));
    for (p, b) in [(&q, d.join("1.qcow2")), (&r, base.clone())] {
        let name = b.to_str().unwrap();
        let mut v = super::test_util::blank(3, 4096, 16, 4, Some((name, "qcow2")));
        v[112..116].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        std::fs::write(p, v).unwrap();
    }
    for p in [q, r] {
        let img = DiskImage::open(&p, true, "qcow2").unwrap();
        let mut b = [0u8; 4];
        img.read_at(100, &mut b).unwrap();
        assert_eq!(b, [7; 4], "{}", p.display());
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn backing_files_are_locked_shared() {
    let d = dir("locks");
    let base = d.join("base.raw");
    std::fs::write(&base, vec![3u8; 1 << 20]).unwrap();
    let (o1, o2) = (d.join("o1.qcow2"), d.join("o2.qcow2"));
    create_overlay(&o1, &base, Format::Raw).unwrap();
    create_overlay(&o2, &base, Format::Raw).unwrap();
    // Two overlays on one base, written at once.
    let w1 = DiskImage::open(&o1, false, "qcow2").unwrap();
    let w2 = DiskImage::open(&o2, false, "qcow2").unwrap();
    w1.write_at(0, &[1; 512]).unwrap();
    w2.write_at(0, &[2; 512]).unwrap();
    // The base can be read, not written, while they run; an overlay has one writer.
    let r = DiskImage::open(&base, true, "raw").unwrap();
    let e = DiskImage::open(&base, false, "raw").unwrap_err();
    assert!(matches!(e, DiskError::Locked { .. }), "{e}");
    let e = DiskImage::open(&o1, true, "qcow2").unwrap_err();
    assert!(matches!(e, DiskError::Locked { .. }), "{e}");
    drop(r);
    // A writer of the base keeps overlays on it from opening.
    drop((w1, w2));
    let wb = DiskImage::open(&base, false, "raw").unwrap();
    let e = DiskImage::open(&o1, false, "qcow2").unwrap_err();
    assert!(
        matches!(innermost(&e), DiskError::Locked { .. }),
        "{}",
        crate::error_chain(&e)
    );
    drop(wb);
    for (p, b) in [(&o1, 1u8), (&o2, 2)] {
        let img = DiskImage::open(p, true, "qcow2").unwrap();
        let mut s = [0u8; 513];
        img.read_at(0, &mut s).unwrap();
        assert!(s[..512].iter().all(|&x| x == b) && s[512] == 3);
    }
    assert!(std::fs::read(&base).unwrap().iter().all(|&x| x == 3));
    let _ = std::fs::remove_dir_all(&d);
}
