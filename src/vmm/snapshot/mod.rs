//! Saving a running machine to a snapshot directory ([`save`]) and building one back
//! from it ([`load`], then `vmm::build` with [`crate::vmm::BuildOptions::restore`]).
//! The format is `crate::snapshot`'s; this module reads and writes the KVM side.

pub mod load;
pub mod restore;
pub mod save;
pub mod vcpu;
pub mod vm;

use std::path::PathBuf;

use thiserror::Error;

use crate::snapshot::file::StateFileError;
use crate::snapshot::memory::MemoryFileError;
use crate::snapshot::StateError;

pub use load::{load, LoadOptions, Restore};
pub use save::{save, SaveParts};

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("vcpu {index}: {what} failed")]
    Vcpu {
        index: u32,
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("{what} failed")]
    Vm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("too many MSRs for one KVM call")]
    Msrs,
    #[error("the saved CPUID has too many entries")]
    Cpuid,
    #[error("vcpu {index}: KVM refused MSR {msr:#x} of the snapshot")]
    MsrRefused { index: u32, msr: u32 },
    #[error("this host's XSAVE state is {0} bytes (AMX?); saving it needs KVM_GET_XSAVE2, which this vmrun does not use yet")]
    XsaveTooLarge(usize),
    #[error("the machine is not paused with every vCPU parked")]
    NotPaused,
    #[error("device `{name}`")]
    Device {
        name: String,
        #[source]
        source: StateError,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Memory {
        path: PathBuf,
        #[source]
        source: MemoryFileError,
    },
    #[error("{path}")]
    StateFile {
        path: PathBuf,
        #[source]
        source: StateFileError,
    },
    #[error("{path}: not a vmrun snapshot manifest")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: a snapshot of format {format:?} version {version}; this vmrun reads {} version {} only", crate::snapshot::manifest::FORMAT, crate::snapshot::manifest::VERSION)]
    Format {
        path: PathBuf,
        format: String,
        version: u32,
    },
    #[error("{path}: its sha256 is {found}, the manifest says {want}: the snapshot is corrupt or was changed")]
    Digest {
        path: PathBuf,
        found: String,
        want: String,
    },
    #[error("the snapshot does not match this machine: {0}")]
    Mismatch(String),
    #[error("this host cannot run the snapshot's guest: it lacks {0}")]
    Host(String),
    #[error("disk `{id}` ({path}) changed since the snapshot was taken; restore with --allow-disk-change to use it as it is now")]
    DiskChanged { id: String, path: PathBuf },
}

/// An I/O error on `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// sha256 of a file's contents, streamed.
pub(crate) fn file_sha256(path: &std::path::Path) -> Result<(String, u64), SnapshotError> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).map_err(io(path))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((crate::snapshot::manifest::hex(&h.finalize()), n))
}
