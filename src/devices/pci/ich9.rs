//! The ICH9 LPC bridge (1f.0 on `q35`, 8086:2918): PMBASE (0x40) and ACPI_CNTL (0x44)
//! for the ACPI PM block, PIRQ A-H routing (0x60-0x63, 0x68-0x6b), GEN_PMCON and RCBA
//! stored as written. In APIC mode PIRQ A-D reach IOAPIC pins 16-19, which is how the
//! spec routes INTx; PMBASE moves are accepted and read back, the PM block stays.

use super::config::{PciConfig, PciIds};

pub const DEVICE_ICH9_LPC: u16 = 0x2918;
pub const PMBASE: u16 = 0x40;
pub const ACPI_CNTL: u16 = 0x44;
pub const PIRQ_A: u16 = 0x60;
pub const PIRQ_E: u16 = 0x68;
pub const RCBA: u16 = 0xf0;

/// The LPC bridge, PMBASE showing `pm_base` and ACPI decoding enabled.
pub fn ich9_lpc(pm_base: u16) -> PciConfig {
    let mut c = PciConfig::new(PciIds {
        vendor: 0x8086,
        device: DEVICE_ICH9_LPC,
        class: 0x06_01_00,
        revision: 2,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    });
    c.set_multifunction(true);
    c.set_wmask(0x40, &[0xff; 0xc0]);
    c.set_u32(PMBASE, u32::from(pm_base & 0xff80) | 1);
    c.set_wmask(PMBASE, &0xff80u32.to_le_bytes());
    c.set_u8(ACPI_CNTL, 0x80);
    c.set_bytes(PIRQ_A, &[0x80; 4]);
    c.set_bytes(PIRQ_E, &[0x80; 4]);
    c.set_wmask(PIRQ_A, &[0x8f; 4]);
    c.set_wmask(PIRQ_E, &[0x8f; 4]);
    c.set_u32(RCBA, 0xfed1_c000 | 1);
    c
}

/// The PM base the guest programmed in PMBASE.
pub fn pm_base(c: &PciConfig) -> u16 {
    (c.u32(PMBASE) & 0xff80) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmbase() {
        let mut c = ich9_lpc(0x600);
        assert_eq!(c.u32(0), 0x2918_8086);
        assert_eq!(c.u32(PMBASE), 0x601);
        c.write(PMBASE, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(pm_base(&c), 0xff80);
        assert_eq!(c.u8(ACPI_CNTL), 0x80);
    }
}
