//! 100,000 random access sequences against virtio-blk over the virtio-mmio transport:
//! random register writes, random rings, descriptors, chains and requests in a small
//! guest memory (so that many addresses fall outside it). Nothing may panic, a broken
//! ring must show DEVICE_NEEDS_RESET, and a device needing a reset must not touch the
//! used ring until it is reset.

use super::*;
use crate::devices::virtio::mmio::reg;
use crate::devices::virtio::testutil::r32;
use crate::devices::virtio::testutil::WrapAdd;
use crate::devices::virtio::{STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FEATURES_OK};
use vm_memory::GuestMemoryBackend;

use crate::testing::Rng;

const RAM: u64 = 64 << 10;

fn addr(rng: &mut Rng) -> u64 {
    match rng.below(20) {
        0 => rng.next(),
        1 => RAM - rng.below(64),
        2 => u64::MAX - rng.below(64),
        _ => rng.below(RAM),
    }
}

fn len(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => rng.next() as u32,
        1 => 1,
        2 => 16,
        3..=5 => 512 * rng.below(4) as u32,
        _ => rng.below(2048) as u32,
    }
}

#[test]
fn fuzz_blk_mmio() {
    let p = image("fuzz", 64 * 512);
    let mem = memory(RAM as usize);
    let blk = Blk::new(
        std::sync::Arc::new(DiskImage::open(&p, false, "raw").unwrap()),
        "fuzz",
    );
    let mut t = MmioTransport::new(Box::new(blk), mem.clone(), Arc::new(crate::devices::NoIrq));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut needs_reset_seen, mut completed) = (0u32, 0u32);
    let mut ring = Ring::new(8, 0);
    for _case in 0..100_000 {
        if rng.chance(40) {
            // A driver that sets the device up properly, with random geometry.
            let size = if rng.chance(90) {
                1u16 << rng.below(9)
            } else {
                rng.next() as u16
            };
            let base = if rng.chance(90) {
                rng.below(RAM / 2) & !15
            } else {
                addr(&mut rng)
            };
            ring = Ring::new(size.max(1), base);
            ring.size = size;
            w32(&mut t, reg::STATUS, 0);
            w32(&mut t, reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
            w32(&mut t, reg::DRIVER_FEATURES_SEL, 1);
            w32(&mut t, reg::DRIVER_FEATURES, 1);
            w32(&mut t, reg::DRIVER_FEATURES_SEL, 0);
            w32(
                &mut t,
                reg::DRIVER_FEATURES,
                rng.next() as u32 & (F_FLUSH | (1 << 28) | (1 << 29)) as u32,
            );
            w32(
                &mut t,
                reg::STATUS,
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
            );
            w32(&mut t, reg::QUEUE_SEL, 0);
            w32(&mut t, reg::QUEUE_NUM, size as u32);
            for (lo, v) in [
                (reg::QUEUE_DESC_LOW, ring.desc),
                (reg::QUEUE_DRIVER_LOW, ring.avail),
                (reg::QUEUE_DEVICE_LOW, ring.used),
            ] {
                w32(&mut t, lo, v as u32);
                w32(&mut t, lo + 4, (v >> 32) as u32);
            }
            w32(&mut t, reg::QUEUE_READY, 1);
            w32(&mut t, reg::STATUS, 0xf);
        }
        for _ in 0..1 + rng.below(6) {
            match rng.below(12) {
                0 => {
                    // A random register write.
                    let off = rng.below(0x120) & !3;
                    t.write(0, off, &(rng.next() as u32).to_le_bytes());
                }
                1 => {
                    let mut b = [0u8; 8];
                    let n = 1 << rng.below(4);
                    t.read(0, rng.below(0x200), &mut b[..n]);
                }
                2 => {
                    // Random bytes somewhere in RAM (over the rings, often).
                    let a = rng.below(RAM);
                    let _ = mem.write_obj(rng.next(), GuestAddress(a));
                }
                3..=5 if ring.size > 0 && ring.size.is_power_of_two() => {
                    // A plausible request: header, data, status.
                    let h = rng.below(RAM - 16);
                    let rtype =
                        [T_IN, T_OUT, T_FLUSH, T_GET_ID, rng.next() as u32][rng.below(5) as usize];
                    let _ = mem.write_obj(rtype, GuestAddress(h));
                    let _ = mem.write_obj(rng.below(80), GuestAddress(h + 8));
                    let mut bufs = vec![(
                        h,
                        16 + if rng.chance(10) { len(&mut rng) } else { 0 },
                        false,
                    )];
                    for _ in 0..rng.below(4) {
                        bufs.push((addr(&mut rng), len(&mut rng), rng.chance(50)));
                    }
                    bufs.push((addr(&mut rng), 1, true));
                    if rng.chance(30) && bufs.len() <= ring.size as usize {
                        let t = rng.below(RAM);
                        if mem.check_range(GuestAddress(t), 16 * bufs.len()) {
                            ring.push_indirect(&mem, t, &bufs);
                        }
                    } else if bufs.len() <= ring.size as usize {
                        let ok = bufs.iter().enumerate().all(|(k, _)| {
                            let i = (ring.next_desc as u64 + k as u64) % ring.size as u64;
                            mem.check_range(GuestAddress(ring.desc.wrapping_add(16 * i)), 16)
                        }) && mem
                            .check_range(GuestAddress(ring.avail), 4 + 2 * ring.size as usize);
                        if ok {
                            ring.push(&mem, &bufs);
                        }
                    }
                }
                6 if ring.size > 0 => {
                    // A random descriptor.
                    let i = rng.below(ring.size as u64 + 2) as u16;
                    let a = GuestAddress(ring.desc.wrapping_add(16 * i as u64));
                    let _ = mem.write_obj(addr(&mut rng), a);
                    let _ = mem.write_obj(len(&mut rng), a.wrapping_add_addr(8));
                    let _ = mem.write_obj(rng.below(8) as u16, a.wrapping_add_addr(12));
                    let _ = mem.write_obj(
                        rng.below(ring.size as u64 + 2) as u16,
                        a.wrapping_add_addr(14),
                    );
                }
                7 => {
                    // A random avail index.
                    let _ =
                        mem.write_obj(rng.next() as u16, GuestAddress(ring.avail.wrapping_add(2)));
                }
                _ => {
                    let broken = t.status() & STATUS_NEEDS_RESET != 0;
                    let used: Option<u16> =
                        mem.read_obj(GuestAddress(ring.used.wrapping_add(2))).ok();
                    w32(
                        &mut t,
                        reg::QUEUE_NOTIFY,
                        if rng.chance(95) { 0 } else { rng.next() as u32 },
                    );
                    let after: Option<u16> =
                        mem.read_obj(GuestAddress(ring.used.wrapping_add(2))).ok();
                    if broken {
                        assert_eq!(used, after, "a device needing reset used its ring");
                    } else if t.status() & STATUS_NEEDS_RESET != 0 {
                        needs_reset_seen += 1;
                        assert_ne!(r32(&mut t, reg::INTERRUPT_STATUS) & 2, 0);
                    } else if used != after {
                        completed += 1;
                    }
                }
            }
        }
    }
    std::fs::remove_file(&p).unwrap();
    // The sequences exercise both outcomes.
    assert!(needs_reset_seen > 1000, "{needs_reset_seen}");
    assert!(completed > 1000, "{completed}");
}
