//! The kick: a signal that makes a vCPU thread leave `KVM_RUN` (see the module doc of
//! `vcpu`).

use std::cell::Cell;
use std::sync::Once;

use kvm_bindings::kvm_run;

use super::VcpuSetupError;

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

thread_local! {
    /// This thread's `kvm_run`, for the kick handler. Const-initialised, no destructor:
    /// safe to touch from a signal handler.
    pub(super) static KVM_RUN_PTR: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_: libc::c_int) {
    let p = KVM_RUN_PTR.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: this thread's own kvm_run mapping, set while its VcpuFd lives here and
        // cleared before it drops; `immediate_exit` takes a volatile one-byte store.
        unsafe { std::ptr::addr_of_mut!((*p).immediate_exit).write_volatile(1) };
    }
}

pub(super) fn install_kick_handler() -> Result<(), VcpuSetupError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler only does
        // an async-signal-safe volatile store. No SA_RESTART, so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
                result = Err(VcpuSetupError::Signal(std::io::Error::last_os_error()));
            }
        }
    });
    result
}
