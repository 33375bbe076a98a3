//! Writing a snapshot of a paused machine. Every part is written under a temporary
//! name and renamed into place, the manifest last: a reader never sees a half-written
//! snapshot, and a machine restored from an older snapshot in the same directory
//! keeps its memory (its mapping holds the old file, which the rename unlinks).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_pit_state2;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

use super::{file_sha256, io, SnapshotError};
use crate::snapshot::file::{self, MachineState};
use crate::snapshot::manifest::{self as mf, DiskRecord, Manifest, Part};
use crate::snapshot::{memory, Section};
use crate::spec::MachineSpec;
use crate::vmm::vcpu::VcpuHandle;
use crate::vmm::wire::DiskHandle;

/// What a running machine hands the snapshot side (see `Machine::control`).
pub struct SaveParts {
    pub spec: MachineSpec,
    pub vm: Arc<VmFd>,
    pub memory: GuestMemoryMmap,
    pub sections: Vec<(String, Arc<dyn Section>)>,
    pub disks: Vec<DiskHandle>,
    /// The MSRs KVM can save (`KVM_GET_MSR_INDEX_LIST`).
    pub msr_list: Vec<u32>,
    /// See `Devices::gate`.
    pub gate: Arc<Mutex<()>>,
}

/// A temporary name beside `name` in `dir`.
fn tmp(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

/// A new file only its owner can read: a snapshot holds the guest's memory.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn write_part(dir: &Path, name: &str, bytes: &[u8]) -> Result<(PathBuf, Part), SnapshotError> {
    let t = tmp(dir, name);
    std::io::Write::write_all(&mut private_file(&t).map_err(io(&t))?, bytes).map_err(io(&t))?;
    let part = Part {
        sha256: mf::sha256(bytes),
        size: bytes.len() as u64,
    };
    Ok((t, part))
}

/// Saves the machine, which must be paused (`pit`: the PIT as the pause froze it).
pub fn save(
    parts: &SaveParts,
    vcpus: &VcpuHandle,
    pit: Option<kvm_pit_state2>,
    dir: &Path,
) -> Result<Manifest, SnapshotError> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    // KVM_GET_XSAVE holds 4 KiB; a host whose XSAVE state is larger (AMX tiles) needs
    // KVM_GET_XSAVE2, which this version does not use: refuse rather than lose state.
    let xsave = parts.vm.check_extension_int(kvm_ioctls::Cap::Xsave2);
    if xsave as usize > std::mem::size_of::<kvm_bindings::kvm_xsave>() {
        return Err(SnapshotError::XsaveTooLarge(xsave as usize));
    }
    // No device code runs while the state and memory are read.
    let _gate = parts.gate.lock().unwrap_or_else(|p| p.into_inner());
    let vcpu_states = vcpus
        .with_parked(|v| {
            v.iter()
                .map(|v| super::vcpu::save(v, &parts.msr_list))
                .collect::<Result<Vec<_>, _>>()
        })
        .ok_or(SnapshotError::NotPaused)??;
    let has_pit = parts.spec.has(crate::spec::Kind::Pit);
    let vm = super::vm::save(&parts.vm, has_pit, pit)?;
    let mut devices = Vec::with_capacity(parts.sections.len());
    for (name, s) in &parts.sections {
        let bytes = s.save().map_err(|source| SnapshotError::Device {
            name: name.clone(),
            source,
        })?;
        devices.push((name.clone(), bytes));
    }
    let cpu_vendor = vcpu_states
        .first()
        .map(|v| crate::snapshot::cpu::vendor(&v.cpuid))
        .unwrap_or_default();
    let state = MachineState {
        vcpus: vcpu_states,
        vm,
        devices,
    };
    let state_bytes = file::write(&state).map_err(|source| SnapshotError::StateFile {
        path: dir.join(mf::STATE),
        source,
    })?;
    let (state_tmp, state_part) = write_part(dir, mf::STATE, &state_bytes)?;

    let mem_tmp = tmp(dir, mf::MEMORY);
    let mem_file = private_file(&mem_tmp).map_err(io(&mem_tmp))?;
    let (memory, regions) =
        memory::save(&parts.memory, &mem_file).map_err(|source| SnapshotError::Memory {
            path: mem_tmp.clone(),
            source,
        })?;
    let disks = save_disks(dir, &parts.disks)?;
    drop(_gate);

    // The snapshot is of the machine; where it was itself restored from is not part.
    let mut spec = parts.spec.clone();
    spec.boot.snapshot = None;
    let toml = crate::spec::show::to_toml(&spec);
    let (toml_tmp, machine_toml) = write_part(dir, mf::MACHINE, toml.as_bytes())?;
    for (t, name) in [
        (state_tmp, mf::STATE),
        (mem_tmp, mf::MEMORY),
        (toml_tmp, mf::MACHINE),
    ] {
        let dest = dir.join(name);
        std::fs::rename(&t, &dest).map_err(io(&dest))?;
    }
    let manifest = Manifest {
        format: mf::FORMAT.into(),
        version: mf::VERSION,
        vmrun: env!("CARGO_PKG_VERSION").into(),
        machine: parts.spec.name.clone(),
        vcpus: state.vcpus.len() as u32,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine_toml,
        state: state_part,
        memory,
        regions,
        disks,
        cpu_vendor,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| SnapshotError::Io {
        path: dir.join(mf::MANIFEST),
        source: std::io::Error::other(e),
    })?;
    let (man_tmp, _) = write_part(dir, mf::MANIFEST, text.as_bytes())?;
    let dest = dir.join(mf::MANIFEST);
    std::fs::rename(&man_tmp, &dest).map_err(io(&dest))?;
    Ok(manifest)
}

/// Each disk's identity; an overlay's contents frozen into `dir`.
fn save_disks(dir: &Path, disks: &[DiskHandle]) -> Result<Vec<DiskRecord>, SnapshotError> {
    let mut out = Vec::with_capacity(disks.len());
    for d in disks {
        let frozen = if d.overlay {
            // A unique name: a restored disk's chain may run through an earlier
            // frozen overlay in this same directory, which must stay as it is.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!("disk-{}-{nanos:x}.qcow2", d.id);
            let dest = dir.join(&name);
            let t = tmp(dir, &name);
            d.image.copy_top_to(&t).map_err(io(&t))?;
            std::fs::rename(&t, &dest).map_err(io(&dest))?;
            let (sha256, _) = file_sha256(&dest)?;
            Some(mf::Frozen { file: name, sha256 })
        } else {
            d.image.flush().map_err(io(&d.path))?;
            None
        };
        let (sha256, size) = file_sha256(&d.path)?;
        out.push(DiskRecord {
            id: d.id.clone(),
            path: d.path.clone(),
            readonly: d.image.readonly(),
            size,
            sha256,
            frozen,
        });
    }
    Ok(out)
}
