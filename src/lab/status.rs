//! `vmrun lab status`: every node's state (from its process and its QMP socket), pid,
//! uptime, console and QMP paths and cables, and the switch's port counters.

use serde_json::{json, Value};

use super::state::LabState;

/// One node as `status` reports it.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub name: String,
    /// "running", "paused", "stopped", "starting" (process up, QMP not yet), ...
    pub state: String,
    pub pid: Option<u32>,
    pub uptime: Option<u64>,
    pub console: String,
    pub qmp: String,
    pub ports: Vec<(String, String)>,
}

pub fn nodes(state: &LabState) -> Vec<NodeStatus> {
    state
        .nodes
        .iter()
        .map(|n| {
            let alive = n.process.as_ref().filter(|p| p.alive());
            let qmp = alive.and_then(|_| {
                let mut c = crate::control::ctl::Client::connect(&n.qmp).ok()?;
                let r = c.execute("query-status", None).ok()?;
                r.get("status").and_then(|s| s.as_str()).map(str::to_string)
            });
            let st = match (alive, qmp) {
                (None, _) => "stopped".to_string(),
                (Some(_), None) => "starting".to_string(),
                (Some(_), Some(s)) => s,
            };
            NodeStatus {
                name: n.name.clone(),
                state: st,
                pid: alive.map(|p| p.pid),
                uptime: alive.map(|p| super::state::now().saturating_sub(p.started)),
                console: n.console.display().to_string(),
                qmp: n.qmp.display().to_string(),
                ports: n.ports.clone(),
            }
        })
        .collect()
}

/// The switch's status, as its control socket reports it, if it runs.
pub fn switch(state: &LabState) -> Option<crate::netsw::proto::Status> {
    let ctl = state.switch_control.as_ref()?;
    let mut c = crate::netsw::client::Client::connect(ctl).ok()?;
    c.status().ok()
}

/// External ports (a program outside the lab joins them) and the QEMU `-netdev` that
/// joins each: QEMU binds the port's peer socket and sends to the switch's.
pub fn externals(s: &crate::netsw::proto::Status) -> Vec<(String, String)> {
    s.networks
        .iter()
        .flat_map(|n| n.ports.iter())
        .filter(|p| !p.name.contains(':') && !p.remote.starts_with("udp://"))
        .map(|p| {
            let netdev = format!(
                "dgram,id={0},local.type=unix,local.path={1},remote.type=unix,remote.path={2}",
                p.name, p.remote, p.local
            );
            (p.name.clone(), netdev)
        })
        .collect()
}

/// The switch's ports as a table: like a switch's port counters.
fn ports_table(s: &crate::netsw::proto::Status) -> String {
    let mut o = format!(
        "\n{:<14} {:<16} {:<5} {:>10} {:>10} {:>8} {:>8}\n",
        "NETWORK", "PORT", "LINK", "RX FRAMES", "TX FRAMES", "RX DROP", "TX DROP"
    );
    for net in &s.networks {
        for p in &net.ports {
            let c = &p.counters;
            o += &format!(
                "{:<14} {:<16} {:<5} {:>10} {:>10} {:>8} {:>8}\n",
                net.name,
                p.name,
                if p.up { "up" } else { "down" },
                c.rx_frames,
                c.tx_frames,
                c.rx_dropped.total(),
                c.tx_dropped.total()
            );
        }
    }
    o
}

pub fn to_json(state: &LabState) -> Value {
    let nodes: Vec<Value> = nodes(state)
        .into_iter()
        .map(|n| {
            json!({
                "name": n.name, "state": n.state, "pid": n.pid, "uptime": n.uptime,
                "console": n.console, "qmp": n.qmp,
                "ports": n.ports.iter().map(|(nic, net)| json!({"nic": nic, "network": net})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "lab": state.name,
        "file": state.file,
        "state_dir": state.dir,
        "switch": {
            "pid": state.switch.as_ref().filter(|p| p.alive()).map(|p| p.pid),
            "status": switch(state).and_then(|s| serde_json::to_value(s).ok()),
            "external": switch(state).map(|s| externals(&s).into_iter()
                .map(|(name, netdev)| json!({"name": name, "qemu_netdev": netdev}))
                .collect::<Vec<_>>()),
        },
        "nodes": nodes,
    })
}

/// The human table.
pub fn to_table(state: &LabState) -> String {
    let mut o = format!("lab {} ({})\n", state.name, state.file.display());
    o += &format!(
        "{:<14} {:<10} {:>8} {:>9}  {}\n",
        "NODE", "STATE", "PID", "UPTIME", "CABLES"
    );
    for n in nodes(state) {
        let cables: Vec<String> = n
            .ports
            .iter()
            .map(|(nic, net)| format!("{nic}→{net}"))
            .collect();
        o += &format!(
            "{:<14} {:<10} {:>8} {:>9}  {}\n",
            n.name,
            n.state,
            n.pid.map_or("-".into(), |p| p.to_string()),
            n.uptime
                .map_or("-".into(), crate::control::ctl::format_uptime),
            cables.join(", ")
        );
    }
    if let Some(s) = switch(state) {
        o += &ports_table(&s);
        for (name, netdev) in externals(&s) {
            o += &format!("external port {name}: qemu-system-x86_64 ... -netdev {netdev}\n");
        }
    } else {
        o += "switch: not running\n";
    }
    o
}
