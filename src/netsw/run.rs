//! The switch process: every port socket, the control socket and a signalfd in one
//! single-threaded `ppoll` loop, whose timeout is the engine's next deadline (delayed
//! and shaped frames, stall checks) with nanosecond resolution: no thread per port,
//! no timer thread.
//!
//! Each round: release due frames ([`Engine::tick`]); poll each port for reading while
//! the engine accepts its frames ([`Engine::readable`], back-pressure) and for writing
//! while it has frames queued; read at most [`BATCH`] frames per port into one receive
//! buffer; drain writable ports; serve control connections. Every
//! [`HOUSEKEEPING`] the ports look for nodes that restarted, capture files are flushed
//! and aged MAC addresses forgotten. SIGINT, SIGTERM and SIGHUP (or a `shutdown`
//! request) end the loop: captures are flushed and the sockets removed.

use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use thiserror::Error;

use super::capture::{Format, Tap, Target};
use super::config::{Config, ConfigError, Plan};
use super::control::{Action, Control};
use super::engine::Engine;
use super::wire::SockWire;
use crate::backends::dgram_sock::{DgramError, Endpoint};
use crate::backends::private_dir::{self, PrivateDirError};
use crate::vmm::event_loop::{block_exit_signals, SignalFd};

/// Frames read from one port per round before the others get their turn.
pub const BATCH: usize = 64;
pub const HOUSEKEEPING: Duration = Duration::from_millis(100);
const RECV_BUF: usize = 65536;

#[derive(Debug, Error)]
pub enum SwitchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Dir(#[from] PrivateDirError),
    #[error("port `{name}`")]
    Port { name: String, source: DgramError },
    #[error("cannot create the control socket {path}")]
    Control {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the capture {path}")]
    Capture {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a signalfd")]
    Signal(#[source] std::io::Error),
    #[error("poll failed")]
    Poll(#[source] std::io::Error),
}

/// A running switch.
pub struct Switch {
    pub engine: Engine<SockWire>,
    control: Control,
    start: Instant,
    buf: Vec<u8>,
    fds: Vec<libc::pollfd>,
    next_housekeeping: Duration,
}

/// Loads `config`, opens everything and runs until told to stop.
pub fn run_file(config: &Path) -> Result<(), SwitchError> {
    let cfg = Config::load(config)?;
    let base = config
        .parent()
        .map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf);
    let base = std::path::absolute(&base).unwrap_or(base);
    let plan = cfg.plan(&base)?;
    block_exit_signals();
    // Timers to the microsecond (delays, shaping) rather than the default 50 us slack.
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer; it only affects this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    let sig = SignalFd::new().map_err(SwitchError::Signal)?;
    let stop = || matches!(sig.read(), Some(s) if s != libc::SIGUSR1);
    Switch::open(&plan)?.run(Some(sig.fd()), stop)
}

impl Switch {
    /// Creates the directories, binds every port, starts the configured captures, and
    /// last binds the control socket (so a client that can connect finds it all ready).
    pub fn open(plan: &Plan) -> Result<Self, SwitchError> {
        let start = Instant::now();
        let dirs = plan
            .nets
            .iter()
            .flat_map(|n| &n.ports)
            .filter_map(|p| match &p.local {
                Endpoint::Unix(path) => path.parent(),
                Endpoint::Udp(_) => None,
            })
            .chain(plan.control.parent());
        for d in dirs {
            private_dir::ensure_private_dir(d)?;
        }
        let wall0 = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut engine = Engine::build(plan, wall0, |p| {
            SockWire::open(&p.local, &p.remote, start).map_err(|source| SwitchError::Port {
                name: p.name.clone(),
                source,
            })
        })?;
        let mut port = 0;
        for (n, np) in plan.nets.iter().enumerate() {
            if let Some(path) = &np.capture {
                start_capture(&mut engine, Target::Net(n), path)?;
            }
            for pp in &np.ports {
                if let Some(path) = &pp.capture {
                    start_capture(&mut engine, Target::Port(port), path)?;
                }
                port += 1;
            }
        }
        let control = Control::bind(&plan.control).map_err(|source| SwitchError::Control {
            path: plan.control.clone(),
            source,
        })?;
        Ok(Self {
            engine,
            control,
            start,
            buf: vec![0; RECV_BUF],
            fds: Vec::new(),
            next_housekeeping: Duration::ZERO,
        })
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Runs until a `shutdown` request, or until `stop()` says so after `stop_fd`
    /// polled readable.
    pub fn run(
        mut self,
        stop_fd: Option<RawFd>,
        mut stop: impl FnMut() -> bool,
    ) -> Result<(), SwitchError> {
        loop {
            match self.round(stop_fd)? {
                Round::Stop => break,
                Round::StopFd if stop() => break,
                _ => {}
            }
        }
        self.engine.housekeeping(self.now());
        Ok(())
    }

    /// One poll round.
    fn round(&mut self, stop_fd: Option<RawFd>) -> Result<Round, SwitchError> {
        let now = self.now();
        self.engine.tick(now);
        if now >= self.next_housekeeping {
            for p in &mut self.engine.ports {
                p.wire.maintain(now);
            }
            self.engine.housekeeping(now);
            self.next_housekeeping = now + HOUSEKEEPING;
        }
        let nports = self.build_fds(stop_fd);
        let wait = self
            .engine
            .next_deadline()
            .map_or(self.next_housekeeping, |d| d.min(self.next_housekeeping))
            .saturating_sub(now);
        poll(&mut self.fds, wait)?;
        let now = self.now();
        let ports_at = 1 + usize::from(stop_fd.is_some());
        for p in 0..nports {
            let ev = self.fds[ports_at + p].revents;
            if ev & libc::POLLOUT != 0 {
                self.engine.drain(p, now);
            }
            if ev & libc::POLLERR != 0 {
                self.engine.ports[p].wire.clear_error();
            }
            if ev & libc::POLLIN != 0 {
                self.read_port(p, now);
            }
        }
        let mut action = Action::None;
        let conns_at = ports_at + nports;
        for i in 0..self.fds.len() - conns_at {
            let ev = self.fds[conns_at + i].revents;
            if ev & libc::POLLOUT != 0 {
                self.control.writable(i, &mut self.engine);
            }
            if ev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                && self.control.readable(i, &mut self.engine, now) == Action::Shutdown
            {
                action = Action::Shutdown;
            }
        }
        self.control.reap(&mut self.engine);
        if self.fds[0].revents & libc::POLLIN != 0 {
            self.control.accept();
        }
        if action == Action::Shutdown {
            return Ok(Round::Stop);
        }
        let stopped = stop_fd.is_some() && self.fds[1].revents & libc::POLLIN != 0;
        Ok(if stopped { Round::StopFd } else { Round::Go })
    }

    /// Listener, stop fd, ports, connections; returns the number of ports.
    fn build_fds(&mut self, stop_fd: Option<RawFd>) -> usize {
        let pfd = |fd, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        self.fds.clear();
        self.fds.push(pfd(self.control.listener_fd(), libc::POLLIN));
        if let Some(fd) = stop_fd {
            self.fds.push(pfd(fd, libc::POLLIN));
        }
        let n = self.engine.ports.len();
        for p in 0..n {
            let mut ev = 0;
            if self.engine.readable(p) {
                ev |= libc::POLLIN;
            }
            if self.engine.wants_write(p) {
                ev |= libc::POLLOUT;
            }
            self.fds.push(pfd(self.engine.ports[p].wire.fd(), ev));
        }
        for (fd, out) in self.control.conn_fds(&self.engine) {
            let ev = libc::POLLIN | if out { libc::POLLOUT } else { 0 };
            self.fds.push(pfd(fd, ev));
        }
        n
    }

    fn read_port(&mut self, p: usize, now: Duration) {
        for _ in 0..BATCH {
            if !self.engine.readable(p) {
                break;
            }
            match self.engine.ports[p].wire.recv(&mut self.buf) {
                Ok(Some(n)) => self.engine.ingress(p, &self.buf[..n], now),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

enum Round {
    Go,
    Stop,
    StopFd,
}

fn start_capture(
    engine: &mut Engine<SockWire>,
    target: Target,
    path: &Path,
) -> Result<(), SwitchError> {
    let err = |source| SwitchError::Capture {
        path: path.into(),
        source,
    };
    let sink = Tap::file_sink(path).map_err(err)?;
    engine
        .add_tap(target, Format::for_path(path), sink)
        .map_err(err)?;
    Ok(())
}

/// `ppoll` with a nanosecond timeout.
fn poll(fds: &mut [libc::pollfd], wait: Duration) -> Result<(), SwitchError> {
    let ts = libc::timespec {
        tv_sec: wait.as_secs().min(3600) as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a valid array of its length; `ts` outlives the call; no mask.
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(SwitchError::Poll(e));
        }
    }
    Ok(())
}
