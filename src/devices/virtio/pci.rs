//! The virtio-pci modern transport (virtio 1.2, section 4.1): PCI 1af4:1040+type,
//! revision 1, with the vendor capabilities that point into BAR0 (64-bit memory):
//!
//! ```text
//! 0x0000  common configuration      0x2000  device configuration
//! 0x1000  ISR status (read clears)  0x3000  notifications (queue q at 0x3000 + 4q)
//! 0x4000  MSI-X table               0x5000  MSI-X PBA
//! ```
//!
//! Interrupts go out as MSI-X messages when the driver enabled MSI-X and gave the
//! queue (or the configuration) a vector, else through INTx (the placement's GSI),
//! with the ISR telling which and a read of it lowering the line.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryMmap;

use super::common::{Common, IntState};
use super::{VirtioDevice, VirtioInterrupt, INT_CONFIG, INT_VRING};
use crate::devices::pci::{regs, BarDef, MsiSender, PciConfig, PciDevice, PciIds};
use crate::devices::IrqLine;

pub const BAR_SIZE: u64 = 0x8000;
pub const COMMON: u64 = 0x0000;
pub const ISR: u64 = 0x1000;
pub const DEVICE_CFG: u64 = 0x2000;
pub const NOTIFY: u64 = 0x3000;
pub const NOTIFY_MULT: u32 = 4;
pub const MSIX_TABLE: u64 = 0x4000;
pub const MSIX_PBA: u64 = 0x5000;
const NO_VECTOR: u16 = 0xffff;

/// MSI-X and INTx state the interrupt object shares with the transport.
struct Irq {
    ints: Arc<IntState>,
    /// (address, data, masked) per vector.
    table: Vec<(u64, u32, bool)>,
    pending: Vec<bool>,
    msix_enabled: bool,
    msix_masked: bool,
    config_vector: u16,
    queue_vectors: Vec<u16>,
    intx: Option<Arc<dyn IrqLine>>,
    intx_disabled: bool,
    msi: Arc<dyn MsiSender>,
}

impl Irq {
    fn raise(&mut self, vector: u16, bit: u32) {
        if self.msix_enabled {
            let Some(&(addr, data, masked)) = self.table.get(vector as usize) else {
                return; // NO_VECTOR: the driver wants no interrupt
            };
            if masked || self.msix_masked {
                if let Some(p) = self.pending.get_mut(vector as usize) {
                    *p = true;
                }
            } else {
                self.msi.send_msi(addr, data);
            }
            return;
        }
        self.ints.status.fetch_or(bit, Ordering::AcqRel);
        self.update_intx();
    }

    fn update_intx(&self) {
        let level = !self.msix_enabled
            && !self.intx_disabled
            && self.ints.status.load(Ordering::Acquire) != 0;
        if let Some(l) = &self.intx {
            l.set_level(level);
        }
    }

    /// Sends what became unmasked while pending.
    fn flush_pending(&mut self) {
        if !self.msix_enabled || self.msix_masked {
            return;
        }
        for v in 0..self.table.len() {
            let (addr, data, masked) = self.table[v];
            if self.pending[v] && !masked {
                self.pending[v] = false;
                self.msi.send_msi(addr, data);
            }
        }
    }
}

fn lock(m: &Mutex<Irq>) -> std::sync::MutexGuard<'_, Irq> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct PciInterrupt(Arc<Mutex<Irq>>);

impl VirtioInterrupt for PciInterrupt {
    fn signal_used(&self, queue: u16) {
        let mut i = lock(&self.0);
        let v = i
            .queue_vectors
            .get(queue as usize)
            .copied()
            .unwrap_or(NO_VECTOR);
        i.raise(v, INT_VRING);
    }
    fn signal_config(&self) {
        let mut i = lock(&self.0);
        let v = i.config_vector;
        i.raise(v, INT_CONFIG);
    }
    fn needs_reset(&self) {
        lock(&self.0)
            .ints
            .needs_reset
            .store(true, Ordering::Release);
        self.signal_config();
    }
}

/// A virtio device behind the virtio-pci modern transport.
pub struct VirtioPci {
    cfg: PciConfig,
    common: Common,
    irq: Arc<Mutex<Irq>>,
    interrupt: Arc<PciInterrupt>,
    msix_cap: u16,
}

impl VirtioPci {
    /// `class` is the PCI class code (0x018000 for a disk, 0x020000 for a NIC).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        class: u32,
        msi: Arc<dyn MsiSender>,
    ) -> Self {
        let ty = device.device_type();
        let common = Common::new(device, mem);
        let nq = common.queues.len();
        let nvec = nq + 1;
        let mut cfg = PciConfig::new(PciIds {
            vendor: 0x1af4,
            device: 0x1040 + ty as u16,
            class,
            revision: 1,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        // Ids and the layout are fixed: add_bar and add_capability cannot fail here.
        let _ = cfg.add_bar(0, BarDef::mem64(BAR_SIZE));
        cfg.set_interrupt_pin(1);
        let mut msix = Vec::new();
        msix.extend_from_slice(&((nvec - 1) as u16).to_le_bytes());
        msix.extend_from_slice(&(MSIX_TABLE as u32).to_le_bytes());
        msix.extend_from_slice(&(MSIX_PBA as u32).to_le_bytes());
        let msix_cap = cfg.add_capability(regs::CAP_ID_MSIX, &msix).unwrap_or(0);
        cfg.set_wmask(msix_cap + 2, &[0, 0xc0]);
        for (ty, off, len, extra) in [
            (1u8, COMMON, 0x38u32, None),
            (3, ISR, 1, None),
            (4, DEVICE_CFG, 0x1000, None),
            (2, NOTIFY, NOTIFY_MULT * nq as u32, Some(NOTIFY_MULT)),
        ] {
            let mut b = vec![if extra.is_some() { 20 } else { 16 }, ty, 0, 0, 0, 0];
            b.extend_from_slice(&(off as u32).to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            if let Some(m) = extra {
                b.extend_from_slice(&m.to_le_bytes());
            }
            let _ = cfg.add_capability(regs::CAP_ID_VENDOR, &b);
        }
        let irq = Arc::new(Mutex::new(Irq {
            ints: common.ints.clone(),
            table: vec![(0, 0, true); nvec],
            pending: vec![false; nvec],
            msix_enabled: false,
            msix_masked: false,
            config_vector: NO_VECTOR,
            queue_vectors: vec![NO_VECTOR; nq],
            intx: None,
            intx_disabled: false,
            msi,
        }));
        let interrupt = Arc::new(PciInterrupt(irq.clone()));
        Self {
            cfg,
            common,
            irq,
            interrupt,
            msix_cap,
        }
    }

    /// The device status as the driver reads it.
    pub fn status(&self) -> u32 {
        self.common.status()
    }

    fn common_read(&self, off: u64, data: &mut [u8]) {
        let c = &self.common;
        let irq = lock(&self.irq);
        let q = c.queue_ref();
        let sel = c.queue_sel as usize;
        let mut r = [0u8; 0x38];
        let mut put = |o: usize, b: &[u8]| r[o..o + b.len()].copy_from_slice(b);
        put(0x00, &c.device_features_sel.to_le_bytes());
        put(0x04, &c.device_features_word().to_le_bytes());
        put(0x08, &c.driver_features_sel.to_le_bytes());
        let gf = match c.driver_features_sel {
            0 => c.driver_features as u32,
            1 => (c.driver_features >> 32) as u32,
            _ => 0,
        };
        put(0x0c, &gf.to_le_bytes());
        put(0x10, &irq.config_vector.to_le_bytes());
        put(0x12, &(c.queues.len() as u16).to_le_bytes());
        put(0x14, &[c.status() as u8, c.config_generation as u8]);
        put(0x16, &(c.queue_sel as u16).to_le_bytes());
        if let Some(q) = q {
            put(0x18, &q.size.to_le_bytes());
            let v = irq.queue_vectors.get(sel).copied().unwrap_or(NO_VECTOR);
            put(0x1a, &v.to_le_bytes());
            put(0x1c, &(q.ready as u16).to_le_bytes());
            put(0x1e, &(sel as u16).to_le_bytes());
            put(0x20, &q.desc_table.to_le_bytes());
            put(0x28, &q.avail_ring.to_le_bytes());
            put(0x30, &q.used_ring.to_le_bytes());
        }
        super::read_config_bytes(&r, off, data);
    }

    fn common_write(&mut self, off: u64, data: &[u8]) {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        let v = u64::from_le_bytes(b);
        let c = &mut self.common;
        let sel = c.queue_sel as usize;
        match (off, n) {
            (0x00, 4) => c.device_features_sel = v as u32,
            (0x08, 4) => c.driver_features_sel = v as u32,
            (0x0c, 4) => c.set_driver_features_word(v as u32),
            (0x10, 2) => {
                let mut irq = lock(&self.irq);
                let ok = (v as usize) < irq.table.len();
                irq.config_vector = if ok { v as u16 } else { NO_VECTOR };
            }
            (0x14, 1) => c.set_status(v as u32, self.interrupt.clone()),
            (0x16, 2) => c.queue_sel = v as u32,
            (0x1a, 2) if !c.active => {
                let mut irq = lock(&self.irq);
                let ok = (v as usize) < irq.table.len();
                if let Some(qv) = irq.queue_vectors.get_mut(sel) {
                    *qv = if ok { v as u16 } else { NO_VECTOR };
                }
            }
            _ => {
                let Some(q) = c.queue() else {
                    return;
                };
                if q.ready {
                    return;
                }
                let lo = |old: u64| (old & !0xffff_ffff) | (v & 0xffff_ffff);
                let hi = |old: u64| (old & 0xffff_ffff) | (v << 32);
                match (off, n) {
                    (0x18, 2) => q.size = v as u16,
                    (0x1c, 2) => q.ready = v & 1 == 1,
                    (0x20, 8) => q.desc_table = v,
                    (0x28, 8) => q.avail_ring = v,
                    (0x30, 8) => q.used_ring = v,
                    (0x20, 4) => q.desc_table = lo(q.desc_table),
                    (0x24, 4) => q.desc_table = hi(q.desc_table),
                    (0x28, 4) => q.avail_ring = lo(q.avail_ring),
                    (0x2c, 4) => q.avail_ring = hi(q.avail_ring),
                    (0x30, 4) => q.used_ring = lo(q.used_ring),
                    (0x34, 4) => q.used_ring = hi(q.used_ring),
                    _ => {}
                }
            }
        }
    }

    fn msix_read(&self, off: u64, data: &mut [u8]) {
        let irq = lock(&self.irq);
        if off >= MSIX_PBA - MSIX_TABLE {
            let mut bits = [0u8; 8];
            for (v, p) in irq.pending.iter().enumerate().take(64) {
                if *p {
                    bits[v / 8] |= 1 << (v % 8);
                }
            }
            return super::read_config_bytes(&bits, off - (MSIX_PBA - MSIX_TABLE), data);
        }
        let mut t = Vec::with_capacity(16 * irq.table.len());
        for &(a, d, m) in &irq.table {
            t.extend_from_slice(&a.to_le_bytes());
            t.extend_from_slice(&d.to_le_bytes());
            t.extend_from_slice(&(m as u32).to_le_bytes());
        }
        super::read_config_bytes(&t, off, data);
    }

    fn msix_write(&mut self, off: u64, data: &[u8]) {
        let mut irq = lock(&self.irq);
        let (v, field) = ((off / 16) as usize, off % 16);
        let Some(e) = irq.table.get_mut(v) else {
            return;
        };
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&e.0.to_le_bytes());
        raw[8..12].copy_from_slice(&e.1.to_le_bytes());
        raw[12..].copy_from_slice(&(e.2 as u32).to_le_bytes());
        for (i, b) in data.iter().enumerate() {
            if let Some(r) = raw.get_mut(field as usize + i) {
                *r = *b;
            }
        }
        e.0 = u64::from_le_bytes(raw[..8].try_into().unwrap_or([0; 8]));
        e.1 = u32::from_le_bytes(raw[8..12].try_into().unwrap_or([0; 4]));
        e.2 = raw[12] & 1 != 0;
        irq.flush_pending();
    }

    /// Mirrors the MSI-X enable/mask and INTx Disable bits into the interrupt state.
    fn sync_config(&mut self) {
        let ctl = self.cfg.u16(self.msix_cap + 2);
        let mut irq = lock(&self.irq);
        irq.msix_enabled = ctl & 0x8000 != 0;
        irq.msix_masked = ctl & 0x4000 != 0;
        irq.intx_disabled = self.cfg.command() & regs::CMD_INTX_DISABLE != 0;
        irq.update_intx();
        irq.flush_pending();
    }
}

impl PciDevice for VirtioPci {
    fn config(&self) -> &PciConfig {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.cfg
    }

    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.cfg.read(offset, data);
        // Status bit 3: the INTx level (the ISR is not empty).
        let st = regs::STATUS as usize;
        let pending = self.common.ints.status.load(Ordering::Acquire) != 0;
        let o = offset as usize;
        if pending && o <= st && st < o + data.len() {
            data[st - o] |= regs::STATUS_INTERRUPT as u8;
        }
    }

    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.cfg.write(offset, data);
        self.sync_config();
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if bar != 0 {
            return data.fill(0xff);
        }
        match offset {
            o if o < ISR => self.common_read(o - COMMON, data),
            o if o < DEVICE_CFG => {
                data.fill(0);
                if o == ISR {
                    let irq = lock(&self.irq);
                    data[0] = irq.ints.status.swap(0, Ordering::AcqRel) as u8;
                    irq.update_intx();
                }
            }
            o if o < NOTIFY => self.common.device.read_config(o - DEVICE_CFG, data),
            o if o < MSIX_TABLE => data.fill(0),
            o => self.msix_read(o - MSIX_TABLE, data),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != 0 {
            return;
        }
        match offset {
            o if o < ISR => self.common_write(o - COMMON, data),
            o if o < DEVICE_CFG => {}
            o if o < NOTIFY => self.common.device.write_config(o - DEVICE_CFG, data),
            o if o < MSIX_TABLE => {
                let q = (o - NOTIFY) / NOTIFY_MULT as u64;
                let irq = self.interrupt.clone();
                self.common.notify(q as u32, irq.as_ref());
            }
            o => self.msix_write(o - MSIX_TABLE, data),
        }
    }

    fn set_intx_line(&mut self, line: Arc<dyn IrqLine>) {
        lock(&self.irq).intx = Some(line);
    }
}

#[path = "pci_state.rs"]
mod state;

#[cfg(test)]
#[path = "pci_tests.rs"]
mod tests;
