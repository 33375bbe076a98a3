//! One end of a datagram cable: a socket bound at a local endpoint that carries one
//! raw Ethernet frame per datagram to and from one remote endpoint, as QEMU's
//! `-netdev dgram` does. Shared by the `dgram` NIC backend and the lab switch's ports.
//!
//! An [`Endpoint`] is a unix socket path or `udp://HOST:PORT`. Both ends are of one kind.
//!
//! Unix sockets: the local path is bound (a stale socket left there by a dead process
//! is replaced, a live one is an error, anything else is refused), made 0600, and its
//! directory checked with [`super::private_dir::check_ancestors`]. The socket is then
//! `connect`ed to the remote path whenever that path holds a socket:
//! - the kernel then delivers to us only what the remote socket sends (nobody else may
//!   write to a connected datagram socket), and
//! - a receiver connected to its sender is not limited to `net.unix.max_dgram_qlen`
//!   queued datagrams (10 by default): only the sender's `SO_SNDBUF` bounds what is in
//!   flight, and `POLLOUT` says when there is room again.
//!
//! A peer that restarts binds its path anew: [`DgramSocket::maintain`] notices the new
//! socket (device, inode and change time of the path) and connects to it, so a cable
//! survives either end restarting. Until connected, frames to the peer are not sent
//! ([`Sent::NoPeer`]) and frames from any other path are ignored.
//!
//! UDP: the local address is bound and the remote one connected (datagrams from other
//! addresses are not delivered); ICMP errors from an absent peer are ignored.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::private_dir::{self, PrivateDirError};

/// The longest path a unix socket address holds (sun_path, with its NUL).
pub const SUN_PATH_MAX: usize = 107;
/// Requested socket buffer sizes (the kernel caps them at net.core.wmem_max/rmem_max).
pub const SNDBUF: usize = 1 << 20;
pub const RCVBUF: usize = 2 << 20;
/// How often an unconnected unix socket tries to connect to its peer again.
pub const RETRY: Duration = Duration::from_millis(20);
/// How often a connected unix socket looks whether its peer was replaced.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Where one end of a cable is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT` as given after `udp://`.
    Udp(String),
}

impl Endpoint {
    /// `udp://HOST:PORT`, or else a unix socket path (relative ones taken from `base`).
    pub fn parse(s: &str, base: &Path) -> Result<Self, DgramError> {
        if let Some(rest) = s.strip_prefix("udp://") {
            let ok = rest
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(DgramError::BadUrl(s.into()));
            }
            return Ok(Self::Udp(rest.into()));
        }
        if s.contains("://") {
            return Err(DgramError::BadUrl(s.into()));
        }
        if s.is_empty() {
            return Err(DgramError::BadUrl(s.into()));
        }
        Ok(Self::Unix(base.join(s)))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Udp(a) => write!(f, "udp://{a}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum DgramError {
    #[error("`{0}` is neither a socket path nor udp://HOST:PORT")]
    BadUrl(String),
    #[error("local {local} and remote {remote} must both be unix paths or both udp://")]
    Mixed { local: Endpoint, remote: Endpoint },
    #[error("the socket path {0} is longer than a unix socket path may be (107 bytes)")]
    PathTooLong(PathBuf),
    #[error("{0} is in use by a running process")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotSocket(PathBuf),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot bind {endpoint}")]
    Bind {
        endpoint: Endpoint,
        source: io::Error,
    },
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: Endpoint,
        source: io::Error,
    },
    #[error(transparent)]
    Dir(#[from] PrivateDirError),
}

/// What became of a frame handed to [`DgramSocket::send`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// The peer's queue (or ours) is full: poll for `POLLOUT` and try again.
    Full,
    /// No peer socket to send to (not bound yet, or gone).
    NoPeer,
}

#[derive(Debug)]
enum Sock {
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

/// Identity of the socket file at a path: device, inode, change time.
type FileId = (u64, u64, i64, i64);

fn file_id(p: &Path) -> Option<FileId> {
    let md = std::fs::symlink_metadata(p).ok()?;
    md.file_type()
        .is_socket()
        .then(|| (md.dev(), md.ino(), md.ctime(), md.ctime_nsec()))
}

/// A bound datagram socket and the peer it carries frames to.
#[derive(Debug)]
pub struct DgramSocket {
    sock: Sock,
    local: Endpoint,
    remote: Endpoint,
    /// Unix: the peer socket we are connected to, if any.
    peer: Option<FileId>,
    next_try: Instant,
}

fn set_buf(fd: RawFd, opt: libc::c_int, size: usize) {
    let v = size as libc::c_int;
    // SAFETY: setsockopt reads one c_int from a valid pointer; the fd is ours. A refusal
    // (a cap lower than asked) leaves the default, which still works.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The size the kernel gave a socket buffer (SO_SNDBUF or SO_RCVBUF).
pub fn buffer_size(fd: RawFd, opt: libc::c_int) -> usize {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int and its length into valid pointers.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut v as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 {
        v.max(0) as usize
    } else {
        0
    }
}

fn resolve(a: &str) -> Result<SocketAddr, DgramError> {
    a.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| DgramError::Resolve(a.into()))
}

/// Binds a unix datagram socket at `path`, replacing a stale socket there.
fn bind_unix(path: &Path) -> Result<UnixDatagram, DgramError> {
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(DgramError::PathTooLong(path.into()));
    }
    private_dir::check_ancestors(path)?;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() {
            return Err(DgramError::NotSocket(path.into()));
        }
        let live = UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok();
        if live {
            return Err(DgramError::InUse(path.into()));
        }
        let _ = std::fs::remove_file(path);
    }
    let endpoint = || Endpoint::Unix(path.into());
    let sock = UnixDatagram::bind(path).map_err(|source| DgramError::Bind {
        endpoint: endpoint(),
        source,
    })?;
    private_dir::restrict_socket(path)?;
    Ok(sock)
}

impl DgramSocket {
    /// Binds `local` and connects to `remote` (a unix peer may come later).
    pub fn open(local: &Endpoint, remote: &Endpoint) -> Result<Self, DgramError> {
        let bind_err = |source| DgramError::Bind {
            endpoint: local.clone(),
            source,
        };
        let sock = match (local, remote) {
            (Endpoint::Unix(l), Endpoint::Unix(_)) => Sock::Unix(bind_unix(l)?),
            (Endpoint::Udp(l), Endpoint::Udp(r)) => {
                let (la, ra) = (resolve(l)?, resolve(r)?);
                let s = UdpSocket::bind(la).map_err(bind_err)?;
                s.connect(ra).map_err(|source| DgramError::Connect {
                    endpoint: remote.clone(),
                    source,
                })?;
                Sock::Udp(s)
            }
            _ => {
                return Err(DgramError::Mixed {
                    local: local.clone(),
                    remote: remote.clone(),
                })
            }
        };
        let mut me = Self {
            sock,
            local: local.clone(),
            remote: remote.clone(),
            peer: None,
            next_try: Instant::now(),
        };
        let fd = me.fd();
        set_buf(fd, libc::SO_SNDBUF, SNDBUF);
        set_buf(fd, libc::SO_RCVBUF, RCVBUF);
        match &me.sock {
            Sock::Unix(s) => s.set_nonblocking(true),
            Sock::Udp(s) => s.set_nonblocking(true),
        }
        .map_err(bind_err)?;
        me.try_connect(Instant::now());
        if !me.connected() {
            // The first send may look again at once.
            me.next_try = Instant::now();
        }
        Ok(me)
    }

    pub fn local(&self) -> &Endpoint {
        &self.local
    }

    pub fn remote(&self) -> &Endpoint {
        &self.remote
    }

    pub fn fd(&self) -> RawFd {
        match &self.sock {
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Udp(s) => s.as_raw_fd(),
        }
    }

    /// Whether frames can go to the peer now (UDP: always).
    pub fn connected(&self) -> bool {
        matches!(self.sock, Sock::Udp(_)) || self.peer.is_some()
    }

    /// Unix: connects to the socket at the remote path if we are not connected to it.
    fn try_connect(&mut self, now: Instant) {
        let (Sock::Unix(s), Endpoint::Unix(path)) = (&self.sock, &self.remote) else {
            return;
        };
        let id = file_id(path);
        if id.is_some() && id != self.peer {
            // A failure (nobody there yet, or the peer is still connected to our
            // previous incarnation) is retried after RETRY.
            self.peer = s.connect(path).ok().and(id);
        }
        self.next_try = now + if self.peer.is_some() { RECHECK } else { RETRY };
    }

    /// Unix: connects to a peer that appeared or was replaced since the last look. Call
    /// it every few tens of milliseconds; it costs one `stat`.
    pub fn maintain(&mut self, now: Instant) {
        if now >= self.next_try {
            self.try_connect(now);
        }
    }

    /// Sends one frame without blocking.
    pub fn send(&mut self, frame: &[u8], now: Instant) -> io::Result<Sent> {
        if !self.connected() {
            self.maintain(now);
            if !self.connected() {
                return Ok(Sent::NoPeer);
            }
        }
        for _ in 0..2 {
            let r = match &self.sock {
                Sock::Unix(s) => s.send(frame),
                Sock::Udp(s) => s.send(frame),
            };
            match r {
                Ok(_) => return Ok(Sent::Sent),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Sent::Full),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // UDP: an ICMP error about an earlier datagram; this one was not sent.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) && self.is_udp() => {}
                Err(e) if gone(&e) => {
                    // The kernel disconnected us from a peer that closed.
                    self.peer = None;
                    self.next_try = now;
                    return Ok(Sent::NoPeer);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Sent::NoPeer)
    }

    fn is_udp(&self) -> bool {
        matches!(self.sock, Sock::Udp(_))
    }

    /// Takes one waiting frame into `buf` without blocking (`None`: nothing waits). A
    /// frame longer than `buf` is cut to its length.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let (r, from) = match &self.sock {
                Sock::Udp(s) => (s.recv(buf), None),
                Sock::Unix(s) if self.peer.is_some() => (s.recv(buf), None),
                Sock::Unix(s) => match s.recv_from(buf) {
                    Ok((n, a)) => (Ok(n), Some(a)),
                    Err(e) => (Err(e), None),
                },
            };
            match r {
                Ok(n) => {
                    if let Some(a) = from {
                        if !self.is_peer(&a) {
                            continue; // not from our peer
                        }
                        // The peer is there: connect to it now.
                        self.try_connect(Instant::now());
                    }
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if gone(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn is_peer(&self, from: &std::os::unix::net::SocketAddr) -> bool {
        let (Some(p), Endpoint::Unix(r)) = (from.as_pathname(), &self.remote) else {
            return false;
        };
        p == r || std::path::absolute(p).is_ok_and(|a| &a == r)
    }

    /// Clears a pending socket error (UDP: an ICMP error about an earlier datagram),
    /// which would otherwise keep the socket polling `POLLERR`.
    pub fn clear_error(&self) {
        let _ = match &self.sock {
            Sock::Unix(s) => s.take_error(),
            Sock::Udp(s) => s.take_error(),
        };
    }

    /// The socket buffer sizes the kernel granted: (send, receive).
    pub fn buffers(&self) -> (usize, usize) {
        let fd = self.fd();
        (
            buffer_size(fd, libc::SO_SNDBUF),
            buffer_size(fd, libc::SO_RCVBUF),
        )
    }
}

/// Errors that mean the peer socket is not there (any more).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED) | Some(libc::ENOTCONN) | Some(libc::ENOENT) | Some(libc::EPERM)
    )
}

impl Drop for DgramSocket {
    fn drop(&mut self) {
        if let Endpoint::Unix(p) = &self.local {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Waits until `fd` is writable or `timeout` passes; true if writable.
pub fn wait_writable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: polls one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents & libc::POLLOUT != 0
}

#[cfg(test)]
#[path = "dgram_sock_tests.rs"]
pub(crate) mod tests;
