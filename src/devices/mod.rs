//! Emulated devices, one per file. Devices know nothing of KVM: each takes its output
//! writer, its interrupt line and its clock as parameters, and is driven through
//! [`BusDevice`] register accesses.

/// Something a device asks of the VM as a result of a guest register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest asked for the machine to power off (ACPI S5, ...).
    Poweroff,
    /// The guest asked for a reset (i8042 0xFE, port 0xCF9, ...).
    Reset,
}

/// A device on the port-I/O or MMIO bus. A device decodes register regions, each
/// placed at some range of the bus (the spec says where); an access reaches it as the
/// region's index and the offset inside it, never as an absolute address, so the same
/// device works wherever the machine puts it.
pub trait BusDevice: Send {
    /// A guest read; the device fills `data` (its length is the access size).
    fn read(&mut self, region: usize, offset: u64, data: &mut [u8]);
    /// A guest write. A device that makes the VM stop returns the event.
    fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent>;
}

/// An interrupt line into the interrupt controllers (a GSI). Devices drive levels;
/// edge-triggered lines see the rising edge.
pub trait IrqLine: Send + Sync {
    /// Drive the line to `high`.
    fn set_level(&self, high: bool);
    /// A pulse: high then low (an edge for edge-triggered inputs).
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A line that goes nowhere, for tests and devices whose interrupt is not wired.
#[derive(Debug, Default)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}
pub mod cmos;
pub mod debugcon;
pub mod e1000;
pub mod fw_cfg;
pub mod i8042;
pub mod nic;
pub mod pci;
pub mod pm;
pub mod post;
pub mod reset;
pub mod serial;
pub mod vga;
pub mod virtio;

#[cfg(test)]
mod state_fuzz;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod state_tests_pci;
