//! PCI-to-PCI bridges: QEMU's `pci-bridge` (1b36:0001) and `pcie-root-port`
//! (1b36:000c, with a PCI Express capability of type root port).
//!
//! A bridge is a type-1 header the guest programs: primary/secondary/subordinate bus
//! numbers (config cycles for buses in [secondary, subordinate] go through it), an
//! I/O window (4 KiB granular, 16-bit), a memory window (1 MiB granular) and a 64-bit
//! prefetchable window, each forwarded only while the bridge's command register enables
//! that space. The root reads the windows through the accessors here.

use super::config::{PciConfig, PciIds};
use super::regs::*;
use super::PciDevice;

/// QEMU's vendor ID for its own devices (Red Hat).
pub const VENDOR_REDHAT: u16 = 0x1b36;
pub const DEVICE_PCI_BRIDGE: u16 = 0x0001;
pub const DEVICE_PCIE_ROOT_PORT: u16 = 0x000c;
/// Class 06.04.00: PCI-to-PCI bridge.
const CLASS_PCI_BRIDGE: u32 = 0x06_04_00;

/// A PCI-to-PCI bridge or PCIe root port.
#[derive(Debug)]
pub struct PciBridge {
    cfg: PciConfig,
}

impl PciBridge {
    /// A conventional PCI bridge (`pci-bridge`).
    pub fn conventional() -> Self {
        let mut cfg = PciConfig::new_bridge(ids(DEVICE_PCI_BRIDGE), false);
        // Like QEMU's: INTA for its own (unused) interrupt; no capabilities needed.
        cfg.set_interrupt_pin(0);
        Self { cfg }
    }

    /// A PCIe root port (`pcie-root-port`) with port number `port` in its link
    /// capabilities: a PCI Express capability v2 of type root port, x1 link at 2.5 GT/s,
    /// link up, no slot (no hot-plug).
    pub fn pcie_root_port(port: u8) -> Self {
        let mut cfg = PciConfig::new_bridge(ids(DEVICE_PCIE_ROOT_PORT), true);
        let mut body = [0u8; 0x3c - 2];
        // Offsets below are from the capability start; the body starts at +2.
        let mut put = |off: usize, v: &[u8]| {
            if let Some(dst) = body.get_mut(off - 2..off - 2 + v.len()) {
                dst.copy_from_slice(v);
            }
        };
        // PCIe capabilities: version 2, device/port type 4 (root port).
        put(0x02, &0x0042u16.to_le_bytes());
        // Device capabilities: 128-byte max payload.
        put(0x04, &0u32.to_le_bytes());
        // Link capabilities: 2.5 GT/s, x1, port number.
        put(0x0c, &(0x11u32 | u32::from(port) << 24).to_le_bytes());
        // Link status: 2.5 GT/s, x1, data link layer active.
        put(0x12, &0x2011u16.to_le_bytes());
        // Link capabilities 2: 2.5 GT/s supported.
        put(0x2c, &0x2u32.to_le_bytes());
        // A 4 KiB config space has room: this cannot fail, but stay total.
        if let Ok(off) = cfg.add_capability(CAP_ID_EXP, &body) {
            // Device control, link control, root control: guest-writable.
            cfg.set_wmask(off + 0x08, &[0xff, 0x7f]);
            cfg.set_wmask(off + 0x10, &[0xfb, 0x0f]);
            cfg.set_wmask(off + 0x1c, &[0x1f, 0x00]);
            cfg.set_wmask(off + 0x28, &[0xff, 0xff]);
            cfg.set_wmask(off + 0x30, &[0xff, 0xff]);
        }
        cfg.set_interrupt_pin(0);
        Self { cfg }
    }

    pub fn primary(&self) -> u8 {
        self.cfg.u8(PRIMARY_BUS)
    }
    pub fn secondary(&self) -> u8 {
        self.cfg.u8(SECONDARY_BUS)
    }
    pub fn subordinate(&self) -> u8 {
        self.cfg.u8(SUBORDINATE_BUS)
    }

    /// Whether a config cycle for `bus` goes through this bridge: `Some(true)` for its
    /// secondary bus (type-0 there), `Some(false)` for a bus further down, `None` if
    /// not forwarded. A bridge the guest has not numbered (secondary 0) forwards
    /// nothing.
    pub fn forwards_bus(&self, bus: u8) -> Option<bool> {
        let (sec, sub) = (self.secondary(), self.subordinate());
        if sec == 0 {
            None
        } else if bus == sec {
            Some(true)
        } else if bus > sec && bus <= sub {
            Some(false)
        } else {
            None
        }
    }

    /// The I/O window `[start, end)` if the bridge forwards I/O and it is not empty.
    pub fn io_window(&self) -> Option<(u64, u64)> {
        if self.cfg.command() & CMD_IO == 0 {
            return None;
        }
        let base = u64::from(self.cfg.u8(IO_BASE) & 0xf0) << 8;
        let limit = (u64::from(self.cfg.u8(IO_LIMIT) & 0xf0) << 8) | 0xfff;
        (base <= limit).then_some((base, limit + 1))
    }

    /// The memory window `[start, end)`, if forwarded and not empty.
    pub fn mem_window(&self) -> Option<(u64, u64)> {
        if self.cfg.command() & CMD_MEMORY == 0 {
            return None;
        }
        let base = u64::from(self.cfg.u16(MEMORY_BASE) & 0xfff0) << 16;
        let limit = (u64::from(self.cfg.u16(MEMORY_LIMIT) & 0xfff0) << 16) | 0xf_ffff;
        (base <= limit).then_some((base, limit + 1))
    }

    /// The prefetchable memory window `[start, end)` (64-bit), if forwarded and not
    /// empty.
    pub fn pref_window(&self) -> Option<(u64, u64)> {
        if self.cfg.command() & CMD_MEMORY == 0 {
            return None;
        }
        let base = u64::from(self.cfg.u16(PREF_MEMORY_BASE) & 0xfff0) << 16
            | u64::from(self.cfg.u32(PREF_BASE_UPPER)) << 32;
        let limit = (u64::from(self.cfg.u16(PREF_MEMORY_LIMIT) & 0xfff0) << 16)
            | 0xf_ffff
            | u64::from(self.cfg.u32(PREF_LIMIT_UPPER)) << 32;
        (base <= limit).then(|| (base, limit.saturating_add(1)))
    }
}

fn ids(device: u16) -> PciIds {
    PciIds {
        vendor: VENDOR_REDHAT,
        device,
        class: CLASS_PCI_BRIDGE,
        revision: 0,
        subsystem_vendor: 0,
        subsystem: 0,
    }
}

impl PciDevice for PciBridge {
    fn config(&self) -> &PciConfig {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_forwarding_and_windows() {
        let mut b = PciBridge::conventional();
        assert_eq!(b.forwards_bus(1), None);
        b.config_write(PRIMARY_BUS, &[0, 2, 4, 0]);
        assert_eq!(b.forwards_bus(2), Some(true));
        assert_eq!(b.forwards_bus(4), Some(false));
        assert_eq!(b.forwards_bus(5), None);
        assert_eq!(b.forwards_bus(1), None);
        // Windows are closed until the command register opens them.
        b.config_write(IO_BASE, &[0x10, 0x20]);
        b.config_write(MEMORY_BASE, &0xfe10_fe00u32.to_le_bytes());
        b.config_write(PREF_MEMORY_BASE, &0xfff1_0001u32.to_le_bytes());
        b.config_write(PREF_BASE_UPPER, &[8, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(b.io_window(), None);
        b.config_write(COMMAND, &[3, 0]);
        assert_eq!(b.io_window(), Some((0x1000, 0x3000)));
        assert_eq!(b.mem_window(), Some((0xfe00_0000, 0xfe20_0000)));
        assert_eq!(
            b.pref_window(),
            Some((0x8_0000_0000, 0x8_0000_0000 + (1 << 32)))
        );
        // Base above limit: closed.
        b.config_write(IO_BASE, &[0x30, 0x20]);
        assert_eq!(b.io_window(), None);
    }

    #[test]
    fn root_port_has_pcie_capability() {
        let p = PciBridge::pcie_root_port(3);
        let c = p.config();
        assert_eq!(c.u32(0), 0x000c_1b36);
        assert_eq!(c.header_type(), 1);
        assert_eq!(c.len(), 4096);
        let off = c.find_capability(CAP_ID_EXP).unwrap();
        assert_eq!(c.u16(off + 2) & 0xf0, 0x40);
        assert_eq!(c.u32(off + 0x0c) >> 24, 3);
    }
}
