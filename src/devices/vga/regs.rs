//! The legacy VGA register file at I/O 0x3B0-0x3DF: miscellaneous output, sequencer,
//! CRT controller (at 0x3B4/0x3B5 or 0x3D4/0x3D5 as misc bit 0 selects), graphics
//! controller, attribute controller (one port, an index/data flip-flop that a read of
//! input status 1 resets), the DAC (palette of 6-bit RGB triplets) and the status ports.
//!
//! Offsets here are relative to 0x3B0. Every index is masked to its register file, so
//! nothing a guest writes can index out of bounds.

/// Sequencer registers (SR0-SR4 are defined; 8 slots as the index field allows).
pub const SEQ_LEN: usize = 8;
/// Graphics controller registers (GR0-GR8; 16 slots).
pub const GR_LEN: usize = 16;
/// Attribute controller registers (AR0-AR14h; 32 slots).
pub const AR_LEN: usize = 32;
/// CRT controller registers (CR0-CR18h, plus room for the index field).
pub const CRTC_LEN: usize = 64;

/// The register file. Fields are public for the renderer and the memory window.
#[derive(Clone)]
pub struct VgaRegs {
    pub misc: u8,
    pub feature: u8,
    pub seq_index: u8,
    pub seq: [u8; SEQ_LEN],
    pub gr_index: u8,
    pub gr: [u8; GR_LEN],
    pub crtc_index: u8,
    pub crtc: [u8; CRTC_LEN],
    /// AR index register (bits 0-4 index, bit 5 palette address source: 1 = display on).
    pub ar_index: u8,
    pub ar: [u8; AR_LEN],
    /// false: the next write to 0x3C0 is an index; true: data.
    pub ar_flip_flop: bool,
    pub dac_read_index: u8,
    pub dac_write_index: u8,
    /// Which of R, G, B the next DAC data access touches.
    pub dac_sub_index: u8,
    /// Last state: 0 = the DAC was last written, 3 = read (the DAC state register).
    pub dac_state: u8,
    /// The triplet being assembled by writes.
    pub dac_cache: [u8; 3],
    pub dac_pel_mask: u8,
    /// 256 entries × (R, G, B), 6 bits each (8 with the VBE 8-bit DAC flag).
    pub palette: [u8; 768],
    /// Flips on every read of input status 1 so a guest polling for retrace progresses.
    pub(super) retrace_toggle: u8,
}

impl Default for VgaRegs {
    fn default() -> Self {
        Self::new()
    }
}

impl VgaRegs {
    /// Power-on state: colour emulation (CRTC at 0x3D4), everything else zero, the
    /// PEL mask open.
    pub fn new() -> Self {
        Self {
            misc: 0x01,
            feature: 0,
            seq_index: 0,
            seq: [0; SEQ_LEN],
            gr_index: 0,
            gr: [0; GR_LEN],
            crtc_index: 0,
            crtc: [0; CRTC_LEN],
            ar_index: 0,
            ar: [0; AR_LEN],
            ar_flip_flop: false,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_sub_index: 0,
            dac_state: 0,
            dac_cache: [0; 3],
            dac_pel_mask: 0xff,
            palette: [0; 768],
            retrace_toggle: 0,
        }
    }

    /// The state a PC BIOS leaves after setting mode 3 (80x25 colour text, 9x16
    /// cells, 720x400): vmrun starts the VGA here so a guest booted without firmware
    /// finds text mode, as on a PC. The font (plane 2) is the guest's to load.
    pub fn mode3() -> Self {
        let mut r = Self::new();
        r.misc = 0x67;
        r.seq[..5].copy_from_slice(&[0x03, 0x00, 0x03, 0x00, 0x02]);
        let crtc: [u8; 25] = [
            0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
        ];
        r.crtc[..25].copy_from_slice(&crtc);
        r.gr[..9].copy_from_slice(&[0, 0, 0, 0, 0, 0x10, 0x0e, 0x0f, 0xff]);
        // Attribute palette: the 16 text colours map to the EGA's 64-colour indexes
        // (brown is 0x14, the bright ones 0x38-0x3f).
        for i in 0..16u8 {
            r.ar[i as usize] = match i {
                6 => 0x14,
                8..=15 => 0x30 | i,
                _ => i,
            };
        }
        r.ar[0x10..0x15].copy_from_slice(&[0x0c, 0x00, 0x0f, 0x08, 0x00]);
        r.ar_index = 0x20;
        // DAC 0-63: the EGA palette (bits 0-2 give 2/3 of B, G, R; bits 3-5 the last 1/3).
        for i in 0..64usize {
            for (k, shift) in [(0, 2), (1, 1), (2, 0)] {
                let hi = (i >> shift) & 1;
                let lo = (i >> (shift + 3)) & 1;
                r.palette[i * 3 + k] = (hi * 0x2a + lo * 0x15) as u8;
            }
        }
        r
    }

    /// Whether the CRTC and input status 1 answer at 0x3Dx (colour) rather than 0x3Bx.
    fn colour(&self) -> bool {
        self.misc & 1 != 0
    }

    /// A port the current emulation mode does not decode (0x3B4 in colour mode, ...).
    fn ignored(&self, port: u16) -> bool {
        match port {
            0x3b4 | 0x3b5 | 0x3ba => self.colour(),
            0x3d4 | 0x3d5 | 0x3da => !self.colour(),
            _ => false,
        }
    }

    /// A byte read from `0x3B0 + offset`.
    pub fn read(&mut self, offset: u64) -> u8 {
        let port = 0x3b0u16.wrapping_add(offset as u16);
        if self.ignored(port) {
            return 0xff;
        }
        match port {
            0x3c0 => {
                if self.ar_flip_flop {
                    0
                } else {
                    self.ar_index
                }
            }
            0x3c1 => self.ar[(self.ar_index & 0x1f) as usize],
            0x3c2 => 0, // input status 0: no switch sense, no pending CRT interrupt
            0x3c4 => self.seq_index,
            0x3c5 => self.seq[(self.seq_index as usize) % SEQ_LEN],
            0x3c6 => self.dac_pel_mask,
            0x3c7 => self.dac_state,
            0x3c8 => self.dac_write_index,
            0x3c9 => {
                let i = self.dac_read_index as usize * 3 + self.dac_sub_index as usize;
                let v = self.palette.get(i).copied().unwrap_or(0);
                self.dac_state = 3;
                self.dac_sub_index += 1;
                if self.dac_sub_index == 3 {
                    self.dac_sub_index = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3ca => self.feature,
            0x3cc => self.misc,
            0x3ce => self.gr_index,
            0x3cf => self.gr[(self.gr_index as usize) % GR_LEN],
            0x3b4 | 0x3d4 => self.crtc_index,
            0x3b5 | 0x3d5 => self.crtc[(self.crtc_index as usize) % CRTC_LEN],
            0x3ba | 0x3da => {
                // Input status 1: bit 0 display disabled (blanking), bit 3 vertical
                // retrace. Both toggle so polling loops see both edges.
                self.ar_flip_flop = false;
                self.retrace_toggle ^= 0x09;
                self.retrace_toggle
            }
            _ => 0xff,
        }
    }

    /// A byte written to `0x3B0 + offset`.
    pub fn write(&mut self, offset: u64, v: u8) {
        let port = 0x3b0u16.wrapping_add(offset as u16);
        if self.ignored(port) {
            return;
        }
        match port {
            0x3c0 => {
                if self.ar_flip_flop {
                    let i = (self.ar_index & 0x1f) as usize;
                    // AR0-AR0F are 6-bit palette entries; the rest take the byte.
                    self.ar[i] = if i < 0x10 { v & 0x3f } else { v };
                } else {
                    self.ar_index = v & 0x3f;
                }
                self.ar_flip_flop = !self.ar_flip_flop;
            }
            0x3c2 => self.misc = v,
            0x3c4 => self.seq_index = v & 0x07,
            0x3c5 => self.seq[(self.seq_index as usize) % SEQ_LEN] = v,
            0x3c6 => self.dac_pel_mask = v,
            0x3c7 => {
                self.dac_read_index = v;
                self.dac_sub_index = 0;
                self.dac_state = 3;
            }
            0x3c8 => {
                self.dac_write_index = v;
                self.dac_sub_index = 0;
                self.dac_state = 0;
            }
            0x3c9 => {
                let s = (self.dac_sub_index as usize).min(2);
                self.dac_cache[s] = v;
                self.dac_sub_index += 1;
                if self.dac_sub_index >= 3 {
                    let base = self.dac_write_index as usize * 3;
                    if let Some(e) = self.palette.get_mut(base..base + 3) {
                        e.copy_from_slice(&self.dac_cache);
                    }
                    self.dac_sub_index = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                }
                self.dac_state = 0;
            }
            0x3ba | 0x3da => self.feature = v,
            0x3ce => self.gr_index = v & 0x0f,
            0x3cf => self.gr[(self.gr_index as usize) % GR_LEN] = v,
            0x3b4 | 0x3d4 => self.crtc_index = v & 0x3f,
            0x3b5 | 0x3d5 => {
                let i = (self.crtc_index as usize) % CRTC_LEN;
                // CR11 bit 7 write-protects CR0-CR7 (except CR7 bit 4, line compare 8).
                if i <= 7 && self.crtc[0x11] & 0x80 != 0 {
                    if i == 7 {
                        self.crtc[7] = (self.crtc[7] & !0x10) | (v & 0x10);
                    }
                    return;
                }
                self.crtc[i] = v;
            }
            _ => {}
        }
    }

    /// The DAC entry `i` as 8-bit RGB; `dac8` says the entries hold 8 bits (VBE).
    pub fn rgb(&self, i: u8, dac8: bool) -> [u8; 3] {
        let b = i as usize * 3;
        let mut c = [0u8; 3];
        for (k, out) in c.iter_mut().enumerate() {
            let v = self.palette.get(b + k).copied().unwrap_or(0);
            *out = if dac8 {
                v
            } else {
                (v & 0x3f) << 2 | (v & 0x3f) >> 4
            };
        }
        c
    }

    /// The 4-bit text/planar colour `c` through the attribute controller to a DAC index.
    pub fn attr_to_dac(&self, c: u8) -> u8 {
        let mut v = self.ar[(c & 0x0f) as usize] & 0x3f;
        let mode = self.ar[0x10];
        let select = self.ar[0x14];
        if mode & 0x80 != 0 {
            v = (v & 0x0f) | ((select & 0x03) << 4);
        }
        v | ((select & 0x0c) << 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crtc_follows_misc_bit0() {
        let mut r = VgaRegs::new();
        r.write(0x24, 0x0e);
        r.write(0x25, 0x12);
        assert_eq!(r.crtc[0x0e], 0x12);
        // Mono ports are not decoded in colour mode.
        r.write(0x04, 0x0f);
        assert_eq!(r.read(0x05), 0xff);
        r.write(0x12, 0x00); // misc: mono
        r.write(0x04, 0x0e);
        assert_eq!(r.read(0x05), 0x12);
        assert_eq!(r.read(0x25), 0xff);
    }

    #[test]
    fn attribute_flip_flop_resets_on_status_read() {
        let mut r = VgaRegs::new();
        r.write(0x10, 0x01); // index 1
        r.write(0x10, 0x3f); // data
        assert_eq!(r.ar[1], 0x3f);
        r.write(0x10, 0x02); // index again
        let _ = r.read(0x2a); // input status 1 resets to "index"
        r.write(0x10, 0x05);
        assert_eq!(r.ar_index, 0x05);
        let a = r.read(0x2a);
        let b = r.read(0x2a);
        assert_ne!(a & 8, b & 8, "retrace bit toggles");
    }

    #[test]
    fn dac_triplets_autoincrement() {
        let mut r = VgaRegs::new();
        r.write(0x18, 5);
        for v in [1, 2, 3, 4, 5, 6] {
            r.write(0x19, v);
        }
        assert_eq!(&r.palette[15..21], &[1, 2, 3, 4, 5, 6]);
        r.write(0x17, 6);
        assert_eq!([r.read(0x19), r.read(0x19), r.read(0x19)], [4, 5, 6]);
        assert_eq!(r.read(0x17), 3);
        assert_eq!(r.rgb(6, false), [16, 20, 24]);
    }
}
