//! A built machine: the KVM VM with its memory, the vCPUs, the buses and the devices.
//! [`crate::vmm::builder::build`] makes one from a spec; [`Machine::run`] runs it until
//! something ends the run. What is reachable from outside while it runs (the screen,
//! the serial backends) is handed out before `run` as handles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use super::control::{ControlParts, MachineControl};
use super::event_loop;
use super::exit::{Buses, ExitReason};
use super::kvm::Kvm;
use super::snapshot::SaveParts;
use super::vcpu::{self, Vcpu, VcpuSetupError};
use super::vm::Vm;
use super::wire::{ChardevInfo, Devices};
use crate::devices::vga::pci::StdVga;
use crate::devices::vga::render::Frame;
use crate::spec::MachineSpec;

#[derive(Debug, Error)]
pub enum RunError {
    #[error("this machine has already run (build it again to run it again)")]
    AlreadyRan,
    #[error(transparent)]
    Vcpu(#[from] VcpuSetupError),
}

/// How to run a machine.
#[derive(Default)]
pub struct RunOptions {
    /// End the run after this long.
    pub timeout: Option<Duration>,
    /// Called for every SIGUSR1 while the machine runs (e.g. a screenshot).
    pub on_usr1: Option<Box<dyn FnMut() + Send>>,
    /// The control side (from [`Machine::control`]): told when the vCPUs start and
    /// how the run ended.
    pub control: Option<Arc<MachineControl>>,
}

pub struct Machine {
    spec: MachineSpec,
    _kvm: Kvm,
    _vm: Vm,
    vcpus: Vec<Vcpu>,
    /// The MSRs KVM can save, for snapshots.
    msr_list: Vec<u32>,
    buses: Arc<Buses>,
    devices: Devices,
}

/// The machine's VGA screen, for screenshots while it runs or after.
#[derive(Clone)]
pub struct Screen(Arc<Mutex<StdVga>>);

impl Screen {
    /// What the screen shows now.
    pub fn frame(&self) -> Frame {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .vga()
            .render()
    }
}

impl Machine {
    pub(super) fn new(
        spec: MachineSpec,
        kvm: Kvm,
        vm: Vm,
        (vcpus, msr_list): (Vec<Vcpu>, Vec<u32>),
        buses: Arc<Buses>,
        devices: Devices,
    ) -> Self {
        Machine {
            spec,
            _kvm: kvm,
            _vm: vm,
            vcpus,
            msr_list,
            buses,
            devices,
        }
    }

    pub fn spec(&self) -> &MachineSpec {
        &self.spec
    }

    /// The VGA screen, if the machine has one.
    pub fn screen(&self) -> Option<Screen> {
        self.devices.vga.clone().map(Screen)
    }

    /// The serial ports' backends (pty paths are known once built).
    pub fn chardevs(&self) -> &[ChardevInfo] {
        &self.devices.chardevs
    }

    /// The machine's control target (for a QMP server), emitting its events to
    /// `events`; pass it in [`RunOptions::control`] too.
    pub fn control(&self, events: crate::control::EventSink) -> Arc<MachineControl> {
        let parts = ControlParts {
            spec: self.spec.clone(),
            vm: self._vm.fd().clone(),
            screen: self.screen(),
            chardevs: self.devices.chardevs.clone(),
            pm: self.devices.pm.clone(),
            rtc: self.devices.rtc.clone(),
            clock: self.devices.clock.clone(),
            nics: self.devices.nics.clone(),
            snapshot: self.save_parts(),
        };
        MachineControl::new(parts, events)
    }

    /// What a snapshot of this machine reads.
    pub fn save_parts(&self) -> SaveParts {
        SaveParts {
            spec: self.spec.clone(),
            vm: self._vm.fd().clone(),
            memory: self._vm.memory().clone(),
            sections: self.devices.state.clone(),
            disks: self.devices.disks.clone(),
            msr_list: self.msr_list.clone(),
            gate: self.devices.gate.clone(),
        }
    }

    /// Writes to the POST port 0x80 so far.
    pub fn post_writes(&self) -> u64 {
        self.devices.post.writes()
    }

    /// Runs the vCPUs and the event loop until something ends the run, then stops
    /// every vCPU and puts the terminal back.
    pub fn run(&mut self, opts: RunOptions) -> Result<ExitReason, RunError> {
        if self.vcpus.is_empty() {
            return Err(RunError::AlreadyRan);
        }
        // The exit signals wait for the event loop's signalfd from here on, in this
        // thread and in the vCPU threads it spawns.
        let old_mask = event_loop::block_exit_signals();
        let result = self.run_blocked(opts);
        // SAFETY: restores the mask saved above; the pointer arguments are valid.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
        result
    }

    fn run_blocked(&mut self, mut opts: RunOptions) -> Result<ExitReason, RunError> {
        let vcpus = std::mem::take(&mut self.vcpus);
        let running = vcpu::start(vcpus, self.buses.clone())?;
        if let Some(c) = &opts.control {
            c.started(running.handle());
        }
        let sources = std::mem::take(&mut self.devices.sources);
        let terminal = std::mem::take(&mut self.devices.terminal);
        let mut no_usr1 = || {};
        let on_usr1: &mut dyn FnMut() = match opts.on_usr1.as_mut() {
            Some(f) => f,
            None => &mut no_usr1,
        };
        let gate = self.devices.gate.clone();
        let reason = event_loop::run_gated(
            running,
            sources,
            (opts.timeout, &gate),
            on_usr1,
            move || drop(terminal),
        );
        if let Some(c) = &opts.control {
            c.finished(&reason);
        }
        Ok(reason)
    }
}
