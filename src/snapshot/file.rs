//! `state.bin`: the machine's saved state. An 8-byte magic, a little-endian u32
//! format version, then one postcard-encoded [`MachineState`]: every vCPU, the
//! in-kernel VM state and every device's own section (its encoding is the device's).
//!
//! Reading checks the magic and version first, so an old or foreign file is refused
//! with a message saying which it is, before anything is decoded.

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const MAGIC: [u8; 8] = *b"VMRUNSTA";
/// Bumped whenever anything in [`MachineState`] or a device section changes meaning.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateFileError {
    #[error("not a vmrun state file (it does not start with the vmrun magic)")]
    Foreign,
    #[error("state format version {found}; this vmrun reads version {FORMAT_VERSION} only")]
    Version { found: u32 },
    #[error("the state file is truncated or corrupt ({0})")]
    Corrupt(String),
}

/// One vCPU as KVM holds it.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub msrs: Vec<kvm_msr_entry>,
    pub events: kvm_vcpu_events,
    pub tsc_khz: Option<u32>,
}

/// The VM's in-kernel state: PIC pair and IOAPIC, PIT, kvmclock.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    /// Chip 0 (master PIC), 1 (slave PIC), 2 (IOAPIC), as KVM_GET_IRQCHIP gives them.
    pub irqchips: Vec<kvm_irqchip>,
    pub pit: Option<kvm_pit_state2>,
    pub clock: kvm_clock_data,
}

/// Everything `state.bin` holds.
#[derive(Serialize, Deserialize)]
pub struct MachineState {
    pub vcpus: Vec<VcpuState>,
    pub vm: VmState,
    /// Device sections by name (the device id, `pci` for the PCI root), wiring order.
    pub devices: Vec<(String, Vec<u8>)>,
}

/// The bytes of `state.bin` for `state`.
pub fn write(state: &MachineState) -> Result<Vec<u8>, StateFileError> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let body = postcard::to_allocvec(state).map_err(|e| StateFileError::Corrupt(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses `state.bin`; nothing in `bytes` is trusted.
pub fn read(bytes: &[u8]) -> Result<MachineState, StateFileError> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(StateFileError::Foreign);
    }
    let rest = &bytes[MAGIC.len()..];
    let version = rest
        .get(..4)
        .and_then(|v| <[u8; 4]>::try_from(v).ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| StateFileError::Corrupt("no version".into()))?;
    if version != FORMAT_VERSION {
        return Err(StateFileError::Version { found: version });
    }
    let (state, left) = postcard::take_from_bytes::<MachineState>(&rest[4..])
        .map_err(|e| StateFileError::Corrupt(e.to_string()))?;
    if !left.is_empty() {
        return Err(StateFileError::Corrupt(format!(
            "{} bytes after the end of the state",
            left.len()
        )));
    }
    Ok(state)
}
