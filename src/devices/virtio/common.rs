//! What every transport does the same way: feature negotiation, queue configuration,
//! the status state machine, activation and reset. The transports map their registers
//! onto [`Common`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;

use super::{
    Activation, Queue, VirtioDevice, VirtioInterrupt, F_EVENT_IDX, F_VERSION_1, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};

/// Interrupt state a transport shares with its device: the pending interrupt bits
/// (ISR / InterruptStatus) and the needs-reset flag.
#[derive(Debug, Default)]
pub struct IntState {
    pub status: AtomicU32,
    pub needs_reset: AtomicBool,
}

/// The transport-independent state of one virtio device.
pub struct Common {
    pub device: Box<dyn VirtioDevice>,
    pub mem: GuestMemoryMmap,
    pub status: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub driver_features: u64,
    pub queue_sel: u32,
    pub queues: Vec<Queue>,
    pub config_generation: u32,
    pub active: bool,
    pub ints: Arc<IntState>,
}

impl Common {
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemoryMmap) -> Self {
        let queues = device
            .queue_max_sizes()
            .into_iter()
            .map(Queue::new)
            .collect();
        Self {
            device,
            mem,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            config_generation: 0,
            active: false,
            ints: Arc::new(IntState::default()),
        }
    }

    /// The status the driver reads (DEVICE_NEEDS_RESET included).
    pub fn status(&self) -> u32 {
        let nr = if self.ints.needs_reset.load(Ordering::Acquire) {
            STATUS_NEEDS_RESET
        } else {
            0
        };
        self.status | nr
    }

    pub fn needs_reset(&self) -> bool {
        self.ints.needs_reset.load(Ordering::Acquire)
    }

    /// 32 bits of the offered features, selected by `device_features_sel`.
    pub fn device_features_word(&self) -> u32 {
        let f = self.device.features();
        match self.device_features_sel {
            0 => f as u32,
            1 => (f >> 32) as u32,
            _ => 0,
        }
    }

    /// The driver writes 32 bits of the accepted features (before FEATURES_OK).
    pub fn set_driver_features_word(&mut self, v: u32) {
        if self.status & STATUS_FEATURES_OK != 0 {
            return;
        }
        match self.driver_features_sel {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v as u64,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | ((v as u64) << 32),
            _ => {}
        }
    }

    /// The selected queue, if the device has it.
    pub fn queue(&mut self) -> Option<&mut Queue> {
        // Queue registers are read-only once the device runs.
        if self.active {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    pub fn queue_ref(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    /// A write of the device status register. `interrupt` is what the device gets on
    /// activation.
    pub fn set_status(&mut self, v: u32, interrupt: Arc<dyn VirtioInterrupt>) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v & 0xff & !STATUS_NEEDS_RESET;
        if v & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            let offered = self.device.features();
            let ok =
                self.driver_features & !offered == 0 && self.driver_features & F_VERSION_1 != 0;
            if !ok {
                // Leave FEATURES_OK clear: the driver reads it back and gives up.
                v &= !STATUS_FEATURES_OK;
            }
        }
        self.status = v;
        if v & STATUS_DRIVER_OK != 0
            && v & STATUS_FEATURES_OK != 0
            && v & STATUS_FAILED == 0
            && !self.active
        {
            self.activate(interrupt.clone());
        }
    }

    fn activate(&mut self, interrupt: Arc<dyn VirtioInterrupt>) {
        self.active = true;
        let event_idx = self.driver_features & F_EVENT_IDX != 0;
        for q in &mut self.queues {
            q.set_event_idx(event_idx);
            if q.ready && q.validate(&self.mem).is_err() {
                interrupt.needs_reset();
                return;
            }
        }
        let act = Activation {
            mem: self.mem.clone(),
            queues: self.queues.clone(),
            interrupt: interrupt.clone(),
            features: self.driver_features,
        };
        if self.device.activate(act).is_err() {
            interrupt.needs_reset();
        }
    }

    /// The driver kicked `index`.
    pub fn notify(&mut self, index: u32, interrupt: &dyn VirtioInterrupt) {
        if !self.active || self.needs_reset() {
            return;
        }
        let Ok(index) = u16::try_from(index) else {
            return;
        };
        if index as usize >= self.queues.len() {
            return;
        }
        if self.device.queue_notify(index).is_err() {
            interrupt.needs_reset();
        }
    }

    /// Device reset: everything back to power-on state.
    pub fn reset(&mut self) {
        self.device.reset();
        self.status = 0;
        self.active = false;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.ints.status.store(0, Ordering::Release);
        self.ints.needs_reset.store(false, Ordering::Release);
    }
}

#[path = "common_state.rs"]
mod state;
pub use state::CommonState;
