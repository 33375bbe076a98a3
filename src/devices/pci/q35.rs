//! The Q35 host bridge (00.0 on `q35`, 8086:29c0): PCIEXBAR (0x60) reports the ECAM
//! window at 0xB0000000, 256 MiB, enabled; PAM (0x90-0x96) and SMRAM (0x9d) store what
//! the guest writes. Moving ECAM is accepted in the register; the window stays where
//! the board put it.

use super::config::{PciConfig, PciIds};

pub const DEVICE_Q35_MCH: u16 = 0x29c0;
pub const PCIEXBAR: u16 = 0x60;
pub const PAM0: u16 = 0x90;
pub const SMRAM: u16 = 0x9d;

/// The host bridge's config space, PCIEXBAR showing `ecam_base` (256 MiB, enabled).
pub fn q35_host(ecam_base: u64) -> PciConfig {
    let mut c = PciConfig::new(PciIds {
        vendor: 0x8086,
        device: DEVICE_Q35_MCH,
        class: 0x06_00_00,
        revision: 0,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    });
    c.set_wmask(0x40, &[0xff; 0xc0]);
    c.set_bytes(PCIEXBAR, &(ecam_base | 1).to_le_bytes());
    // Base bits 35:28 (256 MiB granular), length field, enable.
    c.set_wmask(PCIEXBAR, &0x0000_000f_f000_0007u64.to_le_bytes());
    c.set_u8(SMRAM, 0x02);
    c.set_wmask(SMRAM, &[0x78]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pciexbar() {
        let mut c = q35_host(0xb000_0000);
        assert_eq!(c.u32(0), 0x29c0_8086);
        assert_eq!(c.u32(PCIEXBAR), 0xb000_0001);
        c.write(PCIEXBAR, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(c.u32(PCIEXBAR), 0xf000_0007);
        c.write(PAM0, &[0x30, 0x33]);
        assert_eq!(c.u16(PAM0), 0x3330);
    }
}
