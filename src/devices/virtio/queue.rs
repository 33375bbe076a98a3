//! Split virtqueues (virtio 1.x, section 2.7): the descriptor table, the available
//! ring the driver fills and the used ring the device fills, all in guest memory.
//!
//! Everything the guest wrote is untrusted: every ring index, descriptor index,
//! buffer address and length is checked, chains are bounded (no loops), and every
//! access goes through vm-memory's checked accessors. A malformed ring is reported as
//! a [`QueueError`]; the transport turns it into DEVICE_NEEDS_RESET.
//!
//! Memory ordering follows the spec: the avail index is read with Acquire before the
//! ring entries it covers; used elements are written before the used index is stored
//! with Release; with VIRTIO_F_EVENT_IDX a full fence separates publishing the used
//! index (or the avail event) from reading the driver's event index (or the avail
//! index again), so a notification is never lost.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Avail ring flag: the driver does not want interrupts.
const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// The largest queue the transports offer.
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// The largest indirect table accepted (entries).
pub const MAX_INDIRECT: u32 = 1024;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QueueError {
    #[error("queue is not ready or its size {0} is not a power of two up to the maximum")]
    BadSize(u16),
    #[error("ring area {what} at {addr:#x}+{len:#x} is misaligned or outside guest RAM")]
    BadRingArea {
        what: &'static str,
        addr: u64,
        len: u64,
    },
    #[error("guest memory access at {0:#x} failed")]
    Memory(u64),
    #[error("the avail index moved {0} entries ahead of the device (queue size {1})")]
    AvailOverrun(u16, u16),
    #[error("descriptor index {0} is outside the table of {1}")]
    DescOutOfRange(u32, u32),
    #[error("descriptor chain is longer than {0} (a loop?)")]
    ChainTooLong(u32),
    #[error("indirect descriptor: {0}")]
    BadIndirect(&'static str),
    #[error("buffer {addr:#x}+{len:#x} is outside guest RAM")]
    BadBuffer { addr: u64, len: u32 },
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("used ring head {0} was never made available")]
    BadHead(u16),
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

/// One descriptor, as read from guest memory (already bounds-checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Descriptor {
    pub fn is_write_only(&self) -> bool {
        self.flags & VIRTQ_DESC_F_WRITE != 0
    }
}

/// A descriptor chain: its head index (for the used ring) and its buffers in order,
/// indirect tables flattened; device-readable buffers first, then device-writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescChain {
    pub head: u16,
    pub descs: Vec<Descriptor>,
}

impl DescChain {
    pub fn readable(&self) -> impl Iterator<Item = &Descriptor> {
        self.descs.iter().filter(|d| !d.is_write_only())
    }
    pub fn writable(&self) -> impl Iterator<Item = &Descriptor> {
        self.descs.iter().filter(|d| d.is_write_only())
    }
}

/// A split virtqueue's configuration (what the transport's registers set) and the
/// device's position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    /// MSI-X vector (virtio-pci), 0xffff = none.
    pub msix_vector: u16,
    event_idx: bool,
    next_avail: Wrapping<u16>,
    next_used: Wrapping<u16>,
    /// The used index when the driver was last notified (EVENT_IDX).
    signalled_used: Wrapping<u16>,
}

impl Queue {
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            msix_vector: 0xffff,
            event_idx: false,
            next_avail: Wrapping(0),
            next_used: Wrapping(0),
            signalled_used: Wrapping(0),
        }
    }

    /// Back to the reset state (keeps `max_size`).
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Turns VIRTIO_F_EVENT_IDX on (after feature negotiation).
    pub fn set_event_idx(&mut self, on: bool) {
        self.event_idx = on;
    }

    /// Checks the configuration the driver wrote: a power-of-two size up to the
    /// maximum, aligned ring areas that lie in guest RAM.
    pub fn validate(&self, mem: &GuestMemoryMmap) -> Result<(), QueueError> {
        let n = self.size as u64;
        if !self.ready
            || self.size == 0
            || self.size > self.max_size
            || !self.size.is_power_of_two()
        {
            return Err(QueueError::BadSize(self.size));
        }
        let areas = [
            ("descriptor table", self.desc_table, 16 * n, 16),
            ("avail ring", self.avail_ring, 6 + 2 * n, 2),
            ("used ring", self.used_ring, 6 + 8 * n, 4),
        ];
        for (what, addr, len, align) in areas {
            let ok = addr % align == 0
                && addr.checked_add(len).is_some()
                && mem.check_range(GuestAddress(addr), len as usize);
            if !ok {
                return Err(QueueError::BadRingArea { what, addr, len });
            }
        }
        Ok(())
    }

    fn load16(mem: &GuestMemoryMmap, addr: u64, order: Ordering) -> Result<u16, QueueError> {
        mem.load::<u16>(GuestAddress(addr), order)
            .map(u16::from_le)
            .map_err(|_| QueueError::Memory(addr))
    }

    fn store16(
        mem: &GuestMemoryMmap,
        addr: u64,
        v: u16,
        order: Ordering,
    ) -> Result<(), QueueError> {
        mem.store(v.to_le(), GuestAddress(addr), order)
            .map_err(|_| QueueError::Memory(addr))
    }

    fn avail_idx(&self, mem: &GuestMemoryMmap) -> Result<Wrapping<u16>, QueueError> {
        Self::load16(mem, self.avail_ring.wrapping_add(2), Ordering::Acquire).map(Wrapping)
    }

    /// Entries the driver made available that the device has not taken yet.
    fn pending(&self, mem: &GuestMemoryMmap) -> Result<u16, QueueError> {
        let n = (self.avail_idx(mem)? - self.next_avail).0;
        if n > self.size {
            return Err(QueueError::AvailOverrun(n, self.size));
        }
        Ok(n)
    }

    /// Takes the next available chain, or `None` when the ring is empty. With
    /// EVENT_IDX, an empty ring publishes the avail event and looks once more.
    pub fn pop(&mut self, mem: &GuestMemoryMmap) -> Result<Option<DescChain>, QueueError> {
        if self.pending(mem)? == 0 {
            if !self.event_idx {
                return Ok(None);
            }
            let avail_event = self.used_ring.wrapping_add(4 + 8 * self.size as u64);
            Self::store16(mem, avail_event, self.next_avail.0, Ordering::Relaxed)?;
            fence(Ordering::SeqCst);
            if self.pending(mem)? == 0 {
                return Ok(None);
            }
        }
        let slot = (self.next_avail.0 % self.size) as u64;
        let head = Self::load16(
            mem,
            self.avail_ring.wrapping_add(4 + 2 * slot),
            Ordering::Relaxed,
        )?;
        let chain = self.read_chain(mem, head)?;
        self.next_avail += Wrapping(1);
        Ok(Some(chain))
    }

    /// Gives the last popped chain back (the device could not take it yet).
    pub fn undo_pop(&mut self) {
        self.next_avail -= Wrapping(1);
    }

    fn read_desc(mem: &GuestMemoryMmap, table: u64, index: u32) -> Result<Descriptor, QueueError> {
        let addr = table.wrapping_add(16 * index as u64);
        let mut raw = [0u8; 16];
        mem.read_slice(&mut raw, GuestAddress(addr))
            .map_err(|_| QueueError::Memory(addr))?;
        let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        Ok(Descriptor {
            addr: le64(&raw[0..8]),
            len: u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]),
            flags: u16::from_le_bytes([raw[12], raw[13]]),
            next: u16::from_le_bytes([raw[14], raw[15]]),
        })
    }

    fn push_checked(
        mem: &GuestMemoryMmap,
        out: &mut Vec<Descriptor>,
        d: Descriptor,
    ) -> Result<(), QueueError> {
        let bad = QueueError::BadBuffer {
            addr: d.addr,
            len: d.len,
        };
        if d.len > 0
            && (d.addr.checked_add(d.len as u64).is_none()
                || !mem.check_range(GuestAddress(d.addr), d.len as usize))
        {
            return Err(bad);
        }
        if !d.is_write_only() && out.last().is_some_and(|p| p.is_write_only()) {
            return Err(QueueError::ReadableAfterWritable);
        }
        out.push(d);
        Ok(())
    }

    fn read_chain(&self, mem: &GuestMemoryMmap, head: u16) -> Result<DescChain, QueueError> {
        let size = self.size as u32;
        let mut descs = Vec::new();
        let mut index = head as u32;
        let mut walked = 0u32;
        loop {
            if index >= size {
                return Err(QueueError::DescOutOfRange(index, size));
            }
            walked += 1;
            if walked > size {
                return Err(QueueError::ChainTooLong(size));
            }
            let d = Self::read_desc(mem, self.desc_table, index)?;
            if d.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if d.flags & VIRTQ_DESC_F_NEXT != 0 {
                    return Err(QueueError::BadIndirect("combined with NEXT"));
                }
                self.read_indirect(mem, &d, &mut descs)?;
                break;
            }
            Self::push_checked(mem, &mut descs, d)?;
            if d.flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            index = d.next as u32;
        }
        Ok(DescChain { head, descs })
    }

    fn read_indirect(
        &self,
        mem: &GuestMemoryMmap,
        d: &Descriptor,
        out: &mut Vec<Descriptor>,
    ) -> Result<(), QueueError> {
        if d.len == 0 || !d.len.is_multiple_of(16) {
            return Err(QueueError::BadIndirect(
                "table length is not a multiple of 16",
            ));
        }
        let count = d.len / 16;
        if count > MAX_INDIRECT {
            return Err(QueueError::BadIndirect("table too long"));
        }
        if d.addr.checked_add(d.len as u64).is_none()
            || !mem.check_range(GuestAddress(d.addr), d.len as usize)
        {
            return Err(QueueError::BadBuffer {
                addr: d.addr,
                len: d.len,
            });
        }
        let mut index = 0u32;
        let mut walked = 0u32;
        loop {
            if index >= count {
                return Err(QueueError::DescOutOfRange(index, count));
            }
            walked += 1;
            if walked > count {
                return Err(QueueError::ChainTooLong(count));
            }
            let e = Self::read_desc(mem, d.addr, index)?;
            if e.flags & VIRTQ_DESC_F_INDIRECT != 0 {
                return Err(QueueError::BadIndirect("nested indirect table"));
            }
            Self::push_checked(mem, out, e)?;
            if e.flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(());
            }
            index = e.next as u32;
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written into it.
    pub fn add_used(
        &mut self,
        mem: &GuestMemoryMmap,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if head >= self.size {
            return Err(QueueError::BadHead(head));
        }
        let slot = (self.next_used.0 % self.size) as u64;
        let elem = self.used_ring.wrapping_add(4 + 8 * slot);
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&(head as u32).to_le_bytes());
        raw[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(elem))
            .map_err(|_| QueueError::Memory(elem))?;
        self.next_used += Wrapping(1);
        // The element is visible before the index that publishes it.
        Self::store16(
            mem,
            self.used_ring.wrapping_add(2),
            self.next_used.0,
            Ordering::Release,
        )
    }

    /// Whether the driver wants an interrupt for the used entries added since the
    /// last call that returned true.
    pub fn needs_notification(&mut self, mem: &GuestMemoryMmap) -> Result<bool, QueueError> {
        // The used index store is ordered before reading the driver's wishes.
        fence(Ordering::SeqCst);
        let new = self.next_used;
        if self.event_idx {
            let used_event = Wrapping(Self::load16(
                mem,
                self.avail_ring.wrapping_add(4 + 2 * self.size as u64),
                Ordering::Relaxed,
            )?);
            let old = self.signalled_used;
            self.signalled_used = new;
            // vring_need_event: did the index step past used_event since `old`?
            return Ok(new - used_event - Wrapping(1) < new - old);
        }
        let flags = Self::load16(mem, self.avail_ring, Ordering::Relaxed)?;
        Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
    }

    /// The device's position in the avail ring (for tests and reports).
    pub fn next_avail(&self) -> u16 {
        self.next_avail.0
    }
}

#[path = "queue_state.rs"]
mod state;
pub use state::QueueState;

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
