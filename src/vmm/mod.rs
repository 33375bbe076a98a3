//! The KVM side: buses, the VM, vCPU threads and the main event loop.
pub mod bus;
pub mod kvm;
pub mod vm;
pub mod memory;
pub mod vcpu;
pub mod exit;
pub mod event_loop;
pub mod irq;
pub use exit::ExitReason;
pub mod attach;
pub mod builder;
