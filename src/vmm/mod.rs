//! The KVM side: buses, the VM, vCPU threads and the main event loop.
pub mod bus;
