//! PIIX3/PIIX4 functions on `pc`: the ISA bridge (01.0, 8086:7000) with its PIRQ route
//! control registers, and the PIIX4 power-management function (01.3, 8086:7113) whose
//! PMBA register holds the ACPI PM block's base.
//!
//! The IDE (01.1) and USB (01.2) functions are absent: the spec reserves their slots,
//! nothing answers there. INTx does not follow the PIRQ registers: each device's line
//! is the GSI the spec computed (PIRQ A-D → 10, 10, 11, 11, what SeaBIOS programs), and
//! PMBA moves are accepted and read back while the PM block stays where the spec put it.

use super::config::{PciConfig, PciIds};

pub const DEVICE_PIIX3_ISA: u16 = 0x7000;
pub const DEVICE_PIIX4_PM: u16 = 0x7113;
/// PIRQ route control A-D.
pub const PIRQRC: u16 = 0x60;
/// Power-management base address (I/O, bit 0 reads 1).
pub const PMBA: u16 = 0x40;
/// Device activity B; bit 25 (APMC_EN) is set and read-only: firmware sees SMI already
/// set up and skips SMM relocation, which vmrun does not emulate.
pub const DEVACTB: u16 = 0x58;
/// PM I/O space enable (bit 0).
pub const PMREGMISC: u16 = 0x80;
/// SMBus base address.
pub const SMBBA: u16 = 0x90;

/// The ISA bridge (function 0 of the multi-function PIIX device).
pub fn piix3_isa() -> PciConfig {
    let mut c = PciConfig::new(PciIds {
        vendor: 0x8086,
        device: DEVICE_PIIX3_ISA,
        class: 0x06_01_00,
        revision: 0,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    });
    c.set_multifunction(true);
    // Chipset registers: the guest may write them all; they are stored only.
    c.set_wmask(0x40, &[0xff; 0xc0]);
    // PIRQ A-D: routing disabled (bit 7) at reset, as on the chip.
    c.set_bytes(PIRQRC, &[0x80; 4]);
    c.set_wmask(PIRQRC, &[0x8f; 4]);
    c
}

/// The PIIX4 PM function, its PMBA showing `pm_base` (I/O space, enabled).
pub fn piix4_pm(pm_base: u16) -> PciConfig {
    let mut c = PciConfig::new(PciIds {
        vendor: 0x8086,
        device: DEVICE_PIIX4_PM,
        class: 0x06_80_00,
        revision: 3,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    });
    c.set_interrupt_pin(1);
    c.set_wmask(0x40, &[0xff; 0xc0]);
    c.set_u32(PMBA, u32::from(pm_base & 0xffc0) | 1);
    c.set_wmask(PMBA, &0xffc0u32.to_le_bytes());
    c.set_u32(DEVACTB, 1 << 25);
    c.set_wmask(DEVACTB, &(!(1u32 << 25)).to_le_bytes());
    c.set_u8(PMREGMISC, 1);
    c.set_u32(SMBBA, 1);
    c.set_wmask(SMBBA, &0xfff0u32.to_le_bytes());
    c
}

/// The PM base the guest programmed in PMBA.
pub fn pm_base(c: &PciConfig) -> u16 {
    (c.u32(PMBA) & 0xffc0) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pirq_and_pmba() {
        let mut isa = piix3_isa();
        assert_eq!(isa.u8(0x0e), 0x80);
        assert_eq!(isa.u32(PIRQRC), 0x8080_8080);
        isa.write(PIRQRC, &[10, 10, 11, 11]);
        assert_eq!(isa.u32(PIRQRC), 0x0b0b_0a0a);
        let mut pm = piix4_pm(0x600);
        assert_eq!(pm.u32(PMBA), 0x601);
        assert_eq!(pm_base(&pm), 0x600);
        pm.write(PMBA, &0xb000u32.to_le_bytes());
        assert_eq!(pm.u32(PMBA), 0xb001);
        pm.write(DEVACTB, &[0; 4]);
        assert_eq!(pm.u32(DEVACTB), 1 << 25);
    }
}
