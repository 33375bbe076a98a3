//! The port-I/O and MMIO buses: an ordered map of non-overlapping ranges to devices.
//! The vCPU loop asks the bus; it never hard-codes a port.

use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::devices::{BusDevice, VmEvent};

/// A shared, lockable device.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    #[error("range {base:#x}+{len:#x} overlaps {other_base:#x}+{other_len:#x} already on the bus")]
    Overlap {
        base: u64,
        len: u64,
        other_base: u64,
        other_len: u64,
    },
    #[error("range {base:#x}+{len:#x} is empty or wraps around")]
    BadRange { base: u64, len: u64 },
}

/// No device on the bus decodes the address ([`Bus::try_write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotDecoded;

struct Entry {
    base: u64,
    len: u64,
    /// Which of the device's register regions this range is.
    region: usize,
    dev: SharedDevice,
}

/// A bus: ranges sorted by base, looked up by binary search.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts region 0 of `dev` at `[base, base + len)`. Overlapping an existing range is
    /// an error.
    pub fn insert(&mut self, dev: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        self.insert_region(dev, 0, base, len)
    }

    /// Puts register region `region` of `dev` at `[base, base + len)`.
    pub fn insert_region(
        &mut self,
        dev: SharedDevice,
        region: usize,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base, len });
        }
        let idx = self.entries.partition_point(|e| e.base < base);
        let clash = |e: &Entry| base < e.base + e.len && e.base < base + len;
        for e in [
            idx.checked_sub(1).map(|i| &self.entries[i]),
            self.entries.get(idx),
        ]
        .into_iter()
        .flatten()
        {
            if clash(e) {
                return Err(BusError::Overlap {
                    base,
                    len,
                    other_base: e.base,
                    other_len: e.len,
                });
            }
        }
        self.entries.insert(
            idx,
            Entry {
                base,
                len,
                region,
                dev,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<&Entry> {
        let idx = self.entries.partition_point(|e| e.base <= addr);
        let e = self.entries.get(idx.checked_sub(1)?)?;
        (addr - e.base < e.len).then_some(e)
    }

    /// A guest read at `addr`. Returns false (and leaves `data` alone) when nothing
    /// decodes the address; the caller fills in what an open bus reads as.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some(e) = self.find(addr) else {
            return false;
        };
        // A poisoned lock means another vCPU panicked inside the device; the state is
        // still the device's own, so go on rather than take this thread down too.
        let mut dev = e.dev.lock().unwrap_or_else(|p| p.into_inner());
        dev.read(e.region, addr - e.base, data);
        true
    }

    /// Whether a device on the bus decodes `addr`.
    pub fn decodes(&self, addr: u64) -> bool {
        self.find(addr).is_some()
    }

    /// A guest write at `addr`. Writes nothing decodes are dropped, as on real buses.
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<VmEvent> {
        self.try_write(addr, data).ok().flatten()
    }

    /// A guest write at `addr` with one lookup: `Err(NotDecoded)` when no device
    /// decodes it (the vCPU exit path then asks the PCI root), else what the device
    /// returned.
    pub fn try_write(&self, addr: u64, data: &[u8]) -> Result<Option<VmEvent>, NotDecoded> {
        let e = self.find(addr).ok_or(NotDecoded)?;
        let mut dev = e.dev.lock().unwrap_or_else(|p| p.into_inner());
        Ok(dev.write(e.region, addr - e.base, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(Vec<(usize, u64, u8)>);
    impl BusDevice for Rec {
        fn read(&mut self, region: usize, offset: u64, data: &mut [u8]) {
            data.fill(region as u8 * 0x10 + offset as u8);
        }
        fn write(&mut self, region: usize, offset: u64, data: &[u8]) -> Option<VmEvent> {
            self.0.push((region, offset, data[0]));
            (data[0] == 0xff).then_some(VmEvent::Reset)
        }
    }

    #[test]
    fn lookup_and_overlap() {
        let mut bus = Bus::new();
        let d: SharedDevice = Arc::new(Mutex::new(Rec::default()));
        bus.insert(d.clone(), 0x3f8, 8).unwrap();
        bus.insert_region(d.clone(), 0, 0x60, 1).unwrap();
        bus.insert_region(d.clone(), 1, 0x64, 1).unwrap();
        assert!(matches!(
            bus.insert(d.clone(), 0x3ff, 2),
            Err(BusError::Overlap {
                other_base: 0x3f8,
                ..
            })
        ));
        assert!(matches!(
            bus.insert(d.clone(), 0x3f0, 9),
            Err(BusError::Overlap { .. })
        ));
        assert!(bus.insert(d.clone(), 0x400, 1).is_ok());
        assert!(matches!(
            bus.insert(d.clone(), u64::MAX, 2),
            Err(BusError::BadRange { .. })
        ));
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 2);
        assert!(bus.read(0x64, &mut b));
        assert_eq!(b[0], 0x10);
        assert!(!bus.read(0x62, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
        assert_eq!(bus.write(0x64, &[0xff]), Some(VmEvent::Reset));
        assert_eq!(bus.write(0x65, &[0xff]), None);
        assert_eq!(bus.try_write(0x65, &[0xff]), Err(NotDecoded));
        assert_eq!(bus.try_write(0x64, &[0xff]), Ok(Some(VmEvent::Reset)));
        assert_eq!(bus.try_write(0x3f8, &[0x01]), Ok(None));
    }
}
