//! Stopping a lab, or some of its nodes: each node's power button first (QMP
//! `system_powerdown`, so the guest shuts down cleanly), then `quit`, then signals for
//! what still runs; the switch last. Works from the recorded state alone.

use std::time::{Duration, Instant};

use super::process;
use super::state::{LabState, NodeRecord};

/// Presses the power button of every named running node, waits up to `grace` for them
/// to power off, then stops the rest. Their records are marked stopped.
pub fn stop_nodes(state: &mut LabState, names: &[String], grace: Duration) {
    let running: Vec<&NodeRecord> = state
        .nodes
        .iter()
        .filter(|n| names.contains(&n.name))
        .filter(|n| n.process.as_ref().is_some_and(|p| p.alive()))
        .collect();
    for n in &running {
        qmp(n, "system_powerdown");
    }
    let deadline = Instant::now() + grace;
    for n in &running {
        if let Some(p) = &n.process {
            let left = deadline.saturating_duration_since(Instant::now());
            if !process::wait_gone(p, left) {
                qmp(n, "quit");
                if !process::wait_gone(p, Duration::from_secs(2)) {
                    process::stop(p, Duration::from_secs(2));
                }
            }
        }
    }
    for n in state.nodes.iter_mut().filter(|n| names.contains(&n.name)) {
        n.process = None;
        let _ = std::fs::remove_file(&n.qmp);
        let _ = std::fs::remove_file(&n.console);
    }
}

/// Sends one QMP command, ignoring failures (the node may be going away).
fn qmp(n: &NodeRecord, cmd: &str) {
    if let Ok(mut c) = crate::control::ctl::Client::connect(&n.qmp) {
        let _ = c.execute(cmd, None);
    }
}

/// Stops the switch (its own shutdown request, then signals).
pub fn stop_switch(state: &mut LabState) {
    if let Some(ctl) = &state.switch_control {
        if let Ok(mut c) = crate::netsw::client::Client::connect(ctl) {
            let _ = c.shutdown();
        }
    }
    if let Some(p) = state.switch.take() {
        if !process::wait_gone(&p, Duration::from_secs(2)) {
            process::stop(&p, Duration::from_secs(2));
        }
    }
}

/// Stops the switch when no node of the lab runs any more.
pub fn stop_switch_if_idle(state: &mut LabState) {
    let busy = state
        .nodes
        .iter()
        .any(|n| n.process.as_ref().is_some_and(|p| p.alive()));
    if !busy {
        stop_switch(state);
    }
}

/// `vmrun lab down`: every node, then the switch; the sockets' directory goes too.
pub fn down(state: &mut LabState, grace: Duration, sockets: Option<&std::path::Path>) {
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    stop_nodes(state, &names, grace);
    stop_switch(state);
    if let Some(dir) = sockets {
        let _ = std::fs::remove_dir_all(dir);
    }
}
