//! The host bridge's config-cycle doors into [`PciRoot`]: configuration mechanism #1
//! at ports 0xCF8-0xCFF (with the reset control register at 0xCF9) and the ECAM
//! (MMCONFIG) window on `q35`.

use std::sync::Arc;

use super::root::PciRoot;
use crate::devices::reset::ResetControl;
use crate::devices::{BusDevice, VmEvent};

/// Ports 0xCF8-0xCFF: the CONFIG_ADDRESS dword at 0xCF8, the reset control register
/// (byte at 0xCF9), CONFIG_DATA at 0xCFC-0xCFF (byte, word or dword inside it).
pub struct PciPorts {
    root: Arc<PciRoot>,
    address: u32,
    reset: ResetControl,
}

impl PciPorts {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self {
            root,
            address: 0,
            reset: ResetControl::new(),
        }
    }

    /// CONFIG_ADDRESS and the reset control register (for a snapshot).
    pub fn registers(&self) -> (u32, u8) {
        (self.address, self.reset.value())
    }

    /// Restores what [`Self::registers`] returned.
    pub fn set_registers(
        &mut self,
        address: u32,
        reset: u8,
    ) -> Result<(), crate::snapshot::StateError> {
        crate::snapshot::state::ensure(address & !0x80ff_fffc == 0, || {
            format!("CONFIG_ADDRESS {address:#x}")
        })?;
        self.reset.set_value(reset)?;
        self.address = address;
        Ok(())
    }

    /// (bus, devfn, register) of a data-port access at `offset` (4-7) of `len`, if
    /// CONFIG_ADDRESS is enabled and the access stays inside the dword.
    fn target(&self, offset: u64, len: usize) -> Option<(u8, u8, u16)> {
        let byte = offset.checked_sub(4)?;
        if self.address & 0x8000_0000 == 0 || byte as usize + len > 4 {
            return None;
        }
        let a = self.address;
        Some((
            (a >> 16) as u8,
            (a >> 8) as u8,
            (a & 0xfc) as u16 + byte as u16,
        ))
    }
}

impl BusDevice for PciPorts {
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (1, 1) => self.reset.read(region, 0, data),
            (o, n) => match self.target(o, n) {
                Some((bus, devfn, reg)) => self.root.config_read(bus, devfn, reg, data),
                None => data.fill(0xff),
            },
        }
    }

    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        match (offset, data) {
            (0, &[a, b, c, d]) => {
                self.address = u32::from_le_bytes([a, b, c, d]) & 0x80ff_fffc;
                None
            }
            (1, &[_]) => self.reset.write(region, 0, data),
            (o, _) => {
                if let Some((bus, devfn, reg)) = self.target(o, data.len()) {
                    self.root.config_write(bus, devfn, reg, data);
                }
                None
            }
        }
    }
}

/// The ECAM (MMCONFIG) window: `bus << 20 | devfn << 12 | register`.
pub struct Ecam {
    root: Arc<PciRoot>,
}

impl Ecam {
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }

    fn target(offset: u64, len: usize) -> Option<(u8, u8, u16)> {
        let reg = (offset & 0xfff) as u16;
        if !matches!(len, 1 | 2 | 4) || usize::from(reg & 3) + len > 4 || offset >> 28 != 0 {
            return None;
        }
        Some(((offset >> 20) as u8, (offset >> 12) as u8, reg))
    }
}

impl BusDevice for Ecam {
    fn read(&mut self, _region: usize, offset: u64, data: &mut [u8]) {
        match Self::target(offset, data.len()) {
            Some((bus, devfn, reg)) => self.root.config_read(bus, devfn, reg, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, _region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        if let Some((bus, devfn, reg)) = Self::target(offset, data.len()) {
            self.root.config_write(bus, devfn, reg, data);
        }
        None
    }
}
