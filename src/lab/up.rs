//! `vmrun lab up`: the switch first, then the nodes wave by wave in dependency order
//! (a wave starts in parallel), each waited for until ready, with a live table of
//! progress. A failure names the node and shows its last console lines, then stops
//! what this run started (unless `--keep`).

use std::io::Write;
use std::time::{Duration, Instant};

use regex_lite::Regex;
use thiserror::Error;

use super::process::{self, ProcessError};
use super::state::{LabState, NodeRecord, Process, StateError, STATE_VERSION};
use super::wiring::{self, LabPaths};
use super::LabSpec;
use crate::backends::private_dir::{ensure_private_dir, PrivateDirError};

#[derive(Debug, Error)]
pub enum LabError {
    #[error("the lab's directory")]
    Dir(#[from] PrivateDirError),
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the lab switch did not come up: {0}")]
    Switch(String),
    #[error("node `{node}` {why}")]
    Node { node: String, why: String },
    #[error("the lab `{0}` is not running (no recorded state)")]
    NotRunning(String),
    #[error("lab `{lab}` has no node `{node}`")]
    NoNode { lab: String, node: String },
}

/// How long the switch may take to answer on its control socket.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(10);

fn write(path: &std::path::Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|source| LabError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates the lab's directories and loads (or starts) its recorded state.
pub fn prepare(lab: &LabSpec) -> Result<(LabPaths, LabState), LabError> {
    let paths = LabPaths::of(lab);
    for dir in [&paths.state, &paths.sockets] {
        if let Some(parent) = dir.parent() {
            ensure_private_dir(parent)?;
        }
        ensure_private_dir(dir)?;
    }
    let state = match LabState::load(&paths.state) {
        Ok(s) => s,
        Err(_) => LabState {
            version: STATE_VERSION,
            name: lab.name.clone(),
            file: lab.file.clone(),
            dir: paths.state.clone(),
            switch: None,
            switch_control: Some(paths.switch_control.clone()),
            nodes: Vec::new(),
        },
    };
    Ok((paths, state))
}

/// Starts the switch unless it runs.
pub fn ensure_switch(
    lab: &LabSpec,
    paths: &LabPaths,
    state: &mut LabState,
) -> Result<bool, LabError> {
    if state.switch.as_ref().is_some_and(Process::alive) {
        return Ok(false);
    }
    let config = wiring::switch_config(lab, paths);
    config
        .write(&paths.switch_config)
        .map_err(|source| LabError::Write {
            path: paths.switch_config.clone(),
            source,
        })?;
    let p = process::spawn(
        "the lab switch",
        &[
            "switch".as_ref(),
            "--config".as_ref(),
            paths.switch_config.as_os_str(),
        ],
        &paths.switch_log,
    )?;
    state.switch = Some(p.clone());
    state.switch_control = Some(paths.switch_control.clone());
    state.save()?;
    match crate::netsw::client::Client::connect_wait(&paths.switch_control, SWITCH_TIMEOUT) {
        Ok(_) => Ok(true),
        Err(e) => {
            let log = process::tail(&paths.switch_log, 10).join("\n");
            process::stop(&p, Duration::from_secs(1));
            Err(LabError::Switch(format!("{e}\n{log}")))
        }
    }
}

/// Starts one node's vmrun process with its wiring (sockets and machine file).
pub fn start_node(
    lab: &LabSpec,
    paths: &LabPaths,
    state: &mut LabState,
    name: &str,
) -> Result<(), LabError> {
    start_node_from(lab, paths, state, name, None)
}

/// [`start_node`], restoring the node from the snapshot `restore` if given.
pub fn start_node_from(
    lab: &LabSpec,
    paths: &LabPaths,
    state: &mut LabState,
    name: &str,
    restore: Option<&std::path::Path>,
) -> Result<(), LabError> {
    let node = lab.node(name).ok_or_else(|| LabError::NoNode {
        lab: lab.name.clone(),
        node: name.into(),
    })?;
    let np = paths.node(name);
    ensure_private_dir(&np.dir)?;
    let mut machine = wiring::node_machine(lab, node, paths);
    super::overlay::persistent(&np.dir, &mut machine).map_err(|e| LabError::Node {
        node: name.into(),
        why: format!("its disk overlay: {}", crate::error_chain(&e)),
    })?;
    write(&np.machine, &crate::spec::show::to_toml(&machine))?;
    // A fresh console log, so readiness looks at this boot only.
    write(&np.console_log, "")?;
    let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref(), np.machine.as_os_str()];
    if let Some(dir) = restore {
        args.extend(["--restore".as_ref(), dir.as_os_str()]);
    }
    let p = process::spawn(&format!("node `{name}`"), &args, &np.log)?;
    let rec = NodeRecord {
        name: name.to_string(),
        machine: np.machine.clone(),
        qmp: np.qmp.clone(),
        console: np.console.clone(),
        console_log: np.console_log.clone(),
        log: np.log.clone(),
        process: Some(p),
        ports: wiring::node_ports(lab, name),
    };
    match state.node_mut(name) {
        Some(r) => *r = rec,
        None => state.nodes.push(rec),
    }
    state.save()?;
    Ok(())
}

/// Where a node stands while `up` waits for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Waiting,
    Starting,
    Booting,
    Ready,
    Failed(String),
}

impl Phase {
    fn label(&self) -> &str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Starting => "starting",
            Phase::Booting => "booting",
            Phase::Ready => "ready",
            Phase::Failed(_) => "failed",
        }
    }
}

/// One step of the readiness check of a started node.
pub fn check_ready(rec: &NodeRecord, serial: Option<&Regex>) -> Phase {
    let Some(p) = &rec.process else {
        return Phase::Failed("was not started".into());
    };
    if process::reap(p) {
        let last = process::tail(&rec.log, 3).join(" / ");
        return Phase::Failed(format!("exited before it was ready ({last})"));
    }
    let answers = crate::control::ctl::Client::connect(&rec.qmp)
        .and_then(|mut c| c.execute("query-status", None))
        .is_ok_and(|r| r.get("status").and_then(|s| s.as_str()) == Some("running"));
    if !answers {
        return Phase::Starting;
    }
    match serial {
        None => Phase::Ready,
        Some(re) => {
            let log = std::fs::read(&rec.console_log).unwrap_or_default();
            if re.is_match(&String::from_utf8_lossy(&log)) {
                Phase::Ready
            } else {
                Phase::Booting
            }
        }
    }
}

/// The live progress table (redrawn in place on a terminal, one line per change
/// elsewhere).
struct Progress<'a> {
    rows: Vec<(String, Phase, Instant, Option<Duration>)>,
    tty: bool,
    drawn: usize,
    out: &'a mut dyn Write,
}

impl Progress<'_> {
    fn set(&mut self, node: &str, phase: Phase) {
        let Some(i) = self.rows.iter().position(|r| r.0 == node) else {
            return;
        };
        if self.rows[i].1 == phase {
            return;
        }
        if matches!(phase, Phase::Starting) {
            self.rows[i].2 = Instant::now();
        }
        if matches!(phase, Phase::Ready | Phase::Failed(_)) {
            self.rows[i].3 = Some(self.rows[i].2.elapsed());
        }
        self.rows[i].1 = phase;
        if self.tty {
            self.redraw();
        } else {
            let line = self.line(i);
            let _ = writeln!(self.out, "{line}");
        }
    }

    fn line(&self, i: usize) -> String {
        let (name, phase, t0, done) = &self.rows[i];
        let secs = done.unwrap_or_else(|| t0.elapsed()).as_secs_f64();
        format!("  {name:<16} {:<9} {secs:>6.1}s", phase.label())
    }

    fn redraw(&mut self) {
        if self.drawn > 0 {
            let _ = write!(self.out, "\x1b[{}A", self.drawn);
        }
        for i in 0..self.rows.len() {
            let line = self.line(i);
            let _ = writeln!(self.out, "\x1b[2K{line}");
        }
        self.drawn = self.rows.len();
        let _ = self.out.flush();
    }
}

pub struct UpOptions {
    /// Only these nodes (and what they depend on); all autostart nodes when empty.
    pub only: Vec<String>,
    /// Leave what was started running when something fails.
    pub keep: bool,
}

/// Brings the lab up; returns when every node is ready.
pub fn up(lab: &LabSpec, opts: &UpOptions, out: &mut dyn Write) -> Result<(), LabError> {
    let waves = lab.waves(&opts.only);
    bring_up(lab, &waves, opts.keep, out)
}

/// Starts the switch if needed, then `waves` in order, each waited for until ready.
fn bring_up(
    lab: &LabSpec,
    waves: &[Vec<String>],
    keep: bool,
    out: &mut dyn Write,
) -> Result<(), LabError> {
    let (paths, mut state) = prepare(lab)?;
    let started_switch = ensure_switch(lab, &paths, &mut state)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let rows = waves
        .iter()
        .flatten()
        .map(|n| (n.clone(), Phase::Waiting, Instant::now(), None))
        .collect();
    let mut progress = Progress {
        rows,
        tty,
        drawn: 0,
        out,
    };
    if tty {
        progress.redraw();
    }
    let mut started: Vec<String> = Vec::new();
    for wave in waves {
        if let Err(e) = run_wave(lab, &paths, &mut state, wave, &mut progress, &mut started) {
            if !keep {
                super::down::stop_nodes(&mut state, &started, Duration::from_secs(2));
                if started_switch {
                    super::down::stop_switch_if_idle(&mut state);
                }
                let _ = state.save();
            }
            return Err(e);
        }
    }
    Ok(())
}

/// `lab restart`: the node goes down (power button, then harder) and up again; the
/// switch keeps its ports, so its cables stay plugged into the rest of the lab.
pub fn restart(
    lab: &LabSpec,
    node: &str,
    grace: Duration,
    out: &mut dyn Write,
) -> Result<(), LabError> {
    if lab.node(node).is_none() {
        return Err(LabError::NoNode {
            lab: lab.name.clone(),
            node: node.into(),
        });
    }
    let (_, mut state) = prepare(lab)?;
    super::down::stop_nodes(&mut state, &[node.to_string()], grace);
    state.save()?;
    bring_up(lab, &[vec![node.to_string()]], false, out)
}

/// `lab reset`: the node (or every node) stopped, its disk overlays thrown away, and
/// started again from the base images.
pub fn reset(lab: &LabSpec, node: Option<&str>, out: &mut dyn Write) -> Result<(), LabError> {
    let names: Vec<String> = match node {
        Some(n) if lab.node(n).is_none() => {
            return Err(LabError::NoNode {
                lab: lab.name.clone(),
                node: n.into(),
            })
        }
        Some(n) => vec![n.to_string()],
        None => lab.nodes.iter().map(|n| n.name.clone()).collect(),
    };
    let (paths, mut state) = prepare(lab)?;
    super::down::stop_nodes(&mut state, &names, Duration::from_secs(10));
    state.save()?;
    for n in &names {
        super::overlay::discard(&paths.node(n).dir);
    }
    let waves = match node {
        Some(n) => vec![vec![n.to_string()]],
        None => lab.waves(&[]),
    };
    bring_up(lab, &waves, false, out)
}

fn run_wave(
    lab: &LabSpec,
    paths: &LabPaths,
    state: &mut LabState,
    wave: &[String],
    progress: &mut Progress<'_>,
    started: &mut Vec<String>,
) -> Result<(), LabError> {
    let mut waiting = Vec::new();
    for name in wave {
        let running = state
            .node(name)
            .and_then(|r| r.process.as_ref())
            .is_some_and(Process::alive);
        if running {
            progress.set(name, Phase::Ready);
            continue;
        }
        progress.set(name, Phase::Starting);
        start_node(lab, paths, state, name)?;
        started.push(name.clone());
        waiting.push(name.clone());
    }
    let deadlines: Vec<(String, Instant, Option<Regex>)> = waiting
        .iter()
        .filter_map(|n| lab.node(n))
        .map(|n| {
            let re = n.ready.serial.as_deref().and_then(|s| Regex::new(s).ok());
            (n.name.clone(), Instant::now() + n.ready.timeout, re)
        })
        .collect();
    let mut left: Vec<usize> = (0..deadlines.len()).collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for i in left {
            let (name, deadline, re) = &deadlines[i];
            let Some(rec) = state.node(name) else {
                continue;
            };
            match check_ready(rec, re.as_ref()) {
                Phase::Ready => progress.set(name, Phase::Ready),
                Phase::Failed(why) => {
                    progress.set(name, Phase::Failed(why.clone()));
                    return Err(node_failure(rec, &why));
                }
                p if Instant::now() >= *deadline => {
                    let why = format!(
                        "was not ready after {:?} (still {})",
                        lab.node(name).map_or(Duration::ZERO, |n| n.ready.timeout),
                        p.label()
                    );
                    progress.set(name, Phase::Failed(why.clone()));
                    return Err(node_failure(rec, &why));
                }
                p => {
                    progress.set(name, p);
                    still.push(i);
                }
            }
        }
        left = still;
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The error for a node that failed: what happened and its last console lines.
fn node_failure(rec: &NodeRecord, why: &str) -> LabError {
    let mut why = why.to_string();
    let console = process::tail(&rec.console_log, 10);
    if !console.is_empty() {
        why += &format!(
            "\nlast console lines ({}):\n  {}",
            rec.console_log.display(),
            console.join("\n  ")
        );
    }
    let log = process::tail(&rec.log, 5);
    if !log.is_empty() {
        why += &format!(
            "\nvmrun said ({}):\n  {}",
            rec.log.display(),
            log.join("\n  ")
        );
    }
    LabError::Node {
        node: rec.name.clone(),
        why,
    }
}
