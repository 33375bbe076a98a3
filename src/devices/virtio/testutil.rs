//! A tiny virtio driver for unit tests: rings in a `GuestMemoryMmap`, set up through
//! a transport's registers (the way a guest driver does), requests built as chains.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Address arithmetic that cannot overflow in tests that use random addresses.
pub trait WrapAdd {
    fn wrapping_add_addr(self, n: u64) -> GuestAddress;
}
impl WrapAdd for GuestAddress {
    fn wrapping_add_addr(self, n: u64) -> GuestAddress {
        GuestAddress(self.0.wrapping_add(n))
    }
}

use super::mmio::reg;
use super::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use super::{STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK};
use crate::devices::BusDevice;

/// 1 MiB of guest RAM at 0.
pub fn memory(size: usize) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).unwrap()
}

/// One queue's rings, as the driver sees them.
pub struct Ring {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub avail_idx: u16,
    pub used_seen: u16,
    pub next_desc: u16,
}

impl Ring {
    /// Rings for a queue of `size` at `base` (descriptors, then avail, then used).
    pub fn new(size: u16, base: u64) -> Self {
        let desc = base;
        let avail = desc.wrapping_add(16 * size as u64);
        let used = avail.wrapping_add(6 + 2 * size as u64 + 3) & !3;
        Self {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            used_seen: 0,
            next_desc: 0,
        }
    }

    pub fn write_desc(
        &self,
        mem: &GuestMemoryMmap,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let a = GuestAddress(self.desc.wrapping_add(16 * i as u64));
        let _ = mem.write_obj(addr, a);
        let _ = mem.write_obj(len, a.wrapping_add_addr(8));
        let _ = mem.write_obj(flags, a.wrapping_add_addr(12));
        let _ = mem.write_obj(next, a.wrapping_add_addr(14));
    }

    /// Queues a chain of (addr, len, device-writable) buffers; returns its head.
    pub fn push(&mut self, mem: &GuestMemoryMmap, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.size;
            let last = k + 1 == bufs.len();
            let flags =
                if w { VIRTQ_DESC_F_WRITE } else { 0 } | if last { 0 } else { VIRTQ_DESC_F_NEXT };
            self.write_desc(mem, i, addr, len, flags, (i + 1) % self.size);
        }
        self.next_desc = (head + bufs.len() as u16) % self.size;
        self.publish(mem, head);
        head
    }

    /// Queues one indirect descriptor pointing at a table at `table` of the buffers.
    pub fn push_indirect(
        &mut self,
        mem: &GuestMemoryMmap,
        table: u64,
        bufs: &[(u64, u32, bool)],
    ) -> u16 {
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let a = GuestAddress(table.wrapping_add(16 * k as u64));
            let last = k + 1 == bufs.len();
            let flags =
                if w { VIRTQ_DESC_F_WRITE } else { 0 } | if last { 0 } else { VIRTQ_DESC_F_NEXT };
            let _ = mem.write_obj(addr, a);
            let _ = mem.write_obj(len, a.wrapping_add_addr(8));
            let _ = mem.write_obj(flags, a.wrapping_add_addr(12));
            let _ = mem.write_obj(k as u16 + 1, a.wrapping_add_addr(14));
        }
        let head = self.next_desc;
        self.write_desc(
            mem,
            head,
            table,
            16 * bufs.len() as u32,
            VIRTQ_DESC_F_INDIRECT,
            0,
        );
        self.next_desc = (head + 1) % self.size;
        self.publish(mem, head);
        head
    }

    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = self.avail_idx % self.size;
        let _ = mem.write_obj(
            head,
            GuestAddress(self.avail.wrapping_add(4 + 2 * slot as u64)),
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let _ = mem.write_obj(self.avail_idx, GuestAddress(self.avail.wrapping_add(2)));
    }

    /// Used entries not seen yet: (head, len).
    pub fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u32, u32)> {
        let idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).unwrap();
        let mut v = Vec::new();
        while self.used_seen != idx {
            let e = self.used + 4 + 8 * (self.used_seen % self.size) as u64;
            v.push((
                mem.read_obj(GuestAddress(e)).unwrap(),
                mem.read_obj(GuestAddress(e + 4)).unwrap(),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        v
    }
}

pub fn w32(dev: &mut dyn BusDevice, off: u64, v: u32) {
    dev.write(0, off, &v.to_le_bytes());
}

pub fn r32(dev: &mut dyn BusDevice, off: u64) -> u32 {
    let mut b = [0u8; 4];
    dev.read(0, off, &mut b);
    u32::from_le_bytes(b)
}

/// Runs the virtio-mmio initialisation sequence, accepting `features`, with one
/// ring per entry of `rings`. Returns the final status.
pub fn mmio_init(dev: &mut dyn BusDevice, features: u64, rings: &[Ring]) -> u32 {
    w32(dev, reg::STATUS, 0);
    w32(dev, reg::STATUS, STATUS_ACKNOWLEDGE);
    w32(dev, reg::STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    for sel in 0..2 {
        w32(dev, reg::DRIVER_FEATURES_SEL, sel);
        w32(dev, reg::DRIVER_FEATURES, (features >> (32 * sel)) as u32);
    }
    let s = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    w32(dev, reg::STATUS, s);
    for (i, r) in rings.iter().enumerate() {
        w32(dev, reg::QUEUE_SEL, i as u32);
        w32(dev, reg::QUEUE_NUM, r.size as u32);
        for (lo, v) in [
            (reg::QUEUE_DESC_LOW, r.desc),
            (reg::QUEUE_DRIVER_LOW, r.avail),
            (reg::QUEUE_DEVICE_LOW, r.used),
        ] {
            w32(dev, lo, v as u32);
            w32(dev, lo + 4, (v >> 32) as u32);
        }
        w32(dev, reg::QUEUE_READY, 1);
    }
    w32(dev, reg::STATUS, s | STATUS_DRIVER_OK);
    r32(dev, reg::STATUS)
}
