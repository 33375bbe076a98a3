//! Labs: many machines and the cables and LANs between them, declared in one file.
//!
//! ```text
//! lab.toml ──check──▶ LabSpec       nodes (each a checked MachineSpec), links and LANs
//!                                    with their ports, readiness, order; located errors
//!          ──up─────▶ running lab    a switch process holding every cable and LAN, one
//!                                    vmrun process per node, all recorded in the state
//!                                    directory (.vmrun/<lab>/ beside the file)
//! ```
//!
//! The switch holds the wiring, not the VMs: a node's NIC talks to its switch port over
//! a pair of unix datagram sockets (QEMU's `-netdev dgram` encapsulation), so a node
//! restarts without unplugging its cables, and a stock QEMU can join a LAN.

pub mod check;
pub mod console;
pub mod down;
pub mod file;
pub mod graph;
pub mod netctl;
pub mod overlay;
pub mod process;
pub mod schema;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod up;
pub mod wiring;

use std::path::PathBuf;
use std::time::Duration;

pub use check::{check_file, check_text, LabErrors, LabReadError};

use crate::spec::MachineSpec;

#[derive(Debug, Clone)]
pub struct LabSpec {
    pub name: String,
    /// The lab file (absolute).
    pub file: PathBuf,
    /// Where a running lab keeps its sockets, logs, overlays and recorded state.
    pub state_dir: PathBuf,
    pub nodes: Vec<NodeSpec>,
    /// Cables and LANs.
    pub nets: Vec<NetSpec>,
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub machine_file: PathBuf,
    /// The node's machine, named `<lab>-<node>`, with the node's `cmdline` applied.
    pub machine: MachineSpec,
    pub depends_on: Vec<String>,
    pub ready: Ready,
    pub autostart: bool,
}

/// When a node counts as ready: its control socket answers and, if asked, its console
/// printed a match of `serial`.
#[derive(Debug, Clone)]
pub struct Ready {
    pub serial: Option<String>,
    pub timeout: Duration,
}

impl Default for Ready {
    fn default() -> Self {
        Ready {
            serial: None,
            timeout: check::DEFAULT_READY_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// A cable: two ports, frames go across.
    Link,
    /// A LAN: a learning switch.
    Lan,
}

#[derive(Debug, Clone)]
pub struct NetSpec {
    pub name: String,
    pub kind: NetKind,
    pub ports: Vec<Port>,
    pub impair: Impair,
    pub capture: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Port {
    Nic {
        node: String,
        nic: String,
        mac: [u8; 6],
    },
    /// A port carried over UDP to another host.
    Remote {
        remote: String,
        local: Option<String>,
    },
    /// A port a program outside the lab joins (e.g. QEMU's `-netdev dgram`).
    External { name: String },
}

/// netem-style impairment; probabilities are fractions (0-1). The lab switch's own
/// type, so a lab's impairments go to the switch as they are.
pub use crate::netsw::impair::Impair;

impl LabSpec {
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes in start order, in waves: every node of a wave depends only on nodes
    /// of earlier waves, so a wave can start in parallel. `only` limits the lab to
    /// those nodes and what they depend on.
    pub fn waves(&self, only: &[String]) -> Vec<Vec<String>> {
        let mut wanted: Vec<String> = if only.is_empty() {
            self.nodes
                .iter()
                .filter(|n| n.autostart)
                .map(|n| n.name.clone())
                .collect()
        } else {
            only.to_vec()
        };
        let mut i = 0;
        while i < wanted.len() {
            if let Some(n) = self.node(&wanted[i]) {
                for d in &n.depends_on {
                    if !wanted.contains(d) {
                        wanted.push(d.clone());
                    }
                }
            }
            i += 1;
        }
        let mut done: Vec<String> = Vec::new();
        let mut waves = Vec::new();
        while done.len() < wanted.len() {
            let wave: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| wanted.contains(&n.name) && !done.contains(&n.name))
                .filter(|n| n.depends_on.iter().all(|d| done.contains(d)))
                .map(|n| n.name.clone())
                .collect();
            if wave.is_empty() {
                break; // a cycle; check refuses those
            }
            done.extend(wave.iter().cloned());
            waves.push(wave);
        }
        waves
    }
}

/// "udp://HOST:PORT" → (host, port).
pub fn parse_udp(s: &str) -> Option<(String, u16)> {
    let rest = s.strip_prefix("udp://")?;
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests;
