//! Snapshots: a running machine saved to a directory and started again from it.
//!
//! A snapshot directory holds four parts (see `docs/SNAPSHOTS.md` for the format):
//! `machine.toml` (the resolved spec, as `vmrun show` prints it), `state.bin` (every
//! vCPU, the in-kernel irqchip, PIT and clock, and every emulated device, as sections),
//! `memory.bin` (guest RAM, a sparse file: pages never touched are holes) and
//! `manifest.json` (format version, the sha256 of each part, the disks' identities and
//! the host CPU features the guest saw).
//!
//! [`state`] is the codec devices use for their own section; [`file`] the state file's
//! framing; the save and restore sides live with the VMM (`vmm::snapshot`).

pub mod state;

pub use state::{decode, encode, Section, StateError, Stateful};
pub mod cpu;
pub mod file;
pub mod manifest;
pub mod memory;
