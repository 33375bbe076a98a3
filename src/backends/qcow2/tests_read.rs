//! qcow2 reader tests: images made by qemu-img / qemu-io (skipped, saying so, when
//! qemu-utils is missing), hand-made corruptions, and a random-corruption fuzz of a
//! tiny in-memory image.

use super::header::MAGIC;
use super::test_util::{make, tmp, tool};
use super::*;
use crate::testing::Rng;
use std::path::PathBuf;

fn open(p: &PathBuf) -> Result<Qcow2<Vec<u8>>, Qcow2Error> {
    Qcow2::open(std::fs::read(p).unwrap())
}

fn read(q: &Qcow2<Vec<u8>>, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut b = vec![0x77; len];
    q.read_at(off, &mut b).map(|_| b)
}

#[test]
fn v3_and_v2_patterns_and_sparse_zeros() {
    for (name, opts) in [("v3", ""), ("v2", "compat=0.10,cluster_size=4096")] {
        let Some(p) = make(
            name,
            opts,
            "4M",
            &["write -P 0xab 0 64k", "write -P 0xcd 300k 5k"],
        ) else {
            return;
        };
        let q = open(&p).unwrap();
        assert_eq!(q.header().version, if name == "v2" { 2 } else { 3 });
        assert_eq!(q.size(), 4 << 20);
        assert!(read(&q, 0, 64 << 10).unwrap().iter().all(|&b| b == 0xab));
        let b = read(&q, 64 << 10, 300 << 10).unwrap();
        assert!(b[..236 << 10].iter().all(|&b| b == 0));
        assert!(b[236 << 10..241 << 10].iter().all(|&b| b == 0xcd));
        assert!(b[241 << 10..].iter().all(|&b| b == 0));
        // A read across the pattern's edge, not sector aligned.
        let b = read(&q, (64 << 10) - 3, 6).unwrap();
        assert_eq!(b, [0xab, 0xab, 0xab, 0, 0, 0]);
        assert!(read(&q, (4 << 20) - 512, 512)
            .unwrap()
            .iter()
            .all(|&b| b == 0));
        assert!(read(&q, (4 << 20) - 511, 512).is_err());
        // Through DiskImage: qcow2 is read only, and sized by the header.
        let d = crate::backends::disk::DiskImage::open(&p, true, "qcow2").unwrap();
        assert_eq!(d.sectors(), 8192);
        let mut s = [0u8; 512];
        d.read_at(0, &mut s).unwrap();
        assert_eq!(s, [0xab; 512]);
        assert!(d.write_at(0, &s).is_err());
        drop(d);
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn sparse_and_zero_clusters() {
    let Some(p) = make(
        "sparse",
        "",
        "1G",
        &["write -P 0x11 0 128k", "write -z 0 64k"],
    ) else {
        return;
    };
    assert!(std::fs::metadata(&p).unwrap().len() < 2 << 20);
    let q = open(&p).unwrap();
    assert!(read(&q, 0, 64 << 10).unwrap().iter().all(|&b| b == 0));
    assert!(read(&q, 64 << 10, 64 << 10)
        .unwrap()
        .iter()
        .all(|&b| b == 0x11));
    assert!(read(&q, 700 << 20, 1 << 20)
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn compressed_clusters_inflate() {
    let raw = tmp("c.raw");
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i / 1000 + i % 7) as u8).collect();
    std::fs::write(&raw, &data).unwrap();
    let p = tmp("c.qcow2");
    let (rs, ps) = (raw.to_str().unwrap(), p.to_str().unwrap());
    if tool(
        "qemu-img",
        &["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", rs, ps],
    )
    .is_none()
    {
        return;
    }
    assert!(std::fs::metadata(&p).unwrap().len() < data.len() as u64 / 2);
    let q = open(&p).unwrap();
    assert_eq!(read(&q, 0, data.len()).unwrap(), data);
    assert_eq!(read(&q, 70_001, 3).unwrap(), &data[70_001..70_004]);
    // Corrupting the compressed stream gives an error, not garbage or a panic.
    let mut bytes = std::fs::read(&p).unwrap();
    let l2 = (be64(&bytes, be64(&bytes, 40) as usize) & OFFSET_MASK) as usize;
    let e = be64(&bytes, l2);
    assert!(e & COMPRESSED != 0);
    let off = (e & ((1 << 54) - 1)) as usize; // cluster_bits 16: x = 54
    bytes[off..off + 64].fill(0xff);
    let q = Qcow2::open(bytes).unwrap();
    assert!(read(&q, 0, 512).is_err());
    let _ = std::fs::remove_file(&raw);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn refused_at_open() {
    let Some(base) = make("base", "", "1M", &[]) else {
        return;
    };
    let b = base.to_str().unwrap();
    let over = make(
        "over",
        &format!("backing_file={b},backing_fmt=qcow2"),
        "1M",
        &[],
    )
    .unwrap();
    assert!(matches!(open(&over), Err(Qcow2Error::Backing)));
    let ext = make("ext", "extended_l2=on", "1M", &[]).unwrap();
    assert!(matches!(open(&ext), Err(Qcow2Error::ExtendedL2)));
    let mut bytes = std::fs::read(&base).unwrap();
    bytes[72 + 7] |= 1 << 5; // unknown incompatible bit 5
    assert!(matches!(
        Qcow2::open(bytes.clone()),
        Err(Qcow2Error::Incompatible(0x20))
    ));
    bytes[72 + 7] = 0;
    bytes[23] = 22; // cluster_bits
    assert!(matches!(
        Qcow2::open(bytes.clone()),
        Err(Qcow2Error::ClusterBits(22))
    ));
    bytes[23] = 16;
    bytes[35] = 1; // crypt_method AES
    assert!(matches!(Qcow2::open(bytes), Err(Qcow2Error::Encrypted(1))));
    assert!(matches!(
        Qcow2::open(b"QFI\xfb".to_vec()),
        Err(Qcow2Error::Magic)
    ));
    assert!(matches!(Qcow2::open(vec![0; 4096]), Err(Qcow2Error::Magic)));
    for p in [base, over, ext] {
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn corrupt_tables_give_io_errors() {
    let Some(p) = make("bad", "", "4M", &["write -P 0xab 0 64k"]) else {
        return;
    };
    let good = std::fs::read(&p).unwrap();
    let l1 = be64(&good, 40) as usize;
    let l2 = (be64(&good, l1) & OFFSET_MASK) as usize;
    // The file cut in the middle of the L2 table.
    let q = Qcow2::open(good[..l2 + 100].to_vec()).unwrap();
    assert!(read(&q, 0, 512).is_err());
    // L1 entries flipped: misaligned, far past the end, all ones.
    for v in [
        be64(&good, l1) ^ 0x1200,
        1 << 50,
        u64::MAX,
        be64(&good, l1) + 512,
    ] {
        let mut b = good.clone();
        b[l1..l1 + 8].copy_from_slice(&v.to_be_bytes());
        let q = Qcow2::open(b).unwrap();
        assert!(read(&q, 0, 512).is_err(), "L1 entry {v:#x}");
    }
    // An L2 entry pointing past the end or misaligned.
    for v in [(1u64 << 63) | (1 << 40), 0x1_0200] {
        let mut b = good.clone();
        b[l2..l2 + 8].copy_from_slice(&v.to_be_bytes());
        let q = Qcow2::open(b).unwrap();
        assert!(read(&q, 0, 512).is_err(), "L2 entry {v:#x}");
    }
    // An L1 table past the end of the file is refused at open.
    let mut b = good.clone();
    b[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes());
    assert!(matches!(Qcow2::open(b), Err(Qcow2Error::Header(_))));
    std::fs::remove_file(&p).unwrap();
}

fn put32(v: &mut [u8], at: usize, x: u32) {
    v[at..at + 4].copy_from_slice(&x.to_be_bytes());
}

fn put64(v: &mut [u8], at: usize, x: u64) {
    v[at..at + 8].copy_from_slice(&x.to_be_bytes());
}

/// A v3 image of 512-byte clusters, 4 KiB virtual: guest cluster 0 = 0x11s,
/// 3 = 0x22s, 5 = the zero flag, the rest unallocated.
fn tiny() -> Vec<u8> {
    let mut v = vec![0u8; 2560];
    put32(&mut v, 0, MAGIC);
    put32(&mut v, 4, 3);
    put32(&mut v, 20, 9);
    put64(&mut v, 24, 4096);
    put32(&mut v, 36, 1);
    put64(&mut v, 40, 512);
    put32(&mut v, 100, 104);
    put64(&mut v, 512, 1024 | 1 << 63);
    put64(&mut v, 1024, 1536 | 1 << 63);
    put64(&mut v, 1024 + 3 * 8, 2048 | 1 << 63);
    put64(&mut v, 1024 + 5 * 8, 2048 | 1);
    v[1536..2048].fill(0x11);
    v[2048..].fill(0x22);
    v
}

#[test]
fn tiny_image_reads() {
    let q = Qcow2::open(tiny()).unwrap();
    let b = read(&q, 0, 4096).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0x11));
    assert!(b[512..1536].iter().all(|&x| x == 0));
    assert!(b[1536..2048].iter().all(|&x| x == 0x22));
    assert!(b[2048..].iter().all(|&x| x == 0));
}

/// 100,000 random corruptions of the header and tables (`VMRUN_FUZZ_CASES` to
/// change the count): opening either fails cleanly or gives a reader whose reads
/// succeed or fail, never panic.
#[test]
fn fuzz_random_corruption() {
    let cases: u64 = std::env::var("VMRUN_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let base = tiny();
    let mut rng = Rng(0x9c0f_2a11_d00d_f00d);
    let (mut opened, mut read_ok) = (0u64, 0u64);
    for _ in 0..cases {
        let mut v = base.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] = rng.next() as u8;
                }
                2 => {
                    let i = (rng.below(v.len() as u64 / 8) * 8) as usize;
                    let x = if rng.chance(50) {
                        rng.next()
                    } else {
                        rng.below(4096) | (rng.next() & (3 << 62))
                    };
                    put64(&mut v, i, x);
                }
                _ => {
                    let at = [20usize, 24, 36, 40, 100][rng.below(5) as usize];
                    let x = rng.below(64) as u32;
                    put32(&mut v, at, x);
                }
            }
        }
        if rng.chance(10) {
            v.truncate(rng.below(v.len() as u64 + 1) as usize);
        }
        let Ok(q) = Qcow2::open(v) else {
            continue;
        };
        opened += 1;
        for _ in 0..3 {
            let off = rng.below(q.size().saturating_add(1024).min(1 << 32));
            let len = rng.below(9000) as usize;
            if read(&q, off, len).is_ok() {
                read_ok += 1;
            }
        }
    }
    eprintln!("{cases} cases: {opened} opened, {read_ok} reads ok");
    assert!(opened > cases / 10 && read_ok > 0);
}
