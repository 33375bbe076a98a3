//! The KVM side: buses, the VM, vCPU threads and the main event loop.
pub mod bus;
pub mod event_loop;
pub mod exit;
pub mod irq;
pub mod kvm;
pub mod memory;
pub mod vcpu;
pub mod vm;
pub use exit::ExitReason;
pub mod attach;
pub mod builder;
pub mod rtc;
