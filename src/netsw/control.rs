//! The control socket: a unix stream socket (0600, in a 0700 directory) speaking the
//! JSON-lines protocol of [`super::proto`], served from the switch's poll loop without
//! blocking it. Several clients may be connected; a `capture_stream` connection
//! carries pcap bytes after its answer until the client closes it.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::capture::{Format, Tap, Target};
use super::engine::{Engine, Wire};
use super::proto::{Request, Response};
use crate::backends::private_dir;

/// The longest request line accepted; a longer one closes the connection.
const MAX_LINE: usize = 1 << 16;
const MAX_CLIENTS: usize = 64;

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The capture this connection streams, once answered.
    tap: Option<u64>,
    closed: bool,
}

pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    conns: Vec<Conn>,
}

/// What the loop must do after a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Shutdown,
}

impl Control {
    /// Binds the control socket at `path` (a stale one is replaced).
    pub fn bind(path: &Path) -> io::Result<Self> {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another switch is listening there",
            ));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        private_dir::restrict_socket(path).map_err(io::Error::other)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            path: path.into(),
            conns: Vec::new(),
        })
    }

    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// (fd, wants to write) of every connection, in index order.
    pub fn conn_fds<'a, W: Wire>(
        &'a self,
        engine: &'a Engine<W>,
    ) -> impl Iterator<Item = (RawFd, bool)> + 'a {
        self.conns.iter().map(move |c| {
            let tap_bytes = c.tap.is_some_and(|id| {
                engine
                    .taps
                    .iter()
                    .any(|t| t.id == id && !t.stream_bytes().is_empty())
            });
            (c.stream.as_raw_fd(), !c.out.is_empty() || tap_bytes)
        })
    }

    pub fn accept(&mut self) {
        while let Ok((s, _)) = self.listener.accept() {
            if self.conns.len() >= MAX_CLIENTS || s.set_nonblocking(true).is_err() {
                continue;
            }
            self.conns.push(Conn {
                stream: s,
                inbuf: Vec::new(),
                out: Vec::new(),
                tap: None,
                closed: false,
            });
        }
    }

    /// Connection `i` is readable: reads and answers its requests.
    pub fn readable<W: Wire>(&mut self, i: usize, engine: &mut Engine<W>, now: Duration) -> Action {
        let mut action = Action::None;
        let Some(c) = self.conns.get_mut(i) else {
            return action;
        };
        let mut buf = [0u8; 4096];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.closed = true;
                    break;
                }
                Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closed = true;
                    break;
                }
            }
        }
        while let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
            if c.tap.is_some() {
                continue; // a streaming connection says nothing more
            }
            let (resp, tap, act) = handle(&line, engine, now);
            if act == Action::Shutdown {
                action = act;
            }
            c.tap = tap;
            if let Ok(mut text) = serde_json::to_vec(&resp) {
                text.push(b'\n');
                c.out.extend_from_slice(&text);
            }
        }
        if c.inbuf.len() > MAX_LINE {
            c.closed = true;
        }
        self.writable(i, engine);
        action
    }

    /// Connection `i` is writable: sends its answers, then its capture bytes.
    pub fn writable<W: Wire>(&mut self, i: usize, engine: &mut Engine<W>) {
        let Some(c) = self.conns.get_mut(i) else {
            return;
        };
        if !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    c.closed = true;
                    return;
                }
            }
        }
        let Some(tap) = c
            .tap
            .and_then(|id| engine.taps.iter_mut().find(|t| t.id == id))
        else {
            return;
        };
        if !c.out.is_empty() || tap.stream_bytes().is_empty() {
            return;
        }
        match c.stream.write(tap.stream_bytes()) {
            Ok(n) => tap.consumed(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => c.closed = true,
        }
    }

    /// Drops closed connections (and ends their captures). Call after a poll round.
    pub fn reap<W: Wire>(&mut self, engine: &mut Engine<W>) {
        for c in self.conns.iter().filter(|c| c.closed) {
            if let Some(id) = c.tap {
                engine.remove_tap(id);
            }
        }
        self.conns.retain(|c| !c.closed);
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn target<W: Wire>(engine: &Engine<W>, name: &str) -> Result<Target, String> {
    engine
        .net_index(name)
        .map(Target::Net)
        .or_else(|| engine.port_index(name).map(Target::Port))
        .ok_or_else(|| format!("no network or port named `{name}`"))
}

/// Answers one request line: the response, a capture to stream, what the loop does.
fn handle<W: Wire>(
    line: &[u8],
    engine: &mut Engine<W>,
    now: Duration,
) -> (Response, Option<u64>, Action) {
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            return (
                Response::err(format!("bad request: {e}")),
                None,
                Action::None,
            )
        }
    };
    let r = match req {
        Request::Status => Ok(Response {
            status: Some(engine.status(now)),
            ..Response::ok()
        }),
        Request::Impair {
            network,
            to,
            impair,
        } => set_impair(engine, &network, to.as_deref(), impair.as_ref()),
        Request::Link { target: t, up } => target(engine, &t).map(|t| {
            let ports = match t {
                Target::Net(n) => engine.nets[n].ports.clone(),
                Target::Port(p) => vec![p],
            };
            for p in ports {
                engine.set_up(p, up, now);
            }
            Response::ok()
        }),
        Request::Capture {
            target: t,
            path,
            format,
        } => target(engine, &t).and_then(|t| {
            let format = format.unwrap_or_else(|| Format::for_path(&path));
            let sink = Tap::file_sink(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            started(engine.add_tap(t, format, sink))
        }),
        Request::CaptureStop { id } => match engine.remove_tap(id) {
            Some(_) => Ok(Response::ok()),
            None => Err(format!("no capture {id}")),
        },
        Request::CaptureStream { target: t, format } => {
            let r = target(engine, &t).and_then(|t| {
                started(engine.add_tap(t, format.unwrap_or_default(), Tap::stream_sink()))
            });
            let id = r.as_ref().ok().and_then(|r| r.id);
            return (r.unwrap_or_else(Response::err), id, Action::None);
        }
        Request::Shutdown => return (Response::ok(), None, Action::Shutdown),
    };
    (r.unwrap_or_else(Response::err), None, Action::None)
}

fn started(r: io::Result<u64>) -> Result<Response, String> {
    r.map(|id| Response {
        id: Some(id),
        ..Response::ok()
    })
    .map_err(|e| e.to_string())
}

fn set_impair<W: Wire>(
    engine: &mut Engine<W>,
    network: &str,
    to: Option<&str>,
    impair: Option<&super::impair::ImpairConfig>,
) -> Result<Response, String> {
    let n = engine
        .net_index(network)
        .ok_or_else(|| format!("no network named `{network}`"))?;
    let q = match to {
        None => None,
        Some(p) => Some(
            engine
                .port_index(p)
                .filter(|&q| engine.ports[q].net == n)
                .ok_or_else(|| format!("network `{network}` has no port `{p}`"))?,
        ),
    };
    let i = impair
        .map(|c| c.parse())
        .transpose()
        .map_err(|e| e.to_string())?;
    engine.set_impair(n, q, i);
    Ok(Response::ok())
}
