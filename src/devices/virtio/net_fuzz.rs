//! 100,000 random sequences of driver actions against virtio-net over virtio-mmio:
//! register accesses, ring corruption, random chains on both queues, frames from the
//! wire, receive pumps, resets. Nothing may panic, and a device that reported
//! DEVICE_NEEDS_RESET must not move frames until it is reset.

use super::*;

use crate::testing::Rng;

const MEM: usize = 0x20000;
const SEQUENCES: u32 = 100_000;
const PER_DEVICE: u32 = 500;

fn addr(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => rng.next(),
        1 => MEM as u64 - rng.below(64),
        _ => 0x10000 + rng.below(0x10000),
    }
}

fn random_init(rng: &mut Rng, t: &mut MmioTransport) -> (Ring, Ring) {
    let size = |rng: &mut Rng| match rng.below(8) {
        0 => rng.below(600) as u16,
        _ => 1 << rng.below(9),
    };
    let base = |rng: &mut Rng, good: u64| {
        if rng.chance(90) {
            good
        } else {
            rng.below(MEM as u64 + 0x100)
        }
    };
    let rx = Ring::new(size(rng), base(rng, RXQ));
    let tx = Ring::new(size(rng), base(rng, TXQ));
    let mut features = F_VERSION_1 | F_MAC | F_STATUS;
    if rng.chance(50) {
        features |= F_EVENT_IDX;
    }
    if rng.chance(5) {
        features = rng.next();
    }
    // Ring sizes of 0 make the helper's modulo arithmetic meaningless: clamp for it.
    let rings = [
        Ring::new(rx.size.max(1), rx.desc),
        Ring::new(tx.size.max(1), tx.desc),
    ];
    mmio_init(t, features, &rings);
    let [a, b] = rings;
    (a, b)
}

#[test]
fn random_sequences() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mem = memory(MEM);
    let mut seq = 0;
    let mut moved = 0u64;
    let start = std::time::Instant::now();
    while seq < SEQUENCES {
        let wire = Fake::new();
        let (net, rx) = Net::new(MAC, Some(Box::new(wire.clone())));
        let mut t = MmioTransport::new(Box::new(net), mem.clone(), Arc::new(Count::default()));
        let mut rings = random_init(&mut rng, &mut t);
        for _ in 0..PER_DEVICE {
            seq += 1;
            if rng.chance(20) {
                rings = random_init(&mut rng, &mut t);
            }
            for _ in 0..1 + rng.below(8) {
                step(&mut rng, &mem, &mut t, &rx, &wire, &mut rings);
                if wire.inbox.lock().unwrap().len() > 64 {
                    wire.inbox.lock().unwrap().clear();
                }
            }
            // A device that asked for a reset stays quiet.
            if t.status() & STATUS_NEEDS_RESET != 0 {
                let before = rx.stats().rx_frames.load(Ordering::Relaxed);
                wire.give(&frame(60, 0));
                rx.pump();
                w32(&mut t, reg::QUEUE_NOTIFY, TX_QUEUE as u32);
                assert_eq!(rx.stats().rx_frames.load(Ordering::Relaxed), before);
            }
        }
        moved += rx.stats().rx_frames.load(Ordering::Relaxed) + wire.sent().len() as u64;
    }
    // The sequences did exercise the data paths.
    assert!(moved > 1000, "only {moved} frames moved");
    eprintln!(
        "{SEQUENCES} sequences, {moved} frames moved, {:?}",
        start.elapsed()
    );
}

fn step(
    rng: &mut Rng,
    mem: &GuestMemoryMmap,
    t: &mut MmioTransport,
    rx: &NetRx,
    wire: &Fake,
    rings: &mut (Ring, Ring),
) {
    match rng.below(12) {
        0 => {
            let off = rng.below(0x120) & !3;
            w32(
                t,
                off,
                if rng.chance(50) {
                    rng.below(4) as u32
                } else {
                    rng.next() as u32
                },
            );
        }
        1 => {
            let off = rng.below(0x120);
            let mut b = vec![0u8; [1, 2, 4, 8][rng.below(4) as usize]];
            t.read(0, off, &mut b);
            if rng.chance(30) {
                t.write(0, off, &b);
            }
        }
        2 => {
            // Corrupt the rings.
            let a = rng.below(0x8000);
            let n = 1 + rng.below(16) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let _ = mem.write_slice(&bytes, GuestAddress(a));
        }
        3..=6 => {
            let n = 1 + rng.below(4) as usize;
            let tx = rng.chance(50);
            let bufs: Vec<(u64, u32, bool)> = (0..n)
                .map(|_| {
                    let len = match rng.below(4) {
                        0 => rng.next() as u32,
                        _ => rng.below(2000) as u32,
                    };
                    (
                        addr(rng),
                        len,
                        if tx { rng.chance(5) } else { !rng.chance(5) },
                    )
                })
                .collect();
            let ring = if tx { &mut rings.1 } else { &mut rings.0 };
            if bufs
                .iter()
                .all(|b| b.0.checked_add(b.1 as u64).is_some_and(|e| e <= MEM as u64))
                && tx
            {
                let _ = mem.write_slice(&frame(60, 3)[..], GuestAddress(0x1f000));
            }
            if ring.size > 0
                && ring.desc + 16 * ring.size as u64 + 6 + 10 * ring.size as u64 <= MEM as u64
            {
                ring.push(mem, &bufs);
            }
            if rng.chance(70) {
                w32(t, reg::QUEUE_NOTIFY, tx as u32);
            }
        }
        7 | 8 => wire.give(&frame(rng.below(2000) as usize, rng.next() as u8)),
        9 => {
            rx.pump();
        }
        10 => w32(t, reg::QUEUE_NOTIFY, rng.below(4) as u32),
        _ => {
            let mut rr = [0u8; 2];
            for r in [&mut rings.0, &mut rings.1] {
                if r.size > 0 && r.used + 4 + 8 * r.size as u64 <= MEM as u64 {
                    let _ = mem.read_slice(&mut rr, GuestAddress(r.used + 2));
                    r.used_seen = u16::from_le_bytes(rr);
                }
            }
        }
    }
}
