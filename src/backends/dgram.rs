//! The `dgram` NIC backend: QEMU's `-netdev dgram` encapsulation, one raw Ethernet
//! frame per datagram, between a `local` endpoint the NIC binds and a `remote` one it
//! sends to. Unix: `local = "a.sock"`, `remote = "b.sock"` (socket paths); UDP:
//! `local = "udp://ADDR:PORT"`, `remote = "udp://HOST:PORT"`. The remote end can be a
//! lab switch port (`vmrun switch`), another vmrun's dgram NIC, or a stock QEMU with
//! `-netdev dgram,local.type=unix,local.path=...,remote.type=unix,remote.path=...`
//! (or `inet` addresses); see [`super::dgram_sock`] for binding, connecting and
//! re-plugging a peer that restarts.
//!
//! Sending never loses a frame to a peer that is merely slow for a moment: a full peer
//! makes the sender (the vCPU that kicked the transmit queue) wait up to [`PATIENCE`],
//! trying again on `POLLOUT` or every millisecond (a socket polls writable only once
//! three quarters of its buffer drained); if the peer stayed full that long the frame is dropped and, until a
//! frame goes through again, further frames are dropped at once instead of waiting
//! (a peer that stopped reading must not stall the guest).
//!
//! [`NetBackend::fd`] is an epoll set holding the socket and a timer of
//! [`super::dgram_sock::RECHECK`] period, so that a peer that restarted is found even
//! when no frame moves.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::timerfd::TimerFd;

use super::dgram_sock::{wait_writable, DgramError, DgramSocket, Endpoint, Sent, RECHECK};
use super::NetBackend;

/// How long a send waits for a full peer before dropping the frame.
pub const PATIENCE: Duration = Duration::from_millis(20);
const SOCKET: u64 = 0;
const TIMER: u64 = 1;

/// A NIC's datagram cable.
#[derive(Debug)]
pub struct Dgram {
    sock: DgramSocket,
    epoll: Epoll,
    timer: TimerFd,
    /// The peer stayed full for [`PATIENCE`]: do not wait again until a send succeeds.
    congested: bool,
}

fn epoll_err(local: &Endpoint) -> impl Fn(io::Error) -> DgramError + '_ {
    move |source| DgramError::Bind {
        endpoint: local.clone(),
        source,
    }
}

impl Dgram {
    pub fn open(local: &Endpoint, remote: &Endpoint) -> Result<Self, DgramError> {
        let sock = DgramSocket::open(local, remote)?;
        let err = epoll_err(local);
        let epoll = Epoll::new().map_err(&err)?;
        let mut timer = TimerFd::new().map_err(|e| err(e.into()))?;
        timer
            .reset(RECHECK, Some(RECHECK))
            .map_err(|e| err(e.into()))?;
        for (fd, tag) in [(sock.fd(), SOCKET), (timer.as_raw_fd(), TIMER)] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, tag),
                )
                .map_err(&err)?;
        }
        Ok(Self {
            sock,
            epoll,
            timer,
            congested: false,
        })
    }

    /// Services the re-plug timer if it fired.
    fn tick(&mut self) {
        let mut ev = [EpollEvent::default(); 2];
        let n = self.epoll.wait(0, &mut ev).unwrap_or(0);
        if ev[..n].iter().any(|e| e.data() == TIMER) {
            // Readable, so this does not block.
            let _ = self.timer.wait();
            self.sock.maintain(Instant::now());
        }
    }
}

impl NetBackend for Dgram {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let start = Instant::now();
        loop {
            match self.sock.send(frame, Instant::now())? {
                Sent::Sent => {
                    self.congested = false;
                    return Ok(());
                }
                Sent::NoPeer => return Err(io::ErrorKind::NotConnected.into()),
                Sent::Full => {
                    let left = PATIENCE.saturating_sub(start.elapsed());
                    if self.congested || left.is_zero() {
                        self.congested = true;
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    wait_writable(self.sock.fd(), left.min(Duration::from_millis(1)));
                }
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.tick();
        self.sock.recv(buf)
    }

    fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::super::dgram_sock::tests::tempdir;
    use super::*;

    #[test]
    fn a_nic_and_a_plain_peer_through_the_epoll_fd() {
        let d = tempdir("nic");
        let peer = std::os::unix::net::UnixDatagram::bind(d.join("peer")).unwrap();
        let mut nic = Dgram::open(
            &Endpoint::Unix(d.join("nic")),
            &Endpoint::Unix(d.join("peer")),
        )
        .unwrap();
        nic.send(b"hello").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(peer.recv(&mut buf).unwrap(), 5);
        peer.send_to(b"back", d.join("nic")).unwrap();
        let mut p = libc::pollfd {
            fd: nic.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 1000) }, 1);
        assert_eq!(nic.recv(&mut buf).unwrap(), Some(4));
        assert_eq!(&buf[..4], b"back");
        assert_eq!(nic.recv(&mut buf).unwrap(), None);
        drop(nic);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_full_peer_waits_then_drops_without_stalling() {
        let d = tempdir("full");
        // A peer that never reads and is not connected to us: 10 datagrams fill it.
        let _peer = std::os::unix::net::UnixDatagram::bind(d.join("peer")).unwrap();
        let mut nic = Dgram::open(
            &Endpoint::Unix(d.join("nic")),
            &Endpoint::Unix(d.join("peer")),
        )
        .unwrap();
        let t = Instant::now();
        let ok = (0..100).filter(|_| nic.send(&[0u8; 60]).is_ok()).count();
        assert!((5..100).contains(&ok), "{ok}");
        // One wait of PATIENCE, then drops at once.
        assert!(t.elapsed() < PATIENCE * 10, "{:?}", t.elapsed());
        drop(nic);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
