//! `vmrun lab console`: the node's COM1, interactively. The terminal goes raw; what is
//! typed goes to the guest, what it prints comes back; Ctrl-] detaches (the node runs
//! on). Any number of viewers may be attached at once (the node's console socket
//! serves them all).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::backends::chardev::TermGuard;

/// The detach key: Ctrl-], as telnet and `virsh console`.
pub const DETACH: u8 = 0x1d;

/// Attaches the terminal to the console socket until Ctrl-] or the node goes away.
pub fn attach(socket: &Path) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    let stdin = std::io::stdin();
    let guard = TermGuard::raw_if_tty(stdin.as_raw_fd())?;
    let result = pump(&mut s);
    drop(guard);
    result
}

fn pump(s: &mut UnixStream) -> std::io::Result<()> {
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(()); // the node stopped
            }
            stdout.write_all(&buf[..n])?;
            stdout.flush()?;
        }
        if fds[0].revents != 0 {
            let n = std::io::stdin().read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == DETACH) {
                s.write_all(&buf[..i])?;
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    }
}

/// Prints the console log; with `follow`, keeps printing what is appended until
/// interrupted.
pub fn print_log(path: &Path, follow: bool) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
