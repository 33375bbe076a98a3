//! The QMP server thread: one `poll` over the listening socket, the event sink, a
//! stop eventfd and every client.
//!
//! Each client gets the greeting and its own negotiation state. Requests run on this
//! thread, one at a time, in arrival order; the events a command causes are sent to
//! every negotiated client before its reply (as QEMU orders them). Sockets are
//! non-blocking: a client that does not read only grows its own output buffer, and
//! is dropped past [`MAX_OUTPUT`] bytes; one that goes away mid-reply is dropped at
//! the failed write. Nothing a client sends can block the machine: the only waits
//! are the [`ControlTarget`] methods themselves.

use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::commands::{self, Session};
use super::events::EventSink;
use super::framer::{Frame, Framer};
use super::protocol::{self, QmpError};
use super::ControlTarget;

/// Output a client may leave unread before it is dropped.
pub const MAX_OUTPUT: usize = 16 << 20;
/// Clients served at once; more are accepted and closed at once.
pub const MAX_CLIENTS: usize = 64;
/// How long [`ControlServer::shutdown`] keeps sending what clients have not read yet.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes read from one client before the others get their turn.
const READ_BUDGET: usize = 256 << 10;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot create the control server's eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot make the control socket non-blocking: {0}")]
    Nonblocking(std::io::Error),
    #[error("cannot start the control server thread: {0}")]
    Spawn(std::io::Error),
}

struct Stop {
    flag: AtomicBool,
    evt: EventFd,
}

/// The running server; [`ControlServer::shutdown`] (or drop) ends it.
pub struct ControlServer {
    thread: Option<JoinHandle<()>>,
    stop: Arc<Stop>,
}

impl ControlServer {
    /// Serves QMP on `listener` for `target` on a new thread, `qmp` for short.
    pub fn start(
        listener: UnixListener,
        target: Arc<dyn ControlTarget>,
        events: EventSink,
    ) -> Result<Self, ServerError> {
        listener
            .set_nonblocking(true)
            .map_err(ServerError::Nonblocking)?;
        let stop = Arc::new(Stop {
            flag: AtomicBool::new(false),
            evt: EventFd::new(EFD_NONBLOCK).map_err(ServerError::EventFd)?,
        });
        let mut server = Server {
            listener,
            target,
            events,
            stop: stop.clone(),
            clients: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("qmp".into())
            // The request parser recurses once per nesting level (at most 1024).
            .stack_size(8 << 20)
            .spawn(move || {
                block_signals();
                server.run()
            })
            .map_err(ServerError::Spawn)?;
        Ok(ControlServer {
            thread: Some(thread),
            stop,
        })
    }

    /// Sends queued events and replies (for up to [`FLUSH_TIMEOUT`]), closes every
    /// client and the listener, and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.flag.store(true, Ordering::SeqCst);
        let _ = self.stop.evt.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One connection.
struct Client {
    stream: UnixStream,
    framer: Framer,
    session: Session,
    out: Vec<u8>,
    sent: usize,
    /// The client closed its side: send what is queued, then close.
    eof: bool,
    dead: bool,
}

impl Client {
    fn new(stream: UnixStream) -> Self {
        let mut c = Client {
            stream,
            framer: Framer::new(),
            session: Session::default(),
            out: Vec::new(),
            sent: 0,
            eof: false,
            dead: false,
        };
        c.queue(&protocol::greeting());
        c
    }

    fn pending_output(&self) -> bool {
        self.sent < self.out.len()
    }

    fn queue(&mut self, line: &str) {
        if self.out.len() - self.sent + line.len() > MAX_OUTPUT {
            self.dead = true;
            return;
        }
        if self.sent > 0 && self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        self.out.extend_from_slice(line.as_bytes());
    }

    /// Writes what the socket takes now.
    fn flush(&mut self) {
        while self.pending_output() && !self.dead {
            let rest = &self.out[self.sent..];
            // SAFETY: sends from a live buffer of `rest.len()` bytes on our own socket;
            // MSG_NOSIGNAL turns a vanished peer into EPIPE instead of SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                self.sent += n as usize;
                continue;
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                ErrorKind::WouldBlock => return,
                ErrorKind::Interrupted => continue,
                _ => self.dead = true,
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }

    /// Reads what is there (up to the budget) and returns the frames it completes.
    fn read(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut buf = [0u8; 16 << 10];
        let mut taken = 0;
        while taken < READ_BUDGET && !self.eof && !self.dead {
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    taken += n;
                    frames.extend(self.framer.feed(&buf[..n]));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        frames
    }
}

struct Server {
    listener: UnixListener,
    target: Arc<dyn ControlTarget>,
    events: EventSink,
    stop: Arc<Stop>,
    clients: Vec<Client>,
}

/// Blocks every signal in this thread: SIGINT/SIGTERM/SIGHUP/SIGUSR1 must reach the
/// machine's signalfd (a thread that leaves one unblocked would take it and die of
/// it), and the vCPU kick is not for us.
fn block_signals() {
    // SAFETY: fills a local sigset and sets this thread's own mask from it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll(2)` on `fds`, retrying on EINTR; false on another error.
fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> bool {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return true;
        }
        if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            return false;
        }
    }
}

impl Server {
    fn run(&mut self) {
        let mut fds = Vec::new();
        while !self.stop.flag.load(Ordering::SeqCst) {
            fds.clear();
            fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
            fds.push(pollfd(self.events.fd(), libc::POLLIN));
            fds.push(pollfd(self.stop.evt.as_raw_fd(), libc::POLLIN));
            for c in &self.clients {
                let mut ev = 0;
                if !c.eof {
                    ev |= libc::POLLIN;
                }
                if c.pending_output() {
                    ev |= libc::POLLOUT;
                }
                fds.push(pollfd(c.stream.as_raw_fd(), ev));
            }
            if !poll(&mut fds, -1) {
                // Nothing sensible is left to wait on; stop serving, the machine runs on.
                break;
            }
            if fds[1].revents != 0 {
                self.broadcast_events();
            }
            for (i, f) in fds[3..].iter().enumerate() {
                if f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.serve(i);
                }
            }
            for c in &mut self.clients {
                c.flush();
            }
            self.clients
                .retain(|c| !c.dead && (!c.eof || c.pending_output()));
            if fds[0].revents != 0 {
                self.accept();
            }
        }
        self.broadcast_events();
        self.flush_all();
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let mut c = Client::new(stream);
                    c.flush();
                    self.clients.push(c);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Sends the queued events to every negotiated client that is still listening.
    fn broadcast_events(&mut self) {
        for line in self.events.drain() {
            for c in &mut self.clients {
                if c.session.negotiated && !c.eof {
                    c.queue(&line);
                }
            }
        }
    }

    /// Reads client `i` and answers what it sent.
    fn serve(&mut self, i: usize) {
        let frames = self.clients[i].read();
        for frame in frames {
            let reqs = match frame {
                Frame::Message(m) => protocol::parse_message(&m),
                Frame::TooLong => vec![Err(refusal("JSON token size limit exceeded"))],
                Frame::TooDeep => vec![Err(refusal("JSON nesting depth limit exceeded"))],
                Frame::Unbalanced => vec![Err(refusal("JSON parse error, expecting value"))],
            };
            for r in reqs {
                let reply = match r {
                    Ok(req) => {
                        let c = &mut self.clients[i];
                        commands::dispatch(self.target.as_ref(), &mut c.session, req)
                    }
                    Err(refused) => protocol::reply_err(&refused.error, refused.id),
                };
                self.broadcast_events();
                self.clients[i].queue(&reply);
            }
        }
    }

    /// Sends what is queued, for at most [`FLUSH_TIMEOUT`].
    fn flush_all(&mut self) {
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            for c in &mut self.clients {
                c.flush();
            }
            self.clients.retain(|c| !c.dead && c.pending_output());
            let left = deadline.saturating_duration_since(Instant::now());
            if self.clients.is_empty() || left.is_zero() {
                return;
            }
            let mut fds: Vec<_> = (self.clients.iter())
                .map(|c| pollfd(c.stream.as_raw_fd(), libc::POLLOUT))
                .collect();
            if !poll(&mut fds, left.as_millis().max(1) as i32) {
                return;
            }
        }
    }
}

fn refusal(desc: &str) -> protocol::Refused {
    protocol::Refused {
        error: QmpError::generic(desc),
        id: None,
    }
}
