//! [`IrqLine`]s into the in-kernel interrupt controllers.
//!
//! Devices use [`KvmIrqLine`]: it drives the GSI's *level* with `KVM_IRQ_LINE`, so the
//! in-kernel PIC/IOAPIC see exactly what the device's pin does (edge-triggered inputs
//! latch the rising edge, level-triggered ones re-assert until the device lowers the
//! line). That is what a UART or an RTC needs.
//!
//! [`IrqFdLine`] is for sources that only ever pulse (an edge-triggered MSI-like event
//! raised from another thread): one `write(2)` to an eventfd KVM listens on. It cannot
//! hold a line high, so `set_level(false)` is a no-op and `set_level(true)` is a pulse;
//! do not give it to a level-triggered device.

use std::sync::Arc;

use kvm_ioctls::VmFd;
use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::devices::IrqLine;

#[derive(Debug, Error)]
pub enum IrqError {
    #[error("cannot create an eventfd for GSI {gsi}: {source}")]
    EventFd { gsi: u32, source: std::io::Error },
    #[error("KVM_IRQFD for GSI {gsi} failed: {source}")]
    Register { gsi: u32, source: kvm_ioctls::Error },
}

/// A GSI driven with `KVM_IRQ_LINE`.
pub struct KvmIrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl KvmIrqLine {
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Self {
        Self { vm, gsi }
    }

    /// The GSI this line drives.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, high: bool) {
        // The ioctl fails only for a GSI the irqchip does not route, which the spec
        // stage rules out; a device has no one to report it to, so it is dropped like
        // a pin wired to nothing.
        let _ = self.vm.set_irq_line(self.gsi, high);
    }
}

/// A GSI pulsed through an irqfd (edge only, see the module doc).
pub struct IrqFdLine {
    evt: EventFd,
    gsi: u32,
}

impl IrqFdLine {
    /// Creates the eventfd and registers it with KVM for `gsi`.
    pub fn new(vm: &VmFd, gsi: u32) -> Result<Self, IrqError> {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(|source| IrqError::EventFd { gsi, source })?;
        vm.register_irqfd(&evt, gsi)
            .map_err(|source| IrqError::Register { gsi, source })?;
        Ok(Self { evt, gsi })
    }

    pub fn gsi(&self) -> u32 {
        self.gsi
    }
}

impl IrqLine for IrqFdLine {
    fn set_level(&self, high: bool) {
        if high {
            self.pulse();
        }
    }

    fn pulse(&self) {
        // EAGAIN means the counter is saturated: an interrupt is pending already.
        let _ = self.evt.write(1);
    }
}
