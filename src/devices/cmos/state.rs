//! The RTC's snapshot state: the 128 CMOS bytes (time registers, alarms, A-D and the
//! firmware's RAM), the index register and NMI mask, and the clock.
//!
//! Time on restore: the guest clock runs at the host's pace from where it was, as
//! QEMU's `-rtc base=utc,clock=host` does: the saved offset from the host clock is
//! kept, so the time that passed between save and restore shows as time that passed
//! (the guest sees a suspended laptop wake up). The guest never sees its clock go
//! backwards: if the host clock is now behind the saved guest time plus the offset
//! (restored on a host whose clock is earlier), the RTC resumes at the saved guest
//! time instead. The flags the elapsed interval brings (PF, UF, AF) latch at most once,
//! at the first access or tick after the restore.

use serde::{Deserialize, Serialize};

use super::*;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

/// Bounds on the saved times, far beyond any real clock (about 31,000 years in ns),
/// so that arithmetic on them cannot overflow.
const LIMIT_NS: i128 = 1_000_000_000_000_000_000_000;

#[derive(Serialize, Deserialize)]
struct CmosState {
    ram: Vec<u8>,
    index: u8,
    nmi_masked: bool,
    /// Guest time minus host wall-clock time, in ns, at the save.
    offset_ns: i128,
    /// The guest's time at the save, in ns since the epoch.
    guest_ns: i128,
    last_sec: i128,
    last_period: i128,
}

impl Stateful for Cmos {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        encode(&CmosState {
            ram: self.ram.to_vec(),
            index: self.index,
            nmi_masked: self.nmi_masked,
            offset_ns: self.offset_ns,
            guest_ns: self.guest_ns(),
            last_sec: self.last_sec,
            last_period: self.last_period,
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: CmosState = decode(bytes)?;
        let ram: [u8; 128] = s
            .ram
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Invalid(format!("{} CMOS bytes", s.ram.len())))?;
        ensure(s.index < 0x80, || format!("CMOS index {:#x}", s.index))?;
        let within = |v: i128| (-LIMIT_NS..=LIMIT_NS).contains(&v);
        ensure(within(s.offset_ns) && within(s.guest_ns), || {
            "RTC time out of range".into()
        })?;
        ensure(s.last_sec <= s.guest_ns.div_euclid(NS), || {
            "RTC last update after the saved time".into()
        })?;
        let saved_regs = self.ram;
        self.ram = ram;
        let period_ok =
            s.last_period <= self.period_index(s.guest_ns) && s.last_period >= -LIMIT_NS;
        let secs_ok = s.last_sec >= -LIMIT_NS / NS;
        if !(period_ok && secs_ok) {
            self.ram = saved_regs;
            return Err(StateError::Invalid(
                "RTC periodic index out of range".into(),
            ));
        }
        self.index = s.index;
        self.nmi_masked = s.nmi_masked;
        let host = self.clock.now().as_nanos() as i128;
        // Never behind the saved guest time.
        self.offset_ns = s.offset_ns.max(s.guest_ns - host);
        self.last_sec = s.last_sec;
        self.last_period = s.last_period;
        self.update_irq();
        Ok(())
    }
}
