use std::sync::atomic::AtomicU32;

use super::*;
use crate::devices::virtio::testutil::{memory, mmio_init, r32, w32, Ring};
use crate::devices::virtio::{
    Activation, VirtioError, F_VERSION_1, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};

#[derive(Default)]
struct Pulses(AtomicU32);
impl IrqLine for Pulses {
    fn set_level(&self, high: bool) {
        if high {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A device with one queue that fails every notification.
struct Broken {
    active: bool,
}
impl VirtioDevice for Broken {
    fn device_type(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        F_VERSION_1 | 1
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![16]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::devices::virtio::read_config_bytes(&[1, 2, 3, 4], offset, data)
    }
    fn write_config(&mut self, _: u64, _: &[u8]) {}
    fn activate(&mut self, act: Activation) -> Result<(), VirtioError> {
        assert_eq!(act.queues[0].size, 8);
        self.active = true;
        Ok(())
    }
    fn queue_notify(&mut self, q: u16) -> Result<(), VirtioError> {
        Err(VirtioError::NoQueue(q))
    }
    fn reset(&mut self) {
        self.active = false;
    }
}

#[test]
fn registers_and_needs_reset() {
    let mem = memory(1 << 20);
    let pulses = Arc::new(Pulses::default());
    let mut t = MmioTransport::new(Box::new(Broken { active: false }), mem, pulses.clone());
    assert_eq!(r32(&mut t, reg::MAGIC), MAGIC);
    assert_eq!(r32(&mut t, reg::VERSION), 2);
    assert_eq!(r32(&mut t, reg::DEVICE_ID), 42);
    assert_eq!(r32(&mut t, reg::QUEUE_NUM_MAX), 16);
    w32(&mut t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r32(&mut t, reg::DEVICE_FEATURES), 1);
    w32(&mut t, reg::QUEUE_SEL, 5);
    assert_eq!(r32(&mut t, reg::QUEUE_NUM_MAX), 0);
    let mut b = [0u8; 2];
    t.read(0, 0x101, &mut b);
    assert_eq!(b, [2, 3]);
    // A 1-byte register access reads 0.
    let mut b = [0xffu8; 1];
    t.read(0, reg::MAGIC, &mut b);
    assert_eq!(b, [0]);
    // Features the device did not offer: FEATURES_OK stays clear.
    let st = mmio_init(&mut t, F_VERSION_1 | 2, &[Ring::new(8, 0x1000)]);
    assert_eq!(st & STATUS_FEATURES_OK, 0);
    let st = mmio_init(&mut t, F_VERSION_1, &[Ring::new(8, 0x1000)]);
    assert_eq!(st, 0xf);
    w32(&mut t, reg::QUEUE_NOTIFY, 0);
    assert_ne!(t.status() & STATUS_NEEDS_RESET, 0);
    assert_eq!(r32(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
    assert_eq!(pulses.0.load(Ordering::Relaxed), 1);
    w32(&mut t, reg::INTERRUPT_ACK, INT_CONFIG);
    assert_eq!(r32(&mut t, reg::INTERRUPT_STATUS), 0);
    // Reset clears it.
    w32(&mut t, reg::STATUS, 0);
    assert_eq!(t.status(), 0);
}

#[test]
fn bad_queue_at_driver_ok_needs_reset() {
    let mem = memory(1 << 20);
    let mut t = MmioTransport::new(
        Box::new(Broken { active: false }),
        mem,
        Arc::new(crate::devices::NoIrq),
    );
    // Rings past the end of RAM.
    let st = mmio_init(&mut t, F_VERSION_1, &[Ring::new(8, 0xfffc0)]);
    assert_ne!(st & STATUS_NEEDS_RESET, 0);
}
