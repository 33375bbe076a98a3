//! Opening `/dev/kvm` and checking that the host's KVM offers what vmrun relies on.
//!
//! Every failure names what is missing and what to do about it, because the person who
//! reads it usually sits at a machine where virtualization is simply not set up.

use kvm_bindings::{CpuId, KVM_API_VERSION, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Cap;
use thiserror::Error;

/// The capabilities vmrun cannot run without, with the names the KVM API documents.
pub const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::SetIdentityMapAddr, "KVM_CAP_SET_IDENTITY_MAP_ADDR"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::MpState, "KVM_CAP_MP_STATE"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

#[derive(Debug, Error)]
pub enum KvmError {
    #[error(
        "/dev/kvm not found: KVM is not available (is the kvm module loaded, or is this a VM \
         without nested virtualization?)"
    )]
    NotFound,
    #[error(
        "permission denied on /dev/kvm: add your user to the kvm group \
         (sudo usermod -aG kvm $USER) and log in again"
    )]
    PermissionDenied,
    #[error("cannot open /dev/kvm")]
    Open(#[source] kvm_ioctls::Error),
    #[error("/dev/kvm speaks KVM API version {found}, vmrun needs version {KVM_API_VERSION}")]
    ApiVersion { found: i32 },
    #[error("this host's KVM lacks capabilities vmrun needs: {}", .0.join(", "))]
    MissingCaps(Vec<&'static str>),
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
}

/// An open, checked `/dev/kvm`.
pub struct Kvm {
    kvm: kvm_ioctls::Kvm,
    max_vcpus: usize,
}

impl Kvm {
    /// Opens `/dev/kvm` and checks the API version and [`REQUIRED_CAPS`].
    pub fn open() -> Result<Self, KvmError> {
        let kvm = kvm_ioctls::Kvm::new().map_err(|e| match e.errno() {
            libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::NotFound,
            libc::EACCES | libc::EPERM => KvmError::PermissionDenied,
            _ => KvmError::Open(e),
        })?;
        let found = kvm.get_api_version();
        if found != KVM_API_VERSION as i32 {
            return Err(KvmError::ApiVersion { found });
        }
        let missing = missing_caps(|cap| kvm.check_extension(cap));
        if !missing.is_empty() {
            return Err(KvmError::MissingCaps(missing));
        }
        let max_vcpus = kvm.get_max_vcpus();
        Ok(Self { kvm, max_vcpus })
    }

    /// The most vCPUs one VM may have (`KVM_CAP_MAX_VCPUS`, else `KVM_CAP_NR_VCPUS`).
    pub fn max_vcpus(&self) -> usize {
        self.max_vcpus
    }

    /// Whether guest-read-only memslots (`KVM_CAP_READONLY_MEM`) exist, for ROMs.
    pub fn has_readonly_mem(&self) -> bool {
        self.kvm.check_extension(Cap::ReadonlyMem)
    }

    /// What the host CPU and KVM together can offer a guest; the base of every vCPU's
    /// CPUID (see [`crate::arch::x86_64::cpuid`]).
    pub fn supported_cpuid(&self) -> Result<CpuId, KvmError> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmError::SupportedCpuid)
    }

    /// The underlying handle, for the few ioctls this module does not wrap.
    pub fn fd(&self) -> &kvm_ioctls::Kvm {
        &self.kvm
    }
}

/// The names of the required capabilities `has` says are absent.
fn missing_caps(has: impl Fn(Cap) -> bool) -> Vec<&'static str> {
    REQUIRED_CAPS
        .iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_cap() {
        let missing = missing_caps(|c| !matches!(c, Cap::Pit2 | Cap::MpState));
        assert_eq!(missing, vec!["KVM_CAP_PIT2", "KVM_CAP_MP_STATE"]);
        let msg = KvmError::MissingCaps(missing).to_string();
        assert!(msg.contains("KVM_CAP_PIT2, KVM_CAP_MP_STATE"), "{msg}");
        assert!(missing_caps(|_| true).is_empty());
    }

    #[test]
    fn open_errors_say_what_to_do() {
        assert!(KvmError::NotFound
            .to_string()
            .contains("nested virtualization"));
        assert!(KvmError::PermissionDenied
            .to_string()
            .contains("usermod -aG kvm"));
    }
}
