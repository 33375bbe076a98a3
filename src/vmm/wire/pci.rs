//! The PCI root: the chipset's functions and the spec's bridges, configuration
//! mechanism #1 at the spec's ports (the reset register at 0xCF9 included) and the
//! ECAM window where the spec has one; PCI devices join it at their placement.

use std::sync::Arc;

use super::{insert_io, insert_mmio, shared, Devices, WireError};
use crate::devices::pci::{Ecam, PciPorts, PciRoot, SharedPciDevice};
use crate::devices::IrqLine;
use crate::spec::{DeviceSpec, MachineSpec};
use crate::vmm::bus::Bus;
use crate::vmm::vm::Vm;

pub(super) fn root(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<Option<Arc<PciRoot>>, WireError> {
    let Some(host) = &spec.chipset.pci else {
        return Ok(None);
    };
    let fd = vm.fd().clone();
    let lines = Box::new(move |gsi| {
        Arc::new(crate::vmm::irq::KvmIrqLine::new(fd.clone(), gsi)) as Arc<dyn IrqLine>
    });
    let Some(root) = PciRoot::from_spec(spec, lines)? else {
        return Ok(None);
    };
    let root = Arc::new(root);
    let ports = shared(PciPorts::new(root.clone()));
    insert_io(pio, ports, &[host.config_ports], "pci")?;
    if let Some(ecam) = host.ecam {
        insert_mmio(mmio, shared(Ecam::new(root.clone())), 0, ecam, "pci")?;
    }
    Ok(Some(root))
}

/// Puts a PCI device at its spec placement on the PCI root (the device's INTx pin, if
/// any, drives the placement's GSI).
pub(super) fn add(out: &Devices, d: &DeviceSpec, dev: SharedPciDevice) -> Result<(), WireError> {
    match (&out.pci, &d.pci) {
        (Some(root), Some(p)) => Ok(root.add_device(p, dev)?),
        _ => Ok(()),
    }
}
