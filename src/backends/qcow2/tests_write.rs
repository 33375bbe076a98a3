//! Writes judged by QEMU's tools: images made by qemu-img / qemu-io, written through
//! `DiskImage` (or `Qcow2`), then `qemu-img check` must find no errors and no leaks
//! and `qemu-io read -P` must see the bytes. Copy-on-write from raw and qcow2
//! backing files, zero and compressed clusters, every refcount width, refcount
//! table growth, an image past one L2 table's reach. Skipped (saying so) without
//! qemu-utils, failed under CI=true.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::test_util::{assert_clean, make, qemu_reads, tmp, tool};
use super::*;
use crate::backends::disk::{DiskImage, Format};

/// Opens `p` writable through DiskImage, writes `(offset, len, byte)` runs,
/// flushes, closes.
fn write_runs(p: &Path, runs: &[(u64, usize, u8)]) {
    let d = DiskImage::open(p, false, "qcow2").unwrap();
    for &(off, len, b) in runs {
        d.write_at(off, &vec![b; len]).unwrap();
    }
    d.flush().unwrap();
}

/// qemu-io sees each `(offset, len, byte)` run.
fn assert_runs(p: &Path, runs: &[(u64, u64, u8)]) {
    for &(off, len, b) in runs {
        assert!(
            qemu_reads(p, "qcow2", b, off, len),
            "{}: {len} bytes of {b:#x} at {off}",
            p.display()
        );
    }
}

fn sha(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

#[test]
fn writes_pass_qemu_img_check() {
    for (name, opts) in [
        ("w3", ""),
        ("w2", "compat=0.10"),
        ("w3-4k", "cluster_size=4096"),
        ("w3-lazy", "lazy_refcounts=on"),
    ] {
        let Some(p) = make(name, opts, "64M", &["write -P 0x11 0 192k"]) else {
            return;
        };
        write_runs(
            &p,
            &[
                (0x1000, 0x200, 0xa1),
                (100 << 10, 300 << 10, 0xa2),
                (10 << 20, 64 << 10, 0xa3),
                ((20 << 20) + 7, 1000, 0xa4),
                ((64 << 20) - 512, 512, 0xa5),
            ],
        );
        assert_clean(&p);
        assert_runs(
            &p,
            &[
                (0, 0x1000, 0x11),
                (0x1000, 0x200, 0xa1),
                (0x1200, (100 << 10) - 0x1200, 0x11),
                (100 << 10, 300 << 10, 0xa2),
                (400 << 10, 100 << 10, 0),
                (10 << 20, 64 << 10, 0xa3),
                (20 << 20, 7, 0),
                ((20 << 20) + 7, 1000, 0xa4),
                ((20 << 20) + 1007, 4000, 0),
                ((64 << 20) - 512, 512, 0xa5),
            ],
        );
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn copy_on_write_from_a_backing_chain() {
    let dir = tmp("chain");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (base, mid, top) = (
        dir.join("base.raw"),
        dir.join("mid.qcow2"),
        dir.join("top.qcow2"),
    );
    std::fs::write(&base, vec![0x5a; 4 << 20]).unwrap();
    let (bs, ms) = (base.to_str().unwrap(), mid.to_str().unwrap());
    let made = tool(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-b", bs, "-F", "raw", ms],
    );
    if made.is_none() {
        return;
    }
    tool(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x6b 1M 128k", ms],
    )
    .unwrap();
    assert_eq!(create_overlay(&top, &mid, Format::Qcow2).unwrap(), 4 << 20);
    // Not twice: an existing file is never replaced.
    assert!(create_overlay(&top, &mid, Format::Qcow2).is_err());
    let before = (sha(&base), sha(&mid));
    write_runs(
        &top,
        &[
            (0, 64 << 10, 0x7c),
            ((1 << 20) + 1000, 3000, 0x7c),
            ((3 << 20) + 5, 10, 0x7c),
        ],
    );
    assert_eq!((sha(&base), sha(&mid)), before, "a backing file changed");
    assert_clean(&top);
    let m = 1u64 << 20;
    assert_runs(
        &top,
        &[
            (0, 64 << 10, 0x7c),
            (64 << 10, m - (64 << 10), 0x5a),
            (m, 1000, 0x6b),
            (m + 1000, 3000, 0x7c),
            (m + 4000, (128 << 10) - 4000, 0x6b),
            (3 * m, 5, 0x5a),
            (3 * m + 5, 10, 0x7c),
            (3 * m + 15, m - 15, 0x5a),
        ],
    );
    let info = tool(
        "qemu-img",
        &["info", "--output=json", top.to_str().unwrap()],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["backing-filename"], ms);
    assert_eq!(v["backing-filename-format"], "qcow2");
    // A relative name is found from the overlay's directory, wherever we run.
    let rel = dir.join("rel.qcow2");
    create_overlay(&rel, Path::new("mid.qcow2"), Format::Qcow2).unwrap();
    let d = DiskImage::open(&rel, true, "qcow2").unwrap();
    let mut b = [0u8; 2];
    d.read_at(m - 1, &mut b).unwrap();
    assert_eq!(b, [0x5a, 0x6b]);
    assert!(qemu_reads(&rel, "qcow2", 0x6b, m, 128 << 10));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zero_clusters_read_as_zero_and_are_overwritten() {
    let dir = tmp("zero");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (base, p) = (dir.join("base.raw"), dir.join("z.qcow2"));
    std::fs::write(&base, vec![0x5a; 1 << 20]).unwrap();
    if create_overlay(&p, &base, Format::Raw).is_err() {
        panic!("create_overlay");
    }
    let ps = p.to_str().unwrap();
    let io = [
        "write -P 0x11 0 256k",
        "write -z 64k 64k",
        "write -z 512k 64k",
    ];
    for c in io {
        if tool("qemu-io", &["-f", "qcow2", "-c", c, ps]).is_none() {
            return;
        }
    }
    let d = DiskImage::open(&p, false, "qcow2").unwrap();
    let mut b = vec![0u8; 1 << 20];
    d.read_at(0, &mut b).unwrap();
    assert!(
        b[64 << 10..128 << 10].iter().all(|&x| x == 0),
        "zero + offset"
    );
    assert!(
        b[512 << 10..576 << 10].iter().all(|&x| x == 0),
        "zero, no backing"
    );
    assert!(b[576 << 10..].iter().all(|&x| x == 0x5a));
    d.write_at((64 << 10) + 100, &[0x22; 50]).unwrap();
    d.write_at((512 << 10) + 100, &[0x22; 50]).unwrap();
    d.flush().unwrap();
    drop(d);
    assert_clean(&p);
    assert_runs(
        &p,
        &[
            (0, 64 << 10, 0x11),
            (64 << 10, 100, 0),
            ((64 << 10) + 100, 50, 0x22),
            ((64 << 10) + 150, (64 << 10) - 150, 0),
            (128 << 10, 128 << 10, 0x11),
            (256 << 10, 256 << 10, 0x5a),
            (512 << 10, 100, 0),
            ((512 << 10) + 100, 50, 0x22),
            ((512 << 10) + 150, (64 << 10) - 150, 0),
            (576 << 10, 448 << 10, 0x5a),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn convert_compressed(name: &str, data: &[u8]) -> Option<PathBuf> {
    let raw = tmp(&format!("{name}.raw"));
    std::fs::write(&raw, data).unwrap();
    let p = tmp(&format!("{name}.qcow2"));
    let _ = std::fs::remove_file(&p);
    let (rs, ps) = (raw.to_str().unwrap(), p.to_str().unwrap());
    tool(
        "qemu-img",
        &["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", rs, ps],
    )?;
    std::fs::remove_file(&raw).unwrap();
    Some(p)
}

/// The image's guest bytes, as qemu-img converts them to raw.
fn qemu_contents(p: &Path) -> Vec<u8> {
    let raw = p.with_extension("out.raw");
    let args = [
        "convert",
        "-q",
        "-O",
        "raw",
        p.to_str().unwrap(),
        raw.to_str().unwrap(),
    ];
    tool("qemu-img", &args).unwrap();
    let v = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    v
}

#[test]
fn compressed_clusters_are_rewritten() {
    let mut data: Vec<u8> = (0..1u32 << 20).map(|i| (i / 1000 + i % 7) as u8).collect();
    let Some(p) = convert_compressed("cw", &data) else {
        return;
    };
    let d = DiskImage::open(&p, false, "qcow2").unwrap();
    for (off, len, b) in [
        (100usize, 10usize, 1u8),
        (5 << 16, 70_000, 2),
        (7 << 16, 1 << 16, 3),
    ] {
        d.write_at(off as u64, &vec![b; len]).unwrap();
        data[off..off + len].fill(b);
    }
    let mut back = vec![0u8; data.len()];
    d.read_at(0, &mut back).unwrap();
    assert!(back == data);
    d.flush().unwrap();
    drop(d);
    assert_clean(&p);
    assert!(qemu_contents(&p) == data);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn every_refcount_width() {
    for bits in [1, 2, 4, 8, 16, 32, 64] {
        let opts = format!("cluster_size=4096,refcount_bits={bits}");
        let Some(p) = make(&format!("rc{bits}"), &opts, "16M", &["write -P 0x11 0 8k"]) else {
            return;
        };
        write_runs(&p, &[(4096 + 10, 9000, 0x33), (15 << 20, 5000, 0x44)]);
        assert_clean(&p);
        assert_runs(
            &p,
            &[(0, 4106, 0x11), (4106, 9000, 0x33), (15 << 20, 5000, 0x44)],
        );
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn refcount_table_grows() {
    // 512-byte clusters, 64-bit refcounts: one table cluster covers 2 MiB of file.
    let Some(p) = make("grow", "cluster_size=512,refcount_bits=64", "8M", &[]) else {
        return;
    };
    let table_at = |p: &Path| be64(&std::fs::read(p).unwrap(), 48);
    let before = table_at(&p);
    let d = DiskImage::open(&p, false, "qcow2").unwrap();
    for i in 0..80u64 {
        d.write_at(i << 16, &vec![i as u8 | 0x80; 1 << 16]).unwrap();
    }
    d.flush().unwrap();
    drop(d);
    assert_ne!(table_at(&p), before, "the refcount table did not move");
    assert!(std::fs::metadata(&p).unwrap().len() > 5 << 20);
    assert_clean(&p);
    for i in [0u64, 31, 32, 79] {
        assert!(qemu_reads(&p, "qcow2", i as u8 | 0x80, i << 16, 1 << 16));
    }
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn writes_past_one_l2_table() {
    // 64 KiB clusters: an L2 table covers 512 MiB.
    let Some(p) = make("big", "", "2G", &[]) else {
        return;
    };
    let runs = [
        (0u64, 512usize, 1u8),
        (600 << 20, 70_000, 2),
        ((1536 << 20) + 3, 100, 3),
        ((2 << 30) - 512, 512, 4),
    ];
    write_runs(&p, &runs);
    assert!(std::fs::metadata(&p).unwrap().len() < 2 << 20);
    assert_clean(&p);
    let runs: Vec<(u64, u64, u8)> = runs.iter().map(|&(o, l, b)| (o, l as u64, b)).collect();
    assert_runs(&p, &runs);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn refused_for_writing_only() {
    let Some(p) = make("snap", "", "1M", &["write -P 1 0 4k"]) else {
        return;
    };
    let ps = p.to_str().unwrap();
    tool("qemu-img", &["snapshot", "-c", "s1", ps]).unwrap();
    let why = |p: &Path| match DiskImage::open(p, false, "qcow2") {
        Err(crate::backends::disk::DiskError::Qcow2 { source, .. }) => source,
        other => panic!("{other:?}"),
    };
    assert!(matches!(why(&p), Qcow2Error::Snapshots(1)));
    DiskImage::open(&p, true, "qcow2").unwrap();
    tool("qemu-img", &["snapshot", "-d", "s1", ps]).unwrap();
    // The dirty bit (lazy refcounts not repaired).
    let mut b = std::fs::read(&p).unwrap();
    b[79] |= 1;
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(why(&p), Qcow2Error::Dirty));
    DiskImage::open(&p, true, "qcow2").unwrap();
    // An L1 entry pointing at the refcount block.
    b[79] &= !1;
    let l1 = be64(&b, 40) as usize;
    let rb = be64(&b, be64(&b, 48) as usize);
    b[l1..l1 + 8].copy_from_slice(&(rb | COPIED).to_be_bytes());
    std::fs::write(&p, &b).unwrap();
    assert!(matches!(why(&p), Qcow2Error::Metadata(_)));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn bitmaps_refused_and_unknown_autoclear_bits_cleared() {
    let Some(p) = make("bitmap", "", "1M", &[]) else {
        return;
    };
    let ps = p.to_str().unwrap();
    tool("qemu-img", &["bitmap", "--add", ps, "b0"]).unwrap();
    assert!(matches!(
        DiskImage::open(&p, false, "qcow2"),
        Err(crate::backends::disk::DiskError::Qcow2 {
            source: Qcow2Error::Bitmaps,
            ..
        })
    ));
    DiskImage::open(&p, true, "qcow2").unwrap();
    tool("qemu-img", &["bitmap", "--remove", ps, "b0"]).unwrap();
    let mut b = std::fs::read(&p).unwrap();
    b[88 + 7] |= 1 << 5;
    std::fs::write(&p, &b).unwrap();
    write_runs(&p, &[(0, 4096, 9)]);
    assert_eq!(be64(&std::fs::read(&p).unwrap(), 88), 0);
    assert_clean(&p);
    assert_runs(&p, &[(0, 4096, 9)]);
    std::fs::remove_file(&p).unwrap();
}
