use std::sync::atomic::AtomicU32;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::testutil::{memory, mmio_init, r32, w32, Ring};
use crate::devices::virtio::{F_EVENT_IDX, F_VERSION_1, STATUS_NEEDS_RESET};
use crate::devices::{BusDevice, IrqLine};

pub(super) use crate::testing::FakeNet as Fake;

#[derive(Default)]
struct Count(AtomicU32);
impl IrqLine for Count {
    fn set_level(&self, high: bool) {
        if high {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const RXQ: u64 = 0x1000;
const TXQ: u64 = 0x4000;
const BUF: u64 = 0x10000;

fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len, tag);
    f
}

struct Rig {
    mem: GuestMemoryMmap,
    t: MmioTransport,
    rx: NetRx,
    wire: Fake,
    irq: Arc<Count>,
    wakes: Arc<AtomicU32>,
    rxr: Ring,
    txr: Ring,
}

fn rig(features: u64) -> Rig {
    let mem = memory(1 << 20);
    let wire = Fake::new();
    let (net, rx) = Net::new(MAC, Some(Box::new(wire.clone())));
    let wakes = Arc::new(AtomicU32::new(0));
    let w = wakes.clone();
    rx.set_waker(Box::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    }));
    let irq = Arc::new(Count::default());
    let mut t = MmioTransport::new(Box::new(net), mem.clone(), irq.clone());
    let st = mmio_init(&mut t, features, &[Ring::new(16, RXQ), Ring::new(16, TXQ)]);
    assert_eq!(st, 0xf);
    Rig {
        mem,
        t,
        rx,
        wire,
        irq,
        wakes,
        rxr: Ring::new(16, RXQ),
        txr: Ring::new(16, TXQ),
    }
}

#[test]
fn identity_and_config() {
    let (net, _) = Net::new(MAC, None);
    assert_eq!(net.device_type(), 1);
    assert_ne!(net.features() & F_MAC, 0);
    assert_ne!(net.features() & F_STATUS, 0);
    let mut t = MmioTransport::new(
        Box::new(net),
        memory(1 << 16),
        Arc::new(crate::devices::NoIrq),
    );
    assert_eq!(r32(&mut t, reg::DEVICE_ID), 1);
    let mut cfg = [0u8; 8];
    t.read(0, reg::CONFIG, &mut cfg);
    assert_eq!(&cfg[..6], &MAC);
    assert_eq!(
        u16::from_le_bytes([cfg[6], cfg[7]]),
        0,
        "no backend: link down"
    );
    let r = rig(F_VERSION_1 | F_MAC | F_STATUS);
    let mut t = r.t;
    let mut st = [0u8; 2];
    t.read(0, reg::CONFIG + 6, &mut st);
    assert_eq!(u16::from_le_bytes(st), S_LINK_UP);
}

#[test]
fn transmit_frames() {
    let mut r = rig(F_VERSION_1 | F_MAC);
    let f = frame(60, 1);
    r.mem.write_slice(&[0; HDR_LEN], GuestAddress(BUF)).unwrap();
    r.mem.write_slice(&f, GuestAddress(BUF + 0x100)).unwrap();
    r.txr.push(
        &r.mem,
        &[(BUF, HDR_LEN as u32, false), (BUF + 0x100, 60, false)],
    );
    // Header and frame in one buffer, split at odd places.
    let mut one = vec![0u8; HDR_LEN];
    one.extend_from_slice(&frame(100, 2));
    r.mem.write_slice(&one, GuestAddress(BUF + 0x1000)).unwrap();
    r.txr.push(
        &r.mem,
        &[
            (BUF + 0x1000, 5, false),
            (BUF + 0x1005, one.len() as u32 - 5, false),
        ],
    );
    // Malformed: no whole header. Dropped, returned.
    r.txr.push(&r.mem, &[(BUF, 8, false)]);
    w32(&mut r.t, reg::QUEUE_NOTIFY, TX_QUEUE as u32);
    assert_eq!(r.wire.sent(), vec![f, frame(100, 2)]);
    assert_eq!(r.txr.take_used(&r.mem).len(), 3);
    assert_eq!(r.irq.0.load(Ordering::Relaxed), 1);
    let s = r.rx.stats();
    assert_eq!(s.tx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(s.tx_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn receive_frames_and_wait_for_buffers() {
    let mut r = rig(F_VERSION_1 | F_MAC | F_EVENT_IDX);
    assert_eq!(
        r.wakes.load(Ordering::Relaxed),
        1,
        "activation wakes the loop"
    );
    r.wire.give(&frame(64, 7));
    r.wire.give(&frame(1514, 8));
    // No buffers yet: the frame is held.
    assert_eq!(r.rx.pump(), RxState::NoBuffers);
    r.rxr.push(&r.mem, &[(BUF, 1526, true)]);
    // Header in its own buffer, frame in two.
    r.rxr.push(
        &r.mem,
        &[
            (BUF + 0x1000, 12, true),
            (BUF + 0x2000, 1000, true),
            (BUF + 0x3000, 1000, true),
        ],
    );
    w32(&mut r.t, reg::QUEUE_NOTIFY, RX_QUEUE as u32);
    assert_eq!(r.wakes.load(Ordering::Relaxed), 2);
    assert_eq!(r.rx.pump(), RxState::Open);
    assert_eq!(r.rxr.take_used(&r.mem), vec![(0, 12 + 64), (1, 12 + 1514)]);
    let mut hdr = [0xaau8; HDR_LEN];
    r.mem.read_slice(&mut hdr, GuestAddress(BUF)).unwrap();
    assert_eq!(hdr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    let mut got = vec![0u8; 64];
    r.mem.read_slice(&mut got, GuestAddress(BUF + 12)).unwrap();
    assert_eq!(got, frame(64, 7));
    let mut got = vec![0u8; 1514];
    r.mem
        .read_slice(&mut got[..1000], GuestAddress(BUF + 0x2000))
        .unwrap();
    r.mem
        .read_slice(&mut got[1000..], GuestAddress(BUF + 0x3000))
        .unwrap();
    assert_eq!(got, frame(1514, 8));
    assert!(r.irq.0.load(Ordering::Relaxed) >= 1);
}

#[test]
fn small_buffers_drop_frames_not_memory() {
    let r = rig(F_VERSION_1);
    let mut rxr = r.rxr;
    r.mem.write_slice(&[0x5a; 256], GuestAddress(BUF)).unwrap();
    rxr.push(&r.mem, &[(BUF, 100, true)]);
    r.wire.give(&frame(200, 1)); // needs 212 bytes: dropped
    r.wire.give(&frame(80, 2)); // fits the same chain
    assert_eq!(r.rx.pump(), RxState::Open);
    assert_eq!(rxr.take_used(&r.mem), vec![(0, 92)]);
    let mut after = [0u8; 156];
    r.mem
        .read_slice(&mut after, GuestAddress(BUF + 100))
        .unwrap();
    assert!(
        after.iter().all(|&b| b == 0x5a),
        "nothing written past the buffer"
    );
    assert_eq!(r.rx.stats().rx_dropped.load(Ordering::Relaxed), 1);
    assert_eq!(r.rx.stats().rx_frames.load(Ordering::Relaxed), 1);
}

#[test]
fn broken_rx_ring_needs_reset() {
    let r = rig(F_VERSION_1);
    let mut rxr = r.rxr;
    let mut t = r.t;
    rxr.push(&r.mem, &[(0xfff0_0000, 1526, true)]); // outside RAM
    r.wire.give(&frame(60, 1));
    assert_eq!(r.rx.pump(), RxState::NoBuffers);
    assert_ne!(t.status() & STATUS_NEEDS_RESET, 0);
    assert_ne!(r32(&mut t, reg::INTERRUPT_STATUS) & 2, 0);
    // Quiet until reset; then it works again.
    assert_eq!(r.rx.pump(), RxState::NoBuffers);
    let st = mmio_init(
        &mut t,
        F_VERSION_1,
        &[Ring::new(16, RXQ), Ring::new(16, TXQ)],
    );
    assert_eq!(st, 0xf);
    let mut rxr = Ring::new(16, RXQ);
    rxr.push(&r.mem, &[(BUF, 1526, true)]);
    r.wire.give(&frame(60, 2));
    assert_eq!(r.rx.pump(), RxState::Open);
    assert_eq!(rxr.take_used(&r.mem), vec![(0, 72)]);
}

#[test]
fn broken_tx_ring_needs_reset() {
    let mut r = rig(F_VERSION_1);
    r.txr
        .push(&r.mem, &[(BUF, 12, false), (0xffff_ff00_0000, 60, false)]);
    w32(&mut r.t, reg::QUEUE_NOTIFY, TX_QUEUE as u32);
    assert_ne!(r.t.status() & STATUS_NEEDS_RESET, 0);
    assert!(r.wire.sent().is_empty());
}

#[path = "net_fuzz.rs"]
mod fuzz;

#[test]
fn pulling_the_cable() {
    let mut r = rig(F_VERSION_1 | F_MAC | F_STATUS);
    let before = r.irq.0.load(Ordering::Relaxed);
    r.rx.set_link(false);
    assert!(!r.rx.link_up());
    let mut st = [0u8; 2];
    r.t.read(0, reg::CONFIG + 6, &mut st);
    assert_eq!(u16::from_le_bytes(st), 0, "status shows no link");
    assert_eq!(
        r.irq.0.load(Ordering::Relaxed),
        before + 1,
        "a config interrupt"
    );
    assert_ne!(r32(&mut r.t, reg::INTERRUPT_STATUS) & 2, 0);
    // Frames stop both ways.
    r.wire.give(&frame(64, 1));
    r.rxr.push(&r.mem, &[(BUF, 1526, true)]);
    assert_eq!(r.rx.pump(), RxState::Open);
    assert!(r.rxr.take_used(&r.mem).is_empty(), "nothing received");
    let f = frame(60, 2);
    r.mem
        .write_slice(&[0u8; HDR_LEN], GuestAddress(BUF + 0x8000))
        .unwrap();
    r.mem
        .write_slice(&f, GuestAddress(BUF + 0x8000 + HDR_LEN as u64))
        .unwrap();
    r.txr
        .push(&r.mem, &[(BUF + 0x8000, (HDR_LEN + f.len()) as u32, false)]);
    w32(&mut r.t, reg::QUEUE_NOTIFY, TX_QUEUE as u32);
    assert!(r.wire.sent().is_empty(), "nothing sent");
    // Plugged again: frames flow, another config interrupt.
    r.rx.set_link(true);
    r.t.read(0, reg::CONFIG + 6, &mut st);
    assert_eq!(u16::from_le_bytes(st), S_LINK_UP);
    r.wire.give(&frame(64, 3));
    assert_eq!(r.rx.pump(), RxState::Open);
    assert_eq!(r.rxr.take_used(&r.mem).len(), 1);
}
