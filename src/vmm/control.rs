//! The running machine as the control server sees it: [`MachineControl`] implements
//! [`ControlTarget`] over the machine's handles (vCPUs, RTC, PM, screen, chardevs).
//!
//! [`crate::vmm::Machine::control`] makes one before the run; the run attaches the
//! vCPUs when they start ([`MachineControl::started`]) and reports how it ended
//! ([`MachineControl::finished`]). Commands act directly and synchronously: `stop`
//! parks the vCPUs (see `vcpu`) and stops the machine's clocks — the RTC's timer, the
//! ACPI PM timer's clock and the in-kernel PIT (saved with `KVM_GET_PIT2` and loaded
//! back on `cont`, which also drops ticks KVM queued for reinjection, as QEMU does) —
//! then emits `STOP`. `quit` and `system_reset` end the run the way a vCPU exit would;
//! vmrun behaves like QEMU with `-no-reboot`, so a reset (the guest's or QMP's) ends
//! the run and is reported as `SHUTDOWN`, never `RESET`.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use super::exit::ExitReason;
use super::rtc::RtcControl;
use super::vcpu::VcpuHandle;
use super::wire::ChardevInfo as WiredChardev;
use super::Screen;
use crate::control::{
    ChardevInfo, ControlError, ControlTarget, CpuInfo, Event, EventSink, ImageFormat, RunStatus,
    Screendump, ShutdownCause, SnapshotInfo,
};
use crate::devices::pm::{Pm, VmClock};
use crate::devices::vga::screenshot;
use crate::spec::{Kind, MachineSpec};

/// What the machine hands the control side before it runs.
pub struct ControlParts {
    pub spec: MachineSpec,
    pub vm: Arc<VmFd>,
    pub screen: Option<Screen>,
    pub chardevs: Vec<WiredChardev>,
    pub pm: Option<Arc<Mutex<Pm>>>,
    pub rtc: Option<RtcControl>,
    pub clock: VmClock,
    pub nics: Vec<(String, Arc<dyn crate::devices::nic::NicLink>)>,
    pub snapshot: crate::vmm::snapshot::SaveParts,
}

struct RunState {
    status: RunStatus,
    vcpus: Option<VcpuHandle>,
    /// The PIT as it was when paused.
    pit: Option<kvm_bindings::kvm_pit_state2>,
}

pub struct MachineControl {
    parts: ControlParts,
    events: EventSink,
    state: Mutex<RunState>,
    /// SHUTDOWN was emitted (by `quit`/`system_reset`, or at the end of the run).
    shutdown_sent: AtomicBool,
}

/// Why the run ended, as QMP's `SHUTDOWN` says it, and the status it leaves.
pub fn shutdown_cause(reason: &ExitReason) -> (ShutdownCause, RunStatus) {
    use ShutdownCause as C;
    let (cause, status) = match reason {
        ExitReason::Poweroff => (C::GuestShutdown, RunStatus::Shutdown),
        ExitReason::Reset | ExitReason::TripleFault => (C::GuestReset, RunStatus::Shutdown),
        ExitReason::GuestPanic => (C::GuestPanic, RunStatus::GuestPanicked),
        ExitReason::InternalError(_) => (C::HostError, RunStatus::InternalError),
        ExitReason::Timeout | ExitReason::Signal(_) => (C::HostSignal, RunStatus::Shutdown),
        ExitReason::Quit => (C::HostUi, RunStatus::Shutdown),
        ExitReason::QmpQuit => (C::HostQmpQuit, RunStatus::Shutdown),
        ExitReason::QmpReset => (C::HostQmpSystemReset, RunStatus::Shutdown),
    };
    (cause, status)
}

/// The bytes a file takes on disk (its holes not counted).
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// An I/O error's text without Rust's " (os error N)" suffix, as strerror says it.
fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl MachineControl {
    pub fn new(parts: ControlParts, events: EventSink) -> Arc<Self> {
        Arc::new(MachineControl {
            parts,
            events,
            state: Mutex::new(RunState {
                status: RunStatus::Prelaunch,
                vcpus: None,
                pit: None,
            }),
            shutdown_sent: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vCPUs run.
    pub fn started(&self, vcpus: VcpuHandle) {
        let mut s = self.lock();
        s.vcpus = Some(vcpus);
        s.status = RunStatus::Running;
    }

    /// The run ended with `reason`: status, and `SHUTDOWN` unless already sent.
    pub fn finished(&self, reason: &ExitReason) {
        let (cause, status) = shutdown_cause(reason);
        let mut s = self.lock();
        s.status = status;
        s.vcpus = None;
        drop(s);
        self.shutdown(cause);
    }

    fn shutdown(&self, cause: ShutdownCause) {
        if !self.shutdown_sent.swap(true, Ordering::SeqCst) {
            self.events.emit(Event::Shutdown(cause));
        }
    }

    /// Ends the run with `reason` (if nothing ended it first).
    fn end(&self, reason: ExitReason) -> Result<(), ControlError> {
        let vcpus = self.lock().vcpus.clone().ok_or(ControlError::Gone)?;
        let (cause, _) = shutdown_cause(&reason);
        if vcpus.end(reason) {
            self.shutdown(cause);
        }
        Ok(())
    }

    fn save_pit(&self) -> Option<kvm_bindings::kvm_pit_state2> {
        if !self.parts.spec.has(Kind::Pit) {
            return None;
        }
        self.parts.vm.get_pit2().ok()
    }

    fn write_image(&self, req: &Screendump, screen: &Screen) -> Result<(), ControlError> {
        let path = &req.filename;
        let fail = |e: &std::io::Error| {
            ControlError::Failed(format!(
                "failed to open file '{}': {}",
                path.display(),
                os_text(e)
            ))
        };
        let frame = screen.frame();
        let file = std::fs::File::create(path).map_err(|e| fail(&e))?;
        let mut out = std::io::BufWriter::new(file);
        let written = match req.format {
            ImageFormat::Ppm => screenshot::write_ppm(&frame, &mut out),
            ImageFormat::Png => screenshot::write_png(&frame, &mut out)
                .map_err(std::io::Error::other)
                .and_then(|()| out.flush()),
        };
        written.map_err(|e| ControlError::Failed(format!("cannot write {}: {e}", path.display())))
    }
}

impl ControlTarget for MachineControl {
    fn name(&self) -> String {
        self.parts.spec.name.clone()
    }

    fn status(&self) -> RunStatus {
        self.lock().status
    }

    fn stop(&self) -> Result<(), ControlError> {
        let mut s = self.lock();
        match (s.status, s.vcpus.clone()) {
            (RunStatus::Running, Some(vcpus)) => {
                vcpus.pause();
                if let Some(rtc) = &self.parts.rtc {
                    rtc.pause();
                }
                self.parts.clock.pause();
                s.pit = self.save_pit();
                s.status = RunStatus::Paused;
                self.events.emit(Event::Stop);
                Ok(())
            }
            (RunStatus::Paused, _) => Ok(()),
            (RunStatus::Prelaunch, _) => Err(ControlError::Failed(
                "the machine has not started yet".into(),
            )),
            _ => Err(ControlError::Gone),
        }
    }

    fn cont(&self) -> Result<(), ControlError> {
        let mut s = self.lock();
        match (s.status, s.vcpus.clone()) {
            (RunStatus::Paused, Some(vcpus)) => {
                if let Some(pit) = s.pit.take() {
                    let _ = self.parts.vm.set_pit2(&pit);
                }
                self.parts.clock.resume();
                if let Some(rtc) = &self.parts.rtc {
                    rtc.resume();
                }
                vcpus.resume();
                s.status = RunStatus::Running;
                self.events.emit(Event::Resume);
                Ok(())
            }
            (RunStatus::Running | RunStatus::Prelaunch, _) => Ok(()),
            _ => Err(ControlError::Gone),
        }
    }

    fn powerdown(&self) -> Result<(), ControlError> {
        let pm = self.parts.pm.as_ref().ok_or(ControlError::NoPowerButton)?;
        self.events.emit(Event::Powerdown);
        pm.lock()
            .unwrap_or_else(|p| p.into_inner())
            .press_power_button();
        Ok(())
    }

    fn reset(&self) -> Result<(), ControlError> {
        self.end(ExitReason::QmpReset)
    }

    fn quit(&self) {
        let _ = self.end(ExitReason::QmpQuit);
    }

    fn screendump(&self, req: &Screendump) -> Result<(), ControlError> {
        let screen = self.parts.screen.as_ref().ok_or(ControlError::NoConsole)?;
        if let Some(dev) = &req.device {
            let vga = self.parts.spec.devices_of(Kind::Vga).next();
            if vga.is_none_or(|v| &v.id != dev) {
                return Err(ControlError::DeviceNotFound(dev.clone()));
            }
        }
        if let Some(h) = req.head.filter(|&h| h != 0) {
            return Err(ControlError::Failed(format!(
                "There is no console with head {h}"
            )));
        }
        self.write_image(req, screen)
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        let tids = self.lock().vcpus.as_ref().map(VcpuHandle::thread_ids);
        let topo = self.parts.spec.cpus;
        (0..topo.count())
            .map(|i| {
                let (socket, core, thread) = topo.position(i);
                let tid = tids.as_ref().and_then(|t| t.get(i as usize)).copied();
                CpuInfo {
                    index: i,
                    thread_id: i64::from(tid.unwrap_or(0)),
                    socket,
                    core,
                    thread,
                }
            })
            .collect()
    }

    fn chardevs(&self) -> Vec<ChardevInfo> {
        (self.parts.chardevs.iter())
            .map(|c| ChardevInfo {
                label: c.label.clone(),
                filename: c.filename.clone(),
                frontend_open: true,
            })
            .collect()
    }

    fn memory_size(&self) -> u64 {
        self.parts.spec.memory.size
    }

    fn set_link(&self, name: &str, up: bool) -> Result<(), ControlError> {
        let (_, nic) = (self.parts.nics.iter())
            .find(|(id, _)| id == name)
            .ok_or_else(|| ControlError::Failed(format!("Device '{name}' not found")))?;
        nic.set_link(up);
        Ok(())
    }

    fn snapshot_save(
        &self,
        path: &std::path::Path,
        stay_paused: bool,
    ) -> Result<SnapshotInfo, ControlError> {
        // A directory that cannot be made fails before the machine is paused.
        use std::os::unix::fs::DirBuilderExt;
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true).mode(0o700);
        dir.create(path).map_err(|e| {
            ControlError::Failed(format!("cannot create {}: {}", path.display(), os_text(&e)))
        })?;
        let started = std::time::Instant::now();
        let was_running = self.status() == RunStatus::Running;
        self.stop()?;
        let s = self.lock();
        let vcpus = s.vcpus.clone().ok_or(ControlError::Gone)?;
        let saved = crate::vmm::snapshot::save(&self.parts.snapshot, &vcpus, s.pit, path);
        drop(s);
        let paused_ms = started.elapsed().as_millis() as u64;
        if was_running && !stay_paused {
            self.cont()?;
        }
        saved.map_err(|e| ControlError::Failed(crate::error_chain(&e)))?;
        let text = std::fs::read(path.join(crate::snapshot::manifest::MANIFEST))
            .map_err(|e| ControlError::Failed(format!("{}: {e}", path.display())))?;
        Ok(SnapshotInfo {
            path: path.to_path_buf(),
            memory_bytes: allocated(&path.join(crate::snapshot::manifest::MEMORY)),
            sha256: crate::snapshot::manifest::sha256(&text),
            paused_ms,
        })
    }

    fn inject_nmi(&self) -> Result<(), ControlError> {
        let vcpus = self.lock().vcpus.clone().ok_or(ControlError::Gone)?;
        vcpus.inject_nmi();
        Ok(())
    }
}
