//! The TAP backend: a NIC's frames go to a host TAP interface and back.
//!
//! [`Tap::open`] opens `/dev/net/tun` and attaches it to a TAP interface with
//! `TUNSETIFF` (`IFF_TAP | IFF_NO_PI`: whole Ethernet frames, no packet-info header; no
//! `IFF_VNET_HDR`, the NIC offers no offloads). With a name, that interface is used: an
//! existing one the user may open (`ip tuntap add NAME mode tap user $USER`), or a new
//! one if vmrun has `CAP_NET_ADMIN`. Without a name the kernel creates `vmrunN`, which
//! needs `CAP_NET_ADMIN`. An interface vmrun created disappears when the run ends; vmrun
//! does not configure it (link up, addresses, bridges are the host's business).
//!
//! The fd is non-blocking: [`NetBackend::recv`] returns `None` when no frame waits, and
//! the event loop polls [`NetBackend::fd`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use thiserror::Error;

use super::NetBackend;

const TUN_PATH: &str = "/dev/net/tun";
/// The name pattern the kernel numbers when the spec names no interface.
const DEFAULT_PATTERN: &str = "vmrun%d";

#[derive(Debug, Error)]
pub enum TapError {
    #[error("cannot open {TUN_PATH}: {0}: is the tun module loaded (`modprobe tun`)?")]
    NoTunDevice(io::Error),
    #[error(
        "cannot open {TUN_PATH}: permission denied: the TAP backend needs read/write access to it"
    )]
    TunDenied(io::Error),
    #[error("cannot open TAP device {name}: permission denied: create it with `ip tuntap add {name} mode tap user $USER`")]
    Denied { name: String },
    #[error("cannot create a TAP device: permission denied: create one with `ip tuntap add vmrun0 mode tap user $USER` and name it in the NIC's `tap`")]
    CreateDenied,
    #[error("cannot open TAP device {name}: it is busy (used by another process?)")]
    Busy { name: String },
    #[error("cannot open TAP device {name}: it exists and is not a TAP device (a TUN device or another kind of interface?)")]
    NotTap { name: String },
    #[error("cannot open TAP device {name}")]
    Other { name: String, source: io::Error },
}

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to (or creates) the TAP interface `name`, or a new `vmrunN`.
    pub fn open(name: Option<&str>) -> Result<Self, TapError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => TapError::TunDenied(e),
                _ => TapError::NoTunDevice(e),
            })?;
        let pattern = name.unwrap_or(DEFAULT_PATTERN);
        let mut req = ifreq_named(pattern).ok_or_else(|| TapError::Other {
            name: pattern.to_string(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `req` is; the fd is ours.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc < 0 {
            return Err(setiff_error(name, io::Error::last_os_error()));
        }
        Ok(Self {
            file,
            name: ifreq_name(&req),
        })
    }

    /// The interface's name (the kernel's choice for `vmrunN`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// An `ifreq` with `ifr_name` set, or `None` for a name that does not fit.
fn ifreq_named(name: &str) -> Option<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return None;
    }
    // SAFETY: ifreq is plain data (arrays and a union of plain data); zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Some(req)
}

fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a failed `TUNSETIFF` means to the user.
fn setiff_error(name: Option<&str>, e: io::Error) -> TapError {
    let n = || name.unwrap_or(DEFAULT_PATTERN).to_string();
    match (e.raw_os_error(), name) {
        (Some(libc::EPERM) | Some(libc::EACCES), Some(n)) => TapError::Denied { name: n.into() },
        (Some(libc::EPERM) | Some(libc::EACCES), None) => TapError::CreateDenied,
        (Some(libc::EBUSY), _) => TapError::Busy { name: n() },
        (Some(libc::EINVAL), Some(_)) => TapError::NotTap { name: n() },
        _ => TapError::Other {
            name: n(),
            source: e,
        },
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl NetBackend for Tap {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.file.write(frame).map(|_| ())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_fix() {
        let denied = || io::Error::from_raw_os_error(libc::EPERM);
        let e = setiff_error(Some("tap0"), denied()).to_string();
        assert_eq!(
            e,
            "cannot open TAP device tap0: permission denied: create it with \
             `ip tuntap add tap0 mode tap user $USER`"
        );
        assert!(matches!(
            setiff_error(None, denied()),
            TapError::CreateDenied
        ));
        let busy = setiff_error(Some("t"), io::Error::from_raw_os_error(libc::EBUSY));
        assert!(busy.to_string().contains("busy"), "{busy}");
        let inval = setiff_error(Some("tun0"), io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(inval, TapError::NotTap { .. }));
    }

    #[test]
    fn ifreq_names() {
        assert!(ifreq_named("").is_none());
        assert!(ifreq_named("0123456789abcdef").is_none());
        let r = ifreq_named("0123456789abcde").unwrap();
        assert_eq!(ifreq_name(&r), "0123456789abcde");
    }

    /// With CAP_NET_ADMIN: a new `vmrunN` exists while the Tap lives, reads nothing yet.
    #[test]
    fn creates_and_removes_an_interface() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: not root");
            return;
        }
        let mut tap = match Tap::open(None) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipped: {e}");
                return;
            }
        };
        let name = tap.name().to_string();
        assert!(name.starts_with("vmrun"), "{name}");
        let sys = std::path::Path::new("/sys/class/net").join(&name);
        assert!(sys.exists());
        let mut buf = [0u8; 2048];
        assert!(tap.recv(&mut buf).unwrap().is_none());
        drop(tap);
        assert!(!sys.exists());
    }
}
