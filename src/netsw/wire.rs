//! A switch port's socket: a [`DgramSocket`] bound at the port's `local` endpoint and
//! carrying frames to the node at its `remote` one (QEMU `-netdev dgram` compatible).

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::engine::Wire;
use crate::backends::dgram_sock::{DgramError, DgramSocket, Endpoint, Sent};

pub struct SockWire {
    sock: DgramSocket,
    start: Instant,
}

impl SockWire {
    /// Binds `local` (the switch's end) for the node at `remote`; `start` is the
    /// engine's time zero.
    pub fn open(local: &Endpoint, remote: &Endpoint, start: Instant) -> Result<Self, DgramError> {
        Ok(Self {
            sock: DgramSocket::open(local, remote)?,
            start,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.fd()
    }

    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.sock.recv(buf)
    }

    pub fn clear_error(&self) {
        self.sock.clear_error();
    }

    /// Re-plugs a node that restarted (see [`DgramSocket::maintain`]).
    pub fn maintain(&mut self, now: Duration) {
        self.sock.maintain(self.start + now);
    }
}

impl Wire for SockWire {
    fn send(&mut self, frame: &[u8], now: Duration) -> io::Result<Sent> {
        self.sock.send(frame, self.start + now)
    }

    fn connected(&self) -> bool {
        self.sock.connected()
    }

    fn endpoints(&self) -> (String, String) {
        (
            self.sock.local().to_string(),
            self.sock.remote().to_string(),
        )
    }
}
