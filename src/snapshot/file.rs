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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MachineState {
        let vcpu = || VcpuState {
            cpuid: vec![kvm_cpuid_entry2 {
                function: 1,
                eax: 0x806f8,
                ..Default::default()
            }],
            mp_state: kvm_mp_state::default(),
            regs: kvm_regs {
                rip: 0x1234,
                ..Default::default()
            },
            sregs: kvm_sregs::default(),
            xsave: kvm_xsave::default(),
            xcrs: kvm_xcrs::default(),
            debugregs: kvm_debugregs::default(),
            lapic: kvm_lapic_state::default(),
            msrs: vec![kvm_msr_entry {
                index: 0x10,
                data: 99,
                ..Default::default()
            }],
            events: kvm_vcpu_events::default(),
            tsc_khz: Some(2_000_000),
        };
        MachineState {
            vcpus: vec![vcpu(), vcpu()],
            vm: VmState {
                irqchips: vec![kvm_irqchip::default(); 3],
                pit: Some(kvm_pit_state2::default()),
                clock: kvm_clock_data::default(),
            },
            devices: vec![("com1".into(), vec![1, 2, 3]), ("pci".into(), vec![9; 300])],
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let bytes = write(&sample()).unwrap();
        let back = read(&bytes).unwrap();
        assert_eq!(back.vcpus[1].regs.rip, 0x1234);
        assert_eq!(back.devices, sample().devices);
        assert_eq!(
            read(b"not a state file").err(),
            Some(StateFileError::Foreign)
        );
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(read(&v2).err(), Some(StateFileError::Version { found: 2 }));
        assert!(matches!(
            read(&bytes[..12]),
            Err(StateFileError::Corrupt(_))
        ));
    }

    /// 100,000 hostile state files: truncated, bit-flipped, grown, spliced and random;
    /// the parser answers each (most with an error) and never panics.
    #[test]
    fn fuzz_the_parser() {
        let good = write(&sample()).unwrap();
        let mut rng = crate::testing::Rng(0x5eed_5a7e);
        let mut accepted = 0u32;
        for i in 0..100_000u32 {
            let mut b = good.clone();
            match i % 5 {
                0 => {
                    let n = rng.below(b.len() as u64) as usize;
                    b.truncate(n)
                }
                1 => {
                    for _ in 0..=rng.below(8) {
                        let at = rng.below(b.len() as u64) as usize;
                        b[at] ^= 1 << rng.below(8);
                    }
                }
                2 => {
                    let at = 12 + rng.below((b.len() - 12) as u64) as usize;
                    let n = rng.below(16) as usize;
                    b.splice(at..at, (0..n).map(|_| rng.below(256) as u8));
                }
                3 => {
                    // A length prefix made huge.
                    let at = 12 + rng.below((b.len() - 12) as u64) as usize;
                    b[at] = 0xff;
                    if at + 1 < b.len() {
                        b[at + 1] = 0xff;
                    }
                }
                _ => {
                    let n = rng.below(4096) as usize;
                    b = MAGIC
                        .iter()
                        .copied()
                        .chain(FORMAT_VERSION.to_le_bytes())
                        .collect();
                    b.extend((0..n).map(|_| rng.below(256) as u8));
                }
            }
            if read(&b).is_ok() {
                accepted += 1;
            }
        }
        // Flips inside register values still parse: the restore side checks those.
        assert!(accepted < 100_000);
    }
}
