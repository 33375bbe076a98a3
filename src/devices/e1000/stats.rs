//! The statistics registers (0x4000-0x40FF). Every one clears when read; the 64-bit
//! octet counters (GORC, GOTC, TOR, TOT) read low half then high half, and reading the
//! high half clears both. Counters stick at their maximum instead of wrapping. They
//! count only what the model can see: no collisions (full duplex), no symbol, CRC or
//! alignment errors (the link delivers whole frames), no flow-control frames.

pub const CRCERRS: u32 = 0x4000;
pub const MPC: u32 = 0x4010;
pub const RLEC: u32 = 0x4040;
pub const PRC64: u32 = 0x405c;
pub const GPRC: u32 = 0x4074;
pub const BPRC: u32 = 0x4078;
pub const MPRC: u32 = 0x407c;
pub const GPTC: u32 = 0x4080;
pub const GORCL: u32 = 0x4088;
pub const GORCH: u32 = 0x408c;
pub const GOTCL: u32 = 0x4090;
pub const GOTCH: u32 = 0x4094;
pub const RNBC: u32 = 0x40a0;
pub const RUC: u32 = 0x40a4;
pub const ROC: u32 = 0x40ac;
pub const TORL: u32 = 0x40c0;
pub const TORH: u32 = 0x40c4;
pub const TOTL: u32 = 0x40c8;
pub const TOTH: u32 = 0x40cc;
pub const TPR: u32 = 0x40d0;
pub const TPT: u32 = 0x40d4;
pub const PTC64: u32 = 0x40d8;
pub const MPTC: u32 = 0x40f0;
pub const BPTC: u32 = 0x40f4;
pub const TSCTC: u32 = 0x40f8;
pub const TSCTFC: u32 = 0x40fc;

const COUNT: usize = 64;

/// The low halves of the 64-bit counters.
const WIDE: [u32; 4] = [GORCL, GOTCL, TORL, TOTL];

#[derive(Debug, Clone)]
pub struct Stats {
    pub(super) c: [u64; COUNT],
}

impl Default for Stats {
    fn default() -> Self {
        Self { c: [0; COUNT] }
    }
}

fn index(reg: u32) -> usize {
    ((reg.wrapping_sub(CRCERRS) / 4) as usize) % COUNT
}

fn is_wide(lo: u32) -> bool {
    WIDE.contains(&lo)
}

impl Stats {
    /// Adds `n` to the counter at `reg` (a 64-bit counter by its low half).
    pub fn add(&mut self, reg: u32, n: u64) {
        let i = index(reg);
        let max = if is_wide(reg) {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        self.c[i] = self.c[i].saturating_add(n).min(max);
    }

    /// Counts one frame of `wire_len` bytes (CRC included) in the size histogram whose
    /// first register (64 bytes) is `first` (PRC64 or PTC64).
    pub fn add_size(&mut self, first: u32, wire_len: usize) {
        let bucket = match wire_len {
            0..=64 => 0,
            65..=127 => 1,
            128..=255 => 2,
            256..=511 => 3,
            512..=1023 => 4,
            1024..=1522 => 5,
            _ => return,
        };
        self.add(first + 4 * bucket, 1);
    }

    /// Counts the broadcast or multicast frame for `dst` in BPRC/MPRC (`rx`) or
    /// BPTC/MPTC.
    pub fn add_cast(&mut self, dst: &[u8], rx: bool) {
        if dst.len() < 6 || dst[0] & 1 == 0 {
            return;
        }
        let bcast = dst[..6] == [0xff; 6];
        let reg = match (rx, bcast) {
            (true, true) => BPRC,
            (true, false) => MPRC,
            (false, true) => BPTC,
            (false, false) => MPTC,
        };
        self.add(reg, 1);
    }

    /// A guest read of `reg`, which clears what it returns.
    pub fn read(&mut self, reg: u32) -> u32 {
        let i = index(reg);
        if is_wide(reg) {
            return self.c[i] as u32;
        }
        if is_wide(reg.wrapping_sub(4)) {
            let v = (self.c[i - 1] >> 32) as u32;
            self.c[i - 1] = 0;
            return v;
        }
        std::mem::take(&mut self.c[i]) as u32
    }

    /// The register at `reg` as a read would return it, without clearing anything.
    pub fn peek32(&self, reg: u32) -> u32 {
        let i = index(reg);
        if !is_wide(reg) && is_wide(reg.wrapping_sub(4)) {
            return (self.c[i - 1] >> 32) as u32;
        }
        self.c[i] as u32
    }

    /// The counter at `reg` without clearing it (a 64-bit counter by its low half).
    pub fn peek(&self, reg: u32) -> u64 {
        self.c[index(reg)]
    }
}
