//! The 82540EM's serial EEPROM: a 64-word Microwire part (93C46 class) that software
//! reaches either by bit-banging EECD (SK, CS, DI out; DO in; EE_REQ/EE_GNT
//! arbitration) or through the EERD read register.
//!
//! Microwire: with CS high, a start bit (DI = 1 on a rising SK edge), a 2-bit opcode
//! and a 6-bit address. READ (10) answers with a dummy 0 on DO, then the word MSB
//! first, one bit per rising edge, and keeps going through the following words while
//! CS stays high. WRITE (01) takes 16 data bits, ERASE (11) needs no data; both only
//! after EWEN (00 11xxxx) and until EWDS (00 00xxxx); ERAL (00 10xxxx) and WRAL
//! (00 01xxxx + 16 bits) act on every word. DO reads 1 (ready) whenever the part is
//! not shifting data out: programming is instant here. Dropping CS ends any command.
//!
//! The image is the one Intel ships for the 82540EM (QEMU's as well): MAC in words
//! 0-2, the initialization control words, PCI IDs (subsystem as the config space
//! shows it), and word 0x3F making words 0x00-0x3F sum to 0xBABA.

use super::regs::*;

pub const WORDS: usize = 64;
/// What the 16-bit sum of every word must be.
pub const CHECKSUM_SUM: u16 = 0xbaba;
pub const CHECKSUM_WORD: usize = 0x3f;

/// The image after the MAC (words 3..0x3F; the checksum is computed).
const TEMPLATE: [u16; WORDS] = [
    0x0000, 0x0000, 0x0000, 0x0000, 0xffff, 0x0000, 0x0000, 0x0000, //
    0x3000, 0x1000, 0x6403, 0x0000, 0x0000, 0x100e, 0x8086, 0x3040, //
    0x0008, 0x2000, 0x7e14, 0x0048, 0x1000, 0x00d8, 0x0000, 0x2700, //
    0x6cc9, 0x3150, 0x0722, 0x040b, 0x0984, 0x0000, 0xc000, 0x0706, //
    0x1008, 0x0000, 0x0f04, 0x7fff, 0x4d01, 0xffff, 0xffff, 0xffff, //
    0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, //
    0x0100, 0x4000, 0x121c, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, //
    0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0x0000, //
];
/// Word offsets of the PCI subsystem ID and subsystem vendor ID.
const SUBSYSTEM_WORD: usize = 0x0b;
const SUBSYSTEM_VENDOR_WORD: usize = 0x0c;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) enum Shift {
    /// Waiting for a start bit.
    Idle,
    /// Opcode and address bits after the start bit.
    Command { bits: u16, n: u8 },
    /// Shifting word `addr` out; `bit` bits of it already went out.
    Read { addr: u8, bit: u8 },
    /// Taking 16 data bits for `addr` (`all`: WRAL).
    Write {
        addr: u8,
        all: bool,
        data: u16,
        n: u8,
    },
    /// Command finished: DO shows ready until CS drops.
    Done,
}

#[derive(Debug, Clone)]
pub struct Eeprom {
    pub(super) words: [u16; WORDS],
    /// The pins as software last wrote them (EECD SK, CS, DI) and EE_REQ, FWE.
    pub(super) eecd: u32,
    pub(super) shift: Shift,
    /// DO as the part drives it now.
    pub(super) out: bool,
    pub(super) write_enabled: bool,
}

impl Eeprom {
    /// The 82540EM image for `mac` with the given subsystem IDs.
    pub fn new(mac: [u8; 6], subsystem_vendor: u16, subsystem: u16) -> Self {
        let mut words = TEMPLATE;
        for i in 0..3 {
            words[i] = u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
        }
        words[SUBSYSTEM_WORD] = subsystem;
        words[SUBSYSTEM_VENDOR_WORD] = subsystem_vendor;
        let sum = words[..CHECKSUM_WORD]
            .iter()
            .fold(0u16, |s, &w| s.wrapping_add(w));
        words[CHECKSUM_WORD] = CHECKSUM_SUM.wrapping_sub(sum);
        Self {
            words,
            eecd: EECD_FWE_DISABLED,
            shift: Shift::Idle,
            out: true,
            write_enabled: false,
        }
    }

    pub fn word(&self, i: usize) -> u16 {
        self.words[i % WORDS]
    }

    /// The MAC address words 0-2 hold.
    pub fn mac(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        for i in 0..3 {
            m[2 * i..2 * i + 2].copy_from_slice(&self.words[i].to_le_bytes());
        }
        m
    }

    /// EECD as software reads it.
    pub fn read_eecd(&self) -> u32 {
        let mut v = self.eecd | EECD_PRES;
        if self.eecd & EECD_REQ != 0 {
            v |= EECD_GNT;
        }
        if self.out {
            v |= EECD_DO;
        }
        v
    }

    /// A write to EECD: the pins move only while software holds the grant.
    pub fn write_eecd(&mut self, v: u32) {
        let old = self.eecd;
        let pins = EECD_SK | EECD_CS | EECD_DI;
        let mut new = v & (pins | EECD_REQ | EECD_FWE_MASK);
        if v & EECD_REQ == 0 {
            new = (new & !pins) | (old & pins);
        }
        self.eecd = new;
        let cs = new & EECD_CS != 0;
        if !cs {
            if old & EECD_CS != 0 {
                self.shift = Shift::Idle;
            }
            self.out = true;
            return;
        }
        if old & EECD_SK == 0 && new & EECD_SK != 0 {
            self.clock(new & EECD_DI != 0);
        }
    }

    /// One rising SK edge with CS high and `di` on DI.
    fn clock(&mut self, di: bool) {
        self.shift = match self.shift {
            Shift::Idle if di => Shift::Command { bits: 0, n: 0 },
            Shift::Idle => Shift::Idle,
            Shift::Command { bits, n } => {
                let bits = bits << 1 | u16::from(di);
                if n + 1 < 8 {
                    Shift::Command { bits, n: n + 1 }
                } else {
                    self.command((bits >> 6) as u8, (bits & 0x3f) as u8)
                }
            }
            Shift::Read { addr, bit } => {
                let w = self.words[addr as usize % WORDS];
                self.out = w >> (15 - bit) & 1 != 0;
                if bit == 15 {
                    Shift::Read {
                        addr: (addr + 1) % WORDS as u8,
                        bit: 0,
                    }
                } else {
                    Shift::Read { addr, bit: bit + 1 }
                }
            }
            Shift::Write { addr, all, data, n } => {
                let data = data << 1 | u16::from(di);
                if n + 1 < 16 {
                    Shift::Write {
                        addr,
                        all,
                        data,
                        n: n + 1,
                    }
                } else {
                    self.program(addr, all, data);
                    Shift::Done
                }
            }
            Shift::Done => Shift::Done,
        };
    }

    /// The command after its opcode and address bits.
    fn command(&mut self, op: u8, addr: u8) -> Shift {
        self.out = true;
        match (op, addr >> 4) {
            (0b10, _) => {
                self.out = false; // the dummy zero
                Shift::Read { addr, bit: 0 }
            }
            (0b01, _) => Shift::Write {
                addr,
                all: false,
                data: 0,
                n: 0,
            },
            (0b11, _) => {
                self.program(addr, false, 0xffff);
                Shift::Done
            }
            (_, 0b11) => {
                self.write_enabled = true;
                Shift::Done
            }
            (_, 0b00) => {
                self.write_enabled = false;
                Shift::Done
            }
            (_, 0b10) => {
                self.program(0, true, 0xffff);
                Shift::Done
            }
            _ => Shift::Write {
                addr: 0,
                all: true,
                data: 0,
                n: 0,
            },
        }
    }

    fn program(&mut self, addr: u8, all: bool, data: u16) {
        if !self.write_enabled {
            return;
        }
        if all {
            self.words = [data; WORDS];
        } else {
            self.words[addr as usize % WORDS] = data;
        }
    }

    /// EERD: a write with START reads the word at bits 15:8 (the part sees 6 address
    /// bits) and reports DONE with the data in bits 31:16.
    pub fn eerd(&self, v: u32) -> u32 {
        let addr = (v >> 8) & 0xff;
        if v & EERD_START == 0 {
            return addr << 8;
        }
        let data = u32::from(self.words[addr as usize % WORDS]);
        data << 16 | addr << 8 | EERD_DONE
    }

    /// Back to power-on state of the interface (the words stay: they are non-volatile).
    pub fn reset_interface(&mut self) {
        self.eecd = EECD_FWE_DISABLED;
        self.shift = Shift::Idle;
        self.out = true;
        self.write_enabled = false;
    }
}
