//! Putting a checked snapshot's state into a freshly built machine: vCPUs created and
//! loaded (after the CPUID check), every device section handed to its device, then
//! the irqchip, PIT and clock — last, so the saved interrupt state wins over anything
//! a device's restore raised.

use kvm_bindings::CpuId;

use super::{Restore, SnapshotError};
use crate::arch::x86_64::cpuid;
use crate::spec::{Kind, MachineSpec};
use crate::vmm::builder::BuildError;
use crate::vmm::vcpu::Vcpu;
use crate::vmm::vm::Vm;
use crate::vmm::wire::Devices;

/// The vCPUs, loaded; the devices and the VM state restored.
pub fn restore(
    spec: &MachineSpec,
    vm: &Vm,
    supported: &CpuId,
    r: &Restore,
    devices: &Devices,
) -> Result<Vec<Vcpu>, BuildError> {
    let topo = spec.cpus;
    if r.state.vcpus.len() != topo.count() as usize {
        return Err(SnapshotError::Mismatch(format!(
            "it has {} vCPUs, the machine {}",
            r.state.vcpus.len(),
            topo.count()
        ))
        .into());
    }
    let mut vcpus = Vec::with_capacity(r.state.vcpus.len());
    for (i, saved) in r.state.vcpus.iter().enumerate() {
        // What a guest sees here: this host's CPUID for the vCPU, as KVM reports it
        // back (which may show more than was set: a nested host's own features).
        let v = Vcpu::new(vm, i as u32)?;
        v.set_cpuid(&cpuid::vcpu_cpuid(supported, &topo, i as u32)?)?;
        let here = (v.fd().get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)).map_err(|source| {
            SnapshotError::Vcpu {
                index: i as u32,
                what: "KVM_GET_CPUID2",
                source,
            }
        })?;
        if let Some(what) = crate::snapshot::cpu::missing(&saved.cpuid, here.as_slice()) {
            return Err(SnapshotError::Host(what).into());
        }
        super::vcpu::restore(&v, saved)?;
        vcpus.push(v);
    }
    restore_devices(r, devices)?;
    super::vm::restore_chips(vm.fd(), &r.state.vm, spec.has(Kind::Pit))?;
    super::vm::restore_clock(vm.fd(), &r.state.vm)?;
    Ok(vcpus)
}

/// Each saved section to the device of that name; both lists must name the same
/// devices.
fn restore_devices(r: &Restore, devices: &Devices) -> Result<(), SnapshotError> {
    let saved = &r.state.devices;
    for (name, section) in &devices.state {
        let bytes = saved
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
            .ok_or_else(|| {
                SnapshotError::Mismatch(format!("it has no state for device `{name}`"))
            })?;
        section
            .restore(bytes)
            .map_err(|source| SnapshotError::Device {
                name: name.clone(),
                source,
            })?;
    }
    if let Some((extra, _)) = saved
        .iter()
        .find(|(n, _)| !devices.state.iter().any(|(m, _)| m == n))
    {
        return Err(SnapshotError::Mismatch(format!(
            "it has state for a device `{extra}` the machine does not have"
        )));
    }
    Ok(())
}
