//! How a lab is wired on this host: where every socket, log and file of a running lab
//! is, the switch's configuration, and each node's machine as the lab runs it (COM1 on
//! a console socket with a log, NICs on their switch ports, QMP on a known socket).
//!
//! Unix socket paths are limited to 107 bytes, and a lab file may live deep in a tree,
//! so the sockets go to a short per-lab directory under the user's runtime directory
//! (`$XDG_RUNTIME_DIR/vmrun/lab-<name>-<hash>/`); logs, generated machines, overlays
//! and the recorded state stay in the state directory beside the lab file.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{LabSpec, NetKind, NodeSpec, Port};
use crate::backends::dgram_sock::Endpoint;
use crate::netsw::config::{Config, NetKind as SwKind, NetworkConfig, PortConfig};
use crate::spec::{CharBackend, DeviceKind, MachineSpec, NicBackend};

/// The longest socket path we let a lab use (sun_path holds 107 bytes and a NUL; node
/// names add up to 48).
const MAX_SOCKET_DIR: usize = 48;

/// Where one node's files are.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub dir: PathBuf,
    pub machine: PathBuf,
    pub log: PathBuf,
    pub console_log: PathBuf,
    pub console: PathBuf,
    pub qmp: PathBuf,
}

/// Where the lab's files and sockets are.
#[derive(Debug, Clone)]
pub struct LabPaths {
    pub state: PathBuf,
    pub sockets: PathBuf,
    pub switch_config: PathBuf,
    pub switch_log: PathBuf,
    pub switch_control: PathBuf,
}

impl LabPaths {
    pub fn of(lab: &LabSpec) -> LabPaths {
        let hash = Sha256::digest(lab.state_dir.as_os_str().as_encoded_bytes());
        let tag: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        // The runtime directory, unless it is so deep that the sockets' paths would
        // not fit: then a private directory under /tmp.
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let sockets = [
            crate::control::runtime::base_dir(),
            PathBuf::from(format!("/tmp/vmrun-{uid}")),
        ]
        .into_iter()
        .map(|b| b.join(format!("lab-{tag}")))
        .find(|d| d.join("n00-00.sock").as_os_str().len() < MAX_SOCKET_DIR)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/vmrun-{uid}/lab-{tag}")));
        LabPaths {
            switch_config: lab.state_dir.join("switch.json"),
            switch_log: lab.state_dir.join("switch.log"),
            switch_control: sockets.join("switch.ctl"),
            state: lab.state_dir.clone(),
            sockets,
        }
    }

    pub fn node(&self, name: &str) -> NodePaths {
        let dir = self.state.join(name);
        NodePaths {
            machine: dir.join("machine.toml"),
            log: dir.join("vmrun.log"),
            console_log: dir.join("console.log"),
            console: self.sockets.join(format!("{name}.console")),
            qmp: self.sockets.join(format!("{name}.qmp")),
            dir,
        }
    }

    /// The two sockets of port `i` of network `net`: (the switch's, the node's).
    pub fn port(&self, net: usize, i: usize) -> (PathBuf, PathBuf) {
        (
            self.sockets.join(format!("s{net}-{i}.sock")),
            self.sockets.join(format!("n{net}-{i}.sock")),
        )
    }
}

/// The switch's configuration: one network per cable and LAN, one port per endpoint.
pub fn switch_config(lab: &LabSpec, paths: &LabPaths) -> Config {
    let networks = lab
        .nets
        .iter()
        .enumerate()
        .map(|(ni, net)| NetworkConfig {
            name: net.name.clone(),
            kind: match net.kind {
                NetKind::Link => SwKind::Link,
                NetKind::Lan => SwKind::Lan,
            },
            impair: (!net.impair.is_none()).then(|| net.impair.to_config()),
            capture: net.capture.clone(),
            mac_ageing: None,
            ports: net
                .ports
                .iter()
                .enumerate()
                .map(|(pi, p)| port_config(paths, ni, pi, p))
                .collect(),
        })
        .collect();
    Config {
        control: paths.switch_control.clone(),
        seed: None,
        queue: None,
        stall: None,
        networks,
    }
}

fn port_config(paths: &LabPaths, net: usize, i: usize, p: &Port) -> PortConfig {
    let (local, remote) = match p {
        Port::Nic { .. } | Port::External { .. } => {
            let (sw, node) = paths.port(net, i);
            (sw.display().to_string(), node.display().to_string())
        }
        Port::Remote { remote, local } => (
            local.clone().unwrap_or_else(|| "udp://0.0.0.0:0".into()),
            remote.clone(),
        ),
    };
    PortConfig {
        name: port_name(p),
        local,
        remote,
        impair: None,
        capture: None,
        up: None,
    }
}

/// A port's name on the switch: `node:nic`, or the remote's URL.
pub fn port_name(p: &Port) -> String {
    match p {
        Port::Nic { node, nic, .. } => format!("{node}:{nic}"),
        Port::Remote { remote, .. } => remote.clone(),
        Port::External { name } => name.clone(),
    }
}

/// The node's machine as the lab runs it.
pub fn node_machine(lab: &LabSpec, node: &NodeSpec, paths: &LabPaths) -> MachineSpec {
    let np = paths.node(&node.name);
    let mut m = node.machine.clone();
    m.control.qmp = Some(np.qmp.clone());
    for d in &mut m.devices {
        if d.id == "com1" {
            if let DeviceKind::Serial { backend, log } = &mut d.kind {
                *backend = CharBackend::Socket(np.console.clone());
                *log = Some(np.console_log.clone());
            }
        }
    }
    for (ni, net) in lab.nets.iter().enumerate() {
        for (pi, p) in net.ports.iter().enumerate() {
            let Port::Nic { node: n, nic, .. } = p else {
                continue;
            };
            if n != &node.name {
                continue;
            }
            let (sw, local) = paths.port(ni, pi);
            if let Some(d) = m.devices.iter_mut().find(|d| &d.id == nic) {
                if let DeviceKind::Nic { backend, .. } = &mut d.kind {
                    *backend = NicBackend::Dgram {
                        local: Endpoint::Unix(local),
                        remote: Endpoint::Unix(sw),
                    };
                }
            }
        }
    }
    m
}

/// The ports of `node`: (NIC id, network name).
pub fn node_ports(lab: &LabSpec, node: &str) -> Vec<(String, String)> {
    lab.nets
        .iter()
        .flat_map(|net| {
            net.ports.iter().filter_map(move |p| match p {
                Port::Nic { node: n, nic, .. } if n == node => {
                    Some((nic.clone(), net.name.clone()))
                }
                _ => None,
            })
        })
        .collect()
}

/// Whether `path` lies inside `dir` (for cleaning only what is ours).
pub fn inside(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}
