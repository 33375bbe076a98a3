//! The resolved machine: board defaults expanded, every device on a bus, every I/O
//! port, MMIO range, GSI, PCI address and MAC assigned. Built by [`check`], a pure
//! function of the typed machine file (it reads only the files the machine names).
//! Nothing after this stage can fail because of the user's file.

mod check;
mod chipset;
mod ctx;
mod devices;
pub mod graph;
mod kinds;
mod model;
mod pass_gsi;
mod pass_isa;
mod pass_mmio;
mod pass_pci;
mod plan;
mod props;
mod resources;
pub mod show;
mod topology;

pub use check::check;
pub use model::*;

#[cfg(test)]
mod tests;
