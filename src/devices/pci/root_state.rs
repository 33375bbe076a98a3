//! The `pci` snapshot section: the config spaces of the root's own functions (the
//! chipset's and the bridges', bus numbers and windows included) and the config
//! mechanism's CONFIG_ADDRESS latch and reset register. The devices on the buses save
//! their config space in their own sections (see `vmm::wire::pci`). Restoring
//! rebuilds the BAR decode table, as a guest's header write does.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{lock, PciRoot};
use crate::devices::pci::{PciConfigState, PciPorts};
use crate::snapshot::state::{decode, encode, ensure, Section, StateError};

#[derive(Serialize, Deserialize)]
struct FunctionState {
    /// Index of the bus in the tree (0 = root bus, then bridges in the order added).
    bus: u32,
    devfn: u8,
    cfg: PciConfigState,
}

#[derive(Serialize, Deserialize)]
struct RootState {
    /// CONFIG_ADDRESS and the reset control register, when the machine has the ports.
    ports: Option<(u32, u8)>,
    functions: Vec<FunctionState>,
}

/// The PCI root and its config ports as one snapshot section.
pub struct PciSection {
    root: Arc<PciRoot>,
    ports: Option<Arc<Mutex<PciPorts>>>,
}

impl PciSection {
    pub fn new(root: Arc<PciRoot>, ports: Option<Arc<Mutex<PciPorts>>>) -> Self {
        Self { root, ports }
    }
}

impl PciRoot {
    fn save_own(&self) -> Vec<FunctionState> {
        let t = lock(&self.topo);
        let mut out = Vec::new();
        for (bus, node) in t.buses.iter().enumerate() {
            for (&devfn, f) in node.slots.iter().filter(|(_, f)| f.own) {
                out.push(FunctionState {
                    bus: bus as u32,
                    devfn,
                    cfg: lock(&f.dev).config().save_state(),
                });
            }
        }
        out
    }

    fn restore_own(&self, saved: &[FunctionState]) -> Result<(), StateError> {
        let t = lock(&self.topo);
        let own: Vec<_> = t
            .buses
            .iter()
            .enumerate()
            .flat_map(|(bus, node)| {
                node.slots
                    .iter()
                    .filter(|(_, f)| f.own)
                    .map(move |(&devfn, f)| (bus as u32, devfn, f.dev.clone()))
            })
            .collect();
        ensure(own.len() == saved.len(), || {
            format!("{} PCI functions for {}", saved.len(), own.len())
        })?;
        // Check everything first, so a refused section changes nothing.
        for ((bus, devfn, dev), s) in own.iter().zip(saved) {
            ensure(*bus == s.bus && *devfn == s.devfn, || {
                format!(
                    "PCI function {}:{:#04x} is not in this machine",
                    s.bus, s.devfn
                )
            })?;
            lock(dev).config().check_state(&s.cfg)?;
        }
        for ((_, _, dev), s) in own.iter().zip(saved) {
            lock(dev).config_mut().restore_state(&s.cfg)?;
        }
        self.rebuild(&t);
        Ok(())
    }
}

impl Section for PciSection {
    fn save(&self) -> Result<Vec<u8>, StateError> {
        encode(&RootState {
            ports: self.ports.as_ref().map(|p| lock(p).registers()),
            functions: self.root.save_own(),
        })
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), StateError> {
        let s: RootState = decode(bytes)?;
        match (&self.ports, s.ports) {
            (Some(p), Some((address, reset))) => lock(p).set_registers(address, reset)?,
            (None, None) => {}
            _ => return Err(StateError::Invalid("PCI config ports".into())),
        }
        self.root.restore_own(&s.functions)
    }
}
