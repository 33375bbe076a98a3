//! `VMRUN_TIMING=1`: when the boot vCPU first enters the guest, for the boot and
//! restore benchmarks.

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Notes when the process started, for `VMRUN_TIMING`.
pub fn mark_start() {
    START.get_or_init(std::time::Instant::now);
}

/// With `VMRUN_TIMING=1` in the environment, says on stderr how long after the
/// start the boot vCPU first enters the guest (benchmarks of boot and restore).
pub(super) fn report_first_run() {
    if std::env::var_os("VMRUN_TIMING").is_none() {
        return;
    }
    if let Some(t) = START.get() {
        eprintln!(
            "vmrun: timing: first KVM_RUN {:.3} ms after start",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
}
