//! The Intel 82540EM gigabit Ethernet controller ("e1000", PCI 8086:100E), as the
//! 8254x Software Developer's Manual describes it, over a [`NetBackend`].
//!
//! PCI: class 0x020000, revision 3, subsystem 1AF4:1100 (what QEMU's e1000 shows),
//! BAR0 the 128 KiB register window, BAR1 the 8-byte I/O window (IOADDR at 0, IODATA
//! at 4), INTA#. DMA only while the guest has set Bus Master; a DMA address outside
//! guest RAM is a master abort (PCI status bit 13), never an access elsewhere.
//!
//! The pieces: [`eeprom`] (EECD bit-bang and EERD), [`phy`] (MDIC, link, autoneg),
//! `intr` (ICR/IMS, ITR throttling, RDTR/RADV/TIDV/TADV delay timers), `rx` (address,
//! multicast and VLAN filters, the receive FIFO, descriptor writeback, checksum
//! offload, VLAN stripping), `tx` (legacy, context and data descriptors, checksum
//! offload, TCP segmentation, VLAN insertion), [`stats`] (read-to-clear counters).
//!
//! Threads: the device is one object behind one mutex. Register accesses run on the
//! vCPU threads (a TDT write transmits right there); frames from the backend come in
//! through [`E1000Rx::pump`] on the main event loop; the timers are deadlines on the
//! device's clock that the loop's timer calls [`E1000::poll_timer`] for (the device
//! tells it a new deadline through [`E1000::set_timer_notify`]). No thread of its own.
//!
//! Receive: an accepted frame goes into the receive FIFO (the packet buffer PBA
//! gives, 48 KiB by default) and from there into the descriptors software posted, at
//! once or when it moves RDT. A frame that finds the FIFO full is missed (MPC, RXO),
//! as on the wire: frames never wait in the host, so [`E1000Rx`] needs no waker.

pub mod csum;
pub mod eeprom;
mod intr;
pub mod phy;
mod registers;
pub mod regs;
mod rx;
pub mod stats;
mod tx;

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::backends::NetBackend;
use crate::devices::nic::{NicRx, RxState};
use crate::devices::pci::{regs as pcr, BarDef, PciConfig, PciDevice, PciIds};
use crate::devices::pm::MonotonicClock;
use eeprom::Eeprom;
use intr::{Irq, Timers};
use phy::Phy;
use regs::*;
use stats::Stats;

pub const VENDOR: u16 = 0x8086;
pub const DEVICE: u16 = 0x100e;
pub const SUBSYSTEM_VENDOR: u16 = 0x1af4;
pub const SUBSYSTEM: u16 = 0x1100;
pub const CLASS: u32 = 0x02_0000;
pub const REVISION: u8 = 3;
pub const MMIO_BAR: u8 = 0;
pub const IO_BAR: u8 = 1;
/// Frames taken from the backend per [`E1000Rx::pump`].
pub const RX_BATCH: usize = 256;
/// The largest frame read from the backend.
const BACKEND_FRAME: usize = 65536;
/// CTRL after reset: link up set, 1000 Mb/s, SDP0 high, D3 wake-up advertised (the
/// bits the EEPROM's initialization words load).
const CTRL_RESET: u32 = CTRL_SLU | CTRL_SPEED_1000 | (1 << 18) | CTRL_ADVD3WUC;
const LEDCTL_RESET: u32 = 0x0706_8302;
/// Packet buffer: 64 KiB, 48 for receive.
const PBA_TOTAL_KB: u32 = 64;
const PBA_RESET: u32 = 48;

pub struct E1000 {
    cfg: PciConfig,
    mem: GuestMemoryMmap,
    clock: Box<dyn MonotonicClock>,
    backend: Option<Box<dyn NetBackend>>,
    /// Register values by offset / 4 (the special ones keep theirs elsewhere).
    regs: Box<[u32]>,
    ioaddr: u32,
    eeprom: Eeprom,
    phy: Phy,
    irq: Irq,
    timers: Timers,
    stats: Stats,
    rx: rx::RxFifo,
    tx: tx::TxState,
    /// The deadline last handed to the timer notifier.
    armed: Option<Duration>,
    notify: Option<Box<dyn Fn(Duration) + Send>>,
    rxbuf: Vec<u8>,
}

impl E1000 {
    /// A NIC with `mac` on `backend` (link down without one), DMA into `mem`, timers
    /// on `clock`.
    pub fn new(
        mac: [u8; 6],
        backend: Option<Box<dyn NetBackend>>,
        mem: GuestMemoryMmap,
        clock: Box<dyn MonotonicClock>,
    ) -> Self {
        let mut cfg = PciConfig::new(PciIds {
            vendor: VENDOR,
            device: DEVICE,
            class: CLASS,
            revision: REVISION,
            subsystem_vendor: SUBSYSTEM_VENDOR,
            subsystem: SUBSYSTEM,
        });
        // Distinct indexes, power-of-two sizes: cannot fail.
        let _ = cfg.add_bar(MMIO_BAR, BarDef::mem32(MMIO_SIZE));
        let _ = cfg.add_bar(IO_BAR, BarDef::io(IO_SIZE));
        cfg.set_interrupt_pin(1);
        let cable = backend.is_some();
        let mut d = Self {
            cfg,
            mem,
            clock,
            backend,
            regs: vec![0; (MMIO_SIZE / 4) as usize].into_boxed_slice(),
            ioaddr: 0,
            eeprom: Eeprom::new(mac, SUBSYSTEM_VENDOR, SUBSYSTEM),
            phy: Phy::new(cable),
            irq: Irq::default(),
            timers: Timers::default(),
            stats: Stats::default(),
            rx: rx::RxFifo::default(),
            tx: tx::TxState::default(),
            armed: None,
            notify: None,
            rxbuf: vec![0; BACKEND_FRAME],
        };
        d.reset();
        d
    }

    /// The MAC address the EEPROM holds.
    pub fn mac(&self) -> [u8; 6] {
        self.eeprom.mac()
    }

    /// Plugs (`true`) or pulls the cable: STATUS.LU and the PHY's link follow, and a
    /// change raises LSC.
    pub fn set_link(&mut self, up: bool) {
        if self.phy.set_cable(up) {
            self.link_changed();
        }
        self.sync_timer();
    }

    /// Whether the link is up (STATUS.LU).
    pub fn link_up(&self) -> bool {
        self.phy.link()
    }

    /// A statistics counter without clearing it (a 64-bit one by its low register).
    pub fn stat(&self, reg: u32) -> u64 {
        self.stats.peek(reg)
    }

    /// Called with each new timer deadline (on the device's clock); the VMM arms its
    /// timer and calls [`Self::poll_timer`] then.
    pub fn set_timer_notify(&mut self, notify: Box<dyn Fn(Duration) + Send>) {
        self.notify = Some(notify);
        self.armed = None;
        self.sync_timer();
    }

    /// The earliest pending deadline on the device's clock.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.next()
    }

    /// Runs what is due at `now` (delay timers, the throttle's release).
    pub fn poll_timer(&mut self, now: Duration) {
        let (causes, released) = self.timers.expire(now);
        if causes != 0 {
            self.irq.icr |= causes;
        }
        if causes != 0 || released {
            self.update_irq();
        }
        // Re-arm even when nothing moved (an early wake-up must not lose the timer).
        self.armed = None;
        self.sync_timer();
    }

    /// Moves up to [`RX_BATCH`] frames from the backend into the device. Returns how
    /// many it read.
    pub fn pump(&mut self) -> usize {
        let mut buf = std::mem::take(&mut self.rxbuf);
        let mut n = 0;
        while n < RX_BATCH {
            let Some(b) = self.backend.as_mut() else {
                break;
            };
            match b.recv(&mut buf) {
                Ok(Some(len)) => {
                    n += 1;
                    if let Some(f) = buf.get(..len) {
                        self.receive(f);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.rxbuf = buf;
        self.sync_timer();
        n
    }

    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn reg(&self, off: u32) -> u32 {
        self.regs[(off as usize / 4) % self.regs.len()]
    }

    fn set_reg(&mut self, off: u32, v: u32) {
        let n = self.regs.len();
        self.regs[(off as usize / 4) % n] = v;
    }

    /// CTRL.RST: every MAC register to its power-on value, the receive address 0
    /// reloaded from the EEPROM; the PHY, the EEPROM contents and PCI config stay.
    fn reset(&mut self) {
        self.regs.fill(0);
        self.set_reg(CTRL, CTRL_RESET);
        self.set_reg(LEDCTL, LEDCTL_RESET);
        self.set_reg(PBA, PBA_RESET);
        self.set_reg(VET, 0x8100);
        let mac = self.eeprom.mac();
        self.set_reg(RA, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        self.set_reg(
            RA + 4,
            RAH_AV | u32::from(u16::from_le_bytes([mac[4], mac[5]])),
        );
        self.eeprom.reset_interface();
        self.irq = Irq::default();
        self.timers = Timers::default();
        self.stats = Stats::default();
        self.rx = rx::RxFifo::default();
        self.tx = tx::TxState::default();
        self.cfg.set_intx(false);
    }

    fn status(&self) -> u32 {
        let mut s = STATUS_FD | STATUS_SPEED_1000 | STATUS_ASDV_1000;
        if self.phy.link() {
            s |= STATUS_LU;
        }
        s
    }

    fn link_changed(&mut self) {
        self.raise(INT_LSC);
        if self.phy.link() {
            self.process_tx();
        }
    }

    fn raise(&mut self, causes: u32) {
        self.irq.icr |= causes & INT_MASK;
        self.update_irq();
    }

    /// Drives INTA# from ICR & IMS through the throttle.
    fn update_irq(&mut self) {
        let now = self.now();
        let (level, release) = self.irq.level(now);
        self.timers.itr = release;
        if level != self.irq.asserted {
            self.irq.asserted = level;
            self.cfg.set_intx(level);
        }
    }

    /// Tells the VMM's timer about a new earliest deadline.
    fn sync_timer(&mut self) {
        let next = self.timers.next();
        if next == self.armed {
            return;
        }
        self.armed = next;
        if let (Some(d), Some(n)) = (next, &self.notify) {
            n(d);
        }
    }

    fn dma_ok(&self) -> bool {
        self.cfg.command() & pcr::CMD_BUS_MASTER != 0
    }

    /// A DMA the host bridge could not complete: PCI status "received master abort".
    fn master_abort(&mut self) {
        let st = self.cfg.u16(pcr::STATUS) | 0x2000;
        self.cfg.set_u16(pcr::STATUS, st);
    }

    fn dma_read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let ok = addr.checked_add(buf.len() as u64).is_some()
            && self.mem.read_slice(buf, GuestAddress(addr)).is_ok();
        if !ok {
            self.master_abort();
        }
        ok
    }

    fn dma_write(&mut self, addr: u64, buf: &[u8]) -> bool {
        let ok = addr.checked_add(buf.len() as u64).is_some()
            && self.mem.write_slice(buf, GuestAddress(addr)).is_ok();
        if !ok {
            self.master_abort();
        }
        ok
    }
}

impl PciDevice for E1000 {
    fn config(&self) -> &PciConfig {
        &self.cfg
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.cfg
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        let before = self.dma_ok();
        self.cfg.write(offset, data);
        if !before && self.dma_ok() {
            // Bus mastering back on: what waited for DMA goes now.
            self.process_tx();
            self.drain_rx();
            self.sync_timer();
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            MMIO_BAR => self.mmio_read(offset, data),
            IO_BAR => self.io_read(offset, data),
            _ => data.fill(0xff),
        }
        self.sync_timer();
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            MMIO_BAR => self.mmio_write(offset, data),
            IO_BAR => self.io_write(offset, data),
            _ => {}
        }
        self.sync_timer();
    }
}

/// The e1000 as the VMM holds it: the PCI root and the event loop share it.
pub type SharedE1000 = Arc<Mutex<E1000>>;

fn lock(d: &Mutex<E1000>) -> std::sync::MutexGuard<'_, E1000> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// The receive side for the event loop: [`NicRx`] over the shared device.
#[derive(Clone)]
pub struct E1000Rx(pub SharedE1000);

impl crate::devices::nic::NicLink for E1000Rx {
    fn set_link(&self, up: bool) {
        lock(&self.0).set_link(up)
    }
    fn link_up(&self) -> bool {
        lock(&self.0).link_up()
    }
}

impl NicRx for E1000Rx {
    fn fd(&self) -> Option<RawFd> {
        lock(&self.0).backend.as_ref().map(|b| b.fd())
    }

    /// Frames never wait for buffers (the FIFO drops them, as the wire would): nothing
    /// to wake.
    fn set_waker(&self, _wake: Box<dyn Fn() + Send>) {}

    fn pump(&self) -> RxState {
        lock(&self.0).pump();
        RxState::Open
    }
}

mod state;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rx;
#[cfg(test)]
mod tests_rxtx;
#[cfg(test)]
mod tests_tx;
