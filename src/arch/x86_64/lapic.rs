//! Local APIC setup a BIOS would have done: LINT0 in ExtINT mode (the 8259's output
//! reaches the CPU through the LAPIC, "virtual wire" mode) and LINT1 as NMI.
//!
//! [`set_lint`] is a pure edit of the 1 KiB register page `KVM_GET_LAPIC` returns.
//! As on real boards, only the BSP takes PIC interrupts: LINT0 is left masked on APs.

use std::os::raw::c_char;

/// Offsets of the LVT LINT0/LINT1 registers in the APIC register page.
pub const APIC_LVT_LINT0: usize = 0x350;
pub const APIC_LVT_LINT1: usize = 0x360;

/// LVT delivery-mode field (bits 10:8) values.
pub const DELIVERY_NMI: u32 = 0b100;
pub const DELIVERY_EXTINT: u32 = 0b111;
/// LVT mask bit.
pub const LVT_MASKED: u32 = 1 << 16;

fn get_reg(regs: &[c_char; 1024], offset: usize) -> u32 {
    let b = |i: usize| regs[offset + i] as u8;
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_reg(regs: &mut [c_char; 1024], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = byte as c_char;
    }
}

/// `reg` with delivery mode `mode` and the mask bit as given.
fn lvt(reg: u32, mode: u32, masked: bool) -> u32 {
    let reg = (reg & !0x700 & !LVT_MASKED) | (mode << 8);
    if masked {
        reg | LVT_MASKED
    } else {
        reg
    }
}

/// LINT0 = ExtINT (unmasked on the BSP only), LINT1 = NMI (unmasked).
pub fn set_lint(regs: &mut [c_char; 1024], is_bsp: bool) {
    let lint0 = get_reg(regs, APIC_LVT_LINT0);
    set_reg(regs, APIC_LVT_LINT0, lvt(lint0, DELIVERY_EXTINT, !is_bsp));
    let lint1 = get_reg(regs, APIC_LVT_LINT1);
    set_reg(regs, APIC_LVT_LINT1, lvt(lint1, DELIVERY_NMI, false));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_modes() {
        let mut regs = [0 as c_char; 1024];
        // After reset every LVT reads 0x0001_0000 (masked).
        set_reg(&mut regs, APIC_LVT_LINT0, LVT_MASKED);
        set_reg(&mut regs, APIC_LVT_LINT1, LVT_MASKED | 0x200);
        set_reg(&mut regs, 0x340, 0xdead_beef);
        let mut ap = regs;
        set_lint(&mut regs, true);
        assert_eq!(get_reg(&regs, APIC_LVT_LINT0), 0x700);
        assert_eq!(get_reg(&regs, APIC_LVT_LINT1), 0x400);
        assert_eq!(get_reg(&regs, 0x340), 0xdead_beef);
        set_lint(&mut ap, false);
        assert_eq!(get_reg(&ap, APIC_LVT_LINT0), 0x1_0700);
        assert_eq!(get_reg(&ap, APIC_LVT_LINT1), 0x400);
    }
}
