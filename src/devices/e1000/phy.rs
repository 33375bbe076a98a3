//! The 82540EM's internal copper PHY (an M88E1011 core) behind MDIC, at PHY address 1.
//!
//! MII registers 0-10 and 15 plus the vendor registers 16-22 and 26-30. The link
//! follows the cable ([`Phy::set_cable`]): with a link the partner (a gigabit switch
//! port) has advertised 10/100/1000 full and half duplex with pause, autonegotiation
//! is complete, and the PHY-specific status says 1000 Mb/s full duplex. A restart of
//! autonegotiation (BMCR bit 9) or a PHY reset (BMCR bit 15) completes at once. BMSR's
//! link bit latches low: after a link loss it reads 0 once even if the link is back.
//! Writes to read-only registers are ignored, as by the part; an MDIO access to any
//! other PHY address finds nobody (MDIC.E).

pub const ADDR: u32 = 1;

pub const BMCR: usize = 0;
pub const BMSR: usize = 1;
pub const PHYID1: usize = 2;
pub const PHYID2: usize = 3;
pub const ANAR: usize = 4;
pub const ANLPAR: usize = 5;
pub const ANER: usize = 6;
pub const NPTX: usize = 7;
pub const LPRNP: usize = 8;
pub const GBCR: usize = 9;
pub const GBSR: usize = 10;
pub const EXT_STATUS: usize = 15;
pub const PSCR: usize = 16;
pub const PSSR: usize = 17;
pub const EPSCR: usize = 20;
pub const RX_ERR: usize = 21;

pub const BMCR_SPEED1000: u16 = 1 << 6;
pub const BMCR_FD: u16 = 1 << 8;
pub const BMCR_RESTART_AN: u16 = 1 << 9;
pub const BMCR_POWER_DOWN: u16 = 1 << 11;
pub const BMCR_AN_ENABLE: u16 = 1 << 12;
pub const BMCR_LOOPBACK: u16 = 1 << 14;
pub const BMCR_RESET: u16 = 1 << 15;
pub const BMSR_LINK: u16 = 1 << 2;
pub const BMSR_AN_COMPLETE: u16 = 1 << 5;

/// BMSR without the link and autonegotiation-complete bits: 10/100 capable, extended
/// status, preamble suppression, autonegotiation able, extended registers.
const BMSR_BASE: u16 = 0x7949;
/// The partner's pages: ack, pause, 100/10 full/half, 802.3 selector; 1000T full/half
/// with both receivers OK.
const LP_ABILITY: u16 = 0x45e1;
const GBSR_LINK: u16 = 0x3c00;
/// PSSR with a link: 1000 Mb/s, full duplex, resolved, real-time link.
const PSSR_LINK: u16 = 0xac00;

/// Power-on values and writable bits of the registers that exist.
fn reset_value(reg: usize) -> Option<(u16, u16)> {
    Some(match reg {
        BMCR => (BMCR_AN_ENABLE | BMCR_FD | BMCR_SPEED1000, 0xffff),
        BMSR => (BMSR_BASE, 0),
        PHYID1 => (0x0141, 0),
        PHYID2 => (0x0c20, 0),
        ANAR => (0x0de1, 0xbfff),
        ANLPAR | LPRNP => (0, 0),
        ANER => (0x0004, 0),
        NPTX => (0x2001, 0xb7ff),
        GBCR => (0x0300, 0xff00),
        GBSR => (0, 0),
        EXT_STATUS => (0x3000, 0),
        PSCR => (0x0068, 0xfffb),
        PSSR | RX_ERR | 19 => (0, 0),
        18 => (0, 0xffff),
        EPSCR => (0x0c60, 0xffff),
        22 | 26 | 27 | 28 | 29 | 30 => (0, 0xffff),
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct Phy {
    pub(super) regs: [u16; 32],
    pub(super) cable: bool,
    /// BMSR's latched-low link bit: a loss since the last BMSR read.
    pub(super) lost: bool,
}

impl Phy {
    pub fn new(cable: bool) -> Self {
        let mut p = Self {
            regs: [0; 32],
            cable,
            lost: false,
        };
        p.reset();
        p
    }

    /// A PHY reset: registers to their power-on values (link state kept).
    pub fn reset(&mut self) {
        for (r, v) in self.regs.iter_mut().enumerate() {
            *v = reset_value(r).map_or(0, |(v, _)| v);
        }
        self.refresh();
    }

    /// Whether the PHY reports a link: a cable and not powered down (or looped back).
    pub fn link(&self) -> bool {
        let bmcr = self.regs[BMCR];
        bmcr & BMCR_LOOPBACK != 0 || (self.cable && bmcr & BMCR_POWER_DOWN == 0)
    }

    /// The PHY loops transmitted frames back (BMCR bit 14).
    pub fn loopback(&self) -> bool {
        self.regs[BMCR] & BMCR_LOOPBACK != 0
    }

    /// The cable is plugged (`true`) or pulled. Returns whether the link changed.
    pub fn set_cable(&mut self, up: bool) -> bool {
        let before = self.link();
        self.cable = up;
        self.refresh();
        let after = self.link();
        if before && !after {
            self.lost = true;
        }
        before != after
    }

    /// Recomputes the status registers from the link.
    pub(super) fn refresh(&mut self) {
        let link = self.link();
        let an = self.regs[BMCR] & BMCR_AN_ENABLE != 0;
        let mut bmsr = BMSR_BASE;
        if link {
            bmsr |= BMSR_LINK;
            if an {
                bmsr |= BMSR_AN_COMPLETE;
            }
        }
        self.regs[BMSR] = bmsr;
        let partner = link && an && self.cable;
        self.regs[ANLPAR] = if partner { LP_ABILITY } else { 0 };
        self.regs[ANER] = if partner { 0x0005 } else { 0x0004 };
        self.regs[GBSR] = if partner { GBSR_LINK } else { 0 };
        self.regs[PSSR] = if link { PSSR_LINK } else { 0x8000 };
    }

    /// An MDIO read of `reg`: `None` when the register does not exist.
    pub fn read(&mut self, reg: usize) -> Option<u16> {
        reset_value(reg)?;
        let mut v = self.regs[reg];
        if reg == BMSR {
            if self.lost {
                v &= !BMSR_LINK;
            }
            self.lost = false;
        }
        if reg == RX_ERR {
            self.regs[RX_ERR] = 0;
        }
        Some(v)
    }

    /// An MDIO write of `reg`. Returns whether the link state changed.
    pub fn write(&mut self, reg: usize, v: u16) -> bool {
        let Some((_, wmask)) = reset_value(reg) else {
            return false;
        };
        let before = self.link();
        if reg == BMCR && v & BMCR_RESET != 0 {
            // The reset clears itself; the new BMCR value is kept but for the bits
            // that only act.
            self.reset();
            self.regs[BMCR] = v & !(BMCR_RESET | BMCR_RESTART_AN);
        } else {
            let old = self.regs[reg];
            self.regs[reg] = (old & !wmask) | (v & wmask);
            if reg == BMCR {
                self.regs[BMCR] &= !BMCR_RESTART_AN;
            }
        }
        self.refresh();
        let after = self.link();
        if before && !after {
            self.lost = true;
        }
        before != after
    }
}
