//! Writable opens of corrupt images: random corruption of an image this code wrote,
//! then random writes, reads and flushes. Opening fails cleanly or every access
//! succeeds or fails with an I/O error; nothing panics, and no write lands outside
//! the image's own clusters (counted by its refcounts, or past its end). And host
//! I/O errors at every point of a write sequence leave an image that flushes clean
//! once the errors stop.

use super::test_util::{blank, refcheck, refcount_at};
use super::*;
use crate::testing::Rng;

/// A 96 KiB disk of 512-byte clusters (three L2 tables' reach), partly written.
fn written() -> Vec<u8> {
    let q = Qcow2::open_with(Mem::new(blank(3, 96 << 10, 9, 4, None)), true, None).unwrap();
    let mut rng = Rng(0xfeed_5eed_1234_0001);
    for _ in 0..24 {
        let off = rng.below(96 << 10);
        let len = rng.below(1500).min((96 << 10) - off) as usize;
        q.write_at(off, &vec![rng.next() as u8; len]).unwrap();
    }
    q.flush().unwrap();
    q.store().bytes()
}

fn put64(v: &mut [u8], at: usize, x: u64) {
    v[at..at + 8].copy_from_slice(&x.to_be_bytes());
}

/// One to four random changes, mostly in the metadata at the front of the file.
fn corrupt(rng: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let span = if rng.chance(70) {
            6 << 9
        } else {
            v.len() as u64
        };
        let at = rng.below(span.min(v.len() as u64)) as usize;
        match rng.below(4) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = rng.next() as u8,
            2 => {
                let at = at - at % 8;
                let x = match rng.below(3) {
                    0 => rng.next(),
                    1 => (rng.below(200) << 9) | (rng.next() & (3 << 62)),
                    _ => rng.below(200) << 9 | 1,
                };
                if at + 8 <= v.len() {
                    put64(v, at, x);
                }
            }
            _ => {
                let field = [36usize, 40, 48, 56, 60, 72, 88, 96][rng.below(8) as usize];
                v[field + 3] = rng.below(64) as u8;
            }
        }
    }
    if rng.chance(10) {
        v.truncate(rng.below(v.len() as u64 + 1) as usize);
    }
}

#[test]
fn fuzz_corrupt_images_opened_writable() {
    let cases: u64 = std::env::var("VMRUN_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
        / 2;
    let base = written();
    let mut rng = Rng(0x0dd_c0ffee_u64);
    let (mut opened, mut ok) = (0u64, 0u64);
    for case in 0..cases {
        let mut v = base.clone();
        corrupt(&mut rng, &mut v);
        let end = (v.len() as u64).next_multiple_of(512);
        let mem = Mem::new(v.clone());
        let Ok(q) = Qcow2::open_with(mem.clone(), true, None) else {
            continue;
        };
        opened += 1;
        for _ in 0..6 {
            let off = rng.below(q.size().saturating_add(1024).min(1 << 32));
            let len = rng.below(2000) as usize;
            let r = match rng.below(3) {
                0 => q.read_at(off, &mut vec![0; len]),
                1 => q.flush(),
                _ => q.write_at(off, &vec![0xee; len]),
            };
            ok += u64::from(r.is_ok());
        }
        drop(q);
        for (off, data) in mem.with(|m| std::mem::take(&mut m.writes)) {
            for c in off / 512..(off + data.len() as u64).div_ceil(512) {
                let at = c * 512;
                assert!(
                    at == 0 || at >= end || refcount_at(&v, at) >= 1,
                    "case {case}: write at {off:#x} (+{}) into cluster {c}, not the image's",
                    data.len()
                );
            }
        }
    }
    eprintln!("{cases} cases: {opened} opened writable, {ok} accesses ok");
    assert!(opened > cases / 10 && ok > 0);
}

#[test]
fn host_io_errors_anywhere_leave_a_repairable_image() {
    for n in 0..60 {
        let mem = Mem::new(blank(3, 1 << 20, 9, 6, None));
        let q = Qcow2::open_with(mem.clone(), true, None).unwrap();
        mem.with(|m| m.fail_after = Some(n));
        let mut done = Vec::new();
        for i in 0..12u64 {
            // Disjoint runs, one cluster apart, some crossing cluster edges.
            let (off, len) = (i * 40_000 + 300, 2000 + (i as usize * 97));
            if q.write_at(off, &vec![i as u8 + 1; len]).is_ok() {
                done.push((off, len, i as u8 + 1));
            }
            if i % 4 == 3 {
                let _ = q.flush();
            }
        }
        mem.with(|m| m.fail_after = None);
        q.flush()
            .unwrap_or_else(|e| panic!("n={n}: flush after the errors: {e}"));
        let rep = refcheck(&mem.bytes());
        assert!(rep.errors.is_empty(), "n={n}: {rep:?}");
        for (off, len, b) in done {
            let mut got = vec![0u8; len];
            q.read_at(off, &mut got).unwrap();
            assert!(got.iter().all(|&x| x == b), "n={n}: write at {off} lost");
        }
        let reopened = Qcow2::open(mem.bytes()).unwrap();
        let mut all = vec![0u8; 1 << 20];
        let mut mine = vec![0u8; 1 << 20];
        reopened.read_at(0, &mut all).unwrap();
        q.read_at(0, &mut mine).unwrap();
        assert!(all == mine, "n={n}: the file and the open image differ");
    }
}
