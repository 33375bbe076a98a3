//! The PCI root: the chipset's functions and the spec's bridges, configuration
//! mechanism #1 at the spec's ports (the reset register at 0xCF9 included) and the
//! ECAM window where the spec has one; PCI devices join it at their placement.

use std::sync::Arc;

use super::{insert_io, insert_mmio, shared, Devices, WireError};
use crate::devices::pci::root::PciSection;
use crate::devices::pci::{Ecam, PciPorts, PciRoot, SharedPciDevice};
use crate::devices::IrqLine;
use crate::snapshot::state::{Section, StateError};
use crate::spec::{DeviceSpec, MachineSpec};
use crate::vmm::bus::Bus;
use crate::vmm::vm::Vm;

/// The PCI root and its snapshot section (`pci`).
pub(super) type RootAndSection = (Arc<PciRoot>, Arc<dyn Section>);

pub(super) fn root(
    spec: &MachineSpec,
    vm: &Vm,
    pio: &mut Bus,
    mmio: &mut Bus,
) -> Result<Option<RootAndSection>, WireError> {
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
    insert_io(pio, ports.clone(), &[host.config_ports], "pci")?;
    if let Some(ecam) = host.ecam {
        insert_mmio(mmio, shared(Ecam::new(root.clone())), 0, ecam, "pci")?;
    }
    let section = Arc::new(PciSection::new(root.clone(), Some(ports)));
    Ok(Some((root, section)))
}

/// A PCI device's snapshot section: the device's own (its config space included),
/// then the root's BAR decode table rebuilt from the restored BARs and command
/// register, as after a guest's header write.
struct OnPci {
    dev: Arc<dyn Section>,
    root: Arc<PciRoot>,
}

impl Section for OnPci {
    fn save(&self) -> Result<Vec<u8>, StateError> {
        self.dev.save()
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), StateError> {
        let r = self.dev.restore(bytes);
        self.root.refresh();
        r
    }
}

/// Puts a PCI device at its spec placement on the PCI root (the device's INTx pin, if
/// any, drives the placement's GSI) and registers its snapshot section `state`.
pub(super) fn add(
    out: &mut Devices,
    d: &DeviceSpec,
    dev: SharedPciDevice,
    state: Arc<dyn Section>,
) -> Result<(), WireError> {
    let (Some(root), Some(p)) = (&out.pci, &d.pci) else {
        out.state.push((d.id.clone(), state));
        return Ok(());
    };
    root.add_device(p, dev)?;
    let root = root.clone();
    out.state
        .push((d.id.clone(), Arc::new(OnPci { dev: state, root })));
    Ok(())
}
