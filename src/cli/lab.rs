//! `vmrun lab ...`: check, bring up, inspect and tear down a lab.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use vmrun::lab::{self, LabSpec};

#[derive(Subcommand)]
pub enum LabCommand {
    /// Check the lab file and every node's machine: exit 0 when valid, 1 with every
    /// error otherwise.
    Check { file: PathBuf },
    /// Print the nodes, NICs, cables and LANs as Graphviz DOT.
    Graph { file: PathBuf },
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
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Graph { file } => {
            let spec = resolve(&file)?;
            crate::print(&lab::graph::to_dot(&spec)).context("printing the graph")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
