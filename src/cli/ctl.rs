//! `vmrun ctl TARGET COMMAND` and `vmrun ps`: the command line of the QMP client in
//! `vmrun::control::ctl`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use vmrun::control::ctl::{self, CtlCommand};

#[derive(Subcommand)]
pub enum CtlCmd {
    /// Print the run state (running, paused, ...).
    Status,
    /// Pause every vCPU and the machine's timers (QMP `stop`).
    Pause,
    /// Resume after `pause` (QMP `cont`).
    Resume,
    /// Press the ACPI power button.
    Powerdown {
        /// Wait until the machine has shut down, at most this long (seconds, or with a
        /// unit: 90s, 2m; default 60s).
        #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, default_missing_value = "60",
              value_parser = parse_seconds)]
        wait: Option<Duration>,
    },
    /// Reset the machine (QMP `system_reset`).
    Reset,
    /// Write the VGA screen to FILE (PNG, or PPM for a .ppm name).
    Screenshot { file: PathBuf },
    /// Save a snapshot of the machine to the directory DIR (QMP `snapshot-save`); the
    /// machine goes on running unless --paused. `vmrun run --restore DIR` starts it.
    Snapshot {
        dir: PathBuf,
        /// Leave the machine paused after the snapshot.
        #[arg(long)]
        paused: bool,
    },
    /// End the machine now (QMP `quit`).
    Quit,
    /// Print the machine's events as JSON lines until it ends.
    Events,
    /// Run any QMP command: a name and its arguments as a JSON object, or a whole
    /// request (`'{"execute": "query-kvm"}'`).
    Qmp {
        command: String,
        arguments: Option<String>,
    },
}

/// A duration: plain seconds (`1.5`) or humantime (`90s`, `2m`).
fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|e| e.to_string()),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string()),
    }
}

impl From<CtlCmd> for CtlCommand {
    fn from(c: CtlCmd) -> Self {
        match c {
            CtlCmd::Status => CtlCommand::Status,
            CtlCmd::Pause => CtlCommand::Pause,
            CtlCmd::Resume => CtlCommand::Resume,
            CtlCmd::Powerdown { wait } => CtlCommand::Powerdown(wait),
            CtlCmd::Reset => CtlCommand::Reset,
            CtlCmd::Screenshot { file } => CtlCommand::Screenshot(file),
            CtlCmd::Snapshot { dir, paused } => CtlCommand::Snapshot(dir, paused),
            CtlCmd::Quit => CtlCommand::Quit,
            CtlCmd::Events => CtlCommand::Events,
            CtlCmd::Qmp { command, arguments } => CtlCommand::Qmp(command, arguments),
        }
    }
}

pub fn run(target: &str, command: CtlCmd, json: bool) -> anyhow::Result<ExitCode> {
    let code = ctl::run(target, &command.into(), json, &mut std::io::stdout())?;
    Ok(ExitCode::from(code))
}

pub fn ps(json: bool) -> anyhow::Result<ExitCode> {
    ctl::ps(json, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
