//! Boot MSRs: the values a CPU leaves reset (or firmware leaves set up) that a directly
//! booted kernel expects. The regs module may supply its own list; [`default_boot_msrs`]
//! is the fallback.

use kvm_bindings::{kvm_msr_entry, Msrs};
use thiserror::Error;

pub const MSR_IA32_TSC: u32 = 0x10;
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
pub const MSR_STAR: u32 = 0xc000_0081;
pub const MSR_LSTAR: u32 = 0xc000_0082;
pub const MSR_CSTAR: u32 = 0xc000_0083;
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// IA32_MISC_ENABLE bit 0: fast string operations (set by every BIOS).
pub const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRdefType: MTRRs enabled (bit 11), default type write-back (6).
pub const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MsrError {
    #[error("too many MSRs ({0}) for one KVM_SET_MSRS")]
    TooMany(usize),
    #[error("KVM_SET_MSRS failed: {0}")]
    Set(String),
    #[error("KVM refused MSR {index:#x} (value {value:#x}); {written} of {total} were set")]
    Refused {
        index: u32,
        value: u64,
        written: usize,
        total: usize,
    },
}

fn msr(index: u32, data: u64) -> kvm_msr_entry {
    kvm_msr_entry {
        index,
        data,
        ..Default::default()
    }
}

/// SYSENTER/SYSCALL MSRs cleared, TSC at 0, fast strings on, MTRRs on with WB default.
pub fn default_boot_msrs() -> Vec<kvm_msr_entry> {
    vec![
        msr(MSR_IA32_SYSENTER_CS, 0),
        msr(MSR_IA32_SYSENTER_ESP, 0),
        msr(MSR_IA32_SYSENTER_EIP, 0),
        msr(MSR_STAR, 0),
        msr(MSR_CSTAR, 0),
        msr(MSR_KERNEL_GS_BASE, 0),
        msr(MSR_SYSCALL_MASK, 0),
        msr(MSR_LSTAR, 0),
        msr(MSR_IA32_TSC, 0),
        msr(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        msr(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ]
}

/// The `Msrs` FAM struct for `entries`.
pub fn to_msrs(entries: &[kvm_msr_entry]) -> Result<Msrs, MsrError> {
    Msrs::from_entries(entries).map_err(|_| MsrError::TooMany(entries.len()))
}

/// Turns `KVM_SET_MSRS`'s "number written" into an error naming the first refused MSR
/// (KVM stops at the first one it rejects).
pub fn check_written(entries: &[kvm_msr_entry], written: usize) -> Result<(), MsrError> {
    match entries.get(written) {
        None => Ok(()),
        Some(e) => Err(MsrError::Refused {
            index: e.index,
            value: e.data,
            written,
            total: entries.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusal() {
        let d = default_boot_msrs();
        assert!(d
            .iter()
            .any(|e| e.index == MSR_MTRR_DEF_TYPE && e.data == 0x806));
        assert_eq!(to_msrs(&d).unwrap().as_slice().len(), d.len());
        assert_eq!(check_written(&d, d.len()), Ok(()));
        let err = check_written(&d, 9).unwrap_err();
        assert_eq!(
            err,
            MsrError::Refused {
                index: MSR_IA32_MISC_ENABLE,
                value: 1,
                written: 9,
                total: 11
            }
        );
        assert!(err.to_string().contains("0x1a0"));
    }
}
