//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): a 0x200-byte
//! register window on the system bus and one edge-triggered interrupt line.
//!
//! Registers below 0x100 take 32-bit accesses only (others read 0 and are dropped);
//! the device configuration space from 0x100 takes any width.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

use super::common::{Common, IntState};
use super::{VirtioDevice, VirtioInterrupt, INT_CONFIG, INT_VRING};
use crate::devices::{BusDevice, IrqLine, VmEvent};

/// "virt", little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The modern (virtio 1.x) register layout.
pub const VERSION: u32 = 2;
/// The vendor ID reported (QEMU's, which drivers ignore).
pub const VENDOR: u32 = 0x554d_4551;
/// The window every transport occupies.
pub const WINDOW: u64 = 0x200;

pub mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// The interrupt a virtio-mmio device raises: a bit in InterruptStatus and a pulse
/// on its GSI.
pub struct MmioInterrupt {
    state: Arc<IntState>,
    line: Arc<dyn IrqLine>,
}

impl MmioInterrupt {
    fn raise(&self, bit: u32) {
        self.state.status.fetch_or(bit, Ordering::AcqRel);
        self.line.pulse();
    }
}

impl VirtioInterrupt for MmioInterrupt {
    fn signal_used(&self, _queue: u16) {
        self.raise(INT_VRING);
    }
    fn signal_config(&self) {
        self.raise(INT_CONFIG);
    }
    fn needs_reset(&self) {
        self.state.needs_reset.store(true, Ordering::Release);
        self.raise(INT_CONFIG);
    }
}

/// A virtio device behind a virtio-mmio register window.
pub struct MmioTransport {
    common: Common,
    interrupt: Arc<MmioInterrupt>,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        line: Arc<dyn IrqLine>,
    ) -> Self {
        let common = Common::new(device, mem);
        let interrupt = Arc::new(MmioInterrupt {
            state: common.ints.clone(),
            line,
        });
        Self { common, interrupt }
    }

    /// The device status as the driver reads it.
    pub fn status(&self) -> u32 {
        self.common.status()
    }

    fn read_reg(&self, offset: u64) -> u32 {
        let c = &self.common;
        let q = c.queue_ref();
        let hi = |v: u64| (v >> 32) as u32;
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => c.device.device_type(),
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => c.device_features_word(),
            reg::QUEUE_NUM_MAX => q.map_or(0, |q| q.max_size as u32),
            reg::QUEUE_NUM => q.map_or(0, |q| q.size as u32),
            reg::QUEUE_READY => q.map_or(0, |q| q.ready as u32),
            reg::INTERRUPT_STATUS => c.ints.status.load(Ordering::Acquire),
            reg::STATUS => c.status(),
            reg::QUEUE_DESC_LOW => q.map_or(0, |q| q.desc_table as u32),
            reg::QUEUE_DESC_HIGH => q.map_or(0, |q| hi(q.desc_table)),
            reg::QUEUE_DRIVER_LOW => q.map_or(0, |q| q.avail_ring as u32),
            reg::QUEUE_DRIVER_HIGH => q.map_or(0, |q| hi(q.avail_ring)),
            reg::QUEUE_DEVICE_LOW => q.map_or(0, |q| q.used_ring as u32),
            reg::QUEUE_DEVICE_HIGH => q.map_or(0, |q| hi(q.used_ring)),
            reg::CONFIG_GENERATION => c.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        let c = &mut self.common;
        let lo = |old: u64| (old & !0xffff_ffff) | v as u64;
        let hi = |old: u64| (old & 0xffff_ffff) | ((v as u64) << 32);
        match offset {
            reg::DEVICE_FEATURES_SEL => c.device_features_sel = v,
            reg::DRIVER_FEATURES => c.set_driver_features_word(v),
            reg::DRIVER_FEATURES_SEL => c.driver_features_sel = v,
            reg::QUEUE_SEL => c.queue_sel = v,
            reg::QUEUE_NOTIFY => {
                let irq = self.interrupt.clone();
                c.notify(v, irq.as_ref());
            }
            reg::INTERRUPT_ACK => {
                c.ints.status.fetch_and(!v, Ordering::AcqRel);
            }
            reg::STATUS => c.set_status(v, self.interrupt.clone()),
            _ => {
                let Some(q) = c.queue() else {
                    return;
                };
                if q.ready && offset != reg::QUEUE_READY {
                    return;
                }
                match offset {
                    reg::QUEUE_NUM => q.size = v.min(u16::MAX as u32) as u16,
                    reg::QUEUE_READY => q.ready = v & 1 == 1,
                    reg::QUEUE_DESC_LOW => q.desc_table = lo(q.desc_table),
                    reg::QUEUE_DESC_HIGH => q.desc_table = hi(q.desc_table),
                    reg::QUEUE_DRIVER_LOW => q.avail_ring = lo(q.avail_ring),
                    reg::QUEUE_DRIVER_HIGH => q.avail_ring = hi(q.avail_ring),
                    reg::QUEUE_DEVICE_LOW => q.used_ring = lo(q.used_ring),
                    reg::QUEUE_DEVICE_HIGH => q.used_ring = hi(q.used_ring),
                    _ => {}
                }
            }
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, _region: usize, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.common.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, _region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
        if offset >= reg::CONFIG {
            self.common.device.write_config(offset - reg::CONFIG, data);
            return None;
        }
        if let (Ok(b), true) = (<[u8; 4]>::try_from(data), offset.is_multiple_of(4)) {
            self.write_reg(offset, u32::from_le_bytes(b));
        }
        None
    }
}

/// The transport keeps nothing beyond the common state: the interrupt is an edge, and
/// InterruptStatus is part of it.
impl crate::snapshot::Stateful for MmioTransport {
    fn save_state(&self) -> Result<Vec<u8>, crate::snapshot::StateError> {
        crate::snapshot::encode(&self.common.save_state()?)
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), crate::snapshot::StateError> {
        let s: super::common::CommonState = crate::snapshot::decode(bytes)?;
        let irq = self.interrupt.clone();
        self.common.restore_state(&s, irq)
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
