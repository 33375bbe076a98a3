//! PCI: the device trait every PCI function implements, its config-space helper, and
//! (in the submodules) the host bridges, bridges and the root that routes config cycles
//! and BAR accesses.
//!
//! # Writing a PCI device
//!
//! A device owns a [`PciConfig`] (the 256-byte header + capabilities, or 4 KiB for
//! PCIe) and implements [`PciDevice`]: two required methods hand out the config space,
//! the others have defaults that are right for most devices.
//!
//! ```ignore
//! struct MyDev { cfg: PciConfig, regs: [u32; 4] }
//!
//! impl MyDev {
//!     fn new() -> Self {
//!         let mut cfg = PciConfig::new(PciIds { vendor: 0x1af4, device: 0x1042,
//!             class: 0x010000, revision: 1, subsystem_vendor: 0x1af4, subsystem: 0x1100 });
//!         cfg.add_bar(0, BarDef::mem64(0x4000).prefetchable());   // BAR0+BAR1
//!         cfg.set_interrupt_pin(1);                                 // INTA#
//!         let off = cfg.add_capability(0x09, &[0u8; 14]);           // vendor cap
//!         Self { cfg, regs: [0; 4] }
//!     }
//! }
//!
//! impl PciDevice for MyDev {
//!     fn config(&self) -> &PciConfig { &self.cfg }
//!     fn config_mut(&mut self) -> &mut PciConfig { &mut self.cfg }
//!     fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) { /* registers */ }
//!     fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) { /* registers */ }
//! }
//! ```
//!
//! The device raises its interrupt with [`PciConfig::set_intx`]: the config space
//! keeps the level, shows it in the status register (bit 3), and drives the line the
//! root handed it unless the guest set INTx Disable (command bit 10). Several
//! devices sharing a GSI are ORed by the root. MSI-X lives in a capability the device
//! adds with [`PciConfig::add_capability`] and interprets itself; it delivers
//! messages through an [`MsiSender`] (the VMM's `KVM_SIGNAL_MSI`).
//!
//! BAR accesses reach [`PciDevice::bar_read`] / [`PciDevice::bar_write`] with the BAR
//! index (0-5; [`ROM_BAR`] for the expansion ROM) and the offset inside the BAR, only
//! while the guest has enabled decoding (command I/O / memory bits, ROM enable bit)
//! and the BAR lies inside the windows of every bridge above the device. For a 64-bit
//! BAR the index is the lower one.
//!
//! After every config write in the header (offsets below 0x40) the root asks
//! [`PciDevice::bars`] where the BARs are now and rebuilds its sorted decode table, so
//! a device never tells the root anything itself.

pub mod bridge;
pub mod config;
pub mod i440fx;
pub mod ich9;
pub mod piix;
pub mod ports;
pub mod q35;
pub mod root;

pub use config::{BarDef, BarKind, BarRegion, PciConfig, PciConfigState, PciIds};
pub use ports::{Ecam, PciPorts};
pub use root::{PciError, PciRoot, ECAM_SIZE};

use std::sync::{Arc, Mutex};

use crate::devices::IrqLine;

/// The BAR index under which the expansion ROM is accessed.
pub const ROM_BAR: u8 = 6;

/// Standard config-space offsets (type 0 and type 1 headers).
pub mod regs {
    pub const VENDOR_ID: u16 = 0x00;
    pub const DEVICE_ID: u16 = 0x02;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const REVISION: u16 = 0x08;
    pub const CLASS_PROG: u16 = 0x09;
    pub const CACHE_LINE: u16 = 0x0c;
    pub const LATENCY: u16 = 0x0d;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    pub const SUBSYSTEM_VENDOR: u16 = 0x2c;
    pub const SUBSYSTEM_ID: u16 = 0x2e;
    pub const ROM_ADDRESS: u16 = 0x30;
    pub const CAP_PTR: u16 = 0x34;
    pub const INTERRUPT_LINE: u16 = 0x3c;
    pub const INTERRUPT_PIN: u16 = 0x3d;
    // Type 1 (bridge) header.
    pub const PRIMARY_BUS: u16 = 0x18;
    pub const SECONDARY_BUS: u16 = 0x19;
    pub const SUBORDINATE_BUS: u16 = 0x1a;
    pub const IO_BASE: u16 = 0x1c;
    pub const IO_LIMIT: u16 = 0x1d;
    pub const SECONDARY_STATUS: u16 = 0x1e;
    pub const MEMORY_BASE: u16 = 0x20;
    pub const MEMORY_LIMIT: u16 = 0x22;
    pub const PREF_MEMORY_BASE: u16 = 0x24;
    pub const PREF_MEMORY_LIMIT: u16 = 0x26;
    pub const PREF_BASE_UPPER: u16 = 0x28;
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;
    pub const IO_BASE_UPPER: u16 = 0x30;
    pub const IO_LIMIT_UPPER: u16 = 0x32;
    pub const BRIDGE_ROM_ADDRESS: u16 = 0x38;
    pub const BRIDGE_CONTROL: u16 = 0x3e;

    pub const CMD_IO: u16 = 1 << 0;
    pub const CMD_MEMORY: u16 = 1 << 1;
    pub const CMD_BUS_MASTER: u16 = 1 << 2;
    pub const CMD_PARITY: u16 = 1 << 6;
    pub const CMD_SERR: u16 = 1 << 8;
    pub const CMD_INTX_DISABLE: u16 = 1 << 10;

    pub const STATUS_INTERRUPT: u16 = 1 << 3;
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Error bits, write-1-to-clear.
    pub const STATUS_W1C: u16 = 0xf900;

    /// Capability IDs.
    pub const CAP_ID_PM: u8 = 0x01;
    pub const CAP_ID_MSI: u8 = 0x05;
    pub const CAP_ID_VENDOR: u8 = 0x09;
    pub const CAP_ID_SSVID: u8 = 0x0d;
    pub const CAP_ID_EXP: u8 = 0x10;
    pub const CAP_ID_MSIX: u8 = 0x11;
}

/// A PCI function as the root sees it. `Send` so vCPU threads can share it behind a
/// mutex. Offsets are relative to the start of config space / of the BAR; `data.len()`
/// is the access size (1, 2 or 4 for config cycles; up to 8 for BARs).
pub trait PciDevice: Send {
    /// The function's config space.
    fn config(&self) -> &PciConfig;
    /// The function's config space, mutable.
    fn config_mut(&mut self) -> &mut PciConfig;

    /// A config-space read. The default reads [`PciConfig`]; override to compute
    /// registers on the fly (then call the default for the rest).
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config().read(offset, data);
    }

    /// A config-space write. The default applies it to [`PciConfig`] (write masks,
    /// write-1-to-clear bits, INTx disable). Override to react to a register (e.g.
    /// the MSI-X enable bit): call [`PciConfig::write`] then look at the new value.
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config_mut().write(offset, data);
    }

    /// A read inside BAR `bar` (0-5, or [`ROM_BAR`]) at `offset`. The default reads
    /// all ones (nothing decoded), or the ROM image given to [`PciConfig::set_rom`].
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar == ROM_BAR {
            self.config().rom_read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    /// A write inside BAR `bar` at `offset`. The default drops it.
    fn bar_write(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}

    /// Where the BARs are now (base, size, kind, and whether they decode as far as
    /// this function's command register and ROM enable bit go). The root calls it
    /// after header writes; the default reads [`PciConfig`].
    fn bars(&self) -> Vec<BarRegion> {
        self.config().bar_regions()
    }

    /// The root hands the function its INTx line (already routed to the board's GSI
    /// and ORed with the other functions on it). The default stores it in
    /// [`PciConfig`], which [`PciConfig::set_intx`] drives.
    fn set_intx_line(&mut self, line: Arc<dyn IrqLine>) {
        self.config_mut().set_intx_line(line);
    }
}

/// A PCI function shared between the root and its owner (the attach step, the event
/// loop for a NIC or disk).
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Delivers one MSI: `address` and `data` as the guest wrote them in the MSI-X table
/// (the VMM implements it with `KVM_SIGNAL_MSI`).
pub trait MsiSender: Send + Sync {
    /// Sends the message; false when the host refused it (bad address, no irqchip).
    fn send_msi(&self, address: u64, data: u32) -> bool;
}

/// An MSI sender that drops every message (tests, devices without MSI).
#[derive(Debug, Default)]
pub struct NoMsi;

impl MsiSender for NoMsi {
    fn send_msi(&self, _address: u64, _data: u32) -> bool {
        false
    }
}

/// A function that is nothing but its config space (host bridges, the ISA/LPC bridge,
/// the PM function): registers the guest writes and reads back.
#[derive(Debug)]
pub struct PlainFunction(pub PciConfig);

impl PciDevice for PlainFunction {
    fn config(&self) -> &PciConfig {
        &self.0
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.0
    }
}
