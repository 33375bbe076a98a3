//! The resolved machine: board defaults expanded, every device on a bus, every I/O
//! port, MMIO range, GSI, PCI address and MAC assigned. Built by [`check`], a pure
//! function of the typed machine file (it reads only the files the machine names).
//! Nothing after this stage can fail because of the user's file.

mod check;
mod devices;
pub mod graph;
mod plan;
mod props;
mod resources;
pub mod show;
mod topology;

use std::path::PathBuf;

pub use check::check;

use crate::board::BoardKind;
use crate::config::reader::PciAddr;

#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    pub name: String,
    pub board: BoardKind,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// RAM below the 32-bit PCI hole, from 0.
    pub ram_below_4g: u64,
    /// RAM from 4 GiB up.
    pub ram_above_4g: u64,
    pub cpus: CpuTopology,
    pub boot: BootSpec,
    /// Every bus: the board's roots first, then bridges in PCI bus-number order.
    pub buses: Vec<BusSpec>,
    /// Every device, sorted by id.
    pub devices: Vec<DeviceSpec>,
}

/// sockets × cores × threads, and the APIC IDs that packs into (one definition, shared
/// with the CPUID code).
pub use crate::arch::x86_64::cpuid::CpuTopology;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootSpec {
    pub kernel: Option<ArtifactSpec>,
    pub initrd: Option<ArtifactSpec>,
    pub cmdline: String,
    pub firmware: Option<ArtifactSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactSpec {
    /// Absolute path.
    pub path: PathBuf,
    /// The digest the user pinned (already verified).
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    /// Memory-mapped platform devices (IOAPIC, virtio-mmio).
    Sysbus,
    /// ISA (on q35: behind the ICH9 LPC bridge).
    Isa,
    PciRoot,
    PcieRoot,
    PciBridge,
    PcieRootPort,
}

impl BusKind {
    pub fn is_pci(self) -> bool {
        matches!(
            self,
            Self::PciRoot | Self::PcieRoot | Self::PciBridge | Self::PcieRootPort
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sysbus => "sysbus",
            Self::Isa => "isa",
            Self::PciRoot => "pci-root",
            Self::PcieRoot => "pcie-root",
            Self::PciBridge => "pci-bridge",
            Self::PcieRootPort => "pcie-root-port",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusSpec {
    pub id: String,
    pub kind: BusKind,
    /// The bus a bridge sits on (None for the board's roots).
    pub parent: Option<String>,
    /// The bridge's address on its parent.
    pub addr: Option<PciAddr>,
    /// PCI bus number (the secondary bus number of a bridge; 0 for the root).
    pub number: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PciPlacement {
    /// Bus number the device sits on.
    pub bus_number: u8,
    pub addr: PciAddr,
    /// Interrupt pin: 1 = INTA.
    pub pin: u8,
    /// The IOAPIC input the pin reaches through bridge swizzling and the board's routing.
    pub gsi: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub id: String,
    pub bus: String,
    /// Set by the board (its defaults or interrupt controllers), not the user.
    pub from_board: bool,
    pub pci: Option<PciPlacement>,
    /// Base I/O port as the machine file says it (ISA devices).
    pub io: Option<u16>,
    /// Every port range the device decodes: (base, length).
    pub io_ranges: Vec<(u16, u16)>,
    /// ISA IRQ / GSI (ISA and virtio-mmio devices).
    pub irq: Option<u32>,
    /// MMIO range: (base, length).
    pub mmio: Option<(u64, u64)>,
    pub kind: DeviceKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CharBackend {
    Stdio,
    Stderr,
    File(PathBuf),
    Socket(PathBuf),
    Pty,
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FwCfgData {
    File(PathBuf),
    Inline(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBackend {
    None,
    Tap(Option<String>),
    Switch(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceKind {
    Serial {
        backend: CharBackend,
        log: Option<PathBuf>,
    },
    Rtc {
        localtime: bool,
    },
    I8042,
    Debugcon {
        backend: CharBackend,
    },
    Pm {
        s5_typ: u8,
    },
    FwCfg {
        files: Vec<(String, FwCfgData)>,
    },
    Vga {
        vram: u64,
    },
    Nic {
        model: String,
        mac: [u8; 6],
        backend: NicBackend,
    },
    Disk {
        path: PathBuf,
        readonly: bool,
        format: String,
    },
    Pit,
    Pic,
    Ioapic,
}

impl DeviceKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Serial { .. } => "serial",
            Self::Rtc { .. } => "rtc",
            Self::I8042 => "i8042",
            Self::Debugcon { .. } => "debugcon",
            Self::Pm { .. } => "pm",
            Self::FwCfg { .. } => "fw_cfg",
            Self::Vga { .. } => "vga",
            Self::Nic { .. } => "nic",
            Self::Disk { .. } => "disk",
            Self::Pit => "pit",
            Self::Pic => "pic",
            Self::Ioapic => "ioapic",
        }
    }
}

impl MachineSpec {
    pub fn device(&self, id: &str) -> Option<&DeviceSpec> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn devices_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a DeviceSpec> + 'a {
        self.devices.iter().filter(move |d| d.kind.name() == kind)
    }
}

/// Formats a MAC address the usual way.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
