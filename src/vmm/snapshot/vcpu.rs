//! One vCPU's KVM state, read while it is parked and written before it first runs.
//!
//! Restore order matters: CPUID first (it decides which MSRs and XSAVE features
//! exist), then the special registers (EFER, CR4, the APIC base), the general and
//! XSAVE/XCR state, the LAPIC, the MSRs (the TSC among them), debug registers, and
//! last the MP state and the pending events (an interrupt or exception KVM was about
//! to deliver), which depend on everything before.

use kvm_bindings::{kvm_msr_entry, CpuId, Msrs};

use super::SnapshotError;
use crate::snapshot::file::VcpuState;
use crate::vmm::vcpu::Vcpu;

fn ioctl(index: u32, what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Vcpu {
        index,
        what,
        source,
    }
}

/// Reads every MSR of `list` KVM lets us read, dropping the ones it refuses.
fn read_msrs(v: &Vcpu, list: &[u32]) -> Result<Vec<kvm_msr_entry>, SnapshotError> {
    let mut want: Vec<u32> = list.to_vec();
    let mut out = Vec::with_capacity(want.len());
    for chunk in want.chunks_mut(200) {
        let mut rest: Vec<u32> = chunk.to_vec();
        while !rest.is_empty() {
            let entries: Vec<kvm_msr_entry> = rest
                .iter()
                .map(|&index| kvm_msr_entry {
                    index,
                    ..Default::default()
                })
                .collect();
            let mut msrs = Msrs::from_entries(&entries).map_err(|_| SnapshotError::Msrs)?;
            let n = v
                .fd()
                .get_msrs(&mut msrs)
                .map_err(ioctl(v.index(), "KVM_GET_MSRS"))?;
            out.extend_from_slice(&msrs.as_slice()[..n.min(rest.len())]);
            // KVM stops at the first MSR it cannot read: skip it, go on after it.
            rest.drain(..(n + 1).min(rest.len()));
        }
    }
    Ok(out)
}

/// The state of a parked vCPU.
pub fn save(v: &Vcpu, msr_list: &[u32]) -> Result<VcpuState, SnapshotError> {
    let i = v.index();
    let fd = v.fd();
    let cpuid = fd
        .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl(i, "KVM_GET_CPUID2"))?;
    Ok(VcpuState {
        cpuid: cpuid.as_slice().to_vec(),
        mp_state: fd.get_mp_state().map_err(ioctl(i, "KVM_GET_MP_STATE"))?,
        regs: fd.get_regs().map_err(ioctl(i, "KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(ioctl(i, "KVM_GET_SREGS"))?,
        xsave: fd.get_xsave().map_err(ioctl(i, "KVM_GET_XSAVE"))?,
        xcrs: fd.get_xcrs().map_err(ioctl(i, "KVM_GET_XCRS"))?,
        debugregs: fd.get_debug_regs().map_err(ioctl(i, "KVM_GET_DEBUGREGS"))?,
        lapic: fd.get_lapic().map_err(ioctl(i, "KVM_GET_LAPIC"))?,
        msrs: read_msrs(v, msr_list)?,
        events: fd
            .get_vcpu_events()
            .map_err(ioctl(i, "KVM_GET_VCPU_EVENTS"))?,
        tsc_khz: fd.get_tsc_khz().ok(),
    })
}

/// Puts `s` into a fresh vCPU (created, not yet run).
pub fn restore(v: &Vcpu, s: &VcpuState) -> Result<(), SnapshotError> {
    let i = v.index();
    let fd = v.fd();
    let cpuid = CpuId::from_entries(&s.cpuid).map_err(|_| SnapshotError::Cpuid)?;
    fd.set_cpuid2(&cpuid).map_err(ioctl(i, "KVM_SET_CPUID2"))?;
    if let Some(khz) = s.tsc_khz {
        // Not every host can scale the TSC; a guest on one without it sees the host's.
        if fd.get_tsc_khz().ok() != Some(khz) {
            let _ = fd.set_tsc_khz(khz);
        }
    }
    fd.set_sregs(&s.sregs).map_err(ioctl(i, "KVM_SET_SREGS"))?;
    fd.set_regs(&s.regs).map_err(ioctl(i, "KVM_SET_REGS"))?;
    // SAFETY: a kvm_xsave struct of the legacy 4 KiB size, which is what
    // KVM_SET_XSAVE reads (the state was saved with KVM_GET_XSAVE, not XSAVE2).
    unsafe { fd.set_xsave(&s.xsave) }.map_err(ioctl(i, "KVM_SET_XSAVE"))?;
    fd.set_xcrs(&s.xcrs).map_err(ioctl(i, "KVM_SET_XCRS"))?;
    fd.set_lapic(&s.lapic).map_err(ioctl(i, "KVM_SET_LAPIC"))?;
    let msrs = Msrs::from_entries(&s.msrs).map_err(|_| SnapshotError::Msrs)?;
    let n = fd.set_msrs(&msrs).map_err(ioctl(i, "KVM_SET_MSRS"))?;
    if n < s.msrs.len() {
        return Err(SnapshotError::MsrRefused {
            index: i,
            msr: s.msrs[n].index,
        });
    }
    fd.set_debug_regs(&s.debugregs)
        .map_err(ioctl(i, "KVM_SET_DEBUGREGS"))?;
    fd.set_mp_state(s.mp_state)
        .map_err(ioctl(i, "KVM_SET_MP_STATE"))?;
    fd.set_vcpu_events(&s.events)
        .map_err(ioctl(i, "KVM_SET_VCPU_EVENTS"))
}
