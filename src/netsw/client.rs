//! The Rust client of the control socket, for the lab CLI:
//!
//! ```no_run
//! # fn main() -> Result<(), vmrun::netsw::client::ClientError> {
//! use std::time::Duration;
//! use vmrun::netsw::client::Client;
//! use vmrun::netsw::impair::ImpairConfig;
//! let mut c = Client::connect_wait("lab/.vmrun/switch.ctl".as_ref(), Duration::from_secs(5))?;
//! let st = c.status()?;
//! println!("{} frames in", st.port("r1:net0").map_or(0, |p| p.counters.rx_frames));
//! let delay = ImpairConfig { delay: Some("20ms".into()), ..Default::default() };
//! c.impair("r1-r2", None, Some(&delay))?;
//! c.set_link("r1:net0", false)?;
//! let id = c.capture_start("lan", "/tmp/lan.pcap".as_ref(), None)?;
//! c.capture_stop(id)?;
//! // `vmrun lab capture ... -w -`: copies until the writer fails (tcpdump quit).
//! Client::connect("lab/.vmrun/switch.ctl".as_ref())?
//!     .capture_stream("r1:net0", None, &mut std::io::stdout())?;
//! # Ok(()) }
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::capture::Format;
use super::impair::ImpairConfig;
use super::proto::{Request, Response, Status};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to the switch at {path}")]
    Connect {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("talking to the switch")]
    Io(#[from] io::Error),
    #[error("the switch sent something that is not an answer: {0}")]
    Protocol(String),
    #[error("the switch refused: {0}")]
    Refused(String),
}

pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.into(),
            source,
        })?;
        Ok(Self {
            reader: BufReader::new(s),
        })
    }

    /// Connects, retrying until `timeout` while the switch starts up.
    pub fn connect_wait(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match Self::connect(path) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Sends one request and reads its answer; a refusal is an error.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.reader.get_mut().write_all(&line)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(ClientError::Protocol("connection closed".into()));
        }
        let r: Response =
            serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if !r.ok {
            return Err(ClientError::Refused(r.error.unwrap_or_default()));
        }
        Ok(r)
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        self.request(&Request::Status)?
            .status
            .ok_or_else(|| ClientError::Protocol("no status in the answer".into()))
    }

    /// Sets (or with `None` clears) the impairment of `network`, or only of the
    /// frames it delivers to port `to`.
    pub fn impair(
        &mut self,
        network: &str,
        to: Option<&str>,
        impair: Option<&ImpairConfig>,
    ) -> Result<(), ClientError> {
        self.request(&Request::Impair {
            network: network.into(),
            to: to.map(Into::into),
            impair: impair.cloned(),
        })
        .map(drop)
    }

    /// Plugs (`up`) or pulls the cable of a port, or of every port of a network.
    pub fn set_link(&mut self, target: &str, up: bool) -> Result<(), ClientError> {
        self.request(&Request::Link {
            target: target.into(),
            up,
        })
        .map(drop)
    }

    /// Starts capturing a network or port into `path` (absolute, or relative to the
    /// switch's directory); returns the capture's id.
    pub fn capture_start(
        &mut self,
        target: &str,
        path: &Path,
        format: Option<Format>,
    ) -> Result<u64, ClientError> {
        let r = self.request(&Request::Capture {
            target: target.into(),
            path: path.into(),
            format,
        })?;
        r.id.ok_or_else(|| ClientError::Protocol("no capture id".into()))
    }

    pub fn capture_stop(&mut self, id: u64) -> Result<(), ClientError> {
        self.request(&Request::CaptureStop { id }).map(drop)
    }

    /// Streams a live capture into `out` until the switch goes away or writing fails
    /// (the reader of a pipe quit); returns the bytes copied.
    pub fn capture_stream(
        mut self,
        target: &str,
        format: Option<Format>,
        out: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        self.request(&Request::CaptureStream {
            target: target.into(),
            format,
        })?;
        let mut n = 0u64;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(n);
            }
            let len = buf.len();
            if out.write_all(buf).and_then(|_| out.flush()).is_err() {
                return Ok(n);
            }
            self.reader.consume(len);
            n += len as u64;
        }
    }

    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.request(&Request::Shutdown).map(drop)
    }
}
