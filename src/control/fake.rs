//! A [`ControlTarget`] with no machine behind it, for the server's tests: it keeps a
//! run state, emits the events a real machine would and records what it was asked.

use std::sync::Mutex;

use super::{
    ChardevInfo, ControlError, ControlTarget, CpuInfo, Event, EventSink, ImageFormat, RunStatus,
    Screendump, ShutdownCause,
};

pub struct FakeTarget {
    pub events: EventSink,
    pub state: Mutex<RunStatus>,
    pub calls: Mutex<Vec<String>>,
    /// Whether `screendump` has a display to dump.
    pub vga: bool,
    /// Whether the machine has a power button.
    pub pm: bool,
}

impl FakeTarget {
    pub fn new(events: EventSink) -> Self {
        FakeTarget {
            events,
            state: Mutex::new(RunStatus::Running),
            calls: Mutex::new(Vec::new()),
            vga: true,
            pm: true,
        }
    }

    fn call(&self, what: &str) {
        self.calls.lock().unwrap().push(what.to_string());
    }

    fn set(&self, from: RunStatus, to: RunStatus, ev: Event) {
        let mut s = self.state.lock().unwrap();
        if *s == from {
            *s = to;
            self.events.emit(ev);
        }
    }
}

impl ControlTarget for FakeTarget {
    fn name(&self) -> String {
        "fake".into()
    }

    fn status(&self) -> RunStatus {
        *self.state.lock().unwrap()
    }

    fn stop(&self) -> Result<(), ControlError> {
        self.call("stop");
        self.set(RunStatus::Running, RunStatus::Paused, Event::Stop);
        Ok(())
    }

    fn cont(&self) -> Result<(), ControlError> {
        self.call("cont");
        self.set(RunStatus::Paused, RunStatus::Running, Event::Resume);
        Ok(())
    }

    fn powerdown(&self) -> Result<(), ControlError> {
        if !self.pm {
            return Err(ControlError::NoPowerButton);
        }
        self.call("powerdown");
        self.events.emit(Event::Powerdown);
        Ok(())
    }

    fn reset(&self) -> Result<(), ControlError> {
        self.call("reset");
        self.events
            .emit(Event::Reset(ShutdownCause::HostQmpSystemReset));
        Ok(())
    }

    fn quit(&self) {
        self.call("quit");
        *self.state.lock().unwrap() = RunStatus::Shutdown;
        self.events
            .emit(Event::Shutdown(ShutdownCause::HostQmpQuit));
    }

    fn screendump(&self, req: &Screendump) -> Result<(), ControlError> {
        if !self.vga {
            return Err(ControlError::NoConsole);
        }
        if let Some(d) = &req.device {
            if d != "vga" {
                return Err(ControlError::DeviceNotFound(d.clone()));
            }
        }
        let ext = if req.format == ImageFormat::Png {
            "png"
        } else {
            "ppm"
        };
        self.call(&format!("screendump {} {ext}", req.filename.display()));
        Ok(())
    }

    fn cpus(&self) -> Vec<CpuInfo> {
        (0..2)
            .map(|i| CpuInfo {
                index: i,
                thread_id: 1000 + i64::from(i),
                socket: 0,
                core: i,
                thread: 0,
            })
            .collect()
    }

    fn chardevs(&self) -> Vec<ChardevInfo> {
        vec![ChardevInfo {
            label: "com1".into(),
            filename: "pty:/dev/pts/9".into(),
            frontend_open: true,
        }]
    }

    fn memory_size(&self) -> u64 {
        64 << 20
    }
}
