//! How a vCPU exit is handled, and how a run ends.
//!
//! [`handle_exit`] is pure: it takes one `KVM_RUN` exit and the buses and says whether
//! to keep running, so it is tested with fake exits. [`ExitReason`] is the one value a
//! run produces; [`ExitReason::exit_code`] maps it to the process exit status:
//!
//! | code    | meaning                                                            |
//! |---------|--------------------------------------------------------------------|
//! | 0       | the guest powered off (ACPI S5, `KVM_SYSTEM_EVENT_SHUTDOWN`, ...)  |
//! | 0       | QMP `quit`                                                         |
//! | 1       | vmrun's own error (bad host setup, build failure; set by main)     |
//! | 2       | usage error (bad command line or machine file; set by the CLI)     |
//! | 3       | the guest asked for a reset (i8042 0xFE, 0xCF9, system event), or QMP `system_reset` |
//! | 4       | triple fault (`KVM_EXIT_SHUTDOWN`)                                 |
//! | 5       | the guest reported a panic (`KVM_SYSTEM_EVENT_CRASH`)              |
//! | 6       | KVM internal error / failed VM entry / unexpected exit             |
//! | 124     | `--timeout` expired (the value `timeout(1)` uses)                  |
//! | 128 + n | stopped by signal n (SIGINT → 130, SIGTERM → 143), shell-style     |
//! | 130     | the user quit from the console (Ctrl-A x), like Ctrl-C             |

use kvm_bindings::{
    KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION, KVM_INTERNAL_ERROR_SIMUL_EX,
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN, KVM_SYSTEM_EVENT_SUSPEND, KVM_SYSTEM_EVENT_WAKEUP,
};
use kvm_ioctls::VcpuExit;
use thiserror::Error;

use super::bus::{Bus, NotDecoded};
use crate::devices::VmEvent;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    Poweroff,
    Reset,
    TripleFault,
    GuestPanic,
    InternalError(String),
    Timeout,
    Signal(i32),
    /// The user asked to quit from the console (the chardev's Ctrl-A x).
    Quit,
    /// QMP `quit`.
    QmpQuit,
    /// QMP `system_reset` (which ends the run, as the guest's reset does).
    QmpReset,
}

impl ExitReason {
    /// The process exit status (see the module doc's table).
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Poweroff => 0,
            ExitReason::Reset => 3,
            ExitReason::TripleFault => 4,
            ExitReason::GuestPanic => 5,
            ExitReason::InternalError(_) => 6,
            ExitReason::Timeout => 124,
            ExitReason::Signal(n) => 128 + n,
            ExitReason::Quit => 128 + libc::SIGINT,
            ExitReason::QmpQuit => 0,
            ExitReason::QmpReset => 3,
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Poweroff => write!(f, "guest powered off"),
            ExitReason::Reset => write!(f, "guest requested a reset"),
            ExitReason::TripleFault => write!(f, "guest triple-faulted (KVM_EXIT_SHUTDOWN)"),
            ExitReason::GuestPanic => write!(f, "guest reported a panic"),
            ExitReason::InternalError(m) => write!(f, "internal error: {m}"),
            ExitReason::Timeout => write!(f, "timeout expired"),
            ExitReason::Signal(n) => write!(f, "stopped by signal {n}"),
            ExitReason::Quit => write!(f, "quit from the console"),
            ExitReason::QmpQuit => write!(f, "quit through QMP"),
            ExitReason::QmpReset => write!(f, "reset through QMP (system_reset)"),
        }
    }
}

impl From<VmEvent> for ExitReason {
    fn from(e: VmEvent) -> Self {
        match e {
            VmEvent::Poweroff => ExitReason::Poweroff,
            VmEvent::Reset => ExitReason::Reset,
        }
    }
}

/// The two buses a vCPU exit can land on, and the PCI root that decodes BARs for
/// addresses neither bus decodes.
#[derive(Default)]
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
    pub pci: Option<std::sync::Arc<crate::devices::pci::PciRoot>>,
}

/// What the vCPU loop does after an exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop(ExitReason),
}

/// Exits that end a run with an error. The vCPU loop adds what only the vCPU fd can
/// tell (suberror, guest RIP) when it turns one into [`ExitReason::InternalError`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VcpuError {
    #[error("KVM internal error")]
    Internal,
    #[error("VM entry failed: hardware reason {reason:#x} on host CPU {cpu}")]
    FailEntry { reason: u64, cpu: u32 },
    #[error("guest memory fault at {gpa:#x}+{size:#x} (flags {flags:#x})")]
    MemoryFault { gpa: u64, size: u64, flags: u64 },
    #[error("unexpected system event type {0}")]
    SystemEvent(u32),
    #[error("unexpected exit {0}")]
    Unexpected(&'static str),
    #[error("unexpected exit reason {0}")]
    Unsupported(u32),
}

/// What an internal-error suberror means.
pub fn internal_suberror_name(suberror: u32) -> &'static str {
    match suberror {
        KVM_INTERNAL_ERROR_EMULATION => "instruction emulation failed",
        KVM_INTERNAL_ERROR_SIMUL_EX => "exception while delivering an exception",
        KVM_INTERNAL_ERROR_DELIVERY_EV => "cannot deliver an event",
        KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON => "unexpected hardware exit reason",
        _ => "unknown",
    }
}

fn stop_on(event: Option<VmEvent>) -> Flow {
    match event {
        Some(e) => Flow::Stop(e.into()),
        None => Flow::Continue,
    }
}

/// Handles one exit: port and MMIO accesses go to the buses (an undecoded read returns
/// all ones, an undecoded write is dropped, as on an ISA/PCI bus with no one answering);
/// a device's poweroff/reset, a triple fault or a system event end the run.
///
/// Hot path: no allocation, no logging, no syscall.
pub fn handle_exit(exit: VcpuExit<'_>, buses: &Buses) -> Result<Flow, VcpuError> {
    handle_exit_sized(exit, 0, buses)
}

/// [`handle_exit`] for an exit whose port access is `io_size` bytes wide (`kvm_run.io.size`):
/// a string instruction (`rep insb`, `rep outsw`, ...) hands over `count` accesses at
/// once, which reach the device one at a time, as on the bus. 0 means one access of
/// the whole data.
pub fn handle_exit_sized(
    exit: VcpuExit<'_>,
    io_size: usize,
    buses: &Buses,
) -> Result<Flow, VcpuError> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            let port = u64::from(port);
            let size = if io_size == 0 { data.len() } else { io_size };
            for access in data.chunks_mut(size.max(1)) {
                if !buses.pio.read(port, access)
                    && !buses.pci.as_ref().is_some_and(|p| p.io_read(port, access))
                {
                    access.fill(0xff);
                }
            }
            Ok(Flow::Continue)
        }
        VcpuExit::IoOut(port, data) => {
            let port = u64::from(port);
            let size = if io_size == 0 { data.len() } else { io_size };
            for access in data.chunks(size.max(1)) {
                match buses.pio.try_write(port, access) {
                    Ok(None) => {}
                    Ok(event) => return Ok(stop_on(event)),
                    Err(NotDecoded) => {
                        if let Some(p) = &buses.pci {
                            p.io_write(port, access);
                        }
                    }
                }
            }
            Ok(Flow::Continue)
        }
        VcpuExit::MmioRead(addr, data) => {
            if !buses.mmio.read(addr, data)
                && !buses.pci.as_ref().is_some_and(|p| p.mmio_read(addr, data))
            {
                data.fill(0xff);
            }
            Ok(Flow::Continue)
        }
        VcpuExit::MmioWrite(addr, data) => match buses.mmio.try_write(addr, data) {
            Ok(event) => Ok(stop_on(event)),
            Err(NotDecoded) => {
                if let Some(p) = &buses.pci {
                    p.mmio_write(addr, data);
                }
                Ok(Flow::Continue)
            }
        },
        // With the in-kernel LAPIC, HLT waits in the kernel; one reaching us is not a
        // power-off, and the next KVM_RUN waits for the interrupt.
        VcpuExit::Hlt => Ok(Flow::Continue),
        VcpuExit::Shutdown => Ok(Flow::Stop(ExitReason::TripleFault)),
        VcpuExit::SystemEvent(kind, _) => match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => Ok(Flow::Stop(ExitReason::Poweroff)),
            KVM_SYSTEM_EVENT_RESET => Ok(Flow::Stop(ExitReason::Reset)),
            KVM_SYSTEM_EVENT_CRASH => Ok(Flow::Stop(ExitReason::GuestPanic)),
            KVM_SYSTEM_EVENT_WAKEUP | KVM_SYSTEM_EVENT_SUSPEND => Ok(Flow::Continue),
            other => Err(VcpuError::SystemEvent(other)),
        },
        VcpuExit::InternalError => Err(VcpuError::Internal),
        VcpuExit::FailEntry(reason, cpu) => Err(VcpuError::FailEntry { reason, cpu }),
        VcpuExit::MemoryFault { flags, gpa, size } => {
            Err(VcpuError::MemoryFault { gpa, size, flags })
        }
        // A signal kicked the vCPU out, or KVM asks us to look at the irq window /
        // an EOI we did not ask for: nothing to do, the loop checks for stop.
        VcpuExit::Intr | VcpuExit::IrqWindowOpen | VcpuExit::IoapicEoi(_) | VcpuExit::Debug(_) => {
            Ok(Flow::Continue)
        }
        VcpuExit::Unknown => Err(VcpuError::Unexpected("KVM_EXIT_UNKNOWN")),
        VcpuExit::Exception => Err(VcpuError::Unexpected("KVM_EXIT_EXCEPTION")),
        VcpuExit::Hypercall(_) => Err(VcpuError::Unexpected("KVM_EXIT_HYPERCALL")),
        VcpuExit::X86Rdmsr(_) => Err(VcpuError::Unexpected("KVM_EXIT_X86_RDMSR")),
        VcpuExit::X86Wrmsr(_) => Err(VcpuError::Unexpected("KVM_EXIT_X86_WRMSR")),
        VcpuExit::Unsupported(n) => Err(VcpuError::Unsupported(n)),
        _ => Err(VcpuError::Unexpected("non-x86 exit")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::devices::BusDevice;

    #[derive(Default)]
    struct Rec(Vec<u8>);
    impl BusDevice for Rec {
        fn read(&mut self, _region: usize, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8 + 0x10);
        }
        fn write(&mut self, _region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
            self.0.extend_from_slice(data);
            match data[0] {
                0xfe => Some(VmEvent::Reset),
                0x20 => Some(VmEvent::Poweroff),
                _ => None,
            }
        }
    }

    fn buses() -> (Buses, Arc<Mutex<Rec>>) {
        let rec = Arc::new(Mutex::new(Rec::default()));
        let mut b = Buses::default();
        b.pio.insert(rec.clone(), 0x3f8, 8).unwrap();
        b.mmio
            .insert(rec.clone(), 0xfee0_0000_0000, 0x1000)
            .unwrap();
        (b, rec)
    }

    #[test]
    fn pio_and_mmio() {
        let (b, rec) = buses();
        let mut d = [0u8; 2];
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x3f9, &mut d), &b),
            Ok(Flow::Continue)
        );
        assert_eq!(d, [0x11, 0x11]);
        assert_eq!(
            handle_exit(VcpuExit::IoIn(0x80, &mut d), &b),
            Ok(Flow::Continue)
        );
        assert_eq!(d, [0xff, 0xff]);
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x3f8, b"A"), &b),
            Ok(Flow::Continue)
        );
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x80, b"B"), &b),
            Ok(Flow::Continue)
        );
        // `rep insb` of 3 bytes: three 1-byte reads, each answered by the device.
        let mut s3 = [0u8; 3];
        assert_eq!(
            handle_exit_sized(VcpuExit::IoIn(0x3f9, &mut s3), 1, &b),
            Ok(Flow::Continue)
        );
        assert_eq!(s3, [0x11; 3]);
        let mut m = [0u8; 4];
        assert_eq!(
            handle_exit(VcpuExit::MmioRead(0x1000, &mut m), &b),
            Ok(Flow::Continue)
        );
        assert_eq!(m, [0xff; 4]);
        assert_eq!(
            handle_exit(VcpuExit::MmioRead(0xfee0_0000_0004, &mut m), &b),
            Ok(Flow::Continue)
        );
        assert_eq!(m, [0x14; 4]);
        assert_eq!(
            handle_exit(VcpuExit::MmioWrite(0xfee0_0000_0000, b"C"), &b),
            Ok(Flow::Continue)
        );
        assert_eq!(rec.lock().unwrap().0, b"AC");
    }

    #[test]
    fn run_enders() {
        let (b, _) = buses();
        assert_eq!(
            handle_exit(VcpuExit::IoOut(0x3fc, &[0xfe]), &b),
            Ok(Flow::Stop(ExitReason::Reset))
        );
        assert_eq!(
            handle_exit(VcpuExit::MmioWrite(0xfee0_0000_0000, &[0x20]), &b),
            Ok(Flow::Stop(ExitReason::Poweroff))
        );
        assert_eq!(handle_exit(VcpuExit::Hlt, &b), Ok(Flow::Continue));
        assert_eq!(
            handle_exit(VcpuExit::Shutdown, &b),
            Ok(Flow::Stop(ExitReason::TripleFault))
        );
        let ev = |t| handle_exit(VcpuExit::SystemEvent(t, &[]), &b);
        assert_eq!(
            ev(KVM_SYSTEM_EVENT_SHUTDOWN),
            Ok(Flow::Stop(ExitReason::Poweroff))
        );
        assert_eq!(
            ev(KVM_SYSTEM_EVENT_RESET),
            Ok(Flow::Stop(ExitReason::Reset))
        );
        assert_eq!(
            ev(KVM_SYSTEM_EVENT_CRASH),
            Ok(Flow::Stop(ExitReason::GuestPanic))
        );
        assert_eq!(ev(99), Err(VcpuError::SystemEvent(99)));
        assert_eq!(
            handle_exit(VcpuExit::InternalError, &b),
            Err(VcpuError::Internal)
        );
        assert_eq!(
            handle_exit(VcpuExit::FailEntry(0x21, 1), &b),
            Err(VcpuError::FailEntry {
                reason: 0x21,
                cpu: 1
            })
        );
        assert_eq!(handle_exit(VcpuExit::Intr, &b), Ok(Flow::Continue));
        assert_eq!(
            handle_exit(VcpuExit::Unsupported(77), &b),
            Err(VcpuError::Unsupported(77))
        );
    }

    #[test]
    fn exit_codes() {
        let codes: Vec<i32> = [
            ExitReason::Poweroff,
            ExitReason::Reset,
            ExitReason::TripleFault,
            ExitReason::GuestPanic,
            ExitReason::InternalError("x".into()),
            ExitReason::Timeout,
            ExitReason::Signal(libc::SIGINT),
            ExitReason::Signal(libc::SIGTERM),
            ExitReason::Quit,
        ]
        .iter()
        .map(ExitReason::exit_code)
        .collect();
        assert_eq!(codes, vec![0, 3, 4, 5, 6, 124, 130, 143, 130]);
        assert_eq!(internal_suberror_name(1), "instruction emulation failed");
    }
}
