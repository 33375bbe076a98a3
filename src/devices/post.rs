//! Port 0x80, where firmware writes its POST codes (a POST card on real boards; Linux
//! also writes it as an I/O delay).
//!
//! Every write is counted and the last value kept, in a [`PostStats`] shared with the
//! outside (benchmarks and run statistics read it without taking the device lock).
//! Reads return the last value written, as the chipsets that latch port 80h for their
//! POST display do. QEMU differs here: its `ioport80` reads as 0xFF. A guest that
//! wants a no-op delay does not care; one that reads back its POST code sees it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use super::{BusDevice, VmEvent};

/// Counters shared between the device and whoever watches it.
#[derive(Debug, Default)]
pub struct PostStats {
    writes: AtomicU64,
    last: AtomicU8,
}

impl PostStats {
    /// How many writes reached the port.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The last POST code written (0 before any write).
    pub fn last(&self) -> u8 {
        self.last.load(Ordering::Relaxed)
    }
}

/// The POST code port.
#[derive(Debug, Default)]
pub struct Post {
    stats: Arc<PostStats>,
}

impl Post {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters, to be read from any thread.
    pub fn stats(&self) -> Arc<PostStats> {
        self.stats.clone()
    }
}

impl BusDevice for Post {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        data.fill(self.stats.last());
    }

    fn write(&mut self, _region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        // A wider write puts its low byte on the 8-bit port.
        if let Some(&b) = data.first() {
            self.stats.last.store(b, Ordering::Relaxed);
        }
        None
    }
}

/// The last POST code is what a read returns: a snapshot keeps it (the write count is
/// the host's statistic, not the guest's).
impl crate::snapshot::Stateful for Post {
    fn save_state(&self) -> Result<Vec<u8>, crate::snapshot::StateError> {
        crate::snapshot::encode(&self.stats.last())
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), crate::snapshot::StateError> {
        let last: u8 = crate::snapshot::decode(bytes)?;
        self.stats.last.store(last, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reads_back() {
        let mut p = Post::new();
        let stats = p.stats();
        let mut b = [0u8; 1];
        p.read(0, 0, &mut b);
        assert_eq!(b[0], 0);
        for v in [0x10u8, 0x20, 0x55] {
            assert_eq!(p.write(0, 0, &[v]), None);
        }
        assert_eq!(stats.writes(), 3);
        assert_eq!(stats.last(), 0x55);
        p.read(0, 0, &mut b);
        assert_eq!(b[0], 0x55);
        use crate::snapshot::Stateful;
        let mut q = Post::new();
        q.restore_state(&p.save_state().unwrap()).unwrap();
        q.read(0, 0, &mut b);
        assert_eq!(b[0], 0x55);
        assert!(q.restore_state(&[1, 2]).is_err());
    }
}
