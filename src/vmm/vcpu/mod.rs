//! vCPUs: creation and per-CPU setup (CPUID, MSRs, LAPIC, boot registers), one thread
//! per vCPU around [`handle_exit`], and stopping them.
//!
//! Bring-up, in order, for every vCPU (the BSP is index 0):
//!
//! ```text
//! let mut v = Vcpu::new(&vm, i)?;                 // after vm.create_irqchip()
//! v.set_cpuid(&vcpu_cpuid(&supported, &topo, i)?)?;
//! v.set_msrs(&boot_msrs)?;
//! v.setup_lapic()?;                               // LINT0 ExtINT, LINT1 NMI
//! if i == 0 { v.set_boot_state(&boot.regs(), &boot.sregs(&v.sregs()?), &boot.fpu())?; }
//!                                                 // APs wait for INIT/SIPI
//! let running = vcpu::start(vcpus, buses)?;
//! ```
//!
//! Stopping: [`RunningVcpus::stop`] sets a flag and sends [`kick_signal`] (SIGRTMIN) to
//! every vCPU thread. The handler sets `immediate_exit` in that thread's `kvm_run`, so a
//! signal that lands just before `KVM_RUN` makes it return at once instead of being
//! lost; one that lands in the guest makes `KVM_RUN` return `EINTR`. The loop clears
//! `immediate_exit` before it looks at the flags, so a kick is never lost and never
//! sticks.
//!
//! Pausing: [`RunningVcpus::pause`] sets the pause flag and kicks the same way. A vCPU
//! that sees it first finishes the exit it was handling, then enters `KVM_RUN` once
//! more with `immediate_exit` set: KVM completes a pending port or MMIO read into the
//! guest's registers and returns `EINTR` without running guest code (an exit that
//! still comes out is handled like any other). So nothing is lost and the parked
//! state is consistent. The thread then sleeps on a condition variable (no CPU used)
//! until [`RunningVcpus::resume`] or a stop; `pause` returns once every vCPU that is
//! still running is parked.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::{
    kvm_fpu, kvm_msr_entry, kvm_regs, kvm_run, kvm_sregs, CpuId, KVM_EXIT_INTERNAL_ERROR,
};
use kvm_ioctls::VcpuFd;
use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::exit::{handle_exit_sized, internal_suberror_name, Buses, ExitReason, Flow, VcpuError};
use super::vm::Vm;
use crate::arch::x86_64::{lapic, msr};

#[derive(Debug, Error)]
pub enum VcpuSetupError {
    #[error("vCPUs must be created after the in-kernel irqchip (call Vm::create_irqchip first)")]
    NoIrqchip,
    #[error("vcpu {index}: {what} failed")]
    Ioctl {
        index: u32,
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("vcpu {index}")]
    Msr { index: u32, source: msr::MsrError },
    #[error("cannot create the vCPU exit eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("cannot install the vCPU kick signal handler")]
    Signal(#[source] std::io::Error),
    #[error("cannot spawn the thread for vcpu {index}")]
    Spawn { index: u32, source: std::io::Error },
}

/// One vCPU, not yet running.
pub struct Vcpu {
    index: u32,
    fd: VcpuFd,
}

impl Vcpu {
    /// `KVM_CREATE_VCPU` with id `index` (the LAPIC's initial ID is set from CPUID).
    pub fn new(vm: &Vm, index: u32) -> Result<Self, VcpuSetupError> {
        if !vm.has_irqchip() {
            return Err(VcpuSetupError::NoIrqchip);
        }
        let fd = vm
            .fd()
            .create_vcpu(u64::from(index))
            .map_err(|source| VcpuSetupError::Ioctl {
                index,
                what: "KVM_CREATE_VCPU",
                source,
            })?;
        Ok(Self { index, fd })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    fn ioctl_err(&self, what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuSetupError {
        let index = self.index;
        move |source| VcpuSetupError::Ioctl {
            index,
            what,
            source,
        }
    }

    /// `KVM_SET_CPUID2` (see `arch::x86_64::cpuid::vcpu_cpuid`). Call before the MSRs.
    pub fn set_cpuid(&self, cpuid: &CpuId) -> Result<(), VcpuSetupError> {
        self.fd
            .set_cpuid2(cpuid)
            .map_err(self.ioctl_err("KVM_SET_CPUID2"))
    }

    /// `KVM_SET_MSRS`; an empty list means [`msr::default_boot_msrs`].
    pub fn set_msrs(&self, entries: &[kvm_msr_entry]) -> Result<(), VcpuSetupError> {
        let defaults;
        let entries = if entries.is_empty() {
            defaults = msr::default_boot_msrs();
            &defaults[..]
        } else {
            entries
        };
        let index = self.index;
        let msrs = msr::to_msrs(entries).map_err(|source| VcpuSetupError::Msr { index, source })?;
        let written = self
            .fd
            .set_msrs(&msrs)
            .map_err(self.ioctl_err("KVM_SET_MSRS"))?;
        msr::check_written(entries, written).map_err(|source| VcpuSetupError::Msr { index, source })
    }

    /// LINT0 = ExtINT (unmasked on the BSP), LINT1 = NMI, via `KVM_GET/SET_LAPIC`.
    pub fn setup_lapic(&self) -> Result<(), VcpuSetupError> {
        let mut state = self
            .fd
            .get_lapic()
            .map_err(self.ioctl_err("KVM_GET_LAPIC"))?;
        lapic::set_lint(&mut state.regs, self.index == 0);
        self.fd
            .set_lapic(&state)
            .map_err(self.ioctl_err("KVM_SET_LAPIC"))
    }

    /// `KVM_GET_SREGS`: the current special registers, the base the boot module edits.
    pub fn sregs(&self) -> Result<kvm_sregs, VcpuSetupError> {
        self.fd.get_sregs().map_err(self.ioctl_err("KVM_GET_SREGS"))
    }

    /// The entry state of the boot CPU (from the boot module). APs get none: they stay
    /// in `KVM_MP_STATE_UNINITIALIZED` until the guest sends INIT/SIPI.
    pub fn set_boot_state(
        &self,
        regs: &kvm_regs,
        sregs: &kvm_sregs,
        fpu: &kvm_fpu,
    ) -> Result<(), VcpuSetupError> {
        self.fd
            .set_sregs(sregs)
            .map_err(self.ioctl_err("KVM_SET_SREGS"))?;
        self.fd
            .set_regs(regs)
            .map_err(self.ioctl_err("KVM_SET_REGS"))?;
        self.fd.set_fpu(fpu).map_err(self.ioctl_err("KVM_SET_FPU"))
    }

    /// `KVM_GET_MP_STATE` (`KVM_MP_STATE_*`).
    pub fn mp_state(&self) -> Result<u32, VcpuSetupError> {
        Ok(self
            .fd
            .get_mp_state()
            .map_err(self.ioctl_err("KVM_GET_MP_STATE"))?
            .mp_state)
    }

    /// The vCPU fd, for ioctls not wrapped here (register dumps in tests, ...).
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }

    /// The vCPU fd, mutably (`KVM_RUN` outside the vCPU threads: benchmarks, tests).
    pub fn fd_mut(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    /// Turns an error exit into an `ExitReason`, adding the suberror and guest RIP.
    /// Off the hot path: allocation and ioctls are fine here.
    fn describe(&mut self, err: VcpuError) -> ExitReason {
        let mut msg = format!("vcpu {}: {err}", self.index);
        if err == VcpuError::Internal {
            let run = self.fd.get_kvm_run();
            if run.exit_reason == KVM_EXIT_INTERNAL_ERROR {
                // SAFETY: exit_reason says the `internal` member of the union is the
                // one KVM filled in.
                let sub = unsafe { run.__bindgen_anon_1.internal.suberror };
                msg += &format!(", suberror {sub} ({})", internal_suberror_name(sub));
            }
        }
        match self.fd.get_regs() {
            Ok(r) => msg += &format!(", guest RIP {:#x}", r.rip),
            Err(e) => msg += &format!(", guest RIP unknown ({e})"),
        }
        if let Ok(s) = self.fd.get_sregs() {
            msg += &format!(" (CS base {:#x}, CR0 {:#x})", s.cs.base, s.cr0);
        }
        ExitReason::InternalError(msg)
    }
}

/// vCPU threads still in their loop, and how many of them are parked.
#[derive(Default)]
struct Parking {
    live: usize,
    parked: usize,
}

/// What one vCPU thread shares with the others.
struct PerVcpu {
    /// The thread's TID once it runs (0 before).
    tid: AtomicI32,
    /// An NMI to inject before the next `KVM_RUN`.
    nmi: AtomicBool,
}

/// What the vCPU threads share with the main thread.
struct RunState {
    stop: AtomicBool,
    pause: AtomicBool,
    parking: Mutex<Parking>,
    /// Signalled when a vCPU parks or leaves, and on resume or stop.
    parked_cv: Condvar,
    reason: Mutex<Option<ExitReason>>,
    exit_evt: EventFd,
    vcpus: Vec<PerVcpu>,
    /// The vCPU threads while they can be signalled (None once joining starts).
    pthreads: Mutex<Option<Vec<libc::pthread_t>>>,
    /// Each vCPU, locked by its thread except while parked.
    cells: Vec<Arc<Mutex<Vcpu>>>,
}

impl RunState {
    /// Sends [`kick_signal`] to every vCPU thread that has not been joined.
    fn kick(&self) {
        let threads = self.pthreads.lock().unwrap_or_else(|p| p.into_inner());
        for &t in threads.iter().flatten() {
            // SAFETY: a thread we spawned and have not joined (join clears the list
            // under this lock first), so the pthread_t is valid even if it has exited.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }

    fn parking(&self) -> std::sync::MutexGuard<'_, Parking> {
        self.parking.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the first reason the run ended and wakes the main loop; true if this
    /// was the first.
    fn finish(&self, reason: ExitReason) -> bool {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        let first = slot.is_none();
        if first {
            *slot = Some(reason);
        }
        drop(slot);
        let _ = self.exit_evt.write(1);
        first
    }
}

/// Reports a panicking vCPU thread so the main loop does not wait forever.
struct PanicGuard<'a>(&'a RunState, u32);
impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.finish(ExitReason::InternalError(format!(
                "vcpu {} thread panicked",
                self.1
            )));
        }
    }
}

/// Blocks the signals the main loop takes with a signalfd, unblocks the kick.
fn set_vcpu_thread_sigmask() {
    // SAFETY: plain sigset manipulation on a local and this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, kick_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Sets or clears this thread's `immediate_exit` (see the module doc).
fn set_immediate_exit(run: *mut kvm_run, v: u8) {
    // SAFETY: this thread's own live kvm_run mapping; a volatile one-byte store, as
    // the kick handler does.
    unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(v) };
}

fn immediate_exit(run: *mut kvm_run) -> u8 {
    // SAFETY: as above, a volatile one-byte load.
    unsafe { std::ptr::addr_of!((*run).immediate_exit).read_volatile() }
}

/// What one `KVM_RUN` came to.
enum Step {
    /// An exit, handled; go on.
    Ran,
    /// `EINTR`: kicked, or `immediate_exit` was set.
    Interrupted,
    End(ExitReason),
}

/// One `KVM_RUN` and the handling of its exit.
fn run_once(vcpu: &mut Vcpu, run_ptr: *mut kvm_run, buses: &Buses) -> Step {
    let ran = vcpu.fd.run();
    // SAFETY: this vCPU's live kvm_run; `io.size` is read only after KVM_EXIT_IO, and
    // the exit's data slice borrows another part of the page, not this field.
    let io_size = unsafe {
        if (*run_ptr).exit_reason == kvm_bindings::KVM_EXIT_IO {
            usize::from((*run_ptr).__bindgen_anon_1.io.size)
        } else {
            0
        }
    };
    match ran {
        Ok(exit) => match handle_exit_sized(exit, io_size, buses) {
            Ok(Flow::Continue) => Step::Ran,
            Ok(Flow::Stop(r)) => Step::End(r),
            Err(e) => Step::End(vcpu.describe(e)),
        },
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Step::Interrupted,
        Err(e) => Step::End(ExitReason::InternalError(format!(
            "vcpu {}: KVM_RUN failed: {e}",
            vcpu.index
        ))),
    }
}

/// Completes what KVM holds for userspace (see the module doc). Some(reason) if an
/// exit on the way ended the run.
fn complete_pending(vcpu: &mut Vcpu, run_ptr: *mut kvm_run, buses: &Buses) -> Option<ExitReason> {
    loop {
        set_immediate_exit(run_ptr, 1);
        match run_once(vcpu, run_ptr, buses) {
            Step::Interrupted => return None,
            // A real exit came out (string I/O going on, say): handled; again.
            Step::Ran => {}
            Step::End(r) => return Some(r),
        }
    }
}

/// Sleeps, counted as parked, until resumed or stopped. The vCPU's lock is not held
/// meanwhile: [`VcpuHandle::with_parked`] may read or write its state.
fn wait_parked(state: &RunState) {
    let mut p = state.parking();
    p.parked += 1;
    state.parked_cv.notify_all();
    while state.pause.load(Ordering::SeqCst) && !state.stop.load(Ordering::SeqCst) {
        p = state.parked_cv.wait(p).unwrap_or_else(|e| e.into_inner());
    }
    p.parked -= 1;
}

fn lock_vcpu(cell: &Mutex<Vcpu>) -> std::sync::MutexGuard<'_, Vcpu> {
    cell.lock().unwrap_or_else(|p| p.into_inner())
}

/// The thread body: KVM_RUN, handle the exit, repeat until something ends the run.
fn vcpu_loop(cell: &Mutex<Vcpu>, slot: usize, buses: &Buses, state: &RunState) {
    let mut vcpu = lock_vcpu(cell);
    let _guard = PanicGuard(state, vcpu.index);
    set_vcpu_thread_sigmask();
    let me = &state.vcpus[slot];
    // SAFETY: gettid has no preconditions.
    me.tid.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    let run_ptr: *mut kvm_run = vcpu.fd.get_kvm_run();
    if vcpu.index == 0 {
        report_first_run();
    }
    KVM_RUN_PTR.with(|c| c.set(run_ptr));
    let reason = loop {
        if immediate_exit(run_ptr) != 0 {
            set_immediate_exit(run_ptr, 0);
        }
        if state.stop.load(Ordering::SeqCst) {
            break None;
        }
        if state.pause.load(Ordering::SeqCst) {
            if let Some(r) = complete_pending(&mut vcpu, run_ptr, buses) {
                break Some(r);
            }
            drop(vcpu);
            wait_parked(state);
            vcpu = lock_vcpu(cell);
            continue;
        }
        if me.nmi.swap(false, Ordering::SeqCst) {
            let _ = vcpu.fd.nmi();
        }
        if let Step::End(r) = run_once(&mut vcpu, run_ptr, buses) {
            break Some(r);
        }
    };
    KVM_RUN_PTR.with(|c| c.set(std::ptr::null_mut()));
    state.parking().live -= 1;
    state.parked_cv.notify_all();
    if let Some(r) = reason {
        state.finish(r);
    }
}

mod handle;
mod kick;
mod timing;
pub use handle::VcpuHandle;
pub use kick::kick_signal;
use kick::{install_kick_handler, KVM_RUN_PTR};
pub use timing::mark_start;
use timing::report_first_run;

/// The running vCPU threads.
pub struct RunningVcpus {
    threads: Vec<JoinHandle<()>>,
    state: Arc<RunState>,
}

/// Starts one thread per vCPU, named `vcpu N`.
pub fn start(vcpus: Vec<Vcpu>, buses: Arc<Buses>) -> Result<RunningVcpus, VcpuSetupError> {
    install_kick_handler()?;
    let state = Arc::new(RunState {
        stop: AtomicBool::new(false),
        pause: AtomicBool::new(false),
        parking: Mutex::new(Parking::default()),
        parked_cv: Condvar::new(),
        reason: Mutex::new(None),
        exit_evt: EventFd::new(EFD_NONBLOCK).map_err(VcpuSetupError::EventFd)?,
        vcpus: (0..vcpus.len())
            .map(|_| PerVcpu {
                tid: AtomicI32::new(0),
                nmi: AtomicBool::new(false),
            })
            .collect(),
        pthreads: Mutex::new(Some(Vec::new())),
        cells: vcpus.into_iter().map(|v| Arc::new(Mutex::new(v))).collect(),
    });
    let mut running = RunningVcpus {
        threads: Vec::with_capacity(state.cells.len()),
        state: state.clone(),
    };
    for (slot, cell) in state.cells.iter().enumerate() {
        let index = lock_vcpu(cell).index;
        let cell = cell.clone();
        let (buses, state) = (buses.clone(), state.clone());
        running.state.parking().live += 1;
        let spawned = std::thread::Builder::new()
            .name(format!("vcpu {index}"))
            .stack_size(256 * 1024)
            .spawn(move || vcpu_loop(&cell, slot, &buses, &state));
        match spawned {
            Ok(t) => {
                let mut pt = running
                    .state
                    .pthreads
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                pt.get_or_insert_with(Vec::new).push(t.as_pthread_t());
                drop(pt);
                running.threads.push(t);
            }
            Err(source) => {
                running.state.parking().live -= 1;
                running.stop();
                running.join();
                return Err(VcpuSetupError::Spawn { index, source });
            }
        }
    }
    Ok(running)
}

impl RunningVcpus {
    /// A handle to pause, resume and end the run from other threads.
    pub fn handle(&self) -> VcpuHandle {
        VcpuHandle(self.state.clone())
    }

    /// Readable (an eventfd) once some vCPU has recorded why the run ended.
    pub fn exit_fd(&self) -> RawFd {
        self.state.exit_evt.as_raw_fd()
    }

    /// The recorded reason, if a vCPU (or [`VcpuHandle::end`]) ended the run.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.state
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks every vCPU thread to leave `KVM_RUN` and return. Does not wait.
    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.kick();
        // Parked threads wait on the condition variable, not in KVM_RUN.
        let _p = self.state.parking();
        self.state.parked_cv.notify_all();
    }

    /// See [`VcpuHandle::pause`].
    pub fn pause(&self) {
        self.handle().pause()
    }

    /// See [`VcpuHandle::resume`].
    pub fn resume(&self) {
        self.handle().resume()
    }

    pub fn is_paused(&self) -> bool {
        self.handle().is_paused()
    }

    /// How many vCPUs are parked now.
    pub fn parked(&self) -> usize {
        self.state.parking().parked
    }

    /// See [`VcpuHandle::thread_ids`].
    pub fn thread_ids(&self) -> Vec<i32> {
        self.handle().thread_ids()
    }

    /// Waits for every vCPU thread. Call after [`Self::stop`] (or once all have ended).
    pub fn join(&mut self) {
        // No kick may reach a joined thread's pthread_t from here on.
        *self
            .state
            .pthreads
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Number of vCPU threads still held.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }
}

impl Drop for RunningVcpus {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
            self.join();
        }
    }
}
