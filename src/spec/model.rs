//! The types of the resolved machine. Every fact a later stage needs is here, typed and
//! final: the memory layout, the chipset, every bus and every device with every resource
//! it decodes. The build stage, the ACPI tables, fw_cfg and the probe's command line read
//! these values; none of them re-derives a default or tests the board to decide a port.

use std::path::PathBuf;

use crate::arch::x86_64::layout::RamRegion;
use crate::board::BoardKind;
use crate::config::reader::PciAddr;

/// sockets × cores × threads, and the APIC IDs that packs into (one definition, shared
/// with the CPUID code).
pub use crate::arch::x86_64::cpuid::CpuTopology;

#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    pub name: String,
    pub board: BoardKind,
    pub memory: MemoryLayout,
    pub chipset: Chipset,
    pub cpus: CpuTopology,
    pub boot: BootSpec,
    pub control: ControlSpec,
    /// Every bus: the board's roots first, then bridges in PCI bus-number order.
    pub buses: Vec<BusSpec>,
    /// Every device, sorted by id.
    pub devices: Vec<DeviceSpec>,
}

/// Guest-physical memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryLayout {
    /// Guest RAM in bytes.
    pub size: u64,
    /// RAM below the 32-bit PCI hole, from 0.
    pub below_4g: u64,
    /// RAM from 4 GiB up.
    pub above_4g: u64,
    /// The RAM regions (memslots; the VGA window is carved out of them when a VGA
    /// decodes it).
    pub ram: Vec<RamRegion>,
    /// Ranges the e820 map reserves beyond the PC's standard ones (the ECAM window).
    pub reserved: Vec<MmioRange>,
    /// The 32-bit window where PCI BARs go: [start, end).
    pub pci_hole: Option<MmioRange>,
    /// The 64-bit window where PCI BARs go, above RAM.
    pub pci_hole64: Option<MmioRange>,
    /// Guest-physical addresses end here (RAM, BARs and device windows stay below).
    pub address_space_end: u64,
}

/// What the board's chipset is and decodes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Chipset {
    /// The PCI host (pc, q35); none on microvm.
    pub pci: Option<PciHost>,
    /// The reset control register (0xCF9 on the PC chipsets), also the FADT's RESET_REG.
    pub reset_port: Option<u16>,
    /// The local APICs' MMIO base.
    pub lapic_base: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PciHost {
    /// PCI Express root complex (q35) or conventional PCI (pc).
    pub express: bool,
    /// The root bus id ("pci.0" or "pcie.0").
    pub root_bus: String,
    /// Configuration mechanism #1 (0xCF8/0xCFC, with the reset register at 0xCF9).
    pub config_ports: IoRange,
    /// The ECAM (MMCONFIG) window, 256 buses (q35).
    pub ecam: Option<MmioRange>,
    /// The chipset's own functions on the root bus that vmrun emulates.
    pub functions: Vec<(PciAddr, ChipsetFunction)>,
    /// The ISA (LPC) bridge function, which the DSDT puts the ISA devices under.
    pub isa_bridge: PciAddr,
    /// How root-bus INTx pins reach GSIs.
    pub routing: IntxRouting,
}

/// A chipset PCI function vmrun emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipsetFunction {
    I440fxHost,
    Piix3Isa,
    Piix4Pm,
    Q35Host,
    Ich9Lpc,
}

/// Root-bus INTx routing: pin `pin` (0 = INTA) of slot `slot` raises PIRQ
/// `(slot + pin + slot_offset) mod 4`, which is wired to GSI `pirq_gsi[pirq]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntxRouting {
    pub slot_offset: u8,
    pub pirq_gsi: [u32; 4],
}

impl IntxRouting {
    /// The GSI that INTx `pin` (0 = INTA) of root-bus `slot` raises.
    pub fn gsi(&self, slot: u8, pin: u8) -> u32 {
        let pirq = (usize::from(slot) + usize::from(pin) + usize::from(self.slot_offset)) % 4;
        self.pirq_gsi[pirq]
    }
}

/// Where the machine's control socket is, if the machine file names one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlSpec {
    /// `[control] qmp`: an absolute path.
    pub qmp: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BootSpec {
    pub kernel: Option<ArtifactSpec>,
    pub initrd: Option<ArtifactSpec>,
    /// The kernel's command line, or the probe's options when the probe boots.
    pub cmdline: String,
    pub firmware: Option<ArtifactSpec>,
    /// The built-in probe boots: as the kernel (no kernel, no firmware), or as the
    /// firmware's payload (no kernel, and probe options in `cmdline`).
    pub probe: bool,
    /// Start from this snapshot directory instead of booting (`sha256`: its
    /// manifest's, already verified).
    pub snapshot: Option<ArtifactSpec>,
}

impl BootSpec {
    /// This boot with the probe in place of the kernel, `options` after the probe
    /// options it already had (`vmrun probe FILE -- OPTIONS`).
    pub fn with_probe(&self, options: &str) -> BootSpec {
        let mut cmdline = if self.probe {
            self.cmdline.clone()
        } else {
            String::new()
        };
        if !options.is_empty() {
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(options);
        }
        BootSpec {
            kernel: None,
            initrd: None,
            cmdline,
            firmware: self.firmware.clone(),
            probe: true,
            snapshot: None,
        }
    }
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
    /// The PCIe root port's port number (its PCIe capability), counted in bus order.
    pub port: Option<u8>,
}

/// A range of I/O ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoRange {
    pub base: u16,
    pub len: u16,
}

/// A range of guest-physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioRange {
    pub base: u64,
    pub len: u64,
}

impl MmioRange {
    pub fn end(&self) -> u64 {
        self.base + self.len
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PciPlacement {
    /// Bus number the device sits on.
    pub bus_number: u8,
    pub addr: PciAddr,
    /// Interrupt pin: 1 = INTA, 0 = none (the VGA).
    pub pin: u8,
    /// The IOAPIC input the pin reaches through bridge swizzling and the board's routing.
    pub gsi: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub id: String,
    pub bus: String,
    /// Set by the board (its defaults or interrupt controllers), not the user.
    pub from_board: bool,
    /// Every port range the device decodes, in the order of its register regions (a
    /// device sees region index + offset, never an absolute port).
    pub io: Vec<IoRange>,
    /// Every MMIO range the device decodes outside its PCI BARs, likewise in order.
    pub mmio: Vec<MmioRange>,
    /// The ISA IRQs / GSIs it raises (ISA IRQ 0 reaches GSI 2, as the MADT says).
    pub irqs: Vec<u32>,
    pub pci: Option<PciPlacement>,
    pub kind: DeviceKind,
}

impl DeviceSpec {
    /// The first port of the first I/O region (the `io` of the machine file).
    pub fn io_base(&self) -> Option<u16> {
        self.io.first().map(|r| r.base)
    }

    /// The first IRQ (the `irq` of the machine file).
    pub fn irq(&self) -> Option<u32> {
        self.irqs.first().copied()
    }
}

/// What a device is, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Serial,
    Rtc,
    I8042,
    Debugcon,
    Pm,
    FwCfg,
    Vga,
    Nic,
    Disk,
    Pit,
    Pic,
    Ioapic,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Serial,
        Kind::Rtc,
        Kind::I8042,
        Kind::Debugcon,
        Kind::Pm,
        Kind::FwCfg,
        Kind::Vga,
        Kind::Nic,
        Kind::Disk,
        Kind::Pit,
        Kind::Pic,
        Kind::Ioapic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Serial => "serial",
            Kind::Rtc => "rtc",
            Kind::I8042 => "i8042",
            Kind::Debugcon => "debugcon",
            Kind::Pm => "pm",
            Kind::FwCfg => "fw_cfg",
            Kind::Vga => "vga",
            Kind::Nic => "nic",
            Kind::Disk => "disk",
            Kind::Pit => "pit",
            Kind::Pic => "pic",
            Kind::Ioapic => "ioapic",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
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
    /// QEMU `-netdev dgram`: one frame per datagram between two sockets.
    Dgram {
        local: crate::backends::dgram_sock::Endpoint,
        remote: crate::backends::dgram_sock::Endpoint,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    VirtioNet,
    /// The Intel 82540EM (a PCI card: pc and q35 only).
    E1000,
}

impl NicModel {
    pub fn name(self) -> &'static str {
        match self {
            NicModel::VirtioNet => "virtio-net",
            NicModel::E1000 => "e1000",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcClock {
    Utc,
    Localtime,
}

/// The ACPI PM block's layout inside its I/O region (the PM1 event, control and timer
/// registers at 0, the GPE0 block at `gpe0_offset`) and the board's S5 sleep type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmLayout {
    pub gpe0_offset: u16,
    pub gpe0_len: u16,
    pub s5_typ: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceKind {
    Serial {
        backend: CharBackend,
        log: Option<PathBuf>,
    },
    Rtc {
        clock: RtcClock,
    },
    I8042,
    Debugcon {
        backend: CharBackend,
    },
    Pm(PmLayout),
    FwCfg {
        files: Vec<(String, FwCfgData)>,
    },
    Vga {
        vram: u64,
    },
    Nic {
        model: NicModel,
        mac: [u8; 6],
        backend: NicBackend,
    },
    Disk {
        path: PathBuf,
        readonly: bool,
        format: DiskFormat,
        /// Writes go to a qcow2 overlay over `path`, never to it.
        overlay: bool,
    },
    Pit,
    Pic,
    Ioapic {
        /// The IOAPIC's APIC ID (after the last CPU's), as the MP table and MADT say.
        apic_id: u8,
    },
}

impl DeviceKind {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Serial { .. } => Kind::Serial,
            Self::Rtc { .. } => Kind::Rtc,
            Self::I8042 => Kind::I8042,
            Self::Debugcon { .. } => Kind::Debugcon,
            Self::Pm(_) => Kind::Pm,
            Self::FwCfg { .. } => Kind::FwCfg,
            Self::Vga { .. } => Kind::Vga,
            Self::Nic { .. } => Kind::Nic,
            Self::Disk { .. } => Kind::Disk,
            Self::Pit => Kind::Pit,
            Self::Pic => Kind::Pic,
            Self::Ioapic { .. } => Kind::Ioapic,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

impl MachineSpec {
    pub fn device(&self, id: &str) -> Option<&DeviceSpec> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn devices_of(&self, kind: Kind) -> impl Iterator<Item = &DeviceSpec> + '_ {
        self.devices.iter().filter(move |d| d.kind.kind() == kind)
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.devices_of(kind).next().is_some()
    }

    /// The PM device and its layout.
    pub fn pm(&self) -> Option<(&DeviceSpec, PmLayout)> {
        self.devices.iter().find_map(|d| match d.kind {
            DeviceKind::Pm(l) => Some((d, l)),
            _ => None,
        })
    }

    /// The IOAPIC's MMIO window and APIC ID.
    pub fn ioapic(&self) -> Option<(MmioRange, u8)> {
        self.devices.iter().find_map(|d| match d.kind {
            DeviceKind::Ioapic { apic_id } => d.mmio.first().map(|m| (*m, apic_id)),
            _ => None,
        })
    }
}

/// Formats a MAC address the usual way.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
