//! `microvm`: no PCI; virtio devices are virtio-mmio transports on the system bus,
//! legacy devices sit on ISA ports.

use super::{Board, BoardKind, INTRINSIC};
use crate::spec::PmLayout;

pub static BOARD: Board = Board {
    kind: BoardKind::Microvm,
    name: "microvm",
    title: "minimal, virtio-mmio",
    pci: None,
    chipset_io: &[
        (0x61, 1, "system control port B (PIT speaker, in KVM)"),
        (0x80, 1, "POST diagnostic port"),
    ],
    chipset_mmio: &[
        (0xfec0_0000, 0x1000, "IOAPIC"),
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
id = "pit"
kind = "pit"

[[device]]
id = "pm"
kind = "pm"
"#,
    max_cpus: 255,
    min_memory: 8 << 20,
    low_limit_small: 0xc000_0000,
    low_limit_large: 0xc000_0000,
    pm_len: 0x40,
    pm: PmLayout {
        gpe0_offset: 0x0c,
        gpe0_len: 4,
        s5_typ: 0,
    },
    reset_port: None,
    virtio_mmio: Some((0xfeb0_0000, 0x200, 32)),
};
