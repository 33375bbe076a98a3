//! The lab switch: NICs of several vmrun processes on one host share an Ethernet
//! segment through unix datagram sockets in one directory, without root and without a
//! switch process.
//!
//! The NIC's `switch` path is a directory, created 0700 if missing (its parent must
//! exist); an existing one must be ours and not writable by anyone else
//! ([`super::private_dir`]), since whoever can create a socket in it joins the segment.
//! Port sockets are 0600.
//! Every NIC on the switch is a *port*: a `SOCK_DGRAM` socket bound at
//! `<dir>/<mac>.sock` (`525400aabbcc.sock`, the NIC's MAC in 12 hex digits). One datagram
//! is one Ethernet frame, destination MAC first, no header, so any program that can
//! `sendto` a unix socket can join the lab.
//!
//! A port sends each frame its VM transmits straight to the port(s) that should have it
//! (there is no switch process to forward through, so a segment is a full mesh):
//! - a unicast destination goes to the port that frames with that source MAC came from
//!   (learned from the sender address of every frame received, 4096 entries at most), or
//!   else to `<dir>/<destination>.sock` if that port exists;
//! - broadcast, multicast and unknown destinations are flooded to every other `*.sock`
//!   in the directory (listed again when the directory changes, at least every second).
//!
//! Sockets left behind by a vmrun that died refuse datagrams (`ECONNREFUSED`): they are
//! removed when a flood or a unicast meets them, and a new port replaces a stale socket
//! of its own MAC. A live port with the same MAC is an error. A port whose receive queue
//! is full (its VM is slow; Linux queues `net.unix.max_dgram_qlen` datagrams, 10 by
//! default, for a socket that any peer may send to) makes the sender wait up to
//! [`SEND_PATIENCE`] per frame, then drop it; a port that kept a sender waiting that
//! long gets no more patience until a frame to it goes through again (a VM that stopped
//! reading does not stall its senders, one that is merely slow loses nothing).
//!
//! Labs with more than a few machines, captures or impairments want the lab switch
//! process instead (`crate::netsw`, NICs with `backend = "dgram"`).

use std::collections::HashMap;
use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use super::private_dir::{self, PrivateDirError};
use super::NetBackend;

/// How long a send waits for a full port before dropping the frame.
pub const SEND_PATIENCE: Duration = Duration::from_millis(20);
/// The most source MACs a port remembers.
const MAX_LEARNED: usize = 4096;
/// The longest path a unix socket address holds (sun_path, with its NUL).
const SUN_PATH_MAX: usize = 107;

#[derive(Debug, Error)]
pub enum SwitchError {
    #[error(transparent)]
    Dir(#[from] PrivateDirError),
    #[error("the switch port {0} is longer than a unix socket path may be (107 bytes): use a shorter `switch` path")]
    PathTooLong(PathBuf),
    #[error("a NIC with MAC {mac} is already on switch {dir} (another vmrun is running with it)")]
    MacInUse { mac: String, dir: PathBuf },
    #[error("cannot bind the switch port {path}")]
    Bind { path: PathBuf, source: io::Error },
}

/// One NIC's port on a lab switch.
#[derive(Debug)]
pub struct SwitchPort {
    sock: UnixDatagram,
    dir: PathBuf,
    own: PathBuf,
    learned: HashMap<[u8; 6], PathBuf>,
    peers: Vec<PathBuf>,
    listed_at: Option<(Instant, Option<SystemTime>)>,
    /// Ports that exhausted [`SEND_PATIENCE`] and have not taken a frame since.
    congested: HashSet<PathBuf>,
}

/// `<dir>/<mac>.sock`.
pub fn port_path(dir: &Path, mac: &[u8; 6]) -> PathBuf {
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.sock"))
}

fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ECONNREFUSED)
}

fn gone(e: &io::Error) -> bool {
    refused(e) || e.kind() == io::ErrorKind::NotFound
}

impl SwitchPort {
    /// Joins the switch at `dir` as the port of `mac`.
    pub fn open(dir: &Path, mac: [u8; 6]) -> Result<Self, SwitchError> {
        let own = port_path(dir, &mac);
        if own.as_os_str().len() > SUN_PATH_MAX {
            return Err(SwitchError::PathTooLong(own));
        }
        private_dir::ensure_private_dir(dir)?;
        if own.exists() {
            let probe = UnixDatagram::unbound().map_err(|source| SwitchError::Bind {
                path: own.clone(),
                source,
            })?;
            match probe.connect(&own) {
                Ok(()) => {
                    return Err(SwitchError::MacInUse {
                        mac: crate::spec::mac_string(&mac),
                        dir: dir.into(),
                    })
                }
                // Left behind by a vmrun that is gone.
                Err(_) => {
                    let _ = std::fs::remove_file(&own);
                }
            }
        }
        let bind_err = |source| SwitchError::Bind {
            path: own.clone(),
            source,
        };
        let sock = UnixDatagram::bind(&own).map_err(bind_err)?;
        private_dir::restrict_socket(&own)?;
        sock.set_nonblocking(true).map_err(bind_err)?;
        Ok(Self {
            sock,
            dir: dir.into(),
            own,
            learned: HashMap::new(),
            peers: Vec::new(),
            listed_at: None,
            congested: HashSet::new(),
        })
    }

    /// This port's socket path.
    pub fn path(&self) -> &Path {
        &self.own
    }

    /// Lists the other ports again if the directory changed or a second passed.
    fn refresh_peers(&mut self) {
        let now = Instant::now();
        let mtime = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if let Some((t, m)) = self.listed_at {
            if m == mtime && mtime.is_some() && now.duration_since(t) < Duration::from_secs(1) {
                return;
            }
        }
        self.peers.clear();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p != self.own && p.extension().is_some_and(|x| x == "sock") {
                    self.peers.push(p);
                }
            }
        }
        self.peers.sort();
        self.listed_at = Some((now, mtime));
    }

    /// Sends to one port, waiting a little for a full one. A stale socket is removed.
    fn send_to(&mut self, frame: &[u8], to: &Path) -> io::Result<()> {
        let patient = !self.congested.contains(to);
        let deadline = Instant::now() + SEND_PATIENCE;
        loop {
            match self.sock.send_to(frame, to) {
                Ok(_) => {
                    if !patient {
                        self.congested.remove(to);
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !patient || Instant::now() >= deadline {
                        self.congested.insert(to.into());
                        return Err(e);
                    }
                    // An unconnected datagram socket cannot poll for room at a peer.
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if refused(&e) {
                        let _ = std::fs::remove_file(to);
                    }
                    if gone(&e) {
                        self.peers.retain(|p| p != to);
                        self.learned.retain(|_, p| p != to);
                        self.congested.remove(to);
                    }
                    return Err(e);
                }
            }
        }
    }

    fn flood(&mut self, frame: &[u8]) -> io::Result<()> {
        self.refresh_peers();
        let mut last = Ok(());
        for p in self.peers.clone() {
            if let Err(e) = self.send_to(frame, &p) {
                if !gone(&e) {
                    last = Err(e);
                }
            }
        }
        last
    }
}

impl NetBackend for SwitchPort {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let Some(dst) = frame.get(..6).and_then(|d| <[u8; 6]>::try_from(d).ok()) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        if frame.len() < 14 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        if dst[0] & 1 == 0 {
            let target = match self.learned.get(&dst) {
                Some(p) => Some(p.clone()),
                None => Some(port_path(&self.dir, &dst)).filter(|p| p.exists()),
            };
            if let Some(t) = target {
                if t == self.own {
                    return Ok(()); // to ourselves: the wire never brings it back
                }
                return self.send_to(frame, &t);
            }
        }
        self.flood(frame)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let (n, from) = match self.sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let Some(src) = buf.get(6..12).filter(|_| n >= 14) else {
                continue; // not an Ethernet frame
            };
            if src[0] & 1 == 0 {
                if let (Some(path), Ok(mac)) = (from.as_pathname(), <[u8; 6]>::try_from(src)) {
                    if self.learned.get(&mac).map(PathBuf::as_path) != Some(path) {
                        if self.learned.len() >= MAX_LEARNED {
                            self.learned.clear();
                        }
                        self.learned.insert(mac, path.into());
                    }
                }
            }
            return Ok(Some(n));
        }
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.own);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn tempdir() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "vmrun-sw-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn mac(n: u8) -> [u8; 6] {
        [0x52, 0x54, 0, 0, 0, n]
    }

    fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x88, 0xb5, tag]);
        f
    }

    fn got(p: &mut SwitchPort) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(n) = p.recv(&mut buf).unwrap() {
            v.push(buf[..n].to_vec());
        }
        v
    }

    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn flood_unicast_and_learning() {
        let dir = tempdir();
        let mut a = SwitchPort::open(&dir, mac(1)).unwrap();
        let mut b = SwitchPort::open(&dir, mac(2)).unwrap();
        let mut c = SwitchPort::open(&dir, mac(3)).unwrap();
        assert!(a.path().ends_with("525400000001.sock"));
        // Broadcast from A: B and C, not A.
        a.send(&frame(BCAST, mac(1), 1)).unwrap();
        assert_eq!(got(&mut b), vec![frame(BCAST, mac(1), 1)]);
        assert_eq!(got(&mut c), vec![frame(BCAST, mac(1), 1)]);
        assert!(got(&mut a).is_empty());
        // Unicast to a port's own MAC: only that port.
        b.send(&frame(mac(1), mac(2), 2)).unwrap();
        assert_eq!(got(&mut a).len(), 1);
        assert!(got(&mut c).is_empty());
        // A MAC behind A (a bridged guest): flooded first, then learned by B.
        let x = [0x02, 0, 0, 0, 0, 0x99];
        a.send(&frame(BCAST, x, 3)).unwrap();
        assert_eq!(got(&mut b).len(), 1);
        assert_eq!(got(&mut c).len(), 1);
        b.send(&frame(x, mac(2), 4)).unwrap();
        assert_eq!(got(&mut a), vec![frame(x, mac(2), 4)]);
        assert!(got(&mut c).is_empty());
        // Unknown unicast: flooded.
        b.send(&frame([2, 0, 0, 0, 0, 0x77], mac(2), 5)).unwrap();
        assert_eq!(got(&mut a).len(), 1);
        assert_eq!(got(&mut c).len(), 1);
        // Runts are refused.
        assert!(a.send(&[0xff; 10]).is_err());
        drop((a, b, c));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn stale_sockets_and_duplicates() {
        let dir = tempdir();
        let mut a = SwitchPort::open(&dir, mac(1)).unwrap();
        let err = SwitchPort::open(&dir, mac(1)).unwrap_err();
        assert!(matches!(err, SwitchError::MacInUse { .. }), "{err}");
        // A socket whose process died: the file stays, nobody listens.
        let stale = port_path(&dir, &mac(9));
        drop(UnixDatagram::bind(&stale).unwrap());
        assert!(stale.exists());
        a.send(&frame(BCAST, mac(1), 1)).unwrap();
        assert!(!stale.exists());
        // A stale socket of one's own MAC is replaced.
        let own2 = port_path(&dir, &mac(2));
        drop(UnixDatagram::bind(&own2).unwrap());
        let mut b = SwitchPort::open(&dir, mac(2)).unwrap();
        a.send(&frame(mac(2), mac(1), 2)).unwrap();
        assert_eq!(got(&mut b).len(), 1);
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_port_drops_after_patience() {
        let dir = tempdir();
        let mut a = SwitchPort::open(&dir, mac(1)).unwrap();
        let mut b = SwitchPort::open(&dir, mac(2)).unwrap();
        let f = frame(mac(2), mac(1), 0);
        let mut sent = 0;
        let t = Instant::now();
        for _ in 0..200 {
            if a.send(&f).is_ok() {
                sent += 1;
            }
        }
        // One wait of SEND_PATIENCE, then the congested port gets no more.
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!((1..200).contains(&sent), "{sent}");
        assert_eq!(got(&mut b).len(), sent);
        // B reads again: A sends (and is patient) again.
        a.send(&f).unwrap();
        assert!(a.congested.is_empty());
        assert_eq!(got(&mut b).len(), 1);
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors() {
        let dir = tempdir();
        std::fs::write(&dir, b"x").unwrap();
        assert!(matches!(
            SwitchPort::open(&dir, mac(1)),
            Err(SwitchError::Dir(PrivateDirError::NotDir(_)))
        ));
        // A directory someone else could write to is refused.
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = SwitchPort::open(&dir, mac(1)).unwrap_err();
        assert!(
            e.to_string().contains("writable by group and others"),
            "{e}"
        );
        std::fs::remove_dir(&dir).unwrap();
        let long = std::env::temp_dir().join("x".repeat(100));
        assert!(matches!(
            SwitchPort::open(&long, mac(1)),
            Err(SwitchError::PathTooLong(_))
        ));
        let _ = std::fs::remove_dir(&long);
    }
}
