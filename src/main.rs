//! The `vmrun` command line. `anyhow` lives here and nowhere else.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod cli;

use vmrun::config;
use vmrun::control::runtime::Registration;
use vmrun::control::{ControlServer, EventSink};
use vmrun::spec::{self, MachineSpec};

/// vmrun: run KVM virtual machines declared in TOML.
///
/// `vmrun machine.toml` checks the machine file and runs it.
#[derive(Parser)]
#[command(
    name = "vmrun",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// The machine file (with --restore, the snapshot's machine by default).
    #[arg(required_unless_present = "restore")]
    file: Option<PathBuf>,
    /// Stop the machine after this long (e.g. 30s, 2m); exit code 124.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Write a PNG of the VGA screen to FILE when the machine stops; SIGUSR1 writes
    /// FILE-N.png (or <machine name>-N.png) while it runs.
    #[arg(long, value_name = "FILE")]
    screenshot_on_exit: Option<PathBuf>,
    /// Serve QMP on this unix socket (default: `[control] qmp`, else
    /// $XDG_RUNTIME_DIR/vmrun/<name>/qmp.sock).
    #[arg(long, value_name = "PATH")]
    qmp: Option<PathBuf>,
    #[command(flatten)]
    snapshot: cli::restore::RestoreArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Check the machine file and run it (the default).
    Run(RunArgs),
    /// Run the machine with the built-in probe guest in place of its kernel; the probe
    /// reports the machine as it sees it on COM1. Probe options follow `--`
    /// (e.g. `vmrun probe m.toml -- pio=100000 echo=1`).
    Probe {
        #[command(flatten)]
        run: RunArgs,
        /// Options for the probe's command line.
        #[arg(last = true)]
        options: Vec<String>,
    },
    /// Check machine files: exit 0 when all are valid, 1 with every error otherwise.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the resolved machine (defaults expanded, resources assigned) as TOML.
    Show { file: PathBuf },
    /// Print the bus and device tree as Graphviz DOT (`vmrun graph m.toml | dot -Tsvg`).
    Graph { file: PathBuf },
    /// Print the JSON Schema of machine files, for editors (taplo, Even Better TOML).
    Schema,
    /// Labs: many machines and the cables and LANs between them, in one file.
    #[command(subcommand)]
    Lab(cli::lab::LabCommand),
    /// Control a running machine through its QMP socket (exit 0 done, 1 error, 124
    /// `powerdown --wait` timed out).
    Ctl {
        /// A machine name (see `vmrun ps`) or the path of a QMP socket.
        target: String,
        /// Print JSON (QMP return values, events) instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: cli::ctl::CtlCmd,
    },
    /// List this user's running machines: name, pid, state, uptime, socket.
    Ps {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a lab switch from its configuration (started by the lab supervisor; the
    /// format is documented in `vmrun::netsw::config`).
    #[command(hide = true)]
    Switch {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// A machine file that failed `check`; its diagnostics were already printed.
#[derive(Debug)]
struct Invalid(usize);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} error{} found",
            self.0,
            if self.0 == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for Invalid {}

/// Loads and checks `path`, printing every diagnostic to stderr.
fn resolve(path: &Path) -> anyhow::Result<MachineSpec> {
    let (sources, result) = vmrun::load_and_check(path)?;
    match result {
        Ok(spec) => Ok(spec),
        Err(diags) => {
            let mut err = std::io::stderr().lock();
            for d in &diags {
                let _ = writeln!(err, "{}", d.render(&sources));
            }
            Err(Invalid(diags.len()).into())
        }
    }
}

pub(crate) fn print(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        // `vmrun show m.toml | head` closes the pipe early; that is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

/// Saves what `screen` shows to `path`, saying so (or why not) on stderr.
fn screenshot(screen: Option<&vmrun::vmm::Screen>, path: &Path) {
    use vmrun::devices::vga::screenshot::save_png;
    let Some(screen) = screen else {
        eprintln!(
            "vmrun: no screenshot {}: the machine has no VGA",
            path.display()
        );
        return;
    };
    let frame = screen.frame();
    match save_png(&frame, path) {
        Ok(()) => eprintln!(
            "vmrun: screenshot {} ({}x{})",
            path.display(),
            frame.width,
            frame.height
        ),
        Err(e) => eprintln!("vmrun: {}", vmrun::error_chain(&e)),
    }
}

/// Process exit codes of a run; the guest's part is `ExitReason::exit_code`.
fn run(args: RunArgs, probe: Option<String>) -> anyhow::Result<ExitCode> {
    let file = cli::restore::machine_file(args.file.as_deref(), &args.snapshot)?;
    let mut spec = resolve(&file)?;
    if let Some(options) = probe {
        spec.boot = spec.boot.with_probe(&options);
    }
    let restore = cli::restore::open(&spec, &args.snapshot, resolve)?;
    // The control socket first: a second machine with this name stops here.
    let qmp = match &args.qmp {
        Some(p) => Some(std::path::absolute(p).context("the --qmp path")?),
        None => spec.control.qmp.clone(),
    };
    let (registration, listener) = Registration::register(&spec.name, qmp.as_deref())
        .with_context(|| format!("{}: cannot set up the control socket", file.display()))?;
    let mut machine = vmrun::vmm::build(&spec, &vmrun::vmm::BuildOptions { restore })
        .with_context(|| format!("{}: cannot build the machine", file.display()))?;
    let events = EventSink::new().context("creating the QMP event queue")?;
    let control = machine.control(events.clone());
    let server = ControlServer::start(listener, control.clone(), events)
        .with_context(|| format!("{}: cannot serve QMP", registration.socket().display()))?;
    let screen = machine.screen();
    // SIGUSR1 writes the next numbered screenshot beside the on-exit one (or named
    // after the machine).
    let base = args
        .screenshot_on_exit
        .clone()
        .unwrap_or_else(|| spec.name.clone().into());
    let usr1_screen = screen.clone();
    let mut shots = 0u32;
    let on_usr1 = Box::new(move || {
        shots += 1;
        let path = vmrun::devices::vga::screenshot::numbered_path(&base, shots);
        screenshot(usr1_screen.as_ref(), &path);
    });
    let opts = vmrun::vmm::RunOptions {
        timeout: args.timeout,
        on_usr1: Some(on_usr1),
        control: Some(control),
    };
    let reason = machine.run(opts);
    // Clients get what is queued (the SHUTDOWN event, the reply to `quit`).
    server.shutdown();
    drop(registration);
    let reason = reason.with_context(|| format!("{}: cannot run the machine", file.display()))?;
    if let Some(p) = &args.screenshot_on_exit {
        screenshot(screen.as_ref(), p);
    }
    let code = reason.exit_code();
    if code != 0 {
        eprintln!("vmrun: {}: {}", spec.name, reason);
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

fn main_inner(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run(cli.run, None),
        Some(Command::Run(args)) => run(args, None),
        Some(Command::Probe { run: args, options }) => run(args, Some(options.join(" "))),
        Some(Command::Check { files }) => {
            let mut bad = 0;
            for f in &files {
                match resolve(f) {
                    Ok(_) => {}
                    Err(e) if e.is::<Invalid>() => {
                        eprintln!("{}: {e}", f.display());
                        bad += 1;
                    }
                    Err(e) => {
                        eprintln!("error: {}", chain(&e));
                        bad += 1;
                    }
                }
            }
            if bad == 0 {
                let n = files.len();
                eprintln!("{n} machine file{} ok", if n == 1 { "" } else { "s" });
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::Show { file }) => {
            print(&spec::show::to_toml(&resolve(&file)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Graph { file }) => {
            print(&spec::graph::to_dot(&resolve(&file)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Lab(cmd)) => cli::lab::run(cmd),
        Some(Command::Ctl {
            target,
            json,
            command,
        }) => cli::ctl::run(&target, command, json),
        Some(Command::Ps { json }) => cli::ctl::ps(json),
        Some(Command::Switch { config }) => {
            vmrun::netsw::run::run_file(&config)
                .with_context(|| format!("switch {}", config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Schema) => {
            let schema = serde_json::to_string_pretty(&config::schema::json_schema())?;
            print(&format!("{schema}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The error and its causes, each once ([`vmrun::error_chain`]).
fn chain(e: &anyhow::Error) -> String {
    vmrun::error_chain(e.as_ref())
}

fn main() -> ExitCode {
    vmrun::vmm::vcpu::mark_start();
    let cli = Cli::parse();
    match main_inner(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}
