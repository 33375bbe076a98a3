//! ACPI fixed-hardware power management: the PM1a event and control blocks, the PM
//! timer and the GPE0 block, laid out as QEMU's PIIX4 PM function and the ICH9 LPC
//! bridge expose them at their PM base (e.g. 0x600).
//!
//! Register map (offsets from the PM base; every register may be accessed in bytes or
//! words, ACPICA uses the FADT widths):
//!
//! | off        | width | register  | behaviour                                         |
//! |------------|-------|-----------|---------------------------------------------------|
//! | 0x00       | 16    | PM1_STS   | write 1 to clear. TMR_STS(0) BM_STS(4) GBL_STS(5)  |
//! |            |       |           | PWRBTN_STS(8) SLPBTN_STS(9) RTC_STS(10) WAK_STS(15) |
//! | 0x02       | 16    | PM1_EN    | TMR_EN(0) GBL_EN(5) PWRBTN_EN(8) SLPBTN_EN(9) RTC_EN(10) |
//! | 0x04       | 16    | PM1_CNT   | SCI_EN(0) BM_RLD(1) GBL_RLS(2) SLP_TYP(10-12)     |
//! |            |       |           | SLP_EN(13, write-only, reads 0)                   |
//! | 0x06       | 16    | -         | reserved, reads 0                                 |
//! | 0x08       | 32    | PM_TMR    | read-only, 24-bit free-running 3.579545 MHz count |
//! | gpe0       | len/2 | GPE0_STS  | write 1 to clear                                  |
//! | gpe0+len/2 | len/2 | GPE0_EN   | read/write                                        |
//!
//! Offsets of the block that hold none of these (the SMI registers, ...) read 0xff,
//! as ports nothing decodes.
//!
//! The device is one register region, the board's PM I/O block (64 bytes at PIIX4's
//! PMBA, 128 at ICH9's PMBASE); the GPE0 block sits at `gpe0_offset` inside it (+0x0c,
//! 4 bytes, on pc; +0x20, 16 bytes, on ICH9). Offsets are relative to the block, so
//! the device works wherever the spec puts it.
//!
//! Writing PM1_CNT with SLP_EN set and SLP_TYP equal to the board's S5 value (PIIX4
//! SUS_TYP 0 = soft off, ICH9 SLP_TYP 7 = S5; the DSDT `_S5` package must say the same)
//! powers the machine off. Other sleep types are ignored (no S1-S4 yet).
//!
//! The SCI is a level: high while SCI_EN is set and some status bit and its enable are
//! both set (PM1 TMR/GBL/PWRBTN/SLPBTN/RTC, or any GPE0 bit). TMR_STS is set when bit 23
//! of the timer changes; this is noticed when the guest touches the block (there is no
//! host timer behind it), which is enough for polling but not for a guest that waits
//! for the timer-carry SCI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BusDevice, IrqLine, VmEvent};

/// The ACPI PM timer frequency.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// PM1 event + control + timer block length (the board may decode more).
pub const PM1_BLOCK_LEN: u64 = 0x0C;

pub const PM1_STS_TMR: u16 = 1 << 0;
pub const PM1_STS_BM: u16 = 1 << 4;
pub const PM1_STS_GBL: u16 = 1 << 5;
pub const PM1_STS_PWRBTN: u16 = 1 << 8;
pub const PM1_STS_SLPBTN: u16 = 1 << 9;
pub const PM1_STS_RTC: u16 = 1 << 10;
pub const PM1_STS_WAK: u16 = 1 << 15;
/// The PM1 events that can raise an SCI (and the writable bits of PM1_EN).
const PM1_SCI_EVENTS: u16 =
    PM1_STS_TMR | PM1_STS_GBL | PM1_STS_PWRBTN | PM1_STS_SLPBTN | PM1_STS_RTC;

pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
const PM1_CNT_SLP_TYP_SHIFT: u16 = 10;
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;

const OFF_STS: u64 = 0x00;
const OFF_EN: u64 = 0x02;
const OFF_CNT: u64 = 0x04;
const OFF_TMR: u64 = 0x08;

/// A monotonic time source for the PM timer, injected so tests use a fixed one.
pub trait MonotonicClock: Send {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The host's monotonic clock, counting from when it was created.
#[derive(Debug, Clone, Copy)]
pub struct HostMonotonic(Instant);

impl HostMonotonic {
    pub fn new() -> Self {
        HostMonotonic(Instant::now())
    }
}

impl Default for HostMonotonic {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock for HostMonotonic {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A monotonic clock that stands still while the machine is paused, as QEMU's
/// virtual clock does (its PM timer does not count a pause). Clones share the clock.
#[derive(Debug, Clone)]
pub struct VmClock(Arc<std::sync::Mutex<VmClockState>>);

#[derive(Debug)]
struct VmClockState {
    origin: Instant,
    /// Time spent paused before the current run.
    paused_total: Duration,
    paused_at: Option<Instant>,
}

impl VmClock {
    pub fn new() -> Self {
        VmClock(Arc::new(std::sync::Mutex::new(VmClockState {
            origin: Instant::now(),
            paused_total: Duration::ZERO,
            paused_at: None,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, VmClockState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the clock (a second pause changes nothing).
    pub fn pause(&self) {
        let mut s = self.state();
        s.paused_at.get_or_insert_with(Instant::now);
    }

    /// Lets it run on from where it stopped.
    pub fn resume(&self) {
        let mut s = self.state();
        if let Some(at) = s.paused_at.take() {
            s.paused_total += at.elapsed();
        }
    }
}

impl Default for VmClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock for VmClock {
    fn now(&self) -> Duration {
        let s = self.state();
        let end = s.paused_at.unwrap_or_else(Instant::now);
        end.duration_since(s.origin).saturating_sub(s.paused_total)
    }
}

/// Where the board puts the blocks and what its S5 sleep type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmConfig {
    /// GPE0_BLK offset inside the block.
    pub gpe0_offset: u64,
    /// GPE0_BLK length in bytes (even: status half, then enable half).
    pub gpe0_len: u64,
    /// The SLP_TYP value that means S5 (soft off).
    pub s5_typ: u8,
    /// SCI_EN at reset: true when the FADT has no SMI_CMD port (the OS cannot ask
    /// firmware to switch to ACPI mode, so the hardware starts in it).
    pub sci_enabled: bool,
}

/// The PM register block.
pub struct Pm {
    cfg: PmConfig,
    clock: Box<dyn MonotonicClock>,
    sci: Arc<dyn IrqLine>,
    sts: u16,
    en: u16,
    cnt: u16,
    gpe_sts: Vec<u8>,
    gpe_en: Vec<u8>,
    /// Bit 23 epoch of the timer as last seen, to latch TMR_STS.
    tmr_epoch: u64,
    sci_level: bool,
    /// Added to the clock (ns): where a restored timer continues from.
    time_base: i128,
}

impl Pm {
    pub fn new(cfg: PmConfig, clock: Box<dyn MonotonicClock>, sci: Arc<dyn IrqLine>) -> Self {
        let half = (cfg.gpe0_len / 2) as usize;
        let mut pm = Pm {
            cfg,
            clock,
            sci,
            sts: 0,
            en: 0,
            cnt: if cfg.sci_enabled { PM1_CNT_SCI_EN } else { 0 },
            gpe_sts: vec![0; half],
            gpe_en: vec![0; half],
            tmr_epoch: 0,
            sci_level: false,
            time_base: 0,
        };
        pm.tmr_epoch = pm.ticks() >> 23;
        pm
    }

    /// The power button was pressed: PWRBTN_STS, and an SCI if the OS enabled it.
    pub fn press_power_button(&mut self) {
        self.sts |= PM1_STS_PWRBTN;
        self.update_sci();
    }

    /// A general-purpose event (hotplug, ...) sets GPE0 status bit `bit`.
    pub fn raise_gpe(&mut self, bit: usize) {
        if let Some(b) = self.gpe_sts.get_mut(bit / 8) {
            *b |= 1 << (bit % 8);
            self.update_sci();
        }
    }

    /// PM1_STS, PM1_EN and PM1_CNT as the guest would read them.
    pub fn pm1(&self) -> (u16, u16, u16) {
        (self.sts, self.en, self.cnt)
    }

    /// The 24-bit PM timer count at the clock's current time.
    fn ticks(&self) -> u64 {
        let ns = self.timer_ns();
        (u128::from(ns) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u64
    }

    /// The time the PM timer counts, in ns: the clock plus the restored base.
    fn timer_ns(&self) -> u64 {
        let ns = self.clock.now().as_nanos() as i128 + self.time_base;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }

    fn refresh_timer(&mut self) -> u32 {
        let t = self.ticks();
        if t >> 23 != self.tmr_epoch {
            self.tmr_epoch = t >> 23;
            self.sts |= PM1_STS_TMR;
        }
        (t & 0x00FF_FFFF) as u32
    }

    fn update_sci(&mut self) {
        let pm1 = self.sts & self.en & PM1_SCI_EVENTS != 0;
        let gpe = self
            .gpe_sts
            .iter()
            .zip(&self.gpe_en)
            .any(|(s, e)| s & e != 0);
        let level = self.cnt & PM1_CNT_SCI_EN != 0 && (pm1 || gpe);
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    /// The byte at `off` (from the PM base) given the timer value `tmr`.
    fn byte_at(&self, off: u64, tmr: u32) -> u8 {
        let reg16 = |v: u16, o: u64| (v >> (8 * o)) as u8;
        match off {
            0..=1 => reg16(self.sts, off - OFF_STS),
            2..=3 => reg16(self.en, off - OFF_EN),
            4..=5 => reg16(self.cnt, off - OFF_CNT),
            8..=11 => (tmr >> (8 * (off - OFF_TMR))) as u8,
            6..=7 => 0,
            _ => match self.gpe_index(off) {
                Some((true, i)) => self.gpe_sts[i],
                Some((false, i)) => self.gpe_en[i],
                // Registers of the block vmrun does not have (ICH9's SMI_EN at 0x30,
                // ...) read as an undecoded port does, so firmware sees no SMM to set
                // up (its SMM path waits on an SMI that never comes).
                None => 0xff,
            },
        }
    }

    /// For an offset inside GPE0: (is status half, byte index in the half).
    fn gpe_index(&self, off: u64) -> Option<(bool, usize)> {
        let rel = off.checked_sub(self.cfg.gpe0_offset)?;
        let half = self.gpe_sts.len() as u64;
        if rel < half {
            Some((true, rel as usize))
        } else if rel < 2 * half {
            Some((false, (rel - half) as usize))
        } else {
            None
        }
    }

    fn write_pm1(&mut self, off: u64, data: &[u8]) -> Option<VmEvent> {
        // Gather the bytes of the access into (mask, value) per 16-bit register.
        let field = |reg: u64| {
            let mut mask = 0u16;
            let mut val = 0u16;
            for (i, &b) in data.iter().enumerate() {
                let a = off + i as u64;
                if a >= reg && a < reg + 2 {
                    let sh = 8 * (a - reg);
                    mask |= 0xFF << sh;
                    val |= u16::from(b) << sh;
                }
            }
            (mask != 0).then_some((mask, val & mask))
        };
        if let Some((_, v)) = field(OFF_STS) {
            self.sts &= !v;
        }
        if let Some((m, v)) = field(OFF_EN) {
            self.en = (self.en & !m) | (v & PM1_SCI_EVENTS);
        }
        if let Some((m, v)) = field(OFF_CNT) {
            let new = (self.cnt & !m) | v;
            self.cnt = new & !PM1_CNT_SLP_EN;
            if new & PM1_CNT_SLP_EN != 0 {
                let typ = ((new >> PM1_CNT_SLP_TYP_SHIFT) & 7) as u8;
                if typ == self.cfg.s5_typ {
                    return Some(VmEvent::Poweroff);
                }
            }
        }
        None
    }
}

impl BusDevice for Pm {
    fn read(&mut self, _region: usize, off: u64, data: &mut [u8]) {
        let tmr = self.refresh_timer();
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.byte_at(off + i as u64, tmr);
        }
        self.update_sci();
    }

    fn write(&mut self, _region: usize, off: u64, data: &[u8]) -> Option<VmEvent> {
        self.refresh_timer();
        let ev = if off < PM1_BLOCK_LEN {
            self.write_pm1(off, data)
        } else {
            for (i, &b) in data.iter().enumerate() {
                match self.gpe_index(off + i as u64) {
                    Some((true, j)) => self.gpe_sts[j] &= !b,
                    Some((false, j)) => self.gpe_en[j] = b,
                    None => {}
                }
            }
            None
        };
        self.update_sci();
        ev
    }
}

mod state;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    struct FakeClock(Arc<AtomicU64>);
    impl MonotonicClock for FakeClock {
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

    const ICH9: PmConfig = PmConfig {
        gpe0_offset: 0x20,
        gpe0_len: 16,
        s5_typ: 7,
        sci_enabled: true,
    };
    const PIIX4: PmConfig = PmConfig {
        gpe0_offset: 0x0c,
        gpe0_len: 4,
        s5_typ: 0,
        sci_enabled: false,
    };

    fn pm(cfg: PmConfig) -> (Pm, Arc<AtomicU64>, Arc<Level>) {
        let t = Arc::new(AtomicU64::new(0));
        let l = Arc::new(Level::default());
        (
            Pm::new(cfg, Box::new(FakeClock(t.clone())), l.clone()),
            t,
            l,
        )
    }

    /// The block sits at 0x600 in these tests; the device sees offsets into it.
    fn r16(p: &mut Pm, port: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(0, port - 0x600, &mut b);
        u16::from_le_bytes(b)
    }

    fn w16(p: &mut Pm, port: u64, v: u16) -> Option<VmEvent> {
        p.write(0, port - 0x600, &v.to_le_bytes())
    }

    #[test]
    fn vm_clock_stands_still_while_paused() {
        let c = VmClock::new();
        c.pause();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.now(), a);
        c.pause();
        c.resume();
        let b = c.now();
        assert!(b >= a && b < a + Duration::from_millis(20), "{a:?} {b:?}");
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.clone().now() > b);
    }

    #[test]
    fn power_button_needs_sci_en_and_pwrbtn_en_and_is_a_level() {
        let (mut p, _, sci) = pm(ICH9);
        // The enable first (as Linux's button driver does), then the press.
        w16(&mut p, 0x602, PM1_STS_PWRBTN);
        p.press_power_button();
        assert!(sci.0.load(Ordering::Relaxed));
        // A level: it stays up until the status bit is cleared by writing 1.
        let mut b = [0u8; 2];
        p.read(0, 0, &mut b);
        assert!(sci.0.load(Ordering::Relaxed));
        w16(&mut p, 0x600, PM1_STS_PWRBTN);
        assert!(!sci.0.load(Ordering::Relaxed));
        // Pressing again while disabled latches the status only.
        w16(&mut p, 0x602, 0);
        p.press_power_button();
        assert!(!sci.0.load(Ordering::Relaxed));
        assert_eq!(r16(&mut p, 0x600) & PM1_STS_PWRBTN, PM1_STS_PWRBTN);
        w16(&mut p, 0x602, PM1_STS_PWRBTN);
        assert!(
            sci.0.load(Ordering::Relaxed),
            "enabling a pending event raises the SCI"
        );
    }

    #[test]
    fn poweroff_only_on_s5() {
        let (mut p, _, _) = pm(ICH9);
        assert_eq!(r16(&mut p, 0x604), PM1_CNT_SCI_EN);
        assert_eq!(
            w16(&mut p, 0x604, 1 | (5 << 10) | PM1_CNT_SLP_EN),
            None,
            "S3 ignored"
        );
        assert_eq!(w16(&mut p, 0x604, 1 | (7 << 10)), None, "no SLP_EN");
        assert_eq!(r16(&mut p, 0x604), 1 | (7 << 10), "SLP_TYP kept");
        // A byte write of the high half alone (SLP_TYP and SLP_EN live there).
        assert_eq!(
            p.write(0, 5, &[(7 << 2) | (1 << 5)]),
            Some(VmEvent::Poweroff)
        );
        let (mut p, _, _) = pm(PIIX4);
        assert_eq!(r16(&mut p, 0x604), 0, "SCI_EN clear until ACPI mode");
        assert_eq!(w16(&mut p, 0x604, 1 << 10 | PM1_CNT_SLP_EN), None);
        assert_eq!(w16(&mut p, 0x604, PM1_CNT_SLP_EN), Some(VmEvent::Poweroff));
        assert_eq!(r16(&mut p, 0x604) & PM1_CNT_SLP_EN, 0, "SLP_EN reads 0");
    }

    #[test]
    fn pm_timer() {
        let (mut p, t, _) = pm(ICH9);
        let rd = |p: &mut Pm| {
            let mut b = [0u8; 4];
            p.read(0, 8, &mut b);
            u32::from_le_bytes(b)
        };
        assert_eq!(rd(&mut p), 0);
        t.store(1_000_000_000, Ordering::Relaxed);
        assert_eq!(rd(&mut p), 3_579_545);
        assert_eq!(r16(&mut p, 0x600) & PM1_STS_TMR, 0);
        // Past bit 23: TMR_STS latches, the count wraps at 24 bits.
        t.store(3_000_000_000, Ordering::Relaxed);
        assert_eq!(rd(&mut p), (3 * 3_579_545) & 0xFF_FFFF);
        assert_ne!(r16(&mut p, 0x600) & PM1_STS_TMR, 0);
        t.store(5_000_000_000, Ordering::Relaxed);
        assert_eq!(rd(&mut p), (5 * 3_579_545) & 0xFF_FFFF);
        w16(&mut p, 0x600, PM1_STS_TMR);
        assert_eq!(r16(&mut p, 0x600) & PM1_STS_TMR, 0);
        assert_eq!(w16(&mut p, 0x608, 0xFFFF), None, "PM_TMR is read-only");
        assert_eq!(rd(&mut p), (5 * 3_579_545) & 0xFF_FFFF);
    }

    #[test]
    fn power_button_sci() {
        let (mut p, _, sci) = pm(PIIX4);
        p.press_power_button();
        assert_eq!(r16(&mut p, 0x600), PM1_STS_PWRBTN);
        assert!(!sci.0.load(Ordering::Relaxed), "not enabled");
        w16(&mut p, 0x602, PM1_STS_PWRBTN | 0x8000);
        assert_eq!(
            r16(&mut p, 0x602),
            PM1_STS_PWRBTN,
            "reserved EN bits read 0"
        );
        assert!(!sci.0.load(Ordering::Relaxed), "SCI_EN clear: no SCI");
        w16(&mut p, 0x604, PM1_CNT_SCI_EN);
        assert!(sci.0.load(Ordering::Relaxed));
        // Writing 0 to the status bit leaves it; writing 1 clears it.
        w16(&mut p, 0x600, 0);
        assert!(sci.0.load(Ordering::Relaxed));
        p.write(0, 1, &[1]);
        assert!(!sci.0.load(Ordering::Relaxed));
        assert_eq!(r16(&mut p, 0x600), 0);
    }

    #[test]
    fn gpe0_block() {
        let (mut p, _, sci) = pm(PIIX4);
        w16(&mut p, 0x604, PM1_CNT_SCI_EN);
        p.raise_gpe(1);
        p.raise_gpe(99); // out of range: ignored
        assert_eq!(r16(&mut p, 0x60c), 2);
        assert!(!sci.0.load(Ordering::Relaxed));
        p.write(0, 0x0c + 2, &[2]);
        assert!(sci.0.load(Ordering::Relaxed));
        assert_eq!(r16(&mut p, 0x60e), 2);
        p.write(0, 0x0c, &[2]);
        assert!(!sci.0.load(Ordering::Relaxed));
        let (mut p, _, sci) = pm(ICH9);
        p.raise_gpe(63);
        p.write(0, 0x2F, &[0x80]);
        assert!(sci.0.load(Ordering::Relaxed));
        let mut b = [0u8; 1];
        p.read(0, 0x27, &mut b);
        assert_eq!(b[0], 0x80);
    }
}
