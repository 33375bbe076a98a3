//! What each kind of device is to the resolution passes: which bus it plugs into, where
//! its ISA registers and IRQs are by default, and which of them are fixed.

use super::Kind;
use crate::board::Board;

/// What sort of bus a kind of device plugs into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Plug {
    Isa,
    Sysbus,
    /// PCI, or virtio-mmio on the system bus of boards without PCI.
    Pci,
}

pub(super) fn plug(kind: Kind) -> Plug {
    match kind {
        Kind::Vga | Kind::Nic | Kind::Disk => Plug::Pci,
        Kind::Ioapic => Plug::Sysbus,
        _ => Plug::Isa,
    }
}

/// The ISA resources of a kind: its default base port (None: assigned, or none), its
/// register regions as (offset from the base, length), its IRQs, and whether the
/// base and IRQs are fixed by the hardware.
pub(super) struct IsaLayout {
    pub base: Option<u16>,
    pub regions: Vec<(u16, u16)>,
    pub irqs: &'static [u32],
    pub fixed: bool,
}

pub(super) fn isa_layout(kind: Kind, board: &Board) -> IsaLayout {
    let l = |base, regions: &[(u16, u16)], irqs, fixed| IsaLayout {
        base,
        regions: regions.to_vec(),
        irqs,
        fixed,
    };
    match kind {
        Kind::Serial => l(None, &[(0, 8)], &[], false),
        Kind::Rtc => l(Some(0x70), &[(0, 2)], &[8], true),
        // The keyboard on IRQ 1 and the PS/2 mouse on IRQ 12.
        Kind::I8042 => l(Some(0x60), &[(0, 1), (4, 1)], &[1, 12], true),
        Kind::Debugcon => l(Some(0x402), &[(0, 1)], &[], false),
        Kind::Pm => l(Some(0x600), &[(0, board.pm_len)], &[9], false),
        Kind::FwCfg => l(Some(0x510), &[(0, 2), (4, 8)], &[], false),
        Kind::Pit => l(Some(0x40), &[(0, 4)], &[0], true),
        // Master, slave and the ELCR pair (0x4d0).
        Kind::Pic => l(Some(0x20), &[(0, 2), (0x80, 2), (0x4b0, 2)], &[], true),
        _ => l(None, &[], &[], false),
    }
}

/// Whether a machine file may switch the kind off: KVM's in-kernel interrupt
/// controllers exist whatever the file says.
pub(super) fn can_disable(kind: Kind) -> bool {
    !matches!(kind, Kind::Pic | Kind::Ioapic)
}
