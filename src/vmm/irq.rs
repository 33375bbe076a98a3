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

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQ_ROUTING_IRQCHIP,
};
use kvm_ioctls::VmFd;
use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::devices::IrqLine;

#[derive(Debug, Error)]
pub enum IrqError {
    #[error("cannot create an eventfd for GSI {gsi}")]
    EventFd { gsi: u32, source: std::io::Error },
    #[error("KVM_IRQFD for GSI {gsi} failed")]
    Register { gsi: u32, source: kvm_ioctls::Error },
    #[error("KVM_SET_GSI_ROUTING failed")]
    Routing(#[source] kvm_ioctls::Error),
}

/// IOAPIC inputs of the in-kernel irqchip.
pub const IOAPIC_PINS: u32 = 24;

fn route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip, pin },
        },
        ..Default::default()
    }
}

/// The GSI routing of a PC chipset: ISA IRQs 0–15 reach the 8259 pair (except the
/// cascade, IRQ 2) and the IOAPIC; GSI 0 (the PIT) enters IOAPIC pin 2, which is what
/// the MP table's and MADT's interrupt source override tell the guest; GSIs 16–23 go
/// to IOAPIC pins 16–23 (PCI INTx). KVM's default routing sends GSI 0 to pin 0, where a
/// guest that believes its tables finds no timer.
pub fn pc_gsi_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::with_capacity(40);
    for irq in (0..16).filter(|&i| i != 2) {
        let (chip, pin) = if irq < 8 {
            (KVM_IRQCHIP_PIC_MASTER, irq)
        } else {
            (KVM_IRQCHIP_PIC_SLAVE, irq - 8)
        };
        routes.push(route(irq, chip, pin));
    }
    for gsi in (0..IOAPIC_PINS).filter(|&i| i != 2) {
        routes.push(route(
            gsi,
            KVM_IRQCHIP_IOAPIC,
            if gsi == 0 { 2 } else { gsi },
        ));
    }
    routes
}

/// Installs [`pc_gsi_routes`] with `KVM_SET_GSI_ROUTING`.
pub fn set_pc_routing(vm: &VmFd) -> Result<(), IrqError> {
    let table = KvmIrqRouting::from_entries(&pc_gsi_routes())
        .map_err(|_| IrqError::Routing(kvm_ioctls::Error::new(libc::E2BIG)))?;
    vm.set_gsi_routing(&table).map_err(IrqError::Routing)
}

/// Delivers a PCI device's MSI / MSI-X messages with `KVM_SIGNAL_MSI` (the in-kernel
/// LAPICs decode address and data as the guest programmed them).
pub struct KvmMsi {
    vm: Arc<VmFd>,
}

impl KvmMsi {
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self { vm }
    }
}

impl crate::devices::pci::MsiSender for KvmMsi {
    fn send_msi(&self, address: u64, data: u32) -> bool {
        let msi = kvm_bindings::kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        // 0 means the guest masked it at the LAPIC: still delivered as far as the
        // device is concerned.
        self.vm.signal_msi(msi).is_ok()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(r: &kvm_irq_routing_entry) -> (u32, u32, u32) {
        // SAFETY: every entry built here is of type IRQCHIP, so `irqchip` is the member.
        let chip = unsafe { r.u.irqchip };
        (r.gsi, chip.irqchip, chip.pin)
    }

    #[test]
    fn pc_routing() {
        let routes: Vec<_> = pc_gsi_routes().iter().map(target).collect();
        assert_eq!(routes.len(), 15 + 23);
        assert!(routes.contains(&(0, KVM_IRQCHIP_PIC_MASTER, 0)));
        assert!(routes.contains(&(0, KVM_IRQCHIP_IOAPIC, 2)));
        assert!(!routes.iter().any(|r| r.0 == 2));
        assert!(routes.contains(&(4, KVM_IRQCHIP_IOAPIC, 4)));
        assert!(routes.contains(&(4, KVM_IRQCHIP_PIC_MASTER, 4)));
        assert!(routes.contains(&(14, KVM_IRQCHIP_PIC_SLAVE, 6)));
        assert!(routes.contains(&(23, KVM_IRQCHIP_IOAPIC, 23)));
        assert!(!routes
            .iter()
            .any(|r| r.0 >= 16 && r.1 != KVM_IRQCHIP_IOAPIC));
    }
}
