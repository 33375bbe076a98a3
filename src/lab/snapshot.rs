//! `vmrun lab snapshot FILE NAME` and `vmrun lab restore FILE NAME`: a checkpoint of
//! every running node, taken while all of them are paused (so no node runs ahead of
//! another), with each node's disk overlays and the state of the lab's links; and
//! the whole lab brought back to it.
//!
//! A checkpoint lives in the lab's state directory:
//!
//! ```text
//! .vmrun/<lab>/snapshots/<NAME>/lab.json        nodes, link states, impairments
//! .vmrun/<lab>/snapshots/<NAME>/<node>/          the node's machine snapshot
//! .vmrun/<lab>/snapshots/<NAME>/<node>/overlays/ its disk overlays as they were
//! ```
//!
//! Frames in flight inside the switch when the checkpoint is taken are not part of it
//! (as if they had been lost on the wire).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::state::LabState;
use super::up::{self, LabError};
use super::LabSpec;
use crate::control::ctl::{Client, CtlError};
use crate::control::json::Json;
use crate::netsw::impair::ImpairConfig;

#[derive(Debug, Error)]
pub enum LabSnapshotError {
    #[error(
        "checkpoint names are letters, digits, '.', '_' and '-', not starting with '.': {0:?}"
    )]
    BadName(String),
    #[error("the lab `{0}` has no running node to checkpoint")]
    NothingRunning(String),
    #[error("the lab has no checkpoint `{name}` ({path})")]
    NoCheckpoint { name: String, path: PathBuf },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a lab checkpoint")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("node `{node}`")]
    Qmp {
        node: String,
        #[source]
        source: CtlError,
    },
    #[error("the lab switch")]
    Switch(#[from] crate::netsw::client::ClientError),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("node `{0}` did not come back running from its snapshot")]
    NotRunning(String),
    #[error("the checkpoint is of nodes {0}, which this lab file does not have")]
    UnknownNodes(String),
}

/// `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub lab: String,
    pub nodes: Vec<String>,
    /// Each switch port (`node:nic`) and whether its cable is plugged.
    pub links: Vec<(String, bool)>,
    /// Impairments: (network, port or None for the whole network, the settings).
    pub impairments: Vec<(String, Option<String>, ImpairConfig)>,
    /// How long every node was paused for it, in milliseconds.
    pub paused_ms: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabSnapshotError + '_ {
    move |source| LabSnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where checkpoint `name` of the lab lives.
pub fn checkpoint_dir(lab: &LabSpec, name: &str) -> Result<PathBuf, LabSnapshotError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(LabSnapshotError::BadName(name.into()));
    }
    Ok(lab.state_dir.join("snapshots").join(name))
}

fn qmp(node: &str, sock: &Path, cmd: &str, args: Option<Json>) -> Result<Json, LabSnapshotError> {
    Client::connect(sock)
        .and_then(|mut c| c.execute(cmd, args))
        .map_err(|source| LabSnapshotError::Qmp {
            node: node.into(),
            source,
        })
}

/// The overlays (`*.qcow2`) in a node's state directory.
fn overlays(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "qcow2"))
        .collect();
    v.sort();
    v
}

fn copy_overlays(from: &Path, to: &Path) -> Result<(), LabSnapshotError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for src in overlays(from) {
        let Some(name) = src.file_name() else {
            continue;
        };
        let dest = to.join(name);
        std::fs::copy(&src, &dest).map_err(io(&dest))?;
    }
    Ok(())
}

/// Checkpoints every running node of the lab as `name`.
pub fn snapshot(lab: &LabSpec, name: &str) -> Result<Checkpoint, LabSnapshotError> {
    let dir = checkpoint_dir(lab, name)?;
    let (paths, state) = up::prepare(lab)?;
    let running: Vec<_> = (state.nodes.iter())
        .filter(|n| n.process.as_ref().is_some_and(|p| p.alive()))
        .collect();
    if running.is_empty() {
        return Err(LabSnapshotError::NothingRunning(lab.name.clone()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let started = Instant::now();
    // All paused first: the checkpoint is one moment of the whole lab. A node the
    // user had paused stays paused afterwards.
    let mut was_running = Vec::with_capacity(running.len());
    for n in &running {
        let status = qmp(&n.name, &n.qmp, "query-status", None)?;
        was_running.push(status.get("status").and_then(Json::as_str) == Some("running"));
        qmp(&n.name, &n.qmp, "stop", None)?;
    }
    let saved = (|| {
        for n in &running {
            let node_dir = dir.join(&n.name);
            let args = Json::object([
                ("path", Json::from(node_dir.display().to_string())),
                ("paused", Json::Bool(true)),
            ]);
            qmp(&n.name, &n.qmp, "snapshot-save", Some(args))?;
            copy_overlays(&paths.node(&n.name).dir, &node_dir.join("overlays"))?;
        }
        switch_state(&state)
    })();
    let paused_ms = started.elapsed().as_millis() as u64;
    for (n, _) in running.iter().zip(&was_running).filter(|(_, &r)| r) {
        let _ = qmp(&n.name, &n.qmp, "cont", None);
    }
    let (links, impairments) = saved?;
    let cp = Checkpoint {
        lab: lab.name.clone(),
        nodes: running.iter().map(|n| n.name.clone()).collect(),
        links,
        impairments,
        paused_ms,
    };
    let path = dir.join("lab.json");
    let text = serde_json::to_string_pretty(&cp).map_err(|source| LabSnapshotError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(cp)
}

type SwitchState = (
    Vec<(String, bool)>,
    Vec<(String, Option<String>, ImpairConfig)>,
);

/// The links' and impairments' state as the switch has it now.
fn switch_state(state: &LabState) -> Result<SwitchState, LabSnapshotError> {
    let Some(ctl) = &state.switch_control else {
        return Ok((Vec::new(), Vec::new()));
    };
    let status = crate::netsw::client::Client::connect(ctl)?.status()?;
    let mut links = Vec::new();
    let mut impairs = Vec::new();
    for net in &status.networks {
        if let Some(i) = &net.impair {
            impairs.push((net.name.clone(), None, i.clone()));
        }
        for p in &net.ports {
            links.push((p.name.clone(), p.up));
            if let Some(i) = &p.impair {
                impairs.push((net.name.clone(), Some(p.name.clone()), i.clone()));
            }
        }
    }
    Ok((links, impairs))
}

/// Reads checkpoint `name`.
pub fn read(lab: &LabSpec, name: &str) -> Result<(PathBuf, Checkpoint), LabSnapshotError> {
    let dir = checkpoint_dir(lab, name)?;
    let path = dir.join("lab.json");
    let text = std::fs::read(&path).map_err(|_| LabSnapshotError::NoCheckpoint {
        name: name.into(),
        path: dir.clone(),
    })?;
    let cp = serde_json::from_slice(&text).map_err(|source| LabSnapshotError::Json {
        path: path.clone(),
        source,
    })?;
    Ok((dir, cp))
}

/// Brings the lab back to checkpoint `name`: every node stopped, its overlays put
/// back, restored from its snapshot; then the links as they were.
pub fn restore(lab: &LabSpec, name: &str) -> Result<Checkpoint, LabSnapshotError> {
    let (dir, cp) = read(lab, name)?;
    let unknown: Vec<&str> = (cp.nodes.iter())
        .filter(|n| lab.node(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(LabSnapshotError::UnknownNodes(unknown.join(", ")));
    }
    let (paths, mut state) = up::prepare(lab)?;
    let all: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    super::down::stop_nodes(&mut state, &all, Duration::ZERO);
    state.save().map_err(LabError::from)?;
    up::ensure_switch(lab, &paths, &mut state)?;
    for n in &cp.nodes {
        let node_dir = paths.node(n).dir;
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        super::overlay::discard(&node_dir);
        copy_overlays(&dir.join(n).join("overlays"), &node_dir)?;
        up::start_node_from(lab, &paths, &mut state, n, Some(&dir.join(n)))?;
    }
    wait_running(&state, &cp.nodes, Duration::from_secs(30))?;
    set_links(&state, &cp)?;
    Ok(cp)
}

fn wait_running(
    state: &LabState,
    nodes: &[String],
    timeout: Duration,
) -> Result<(), LabSnapshotError> {
    let deadline = Instant::now() + timeout;
    for n in nodes {
        let Some(rec) = state.node(n) else {
            continue;
        };
        loop {
            if up::check_ready(rec, None) == up::Phase::Ready {
                break;
            }
            let dead = rec.process.as_ref().is_none_or(super::process::reap);
            if dead || Instant::now() > deadline {
                return Err(LabSnapshotError::NotRunning(n.clone()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn set_links(state: &LabState, cp: &Checkpoint) -> Result<(), LabSnapshotError> {
    let Some(ctl) = &state.switch_control else {
        return Ok(());
    };
    let mut sw = crate::netsw::client::Client::connect(ctl)?;
    for (port, up) in &cp.links {
        sw.set_link(port, *up)?;
    }
    let (_, now) = switch_state(state)?;
    for (net, port, _) in now {
        sw.impair(&net, port.as_deref(), None)?;
    }
    for (net, port, cfg) in &cp.impairments {
        sw.impair(net, port.as_deref(), Some(cfg))?;
    }
    Ok(())
}
