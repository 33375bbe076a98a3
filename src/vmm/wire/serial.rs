//! A 16550A at the spec's port with its character backend: output to the backend (and
//! a `log` file beside it), input from the backend pumped by the event loop while the
//! UART's FIFO has room.

use std::io::Write;

use super::{insert_io, irq, shared, Devices, WireError};
use crate::backends::chardev::{self, ChardevKind, Input as CharInput};
use crate::devices::serial::Serial;
use crate::spec::{CharBackend, DeviceSpec};
use crate::vmm::bus::Bus;
use crate::vmm::event_loop::{Input, InputSource, Waker};
use crate::vmm::vm::Vm;

/// A serial port's backend as QMP's `query-chardev` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevInfo {
    /// The device id.
    pub label: String,
    /// QEMU's description: "stdio", "file:PATH", "unix:PATH,server=on", "pty:PATH", "null".
    pub filename: String,
}

pub(super) fn chardev_kind(b: &CharBackend) -> ChardevKind {
    match b {
        CharBackend::Stdio => ChardevKind::Stdio,
        CharBackend::File(p) => ChardevKind::File {
            path: p.clone(),
            append: false,
        },
        CharBackend::Socket(p) => ChardevKind::Socket { path: p.clone() },
        CharBackend::Pty => ChardevKind::Pty,
        CharBackend::Stderr | CharBackend::Null => ChardevKind::Null,
    }
}

fn filename(b: &CharBackend, pty: Option<&std::path::Path>) -> String {
    match (b, pty) {
        (CharBackend::Stdio, _) => "stdio".into(),
        (CharBackend::Stderr, _) => "stderr".into(),
        (CharBackend::File(p), _) => format!("file:{}", p.display()),
        (CharBackend::Socket(p), _) => format!("unix:{},server=on", p.display()),
        (CharBackend::Pty, Some(p)) => format!("pty:{}", p.display()),
        (CharBackend::Pty, None) => "pty".into(),
        (CharBackend::Null, _) => "null".into(),
    }
}

/// A writer that copies everything to a second one (the serial `log` file).
struct Tee(Box<dyn Write + Send>, std::fs::File);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        let _ = self.1.write_all(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Whether `fd` has input (or a hang-up) right now.
fn readable_now(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

pub(super) fn serial(
    vm: &Vm,
    pio: &mut Bus,
    d: &DeviceSpec,
    backend: &CharBackend,
    log: Option<&std::path::Path>,
    out: &mut Devices,
) -> Result<(), WireError> {
    let mut cd = chardev::open(&chardev_kind(backend)).map_err(|source| WireError::Chardev {
        id: d.id.clone(),
        source,
    })?;
    out.terminal.extend(cd.term.take());
    out.chardevs.push(ChardevInfo {
        label: d.id.clone(),
        filename: filename(backend, cd.pty_path.as_deref()),
    });
    let output: Box<dyn Write + Send> = match log {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|source| WireError::Log {
                id: d.id.clone(),
                path: path.into(),
                source,
            })?;
            Box::new(Tee(cd.output, f))
        }
        None => cd.output,
    };
    let serial = shared(Serial::new(output, irq(vm, d, 0)));
    insert_io(pio, serial.clone(), &d.io, &d.id)?;
    out.state.push((d.id.clone(), serial.clone()));
    let Some(input) = cd.input else {
        return Ok(());
    };
    out.sources.push(input_source(serial, input)?);
    Ok(())
}

/// The event loop's side of a serial port: bytes from the backend into the FIFO, held
/// back while it is full (the UART wakes the loop when the guest makes room).
fn input_source(
    serial: std::sync::Arc<std::sync::Mutex<Serial>>,
    mut input: Box<dyn chardev::ChardevInput>,
) -> Result<InputSource, WireError> {
    let waker = Waker::new().map_err(WireError::EventFd)?;
    {
        let w = waker.clone();
        let mut s = serial.lock().unwrap_or_else(|p| p.into_inner());
        s.set_rx_space_notify(Box::new(move || w.wake()));
    }
    let fd = input.fd();
    // Bytes read from the host but not yet taken by the FIFO.
    let mut pending: Vec<u8> = Vec::new();
    let on_readable = Box::new(move || -> Input {
        let mut s = serial.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            let n = s.enqueue_input(&pending);
            pending.drain(..n);
            return if pending.is_empty() {
                Input::Open
            } else {
                Input::Full
            };
        }
        if s.input_space() == 0 {
            return Input::Full;
        }
        // Called after a wake-up too: read only what is there now, never block.
        if !readable_now(fd) {
            return Input::Open;
        }
        let mut buf = [0u8; 64];
        match input.read_input(&mut buf) {
            Ok(CharInput::Data(n)) => {
                let taken = s.enqueue_input(&buf[..n]);
                pending.extend_from_slice(&buf[taken..n]);
                if pending.is_empty() {
                    Input::Open
                } else {
                    Input::Full
                }
            }
            Ok(CharInput::Eof) => Input::Closed,
            Ok(CharInput::Quit) => Input::Quit,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                Input::Open
            }
            Err(_) => Input::Closed,
        }
    });
    Ok(InputSource {
        fd,
        on_readable,
        space: Some(waker),
    })
}
