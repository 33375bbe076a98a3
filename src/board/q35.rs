//! `q35`: QEMU's Q35 + ICH9 board, with a PCIe root complex and ECAM (MMCONFIG).

use super::{addr, Board, BoardKind, PciRoot, INTRINSIC};

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
        first_auto_slot: 2,
        // ICH9 in APIC mode: PIRQ A-D are IOAPIC pins 16-19.
        pirq_gsi: [16, 17, 18, 19],
    }),
    chipset_io: &[
        (0x61, 1, "system control port B (PIT speaker, in KVM)"),
        (0x80, 1, "POST diagnostic port"),
        (
            0xcf8,
            8,
            "PCI configuration ports and reset control (0xcf9)",
        ),
    ],
    chipset_mmio: &[
        (MMCONFIG_BASE, MMCONFIG_SIZE, "PCIe ECAM (MMCONFIG)"),
        (0xfec0_0000, 0x1000, "IOAPIC"),
        (0xfed0_0000, 0x400, "HPET"),
        (0xfed1_c000, 0x4000, "ICH9 root complex register block"),
        (0xfee0_0000, 0x10_0000, "local APIC"),
        (0xff00_0000, 0x100_0000, "firmware ROM"),
    ],
    intrinsic: INTRINSIC,
    defaults: r#"
[[device]]
id = "com1"
kind = "serial"
io = 0x3f8
irq = 4
backend = "stdio"

[[device]]
id = "rtc"
kind = "rtc"

[[device]]
id = "i8042"
kind = "i8042"

[[device]]
id = "pit"
kind = "pit"

[[device]]
id = "pm"
kind = "pm"

[[device]]
id = "fw_cfg"
kind = "fw_cfg"

[[device]]
id = "vga"
kind = "vga"
addr = "01.0"
"#,
    max_cpus: 255,
    min_memory: 16 << 20,
    low_limit_small: 0xb000_0000,
    low_limit_large: 0x8000_0000,
    s5_typ: 7,
    virtio_mmio: None,
};
