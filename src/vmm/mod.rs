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
pub mod builder;
pub mod control;
pub mod machine;
pub mod rtc;
pub mod snapshot;
pub mod wire;

pub use builder::{build, BuildError, BuildOptions};
pub use machine::{Machine, RunError, RunOptions, Screen};
