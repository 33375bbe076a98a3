//! `pc`: QEMU's i440FX + PIIX3/PIIX4 board.

use super::{addr, Board, BoardKind, PciRoot, INTRINSIC, PC_CHIPSET_IO};
use crate::spec::{ChipsetFunction, PmLayout};

pub static BOARD: Board = Board {
    kind: BoardKind::Pc,
    name: "pc",
    title: "i440FX + PIIX, PCI",
    pci: Some(PciRoot {
        id: "pci.0",
        express: false,
        chipset: &[
            (addr(0, 0), "i440FX host bridge"),
            (addr(1, 0), "PIIX3 ISA bridge"),
            (addr(1, 1), "PIIX3 IDE"),
            (addr(1, 2), "PIIX3 USB"),
            (addr(1, 3), "PIIX4 ACPI (power management)"),
        ],
        functions: &[
            (addr(0, 0), ChipsetFunction::I440fxHost),
            (addr(1, 0), ChipsetFunction::Piix3Isa),
            (addr(1, 3), ChipsetFunction::Piix4Pm),
        ],
        isa_bridge: addr(1, 0),
        first_auto_slot: 3,
        // PIIX3: slot S pin P (0 = INTA) raises PIRQ (S + P - 1) mod 4, i.e. + 3.
        pirq_slot_offset: 3,
        // SeaBIOS and QEMU route PIRQ A-D to IRQ 10, 10, 11, 11.
        pirq_gsi: [10, 10, 11, 11],
        ecam: None,
        hole_min: 0,
    }),
    chipset_io: PC_CHIPSET_IO,
    chipset_mmio: &[
        (0xfec0_0000, 0x1000, "IOAPIC"),
        (0xfed0_0000, 0x400, "HPET"),
        (0xfee0_0000, 0x10_0000, "local APIC"),
        (0xff00_0000, 0x100_0000, "firmware ROM"),
    ],
    intrinsic: INTRINSIC,
    defaults: pc_defaults!("02.0"),
    max_cpus: 255,
    min_memory: 16 << 20,
    low_limit_small: 0xe000_0000,
    low_limit_large: 0xc000_0000,
    // PIIX4 PM: 64 bytes at PMBA; GPE0 (4 bytes) right after the PM1 block.
    pm_len: 0x40,
    pm: PmLayout {
        gpe0_offset: 0x0c,
        gpe0_len: 4,
        s5_typ: 0,
    },
    reset_port: Some(0xcf9),
    virtio_mmio: None,
};
