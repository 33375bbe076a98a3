//! Puts the CMOS RTC on the bus and drives its interrupts: a timerfd, polled by the
//! main event loop, fires when the RTC next has an enabled interrupt to raise
//! (periodic, alarm, update-ended); every guest access to the data port re-arms it,
//! since writing register A or B, or reading register C (which clears the flags),
//! changes when that is.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm_sys_util::timerfd::TimerFd;

use super::event_loop::{Input, InputSource};
use crate::devices::cmos::{Cmos, WallClock};
use crate::devices::{BusDevice, VmEvent};

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

fn arm(timer: &Mutex<TimerFd>, cmos: &mut Cmos) {
    let next = cmos
        .next_event()
        .unwrap_or(IDLE)
        .max(Duration::from_micros(1));
    let mut t = timer.lock().unwrap_or_else(|p| p.into_inner());
    // A failed re-arm leaves the old deadline, at most a second late: nothing to do.
    let _ = t.reset(next, None);
}

/// The RTC as the bus sees it: the CMOS device plus its timer.
pub struct RtcPorts {
    cmos: Arc<Mutex<Cmos>>,
    timer: Arc<Mutex<TimerFd>>,
}

impl BusDevice for RtcPorts {
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
        let mut c = self.cmos.lock().unwrap_or_else(|p| p.into_inner());
        c.read(region, offset, data);
        if offset == 1 {
            arm(&self.timer, &mut c);
        }
    }

    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        let mut c = self.cmos.lock().unwrap_or_else(|p| p.into_inner());
        let ev = c.write(region, offset, data);
        if offset == 1 {
            arm(&self.timer, &mut c);
        }
        ev
    }
}

/// The bus device and the event-loop source of an RTC.
pub fn rtc(cmos: Cmos) -> std::io::Result<(RtcPorts, InputSource)> {
    let cmos = Arc::new(Mutex::new(cmos));
    let timer = Arc::new(Mutex::new(TimerFd::new()?));
    {
        let mut c = cmos.lock().unwrap_or_else(|p| p.into_inner());
        arm(&timer, &mut c);
    }
    let fd = timer.lock().unwrap_or_else(|p| p.into_inner()).as_raw_fd();
    let (c2, t2) = (cmos.clone(), timer.clone());
    let on_readable = Box::new(move || -> Input {
        // Reading the expiry count clears the readable state.
        let _ = t2.lock().unwrap_or_else(|p| p.into_inner()).wait();
        let mut c = c2.lock().unwrap_or_else(|p| p.into_inner());
        c.tick();
        arm(&t2, &mut c);
        Input::Open
    });
    Ok((
        RtcPorts { cmos, timer },
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

    #[test]
    fn local_clock_is_utc_plus_the_offset() {
        let utc = crate::devices::cmos::HostWallClock.now().as_secs() as i64;
        let local = HostLocalClock.now().as_secs() as i64;
        // Time zones are within ±14 hours of UTC.
        assert!((local - utc).abs() <= 14 * 3600 + 1);
    }
}
