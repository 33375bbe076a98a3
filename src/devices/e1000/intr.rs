//! Interrupt causes, the mask, interrupt throttling and the delay timers.
//!
//! ICR collects causes (read clears it, a write of ones clears those bits; ICS sets
//! them); IMS/IMC set and clear the mask; INTA# is asserted while `ICR & IMS` is not
//! zero. ITR (256 ns units) spaces assertions: after one, the next waits until the
//! interval has passed since it. The receive timers (RDTR packet timer, RADV absolute
//! timer) and transmit timers (TIDV, TADV), in 1.024 us units, delay RXT0 and TXDW as
//! the manual's state machines say. Time comes from the device's clock; the deadlines
//! are what [`Timers::next`] returns to the VMM's timer, which calls back
//! `poll_timer` when one passes.

use std::time::Duration;

use super::regs::*;

#[derive(Debug, Default, Clone)]
pub struct Irq {
    pub icr: u32,
    pub ims: u32,
    /// ITR interval in 256 ns units.
    pub itr: u32,
    /// The level INTA# has now.
    pub asserted: bool,
    /// When the line was last asserted.
    pub last: Option<Duration>,
}

impl Irq {
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(u64::from(self.itr) * ITR_UNIT_NS)
    }

    /// The level the line should have at `now`, and when the throttle lets a pending
    /// interrupt out if it holds one back.
    pub fn level(&mut self, now: Duration) -> (bool, Option<Duration>) {
        if self.icr & self.ims == 0 {
            return (false, None);
        }
        if self.asserted {
            return (true, None);
        }
        if let Some(last) = self.last {
            let at = last + self.interval();
            if self.itr != 0 && now < at {
                return (false, Some(at));
            }
        }
        self.last = Some(now);
        (true, None)
    }
}

/// The delay timers and the throttle's release time (`None`: not running).
#[derive(Debug, Default, Clone)]
pub struct Timers {
    pub rdtr: Option<Duration>,
    pub radv: Option<Duration>,
    pub tidv: Option<Duration>,
    pub tadv: Option<Duration>,
    pub itr: Option<Duration>,
}

pub fn units(v: u32) -> Duration {
    Duration::from_nanos(u64::from(v & 0xffff) * TIMER_UNIT_NS)
}

impl Timers {
    /// The earliest deadline.
    pub fn next(&self) -> Option<Duration> {
        [self.rdtr, self.radv, self.tidv, self.tadv, self.itr]
            .into_iter()
            .flatten()
            .min()
    }

    /// A frame was written to host memory: restart the packet timer, start the
    /// absolute one. Returns true when RXT0 is due now (RDTR = 0).
    pub fn rx_frame(&mut self, now: Duration, rdtr: u32, radv: u32) -> bool {
        if rdtr & 0xffff == 0 {
            self.rdtr = None;
            self.radv = None;
            return true;
        }
        self.rdtr = Some(now + units(rdtr));
        if radv & 0xffff != 0 && self.radv.is_none() {
            self.radv = Some(now + units(radv));
        }
        false
    }

    /// A descriptor with RS was written back: with IDE the interrupt waits for the
    /// timers (TIDV restarted, TADV started). Returns true when TXDW is due now.
    pub fn tx_done(&mut self, now: Duration, ide: bool, tidv: u32, tadv: u32) -> bool {
        if !ide || tidv & 0xffff == 0 {
            self.tidv = None;
            self.tadv = None;
            return true;
        }
        self.tidv = Some(now + units(tidv));
        if tadv & 0xffff != 0 && self.tadv.is_none() {
            self.tadv = Some(now + units(tadv));
        }
        false
    }

    /// Expires what is due at `now`: the causes to raise, and whether the throttle
    /// released.
    pub fn expire(&mut self, now: Duration) -> (u32, bool) {
        let due = |t: &Option<Duration>| t.is_some_and(|t| t <= now);
        let mut causes = 0;
        if due(&self.rdtr) || due(&self.radv) {
            self.rdtr = None;
            self.radv = None;
            causes |= INT_RXT0;
        }
        if due(&self.tidv) || due(&self.tadv) {
            self.tidv = None;
            self.tadv = None;
            causes |= INT_TXDW;
        }
        let released = due(&self.itr);
        if released {
            self.itr = None;
        }
        (causes, released)
    }
}
