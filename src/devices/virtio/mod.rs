//! Virtio 1.x devices and their transports.
//!
//! A device (blk, net, ...) implements [`VirtioDevice`]: what it is, what it offers,
//! its configuration space, and what it does when the driver activates it and kicks
//! a queue. A transport ([`mmio::MmioTransport`] on microvm, the virtio-pci transport
//! on pc/q35) owns the device and speaks the register protocol: feature negotiation,
//! queue setup, status, interrupts. Devices know nothing of the transport: they
//! signal through the [`VirtioInterrupt`] the transport hands them on activation.
//!
//! A malformed virtqueue never panics anything: the device returns (or reports
//! through [`VirtioInterrupt::needs_reset`]) an error, the transport sets
//! DEVICE_NEEDS_RESET (status bit 0x40) and raises a configuration-change interrupt,
//! and the device stays quiet until the driver resets it.

pub mod blk;
pub mod common;
pub mod mmio;
pub mod net;
pub mod pci;
pub mod queue;
#[cfg(test)]
pub mod testutil;

use std::sync::Arc;

use thiserror::Error;
use vm_memory::GuestMemoryMmap;

use crate::snapshot::state::StateError;

pub use queue::{DescChain, Descriptor, Queue, QueueError, QueueState};

/// Device types (virtio 1.2, section 5).
pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;

/// Feature bits every device may offer (virtio 1.2, section 6).
pub const F_INDIRECT_DESC: u64 = 1 << 28;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;
/// What the queue code implements: indirect descriptors, event index, virtio 1.
pub const COMMON_FEATURES: u64 = F_INDIRECT_DESC | F_EVENT_IDX | F_VERSION_1;

/// Device status bits (virtio 1.2, section 2.1).
pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_NEEDS_RESET: u32 = 0x40;
pub const STATUS_FAILED: u32 = 0x80;

/// Interrupt status bits (ISR / InterruptStatus).
pub const INT_VRING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

#[derive(Debug, Error)]
pub enum VirtioError {
    #[error("virtqueue {queue}")]
    Queue { queue: u16, source: QueueError },
    #[error("the device has no queue {0}")]
    NoQueue(u16),
    #[error("activation: {0}")]
    Activate(String),
}

/// How a device signals the driver. The transport implements it (an edge on a GSI
/// for virtio-mmio, MSI-X vectors or INTx for virtio-pci).
pub trait VirtioInterrupt: Send + Sync {
    /// Used buffers were added to `queue`.
    fn signal_used(&self, queue: u16);
    /// The configuration space changed.
    fn signal_config(&self);
    /// The device found a broken virtqueue: DEVICE_NEEDS_RESET plus a configuration
    /// interrupt. For paths that run outside a queue notification (network input).
    fn needs_reset(&self);
}

/// What the transport hands a device when the driver sets DRIVER_OK.
pub struct Activation {
    pub mem: GuestMemoryMmap,
    /// One per queue the device declared, as the driver configured them (already
    /// validated when `ready`; a queue the driver did not enable has `ready == false`).
    pub queues: Vec<Queue>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The features the driver accepted.
    pub features: u64,
}

/// A virtio device, independent of its transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID ([`TYPE_BLOCK`], [`TYPE_NET`], ...).
    fn device_type(&self) -> u32;
    /// Offered features (include [`COMMON_FEATURES`] or the subset the device wants).
    fn features(&self) -> u64;
    /// One entry per virtqueue: its maximum size (a power of two).
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Reads the device-specific configuration space; bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space (ignored where read-only).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver set DRIVER_OK: start using the queues.
    fn activate(&mut self, act: Activation) -> Result<(), VirtioError>;
    /// The driver kicked `queue`. An error means the ring is broken: the transport
    /// marks the device as needing a reset.
    fn queue_notify(&mut self, queue: u16) -> Result<(), VirtioError>;
    /// The driver reset the device: drop the queues and go back to the initial state.
    fn reset(&mut self);

    /// The queues as the running device holds them (its positions in the rings), or
    /// `None` when it is not running (not activated, or stopped by a broken ring).
    fn running_queues(&self) -> Option<Vec<Queue>> {
        None
    }

    /// Device-specific snapshot state beyond the queues (encoded by the device).
    fn save_extra(&self) -> Result<Vec<u8>, StateError> {
        Ok(Vec::new())
    }

    /// Restores what [`Self::save_extra`] returned, after the transport restored and
    /// (if it was running) re-activated the device.
    fn restore_extra(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        crate::snapshot::state::ensure(bytes.is_empty(), || {
            "device state for a device that has none".into()
        })
    }
}

/// Reads `src` at `offset` into `data`, zero-filling what lies past its end.
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| src.get(o))
            .copied()
            .unwrap_or(0);
    }
}
