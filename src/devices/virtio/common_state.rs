//! The transport-independent part of a virtio device's snapshot: status, feature
//! selectors and the accepted features, the queue registers, the ISR bits and the
//! needs-reset flag, and, for a running device, its own copies of the queues (the
//! positions in the rings) and its device-specific state.
//!
//! A device that was running is re-activated on restore with its saved queues, the
//! path the driver's DRIVER_OK takes, so it runs on from where it stopped.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Common;
use crate::devices::virtio::{
    Activation, Queue, QueueState, VirtioInterrupt, INT_CONFIG, INT_VRING, STATUS_DRIVER_OK,
    STATUS_FAILED, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};
use crate::snapshot::state::{ensure, StateError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommonState {
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<QueueState>,
    config_generation: u32,
    active: bool,
    isr: u32,
    needs_reset: bool,
    running: Option<Vec<QueueState>>,
    extra: Vec<u8>,
}

impl Common {
    pub fn save_state(&self) -> Result<CommonState, StateError> {
        Ok(CommonState {
            status: self.status,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            queues: self.queues.iter().map(Queue::save_state).collect(),
            config_generation: self.config_generation,
            active: self.active,
            isr: self.ints.status.load(Ordering::Acquire),
            needs_reset: self.ints.needs_reset.load(Ordering::Acquire),
            running: self
                .device
                .running_queues()
                .map(|qs| qs.iter().map(Queue::save_state).collect()),
            extra: self.device.save_extra()?,
        })
    }

    fn check_state(&self, s: &CommonState) -> Result<(), StateError> {
        let n = self.queues.len();
        ensure(s.queues.len() == n, || {
            format!("{} queues for a device with {n}", s.queues.len())
        })?;
        ensure(
            s.status & !0xff == 0 && s.status & STATUS_NEEDS_RESET == 0,
            || format!("device status {:#x}", s.status),
        )?;
        ensure(s.isr & !(INT_VRING | INT_CONFIG) == 0, || {
            format!("ISR {:#x}", s.isr)
        })?;
        if s.status & STATUS_FEATURES_OK != 0 {
            let offered = self.device.features();
            ensure(s.driver_features & !offered == 0, || {
                format!("features {:#x} were not offered", s.driver_features)
            })?;
        }
        let started = STATUS_DRIVER_OK | STATUS_FEATURES_OK;
        ensure(
            !s.active || (s.status & started == started && s.status & STATUS_FAILED == 0),
            || format!("a running device with status {:#x}", s.status),
        )?;
        if let Some(run) = &s.running {
            ensure(s.active && run.len() == n, || "running queues".into())?;
        }
        Ok(())
    }

    /// Restores [`Self::save_state`]'s result; `interrupt` is what the device gets
    /// when it is re-activated.
    pub fn restore_state(
        &mut self,
        s: &CommonState,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), StateError> {
        self.check_state(s)?;
        let max: Vec<u16> = self.queues.iter().map(|q| q.max_size).collect();
        let running = match &s.running {
            Some(run) => Some(
                run.iter()
                    .zip(&max)
                    .map(|(q, &m)| Queue::running_from_state(m, q, &self.mem))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        self.device.reset();
        self.status = s.status;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.queue_sel = s.queue_sel;
        self.queues = s
            .queues
            .iter()
            .zip(&max)
            .map(|(q, &m)| Queue::from_state(m, q))
            .collect();
        self.config_generation = s.config_generation;
        self.active = s.active;
        self.ints.status.store(s.isr, Ordering::Release);
        self.ints
            .needs_reset
            .store(s.needs_reset, Ordering::Release);
        if let Some(queues) = running {
            let act = Activation {
                mem: self.mem.clone(),
                queues,
                interrupt,
                features: self.driver_features,
            };
            self.device
                .activate(act)
                .map_err(|e| StateError::Invalid(e.to_string()))?;
        }
        self.device.restore_extra(&s.extra)
    }
}
