//! The VM's in-kernel state: the two 8259s and the IOAPIC, the PIT, kvmclock.

use kvm_bindings::{kvm_clock_data, kvm_irqchip, kvm_pit_state2};
use kvm_ioctls::VmFd;

use super::SnapshotError;
use crate::snapshot::file::VmState;

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Vm { what, source }
}

/// `KVM_IRQCHIP_PIC_MASTER`, `_PIC_SLAVE`, `_IOAPIC`.
const CHIPS: [u32; 3] = [0, 1, 2];

/// Reads the VM's state. `pit` is the PIT as the pause froze it, if it did (the
/// in-kernel PIT keeps counting while the vCPUs are parked).
pub fn save(
    vm: &VmFd,
    has_pit: bool,
    pit: Option<kvm_pit_state2>,
) -> Result<VmState, SnapshotError> {
    let mut irqchips = Vec::with_capacity(3);
    for chip_id in CHIPS {
        let mut chip = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip)
            .map_err(ioctl("KVM_GET_IRQCHIP"))?;
        irqchips.push(chip);
    }
    let pit = match (has_pit, pit) {
        (false, _) => None,
        (true, Some(p)) => Some(p),
        (true, None) => Some(vm.get_pit2().map_err(ioctl("KVM_GET_PIT2"))?),
    };
    let clock = vm.get_clock().map_err(ioctl("KVM_GET_CLOCK"))?;
    Ok(VmState {
        irqchips,
        pit,
        clock,
    })
}

/// Loads the irqchip and PIT state into a fresh VM (after its devices are created).
pub fn restore_chips(vm: &VmFd, s: &VmState, has_pit: bool) -> Result<(), SnapshotError> {
    if s.irqchips.len() != CHIPS.len()
        || s.irqchips.iter().zip(CHIPS).any(|(c, id)| c.chip_id != id)
    {
        return Err(SnapshotError::Mismatch(
            "the irqchip state is not PIC, PIC, IOAPIC".into(),
        ));
    }
    for chip in &s.irqchips {
        vm.set_irqchip(chip).map_err(ioctl("KVM_SET_IRQCHIP"))?;
    }
    match (&s.pit, has_pit) {
        (Some(p), true) => vm.set_pit2(p).map_err(ioctl("KVM_SET_PIT2")),
        (None, false) => Ok(()),
        _ => Err(SnapshotError::Mismatch(
            "the snapshot and the machine disagree on the PIT".into(),
        )),
    }
}

/// Sets kvmclock to the saved value, just before the vCPUs run again: the guest's
/// clock resumes where it stopped.
pub fn restore_clock(vm: &VmFd, s: &VmState) -> Result<(), SnapshotError> {
    let clock = kvm_clock_data {
        clock: s.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(ioctl("KVM_SET_CLOCK"))
}
