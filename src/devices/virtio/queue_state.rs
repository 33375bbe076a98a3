//! A virtqueue in a snapshot: its configuration and the device's position in it.

use std::num::Wrapping;

use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;

use super::Queue;
use crate::snapshot::state::{ensure, StateError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    size: u16,
    ready: bool,
    desc_table: u64,
    avail_ring: u64,
    used_ring: u64,
    msix_vector: u16,
    event_idx: bool,
    next_avail: u16,
    next_used: u16,
    signalled_used: u16,
}

impl Queue {
    pub fn save_state(&self) -> QueueState {
        QueueState {
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
            msix_vector: self.msix_vector,
            event_idx: self.event_idx,
            next_avail: self.next_avail.0,
            next_used: self.next_used.0,
            signalled_used: self.signalled_used.0,
        }
    }

    /// A queue of `max_size` as a transport's registers left it: any size and
    /// addresses (the driver may have written anything; activation validates them).
    pub fn from_state(max_size: u16, s: &QueueState) -> Self {
        Self {
            max_size,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
            msix_vector: s.msix_vector,
            event_idx: s.event_idx,
            next_avail: Wrapping(s.next_avail),
            next_used: Wrapping(s.next_used),
            signalled_used: Wrapping(s.signalled_used),
        }
    }

    /// A queue a running device uses: if ready, a valid size and rings inside `mem`,
    /// and no more chains taken than the ring holds.
    pub fn running_from_state(
        max_size: u16,
        s: &QueueState,
        mem: &GuestMemoryMmap,
    ) -> Result<Self, StateError> {
        let q = Self::from_state(max_size, s);
        if !q.ready {
            return Ok(q);
        }
        q.validate(mem)
            .map_err(|e| StateError::Invalid(e.to_string()))?;
        let in_flight = (q.next_avail - q.next_used).0;
        ensure(in_flight <= q.size, || {
            format!("{in_flight} chains in flight in a queue of {}", q.size)
        })?;
        Ok(q)
    }
}
