//! Register-level tests: PCI identity, EEPROM (EERD and the Microwire bit-bang a
//! driver does), PHY through MDIC, link changes, ICR/IMS/ITR, statistics, reset, the
//! I/O window. `Rig` is shared with the receive/transmit tests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::eeprom::{CHECKSUM_SUM, WORDS};
use super::phy;
use super::regs::*;
use super::stats::*;
use super::E1000;
use crate::devices::pci::PciDevice;
use crate::devices::pm::MonotonicClock;
use crate::devices::IrqLine;
use crate::testing::FakeNet;

pub(super) const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub(super) const MEM: usize = 1 << 20;

/// A clock the test moves.
#[derive(Clone, Default)]
pub(super) struct TestClock(pub Arc<AtomicU64>);

impl MonotonicClock for TestClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

impl TestClock {
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The INTx line's level.
#[derive(Default)]
pub(super) struct Level(pub AtomicBool);

impl IrqLine for Level {
    fn set_level(&self, high: bool) {
        self.0.store(high, Ordering::Relaxed);
    }
}

pub(super) struct Rig {
    pub dev: E1000,
    pub mem: GuestMemoryMmap,
    pub wire: FakeNet,
    pub clock: TestClock,
    pub line: Arc<Level>,
}

impl Rig {
    /// A device with a backend, bus mastering and memory decoding on.
    pub fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
        let wire = FakeNet::new();
        let clock = TestClock::default();
        let mut dev = E1000::new(
            MAC,
            Some(Box::new(wire.clone())),
            mem.clone(),
            Box::new(clock.clone()),
        );
        let line = Arc::new(Level::default());
        dev.set_intx_line(line.clone());
        dev.config_write(0x04, &[0x07, 0x00]);
        Self {
            dev,
            mem,
            wire,
            clock,
            line,
        }
    }

    pub fn w(&mut self, off: u32, v: u32) {
        self.dev.bar_write(0, u64::from(off), &v.to_le_bytes());
    }

    pub fn r(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, u64::from(off), &mut b);
        u32::from_le_bytes(b)
    }

    /// Sets bits in a register (read-modify-write).
    pub fn set(&mut self, off: u32, bits: u32) {
        let v = self.r(off);
        self.w(off, v | bits);
    }

    pub fn irq(&self) -> bool {
        self.line.0.load(Ordering::Relaxed)
    }

    /// An MDIO read of PHY `addr` register `reg`: (data, error).
    pub fn mdio_read(&mut self, addr: u32, reg: u32) -> (u16, bool) {
        self.w(MDIC, MDIC_OP_READ | addr << 21 | reg << 16);
        let v = self.r(MDIC);
        assert!(v & MDIC_READY != 0);
        (v as u16, v & MDIC_ERROR != 0)
    }

    pub fn mdio_write(&mut self, reg: u32, data: u16) {
        self.w(
            MDIC,
            MDIC_OP_WRITE | phy::ADDR << 21 | reg << 16 | u32::from(data),
        );
        assert!(self.r(MDIC) & MDIC_READY != 0);
    }

    pub fn eerd(&mut self, word: u32) -> u16 {
        self.w(EERD, word << 8 | EERD_START);
        let v = self.r(EERD);
        assert!(v & EERD_DONE != 0);
        (v >> 16) as u16
    }

    // The Microwire bit-bang as Linux's e1000 and FreeBSD's em do it.
    fn eecd(&mut self, v: u32) {
        self.w(EECD, v);
    }

    fn ee_clock_out(&mut self, eecd: &mut u32, bits: u32, count: u32) {
        for i in (0..count).rev() {
            *eecd &= !EECD_DI;
            if bits >> i & 1 != 0 {
                *eecd |= EECD_DI;
            }
            self.eecd(*eecd);
            self.eecd(*eecd | EECD_SK);
            self.eecd(*eecd);
        }
    }

    fn ee_clock_in(&mut self, eecd: &mut u32) -> u16 {
        let mut data = 0u16;
        *eecd &= !(EECD_DI | EECD_DO);
        for _ in 0..16 {
            self.eecd(*eecd | EECD_SK);
            data = data << 1 | u16::from(self.r(EECD) & EECD_DO != 0);
            self.eecd(*eecd);
        }
        data
    }

    /// Acquire (REQ, wait GNT), select; returns the EECD value in use.
    fn ee_acquire(&mut self) -> u32 {
        let mut eecd = self.r(EECD) | EECD_REQ;
        self.eecd(eecd);
        assert!(self.r(EECD) & EECD_GNT != 0);
        eecd &= !(EECD_DI | EECD_SK);
        self.eecd(eecd);
        eecd |= EECD_CS;
        self.eecd(eecd);
        eecd
    }

    fn ee_release(&mut self, eecd: u32) {
        let e = eecd & !(EECD_CS | EECD_DI | EECD_SK);
        self.eecd(e);
        self.eecd(e & !EECD_REQ);
    }

    /// `n` words from `word` on with one READ command (sequential read).
    pub fn ee_bitbang_read(&mut self, word: u32, n: usize) -> Vec<u16> {
        let mut eecd = self.ee_acquire();
        self.ee_clock_out(&mut eecd, 0b110, 3);
        self.ee_clock_out(&mut eecd, word, 6);
        let out = (0..n).map(|_| self.ee_clock_in(&mut eecd)).collect();
        self.ee_release(eecd);
        out
    }

    /// A command of `bits` (start bit included) then optional data, deselect, and
    /// the ready poll.
    pub fn ee_command(&mut self, bits: u32, count: u32, data: Option<u16>) {
        let mut eecd = self.ee_acquire();
        self.ee_clock_out(&mut eecd, bits, count);
        if let Some(d) = data {
            self.ee_clock_out(&mut eecd, u32::from(d), 16);
        }
        // Standby: deselect, select, DO says ready.
        self.eecd(eecd & !EECD_CS);
        self.eecd(eecd);
        assert!(self.r(EECD) & EECD_DO != 0, "EEPROM ready");
        self.ee_release(eecd);
    }
}

#[test]
fn pci_identity_and_bars() {
    let mut r = Rig::new();
    let mut b = [0u8; 4];
    r.dev.config_read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x100e_8086);
    r.dev.config_read(8, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x0200_0003);
    r.dev.config_read(0x2c, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1100_1af4);
    r.dev.config_read(0x3c, &mut b);
    assert_eq!(b[1], 1, "INTA#");
    r.dev.config_write(0x10, &[0xff; 4]);
    r.dev.config_read(0x10, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0xfffe_0000, "128 KiB memory BAR");
    r.dev.config_write(0x14, &[0xff; 4]);
    r.dev.config_read(0x14, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0xffff_fff9, "8-byte I/O BAR");
}

#[test]
fn eeprom_image_sums_to_baba_and_holds_the_mac() {
    let mut r = Rig::new();
    let words: Vec<u16> = (0..WORDS as u32).map(|i| r.eerd(i)).collect();
    let sum = words.iter().fold(0u16, |s, &w| s.wrapping_add(w));
    assert_eq!(sum, CHECKSUM_SUM);
    assert_eq!(&words[..3], &[0x5452, 0x1200, 0x5634]);
    assert_eq!(
        words[0x0a], 0x6403,
        "init control word 1: signature 01, load IDs"
    );
    assert_eq!(&words[0x0b..0x0f], &[0x1100, 0x1af4, 0x100e, 0x8086]);
    // The receive address 0 came from it.
    assert_eq!(r.r(RA), 0x1200_5452);
    assert_eq!(r.r(RA + 4), RAH_AV | 0x5634);
    // EERD without START reports nothing done; addresses wrap at 64 words.
    r.w(EERD, 3 << 8);
    assert_eq!(r.r(EERD) & EERD_DONE, 0);
    assert_eq!(r.eerd(64 + 1), words[1]);
}

#[test]
fn eeprom_bitbang_read_write_and_enable() {
    let mut r = Rig::new();
    assert_eq!(
        r.r(EECD) & (EECD_PRES | EECD_GNT),
        EECD_PRES,
        "present, not granted"
    );
    let direct: Vec<u16> = (0..WORDS as u32).map(|i| r.eerd(i)).collect();
    for w in [0, 1, 2, 0x0a, 0x3f] {
        assert_eq!(
            r.ee_bitbang_read(w, 1),
            vec![direct[w as usize]],
            "word {w}"
        );
    }
    // One READ streams the following words.
    assert_eq!(
        r.ee_bitbang_read(0x3e, 3),
        vec![direct[0x3e], direct[0x3f], direct[0]]
    );
    // WRITE before EWEN is ignored.
    r.ee_command(0b101 << 6 | 0x10, 9, Some(0xbeef));
    assert_eq!(r.eerd(0x10), direct[0x10]);
    // EWEN (1 00 11xxxx), WRITE, EWDS (1 00 00xxxx).
    r.ee_command(0b100_110000, 9, None);
    r.ee_command(0b101 << 6 | 0x10, 9, Some(0xbeef));
    r.ee_command(0b100_000000, 9, None);
    assert_eq!(r.eerd(0x10), 0xbeef);
    assert_eq!(r.ee_bitbang_read(0x10, 1), vec![0xbeef]);
    r.ee_command(0b101 << 6 | 0x11, 9, Some(0x1234));
    assert_eq!(r.eerd(0x11), direct[0x11], "disabled again");
    // The words survive a device reset (the part is non-volatile).
    r.w(CTRL, CTRL_RST);
    assert_eq!(r.eerd(0x10), 0xbeef);
}

#[test]
fn eecd_pins_need_the_grant() {
    let mut r = Rig::new();
    r.w(EECD, EECD_CS | EECD_SK | EECD_DI);
    assert_eq!(r.r(EECD) & (EECD_CS | EECD_SK | EECD_DI), 0);
    r.w(EECD, EECD_REQ | EECD_CS);
    assert_eq!(r.r(EECD) & (EECD_CS | EECD_GNT), EECD_CS | EECD_GNT);
}

#[test]
fn phy_registers_through_mdic() {
    let mut r = Rig::new();
    assert_eq!(r.mdio_read(1, 2), (0x0141, false));
    assert_eq!(r.mdio_read(1, 3), (0x0c20, false), "M88E1011 (82540EM)");
    let (bmsr, _) = r.mdio_read(1, 1);
    assert_eq!(bmsr & 0x24, 0x24, "link and autoneg complete: {bmsr:#x}");
    assert_eq!(r.mdio_read(1, 10).0, 0x3c00, "1000BASE-T status");
    assert_eq!(r.mdio_read(1, 5).0 & 0x0c00, 0x0400, "partner pause");
    assert_eq!(r.mdio_read(1, 17).0 >> 14, 2, "resolved 1000 Mb/s");
    assert!(r.mdio_read(2, 1).1, "no PHY at address 2");
    r.mdio_write(4, 0x01e1);
    assert_eq!(r.mdio_read(1, 4).0, 0x01e1);
    r.mdio_write(2, 0xdead);
    assert_eq!(r.mdio_read(1, 2).0, 0x0141, "read-only");
    // Reset and autoneg restart clear themselves; autonegotiation completes.
    r.mdio_write(0, 0x1140 | 0x8000 | 0x0200);
    assert_eq!(r.mdio_read(1, 0).0, 0x1140);
    assert_eq!(r.mdio_read(1, 4).0, 0x0de1, "reset value back");
    assert!(r.mdio_read(1, 1).0 & 0x20 != 0);
    // MDIC.I raises MDAC.
    r.w(MDIC, MDIC_OP_READ | MDIC_INT_EN | 1 << 21);
    assert_eq!(r.r(ICR) & INT_MDAC, INT_MDAC);
}

#[test]
fn status_and_link_changes() {
    let mut r = Rig::new();
    let st = r.r(STATUS);
    assert_eq!(st & (STATUS_LU | STATUS_FD), STATUS_LU | STATUS_FD);
    assert_eq!(st >> 6 & 3, 2, "1000 Mb/s");
    r.w(IMS, INT_LSC);
    r.dev.set_link(false);
    assert!(r.irq());
    assert_eq!(r.r(STATUS) & STATUS_LU, 0);
    assert_eq!(r.r(ICR), INT_LSC);
    assert!(!r.irq());
    assert_eq!(r.mdio_read(1, 1).0 & 0x24, 0, "no link, no autoneg");
    assert_eq!(r.mdio_read(1, 10).0, 0);
    r.dev.set_link(true);
    assert_eq!(r.r(ICR), INT_LSC);
    assert!(r.dev.link_up());
    assert_eq!(r.mdio_read(1, 1).0 & 4, 4, "the loss was read while down");
    // A loss nobody read: BMSR's link bit latched it, 0 once, then 1.
    r.dev.set_link(false);
    r.dev.set_link(true);
    assert_eq!(r.r(ICR), INT_LSC);
    assert_eq!(r.mdio_read(1, 1).0 & 4, 0);
    assert_eq!(r.mdio_read(1, 1).0 & 4, 4);
    // The same link again changes nothing.
    r.dev.set_link(true);
    assert_eq!(r.r(ICR), 0);
    // PHY power-down drops the link too.
    r.mdio_write(0, 0x1140 | 0x0800);
    assert_eq!(r.r(STATUS) & STATUS_LU, 0);
    assert_eq!(r.r(ICR), INT_LSC);
}

#[test]
fn icr_ims_ics_imc() {
    let mut r = Rig::new();
    r.w(ICS, INT_TXDW | INT_RXT0);
    assert!(!r.irq(), "masked");
    r.w(IMS, INT_RXT0);
    assert!(r.irq());
    assert_eq!(r.r(IMS), INT_RXT0);
    r.w(IMC, INT_RXT0);
    assert!(!r.irq());
    r.w(IMS, INT_TXDW);
    assert!(r.irq());
    // Write-one clears just that cause.
    r.w(ICR, INT_TXDW);
    assert!(!r.irq());
    assert_eq!(r.r(ICR), INT_RXT0, "read returns the causes");
    assert_eq!(r.r(ICR), 0, "and clears them");
    // Reserved bits do not stick.
    r.w(ICS, 0xffff_ffff);
    assert_eq!(r.r(ICR), INT_MASK);
    // A byte write to IMS sets only the bits written.
    r.w(IMC, !0);
    r.dev.bar_write(0, u64::from(IMS) + 1, &[0x02]);
    assert_eq!(r.r(IMS), INT_MDAC);
    // The INTx status bit in config space follows the line.
    r.w(ICS, INT_MDAC);
    let mut st = [0u8; 2];
    r.dev.config_read(0x06, &mut st);
    assert!(st[0] & 0x08 != 0);
}

#[test]
fn itr_spaces_interrupts() {
    let mut r = Rig::new();
    r.w(ITR, 1000); // 256 us
    r.w(IMS, INT_RXT0);
    r.w(ICS, INT_RXT0);
    assert!(r.irq(), "the first one goes at once");
    r.r(ICR);
    assert!(!r.irq());
    r.clock.advance(Duration::from_micros(10));
    r.w(ICS, INT_RXT0);
    assert!(!r.irq(), "held back");
    let t0 = Duration::ZERO;
    assert_eq!(r.dev.next_deadline(), Some(t0 + Duration::from_micros(256)));
    r.clock.advance(Duration::from_micros(100));
    r.dev.poll_timer(r.clock.now());
    assert!(!r.irq(), "early");
    r.clock.advance(Duration::from_micros(146));
    r.dev.poll_timer(r.clock.now());
    assert!(r.irq(), "released at 256 us");
    assert_eq!(r.dev.next_deadline(), None);
    // ITR = 0: no throttling.
    r.r(ICR);
    r.w(ITR, 0);
    r.w(ICS, INT_RXT0);
    assert!(r.irq());
}

#[test]
fn timer_notify_hears_new_deadlines() {
    let mut r = Rig::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    r.dev
        .set_timer_notify(Box::new(move |d| s.lock().unwrap().push(d)));
    r.w(ITR, 4);
    r.w(IMS, INT_TXDW);
    r.w(ICS, INT_TXDW);
    r.r(ICR);
    r.w(ICS, INT_TXDW);
    assert_eq!(*seen.lock().unwrap(), vec![Duration::from_nanos(1024)]);
    // An early poll re-arms the same deadline.
    r.dev.poll_timer(Duration::from_nanos(10));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn statistics_clear_on_read() {
    let mut r = Rig::new();
    r.dev.stats.add(GPTC, 3);
    r.dev.stats.add(GOTCL, 0x1_0000_0040);
    r.dev.stats.add(MPC, u64::MAX);
    assert_eq!(r.r(GPTC), 3);
    assert_eq!(r.r(GPTC), 0);
    assert_eq!(r.r(MPC), u32::MAX, "sticks at the maximum");
    assert_eq!(r.r(GOTCL), 0x40, "low half does not clear");
    assert_eq!(r.r(GOTCL), 0x40);
    assert_eq!(r.r(GOTCH), 1, "high half clears both");
    assert_eq!(r.r(GOTCL), 0);
    r.w(GPTC, 7);
    assert_eq!(r.r(GPTC), 0, "read-only");
}

#[test]
fn ctrl_rst_resets_the_mac() {
    let mut r = Rig::new();
    r.w(IMS, INT_RXT0);
    r.w(ICS, INT_RXT0);
    r.w(RCTL, RCTL_EN | RCTL_BAM);
    r.w(RA, 0);
    r.w(MTA + 8, 0xffff);
    r.set(CTRL, CTRL_RST);
    assert!(!r.irq());
    assert_eq!(r.r(CTRL) & CTRL_RST, 0, "self-clearing");
    assert_eq!([r.r(IMS), r.r(ICR), r.r(RCTL), r.r(MTA + 8)], [0; 4]);
    assert_eq!(r.r(RA), 0x1200_5452, "reloaded from the EEPROM");
    assert!(r.dev.link_up(), "the PHY is not reset");
}

/// Linux e1000's ethtool register test (e1000_reg_test) on an 82540.
#[test]
fn linux_register_test_patterns() {
    let mut r = Rig::new();
    let before = r.r(STATUS);
    r.w(STATUS, 0xffff_f833);
    assert_eq!(r.r(STATUS), before, "read-only");
    let pattern = [0x5a5a_5a5a, 0xa5a5_a5a5, 0x0000_0000, 0xffff_ffff];
    let mut check = |off: u32, mask: u32, wmask: u32| {
        for p in pattern {
            r.w(off, p & wmask);
            assert_eq!(
                r.r(off) & mask,
                p & wmask & mask,
                "reg {off:#x} pattern {p:#x}"
            );
        }
    };
    for (off, mask, wmask) in [
        (FCAL, 0xffff_ffff, 0xffff_ffff),
        (FCAH, 0xffff, 0xffff_ffff),
        (FCT, 0xffff, 0xffff_ffff),
        (VET, 0xffff, 0xffff_ffff),
        (RDTR, 0xffff, 0xffff_ffff),
        (RDBAH, 0xffff_ffff, 0xffff_ffff),
        (RDLEN, 0x000f_ff80, 0x000f_ffff),
        (RDH, 0xffff, 0xffff),
        (RDT, 0xffff, 0xffff),
        (FCRTH, 0xfff8, 0xfff8),
        (FCTTV, 0xffff, 0xffff),
        (TIPG, 0x3fff_ffff, 0x3fff_ffff),
        (TDBAH, 0xffff_ffff, 0xffff_ffff),
        (TDLEN, 0x000f_ff80, 0x000f_ffff),
        (RDBAL, 0xffff_fff0, 0xffff_ffff),
        (TXCW, 0xc000_ffff, 0xffff),
        (TDBAL, 0xffff_fff0, 0xffff_ffff),
        (TIDV, 0xffff, 0xffff),
    ] {
        check(off, mask, wmask);
    }
    for i in 0..RA_ENTRIES as u32 {
        check(RA + 8 * i + 4, 0x8003_ffff, 0xffff_ffff);
    }
    for i in 0..128 {
        check(MTA + 4 * i, 0xffff_ffff, 0xffff_ffff);
    }
    r.w(RCTL, 0x06df_b3fe);
    assert_eq!(r.r(RCTL), 0x06df_b3fe);
    r.w(RCTL, 0xffff_ffff);
    assert_eq!(r.r(RCTL), RCTL_WMASK);
}

#[test]
fn io_window_reaches_the_registers() {
    let mut r = Rig::new();
    let io_w = |r: &mut Rig, off: u64, v: u32| r.dev.bar_write(1, off, &v.to_le_bytes());
    let io_r = |r: &mut Rig, off: u64| {
        let mut b = [0u8; 4];
        r.dev.bar_read(1, off, &mut b);
        u32::from_le_bytes(b)
    };
    io_w(&mut r, 0, STATUS);
    assert_eq!(io_r(&mut r, 0), STATUS);
    assert_eq!(io_r(&mut r, 4), r.r(STATUS));
    io_w(&mut r, 0, RCTL);
    io_w(&mut r, 4, RCTL_BAM);
    assert_eq!(r.r(RCTL), RCTL_BAM);
    // IOADDR: bits 31:20 read 0; writes narrower than a dword are ignored.
    io_w(&mut r, 0, 0xfff0_0008);
    assert_eq!(io_r(&mut r, 0), 8);
    r.dev.bar_write(1, 0, &[0x00, 0x01]);
    assert_eq!(io_r(&mut r, 0), 8);
    // A read of ICR through IODATA clears it, as through memory.
    r.w(ICS, INT_TXQE);
    io_w(&mut r, 0, ICR);
    assert_eq!(io_r(&mut r, 4), INT_TXQE);
    assert_eq!(r.r(ICR), 0);
}

#[test]
fn partial_writes_merge_and_reserved_registers_read_zero() {
    let mut r = Rig::new();
    r.w(RCTL, RCTL_BAM | RCTL_EN);
    r.dev.bar_write(0, u64::from(RCTL), &[0x1a]); // UPE | MPE | EN
    assert_eq!(r.r(RCTL), RCTL_BAM | 0x1a);
    r.w(0x0104, 0xffff_ffff);
    assert_eq!(r.r(0x0104), 0, "reserved");
    let mut b = [0u8; 8];
    r.dev.bar_read(0, u64::from(RA), &mut b);
    assert_eq!(&b[..6], &MAC, "an 8-byte read covers two registers");
}
