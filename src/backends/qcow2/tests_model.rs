//! Property tests on in-memory images: random writes, reads, flushes, reopens and
//! simulated crashes against a model (a plain byte vector), on images of several
//! cluster sizes and refcount widths, with no backing file, a raw one or a qcow2
//! one. After every flush the refcounts are exactly what the references need; a
//! crash (the synced bytes plus a random subset of the later writes) leaves at most
//! leaks and every byte flushed before it. `VMRUN_QCOW2_CASES` sets the case count.

use super::test_util::{blank, refcheck};
use super::*;
use crate::testing::Rng;

fn cases(default: u64) -> u64 {
    std::env::var("VMRUN_QCOW2_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A backing file the case can rebuild at will (each open takes its own).
#[derive(Clone)]
enum Base {
    None,
    Raw(Vec<u8>),
    Qcow2(Vec<u8>),
}

impl Base {
    fn disk(&self) -> Option<Box<dyn ReadDisk>> {
        match self {
            Base::None => None,
            Base::Raw(b) => Some(Box::new(RawDisk::new(b.clone()).unwrap())),
            Base::Qcow2(b) => Some(Box::new(Qcow2::open(b.clone()).unwrap())),
        }
    }

    /// The guest bytes the backing file gives a disk of `size` bytes.
    fn contents(&self, size: usize) -> Vec<u8> {
        let mut v = vec![0u8; size];
        if let Some(d) = self.disk() {
            let n = (d.size() as usize).min(size);
            d.read_at(0, &mut v[..n]).unwrap();
        }
        v
    }

    fn name(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Base::None => None,
            Base::Raw(_) => Some(("base.raw", "raw")),
            Base::Qcow2(_) => Some(("base.qcow2", "qcow2")),
        }
    }
}

/// A qcow2 base image (64 KiB clusters) with random data written by this code.
fn qcow2_base(rng: &mut Rng, size: u64) -> Vec<u8> {
    let q = Qcow2::open_with(Mem::new(blank(3, size, 16, 4, None)), true, None).unwrap();
    for _ in 0..4 {
        let off = rng.below(size);
        let len = rng.below(70_000).min(size - off) as usize;
        q.write_at(off, &vec![rng.next() as u8 | 1; len]).unwrap();
    }
    drop_bytes(q)
}

/// Closes a writable image (its drop writes what is in memory) and returns the
/// file's bytes.
fn drop_bytes(q: Qcow2<Mem>) -> Vec<u8> {
    let store = q.store().clone();
    drop(q);
    store.bytes()
}

struct Case {
    rng: Rng,
    base: Base,
    q: Qcow2<Mem>,
    model: Vec<u8>,
    /// The op that last wrote each byte (ops count from 1).
    last_write: Vec<u32>,
    op: u32,
    /// At each completed flush of this store: its sync count, the op, the model.
    points: Vec<(usize, u32, Vec<u8>)>,
    cluster: u64,
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let (bits, order, version) = match rng.below(7) {
            0 => (9, rng.below(7) as u32, 3),
            1 => (10, 6, 3),
            2 => (12, 4, 2),
            3 => (16, rng.below(7) as u32, 3),
            4 => (9, 4, 2),
            5 => (9, 6, 3),
            _ => (11, 3, 3),
        };
        let cluster = 1u64 << bits;
        // Several L2 tables' reach for small clusters.
        let mut size =
            (cluster * cluster / 8 * (1 + rng.below(5))).min(1 << 20) - rng.below(3) * 512;
        // 512-byte clusters with 64-bit refcounts: one refcount table cluster covers
        // 2 MiB of file; a 3 MiB disk written over outgrows it.
        let grow = (bits, order) == (9, 6) && rng.chance(50);
        if grow {
            size = 3 << 20;
        }
        let base = match rng.below(3) {
            0 => Base::None,
            1 => {
                let n = size as usize - 4096 + rng.below(8192) as usize;
                Base::Raw((0..n).map(|i| (i / 300) as u8 ^ 0x5a).collect())
            }
            _ => {
                let n = size - 1024 + rng.below(2048);
                Base::Qcow2(qcow2_base(&mut rng, n))
            }
        };
        let img = blank(version, size, bits, order, base.name());
        let q = Qcow2::open_with(Mem::new(img), true, base.disk()).unwrap();
        let mut model = base.contents(size as usize);
        if grow {
            for (i, chunk) in model[..5 << 19].chunks_mut(64 << 10).enumerate() {
                chunk.fill(i as u8 | 0x80);
                q.write_at(i as u64 * (64 << 10), chunk).unwrap();
            }
            q.flush().unwrap();
        }
        Self::with(rng, q, base, model)
    }

    /// A case on the open image `q` whose guest bytes are `model`.
    fn with(rng: Rng, q: Qcow2<Mem>, base: Base, model: Vec<u8>) -> Self {
        let synced = q.store().with(|m| m.epochs());
        Self {
            rng,
            last_write: vec![0; model.len()],
            op: 0,
            points: vec![(synced, 0, model.clone())],
            model,
            base,
            cluster: q.cluster(),
            q,
        }
    }

    fn run(&mut self, case: u64, ops: u32) {
        for op in 1..=ops {
            self.op = op;
            let ctx = format!("case {case} op {op}");
            match self.rng.below(20) {
                0..=10 => self.write(&ctx, false),
                11 => self.write(&ctx, true),
                12..=13 => {
                    let off = self.rng.below(self.model.len() as u64);
                    let len = self
                        .rng
                        .below(4 * self.cluster)
                        .min(self.model.len() as u64 - off);
                    self.compare(off, len as usize, &ctx);
                }
                14..=15 => self.flush(&ctx),
                16..=18 => self.crash(&ctx),
                _ => self.reopen(&ctx),
            }
        }
        self.flush(&format!("case {case} end"));
    }

    fn compare(&self, off: u64, len: usize, ctx: &str) {
        let mut b = vec![0u8; len];
        self.q
            .read_at(off, &mut b)
            .unwrap_or_else(|e| panic!("{ctx}: read: {e}"));
        let want = &self.model[off as usize..off as usize + len];
        if b != want {
            let i = b.iter().zip(want).position(|(a, b)| a != b).unwrap();
            panic!(
                "{ctx}: byte {} is {:#x}, model {:#x}",
                off as usize + i,
                b[i],
                want[i]
            );
        }
    }

    fn write(&mut self, ctx: &str, big: bool) {
        let size = self.model.len() as u64;
        let mut off = self.rng.below(size);
        if self.rng.chance(50) || big {
            off -= off % 512;
        }
        let max = if big { 64 } else { 3 } * self.cluster;
        let len = (1 + self.rng.below(max)).min(size - off) as usize;
        let data: Vec<u8> = match self.rng.below(3) {
            0 => vec![self.rng.next() as u8; len],
            _ => (0..len).map(|_| self.rng.next() as u8).collect(),
        };
        self.q
            .write_at(off, &data)
            .unwrap_or_else(|e| panic!("{ctx}: write: {e}"));
        self.model[off as usize..off as usize + len].copy_from_slice(&data);
        self.last_write[off as usize..off as usize + len].fill(self.op);
        // The written clusters and their neighbours read back as the model.
        let lo = (off - off % self.cluster).saturating_sub(self.cluster);
        let hi = (off + len as u64 + 2 * self.cluster).min(size);
        self.compare(lo, (hi - lo) as usize, ctx);
    }

    fn flush(&mut self, ctx: &str) {
        self.q.flush().unwrap();
        let store = self.q.store().clone();
        let syncs = store.with(|m| m.epochs());
        self.points.push((syncs, self.op, self.model.clone()));
        let rep = refcheck(&store.bytes());
        assert!(
            rep.errors.is_empty() && rep.leaks == 0,
            "{ctx}: after flush: {rep:?}"
        );
        self.compare(0, self.model.len(), ctx);
    }

    /// What a crash at some moment of this store's history could leave (after some
    /// sync, plus a subset of the writes that followed it) must be consistent (leaks
    /// allowed) and hold every byte of the last flush before that moment that was
    /// not written again since.
    fn crash(&mut self, ctx: &str) {
        let r1 = self.rng.next();
        let e = self.q.store().with(|m| m.epochs()) as u64;
        let k = if r1.is_multiple_of(2) {
            e
        } else {
            r1 / 2 % (e + 1)
        };
        self.crash_at(k as usize, ctx);
    }

    fn crash_at(&mut self, k: usize, ctx: &str) {
        let (r2, r3) = (self.rng.next(), self.rng.next());
        let img = self.q.store().with(|m| {
            let cut = (r2 % (m.epoch_writes(k) as u64 + 1)) as usize;
            match r3 % 3 {
                0 => m.crashed_at(k, |i| i < cut),
                1 => m.crashed_at(k, |i| Rng(r2 ^ i as u64).next().is_multiple_of(2)),
                _ => m.crashed_at(k, |_| true),
            }
        });
        let rep = refcheck(&img);
        assert!(
            rep.errors.is_empty(),
            "{ctx}: crash after sync {k}: {rep:?}"
        );
        let q = Qcow2::open_with(img, false, self.base.disk())
            .unwrap_or_else(|e| panic!("{ctx}: crash image opens: {e}"));
        let mut b = vec![0u8; self.model.len()];
        q.read_at(0, &mut b).unwrap();
        // (A crash before the first flush point keeps nothing in particular.)
        let Some((_, op, model)) = self.points.iter().rev().find(|p| p.0 <= k) else {
            return;
        };
        for (i, &got) in b.iter().enumerate() {
            assert!(
                self.last_write[i] > *op || got == model[i],
                "{ctx}: a crash after sync {k} loses byte {i} flushed at op {op}"
            );
        }
    }

    /// Closes the image (the drop writes what is in memory) and opens it again.
    fn reopen(&mut self, ctx: &str) {
        let empty = Qcow2::open(Mem::new(blank(3, 512, 9, 4, None))).unwrap();
        let old = std::mem::replace(&mut self.q, empty);
        let bytes = drop_bytes(old);
        let rep = refcheck(&bytes);
        assert!(
            rep.errors.is_empty() && rep.leaks == 0,
            "{ctx}: after close: {rep:?}"
        );
        self.q = Qcow2::open_with(Mem::new(bytes), true, self.base.disk()).unwrap();
        self.points = vec![(0, self.op, self.model.clone())];
        self.compare(0, self.model.len(), ctx);
    }
}

#[test]
fn random_ops_match_the_model() {
    let n = cases(60);
    let mut rng = Rng(0x51ce_b00c_0dd5_eed5);
    for case in 0..n {
        let mut c = Case::new(rng.next());
        if c.model.len() == 3 << 20 {
            // The refcount table grew: a crash at every moment of it.
            for k in 0..=c.q.store().with(|m| m.epochs()) {
                for _ in 0..16 {
                    c.crash_at(k, &format!("case {case} growth"));
                }
            }
        }
        c.run(case, 120);
    }
}

/// Images qemu made, with compressed clusters (several to a host cluster) and zero
/// clusters with and without a preallocated host cluster, under the same random ops:
/// every rewrite of one moves it to a new cluster and the flush drops the old
/// references exactly.
#[test]
fn random_ops_on_compressed_and_zero_clusters() {
    use super::test_util::tool;
    let raw = super::test_util::tmp("model.raw");
    let p = super::test_util::tmp("model.qcow2");
    let mut model: Vec<u8> = (0..256u32 << 10).map(|i| (i / 777 + i % 3) as u8).collect();
    std::fs::write(&raw, &model).unwrap();
    let _ = std::fs::remove_file(&p);
    let (rs, ps) = (raw.to_str().unwrap(), p.to_str().unwrap());
    let args = [
        "convert",
        "-q",
        "-c",
        "-o",
        "cluster_size=4096",
        "-f",
        "raw",
        "-O",
        "qcow2",
    ];
    if tool("qemu-img", &[&args[..], &[rs, ps]].concat()).is_none() {
        return;
    }
    for (cmd, off, len, b) in [
        ("write -P 0x33 100k 8k", 100 << 10, 8 << 10, 0x33),
        ("write -z 64k 16k", 64 << 10, 16 << 10, 0),
        ("write -z 104k 2k", 104 << 10, 2 << 10, 0),
        ("write -z 200k 8k", 200 << 10, 8 << 10, 0),
    ] {
        tool("qemu-io", &["-f", "qcow2", "-c", cmd, ps]).unwrap();
        model[off..off + len].fill(b);
    }
    let bytes = std::fs::read(&p).unwrap();
    assert!(refcheck(&bytes).errors.is_empty());
    for case in 0..cases(60) / 4 {
        let q = Qcow2::open_with(Mem::new(bytes.clone()), true, None).unwrap();
        let mut c = Case::with(Rng(case * 7919 + 1), q, Base::None, model.clone());
        c.compare(0, model.len(), "qemu image");
        c.run(case, 60);
    }
    let _ = std::fs::remove_file(&raw);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn drop_writes_metadata() {
    let q = Qcow2::open_with(Mem::new(blank(3, 1 << 20, 12, 4, None)), true, None).unwrap();
    q.write_at(5000, &[9; 10_000]).unwrap();
    let bytes = drop_bytes(q);
    assert!(refcheck(&bytes).errors.is_empty());
    let r = Qcow2::open(bytes).unwrap();
    let mut b = vec![0u8; 10_002];
    r.read_at(4999, &mut b).unwrap();
    assert_eq!(b[0], 0);
    assert!(b[1..10_001].iter().all(|&x| x == 9));
    assert_eq!(b[10_001], 0);
}
