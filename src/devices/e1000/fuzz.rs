//! 100,000 hostile steps against the e1000: random register writes and reads (any
//! size, any offset, both BARs), random ring addresses and lengths, random descriptor
//! contents of every type, random frames from the wire, link flaps, resets, config
//! writes, time passing. Guest RAM is two 64 KiB regions with a hole between them,
//! carved out of one host mapping whose other bytes are canaries: nothing may panic,
//! and no canary byte may change (the device never touches memory outside guest RAM).

use std::time::Duration;

use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use super::regs::*;
use super::tests::{Level, TestClock, MAC};
use super::E1000;
use crate::devices::pci::PciDevice;
use crate::devices::pm::MonotonicClock;
use crate::testing::{FakeNet, Rng};

const STEPS: u32 = 100_000;
const KIB: usize = 1024;
/// Host layout: canary, region A (guest 0..64K), canary, region B (guest 128K..192K),
/// canary.
const HOST: usize = 256 * KIB;
const A_HOST: usize = 32 * KIB;
const B_HOST: usize = 128 * KIB;
const REGION: usize = 64 * KIB;
const B_GPA: u64 = 128 * 1024;
const CANARY: u8 = 0xa5;

struct Host {
    _map: MmapRegion,
    ptr: *mut u8,
}

impl Host {
    fn new() -> (Self, GuestMemoryMmap) {
        let map = MmapRegion::new(HOST).unwrap();
        let ptr = map.as_ptr();
        // SAFETY: `ptr` is the start of a live HOST-byte mapping we own.
        unsafe { std::ptr::write_bytes(ptr, CANARY, HOST) };
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        let region = |off: usize, gpa: u64| {
            // SAFETY: [off, off + REGION) lies inside the mapping, which outlives the
            // guest memory (both live in the test function).
            let m = unsafe { MmapRegion::build_raw(ptr.add(off), REGION, prot, flags) }.unwrap();
            GuestRegionMmap::new(m, GuestAddress(gpa)).unwrap()
        };
        let mem =
            GuestMemoryMmap::from_regions(vec![region(A_HOST, 0), region(B_HOST, B_GPA)]).unwrap();
        (Self { _map: map, ptr }, mem)
    }

    /// Every canary byte is intact.
    fn canaries_ok(&self) -> bool {
        // SAFETY: the whole mapping is live and readable; the device writes only
        // through the guest memory object, which is not borrowed here.
        let all = unsafe { std::slice::from_raw_parts(self.ptr, HOST) };
        let outside = |i: &usize| {
            !((A_HOST..A_HOST + REGION).contains(i) || (B_HOST..B_HOST + REGION).contains(i))
        };
        (0..HOST).filter(outside).all(|i| all[i] == CANARY)
    }
}

/// A guest address: mostly inside RAM, sometimes at edges, in the hole, or wild.
fn gpa(rng: &mut Rng) -> u64 {
    match rng.below(16) {
        0 => rng.next(),
        1 => REGION as u64 - rng.below(64),
        2 => B_GPA - rng.below(64),
        3 => B_GPA + REGION as u64 - rng.below(64),
        4 => u64::MAX - rng.below(64),
        5..=10 => rng.below(REGION as u64),
        _ => B_GPA + rng.below(REGION as u64),
    }
}

const HOT: &[u32] = &[
    CTRL,
    EECD,
    EERD,
    MDIC,
    ICR,
    ITR,
    ICS,
    IMS,
    IMC,
    RCTL,
    TCTL,
    PBA,
    RDBAL,
    RDBAH,
    RDLEN,
    RDH,
    RDT,
    RDTR,
    RADV,
    RSRPD,
    TDBAL,
    TDBAH,
    TDLEN,
    TDH,
    TDT,
    TIDV,
    TADV,
    RXCSUM,
    VET,
    MTA,
    RA,
    RA + 4,
    RA + 12,
    VFTA,
    0x4088,
    0x408c,
    0x4010,
];

fn value(rng: &mut Rng, off: u32) -> u32 {
    match (off, rng.below(4)) {
        (RDBAL | TDBAL, 0..=2) => (gpa(rng) as u32) & !15,
        (RDBAH | TDBAH, 0..=2) => 0,
        (RDLEN | TDLEN, 0..=2) => 128 * (1 + rng.below(8) as u32),
        (RDH | RDT | TDH | TDT, 0..=2) => rng.below(70) as u32,
        (RCTL, 0..=2) => RCTL_EN | (rng.next() as u32 & RCTL_WMASK),
        (TCTL, 0..=2) => TCTL_EN | (rng.next() as u32 & TCTL_PSP),
        (CTRL, 0) => CTRL_RST,
        (CTRL, 1..=2) => rng.next() as u32 & !CTRL_RST,
        (ITR | RDTR | RADV | TIDV | TADV, 0..=2) => rng.below(64) as u32,
        _ => rng.next() as u32,
    }
}

/// A descriptor of any kind, usually pointing at RAM.
fn descriptor(rng: &mut Rng) -> [u8; 16] {
    let mut d = [0u8; 16];
    for b in d.iter_mut() {
        *b = rng.next() as u8;
    }
    d[..8].copy_from_slice(&gpa(rng).to_le_bytes());
    if rng.chance(70) {
        let max = if rng.chance(80) { 2048 } else { 70000 };
        let len = rng.below(max) as u32;
        let kind = match rng.below(3) {
            0 => 0,                        // legacy
            1 => TXD_DEXT as u32,          // context (DTYP 0)
            _ => TXD_DEXT as u32 | 1 << 4, // data (DTYP 1 in bits 23:20)
        };
        let cmd = (rng.next() as u8 & !TXD_DEXT) as u32 | kind & 0x20;
        let dtyp = if kind & 0x10 != 0 { 1u32 << 20 } else { 0 };
        let lower = (len & 0xf_ffff) | dtyp | cmd << 24;
        d[8..12].copy_from_slice(&lower.to_le_bytes());
    }
    d
}

fn frame(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => rng.below(14) as usize,
        1 => rng.below(20000) as usize,
        _ => 14 + rng.below(1600) as usize,
    };
    let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    if f.len() >= 14 {
        match rng.below(4) {
            0 => f[..6].copy_from_slice(&MAC),
            1 => f[..6].fill(0xff),
            2 => f[0] |= 1,
            _ => {}
        }
        if rng.chance(20) {
            f[12..14].copy_from_slice(&[0x81, 0x00]);
        } else if rng.chance(30) {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
        }
    }
    f
}

fn step(rng: &mut Rng, d: &mut E1000, mem: &GuestMemoryMmap, wire: &FakeNet, clock: &TestClock) {
    match rng.below(14) {
        0..=3 => {
            let off = if rng.chance(75) {
                HOT[rng.below(HOT.len() as u64) as usize]
            } else {
                rng.below(MMIO_SIZE) as u32 & !3
            };
            let v = value(rng, off);
            d.bar_write(0, u64::from(off), &v.to_le_bytes());
        }
        4 => {
            let size = [1, 2, 4, 8][rng.below(4) as usize];
            let mut b = vec![0u8; size];
            let off = rng.below(MMIO_SIZE + 16);
            if rng.chance(50) {
                d.bar_read(0, off, &mut b);
            } else {
                d.bar_write(0, off, &b);
            }
        }
        5 | 6 => {
            // Descriptors where the rings are (or anywhere).
            let base = if rng.chance(80) {
                let mut b = [0u8; 4];
                d.bar_read(
                    0,
                    u64::from(if rng.chance(50) { TDBAL } else { RDBAL }),
                    &mut b,
                );
                u64::from(u32::from_le_bytes(b))
            } else {
                gpa(rng)
            };
            for i in 0..1 + rng.below(8) {
                let _ = mem.write_slice(&descriptor(rng), GuestAddress(base.wrapping_add(16 * i)));
            }
            let t = rng.below(64) as u32;
            let reg = if rng.chance(60) { TDT } else { RDT };
            d.bar_write(0, u64::from(reg), &t.to_le_bytes());
        }
        7 | 8 => {
            for _ in 0..1 + rng.below(4) {
                wire.give(&frame(rng));
            }
            d.pump();
        }
        9 => d.set_link(rng.chance(70)),
        10 => {
            clock.advance(Duration::from_nanos(rng.below(300_000)));
            d.poll_timer(clock.now());
        }
        11 => {
            let off = rng.below(0x40) as u16;
            let v = if rng.chance(80) {
                [0x07, 0]
            } else {
                [rng.next() as u8, 0]
            };
            d.config_write(if rng.chance(80) { 4 } else { off }, &v);
        }
        12 => {
            let off = rng.below(12);
            let v = (rng.next() as u32).to_le_bytes();
            let n = [1, 2, 4][rng.below(3) as usize];
            if rng.chance(50) {
                d.bar_write(1, off, &v[..n]);
            } else {
                let mut b = vec![0u8; n];
                d.bar_read(1, off, &mut b);
            }
        }
        _ => {
            let v = rng.next() as u32 & 0x7f;
            d.bar_write(0, u64::from(EECD), &v.to_le_bytes());
        }
    }
}

#[test]
fn hostile_registers_descriptors_and_frames() {
    let (host, mem) = Host::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let wire = FakeNet::new();
    let clock = TestClock::default();
    let mut d = E1000::new(
        MAC,
        Some(Box::new(wire.clone())),
        mem.clone(),
        Box::new(clock.clone()),
    );
    d.set_intx_line(std::sync::Arc::new(Level::default()));
    d.config_write(4, &[0x07, 0]);
    let (mut sent, mut received, mut last_gprc) = (0usize, 0u64, 0u64);
    for i in 0..STEPS {
        step(&mut rng, &mut d, &mem, &wire, &clock);
        sent += wire
            .sent()
            .iter()
            .map(|f| usize::from(f.len() <= 16384))
            .sum::<usize>();
        let now = d.stat(super::stats::GPRC);
        received += now.saturating_sub(last_gprc.min(now));
        last_gprc = now;
        wire.inbox.lock().unwrap().clear();
        if i % 10_000 == 0 {
            assert!(
                host.canaries_ok(),
                "step {i}: memory outside guest RAM changed"
            );
        }
    }
    assert!(host.canaries_ok());
    eprintln!("{STEPS} steps: {sent} frames sent, {received} accepted");
    assert!(sent > 500, "transmit path barely exercised: {sent}");
    assert!(received > 500, "receive path barely exercised: {received}");
}
