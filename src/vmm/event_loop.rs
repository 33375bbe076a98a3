//! The main thread's loop: wait (poll) for the first thing that ends the run — a vCPU
//! recording an exit, SIGINT/SIGTERM/SIGHUP, the `--timeout` — while feeding input
//! sources (the serial's stdin or socket) into their devices.
//!
//! Termination signals arrive through a signalfd; they are blocked in this thread by
//! [`run`] and in every vCPU thread by the vCPU module. Call [`block_exit_signals`]
//! early in `main` if other threads are spawned before `run`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::exit::ExitReason;
use super::vcpu::RunningVcpus;

/// What an input handler reports after reading what was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Keep polling the fd.
    Open,
    /// The device cannot take more now (FIFO full): look again a little later instead
    /// of spinning on a readable fd.
    Full,
    /// End of input: stop polling the fd (the run goes on).
    Closed,
    /// The user asked to quit (the chardev's Ctrl-A x): end the run with
    /// [`ExitReason::Quit`].
    Quit,
}

/// Wakes the loop from another thread: a device whose input FIFO was full calls
/// [`Waker::wake`] when the guest makes room (e.g. from `Serial::set_rx_space_notify`).
#[derive(Clone)]
pub struct Waker(Arc<EventFd>);

impl Waker {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self(Arc::new(EventFd::new(EFD_NONBLOCK)?)))
    }

    /// Never blocks, never fails in a way the caller could act on (a saturated counter
    /// already means "wake up").
    pub fn wake(&self) {
        let _ = self.0.write(1);
    }

    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn drain(&self) {
        let _ = self.0.read();
    }
}

/// An fd to poll and what to do when it is readable (or when the device woke the
/// [`Waker`] after `Full`: then the fd may not be readable, so a handler must not block
/// on it): read, then push into the device while it has room, and say [`Input::Full`]
/// when it has none. A handler must return
/// [`Input::Closed`] at end of file, or the loop would spin on a hung-up fd.
pub struct InputSource {
    pub fd: RawFd,
    pub on_readable: Box<dyn FnMut() -> Input + Send>,
    /// Woken by the device when room frees up after `Full`; without one the source is
    /// polled again after [`FULL_BACKOFF`].
    pub space: Option<Waker>,
}

/// How long a `Full` source without a [`Waker`] waits before being polled again.
pub const FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Where a source stands.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Open,
    /// Full: wait for the waker, or until the instant.
    Full(Option<Instant>),
    Closed,
}

fn exit_signal_set() -> libc::sigset_t {
    // SAFETY: building a sigset in a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and the threads it spawns
/// afterwards), so they wait for the loop's signalfd. Returns the previous mask.
pub fn block_exit_signals() -> libc::sigset_t {
    let set = exit_signal_set();
    // SAFETY: sets this thread's mask from a valid set; `old` is written by the call.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

/// A signalfd for the exit signals, closed on drop (also used by the lab switch's loop).
pub(crate) struct SignalFd(RawFd);

impl SignalFd {
    pub(crate) fn new() -> std::io::Result<Self> {
        let set = exit_signal_set();
        // SAFETY: creating a new signalfd from a valid set.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.0
    }

    /// The number of the signal that arrived, if one did.
    pub(crate) fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data; read(2) fills at most its size.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = libc::read(self.0, &mut info as *mut _ as *mut libc::c_void, size);
            (n == size as isize).then_some(info.ssi_signo as i32)
        }
    }
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Runs until the first thing ends the run, then stops and joins every vCPU, calls
/// `restore` (put the terminal back) and returns why the run ended.
pub fn run(
    vcpus: RunningVcpus,
    sources: Vec<InputSource>,
    timeout: Option<Duration>,
    restore: impl FnOnce(),
) -> ExitReason {
    run_with_usr1(vcpus, sources, timeout, &mut || {}, restore)
}

/// [`run`], calling `on_usr1` for every SIGUSR1 (a screenshot request); the run goes on.
pub fn run_with_usr1(
    vcpus: RunningVcpus,
    sources: Vec<InputSource>,
    timeout: Option<Duration>,
    on_usr1: &mut dyn FnMut(),
    restore: impl FnOnce(),
) -> ExitReason {
    let gate = std::sync::Mutex::new(());
    run_gated(vcpus, sources, (timeout, &gate), on_usr1, restore)
}

/// [`run_with_usr1`], holding `gate` while device code runs for an input source, so
/// that whoever holds it (a snapshot) sees no device change.
pub fn run_gated(
    mut vcpus: RunningVcpus,
    mut sources: Vec<InputSource>,
    (timeout, gate): (Option<Duration>, &std::sync::Mutex<()>),
    on_usr1: &mut dyn FnMut(),
    restore: impl FnOnce(),
) -> ExitReason {
    let old_mask = block_exit_signals();
    let reason = wait(&vcpus, &mut sources, (timeout, gate), on_usr1);
    vcpus.stop();
    vcpus.join();
    restore();
    // SAFETY: restores this thread's mask to what it was on entry; pending exit signals
    // were consumed by the signalfd (or will act normally now).
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
    reason
}

fn wait(
    vcpus: &RunningVcpus,
    sources: &mut [InputSource],
    (timeout, gate): (Option<Duration>, &std::sync::Mutex<()>),
    on_usr1: &mut dyn FnMut(),
) -> ExitReason {
    let sigfd = match SignalFd::new() {
        Ok(fd) => fd,
        Err(e) => return ExitReason::InternalError(format!("cannot create a signalfd: {e}")),
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut state = vec![State::Open; sources.len()];
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2 + sources.len());
    // For each polled fd after the first two: (source index, is it the source's waker).
    let mut which: Vec<(usize, bool)> = Vec::with_capacity(sources.len());
    loop {
        let now = Instant::now();
        if let Some(reason) = vcpus.exit_reason() {
            return reason;
        }
        if deadline.is_some_and(|d| now >= d) {
            return ExitReason::Timeout;
        }
        fds.clear();
        which.clear();
        fds.push(pollfd(vcpus.exit_fd()));
        fds.push(pollfd(sigfd.0));
        let mut wake = deadline;
        for (i, s) in sources.iter().enumerate() {
            match state[i] {
                State::Closed => {}
                State::Full(Some(t)) if t > now => wake = Some(wake.map_or(t, |w| w.min(t))),
                State::Full(None) => {
                    if let Some(w) = &s.space {
                        fds.push(pollfd(w.fd()));
                        which.push((i, true));
                    }
                }
                State::Open | State::Full(Some(_)) => {
                    state[i] = State::Open;
                    fds.push(pollfd(s.fd));
                    which.push((i, false));
                }
            }
        }
        let ms = wake.map_or(-1, |w| {
            let ms = w
                .saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128 - 1);
            ms as i32 + 1
        });
        // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return ExitReason::InternalError(format!("poll failed: {e}"));
        }
        if fds[1].revents != 0 {
            match sigfd.read() {
                Some(libc::SIGUSR1) => on_usr1(),
                Some(sig) => return ExitReason::Signal(sig),
                None => {}
            }
        }
        for (k, &(i, is_waker)) in which.iter().enumerate() {
            let revents = fds[2 + k].revents;
            if revents == 0 {
                continue;
            }
            if is_waker {
                if let Some(w) = &sources[i].space {
                    w.drain();
                }
                // The device made room: let the handler push what it holds back (its fd
                // may not become readable again: the bytes were already read).
                state[i] = State::Open;
            } else if revents & libc::POLLNVAL != 0 {
                state[i] = State::Closed;
                continue;
            }
            let held = gate.lock().unwrap_or_else(|p| p.into_inner());
            let input = (sources[i].on_readable)();
            drop(held);
            match input {
                Input::Open => {}
                Input::Full if sources[i].space.is_some() => state[i] = State::Full(None),
                Input::Full => state[i] = State::Full(Some(Instant::now() + FULL_BACKOFF)),
                Input::Closed => state[i] = State::Closed,
                Input::Quit => return ExitReason::Quit,
            }
        }
    }
}
