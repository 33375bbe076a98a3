//! Turns the VGA's state into pixels: text mode (characters and attributes in planes
//! 0/1, glyphs from the font the guest loaded into plane 2, the cursor, colours through
//! the attribute controller and the DAC), the legacy 256- and 16-colour graphics modes,
//! and VBE modes from the linear framebuffer (8 bpp through the DAC, 15/16/24/32 bpp
//! direct).
//!
//! The renderer only reads; every register value is clamped and every VRAM access is
//! checked, so any guest state renders to some picture.

use super::regs::VgaRegs;
use super::vbe::Dispi;
use super::vram::Vram;

/// Largest frame the renderer produces on either axis.
pub const MAX_DIM: u32 = 4096;

/// An RGB picture, 3 bytes per pixel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Frame {
    fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width.clamp(1, MAX_DIM), height.clamp(1, MAX_DIM));
        Self {
            width,
            height,
            rgb: vec![0; width as usize * height as usize * 3],
        }
    }

    /// The pixel at (x, y), or None outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let p = self.rgb.get(i..i + 3)?;
        Some([p[0], p[1], p[2]])
    }

    fn put(&mut self, x: u32, y: u32, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            if let Some(p) = self.rgb.get_mut(i..i + 3) {
                p.copy_from_slice(&c);
            }
        }
    }
}

/// The current picture.
pub fn render(regs: &VgaRegs, dispi: &Dispi, vram: &Vram) -> Frame {
    if dispi.enabled() {
        return match dispi.mode() {
            Some(_) => vbe(regs, dispi, vram),
            None => Frame::new(640, 480),
        };
    }
    if regs.gr[6] & 1 == 0 {
        text(regs, vram)
    } else {
        graphics(regs, vram)
    }
}

fn dac(regs: &VgaRegs, i: u8, dac8: bool) -> [u8; 3] {
    regs.rgb(i & regs.dac_pel_mask, dac8)
}

fn vbe(regs: &VgaRegs, dispi: &Dispi, vram: &Vram) -> Frame {
    let Some(m) = dispi.mode() else {
        return Frame::new(640, 480);
    };
    let mut f = Frame::new(m.width, m.height);
    let bpp_bytes = m.bpp.div_ceil(8) as usize;
    let mut line = vec![0u8; m.width as usize * bpp_bytes];
    for y in 0..f.height {
        vram.copy_out(m.start as usize + y as usize * m.stride as usize, &mut line);
        for x in 0..f.width {
            let p = &line[x as usize * bpp_bytes..(x as usize + 1) * bpp_bytes];
            let c = match m.bpp {
                8 => dac(regs, p[0], dispi.dac_8bit()),
                15 | 16 => {
                    let v = u16::from_le_bytes([p[0], p[1]]) as u32;
                    let (r, g, b) = if m.bpp == 15 {
                        ((v >> 10) & 0x1f, (v >> 5) & 0x1f, v & 0x1f)
                    } else {
                        ((v >> 11) & 0x1f, (v >> 5) & 0x3f, v & 0x1f)
                    };
                    let g8 = if m.bpp == 15 {
                        (g << 3 | g >> 2) as u8
                    } else {
                        (g << 2 | g >> 4) as u8
                    };
                    [(r << 3 | r >> 2) as u8, g8, (b << 3 | b >> 2) as u8]
                }
                _ => [p[2], p[1], p[0]],
            };
            f.put(x, y, c);
        }
    }
    f
}

/// Vertical display end + 1, in scan lines.
fn display_lines(regs: &VgaRegs) -> u32 {
    let c = &regs.crtc;
    let vde = c[0x12] as u32 | ((c[7] as u32 & 0x02) << 7) | ((c[7] as u32 & 0x40) << 3);
    vde + 1
}

fn start_address(regs: &VgaRegs) -> usize {
    (regs.crtc[0x0c] as usize) << 8 | regs.crtc[0x0d] as usize
}

fn text(regs: &VgaRegs, vram: &Vram) -> Frame {
    let cols = (regs.crtc[1] as u32 + 1).min(MAX_DIM / 9);
    let cheight = (regs.crtc[9] as u32 & 0x1f) + 1;
    let cwidth = if regs.seq[1] & 1 != 0 { 8 } else { 9 };
    let rows = (display_lines(regs) / cheight).clamp(1, MAX_DIM / cheight);
    let mut f = Frame::new(cols * cwidth, rows * cheight);
    let start = start_address(regs);
    // Characters per row (CR13 counts words).
    let pitch = (regs.crtc[0x13] as usize * 2).max(1);
    let sr3 = regs.seq[3];
    let font_b = ((sr3 >> 4) & 1 | (sr3 << 1) & 6) as usize * 0x2000;
    let font_a = ((sr3 >> 5) & 1 | (sr3 >> 1) & 6) as usize * 0x2000;
    let cursor = (regs.crtc[0x0e] as usize) << 8 | regs.crtc[0x0f] as usize;
    let cursor_on = regs.crtc[0x0a] & 0x20 == 0;
    let (cs, ce) = (
        (regs.crtc[0x0a] & 0x1f) as u32,
        ((regs.crtc[0x0b] & 0x1f) as u32).min(cheight - 1),
    );
    let blink = regs.ar[0x10] & 0x08 != 0;
    let line_gfx = regs.ar[0x10] & 0x04 != 0;
    for row in 0..rows {
        for col in 0..cols {
            let addr = start + row as usize * pitch + col as usize;
            let cell = vram.planes(addr);
            let (ch, attr) = (cell as u8, (cell >> 8) as u8);
            let fg = dac(regs, regs.attr_to_dac(attr & 0x0f), false);
            let bg_c = if blink { (attr >> 4) & 7 } else { attr >> 4 };
            let bg = dac(regs, regs.attr_to_dac(bg_c), false);
            let font = if attr & 8 != 0 { font_a } else { font_b };
            for line in 0..cheight {
                let glyph = (vram.planes(font + ch as usize * 32 + line as usize) >> 16) as u8;
                let is_cursor = cursor_on && addr == cursor && cs <= line && line <= ce;
                for x in 0..cwidth {
                    let on = if x < 8 {
                        glyph & (0x80 >> x) != 0
                    } else {
                        line_gfx && (0xc0..=0xdf).contains(&ch) && glyph & 1 != 0
                    };
                    let c = if on || is_cursor { fg } else { bg };
                    f.put(col * cwidth + x, row * cheight + line, c);
                }
            }
        }
    }
    f
}

fn graphics(regs: &VgaRegs, vram: &Vram) -> Frame {
    let mut lines = display_lines(regs);
    let scan = (regs.crtc[9] as u32 & 0x1f) + 1;
    let double = if regs.crtc[9] & 0x80 != 0 { 2 } else { 1 };
    lines = (lines / scan / double).max(1);
    let start = start_address(regs);
    let chars = regs.crtc[1] as u32 + 1;
    let pitch = regs.crtc[0x13] as usize * 8;
    if regs.gr[5] & 0x40 != 0 {
        // 256 colours: one byte per pixel, chain-4 linear in VRAM.
        let mut f = Frame::new(chars * 4, lines);
        let mut row = vec![0u8; f.width as usize];
        for y in 0..f.height {
            vram.copy_out(start * 4 + y as usize * pitch, &mut row);
            for x in 0..f.width {
                f.put(x, y, dac(regs, row[x as usize], false));
            }
        }
        return f;
    }
    // 16 colours: one bit per plane per pixel.
    let mut f = Frame::new(chars * 8, lines);
    let pitch = pitch / 4;
    for y in 0..f.height {
        for xb in 0..f.width / 8 {
            let p = vram
                .planes(start + y as usize * pitch + xb as usize)
                .to_le_bytes();
            for bit in 0..8 {
                let c = (0..4).fold(0u8, |acc, k| acc | ((p[k] >> (7 - bit)) & 1) << k);
                f.put(xb * 8 + bit, y, dac(regs, regs.attr_to_dac(c), false));
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::super::vbe;
    use super::*;

    #[test]
    fn text_cell_uses_plane2_font_and_palette() {
        let vram = Vram::new(1 << 20).unwrap();
        let regs = VgaRegs::mode3();
        // 'A' white on blue at cell 0; glyph row 0 = 0x81.
        vram.set_byte(0, b'A');
        vram.set_byte(1, 0x1f);
        vram.set_byte((b'A' as usize * 32) * 4 + 2, 0x81);
        let f = render(&regs, &Dispi::new(1 << 20), &vram);
        assert_eq!((f.width, f.height), (720, 400));
        assert_eq!(f.pixel(0, 0), Some([0xff, 0xff, 0xff]));
        assert_eq!(f.pixel(1, 0), Some([0, 0, 0xaa]));
        assert_eq!(f.pixel(7, 0), Some([0xff, 0xff, 0xff]));
        assert_eq!(f.pixel(0, 1), Some([0, 0, 0xaa]));
    }

    #[test]
    fn vbe_32bpp_and_8bpp() {
        let vram = Vram::new(1 << 20).unwrap();
        let mut regs = VgaRegs::mode3();
        let mut d = Dispi::new(1 << 20);
        for (i, v) in [
            (vbe::INDEX_XRES, 320),
            (vbe::INDEX_YRES, 200),
            (vbe::INDEX_BPP, 32),
        ] {
            d.index = i;
            d.write(v);
        }
        d.index = vbe::INDEX_ENABLE;
        d.write(vbe::ENABLED | vbe::LFB_ENABLED);
        vram.set_byte(4 * 321, 0x30); // B
        vram.set_byte(4 * 321 + 1, 0x20); // G
        vram.set_byte(4 * 321 + 2, 0x10); // R
        let f = render(&regs, &d, &vram);
        assert_eq!((f.width, f.height), (320, 200));
        assert_eq!(f.pixel(1, 1), Some([0x10, 0x20, 0x30]));
        d.write(0);
        d.index = vbe::INDEX_BPP;
        d.write(8);
        d.index = vbe::INDEX_ENABLE;
        d.write(vbe::ENABLED | vbe::NOCLEARMEM);
        regs.palette[3 * 7..3 * 7 + 3].copy_from_slice(&[0x3f, 0, 0x3f]);
        vram.set_byte(5, 7);
        assert_eq!(render(&regs, &d, &vram).pixel(5, 0), Some([0xff, 0, 0xff]));
    }

    #[test]
    fn mode13_and_garbage_registers_render() {
        let vram = Vram::new(1 << 20).unwrap();
        let mut regs = VgaRegs::mode3();
        regs.gr[6] = 0x05;
        regs.gr[5] = 0x40;
        regs.crtc[1] = 0x4f;
        regs.crtc[9] = 0x41;
        regs.crtc[0x13] = 0x28;
        regs.palette[3..6].copy_from_slice(&[0x3f, 0x3f, 0]);
        vram.set_byte(320 + 2, 1);
        let f = render(&regs, &Dispi::new(1 << 20), &vram);
        assert_eq!((f.width, f.height), (320, 200));
        assert_eq!(f.pixel(2, 1), Some([0xff, 0xff, 0]));
        regs.crtc = [0xff; super::super::regs::CRTC_LEN];
        regs.seq[3] = 0xff;
        let f = render(&regs, &Dispi::new(1 << 20), &vram);
        assert!(f.width <= MAX_DIM && f.height <= MAX_DIM);
    }
}
