//! `pc`: QEMU's i440FX + PIIX3/PIIX4 board.

use super::{addr, Board, BoardKind, PciRoot, INTRINSIC, PC_CHIPSET_IO};

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
        first_auto_slot: 3,
        // SeaBIOS and QEMU route PIRQ A-D to IRQ 10, 10, 11, 11.
        pirq_gsi: [10, 10, 11, 11],
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
    s5_typ: 0,
    virtio_mmio: None,
};
