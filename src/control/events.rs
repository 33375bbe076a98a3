//! QMP events and the sink the machine emits them through.
//!
//! [`EventSink::emit`] stamps the event with the wall-clock time, formats its line
//! once and queues it; the server thread, woken through the sink's eventfd, sends it
//! to every client that finished negotiation. Events emitted with no client
//! connected are dropped, as QEMU drops them; the queue holds at most
//! [`QUEUE_MAX`] lines if the server falls behind.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::json::Json;
use super::protocol;

/// QAPI's `ShutdownCause`: why a run ended or a reset happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownCause {
    HostError,
    HostQmpQuit,
    HostQmpSystemReset,
    HostSignal,
    HostUi,
    GuestShutdown,
    GuestReset,
    GuestPanic,
}

impl ShutdownCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownCause::HostError => "host-error",
            ShutdownCause::HostQmpQuit => "host-qmp-quit",
            ShutdownCause::HostQmpSystemReset => "host-qmp-system-reset",
            ShutdownCause::HostSignal => "host-signal",
            ShutdownCause::HostUi => "host-ui",
            ShutdownCause::GuestShutdown => "guest-shutdown",
            ShutdownCause::GuestReset => "guest-reset",
            ShutdownCause::GuestPanic => "guest-panic",
        }
    }

    /// Whether the guest caused it (the events' `guest` member).
    pub fn is_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset | ShutdownCause::GuestPanic
        )
    }
}

/// An event vmrun emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Stop,
    Resume,
    /// The power button was pressed (`system_powerdown`).
    Powerdown,
    Reset(ShutdownCause),
    Shutdown(ShutdownCause),
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Stop => "STOP",
            Event::Resume => "RESUME",
            Event::Powerdown => "POWERDOWN",
            Event::Reset(_) => "RESET",
            Event::Shutdown(_) => "SHUTDOWN",
        }
    }

    /// The `data` member, for events that have one.
    pub fn data(self) -> Option<Json> {
        match self {
            Event::Reset(c) | Event::Shutdown(c) => Some(Json::object([
                ("guest", Json::Bool(c.is_guest())),
                ("reason", Json::from(c.as_str())),
            ])),
            _ => None,
        }
    }
}

/// How many formatted events wait for the server at most; older ones are dropped.
pub const QUEUE_MAX: usize = 1024;

struct Queue {
    lines: Mutex<VecDeque<String>>,
    wake: EventFd,
}

/// Where the machine emits events; cheap to clone, shared with the server.
#[derive(Clone)]
pub struct EventSink(Arc<Queue>);

impl EventSink {
    pub fn new() -> std::io::Result<Self> {
        Ok(EventSink(Arc::new(Queue {
            lines: Mutex::new(VecDeque::new()),
            wake: EventFd::new(EFD_NONBLOCK)?,
        })))
    }

    /// Queues `event`, stamped now, and wakes the server.
    pub fn emit(&self, event: Event) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = protocol::event_line(event.name(), event.data(), now);
        let mut q = self.0.lines.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= QUEUE_MAX {
            q.pop_front();
        }
        q.push_back(line);
        drop(q);
        let _ = self.0.wake.write(1);
    }

    /// Readable when events wait (the server polls it).
    pub(crate) fn fd(&self) -> RawFd {
        self.0.wake.as_raw_fd()
    }

    /// Takes every queued line (and clears the wake-up).
    pub(crate) fn drain(&self) -> Vec<String> {
        let _ = self.0.wake.read();
        let mut q = self.0.lines.lock().unwrap_or_else(|p| p.into_inner());
        q.drain(..).collect()
    }
}
