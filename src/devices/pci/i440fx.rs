//! The i440FX host bridge (00.0 on `pc`, 8086:1237). RAM below 1 MiB is always mapped
//! in vmrun, so the PAM registers (0x59-0x5f) and SMRAM (0x72) only store what the guest
//! writes and read it back (SeaBIOS programs them while shadowing itself).

use super::config::{PciConfig, PciIds};

pub const DEVICE_I440FX: u16 = 0x1237;
/// Programmable attribute map: 0x59 (BIOS area, high nibble) .. 0x5f.
pub const PAM0: u16 = 0x59;
pub const SMRAM: u16 = 0x72;

/// The host bridge's config space.
pub fn i440fx() -> PciConfig {
    let mut c = PciConfig::new(PciIds {
        vendor: 0x8086,
        device: DEVICE_I440FX,
        class: 0x06_00_00,
        revision: 2,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    });
    c.set_wmask(PAM0, &[0x30]);
    c.set_wmask(PAM0 + 1, &[0x33; 6]);
    // SMRAM: D_OPEN, D_CLS, D_LCK, G_SMRAME; C_BASE_SEG reads 010 (0xA0000).
    c.set_u8(SMRAM, 0x02);
    c.set_wmask(SMRAM, &[0x78]);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_and_smram() {
        let mut c = i440fx();
        assert_eq!(c.u32(0), 0x1237_8086);
        c.write(0x58, &[0xff; 8]);
        assert_eq!(c.u8(0x58), 0);
        assert_eq!(c.u8(PAM0), 0x30);
        assert_eq!(c.u8(PAM0 + 6), 0x33);
        c.write(SMRAM, &[0x4a]);
        assert_eq!(c.u8(SMRAM), 0x4a);
        c.write(SMRAM, &[0]);
        assert_eq!(c.u8(SMRAM), 0x02);
    }
}
