//! The lab's processes: each node and the switch is its own `vmrun` process, started
//! detached (its own session, stdin from /dev/null, output to a log file) so it outlives
//! the `vmrun lab up` that started it, and stopped by pid when asked.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::state::Process;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("cannot find the vmrun executable")]
    Exe(#[source] std::io::Error),
    #[error("cannot open the log file {path}")]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Starts `vmrun ARGS...` detached, its stdout and stderr appended to `log`.
pub fn spawn(what: &str, args: &[&std::ffi::OsStr], log: &Path) -> Result<Process, ProcessError> {
    let exe = std::env::current_exe().map_err(ProcessError::Exe)?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| ProcessError::Log {
            path: log.to_path_buf(),
            source,
        })?;
    let err = out.try_clone().map_err(|source| ProcessError::Log {
        path: log.to_path_buf(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent; a new
    // session keeps the node alive when the terminal of `lab up` goes away.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        what: what.to_string(),
        source,
    })?;
    // Dropping the handle neither waits nor kills: `lab up` returns while the node
    // runs, and [`reap`] collects it if it ends first.
    Ok(Process::of(child.id()))
}

/// Reaps `pid` if it is our child and has exited (so it does not linger as a zombie
/// while `lab up` still runs); true when it is gone.
pub fn reap(p: &Process) -> bool {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a pid; it only fills `status`.
    let r = unsafe { libc::waitpid(p.pid as libc::pid_t, &mut status, libc::WNOHANG) };
    r == p.pid as libc::pid_t || !p.alive()
}

/// Waits up to `timeout` for the process to end.
pub fn wait_gone(p: &Process, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if reap(p) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a process: SIGTERM, then SIGKILL if it has not ended after `grace`.
pub fn stop(p: &Process, grace: Duration) {
    if !p.signal(libc::SIGTERM) {
        return;
    }
    if !wait_gone(p, grace) {
        p.signal(libc::SIGKILL);
        wait_gone(p, Duration::from_secs(2));
    }
}

/// The last `n` lines of a text file (for failure reports).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
