//! vmrun: a small KVM virtual machine monitor whose machines are declared in TOML.
//!
//! Data takes one path through four stages, each a function of plain types:
//! `config` (parse the TOML, spans kept) → `spec` (check: defaults expanded, every
//! resource assigned; pure, no KVM) → `vmm` (build the KVM VM) → run until an
//! [`vmm::ExitReason`].

pub mod arch;
pub mod backends;
pub mod board;
pub mod boot;
pub mod config;
pub mod devices;
pub mod spec;
pub mod vmm;
