//! Snapshot round trips of the legacy devices: each is driven into a state through
//! its registers, saved, restored into a freshly built one, and the two must then
//! answer every register read (and behave) the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::devices::cmos::{Cmos, CmosLayout, WallClock};
use crate::devices::fw_cfg::{FwCfg, FwCfgItems};
use crate::devices::i8042::I8042;
use crate::devices::pm::{MonotonicClock, Pm, PmConfig};
use crate::devices::serial::Serial;
use crate::devices::{BusDevice, IrqLine};
use crate::snapshot::state::Stateful;

/// A line that remembers its level.
#[derive(Default)]
pub(super) struct Level(pub AtomicBool);
impl IrqLine for Level {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::SeqCst);
    }
}
impl Level {
    pub fn high(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A clock the test sets (ns).
#[derive(Clone, Default)]
pub(super) struct Clock(pub Arc<AtomicU64>);
impl WallClock for Clock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}
impl MonotonicClock for Clock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}
impl Clock {
    pub fn at(ns: u64) -> Self {
        Self(Arc::new(AtomicU64::new(ns)))
    }
    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::SeqCst)
    }
}

fn rd(d: &mut dyn BusDevice, region: usize, off: u64) -> u8 {
    let mut b = [0u8];
    d.read(region, off, &mut b);
    b[0]
}

fn wr(d: &mut dyn BusDevice, region: usize, off: u64, v: u8) {
    d.write(region, off, &[v]);
}

/// Both devices answer the same reads, in order (reads may have side effects, so the
/// same sequence runs on both).
fn same_reads(a: &mut dyn BusDevice, b: &mut dyn BusDevice, reads: &[(usize, u64)]) {
    for &(region, off) in reads {
        assert_eq!(rd(a, region, off), rd(b, region, off), "{region}/{off:#x}");
    }
}

pub(super) fn uart(line: Arc<Level>) -> Serial {
    Serial::new(Box::new(std::io::sink()), line)
}

/// A UART with FIFOs at trigger 8, interrupts on, divisor and scratch set, five bytes
/// received.
pub(super) fn busy_uart(line: Arc<Level>) -> Serial {
    let mut s = uart(line);
    wr(&mut s, 0, 3, 0x80);
    wr(&mut s, 0, 0, 0x03);
    wr(&mut s, 0, 1, 0x01);
    wr(&mut s, 0, 3, 0x1b);
    wr(&mut s, 0, 2, 0x81);
    wr(&mut s, 0, 1, 0x0f);
    wr(&mut s, 0, 4, 0x0b);
    wr(&mut s, 0, 7, 0x5a);
    assert_eq!(s.enqueue_input(b"hello"), 5);
    s
}

#[test]
fn serial_round_trip() {
    let line = Arc::new(Level::default());
    let mut a = busy_uart(line.clone());
    assert!(line.high());
    let saved = a.save_state().unwrap();
    let line2 = Arc::new(Level::default());
    let mut b = uart(line2.clone());
    b.restore_state(&saved).unwrap();
    assert!(line2.high(), "the pending interrupt is driven again");
    assert_eq!(b.input_space(), a.input_space());
    let regs: Vec<_> = [1, 2, 3, 4, 5, 6, 7].iter().map(|&o| (0, o)).collect();
    same_reads(&mut a, &mut b, &regs);
    // The divisor, then the FIFO's bytes in order.
    wr(&mut a, 0, 3, 0x9b);
    wr(&mut b, 0, 3, 0x9b);
    same_reads(&mut a, &mut b, &[(0, 0), (0, 1)]);
    wr(&mut a, 0, 3, 0x1b);
    wr(&mut b, 0, 3, 0x1b);
    let fifo: Vec<_> = (0..7).flat_map(|_| [(0, 0), (0, 5), (0, 2)]).collect();
    same_reads(&mut a, &mut b, &fifo);
    assert!(!line2.high());
}

fn layout() -> CmosLayout {
    CmosLayout {
        ram_below_4g: 128 << 20,
        ram_above_4g: 0,
        cpus: 2,
        boot_order: vec![],
    }
}

const T0: u64 = 1_700_000_000_000_000_000;

fn cmos_get(c: &mut Cmos, i: u8) -> u8 {
    wr(c, 0, 0, i);
    rd(c, 0, 1)
}

fn cmos_set(c: &mut Cmos, i: u8, v: u8) {
    wr(c, 0, 0, i);
    wr(c, 0, 1, v);
}

#[test]
fn cmos_round_trip_and_time_on_restore() {
    let clock = Clock::at(T0);
    let line = Arc::new(Level::default());
    let mut a = Cmos::new(&layout(), Box::new(clock.clone()), line.clone());
    // Binary mode, a guest-set time, an alarm, a user byte, update interrupts on.
    cmos_set(&mut a, 0x0b, 0x86);
    for (i, v) in [
        (0, 30),
        (2, 15),
        (4, 10),
        (7, 5),
        (8, 6),
        (9, 24),
        (0x32, 20),
    ] {
        cmos_set(&mut a, i, v);
    }
    cmos_set(&mut a, 0x0b, 0x16);
    cmos_set(&mut a, 0x01, 0x33);
    cmos_set(&mut a, 0x40, 0xa5);
    clock.set(T0 + 1_500_000_000);
    wr(&mut a, 0, 0, 0x8d); // index D, NMI masked
    assert!(line.high(), "UF latched: IRQ 8 up");
    let saved = a.save_state().unwrap();

    // The same host time: every register reads the same.
    let line2 = Arc::new(Level::default());
    let clock2 = Clock::at(T0 + 1_500_000_000);
    let mut b = Cmos::new(&layout(), Box::new(clock2.clone()), line2.clone());
    b.restore_state(&saved).unwrap();
    assert!(line2.high());
    assert!(b.nmi_masked());
    assert_eq!(rd(&mut b, 0, 1), rd(&mut a, 0, 1), "the index survived");
    for i in (0..0x0c).chain([0x32, 0x40, 0x15, 0x17]) {
        assert_eq!(cmos_get(&mut a, i), cmos_get(&mut b, i), "register {i:#x}");
    }
    assert_eq!(cmos_get(&mut b, 0), 31);

    // Restored 100 s later: the clock shows the time that passed.
    let c3 = Clock::at(T0 + 101_500_000_000);
    let mut c = Cmos::new(&layout(), Box::new(c3), Arc::new(Level::default()));
    c.restore_state(&saved).unwrap();
    assert_eq!((cmos_get(&mut c, 2), cmos_get(&mut c, 0)), (17, 11));

    // Restored on a host whose clock is an hour behind: no jump backwards.
    let c4 = Clock::at(T0 - 3_600_000_000_000);
    let mut d = Cmos::new(&layout(), Box::new(c4), Arc::new(Level::default()));
    d.restore_state(&saved).unwrap();
    assert_eq!((cmos_get(&mut d, 4), cmos_get(&mut d, 2)), (10, 15));
    assert_eq!(cmos_get(&mut d, 0), 31);
}

#[test]
fn i8042_round_trip() {
    let (k, m) = (Arc::new(Level::default()), Arc::new(Level::default()));
    let mut a = I8042::new(k.clone(), m.clone());
    // Translation off; keyboard identify; mouse status request; a key waiting.
    wr(&mut a, 1, 0, 0x60);
    wr(&mut a, 0, 0, 0x03);
    wr(&mut a, 0, 0, 0xf2);
    wr(&mut a, 1, 0, 0xd4);
    wr(&mut a, 0, 0, 0xe9);
    a.push_key(0x1c);
    wr(&mut a, 1, 0, 0xd4); // a command waiting for its byte
    assert!(k.high());
    let saved = a.save_state().unwrap();
    let (k2, m2) = (Arc::new(Level::default()), Arc::new(Level::default()));
    let mut b = I8042::new(k2.clone(), m2.clone());
    b.restore_state(&saved).unwrap();
    assert!(k2.high() && !m2.high());
    wr(&mut a, 0, 0, 0xf6);
    wr(&mut b, 0, 0, 0xf6);
    let reads: Vec<_> = (0..12).flat_map(|_| [(1, 0), (0, 0)]).collect();
    same_reads(&mut a, &mut b, &reads);
    assert_eq!(m.high(), m2.high());
}

const ICH9: PmConfig = PmConfig {
    gpe0_offset: 0x20,
    gpe0_len: 16,
    s5_typ: 7,
    sci_enabled: true,
};

fn pm_timer(p: &mut Pm) -> u32 {
    let mut b = [0u8; 4];
    p.read(0, 8, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn pm_round_trip_and_timer_continues() {
    let clock = Clock::at(5_000_000_000);
    let line = Arc::new(Level::default());
    let mut a = Pm::new(ICH9, Box::new(clock.clone()), line.clone());
    a.write(0, 2, &0x0100u16.to_le_bytes());
    a.write(0, 0x2a, &[0x42]);
    a.raise_gpe(3);
    a.press_power_button();
    assert!(line.high());
    let t = pm_timer(&mut a);
    let saved = a.save_state().unwrap();
    // The restoring process's clock starts again near zero.
    let clock2 = Clock::at(1_000);
    let line2 = Arc::new(Level::default());
    let mut b = Pm::new(ICH9, Box::new(clock2.clone()), line2.clone());
    b.restore_state(&saved).unwrap();
    assert!(line2.high());
    assert_eq!(pm_timer(&mut b), t, "the timer continues from its count");
    for off in (0..8).chain(0x20..0x30) {
        assert_eq!(rd(&mut a, 0, off), rd(&mut b, 0, off), "offset {off:#x}");
    }
    clock.set(6_000_000_000);
    clock2.set(1_000_001_000);
    assert_eq!(pm_timer(&mut a), pm_timer(&mut b));
}

#[test]
fn fw_cfg_cursor_round_trip() {
    let mem = crate::devices::virtio::testutil::memory(1 << 16);
    let items = || {
        let mut i = FwCfgItems::new();
        i.add_item(0x0005, (0u8..200).collect());
        i
    };
    let mut a = FwCfg::new(mem.clone(), items());
    a.write(0, 0, &5u16.to_le_bytes());
    for _ in 0..17 {
        rd(&mut a, 0, 1);
    }
    a.write(1, 0, &0x1234u32.to_be_bytes());
    let saved = a.save_state().unwrap();
    let mut b = FwCfg::new(mem, items());
    b.restore_state(&saved).unwrap();
    let reads: Vec<_> = (0..20).map(|_| (0, 1)).collect();
    same_reads(&mut a, &mut b, &reads);
    assert_eq!(b.save_state().unwrap(), a.save_state().unwrap());
    // A cursor past the item is refused.
    let mut c = FwCfg::new(
        crate::devices::virtio::testutil::memory(1 << 16),
        FwCfgItems::new(),
    );
    assert!(c.restore_state(&saved).is_err());
}
