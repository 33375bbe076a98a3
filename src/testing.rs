//! What the unit and fuzz tests of the device models share.

/// xorshift64*: a small, fixed-seed generator, so a failing random sequence
/// reproduces from its case number.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times out of a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::backends::NetBackend;

/// A backend whose wire is two queues the test looks at.
#[derive(Clone)]
pub struct FakeNet {
    pub inbox: Arc<Mutex<VecDeque<Vec<u8>>>>,
    pub sent: Arc<Mutex<Vec<Vec<u8>>>>,
    pub fd: Arc<EventFd>,
}

impl FakeNet {
    pub fn new() -> Self {
        Self {
            inbox: Default::default(),
            sent: Default::default(),
            fd: Arc::new(EventFd::new(0).unwrap()),
        }
    }
    pub fn give(&self, f: &[u8]) {
        self.inbox.lock().unwrap().push_back(f.to_vec());
    }
    pub fn sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

impl NetBackend for FakeNet {
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.sent.lock().unwrap().push(frame.to_vec());
        Ok(())
    }
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        Ok(self.inbox.lock().unwrap().pop_front().map(|f| {
            let n = f.len().min(buf.len());
            buf[..n].copy_from_slice(&f[..n]);
            n
        }))
    }
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
