//! `q35`: QEMU's Q35 + ICH9 board, with a PCIe root complex and ECAM (MMCONFIG).

use super::{addr, Board, BoardKind, PciRoot, INTRINSIC, PC_CHIPSET_IO};
use crate::spec::{ChipsetFunction, PmLayout};

/// ECAM window: 256 buses × 1 MiB.
pub const MMCONFIG_BASE: u64 = 0xb000_0000;
pub const MMCONFIG_SIZE: u64 = 0x1000_0000;

pub static BOARD: Board = Board {
    kind: BoardKind::Q35,
    name: "q35",
    title: "Q35 + ICH9, PCI Express",
    pci: Some(PciRoot {
        id: "pcie.0",
        express: true,
        chipset: &[
            (addr(0, 0), "Q35 host bridge"),
            (addr(0x1f, 0), "ICH9 LPC (ISA) bridge"),
            (addr(0x1f, 2), "ICH9 SATA (AHCI)"),
            (addr(0x1f, 3), "ICH9 SMBus"),
        ],
        functions: &[
            (addr(0, 0), ChipsetFunction::Q35Host),
            (addr(0x1f, 0), ChipsetFunction::Ich9Lpc),
        ],
        isa_bridge: addr(0x1f, 0),
        first_auto_slot: 2,
        // ICH9: slot S pin P (0 = INTA) raises PIRQ (S + P) mod 4.
        pirq_slot_offset: 0,
        // ICH9 in APIC mode: PIRQ A-D are IOAPIC pins 16-19.
        pirq_gsi: [16, 17, 18, 19],
        ecam: Some((MMCONFIG_BASE, MMCONFIG_SIZE)),
        // The 32-bit window starts after the ECAM window.
        hole_min: MMCONFIG_BASE + MMCONFIG_SIZE,
    }),
    chipset_io: PC_CHIPSET_IO,
    chipset_mmio: &[
        (MMCONFIG_BASE, MMCONFIG_SIZE, "PCIe ECAM (MMCONFIG)"),
        (0xfec0_0000, 0x1000, "IOAPIC"),
        (0xfed0_0000, 0x400, "HPET"),
        (0xfed1_c000, 0x4000, "ICH9 root complex register block"),
        (0xfee0_0000, 0x10_0000, "local APIC"),
        (0xff00_0000, 0x100_0000, "firmware ROM"),
    ],
    intrinsic: INTRINSIC,
    defaults: pc_defaults!("01.0"),
    max_cpus: 255,
    min_memory: 16 << 20,
    low_limit_small: 0xb000_0000,
    low_limit_large: 0x8000_0000,
    // ICH9 LPC: 128 bytes at PMBASE, GPE0 (16 bytes) at +0x20.
    pm_len: 0x80,
    pm: PmLayout {
        gpe0_offset: 0x20,
        gpe0_len: 0x10,
        s5_typ: 7,
    },
    reset_port: Some(0xcf9),
    virtio_mmio: None,
};
