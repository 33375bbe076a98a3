//! What each board implies: its root buses, the chipset's own ports and MMIO ranges,
//! the PCI slots the chipset takes, its default devices, and where the 32-bit PCI hole
//! starts. Boards are data; `spec` reads them.

/// The default devices of the PC boards (pc, q35): QEMU's set, with the VGA at `$vga`.
macro_rules! pc_defaults {
    ($vga:literal) => {
        concat!(
            r#"
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
"#,
            "addr = \"",
            $vga,
            "\"\n"
        )
    };
}

mod microvm;
mod pc;
mod q35;

use crate::config::reader::PciAddr;
use crate::spec::{ChipsetFunction, PmLayout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BoardKind {
    Pc,
    Q35,
    Microvm,
}

impl BoardKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pc" => Some(Self::Pc),
            "q35" => Some(Self::Q35),
            "microvm" => Some(Self::Microvm),
            _ => None,
        }
    }

    pub fn board(self) -> &'static Board {
        match self {
            Self::Pc => &pc::BOARD,
            Self::Q35 => &q35::BOARD,
            Self::Microvm => &microvm::BOARD,
        }
    }
}

/// The board's root PCI bus.
#[derive(Debug)]
pub struct PciRoot {
    /// Bus id devices name: "pci.0" or "pcie.0".
    pub id: &'static str,
    /// PCI Express root complex (q35) or conventional PCI (pc).
    pub express: bool,
    /// Slots/functions the chipset occupies, with what sits there.
    pub chipset: &'static [(PciAddr, &'static str)],
    /// The chipset functions vmrun emulates (a subset of `chipset`).
    pub functions: &'static [(PciAddr, ChipsetFunction)],
    /// The ISA (LPC) bridge.
    pub isa_bridge: PciAddr,
    /// Where automatic slot assignment starts.
    pub first_auto_slot: u8,
    /// Root-bus INTx: pin (0 = INTA) of slot raises PIRQ (slot + pin + offset) mod 4.
    pub pirq_slot_offset: u8,
    /// The GSI that PIRQ A, B, C, D of the root bus raise.
    pub pirq_gsi: [u32; 4],
    /// The ECAM (MMCONFIG) window: base, size.
    pub ecam: Option<(u64, u64)>,
    /// The lowest start of the 32-bit PCI MMIO window (above the ECAM on q35).
    pub hole_min: u64,
}

#[derive(Debug)]
pub struct Board {
    pub kind: BoardKind,
    pub name: &'static str,
    /// What the board is, for `graph` and messages.
    pub title: &'static str,
    pub pci: Option<PciRoot>,
    /// Ports the chipset decodes itself: (base, length, what).
    pub chipset_io: &'static [(u16, u16, &'static str)],
    /// MMIO ranges the chipset decodes itself: (base, length, what).
    pub chipset_mmio: &'static [(u64, u64, &'static str)],
    /// Devices every machine of this board has (the in-kernel interrupt controllers).
    pub intrinsic: &'static str,
    /// Default devices, dropped by `defaults = false`.
    pub defaults: &'static str,
    pub max_cpus: u32,
    pub min_memory: u64,
    /// RAM below 4 GiB ends here when it would otherwise reach into the PCI hole.
    pub low_limit_small: u64,
    /// ... and here when RAM is at least `low_limit_small` (gigabyte alignment, as QEMU).
    pub low_limit_large: u64,
    /// The ACPI PM block: its length (PM base register granularity) and layout.
    pub pm_len: u16,
    pub pm: PmLayout,
    /// The reset control register.
    pub reset_port: Option<u16>,
    /// Where virtio-mmio transports go (microvm): base, stride, count.
    pub virtio_mmio: Option<(u64, u64, u32)>,
}

/// The highest guest-physical address vmrun places RAM below (40 bits).
pub const ADDRESS_SPACE_END: u64 = 1 << 40;
/// RAM above the PCI hole starts here.
pub const HIGH_RAM_START: u64 = 1 << 32;
/// GSIs of the in-kernel IOAPIC: 0..24.
pub const IOAPIC_PINS: u32 = 24;
/// The IOAPIC's MMIO window (every PC chipset's default).
pub const IOAPIC_MMIO: (u64, u64) = (0xfec0_0000, 0x1000);
/// The local APICs' MMIO base.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// The 32-bit PCI MMIO window ends below the IOAPIC page.
pub const PCI_HOLE_END: u64 = 0xfec0_0000;
/// The 64-bit PCI window: from the first GiB boundary above RAM, this large.
pub const PCI_HOLE64_SIZE: u64 = 32 << 30;
/// The ISA IRQ of the master PIC's cascade input: no device may use it.
pub const CASCADE_IRQ: u32 = 2;

impl Board {
    /// Top of RAM below 4 GiB for `ram` bytes of RAM.
    pub fn low_limit(&self, ram: u64) -> u64 {
        if ram >= self.low_limit_small {
            self.low_limit_large
        } else {
            self.low_limit_small
        }
    }

    /// (below 4 GiB, above 4 GiB) split of `ram`.
    pub fn ram_split(&self, ram: u64) -> (u64, u64) {
        let low = ram.min(self.low_limit(ram));
        (low, ram - low)
    }

    /// The root bus ids this board has, with their kind names.
    pub fn root_buses(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            ("sysbus", "system bus"),
            (
                "isa",
                if self.kind == BoardKind::Q35 {
                    "ISA (ICH9 LPC)"
                } else {
                    "ISA"
                },
            ),
        ];
        if let Some(p) = &self.pci {
            v.push((
                p.id,
                if p.express {
                    "PCIe root complex"
                } else {
                    "PCI host bridge (i440FX)"
                },
            ));
        }
        v
    }
}

/// Ports the PC boards' chipsets decode themselves.
const PC_CHIPSET_IO: &[(u16, u16, &str)] = &[
    (0x61, 1, "system control port B (PIT speaker, in KVM)"),
    (0x80, 1, "POST diagnostic port"),
    (
        0xcf8,
        8,
        "PCI configuration ports and reset control (0xcf9)",
    ),
];

const fn addr(slot: u8, func: u8) -> PciAddr {
    PciAddr { slot, func }
}

/// The interrupt controllers every board has: KVM's in-kernel PIC and IOAPIC.
const INTRINSIC: &str = r#"
[[device]]
id = "pic"
kind = "pic"

[[device]]
id = "ioapic"
kind = "ioapic"
"#;
