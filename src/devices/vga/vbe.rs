//! The Bochs VBE "DISPI" interface: an index port (0x1CE) and a data port (0x1CF), 16
//! bits wide, as Bochs, QEMU's std VGA, SeaBIOS's vgabios and Linux's bochs driver use
//! them. Also reachable through the MMIO BAR at 0x500 (register `i` at `0x500 + 2i`).

pub const INDEX_ID: u16 = 0;
pub const INDEX_XRES: u16 = 1;
pub const INDEX_YRES: u16 = 2;
pub const INDEX_BPP: u16 = 3;
pub const INDEX_ENABLE: u16 = 4;
pub const INDEX_BANK: u16 = 5;
pub const INDEX_VIRT_WIDTH: u16 = 6;
pub const INDEX_VIRT_HEIGHT: u16 = 7;
pub const INDEX_X_OFFSET: u16 = 8;
pub const INDEX_Y_OFFSET: u16 = 9;
pub const INDEX_VIDEO_MEMORY_64K: u16 = 10;
const NUM_REGS: usize = 11;

pub const ID0: u16 = 0xb0c0;
pub const ID5: u16 = 0xb0c5;

pub const ENABLED: u16 = 0x01;
pub const GETCAPS: u16 = 0x02;
pub const DAC_8BIT: u16 = 0x20;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;

pub const MAX_XRES: u16 = 2560;
pub const MAX_YRES: u16 = 1600;
pub const MAX_BPP: u16 = 32;

/// A VBE mode as the renderer sees it: sanitized, always inside VRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbeMode {
    pub width: u32,
    pub height: u32,
    pub bpp: u32,
    /// Bytes per scan line.
    pub stride: u32,
    /// Byte offset of the visible top-left pixel.
    pub start: u32,
}

/// What a register write asks of the rest of the VGA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispiEffect {
    None,
    /// A mode was enabled: clear this many bytes unless zero (NOCLEARMEM).
    Enabled {
        clear: usize,
    },
    Disabled,
}

pub struct Dispi {
    pub index: u16,
    pub(super) regs: [u16; NUM_REGS],
    vram_size: usize,
}

fn bytes_pp(bpp: u16) -> u32 {
    (bpp as u32).div_ceil(8)
}

impl Dispi {
    pub fn new(vram_size: usize) -> Self {
        let mut regs = [0u16; NUM_REGS];
        regs[INDEX_ID as usize] = ID5;
        regs[INDEX_XRES as usize] = 640;
        regs[INDEX_YRES as usize] = 480;
        regs[INDEX_BPP as usize] = 8;
        Self {
            index: 0,
            regs,
            vram_size,
        }
    }

    fn reg(&self, i: u16) -> u16 {
        self.regs.get(i as usize).copied().unwrap_or(0)
    }

    pub fn enabled(&self) -> bool {
        self.reg(INDEX_ENABLE) & ENABLED != 0
    }

    pub fn dac_8bit(&self) -> bool {
        self.reg(INDEX_ENABLE) & DAC_8BIT != 0
    }

    /// The byte offset of the 64 KiB bank the legacy window shows, kept inside VRAM.
    pub fn bank_offset(&self) -> usize {
        let banks = (self.vram_size >> 16).max(1);
        (self.reg(INDEX_BANK) as usize % banks) << 16
    }

    /// A read of the data register.
    pub fn read(&self) -> u16 {
        let caps = self.reg(INDEX_ENABLE) & GETCAPS != 0;
        match self.index {
            INDEX_XRES if caps => MAX_XRES,
            INDEX_YRES if caps => MAX_YRES,
            INDEX_BPP if caps => MAX_BPP,
            INDEX_VIDEO_MEMORY_64K => (self.vram_size >> 16).min(0xffff) as u16,
            i => self.reg(i),
        }
    }

    /// A write of the data register.
    pub fn write(&mut self, v: u16) -> DispiEffect {
        let i = self.index as usize;
        match self.index {
            INDEX_ID if (ID0..=ID5).contains(&v) => {
                self.regs[i] = v;
            }
            INDEX_XRES | INDEX_YRES | INDEX_BPP if !self.enabled() => self.regs[i] = v,
            INDEX_XRES | INDEX_YRES | INDEX_BPP => {}
            INDEX_BANK => self.regs[i] = v,
            INDEX_VIRT_WIDTH | INDEX_X_OFFSET | INDEX_Y_OFFSET => self.regs[i] = v,
            INDEX_ENABLE => {
                let was = self.enabled();
                self.regs[i] = v;
                if v & ENABLED != 0 && !was {
                    self.regs[INDEX_VIRT_WIDTH as usize] = self.reg(INDEX_XRES);
                    self.regs[INDEX_X_OFFSET as usize] = 0;
                    self.regs[INDEX_Y_OFFSET as usize] = 0;
                    self.regs[INDEX_BANK as usize] = 0;
                    let m = self.mode();
                    if let Some(m) = m {
                        self.regs[INDEX_VIRT_HEIGHT as usize] =
                            (self.vram_size as u64 / m.stride as u64).min(0xffff) as u16;
                    }
                    let clear = if v & NOCLEARMEM != 0 {
                        0
                    } else {
                        m.map_or(0, |m| (m.stride * m.height) as usize)
                    };
                    return DispiEffect::Enabled { clear };
                }
                if v & ENABLED == 0 && was {
                    return DispiEffect::Disabled;
                }
            }
            _ => {}
        }
        DispiEffect::None
    }

    /// The current mode when enabled and sane: a supported depth, a non-zero size
    /// within the limits, and the visible frame inside VRAM.
    pub fn mode(&self) -> Option<VbeMode> {
        let bpp = self.reg(INDEX_BPP);
        if ![8, 15, 16, 24, 32].contains(&bpp) {
            return None;
        }
        let (w, h) = (self.reg(INDEX_XRES), self.reg(INDEX_YRES));
        if w == 0 || h == 0 || w > MAX_XRES || h > MAX_YRES {
            return None;
        }
        let virt_w = self.reg(INDEX_VIRT_WIDTH).max(w) as u32;
        let stride = virt_w * bytes_pp(bpp);
        let start = (self.reg(INDEX_Y_OFFSET) as u64 * stride as u64)
            + self.reg(INDEX_X_OFFSET) as u64 * bytes_pp(bpp) as u64;
        let end = start + stride as u64 * (h as u64 - 1) + w as u64 * bytes_pp(bpp) as u64;
        if end > self.vram_size as u64 {
            return None;
        }
        Some(VbeMode {
            width: w as u32,
            height: h as u32,
            bpp: bpp as u32,
            stride,
            start: start as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(d: &mut Dispi, i: u16, v: u16) -> DispiEffect {
        d.index = i;
        d.write(v)
    }

    #[test]
    fn id_caps_and_mode_set() {
        let mut d = Dispi::new(16 << 20);
        d.index = INDEX_ID;
        assert_eq!(d.read(), ID5);
        set(&mut d, INDEX_ID, 0x1234);
        assert_eq!(d.read(), ID5);
        set(&mut d, INDEX_ID, ID0);
        assert_eq!(d.read(), ID0);
        set(&mut d, INDEX_ENABLE, GETCAPS);
        d.index = INDEX_XRES;
        assert_eq!(d.read(), MAX_XRES);
        set(&mut d, INDEX_ENABLE, 0);
        set(&mut d, INDEX_XRES, 640);
        set(&mut d, INDEX_YRES, 480);
        set(&mut d, INDEX_BPP, 32);
        let e = set(&mut d, INDEX_ENABLE, ENABLED | LFB_ENABLED);
        assert_eq!(
            e,
            DispiEffect::Enabled {
                clear: 640 * 480 * 4
            }
        );
        let m = d.mode().unwrap();
        assert_eq!((m.width, m.height, m.stride, m.start), (640, 480, 2560, 0));
        // Resolution is locked while enabled.
        set(&mut d, INDEX_XRES, 800);
        assert_eq!(d.mode().unwrap().width, 640);
        d.index = INDEX_VIDEO_MEMORY_64K;
        assert_eq!(d.read(), 256);
        assert_eq!(set(&mut d, INDEX_ENABLE, 0), DispiEffect::Disabled);
    }

    #[test]
    fn modes_outside_vram_are_not_shown() {
        let mut d = Dispi::new(1 << 20);
        set(&mut d, INDEX_XRES, 1024);
        set(&mut d, INDEX_YRES, 768);
        set(&mut d, INDEX_BPP, 32);
        set(&mut d, INDEX_ENABLE, ENABLED | NOCLEARMEM);
        assert_eq!(d.mode(), None);
    }
}
