//! `manifest.json`: what a snapshot is made of and what it needs. It names the format
//! and its version, pins every part by sha256, lays guest RAM out in `memory.bin`,
//! and records each disk's identity (so a disk that changed since is noticed) and the
//! guest's CPUID (so a host without a feature the guest saw is refused).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "vmrun-snapshot";
pub const VERSION: u32 = 1;

pub const MANIFEST: &str = "manifest.json";
pub const MACHINE: &str = "machine.toml";
pub const STATE: &str = "state.bin";
pub const MEMORY: &str = "memory.bin";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Part {
    pub sha256: String,
    pub size: u64,
}

/// One RAM region and where its bytes are in `memory.bin`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
    pub offset: u64,
}

/// A disk as it was when the snapshot was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskRecord {
    /// The device id.
    pub id: String,
    /// The image the machine file names.
    pub path: PathBuf,
    pub readonly: bool,
    /// The image's size and sha256 then (a writable image changes as the guest runs;
    /// restoring over a changed one is refused unless told otherwise).
    pub size: u64,
    pub sha256: String,
    /// For a disk with `overlay = true`: the overlay as it was, frozen in the snapshot
    /// directory. A restore writes to a new overlay over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<Frozen>,
}

/// A frozen overlay: a file name in the snapshot directory and its digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Frozen {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// The vmrun that wrote it.
    pub vmrun: String,
    /// The machine's name.
    pub machine: String,
    pub vcpus: u32,
    /// Seconds since the epoch.
    pub created: u64,
    pub machine_toml: Part,
    pub state: Part,
    /// `memory.bin`'s digest covers its data extents (see `docs/SNAPSHOTS.md`), so it
    /// can be written and checked without reading the holes.
    pub memory: Part,
    pub regions: Vec<MemRegion>,
    pub disks: Vec<DiskRecord>,
    /// The CPU vendor string the guest saw.
    pub cpu_vendor: String,
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes`, as hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
