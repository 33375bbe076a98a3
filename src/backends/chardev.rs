//! Character-device backends: what a serial port (or the debug console) talks to on
//! the host.
//!
//! [`open`] turns a [`ChardevKind`] into a [`Chardev`]: an output writer for the device
//! and, for backends with input, a [`ChardevInput`] whose fd the event loop polls for
//! readability before calling [`ChardevInput::read_input`] with as much room as the
//! device has (the UART's FIFO space). The fd stays the same for the chardev's whole
//! life, even for the socket backend whose client comes and goes.
//!
//! | kind   | output                          | input                                 |
//! |--------|---------------------------------|---------------------------------------|
//! | null   | discarded                       | none                                  |
//! | stdio  | stdout, unbuffered              | stdin; raw mode if it is a tty; the   |
//! |        |                                 | Ctrl-A escapes ([`EscapeParser`])     |
//! | file   | appended or truncated file      | none                                  |
//! | socket | every connected client (bytes   | a unix socket server: any number of   |
//! |        | dropped for one that is slow)   | clients, input from any of them       |
//! | pty    | the pty master                  | the pty master; the slave path is     |
//! |        |                                 | printed on stderr                     |
//!
//! The Ctrl-A escapes apply to stdio input whether or not it is a terminal (as with
//! QEMU's -nographic), so a script can quit a run by sending "\x01x".
//!
//! The stdio terminal is restored when the [`Chardev`] is dropped, and by
//! [`restore_terminal`], which the signal path calls before the process exits.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

/// The escape character of the stdio backend: Ctrl-A, as in QEMU.
pub const ESCAPE_CHAR: u8 = 0x01;

/// Which backend a character device uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChardevKind {
    Null,
    Stdio,
    File { path: PathBuf, append: bool },
    Socket { path: PathBuf },
    Pty,
}

#[derive(Debug, Error)]
pub enum ChardevError {
    #[error("cannot open {path} for serial output")]
    File { path: PathBuf, source: io::Error },
    #[error("cannot listen on unix socket {path}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("cannot {what} for the serial console")]
    Sys {
        what: &'static str,
        source: io::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> ChardevError {
    move |source| ChardevError::Sys { what, source }
}

/// What a read of a backend's input produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// This many bytes were put at the start of the buffer (maybe 0: an escape was
    /// swallowed, a socket client came or went).
    Data(usize),
    /// The input ended for good (stdin closed): stop polling it.
    Eof,
    /// The user typed the quit escape (Ctrl-A x).
    Quit,
}

/// The input side of a backend.
pub trait ChardevInput: Send {
    /// Readable when there is input (or a state change) to collect.
    fn fd(&self) -> RawFd;
    /// Reads at most `buf.len()` bytes of input; does not block after `fd` polled
    /// readable.
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<Input>;
}

/// An opened backend.
pub struct Chardev {
    /// Where the device's output goes.
    pub output: Box<dyn Write + Send>,
    /// Where its input comes from, if anywhere.
    pub input: Option<Box<dyn ChardevInput>>,
    /// The pty slave path, for the pty backend.
    pub pty_path: Option<PathBuf>,
    /// Keeps the terminal raw while held (stdio); dropping it restores the terminal.
    pub term: Option<TermGuard>,
}

/// Opens the backend `kind`.
pub fn open(kind: &ChardevKind) -> Result<Chardev, ChardevError> {
    let plain = |output: Box<dyn Write + Send>, input: Option<Box<dyn ChardevInput>>| Chardev {
        output,
        input,
        pty_path: None,
        term: None,
    };
    match kind {
        ChardevKind::Null => Ok(plain(Box::new(io::sink()), None)),
        ChardevKind::File { path, append } => {
            let mut o = OpenOptions::new();
            o.create(true);
            if *append {
                o.append(true);
            } else {
                o.write(true).truncate(true);
            }
            let f = o.open(path).map_err(|source| ChardevError::File {
                path: path.clone(),
                source,
            })?;
            Ok(plain(Box::new(f), None))
        }
        ChardevKind::Stdio => {
            let out = dup_file(libc::STDOUT_FILENO).map_err(sys("duplicate stdout"))?;
            let term = TermGuard::raw_if_tty(libc::STDIN_FILENO)
                .map_err(sys("set the terminal to raw mode"))?;
            let input = StdinInput {
                escape: EscapeParser::new(),
                raw: Vec::new(),
            };
            Ok(Chardev {
                output: Box::new(out),
                input: Some(Box::new(input)),
                pty_path: None,
                term,
            })
        }
        ChardevKind::Socket { path } => {
            let (out, input) = SocketServer::bind(path).map_err(|source| ChardevError::Socket {
                path: path.clone(),
                source,
            })?;
            Ok(plain(Box::new(out), Some(Box::new(input))))
        }
        ChardevKind::Pty => {
            let (master, path, slave) = open_pty().map_err(sys("open a pty"))?;
            eprintln!("vmrun: serial console on {}", path.display());
            let reader = master
                .try_clone()
                .map_err(sys("duplicate the pty master"))?;
            let input = PtyInput {
                master: reader,
                _slave: slave,
            };
            Ok(Chardev {
                output: Box::new(DropOnFull(master)),
                input: Some(Box::new(input)),
                pty_path: Some(path),
                term: None,
            })
        }
    }
}

fn dup_file(fd: RawFd) -> io::Result<File> {
    // SAFETY: dup on an fd number has no memory effects; the result is checked.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(new) }))
}

/// The three outcomes of one input byte through [`EscapeParser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Send this byte to the guest.
    Forward(u8),
    /// Nothing to send (the escape character, or an unknown escape).
    Swallow,
    /// Ctrl-A h: show the escape help.
    Help,
    /// Ctrl-A x: quit.
    Quit,
}

/// The help text for [`Escape::Help`] (with CRs, for a raw terminal).
pub const ESCAPE_HELP: &str =
    "\r\nC-a h    print this help\r\nC-a x    exit vmrun\r\nC-a C-a  send C-a to the guest\r\n";

/// Parses the stdio escapes: Ctrl-A x quits, Ctrl-A Ctrl-A sends one Ctrl-A, Ctrl-A h
/// prints help, Ctrl-A followed by anything else is dropped.
#[derive(Debug, Default, Clone)]
pub struct EscapeParser {
    after_escape: bool,
}

impl EscapeParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, b: u8) -> Escape {
        if !self.after_escape {
            if b == ESCAPE_CHAR {
                self.after_escape = true;
                return Escape::Swallow;
            }
            return Escape::Forward(b);
        }
        self.after_escape = false;
        match b {
            ESCAPE_CHAR => Escape::Forward(ESCAPE_CHAR),
            b'x' | b'X' => Escape::Quit,
            b'h' | b'?' => Escape::Help,
            _ => Escape::Swallow,
        }
    }
}

struct StdinInput {
    escape: EscapeParser,
    raw: Vec<u8>,
}

impl ChardevInput for StdinInput {
    fn fd(&self) -> RawFd {
        libc::STDIN_FILENO
    }

    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<Input> {
        if buf.is_empty() {
            return Ok(Input::Data(0));
        }
        self.raw.resize(buf.len(), 0);
        let n = read_fd(libc::STDIN_FILENO, &mut self.raw)?;
        if n == 0 {
            return Ok(Input::Eof);
        }
        let mut out = 0;
        for &b in &self.raw[..n] {
            match self.escape.feed(b) {
                Escape::Forward(c) => {
                    buf[out] = c;
                    out += 1;
                }
                Escape::Swallow => {}
                Escape::Help => eprint!("{ESCAPE_HELP}"),
                Escape::Quit => return Ok(Input::Quit),
            }
        }
        Ok(Input::Data(out))
    }
}

/// read(2) retried on EINTR.
fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the kernel writes at most buf.len() bytes into buf, which we own.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The terminal state saved before raw mode, for [`restore_terminal`].
static SAVED_TERMIOS: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);

/// Puts the saved terminal settings back, if raw mode was entered. Safe to call more
/// than once and from any thread (not from an async signal handler: use a signalfd or
/// a self-pipe and call it from the main loop).
pub fn restore_terminal() {
    let saved = SAVED_TERMIOS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some((fd, t)) = saved {
        // SAFETY: `t` is a termios the kernel filled for this fd earlier.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
}

/// Raw mode on a terminal for as long as it lives.
/// Restores the saved terminal state when dropped.
pub struct TermGuard;

impl TermGuard {
    /// Puts the terminal on `fd` in raw mode, if it is one; restored when dropped.
    pub fn raw_if_tty(fd: RawFd) -> io::Result<Option<TermGuard>> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return Ok(None);
        }
        // SAFETY: termios is plain data; tcgetattr fills it and the result is checked.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid termios to fill.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        *SAVED_TERMIOS.lock().unwrap_or_else(|p| p.into_inner()) = Some((fd, t));
        make_raw(&mut t);
        // Output post-processing stays on so a guest's bare LF still starts a line.
        t.c_oflag |= libc::OPOST;
        // SAFETY: `t` is a valid termios derived from the current one.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            let e = io::Error::last_os_error();
            restore_terminal();
            return Err(e);
        }
        Ok(Some(TermGuard))
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Byte-transparent input: no echo, no line editing, no signals from Ctrl-C (it goes
/// to the guest; Ctrl-A x quits), 8-bit characters.
fn make_raw(t: &mut libc::termios) {
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    t.c_oflag &= !libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    t.c_cflag &= !(libc::CSIZE | libc::PARENB);
    t.c_cflag |= libc::CS8;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
}

/// A non-blocking writer that drops what the reader is too slow (or absent) to take,
/// rather than stalling the vCPU.
struct DropOnFull(File);

impl Write for DropOnFull {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(buf.len()),
            r => r,
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct PtyInput {
    master: File,
    /// Held open so the master never sees a hangup while no one has the slave open.
    _slave: File,
}

impl ChardevInput for PtyInput {
    fn fd(&self) -> RawFd {
        self.master.as_raw_fd()
    }

    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<Input> {
        match self.master.read(buf) {
            Ok(n) => Ok(Input::Data(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Input::Data(0)),
            Err(e) => Err(e),
        }
    }
}

/// A pty pair in raw mode: (non-blocking master, slave path, slave).
fn open_pty() -> io::Result<(File, PathBuf, File)> {
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let m = unsafe {
        libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
    };
    if m < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `m` is a fresh descriptor we own from here on.
    let master = File::from(unsafe { OwnedFd::from_raw_fd(m) });
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt act on our master fd; ptsname_r writes at most
    // name.len() bytes, NUL-terminated, into `name`.
    let ok = unsafe {
        libc::grantpt(m) == 0
            && libc::unlockpt(m) == 0
            && libc::ptsname_r(m, name.as_mut_ptr(), name.len()) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
    let cname = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let path = PathBuf::from(cname.to_string_lossy().into_owned());
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)?;
    // SAFETY: termios is plain data; tcgetattr fills it and the result is checked.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is valid for the calls; the slave fd is open.
    if unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    make_raw(&mut t);
    // SAFETY: as above.
    if unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((master, path, slave))
}

/// The shared state of the socket backend: the listener and the connected clients.
/// Every client sees the output; input comes from any of them (a console several
/// people watch, any of whom may type).
struct SocketState {
    listener: UnixListener,
    clients: Vec<UnixStream>,
    epoll: OwnedFd,
}

impl SocketState {
    fn watch(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a valid event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn unwatch(&self, fd: RawFd) {
        // SAFETY: epoll_ctl DEL ignores the event pointer; the fds are ours.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Takes every client waiting to connect.
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((c, _)) => {
                    c.set_nonblocking(true)?;
                    self.watch(c.as_raw_fd())?;
                    self.clients.push(c);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn drop_client(&mut self, i: usize) {
        let c = self.clients.remove(i);
        self.unwatch(c.as_raw_fd());
    }
}

struct SocketServer(Arc<Mutex<SocketState>>);
struct SocketOutput(Arc<Mutex<SocketState>>);

impl SocketServer {
    fn bind(path: &Path) -> io::Result<(SocketOutput, SocketServer)> {
        // A socket file left by an earlier run would make bind fail: replace it, but
        // never anything that is not a socket.
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let st = SocketState {
            listener,
            clients: Vec::new(),
            epoll,
        };
        st.watch(st.listener.as_raw_fd())?;
        let st = Arc::new(Mutex::new(st));
        Ok((SocketOutput(st.clone()), SocketServer(st)))
    }
}

impl ChardevInput for SocketServer {
    fn fd(&self) -> RawFd {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .epoll
            .as_raw_fd()
    }

    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<Input> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.accept_all()?;
        let mut i = 0;
        while i < st.clients.len() {
            match st.clients[i].read(buf) {
                Ok(0) => st.drop_client(i),
                Ok(n) => return Ok(Input::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => i += 1,
                Err(_) => st.drop_client(i),
            }
        }
        Ok(Input::Data(0))
    }
}

impl Write for SocketOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for c in &st.clients {
            // SAFETY: send reads at most buf.len() bytes from buf; MSG_NOSIGNAL turns a
            // vanished peer into EPIPE instead of SIGPIPE.
            let r = unsafe {
                libc::send(
                    c.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            // Errors (slow or gone client) drop the bytes for that client; the input
            // side notices a client that left.
            let _ = r;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
