//! The reset control register at port 0xCF9 (PIIX3/PIIX4 RCR, ICH9 RST_CNT).
//!
//! Bits: 1 SYS_RST (hard reset when set, soft/INIT otherwise), 2 RST_CPU (a write
//! with it set starts the reset), 3 FULL_RST (ICH9: also cycle power). Writing RST_CPU
//! resets the machine: with SYS_RST it is a hard reset; without it the chipset only
//! INITs the processors, which for a VM is also a restart from the reset vector, so
//! both give [`VmEvent::Reset`] (as QEMU does). Reads return the last value written
//! minus RST_CPU, which self-clears once the reset has been started, as on the
//! chipsets.
//!
//! The port shares its dword with PCI CONFIG_ADDRESS (0xCF8): only byte accesses at
//! 0xCF9 reach this register, so the PCI host bridge forwards them here.

use super::{BusDevice, VmEvent};

pub const RCR_SYS_RST: u8 = 1 << 1;
pub const RCR_RST_CPU: u8 = 1 << 2;
pub const RCR_FULL_RST: u8 = 1 << 3;

/// The reset control register.
#[derive(Debug, Default)]
pub struct ResetControl {
    value: u8,
}

impl ResetControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// The register as it reads now (for a snapshot).
    pub fn value(&self) -> u8 {
        self.value
    }

    /// Restores the register; only SYS_RST and FULL_RST hold a value.
    pub fn set_value(&mut self, v: u8) -> Result<(), crate::snapshot::StateError> {
        crate::snapshot::state::ensure(v & !(RCR_SYS_RST | RCR_FULL_RST) == 0, || {
            format!("reset control {v:#x}")
        })?;
        self.value = v;
        Ok(())
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(d) = data.first_mut() {
            *d = self.value;
        }
    }

    fn write(&mut self, _region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
        let v = *data.first()?;
        self.value = v & (RCR_SYS_RST | RCR_FULL_RST);
        (v & RCR_RST_CPU != 0).then_some(VmEvent::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(r: &mut ResetControl) -> u8 {
        let mut b = [0xAAu8; 1];
        r.read(0, 0, &mut b);
        b[0]
    }

    #[test]
    fn reset_and_readback() {
        let mut r = ResetControl::new();
        assert_eq!(rd(&mut r), 0);
        assert_eq!(
            r.write(0, 0, &[RCR_SYS_RST]),
            None,
            "selecting the type only"
        );
        assert_eq!(rd(&mut r), RCR_SYS_RST);
        assert_eq!(r.write(0, 0, &[0x06]), Some(VmEvent::Reset));
        assert_eq!(rd(&mut r), RCR_SYS_RST, "RST_CPU self-clears");
        assert_eq!(r.write(0, 0, &[0x04]), Some(VmEvent::Reset), "soft reset");
        assert_eq!(r.write(0, 0, &[0x0E]), Some(VmEvent::Reset));
        assert_eq!(rd(&mut r), 0x0A);
        assert_eq!(r.write(0, 0, &[0xF1]), None, "reserved bits ignored");
        assert_eq!(rd(&mut r), 0);
    }
}
