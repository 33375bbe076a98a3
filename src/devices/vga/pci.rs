//! The std VGA as a PCI function (1234:1111, class 0x0300): BAR0 the prefetchable
//! linear framebuffer (VRAM size), BAR2 the 4 KiB MMIO register BAR, and an optional
//! expansion ROM (SeaBIOS's vgabios-stdvga.bin under firmware boot). The same object
//! is the legacy device on the I/O and MMIO buses ([`BusDevice`]), so both views share
//! one register file and one VRAM.

use crate::devices::pci::{BarDef, PciConfig, PciDevice, PciIds};
use crate::devices::{BusDevice, VmEvent};

use super::{Vga, MMIO_BAR_LEN, PCI_DEVICE, PCI_VENDOR};

pub const LFB_BAR: u8 = 0;
pub const MMIO_BAR: u8 = 2;

pub struct StdVga {
    cfg: PciConfig,
    vga: Vga,
}

impl StdVga {
    /// Wraps `vga`; `rom` is the option ROM image, if the machine boots a firmware.
    pub fn new(vga: Vga, rom: Option<Vec<u8>>) -> Self {
        let mut cfg = PciConfig::new(PciIds {
            vendor: PCI_VENDOR,
            device: PCI_DEVICE,
            class: 0x03_0000,
            revision: 2,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        let size = vga.vram().len() as u64;
        // Both definitions are valid by construction (sizes are powers of two,
        // indexes distinct), so an error here would be a bug in PciConfig.
        let _ = cfg.add_bar(LFB_BAR, BarDef::mem32(size).prefetchable());
        let _ = cfg.add_bar(MMIO_BAR, BarDef::mem32(MMIO_BAR_LEN));
        if let Some(rom) = rom {
            cfg.set_rom(rom);
        }
        Self { cfg, vga }
    }

    pub fn vga(&self) -> &Vga {
        &self.vga
    }

    pub fn vga_mut(&mut self) -> &mut Vga {
        &mut self.vga
    }

    /// The config space for a snapshot.
    pub(super) fn config_state(&self) -> crate::devices::pci::PciConfigState {
        self.cfg.save_state()
    }

    pub(super) fn check_config_state(
        &self,
        s: &crate::devices::pci::PciConfigState,
    ) -> Result<(), crate::snapshot::StateError> {
        self.cfg.check_state(s)
    }

    /// Restores the config space and moves the framebuffer to where BAR0 says.
    pub(super) fn restore_config_state(
        &mut self,
        s: &crate::devices::pci::PciConfigState,
    ) -> Result<(), crate::snapshot::StateError> {
        self.cfg.restore_state(s)?;
        self.sync_lfb();
        Ok(())
    }

    /// Tells the VGA where BAR0 decodes now.
    fn sync_lfb(&mut self) {
        let at = self
            .cfg
            .bar_regions()
            .into_iter()
            .find(|r| r.bar == LFB_BAR)
            .and_then(|r| r.enabled.then_some(r.base));
        self.vga.place_lfb(at);
    }
}

impl PciDevice for StdVga {
    fn config(&self) -> &PciConfig {
        &self.cfg
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.cfg
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.cfg.write(offset, data);
        if offset < 0x40 {
            self.sync_lfb();
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            // Reached only while the memslot is not mapped (e.g. it failed).
            LFB_BAR => {
                for (k, b) in data.iter_mut().enumerate() {
                    *b = self.vga.vram().byte(offset as usize + k);
                }
            }
            MMIO_BAR => self.vga.mmio_read(offset, data),
            crate::devices::pci::ROM_BAR => self.cfg.rom_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            LFB_BAR => {
                for (k, &b) in data.iter().enumerate() {
                    self.vga.vram().set_byte(offset as usize + k, b);
                }
            }
            MMIO_BAR => self.vga.mmio_write(offset, data),
            _ => {}
        }
    }
}

impl BusDevice for StdVga {
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
        self.vga.read(region, offset, data)
    }

    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        self.vga.write(region, offset, data)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::devices::vga::LfbMapper;

    struct Rec(Arc<Mutex<Vec<Option<u64>>>>);
    impl LfbMapper for Rec {
        fn map(&mut self, gpa: Option<u64>) {
            self.0.lock().unwrap().push(gpa);
        }
    }

    #[test]
    fn bar0_moves_the_framebuffer() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut vga = Vga::new(16 << 20).unwrap();
        vga.set_lfb_mapper(Box::new(Rec(log.clone())));
        let mut d = StdVga::new(vga, None);
        let mut id = [0u8; 4];
        d.config_read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x1111_1234);
        // Sizing: all ones reads back the size mask, prefetchable memory.
        d.config_write(0x10, &[0xff; 4]);
        let mut b = [0u8; 4];
        d.config_read(0x10, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0xff00_0008);
        d.config_write(0x10, &0xfd00_0000u32.to_le_bytes());
        assert!(log.lock().unwrap().is_empty(), "decode still off");
        d.config_write(0x04, &[0x02, 0]);
        d.config_write(0x10, &0xe000_0000u32.to_le_bytes());
        d.config_write(0x04, &[0x00, 0]);
        assert_eq!(
            *log.lock().unwrap(),
            vec![Some(0xfd00_0000), Some(0xe000_0000), None]
        );
        // BAR2: the DISPI ID register.
        let mut w = [0u8; 2];
        d.bar_read(MMIO_BAR, 0x500, &mut w);
        assert_eq!(u16::from_le_bytes(w), super::super::vbe::ID5);
    }
}
