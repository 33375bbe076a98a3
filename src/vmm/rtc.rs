//! Puts the CMOS RTC on the bus and drives its interrupts: a timerfd, polled by the
//! main event loop, fires when the RTC next has an enabled interrupt to raise
//! (periodic, alarm, update-ended); every guest access to the data port re-arms it,
//! since writing register A or B, or reading register C (which clears the flags),
//! changes when that is.
//!
//! Pause ([`RtcControl`]): while the machine is paused the timer is disarmed, so the
//! host is not woken at up to 8 kHz for a guest that cannot take the interrupt. On
//! resume the RTC catches up as QEMU's default RTC does (`-rtc clock=host`, lost
//! ticks discarded): the time registers show the host's time (no time is lost), and
//! the interval that passed latches each of PF, AF (if the alarm time went by) and
//! UF at most once, so the guest gets one IRQ 8, not a burst of stale ones.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm_sys_util::timerfd::TimerFd;

use super::event_loop::{Input, InputSource};
use crate::devices::cmos::{Cmos, WallClock};
use crate::devices::{BusDevice, VmEvent};
use crate::snapshot::state::{Section, StateError, Stateful};

/// How long the timer sleeps when the RTC has no interrupt enabled.
const IDLE: Duration = Duration::from_secs(1);

/// The host's clock in local time: UTC moved by the host's offset from it, for
/// `clock = "localtime"` (what a PC whose RTC keeps local time shows, e.g. for Windows).
#[derive(Debug, Default, Clone, Copy)]
pub struct HostLocalClock;

impl WallClock for HostLocalClock {
    fn now(&self) -> Duration {
        let utc = crate::devices::cmos::HostWallClock.now();
        let secs = utc.as_secs() as libc::time_t;
        // SAFETY: `tm` is a plain C struct filled in by localtime_r; both pointers are
        // valid for the call.
        let offset = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&secs, &mut tm).is_null() {
                0
            } else {
                tm.tm_gmtoff
            }
        };
        if offset >= 0 {
            utc + Duration::from_secs(offset as u64)
        } else {
            utc.saturating_sub(Duration::from_secs(offset.unsigned_abs()))
        }
    }
}

fn arm(timer: &Mutex<TimerFd>, cmos: &mut Cmos, paused: &AtomicBool) {
    if paused.load(Ordering::SeqCst) {
        return;
    }
    let next = cmos
        .next_event()
        .unwrap_or(IDLE)
        .max(Duration::from_micros(1));
    let mut t = timer.lock().unwrap_or_else(|p| p.into_inner());
    // A failed re-arm leaves the old deadline, at most a second late: nothing to do.
    let _ = t.reset(next, None);
}

/// What the bus device, the event-loop source and the pause control share.
#[derive(Clone)]
struct Shared {
    cmos: Arc<Mutex<Cmos>>,
    timer: Arc<Mutex<TimerFd>>,
    paused: Arc<AtomicBool>,
}

impl Shared {
    fn cmos(&self) -> std::sync::MutexGuard<'_, Cmos> {
        self.cmos.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The RTC as the bus sees it: the CMOS device plus its timer.
pub struct RtcPorts(Shared);

impl RtcPorts {
    /// The handle that stops and restarts the RTC's timer with the machine.
    pub fn control(&self) -> RtcControl {
        RtcControl(self.0.clone())
    }
}

impl BusDevice for RtcPorts {
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
        let mut c = self.0.cmos();
        c.read(region, offset, data);
        if offset == 1 {
            arm(&self.0.timer, &mut c, &self.0.paused);
        }
    }

    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        let mut c = self.0.cmos();
        let ev = c.write(region, offset, data);
        if offset == 1 {
            arm(&self.0.timer, &mut c, &self.0.paused);
        }
        ev
    }
}

/// Pauses and resumes the RTC's interrupts with the machine (see the module doc).
#[derive(Clone)]
pub struct RtcControl(Shared);

impl RtcControl {
    /// Disarms the timer; no flag is latched until [`RtcControl::resume`].
    pub fn pause(&self) {
        self.0.paused.store(true, Ordering::SeqCst);
        let _c = self.0.cmos();
        let _ = self
            .0
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Latches what the paused interval brought (each flag once) and re-arms.
    pub fn resume(&self) {
        self.0.paused.store(false, Ordering::SeqCst);
        let mut c = self.0.cmos();
        c.tick();
        arm(&self.0.timer, &mut c, &self.0.paused);
    }

    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::SeqCst)
    }

    /// The RTC's snapshot section: the CMOS state, the timer re-armed on restore.
    pub fn section(&self) -> Arc<dyn Section> {
        Arc::new(RtcSection(self.0.clone()))
    }
}

struct RtcSection(Shared);

impl Section for RtcSection {
    fn save(&self) -> Result<Vec<u8>, StateError> {
        self.0.cmos().save_state()
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), StateError> {
        let mut c = self.0.cmos();
        c.restore_state(bytes)?;
        arm(&self.0.timer, &mut c, &self.0.paused);
        Ok(())
    }
}

/// The bus device and the event-loop source of an RTC.
pub fn rtc(cmos: Cmos) -> std::io::Result<(RtcPorts, InputSource)> {
    let shared = Shared {
        cmos: Arc::new(Mutex::new(cmos)),
        timer: Arc::new(Mutex::new(TimerFd::new()?)),
        paused: Arc::new(AtomicBool::new(false)),
    };
    arm(&shared.timer, &mut shared.cmos(), &shared.paused);
    let fd = shared
        .timer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_raw_fd();
    // Non-blocking: a re-arm (guest access) or a pause between the poll and the read
    // resets the expiry count, and a blocking read would then wait for the next one.
    // SAFETY: fcntl on the timerfd we own; only O_NONBLOCK is added to its flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let s2 = shared.clone();
    let on_readable = Box::new(move || -> Input {
        // Reading the expiry count clears the readable state. The fd is not readable
        // while paused (the timer is disarmed); a tick racing the pause is dropped.
        let _ = s2.timer.lock().unwrap_or_else(|p| p.into_inner()).wait();
        if s2.paused.load(Ordering::SeqCst) {
            return Input::Open;
        }
        let mut c = s2.cmos();
        c.tick();
        arm(&s2.timer, &mut c, &s2.paused);
        Input::Open
    });
    Ok((
        RtcPorts(shared),
        InputSource {
            fd,
            on_readable,
            space: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::cmos::CmosLayout;
    use crate::devices::IrqLine;
    use std::sync::atomic::AtomicU64;

    struct FakeClock(Arc<AtomicU64>);
    impl WallClock for FakeClock {
        fn now(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    /// Counts rising edges.
    #[derive(Default)]
    struct Edges(AtomicU64, AtomicBool);
    impl IrqLine for Edges {
        fn set_level(&self, high: bool) {
            if high && !self.1.swap(true, Ordering::SeqCst) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            if !high {
                self.1.store(false, Ordering::SeqCst);
            }
        }
    }

    fn get(p: &mut RtcPorts, i: u8) -> u8 {
        p.write(0, 0, &[i]);
        let mut b = [0u8];
        p.read(0, 1, &mut b);
        b[0]
    }

    #[test]
    fn pause_stops_the_timer_and_resume_catches_up_once() {
        let t = Arc::new(AtomicU64::new(1_700_000_000_000_000_000));
        let irq = Arc::new(Edges::default());
        let layout = CmosLayout {
            ram_below_4g: 64 << 20,
            ram_above_4g: 0,
            cpus: 1,
            boot_order: vec![],
        };
        let cmos = Cmos::new(&layout, Box::new(FakeClock(t.clone())), irq.clone());
        let (mut ports, mut source) = rtc(cmos).unwrap();
        // Periodic (1024 Hz), alarm every second and update-ended interrupts on.
        ports.write(0, 0, &[0x01]);
        ports.write(0, 1, &[0xC0]);
        for i in [0x03, 0x05] {
            ports.write(0, 0, &[i]);
            ports.write(0, 1, &[0xC0]);
        }
        ports.write(0, 0, &[0x0B]);
        ports.write(0, 1, &[0x02 | 0x40 | 0x20 | 0x10]);
        get(&mut ports, 0x0C);
        let ctl = ports.control();
        ctl.pause();
        assert!(ctl.is_paused());
        let armed = |p: &RtcPorts| p.0.timer.lock().unwrap().is_armed().unwrap();
        assert!(!armed(&ports), "no host wake-ups while paused");
        let sec0 = get(&mut ports, 0x00);
        let edges0 = irq.0.load(Ordering::SeqCst);
        // Ten seconds pass while paused; a stray source call latches nothing.
        t.fetch_add(10_000_000_000, Ordering::SeqCst);
        (source.on_readable)();
        assert_eq!(irq.0.load(Ordering::SeqCst), edges0);
        ctl.resume();
        assert!(armed(&ports));
        assert_eq!(irq.0.load(Ordering::SeqCst), edges0 + 1, "one interrupt");
        // PF, AF and UF each once, with IRQF; reading C clears them.
        assert_eq!(get(&mut ports, 0x0C), 0x80 | 0x40 | 0x20 | 0x10);
        assert_eq!(get(&mut ports, 0x0C), 0);
        // The clock kept the host's time (BCD seconds, 10 s later).
        let bcd = |v: u8| u32::from(v >> 4) * 10 + u32::from(v & 0xF);
        assert_eq!((bcd(sec0) + 10) % 60, bcd(get(&mut ports, 0x00)));
    }

    #[test]
    fn local_clock_is_utc_plus_the_offset() {
        let utc = crate::devices::cmos::HostWallClock.now().as_secs() as i64;
        let local = HostLocalClock.now().as_secs() as i64;
        // Time zones are within ±14 hours of UTC.
        assert!((local - utc).abs() <= 14 * 3600 + 1);
    }
}
