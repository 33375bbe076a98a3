//! The control socket: a QMP server (QEMU's Machine Protocol, as QEMU 7.2 speaks it)
//! on a unix socket, and its client (`vmrun ctl`, `vmrun ps`).
//!
//! The server knows the machine only through [`ControlTarget`]; the machine tells it
//! what happens through an [`EventSink`]. Pieces, one per file:
//!
//! - [`json`]: the JSON dialect (QEMU's parser rules and error texts, its output form).
//! - [`framer`]: the byte stream → messages (balanced braces, not lines).
//! - [`protocol`]: one request message → [`protocol::Request`] or a QMP error; replies,
//!   errors, events and the greeting as QEMU prints them.
//! - [`commands`]: the command table (names, argument checking, dispatch);
//!   `query-commands` is generated from it.
//! - [`events`]: QMP events and the sink the machine emits them through.
//! - [`server`]: the listener thread (poll over the socket and its clients).
//! - [`runtime`]: the per-user runtime directory, the socket's creation and the state
//!   file `vmrun ps` reads.
//! - [`ctl`]: the client side.

pub mod commands;
pub mod ctl;
pub mod events;
pub mod framer;
pub mod json;
pub mod protocol;
pub mod runtime;
pub mod server;

use std::path::PathBuf;

pub use events::{Event, EventSink, ShutdownCause};
pub use server::{ControlServer, ServerError};

/// The QEMU version whose QMP vmrun speaks (what the greeting and `query-version`
/// report; clients such as libvirt decide what to send from it).
pub const QEMU_VERSION: (u32, u32, u32) = (7, 2, 0);

/// Where a machine stands, with QAPI's `RunState` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Built, vCPUs not started yet.
    Prelaunch,
    Running,
    /// Stopped by `stop`.
    Paused,
    /// The guest or the host ended the run; the process is about to exit.
    Shutdown,
    InternalError,
    GuestPanicked,
}

impl RunStatus {
    /// The QAPI name (`query-status`'s `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Prelaunch => "prelaunch",
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Shutdown => "shutdown",
            RunStatus::InternalError => "internal-error",
            RunStatus::GuestPanicked => "guest-panicked",
        }
    }
}

/// Image formats of `screendump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Ppm,
}

/// A `screendump` request, its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screendump {
    pub filename: PathBuf,
    /// The display device's id, when the client named one.
    pub device: Option<String>,
    pub head: Option<i64>,
    pub format: ImageFormat,
}

/// One vCPU as `query-cpus-fast` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    pub index: u32,
    /// The host thread running it (its TID), 0 before it started.
    pub thread_id: i64,
    pub socket: u32,
    pub core: u32,
    pub thread: u32,
}

/// One character device as `query-chardev` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevInfo {
    pub label: String,
    /// QEMU's form: `pty:/dev/pts/3`, `unix:/path,server=on`, `file:/path`, `stdio`…
    pub filename: String,
    pub frontend_open: bool,
}

/// What `snapshot-save` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub path: std::path::PathBuf,
    /// Bytes of guest RAM in the snapshot (`memory.bin` without its holes).
    pub memory_bytes: u64,
    /// The manifest's sha256 (what `[boot] snapshot = { sha256 = … }` pins).
    pub sha256: String,
    /// How long the machine was paused for it, in milliseconds.
    pub paused_ms: u64,
}

/// Why the machine could not do what a command asked; the Display is the QMP `desc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("There is no console to take a screendump from")]
    NoConsole,
    #[error("Device '{0}' not found")]
    DeviceNotFound(String),
    #[error("this machine has no ACPI power button (it has no `pm` device)")]
    NoPowerButton,
    #[error("the machine has stopped")]
    Gone,
    #[error("{0}")]
    Failed(String),
}

/// What the control server may ask of a machine. Every method returns promptly (a
/// blocking one, like [`ControlTarget::stop`], waits only for the machine itself).
/// State-changing methods emit their events (`STOP`, `RESUME`, `POWERDOWN`, `RESET`,
/// `SHUTDOWN`) through the machine's [`EventSink`] before they return, so a client
/// sees them before the reply, as with QEMU.
pub trait ControlTarget: Send + Sync {
    /// The machine's name (`query-name`).
    fn name(&self) -> String;
    fn status(&self) -> RunStatus;
    /// Parks every vCPU outside `KVM_RUN` and stops the timers vmrun drives; returns
    /// once all are parked. A no-op (no event) when already paused.
    fn stop(&self) -> Result<(), ControlError>;
    /// Undoes [`ControlTarget::stop`].
    fn cont(&self) -> Result<(), ControlError>;
    /// Presses the ACPI power button.
    fn powerdown(&self) -> Result<(), ControlError>;
    /// Resets the machine as its reset register does.
    fn reset(&self) -> Result<(), ControlError>;
    /// Ends the run now (`SHUTDOWN`, reason `host-qmp-quit`).
    fn quit(&self);
    fn screendump(&self, req: &Screendump) -> Result<(), ControlError>;
    fn cpus(&self) -> Vec<CpuInfo>;
    fn chardevs(&self) -> Vec<ChardevInfo>;
    /// Guest RAM in bytes (`query-memory-size-summary`).
    fn memory_size(&self) -> u64;
    /// Plugs or pulls the cable of the NIC whose id is `name` (`set_link`).
    fn set_link(&self, name: &str, up: bool) -> Result<(), ControlError> {
        let _ = up;
        Err(ControlError::Failed(format!("Device '{name}' not found")))
    }
    /// Saves the machine to a snapshot directory (`snapshot-save`): pauses it, writes,
    /// and resumes it unless `stay_paused` (or it was paused before).
    fn snapshot_save(
        &self,
        path: &std::path::Path,
        stay_paused: bool,
    ) -> Result<SnapshotInfo, ControlError> {
        let _ = (path, stay_paused);
        Err(ControlError::Failed(
            "this feature or command is not currently supported".into(),
        ))
    }
    /// Sends an NMI to every vCPU (`inject-nmi`).
    fn inject_nmi(&self) -> Result<(), ControlError> {
        Err(ControlError::Failed(
            "this feature or command is not currently supported".into(),
        ))
    }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod server_tests;
