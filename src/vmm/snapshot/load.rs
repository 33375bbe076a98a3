//! Opening a snapshot to restore it: the manifest's format and version first, then
//! every part against its digest (memory only by size and layout unless asked: its
//! pages are mapped, not read), the disks against their recorded identity. Nothing is
//! built until all of it holds, so a bad snapshot is refused whole.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{file_sha256, io, SnapshotError};
use crate::snapshot::file::{self, MachineState};
use crate::snapshot::manifest::{self as mf, Manifest};
use crate::snapshot::memory;

/// How strictly to open a snapshot.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The manifest's sha256 must be this (`[boot] snapshot = { sha256 = … }`).
    pub manifest_sha256: Option<String>,
    /// Use writable disks as they are now even if they changed since.
    pub allow_disk_change: bool,
    /// Also check memory.bin's digest (reads every data page).
    pub verify_memory: bool,
}

/// A snapshot, checked, ready to build from.
pub struct Restore {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub state: MachineState,
    /// The snapshot's `machine.toml`.
    pub machine_toml: String,
    pub memory: File,
}

impl Restore {
    /// (device id, frozen overlay path) for each disk whose overlay was frozen.
    pub fn frozen_disks(&self) -> Vec<(String, PathBuf)> {
        (self.manifest.disks.iter())
            .filter_map(|d| Some((d.id.clone(), self.dir.join(&d.frozen.as_ref()?.file))))
            .collect()
    }
}

fn read_part(dir: &Path, name: &str, part: &mf::Part) -> Result<Vec<u8>, SnapshotError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let found = mf::sha256(&bytes);
    if found != part.sha256 {
        return Err(SnapshotError::Digest {
            path,
            found,
            want: part.sha256.clone(),
        });
    }
    Ok(bytes)
}

fn read_manifest(dir: &Path, opts: &LoadOptions) -> Result<Manifest, SnapshotError> {
    let path = dir.join(mf::MANIFEST);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    if let Some(want) = &opts.manifest_sha256 {
        let found = mf::sha256(&bytes);
        if !found.eq_ignore_ascii_case(want.trim()) {
            return Err(SnapshotError::Digest {
                path,
                found,
                want: want.clone(),
            });
        }
    }
    // The format and version are read on their own first, so a newer or foreign
    // manifest is named as such rather than as malformed.
    #[derive(serde::Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let head: Head = serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Manifest {
        path: path.clone(),
        source,
    })?;
    if head.format != mf::FORMAT || head.version != mf::VERSION {
        return Err(SnapshotError::Format {
            path,
            format: head.format,
            version: head.version,
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Manifest { path, source })
}

/// Opens and checks the snapshot in `dir`.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Restore, SnapshotError> {
    // Absolute: a frozen overlay becomes the backing file of one created elsewhere.
    let dir = &std::path::absolute(dir).map_err(io(dir))?;
    let manifest = read_manifest(dir, opts)?;
    let toml = read_part(dir, mf::MACHINE, &manifest.machine_toml)?;
    let machine_toml = String::from_utf8(toml)
        .map_err(|_| SnapshotError::Mismatch(format!("{} is not UTF-8", mf::MACHINE)))?;
    let state_path = dir.join(mf::STATE);
    let state_bytes = read_part(dir, mf::STATE, &manifest.state)?;
    let state = file::read(&state_bytes).map_err(|source| SnapshotError::StateFile {
        path: state_path,
        source,
    })?;
    if state.vcpus.len() != manifest.vcpus as usize {
        return Err(SnapshotError::Mismatch(format!(
            "the manifest says {} vCPUs, the state holds {}",
            manifest.vcpus,
            state.vcpus.len()
        )));
    }
    let mem_path = dir.join(mf::MEMORY);
    let mem = File::open(&mem_path).map_err(io(&mem_path))?;
    let mem_err = |source| SnapshotError::Memory {
        path: mem_path.clone(),
        source,
    };
    let len = mem.metadata().map_err(io(&mem_path))?.len();
    memory::check_layout(&manifest.regions, len).map_err(mem_err)?;
    if opts.verify_memory {
        let found = memory::digest(&mem).map_err(mem_err)?;
        if found != manifest.memory.sha256 {
            return Err(SnapshotError::Digest {
                path: mem_path,
                found,
                want: manifest.memory.sha256.clone(),
            });
        }
    }
    check_disks(dir, &manifest, opts)?;
    Ok(Restore {
        dir: dir.to_path_buf(),
        manifest,
        state,
        machine_toml,
        memory: mem,
    })
}

/// Each disk is the one the snapshot saw: an overlay's base and its frozen layer
/// always; a writable image unless told to take it as it is.
fn check_disks(dir: &Path, m: &Manifest, opts: &LoadOptions) -> Result<(), SnapshotError> {
    for d in &m.disks {
        if let Some(f) = &d.frozen {
            if f.file.contains('/') || f.file.starts_with('.') {
                return Err(SnapshotError::Mismatch(format!(
                    "disk `{}`: frozen overlay name {:?} is not a file of the snapshot",
                    d.id, f.file
                )));
            }
            let path = dir.join(&f.file);
            let (found, _) = file_sha256(&path)?;
            if found != f.sha256 {
                return Err(SnapshotError::Digest {
                    path,
                    found,
                    want: f.sha256.clone(),
                });
            }
        }
        let may_differ = opts.allow_disk_change && d.frozen.is_none() && !d.readonly;
        if may_differ {
            continue;
        }
        let (sha, size) = file_sha256(&d.path)?;
        if sha != d.sha256 || size != d.size {
            return Err(SnapshotError::DiskChanged {
                id: d.id.clone(),
                path: d.path.clone(),
            });
        }
    }
    Ok(())
}
