//! Unit tests for the parent module, kept apart to keep the device file short.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

struct FakeClock(Arc<AtomicU64>);
impl WallClock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Level(AtomicBool);
impl IrqLine for Level {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}

/// 2024-02-29 23:59:58 UTC, a Thursday.
const T0: u64 = 1_709_251_198;

fn layout() -> CmosLayout {
    CmosLayout {
        ram_below_4g: 3 << 30,
        ram_above_4g: 1 << 30,
        cpus: 4,
        boot_order: vec![BootDevice::Disk, BootDevice::Cdrom],
    }
}

fn rtc() -> (Cmos, Arc<AtomicU64>, Arc<Level>) {
    let t = Arc::new(AtomicU64::new(T0 * 1_000_000_000));
    let l = Arc::new(Level::default());
    (
        Cmos::new(&layout(), Box::new(FakeClock(t.clone())), l.clone()),
        t,
        l,
    )
}

fn get(c: &mut Cmos, i: u8) -> u8 {
    c.write(0, 0, &[i]);
    let mut b = [0u8];
    c.read(0, 1, &mut b);
    b[0]
}

fn set(c: &mut Cmos, i: u8, v: u8) {
    c.write(0, 0, &[i]);
    c.write(0, 1, &[v]);
}

fn advance(t: &AtomicU64, ns: u64) {
    t.fetch_add(ns, Ordering::Relaxed);
}

fn clock_regs(c: &mut Cmos) -> [u8; 7] {
    [0, 2, 4, 6, 7, 8, 9].map(|i| get(c, i))
}

#[test]
fn date_math() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(days_from_civil(2024, 3, 1), 19_783);
    assert_eq!(days_from_civil(2000, 2, 29), 11_016);
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    for d in [-800_000i64, -1, 0, 11_016, 19_782, 2_932_896] {
        let (y, m, dd) = civil_from_days(d);
        assert_eq!(days_from_civil(y, m, dd), d);
    }
}

#[test]
fn bcd_time_and_midnight_rollover() {
    let (mut c, t, _) = rtc();
    assert_eq!(
        clock_regs(&mut c),
        [0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24]
    );
    assert_eq!(get(&mut c, 0x32), 0x20);
    advance(&t, 2_000_000_000);
    assert_eq!(
        clock_regs(&mut c),
        [0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24]
    );
}

#[test]
fn binary_and_12_hour() {
    let (mut c, t, _) = rtc();
    set(&mut c, 0x0B, B_BINARY);
    assert_eq!(get(&mut c, 4), 0x80 | 11, "11 PM");
    assert_eq!(get(&mut c, 2), 59);
    advance(&t, 2_000_000_000);
    assert_eq!(get(&mut c, 4), 12, "midnight is 12 AM");
    advance(&t, 12 * 3600 * 1_000_000_000);
    assert_eq!(get(&mut c, 4), 0x80 | 12, "noon is 12 PM");
    set(&mut c, 0x0B, 0);
    assert_eq!(get(&mut c, 4), 0x92, "BCD 12 PM");
    advance(&t, 3600 * 1_000_000_000);
    assert_eq!(get(&mut c, 4), 0x81);
}

#[test]
fn set_time_and_keep_running() {
    let (mut c, t, _) = rtc();
    set(&mut c, 0x0B, B_SET | B_24H);
    for (i, v) in [
        (0u8, 0x30u8),
        (2, 0x15),
        (4, 0x08),
        (7, 0x31),
        (8, 0x12),
        (9, 0x99),
        (0x32, 0x19),
    ] {
        set(&mut c, i, v);
    }
    advance(&t, 5_000_000_000);
    assert_eq!(get(&mut c, 0), 0x30, "frozen while SET");
    assert_eq!(get(&mut c, 0x0A) & A_UIP, 0);
    set(&mut c, 0x0B, B_24H);
    advance(&t, 31_000_000_000);
    assert_eq!(
        clock_regs(&mut c),
        [0x01, 0x16, 0x08, 0x06, 0x31, 0x12, 0x99]
    );
    // A write while running moves the clock from there.
    set(&mut c, 4, 0x23);
    set(&mut c, 2, 0x59);
    set(&mut c, 0, 0x59);
    advance(&t, 1_000_000_000);
    assert_eq!(
        clock_regs(&mut c),
        [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00]
    );
    assert_eq!(get(&mut c, 0x32), 0x20, "Y2K");
}

#[test]
fn uip_window() {
    let (mut c, t, _) = rtc();
    assert_eq!(get(&mut c, 0x0A), 0x26);
    advance(&t, 999_800_000);
    assert_eq!(get(&mut c, 0x0A), 0xA6);
    advance(&t, 300_000);
    assert_eq!(get(&mut c, 0x0A), 0x26);
}

#[test]
fn update_and_alarm_interrupts() {
    let (mut c, t, irq) = rtc();
    assert_eq!(c.next_event(), None);
    set(&mut c, 0x01, 0x00);
    set(&mut c, 0x03, 0x00);
    set(&mut c, 0x05, 0xC0); // any hour
    set(&mut c, 0x0B, B_24H | B_AIE);
    assert_eq!(c.next_event(), Some(Duration::from_secs(1)));
    advance(&t, 1_000_000_000);
    c.tick();
    assert!(!irq.0.load(Ordering::Relaxed), "23:59:59 does not match");
    let m = C_IRQF | C_AF | C_UF;
    assert_eq!(get(&mut c, 0x0C) & m, C_UF, "UF latched, not enabled");
    advance(&t, 1_000_000_000);
    c.tick();
    assert!(irq.0.load(Ordering::Relaxed), "00:00:00 matches");
    assert_eq!(get(&mut c, 0x0C) & m, C_IRQF | C_AF | C_UF);
    assert!(!irq.0.load(Ordering::Relaxed));
    assert_eq!(get(&mut c, 0x0C), 0, "cleared on read");
    set(&mut c, 0x0B, B_24H | B_UIE);
    advance(&t, 1_000_000_000);
    c.tick();
    assert!(irq.0.load(Ordering::Relaxed));
    assert_eq!(get(&mut c, 0x0C) & (C_IRQF | C_UF), C_IRQF | C_UF);
    // SET clears UIE.
    set(&mut c, 0x0B, B_SET | B_UIE | B_24H);
    assert_eq!(get(&mut c, 0x0B), B_SET | B_24H);
}

#[test]
fn periodic_interrupt() {
    let (mut c, t, irq) = rtc();
    set(&mut c, 0x0A, 0x2F); // 2 Hz
    get(&mut c, 0x0C);
    set(&mut c, 0x0B, B_24H | B_PIE);
    assert_eq!(c.next_event(), Some(Duration::from_millis(500)));
    advance(&t, 500_000_000);
    c.tick();
    assert!(irq.0.load(Ordering::Relaxed));
    assert_eq!(get(&mut c, 0x0C), C_IRQF | C_PF);
    set(&mut c, 0x0A, 0x23); // 8192 Hz
    assert_eq!(c.next_event(), Some(Duration::from_nanos(122_071)));
    set(&mut c, 0x0A, 0x20);
    assert_eq!(c.next_event(), None, "rate 0: off");
}

#[test]
fn index_nmi_and_ram() {
    let (mut c, _, _) = rtc();
    c.write(0, 0, &[0x80 | 0x40]);
    assert!(c.nmi_masked());
    c.write(0, 1, &[0x5A]);
    assert_eq!(get(&mut c, 0x40), 0x5A);
    assert!(!c.nmi_masked());
    let mut b = [0u8];
    c.read(0, 0, &mut b);
    assert_eq!(b[0], 0xFF, "the index port is write-only");
    assert_eq!(get(&mut c, 0x0D), 0x80);
    set(&mut c, 0x0D, 0);
    assert_eq!(get(&mut c, 0x0D), 0x80, "D is read-only");
}

#[test]
fn layout_bytes() {
    let (mut c, _, _) = rtc();
    let b: Vec<u8> = [
        0x14, 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35, 0x5B, 0x5C, 0x5D, 0x5F, 0x3D, 0x38,
    ]
    .iter()
    .map(|&i| get(&mut c, i))
    .collect();
    // 3 GiB: extended capped at 0xFFFF KiB; (3 GiB - 16 MiB) / 64 KiB = 0xBF00;
    // 1 GiB above 4 GiB = 0x4000 blocks; 4 CPUs; boot disk then CD-ROM.
    assert_eq!(
        b,
        [0x06, 0x80, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0xBF, 0x00, 0x40, 0x00, 3, 0x32, 0x01]
    );
    let small = CmosLayout {
        ram_below_4g: 8 << 20,
        ram_above_4g: 0,
        cpus: 1,
        boot_order: vec![],
    };
    let mut ram = [0u8; 128];
    small.fill(&mut ram);
    assert_eq!(
        (ram[0x17], ram[0x18], ram[0x34], ram[0x35]),
        (0x00, 0x1C, 0, 0)
    );
}
