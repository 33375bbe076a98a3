//! [`VcpuHandle`]: what other threads (the control server) may do to running vCPUs —
//! pause, resume, inject an NMI, end the run — without owning the threads. Cheap to
//! clone; safe to use after the run ended (kicks then reach no thread).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{RunState, Vcpu};
use crate::vmm::exit::ExitReason;

#[derive(Clone)]
pub struct VcpuHandle(pub(super) Arc<RunState>);

impl VcpuHandle {
    /// Parks every vCPU outside `KVM_RUN` (see the module doc) and returns once all
    /// that still run are parked. Pausing a paused machine does nothing.
    pub fn pause(&self) {
        let s = &self.0;
        s.pause.store(true, Ordering::SeqCst);
        s.kick();
        let mut p = s.parking();
        while p.parked < p.live && !s.stop.load(Ordering::SeqCst) {
            p = s.parked_cv.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets parked vCPUs run again.
    pub fn resume(&self) {
        self.0.pause.store(false, Ordering::SeqCst);
        let _p = self.0.parking();
        self.0.parked_cv.notify_all();
    }

    /// Runs `f` over every vCPU (in index order) while all are parked: their state may
    /// be read or set. None unless the machine is paused and every vCPU thread parked
    /// (or gone).
    pub fn with_parked<T>(&self, f: impl FnOnce(&[&Vcpu]) -> T) -> Option<T> {
        let s = &self.0;
        let p = s.parking();
        if !s.pause.load(Ordering::SeqCst) || p.parked < p.live {
            return None;
        }
        let guards: Vec<_> = s.cells.iter().map(|c| super::lock_vcpu(c)).collect();
        drop(p);
        let refs: Vec<&Vcpu> = guards.iter().map(|g| &**g).collect();
        Some(f(&refs))
    }

    /// Whether [`Self::pause`] is in force.
    pub fn is_paused(&self) -> bool {
        self.0.pause.load(Ordering::SeqCst)
    }

    /// The host thread id of each vCPU, in start order (0 until it runs).
    pub fn thread_ids(&self) -> Vec<i32> {
        (self.0.vcpus.iter())
            .map(|v| v.tid.load(Ordering::SeqCst))
            .collect()
    }

    /// Injects an NMI into every vCPU (`KVM_NMI`, from its own thread before its next
    /// `KVM_RUN`; a parked vCPU takes it when resumed).
    pub fn inject_nmi(&self) {
        for v in &self.0.vcpus {
            v.nmi.store(true, Ordering::SeqCst);
        }
        self.0.kick();
    }

    /// Ends the run with `reason`, as a vCPU exit would; true if nothing had ended it
    /// before.
    pub fn end(&self, reason: ExitReason) -> bool {
        self.0.finish(reason)
    }
}
