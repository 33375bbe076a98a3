//! The MC146818 RTC and its 128 bytes of CMOS RAM at ports 0x70 (index, bit 7 masks
//! NMI) and 0x71 (data), IRQ 8.
//!
//! The clock is the injected [`WallClock`] plus an offset the guest sets by writing the
//! time registers, so the RTC runs while the VM runs. The time registers are computed
//! on every read in the format register B selects (BCD or binary, 12 or 24 hours);
//! while B.SET is 1 they are frozen and the guest's writes only store, and clearing
//! SET starts the clock from what was written. UIP (A bit 7) reads 1 during the 244 us
//! before each second's update.
//!
//! Interrupt flags in register C (PF periodic at the rate A selects, AF alarm with
//! "don't care" alarm values 0xC0-0xFF, UF update-ended) are latched as time passes and
//! cleared by reading C; IRQF and the IRQ 8 level follow them and their enables in B.
//! Time passing is noticed on register access and on [`Cmos::tick`], which the event
//! loop calls after [`Cmos::next_event`] elapses. Not modelled: the divider bits of
//! register A (the oscillator always runs), daylight-saving (B.DSE), square-wave
//! output.
//!
//! The RAM above the clock is filled as QEMU's pc_cmos_init does for SeaBIOS (see
//! [`CmosLayout`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{BusDevice, IrqLine, VmEvent};

const SEC: usize = 0x00;
const SEC_ALARM: usize = 0x01;
const MIN: usize = 0x02;
const MIN_ALARM: usize = 0x03;
const HOUR: usize = 0x04;
const HOUR_ALARM: usize = 0x05;
const WEEKDAY: usize = 0x06;
const DAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0A;
const REG_B: usize = 0x0B;
const REG_C: usize = 0x0C;
const REG_D: usize = 0x0D;
const CENTURY: usize = 0x32;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

const NS: i128 = 1_000_000_000;
/// UIP is set this long before each update.
const UIP_NS: i128 = 244_000;

/// Wall-clock time (UTC since the Unix epoch), injected so tests use a fixed one.
pub trait WallClock: Send {
    fn now(&self) -> Duration;
}

/// The host's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostWallClock;

impl WallClock for HostWallClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A boot device code as the BIOS boot-order CMOS bytes hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    Floppy = 1,
    Disk = 2,
    Cdrom = 3,
    Network = 4,
}

/// What the firmware reads from CMOS about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosLayout {
    /// RAM below 4 GiB, in bytes (including the first MiB).
    pub ram_below_4g: u64,
    /// RAM above 4 GiB, in bytes.
    pub ram_above_4g: u64,
    /// Number of vCPUs (SeaBIOS reads count − 1 at 0x5F).
    pub cpus: u8,
    /// Up to three boot devices, first choice first.
    pub boot_order: Vec<BootDevice>,
}

impl CmosLayout {
    /// Fills the CMOS RAM bytes the firmware reads.
    fn fill(&self, ram: &mut [u8; 128]) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        // Base memory: 640 KiB.
        ram[0x15] = 0x80;
        ram[0x16] = 0x02;
        // Extended memory from 1 MiB, in KiB, capped at 0xFFFF (64 MiB).
        let ext = (self.ram_below_4g.saturating_sub(MIB) / KIB).min(0xFFFF);
        for at in [0x17, 0x30] {
            ram[at] = ext as u8;
            ram[at + 1] = (ext >> 8) as u8;
        }
        // Memory above 16 MiB (below 4 GiB) in 64 KiB blocks.
        let high = (self.ram_below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xFFFF);
        ram[0x34] = high as u8;
        ram[0x35] = (high >> 8) as u8;
        // Memory above 4 GiB in 64 KiB blocks, three bytes.
        let above = (self.ram_above_4g / (64 * KIB)).min(0xFF_FFFF);
        ram[0x5B] = above as u8;
        ram[0x5C] = (above >> 8) as u8;
        ram[0x5D] = (above >> 16) as u8;
        ram[0x5F] = self.cpus.saturating_sub(1);
        // Equipment: FPU and PS/2 mouse present, no floppy drives.
        ram[0x14] = 0x06;
        let dev = |i: usize| self.boot_order.get(i).map_or(0, |d| *d as u8);
        ram[0x3D] = (dev(1) << 4) | dev(0);
        // Low bit: skip the floppy boot-signature check.
        ram[0x38] = (dev(2) << 4) | 1;
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The MC146818 RTC with its CMOS RAM.
pub struct Cmos {
    clock: Box<dyn WallClock>,
    irq: Arc<dyn IrqLine>,
    ram: [u8; 128],
    index: u8,
    nmi_masked: bool,
    /// Guest time minus host time, in ns.
    offset_ns: i128,
    /// Last whole second and periodic tick noticed, to latch UF/AF and PF.
    last_sec: i128,
    last_period: i128,
    irq_level: bool,
}

impl Cmos {
    /// An RTC set to the clock's time, 24-hour BCD mode as PC firmware leaves it.
    pub fn new(layout: &CmosLayout, clock: Box<dyn WallClock>, irq: Arc<dyn IrqLine>) -> Self {
        let mut ram = [0u8; 128];
        layout.fill(&mut ram);
        ram[REG_A] = 0x26; // 32.768 kHz divider, 1024 Hz periodic rate
        ram[REG_B] = B_24H;
        ram[REG_D] = D_VRT;
        let mut c = Cmos {
            clock,
            irq,
            ram,
            index: 0,
            nmi_masked: false,
            offset_ns: 0,
            last_sec: 0,
            last_period: 0,
            irq_level: false,
        };
        let now = c.guest_ns();
        c.last_sec = now.div_euclid(NS);
        c.last_period = c.period_index(now);
        c
    }

    /// Whether the guest masked NMIs (bit 7 of the last index write).
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// How long until the RTC has an enabled interrupt to raise, if any.
    pub fn next_event(&mut self) -> Option<Duration> {
        self.catch_up();
        let now = self.guest_ns();
        let b = self.ram[REG_B];
        let c = self.ram[REG_C];
        let mut next: Option<i128> = None;
        let mut consider = |at: i128| next = Some(next.map_or(at, |n| n.min(at)));
        if b & B_PIE != 0 && c & C_PF == 0 {
            if let Some(p) = self.period_ticks() {
                let ticks = (self.period_index(now) + 1) * p;
                consider((ticks * NS + 32_767) / 32_768);
            }
        }
        let want_second = (b & B_UIE != 0 && c & C_UF == 0) || (b & B_AIE != 0 && c & C_AF == 0);
        if want_second && b & B_SET == 0 {
            consider((now.div_euclid(NS) + 1) * NS);
        }
        next.map(|at| Duration::from_nanos((at - now).max(0) as u64))
    }

    /// Latches the flags for the time that passed and updates IRQ 8.
    pub fn tick(&mut self) {
        self.catch_up();
        self.update_irq();
    }

    fn guest_ns(&self) -> i128 {
        self.clock.now().as_nanos() as i128 + self.offset_ns
    }

    /// The periodic interrupt's period in 32.768 kHz ticks, if enabled by the rate.
    fn period_ticks(&self) -> Option<i128> {
        // Rate select: 1 and 2 alias 8 and 9; 3-15 give 32768 >> (rs - 1) Hz.
        match self.ram[REG_A] & 0x0F {
            0 => None,
            1 => Some(1 << 7),
            2 => Some(1 << 8),
            rs => Some(1 << (rs - 1)),
        }
    }

    /// Which periodic interval `ns` falls in; the intervals are aligned with the
    /// seconds, as both come from the same divider chain.
    fn period_index(&self, ns: i128) -> i128 {
        self.period_ticks()
            .map_or(0, |p| (ns * 32_768).div_euclid(NS).div_euclid(p))
    }

    fn binary(&self) -> bool {
        self.ram[REG_B] & B_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() {
            v as u8
        } else {
            (((v / 10) << 4) | (v % 10)) as u8
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.binary() {
            u32::from(v)
        } else {
            u32::from(v >> 4) * 10 + u32::from(v & 0x0F)
        }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.ram[REG_B] & B_24H != 0 {
            return self.encode(h);
        }
        let pm = if h >= 12 { 0x80 } else { 0 };
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.ram[REG_B] & B_24H != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7F) % 12;
        if v & 0x80 != 0 {
            h + 12
        } else {
            h
        }
    }

    /// The time registers for the guest second `secs`: (sec, min, hour, weekday, day,
    /// month, year, century), encoded.
    fn time_regs(&self, secs: i128) -> [u8; 8] {
        let days = secs.div_euclid(86_400) as i64;
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7) as u32 + 1; // 1970-01-01 was a Thursday
        let year = y.rem_euclid(10_000) as u32;
        [
            self.encode(sod % 60),
            self.encode(sod / 60 % 60),
            self.encode_hour(sod / 3600),
            self.encode(weekday),
            self.encode(d),
            self.encode(m),
            self.encode(year % 100),
            self.encode(year / 100),
        ]
    }

    /// Copies the running time into the RAM time registers (unless SET froze them).
    fn refresh_time(&mut self) {
        if self.ram[REG_B] & B_SET != 0 {
            return;
        }
        let r = self.time_regs(self.guest_ns().div_euclid(NS));
        for (at, v) in [SEC, MIN, HOUR, WEEKDAY, DAY, MONTH, YEAR, CENTURY]
            .into_iter()
            .zip(r)
        {
            self.ram[at] = v;
        }
    }

    /// Restarts the clock from the RAM time registers, at the start of a second.
    fn set_from_ram(&mut self) {
        let year = i64::from(self.decode(self.ram[CENTURY]) * 100 + self.decode(self.ram[YEAR]));
        let month = self.decode(self.ram[MONTH]).clamp(1, 12);
        let day = self.decode(self.ram[DAY]).clamp(1, 31);
        let days = days_from_civil(year, month, day);
        let secs = i128::from(days) * 86_400
            + i128::from(self.decode_hour(self.ram[HOUR])) * 3600
            + i128::from(self.decode(self.ram[MIN])) * 60
            + i128::from(self.decode(self.ram[SEC]));
        self.offset_ns = secs * NS - self.clock.now().as_nanos() as i128;
        self.last_sec = secs;
    }

    fn alarm_matches(&self, secs: i128) -> bool {
        let r = self.time_regs(secs);
        let hit = |alarm: usize, now: u8| {
            let a = self.ram[alarm];
            a & 0xC0 == 0xC0 || a == now
        };
        hit(SEC_ALARM, r[0]) && hit(MIN_ALARM, r[1]) && hit(HOUR_ALARM, r[2])
    }

    fn catch_up(&mut self) {
        let now = self.guest_ns();
        let n = self.period_index(now);
        if self.period_ticks().is_some() && n > self.last_period {
            self.ram[REG_C] |= C_PF;
        }
        self.last_period = n;
        let secs = now.div_euclid(NS);
        if self.ram[REG_B] & B_SET == 0 && secs > self.last_sec {
            self.ram[REG_C] |= C_UF;
            // After a long pause only the last day can matter for a daily alarm.
            let first = (self.last_sec + 1).max(secs - 86_400);
            if (first..=secs).any(|s| self.alarm_matches(s)) {
                self.ram[REG_C] |= C_AF;
            }
        }
        self.last_sec = secs;
    }

    fn update_irq(&mut self) {
        let c = self.ram[REG_C];
        let pending = c & self.ram[REG_B] & (C_PF | C_AF | C_UF) != 0;
        if pending {
            self.ram[REG_C] |= C_IRQF;
        }
        if pending != self.irq_level {
            self.irq_level = pending;
            self.irq.set_level(pending);
        }
    }

    fn read_data(&mut self) -> u8 {
        let i = usize::from(self.index);
        match i {
            REG_A => {
                let mut v = self.ram[REG_A] & !A_UIP;
                let into_sec = self.guest_ns().rem_euclid(NS);
                if self.ram[REG_B] & B_SET == 0 && into_sec >= NS - UIP_NS {
                    v |= A_UIP;
                }
                v
            }
            REG_C => {
                let v = self.ram[REG_C];
                self.ram[REG_C] = 0;
                v
            }
            SEC | MIN | HOUR | WEEKDAY | DAY | MONTH | YEAR | CENTURY => {
                self.refresh_time();
                self.ram[i]
            }
            _ => self.ram[i],
        }
    }

    fn write_data(&mut self, v: u8) {
        let i = usize::from(self.index);
        match i {
            SEC | MIN | HOUR | WEEKDAY | DAY | MONTH | YEAR | CENTURY => {
                let running = self.ram[REG_B] & B_SET == 0;
                self.refresh_time();
                self.ram[i] = v;
                if running {
                    self.set_from_ram();
                }
            }
            REG_A => {
                self.ram[REG_A] = v & !A_UIP;
                // The new rate counts from now.
                self.last_period = self.period_index(self.guest_ns());
            }
            REG_B => {
                let was_set = self.ram[REG_B] & B_SET != 0;
                if !was_set && v & B_SET != 0 {
                    // Freeze the registers at the current time.
                    self.refresh_time();
                }
                // Setting SET clears UIE, as on the MC146818.
                self.ram[REG_B] = if v & B_SET != 0 { v & !B_UIE } else { v };
                if was_set && v & B_SET == 0 {
                    self.set_from_ram();
                }
            }
            REG_C | REG_D => {}
            _ => self.ram[i] = v,
        }
    }
}

impl BusDevice for Cmos {
    fn read(&mut self, _region: usize, offset: u64, data: &mut [u8]) {
        self.catch_up();
        let v = if offset & 1 == 0 {
            0xFF
        } else {
            self.read_data()
        };
        data.fill(0xFF);
        if let Some(d) = data.first_mut() {
            *d = v;
        }
        self.update_irq();
    }

    fn write(&mut self, _region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        let v = *data.first()?;
        self.catch_up();
        if offset & 1 == 0 {
            self.index = v & 0x7F;
            self.nmi_masked = v & 0x80 != 0;
        } else {
            self.write_data(v);
        }
        self.update_irq();
        None
    }
}

mod state;

#[cfg(test)]
mod tests;
