//! The standard VGA of QEMU and Bochs ("std VGA", PCI 1234:1111): the legacy VGA
//! registers at 0x3B0-0x3DF ([`regs`]), the 0xA0000 window onto the planes ([`vram`]),
//! the Bochs VBE DISPI interface at 0x1CE/0x1CF ([`vbe`]), a linear framebuffer (PCI
//! BAR0, mapped as a KVM memslot so framebuffer writes never exit) and QEMU's 4 KiB
//! MMIO BAR2 (VGA ports at 0x400, DISPI registers at 0x500, the extended registers at
//! 0x600). [`render`] turns the state into a picture, [`screenshot`] into a PNG.
//!
//! The device knows nothing of KVM: moving the framebuffer is a call on the
//! [`LfbMapper`] it was given.

pub mod pci;
pub mod regs;
pub mod render;
pub mod screenshot;
pub mod vbe;
pub mod vram;

use thiserror::Error;

use super::{BusDevice, VmEvent};
use regs::VgaRegs;
use render::Frame;
use vbe::{Dispi, DispiEffect};
use vram::{Vram, Window};

/// The device's register regions (the spec places them: the legacy registers at
/// 0x3b0-0x3df, the DISPI index/data pair at 0x1ce, the window at 0xa0000).
pub const REGION_REGS: usize = 0;
pub const REGION_DISPI: usize = 1;
pub const REGION_WINDOW: usize = 2;
/// Region sizes.
pub const VGA_IO_LEN: u64 = 0x30;
pub const DISPI_IO_LEN: u64 = 2;
pub const WINDOW_LEN: u64 = 0x20000;
/// Size of the MMIO register BAR (BAR2).
pub const MMIO_BAR_LEN: u64 = 0x1000;
/// PCI IDs of the std VGA.
pub const PCI_VENDOR: u16 = 0x1234;
pub const PCI_DEVICE: u16 = 0x1111;

#[derive(Debug, Error)]
pub enum VgaError {
    #[error("cannot map {size:#x} bytes of video memory")]
    Vram {
        size: usize,
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("video memory must be a power of two from 1 MiB to 256 MiB, not {0:#x} bytes")]
    VramSize(u64),
}

/// Where the linear framebuffer appears in guest-physical space. The device calls it
/// whenever the BAR's address or the memory-decode bit changes.
pub trait LfbMapper: Send {
    /// Map VRAM at `gpa` (None: unmap).
    fn map(&mut self, gpa: Option<u64>);
}

pub struct Vga {
    regs: VgaRegs,
    dispi: Dispi,
    vram: Vram,
    window: Window,
    lfb: Option<Box<dyn LfbMapper>>,
    lfb_at: Option<u64>,
    qext_endian: u32,
}

/// QEMU's "little endian framebuffer" value of the extended register at 0x604.
const QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;

impl Vga {
    /// A VGA with `vram_size` bytes of video memory, in the state a BIOS leaves for
    /// text mode 3 (see [`VgaRegs::mode3`]).
    pub fn new(vram_size: u64) -> Result<Self, VgaError> {
        if !vram_size.is_power_of_two() || !(1 << 20..=256 << 20).contains(&vram_size) {
            return Err(VgaError::VramSize(vram_size));
        }
        let size = vram_size as usize;
        let vram = Vram::new(size).map_err(|source| VgaError::Vram { size, source })?;
        Ok(Self {
            regs: VgaRegs::mode3(),
            dispi: Dispi::new(size),
            vram,
            window: Window::default(),
            lfb: None,
            lfb_at: None,
            qext_endian: QEXT_LITTLE_ENDIAN,
        })
    }

    /// Video memory (for the LFB memslot).
    pub fn vram(&self) -> &Vram {
        &self.vram
    }

    /// Hands the device what maps its framebuffer into the guest.
    pub fn set_lfb_mapper(&mut self, m: Box<dyn LfbMapper>) {
        self.lfb = Some(m);
        let at = self.lfb_at.take();
        self.place_lfb(at);
    }

    /// Moves the framebuffer to `gpa` (None: not decoded). Called by the PCI side when
    /// BAR0 or the command register's memory-space bit changes.
    pub fn place_lfb(&mut self, gpa: Option<u64>) {
        if gpa == self.lfb_at {
            return;
        }
        self.lfb_at = gpa;
        if let Some(m) = &mut self.lfb {
            m.map(gpa);
        }
    }

    /// Where the framebuffer is mapped now.
    pub fn lfb_address(&self) -> Option<u64> {
        self.lfb_at
    }

    /// The picture on the screen now.
    pub fn render(&self) -> Frame {
        render::render(&self.regs, &self.dispi, &self.vram)
    }

    fn dispi_write(&mut self, v: u16) {
        match self.dispi.write(v) {
            DispiEffect::Enabled { clear } => {
                if clear > 0 {
                    self.vram.clear(clear);
                }
                // Graphics mode, the window at A0000 for 64 KiB, chain-4: banked
                // access through the window sees VRAM linearly.
                self.regs.gr[6] = (self.regs.gr[6] & !0x0c) | 0x05;
                self.regs.seq[4] |= 0x08;
                self.regs.seq[2] |= 0x0f;
            }
            DispiEffect::Disabled | DispiEffect::None => {}
        }
    }

    fn dispi_read(&mut self) -> u16 {
        self.dispi.read()
    }

    /// A read from the MMIO BAR (BAR2) at `offset`.
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match offset {
            0x400..=0x41f => {
                for (k, b) in data.iter_mut().enumerate() {
                    *b = self.regs.read(offset - 0x400 + 0x10 + k as u64);
                }
            }
            0x500..=0x515 => {
                self.dispi.index = ((offset - 0x500) / 2) as u16;
                let v = self.dispi_read().to_le_bytes();
                let sh = (offset & 1) as usize;
                for (k, b) in data.iter_mut().enumerate() {
                    *b = v.get(sh + k).copied().unwrap_or(0);
                }
            }
            0x600..=0x607 => {
                let v = (8u64 | (self.qext_endian as u64) << 32).to_le_bytes();
                let o = (offset - 0x600) as usize;
                for (k, b) in data.iter_mut().enumerate() {
                    *b = v.get(o + k).copied().unwrap_or(0);
                }
            }
            _ => {}
        }
    }

    /// A write to the MMIO BAR (BAR2) at `offset`.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0x400..=0x41f => {
                for (k, &b) in data.iter().enumerate() {
                    self.regs.write(offset - 0x400 + 0x10 + k as u64, b);
                }
            }
            0x500..=0x515 if data.len() >= 2 && offset & 1 == 0 => {
                self.dispi.index = ((offset - 0x500) / 2) as u16;
                self.dispi_write(u16::from_le_bytes([data[0], data[1]]));
            }
            0x604 if data.len() == 4 => {
                // Only a little-endian framebuffer is offered; other values are kept
                // out so a reader never sees a setting the device does not honour.
            }
            _ => {}
        }
    }
}

impl BusDevice for Vga {
    /// Regions: 0 the legacy registers (0x3b0-0x3df), 1 the Bochs DISPI index/data
    /// pair (0x1ce), 2 the legacy memory window (0xa0000).
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
        match region {
            REGION_REGS => {
                for (k, b) in data.iter_mut().enumerate() {
                    *b = self.regs.read(offset + k as u64);
                }
            }
            REGION_DISPI => {
                let v = if offset == 0 {
                    self.dispi.index
                } else {
                    self.dispi_read()
                };
                let v = v.to_le_bytes();
                for (k, b) in data.iter_mut().enumerate() {
                    *b = v.get(k).copied().unwrap_or(0);
                }
            }
            REGION_WINDOW => {
                let bank = self.dispi.bank_offset();
                for (k, b) in data.iter_mut().enumerate() {
                    *b = self
                        .window
                        .read(&self.regs, &self.vram, offset + k as u64, bank);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        match region {
            REGION_REGS => {
                for (k, &b) in data.iter().enumerate() {
                    self.regs.write(offset + k as u64, b);
                }
            }
            REGION_DISPI => {
                let mut v = [0u8; 2];
                for (d, s) in v.iter_mut().zip(data) {
                    *d = *s;
                }
                let v = u16::from_le_bytes(v);
                if offset == 0 {
                    self.dispi.index = v;
                } else {
                    self.dispi_write(v);
                }
            }
            REGION_WINDOW => {
                let bank = self.dispi.bank_offset();
                for (k, &b) in data.iter().enumerate() {
                    self.window
                        .write(&self.regs, &self.vram, offset + k as u64, b, bank);
                }
            }
            _ => {}
        }
        None
    }
}

mod state;

#[cfg(test)]
mod tests;
