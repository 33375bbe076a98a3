//! Video memory and the legacy window at 0xA0000-0xBFFFF.
//!
//! VRAM is one host mapping: the linear framebuffer BAR maps it into the guest as a
//! KVM memslot, and the legacy window reaches it through the graphics controller.
//! The four planes are interleaved byte by byte (plane `p` at plane offset `o` is byte
//! `o * 4 + p`), as in QEMU's model: chain-4 (mode 13h) and the VBE modes then see
//! memory linearly, and odd/even text mode keeps characters in plane 0 and attributes
//! in plane 1 at the same plane offset.
//!
//! Every access goes through vm-memory's checked volatile accessors: an offset outside
//! VRAM reads 0xFF and drops writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, VolatileMemory};

use super::regs::VgaRegs;

/// Host memory behind the framebuffer.
#[derive(Clone)]
pub struct Vram {
    region: Arc<MmapRegion<()>>,
}

impl Vram {
    /// An anonymous, zero-filled mapping of `size` bytes (a power of two ≥ 256 KiB).
    pub fn new(size: usize) -> Result<Self, vm_memory::mmap::MmapRegionError> {
        Ok(Self {
            region: Arc::new(MmapRegion::new(size)?),
        })
    }

    pub fn len(&self) -> usize {
        self.region.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The host address of the mapping, for the LFB memslot. The mapping lives as long
    /// as any clone of this `Vram`.
    pub fn host_addr(&self) -> u64 {
        self.region.as_ptr() as u64
    }

    /// A clone of the mapping's owner, to keep it alive while a memslot points at it.
    pub fn keepalive(&self) -> Arc<MmapRegion<()>> {
        self.region.clone()
    }

    pub fn byte(&self, i: usize) -> u8 {
        self.region
            .as_volatile_slice()
            .load::<u8>(i, Ordering::Relaxed)
            .unwrap_or(0xff)
    }

    pub fn set_byte(&self, i: usize, v: u8) {
        let _ = self
            .region
            .as_volatile_slice()
            .store::<u8>(v, i, Ordering::Relaxed);
    }

    /// The four planes' bytes at plane offset `o` (plane 0 in the low byte).
    pub fn planes(&self, o: usize) -> u32 {
        let Some(i) = o.checked_mul(4) else { return 0 };
        u32::from_le_bytes([
            self.byte(i),
            self.byte(i + 1),
            self.byte(i + 2),
            self.byte(i + 3),
        ])
    }

    fn set_planes(&self, o: usize, v: u32) {
        let Some(i) = o.checked_mul(4) else { return };
        for (k, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set_byte(i + k, b);
        }
    }

    /// Copies `out.len()` bytes from `offset` (short copies past the end leave zeros).
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) {
        out.fill(0);
        let len = out.len().min(self.len().saturating_sub(offset));
        if len == 0 {
            return;
        }
        if let Ok(s) = self.region.as_volatile_slice().get_slice(offset, len) {
            s.copy_to(&mut out[..len]);
        }
    }

    /// Copies `data` to `offset`; what lies past the end is dropped.
    pub fn copy_in(&self, offset: usize, data: &[u8]) {
        let len = data.len().min(self.len().saturating_sub(offset));
        if len == 0 {
            return;
        }
        if let Ok(s) = self.region.as_volatile_slice().get_slice(offset, len) {
            s.copy_from(&data[..len]);
        }
    }

    /// Zeroes the first `len` bytes (a VBE mode set without NOCLEARMEM).
    pub fn clear(&self, len: usize) {
        let len = len.min(self.len());
        if let Ok(s) = self.region.as_volatile_slice().get_slice(0, len) {
            let zero = [0u8; 4096];
            let mut off = 0;
            while off < len {
                let n = (len - off).min(zero.len());
                if let Ok(sub) = s.subslice(off, n) {
                    sub.copy_from(&zero[..n]);
                }
                off += n;
            }
        }
    }
}

/// Repeats each of the low four bits of `v` as a whole plane byte.
fn expand4(v: u8) -> u32 {
    (0..4).fold(0, |acc, p| {
        acc | if v >> p & 1 != 0 { 0xff << (8 * p) } else { 0 }
    })
}

/// Where a window offset (0..0x20000 from 0xA0000) lands under the memory map select,
/// or None when the current map does not decode it. `bank` is the VBE bank's offset.
fn window_addr(regs: &VgaRegs, offset: u64, bank: usize) -> Option<usize> {
    let o = offset as usize;
    match (regs.gr[6] >> 2) & 3 {
        0 => (o < 0x20000).then_some(o),
        1 => (o < 0x10000).then_some(o + bank),
        2 => (0x10000..0x18000).contains(&o).then(|| o - 0x10000),
        _ => (0x18000..0x20000).contains(&o).then(|| o - 0x18000),
    }
}

/// The planar access state: the latches the last read loaded.
#[derive(Default, Clone, Copy)]
pub struct Window {
    pub latch: u32,
}

impl Window {
    /// A byte read at `offset` in the legacy window.
    pub fn read(&mut self, regs: &VgaRegs, vram: &Vram, offset: u64, bank: usize) -> u8 {
        let Some(a) = window_addr(regs, offset, bank) else {
            return 0xff;
        };
        if regs.seq[4] & 0x08 != 0 {
            // Chain-4: the low two address bits pick the plane.
            return vram.byte(a);
        }
        if regs.gr[5] & 0x10 != 0 {
            // Odd/even: the low address bit picks plane 0/1 (or 2/3).
            let plane = (regs.gr[4] & 2) as usize | (a & 1);
            return vram.byte(((a & !1) << 1) | plane);
        }
        self.latch = vram.planes(a);
        if regs.gr[5] & 0x08 == 0 {
            // Read mode 0: the plane the read map select names.
            (self.latch >> ((regs.gr[4] & 3) * 8)) as u8
        } else {
            // Read mode 1: colour compare; a 1 where a pixel matches in every plane
            // that "colour don't care" keeps.
            let diff = (self.latch ^ expand4(regs.gr[2])) & expand4(regs.gr[7]);
            let b = diff.to_le_bytes();
            !(b[0] | b[1] | b[2] | b[3])
        }
    }

    /// A byte write at `offset` in the legacy window.
    pub fn write(&mut self, regs: &VgaRegs, vram: &Vram, offset: u64, v: u8, bank: usize) {
        let Some(a) = window_addr(regs, offset, bank) else {
            return;
        };
        let plane_mask = regs.seq[2] & 0x0f;
        if regs.seq[4] & 0x08 != 0 {
            if plane_mask & (1 << (a & 3)) != 0 {
                vram.set_byte(a, v);
            }
            return;
        }
        if regs.seq[4] & 0x04 == 0 {
            let plane = (regs.gr[4] & 2) as usize | (a & 1);
            if plane_mask & (1 << plane) != 0 {
                vram.set_byte(((a & !1) << 1) | plane, v);
            }
            return;
        }
        let gr = &regs.gr;
        let rotate = |x: u8| x.rotate_right((gr[3] & 7) as u32);
        let mut bit_mask = gr[8];
        let val = match gr[5] & 3 {
            0 => {
                let x = expand_byte(rotate(v));
                let sr = expand4(gr[1]);
                (x & !sr) | (expand4(gr[0]) & sr)
            }
            1 => {
                vram.set_planes_masked(a, self.latch, plane_mask);
                return;
            }
            2 => expand4(v),
            _ => {
                bit_mask &= rotate(v);
                expand4(gr[0])
            }
        };
        let val = match (gr[3] >> 3) & 3 {
            0 => val,
            1 => val & self.latch,
            2 => val | self.latch,
            _ => val ^ self.latch,
        };
        let bm = expand_byte(bit_mask);
        let val = (val & bm) | (self.latch & !bm);
        vram.set_planes_masked(a, val, plane_mask);
    }
}

/// `x` in all four plane bytes.
fn expand_byte(x: u8) -> u32 {
    u32::from_le_bytes([x; 4])
}

impl Vram {
    fn set_planes_masked(&self, o: usize, v: u32, plane_mask: u8) {
        let m = expand4(plane_mask);
        let old = self.planes(o);
        self.set_planes(o, (old & !m) | (v & m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_regs() -> VgaRegs {
        let mut r = VgaRegs::new();
        r.seq[2] = 0x03;
        r.seq[4] = 0x02; // odd/even on (bit 2 clear)
        r.gr[5] = 0x10;
        r.gr[6] = 0x0e; // B8000, text
        r
    }

    #[test]
    fn text_mode_puts_chars_in_plane0_attrs_in_plane1() {
        let vram = Vram::new(1 << 20).unwrap();
        let regs = text_regs();
        let mut w = Window::default();
        w.write(&regs, &vram, 0x18000, b'A', 0);
        w.write(&regs, &vram, 0x18001, 0x1f, 0);
        w.write(&regs, &vram, 0x18002, b'B', 0);
        assert_eq!(vram.planes(0) & 0xffff, 0x1f41);
        assert_eq!(vram.planes(1) & 0xff, b'B' as u32);
        assert_eq!(w.read(&regs, &vram, 0x18001, 0), 0x1f);
        // A0000 is not decoded with map select 3.
        assert_eq!(w.read(&regs, &vram, 0, 0), 0xff);
    }

    #[test]
    fn planar_font_load_and_write_modes() {
        let vram = Vram::new(1 << 20).unwrap();
        let mut r = VgaRegs::new();
        r.seq[2] = 0x04; // plane 2 only
        r.seq[4] = 0x06; // sequential, no chain-4
        r.gr[4] = 2;
        r.gr[6] = 0x04; // A0000 64K
        r.gr[8] = 0xff;
        let mut w = Window::default();
        w.write(&r, &vram, 0x20, 0x81, 0);
        assert_eq!(vram.byte(0x20 * 4 + 2), 0x81);
        assert_eq!(w.read(&r, &vram, 0x20, 0), 0x81);
        // Write mode 2 with a bit mask: colour 5 into bits 7..4 of every plane.
        r.seq[2] = 0x0f;
        r.gr[5] = 2;
        r.gr[8] = 0xf0;
        let _ = w.read(&r, &vram, 0x40, 0); // load latches (zero)
        w.write(&r, &vram, 0x40, 5, 0);
        assert_eq!(vram.planes(0x40), 0x00f0_00f0);
        // Read mode 1: pixels of colour 5 compare equal.
        r.gr[5] = 0x08;
        r.gr[2] = 5;
        r.gr[7] = 0x0f;
        assert_eq!(w.read(&r, &vram, 0x40, 0), 0xf0);
        // Write mode 1 copies latches.
        r.gr[5] = 1;
        w.write(&r, &vram, 0x41, 0, 0);
        assert_eq!(vram.planes(0x41), 0x00f0_00f0);
    }

    #[test]
    fn chain4_is_linear_and_banked() {
        let vram = Vram::new(1 << 20).unwrap();
        let mut r = VgaRegs::new();
        r.seq[2] = 0x0f;
        r.seq[4] = 0x0e;
        r.gr[6] = 0x05;
        let mut w = Window::default();
        for i in 0..8u64 {
            w.write(&r, &vram, i, i as u8 + 1, 0x10000);
        }
        assert_eq!(vram.byte(0x10005), 6);
        assert_eq!(w.read(&r, &vram, 7, 0x10000), 8);
        assert_eq!(w.read(&r, &vram, 0x10000, 0), 0xff);
    }
}
