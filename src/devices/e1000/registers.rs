//! Register accesses: BAR0 split into the dwords an access touches (a narrow write
//! merges into the register, except for the write-one-to-act interrupt registers),
//! BAR1's IOADDR/IODATA window, and what reading or writing each register does.

use super::regs::*;
use super::{phy, E1000, PBA_TOTAL_KB};

impl E1000 {
    /// A register read with its side effects (ICR and statistics clear).
    pub(super) fn read_reg(&mut self, off: u32) -> u32 {
        match off {
            ICR => {
                let v = self.irq.icr;
                self.irq.icr = 0;
                self.update_irq();
                v
            }
            STATS_START..STATS_END => self.stats.read(off),
            _ => self.peek(off),
        }
    }

    /// A register's value without side effects.
    pub(super) fn peek(&self, off: u32) -> u32 {
        match off {
            STATUS => self.status(),
            EECD => self.eeprom.read_eecd(),
            ICR => self.irq.icr,
            IMS => self.irq.ims,
            ITR => self.irq.itr,
            PBA => {
                let rxa = self.reg(PBA).min(PBA_TOTAL_KB);
                rxa | (PBA_TOTAL_KB - rxa) << 16
            }
            STATS_START..STATS_END => self.stats.peek32(off),
            CTRL | EERD | MDIC | RCTL | TCTL | RDH | RDT | TDH | TDT | RDTR => self.reg(off),
            _ => plain_mask(off).map_or(0, |_| self.reg(off)),
        }
    }

    /// Registers where a write of zero bits changes nothing (write-one-to-act), so a
    /// partial write leaves the other bytes zero instead of merging them.
    fn write_one_acts(off: u32) -> bool {
        matches!(off, ICR | ICS | IMS | IMC)
    }

    /// A register write.
    fn write_reg(&mut self, off: u32, v: u32) {
        match off {
            CTRL => self.write_ctrl(v),
            EECD => self.eeprom.write_eecd(v),
            EERD => {
                let r = self.eeprom.eerd(v);
                self.set_reg(EERD, r);
            }
            MDIC => self.write_mdic(v),
            ICR => {
                self.irq.icr &= !v;
                self.update_irq();
            }
            ICS => self.raise(v),
            IMS => {
                self.irq.ims |= v & INT_MASK;
                self.update_irq();
            }
            IMC => {
                self.irq.ims &= !v;
                self.update_irq();
            }
            ITR => self.irq.itr = v & 0xffff,
            RCTL => {
                self.set_reg(RCTL, v & RCTL_WMASK);
                self.drain_rx();
            }
            TCTL => {
                self.set_reg(TCTL, v & 0x03ff_fffa);
                self.process_tx();
            }
            RDH | TDH => self.set_reg(off, v & 0xffff),
            RDT => {
                self.set_reg(RDT, v & 0xffff);
                self.drain_rx();
            }
            TDT => {
                self.set_reg(TDT, v & 0xffff);
                self.process_tx();
            }
            RDTR => self.write_rdtr(v),
            PBA => self.set_reg(PBA, v & 0x7f),
            _ => {
                if let Some(m) = plain_mask(off) {
                    let old = self.reg(off);
                    self.set_reg(off, (old & !m) | (v & m));
                }
            }
        }
    }

    fn write_ctrl(&mut self, v: u32) {
        if v & CTRL_RST != 0 {
            self.reset();
            return;
        }
        let old = self.reg(CTRL);
        self.set_reg(CTRL, v & CTRL_WMASK);
        if v & CTRL_PHY_RST != 0 && old & CTRL_PHY_RST == 0 {
            self.phy.reset();
        }
    }

    fn write_mdic(&mut self, v: u32) {
        let reg = ((v >> 16) & 0x1f) as usize;
        let addr = (v >> 21) & 0x1f;
        let op = v & (MDIC_OP_READ | MDIC_OP_WRITE);
        let mut out = (v & !(MDIC_READY | MDIC_ERROR)) | MDIC_READY;
        if addr != phy::ADDR || op == 0 || op == MDIC_OP_READ | MDIC_OP_WRITE {
            out |= MDIC_ERROR;
        } else if op == MDIC_OP_READ {
            let data = self.phy.read(reg).unwrap_or(0);
            out = (out & !MDIC_DATA) | u32::from(data);
        } else if self.phy.write(reg, (v & MDIC_DATA) as u16) {
            self.link_changed();
        }
        self.set_reg(MDIC, out);
        if v & MDIC_INT_EN != 0 {
            self.raise(INT_MDAC);
        }
    }

    fn write_rdtr(&mut self, v: u32) {
        self.set_reg(RDTR, v & 0xffff);
        if v & RDTR_FPD != 0 && (self.timers.rdtr.is_some() || self.timers.radv.is_some()) {
            self.timers.rdtr = None;
            self.timers.radv = None;
            self.raise(INT_RXT0);
        }
    }

    /// An access to the register BAR, split into the dwords it touches.
    fn mmio(&mut self, offset: u64, len: usize, mut f: impl FnMut(&mut Self, u32, usize, usize)) {
        let mut i = 0;
        while i < len {
            let at = offset + i as u64;
            if at >= MMIO_SIZE {
                break;
            }
            let shift = (at & 3) as usize;
            let n = (4 - shift).min(len - i);
            f(self, (at & !3) as u32, shift, n);
            i += n;
        }
    }

    pub(super) fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let mut at = 0;
        self.mmio(offset, data.len(), |d, off, shift, n| {
            let v = d.read_reg(off).to_le_bytes();
            data[at..at + n].copy_from_slice(&v[shift..shift + n]);
            at += n;
        });
    }

    pub(super) fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let mut at = 0;
        self.mmio(offset, data.len(), |d, off, shift, n| {
            let mut v = if n < 4 && !Self::write_one_acts(off) {
                d.peek(off).to_le_bytes()
            } else {
                [0; 4]
            };
            v[shift..shift + n].copy_from_slice(&data[at..at + n]);
            at += n;
            d.write_reg(off, u32::from_le_bytes(v));
        });
    }

    /// BAR1: IOADDR selects a register, IODATA reads or writes it (dword writes only).
    pub(super) fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset & !3 {
            0 => self.ioaddr,
            4 if u64::from(self.ioaddr) < MMIO_SIZE => self.read_reg(self.ioaddr & !3),
            _ => 0,
        };
        let b = v.to_le_bytes();
        for (i, x) in data.iter_mut().enumerate() {
            *x = b.get((offset as usize & 3) + i).copied().unwrap_or(0);
        }
    }

    pub(super) fn io_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let v = u32::from_le_bytes(b);
        match offset {
            0 => self.ioaddr = v & 0x000f_ffff,
            4 if u64::from(self.ioaddr) < MMIO_SIZE => self.write_reg(self.ioaddr & !3, v),
            _ => {}
        }
    }
}
