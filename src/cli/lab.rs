//! `vmrun lab ...`: check, bring up, inspect and tear down a lab.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;

use vmrun::lab::state::LabState;
use vmrun::lab::{self, LabSpec};

#[derive(Subcommand)]
pub enum LabCommand {
    /// Check the lab file and every node's machine: exit 0 when valid, 1 with every
    /// error otherwise.
    Check { file: PathBuf },
    /// Print the nodes, NICs, cables and LANs as Graphviz DOT.
    Graph { file: PathBuf },
    /// Start the lab (or the named nodes and what they depend on), detached; return
    /// once every node is ready.
    Up {
        file: PathBuf,
        nodes: Vec<String>,
        /// Leave what was started running when a node fails.
        #[arg(long)]
        keep: bool,
    },
    /// Power every node down (ACPI power button), then stop what remains and the switch.
    Down {
        file: PathBuf,
        /// How long the guests get to power off.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Every node's state, pid, uptime, console, QMP socket and cables; the switch's
    /// port counters.
    Status {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The node's serial console, interactively (Ctrl-] detaches).
    Console { file: PathBuf, node: String },
    /// What the node's console printed (`-f` follows it).
    Logs {
        file: PathBuf,
        node: String,
        #[arg(short, long)]
        follow: bool,
    },
    /// Take one node down and up again; its cables stay plugged in.
    Restart {
        file: PathBuf,
        node: String,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Throw away the disk overlays (back to the base images) and start again.
    Reset { file: PathBuf, node: Option<String> },
    /// Checkpoint every running node (all paused together), their disk overlays and
    /// the links, as NAME in the lab's state directory.
    Snapshot { file: PathBuf, name: String },
    /// Bring the whole lab back to checkpoint NAME: nodes, disks and links.
    Restore { file: PathBuf, name: String },
    /// Pull (`down`) or plug (`up`) a NIC's cable: NODE:NIC.
    Link {
        file: PathBuf,
        endpoint: String,
        #[arg(value_parser = ["up", "down"])]
        state: String,
    },
    /// Impair a link or network at run time: `--delay 20ms --loss 1%`, or `--clear`.
    Impair {
        file: PathBuf,
        /// The link or network name.
        target: String,
        #[arg(long)]
        delay: Option<String>,
        #[arg(long)]
        jitter: Option<String>,
        #[arg(long)]
        loss: Option<String>,
        #[arg(long)]
        duplicate: Option<String>,
        #[arg(long)]
        reorder: Option<String>,
        #[arg(long)]
        corrupt: Option<String>,
        #[arg(long)]
        rate: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// A live pcap of a link, network or NODE:NIC port (`-w -` for standard output,
    /// e.g. `| tcpdump -r -`).
    Capture {
        file: PathBuf,
        target: String,
        #[arg(short = 'w', long = "write", default_value = "-")]
        output: String,
    },
}

/// A lab file that failed its check (the errors are already printed).
#[derive(Debug)]
pub struct LabInvalid(pub usize);

impl std::fmt::Display for LabInvalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} error{s} found", self.0)
    }
}

impl std::error::Error for LabInvalid {}

/// Reads and checks the lab, printing every error.
pub fn resolve(file: &Path) -> anyhow::Result<LabSpec> {
    match lab::check_file(file)? {
        Ok(spec) => Ok(spec),
        Err(errors) => {
            eprint!("{}", errors.render());
            Err(LabInvalid(errors.count()).into())
        }
    }
}

/// The recorded state of the lab in `file`: from the file, or (edited or deleted)
/// the state recorded beside it.
fn recorded(file: &Path) -> anyhow::Result<LabState> {
    let from_spec = lab::check_file(file)
        .ok()
        .and_then(|r| r.ok())
        .map(|s| s.state_dir);
    let dir = lab::state::find_dir(file, from_spec.as_deref())
        .with_context(|| format!("{}: no lab state found (is the lab up?)", file.display()))?;
    LabState::load(&dir).with_context(|| format!("{}: the lab is not running", file.display()))
}

pub fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Check { file } => {
            let spec = resolve(&file)?;
            eprintln!(
                "{}: lab `{}` ok: {} nodes, {} links and networks",
                file.display(),
                spec.name,
                spec.nodes.len(),
                spec.nets.len()
            );
        }
        LabCommand::Graph { file } => {
            let spec = resolve(&file)?;
            crate::print(&lab::graph::to_dot(&spec)).context("printing the graph")?;
        }
        LabCommand::Up { file, nodes, keep } => {
            let spec = resolve(&file)?;
            for n in &nodes {
                if spec.node(n).is_none() {
                    bail!("lab `{}` has no node `{n}`", spec.name);
                }
            }
            let opts = lab::up::UpOptions { only: nodes, keep };
            lab::up::up(&spec, &opts, &mut std::io::stderr())?;
            eprintln!("lab `{}` is up", spec.name);
        }
        LabCommand::Down { file, timeout } => {
            let mut state = recorded(&file)?;
            let sockets = lab::check_file(&file)
                .ok()
                .and_then(|r| r.ok())
                .map(|s| lab::wiring::LabPaths::of(&s).sockets);
            lab::down::down(&mut state, timeout, sockets.as_deref());
            state.save()?;
            eprintln!("lab `{}` is down", state.name);
        }
        LabCommand::Status { file, json } => {
            let state = recorded(&file)?;
            if json {
                let text = serde_json::to_string_pretty(&lab::status::to_json(&state))?;
                crate::print(&format!("{text}\n"))?;
            } else {
                crate::print(&lab::status::to_table(&state))?;
            }
        }
        LabCommand::Console { file, node } => {
            let state = recorded(&file)?;
            let n = state
                .node(&node)
                .with_context(|| format!("no node `{node}`"))?;
            eprintln!(
                "node `{node}`: console {} (Ctrl-] detaches)",
                n.console.display()
            );
            lab::console::attach(&n.console)
                .with_context(|| format!("node `{node}`: cannot attach to its console"))?;
        }
        LabCommand::Logs { file, node, follow } => {
            let state = recorded(&file)?;
            let n = state
                .node(&node)
                .with_context(|| format!("no node `{node}`"))?;
            lab::console::print_log(&n.console_log, follow)?;
        }
        LabCommand::Restart {
            file,
            node,
            timeout,
        } => {
            let spec = resolve(&file)?;
            lab::up::restart(&spec, &node, timeout, &mut std::io::stderr())?;
            eprintln!("node `{node}` restarted");
        }
        LabCommand::Reset { file, node } => {
            let spec = resolve(&file)?;
            lab::up::reset(&spec, node.as_deref(), &mut std::io::stderr())?;
            eprintln!("lab `{}` reset", spec.name);
        }
        LabCommand::Snapshot { file, name } => checkpoint(&file, &name)?,
        LabCommand::Restore { file, name } => restore(&file, &name)?,
        LabCommand::Link {
            file,
            endpoint,
            state,
        } => {
            let rec = recorded(&file)?;
            lab::netctl::set_link(&rec, &endpoint, state == "up")?;
        }
        LabCommand::Impair {
            file,
            target,
            delay,
            jitter,
            loss,
            duplicate,
            reorder,
            corrupt,
            rate,
            clear,
        } => {
            let rec = recorded(&file)?;
            let cfg = vmrun::netsw::impair::ImpairConfig {
                delay,
                jitter,
                loss,
                duplicate,
                reorder,
                corrupt,
                rate,
                ..Default::default()
            };
            lab::netctl::impair(&rec, &target, (!clear).then_some(cfg))?;
        }
        LabCommand::Capture {
            file,
            target,
            output,
        } => {
            let rec = recorded(&file)?;
            lab::netctl::capture(&rec, &target, &output)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lab snapshot FILE NAME`.
fn checkpoint(file: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let spec = resolve(file)?;
    let cp = lab::snapshot::snapshot(&spec, name)?;
    eprintln!(
        "lab `{}`: checkpoint `{name}` of {} node(s), paused {} ms ({})",
        spec.name,
        cp.nodes.len(),
        cp.paused_ms,
        lab::snapshot::checkpoint_dir(&spec, name)?.display()
    );
    Ok(())
}

/// `lab restore FILE NAME`.
fn restore(file: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let spec = resolve(file)?;
    let t = std::time::Instant::now();
    let cp = lab::snapshot::restore(&spec, name)?;
    eprintln!(
        "lab `{}`: {} node(s) back at checkpoint `{name}` in {} ms",
        spec.name,
        cp.nodes.len(),
        t.elapsed().as_millis()
    );
    Ok(())
}
