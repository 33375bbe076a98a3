//! The client side: `vmrun ctl TARGET COMMAND` and `vmrun ps`.
//!
//! TARGET is a machine name (looked up in the runtime directory) or a socket path.
//! [`Client`] is a small blocking QMP client: greeting, negotiation, `execute`,
//! events kept aside while a reply is awaited. Output is for people by default and
//! JSON with `json = true`; exit codes: 0 done, 1 error (no such machine, QMP error,
//! connection lost), 124 `powerdown --wait` timed out.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::json::{self, Json};
use super::runtime;

/// How long a reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The exit code of a `powerdown --wait` that timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;

#[derive(Debug, Error)]
pub enum CtlError {
    #[error("no running machine named `{0}` (see `vmrun ps`), and no socket at that path")]
    NotFound(String),
    #[error("cannot connect to {}: {err}", path.display())]
    Connect { path: PathBuf, err: std::io::Error },
    #[error("talking to the machine: {0}")]
    Io(std::io::Error),
    #[error("the machine closed the connection")]
    Closed,
    #[error("no reply from the machine within {0:?}")]
    Timeout(Duration),
    #[error("unexpected message from the machine: {0}")]
    Protocol(String),
    #[error("{class}: {desc}")]
    Qmp { class: String, desc: String },
    #[error("bad JSON argument: {0}")]
    BadJson(String),
}

/// A connected, negotiated QMP client.
pub struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
    events: VecDeque<Json>,
    greeting: Json,
}

impl Client {
    /// Connects to `path`, reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Client, CtlError> {
        let w = UnixStream::connect(path).map_err(|err| CtlError::Connect {
            path: path.into(),
            err,
        })?;
        let r = BufReader::new(w.try_clone().map_err(CtlError::Io)?);
        let mut c = Client {
            w,
            r,
            events: VecDeque::new(),
            greeting: Json::Null,
        };
        let g = c
            .read(REPLY_TIMEOUT)?
            .ok_or(CtlError::Timeout(REPLY_TIMEOUT))?;
        if g.get("QMP").is_none() {
            return Err(CtlError::Protocol(g.to_qmp()));
        }
        c.greeting = g;
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    pub fn greeting(&self) -> &Json {
        &self.greeting
    }

    /// One message, or None when `timeout` passes first.
    fn read(&mut self, timeout: Duration) -> Result<Option<Json>, CtlError> {
        let t = timeout.max(Duration::from_millis(1));
        self.r
            .get_ref()
            .set_read_timeout(Some(t))
            .map_err(CtlError::Io)?;
        let mut line = Vec::new();
        match self.r.read_until(b'\n', &mut line) {
            Ok(0) => Err(CtlError::Closed),
            Ok(_) => json::parse(&line).map(Some).map_err(|e| {
                CtlError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&line)))
            }),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(CtlError::Io(e)),
        }
    }

    /// Sends a request object as is and returns the reply (`return` or `error`).
    pub fn request(&mut self, req: &Json) -> Result<Json, CtlError> {
        let mut text = req.to_qmp();
        text.push('\n');
        self.w.write_all(text.as_bytes()).map_err(CtlError::Io)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(msg) = self.read(left)? else {
                return Err(CtlError::Timeout(REPLY_TIMEOUT));
            };
            if msg.get("event").is_some() {
                self.events.push_back(msg);
                continue;
            }
            return Ok(msg);
        }
    }

    /// Runs `command` and returns its `return` value.
    pub fn execute(&mut self, command: &str, args: Option<Json>) -> Result<Json, CtlError> {
        let mut req = vec![("execute".to_string(), Json::from(command))];
        if let Some(a) = args {
            req.push(("arguments".into(), a));
        }
        let reply = self.request(&Json::Object(req))?;
        result(reply)
    }

    /// The next event, waiting at most `timeout` (None: it passed).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Json>, CtlError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.read(left)? {
                Some(m) if m.get("event").is_some() => return Ok(Some(m)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }
}

/// A reply's `return`, or its error.
fn result(reply: Json) -> Result<Json, CtlError> {
    if let Some(r) = reply.get("return") {
        return Ok(r.clone());
    }
    if let Some(e) = reply.get("error") {
        let s = |k| e.get(k).and_then(Json::as_str).unwrap_or("").to_string();
        return Err(CtlError::Qmp {
            class: s("class"),
            desc: s("desc"),
        });
    }
    Err(CtlError::Protocol(reply.to_qmp()))
}

/// What `vmrun ctl` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    Status,
    Pause,
    Resume,
    /// Press the power button; with a timeout, wait that long for the machine to end.
    Powerdown(Option<Duration>),
    Reset,
    Screenshot(PathBuf),
    /// Save a snapshot to the directory; stay paused after it if asked.
    Snapshot(PathBuf, bool),
    Quit,
    Events,
    /// A command name or a whole request object, and the arguments as JSON.
    Qmp(String, Option<String>),
}

/// The socket of `target`.
pub fn find(target: &str) -> Result<PathBuf, CtlError> {
    runtime::resolve(target).ok_or_else(|| CtlError::NotFound(target.into()))
}

fn parse_arg(text: &str) -> Result<Json, CtlError> {
    json::parse(text.as_bytes()).map_err(|e| CtlError::BadJson(e.to_string()))
}

fn print(out: &mut dyn Write, text: &str) -> Result<(), CtlError> {
    writeln!(out, "{text}").map_err(CtlError::Io)
}

/// Runs `cmd` against `target`; returns the process exit code.
pub fn run(
    target: &str,
    cmd: &CtlCommand,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let mut c = Client::connect(&find(target)?)?;
    let simple = |c: &mut Client, name: &str, args: Option<Json>, out: &mut dyn Write| {
        let r = c.execute(name, args)?;
        if as_json {
            print(out, &r.to_qmp())?;
        }
        Ok::<u8, CtlError>(0)
    };
    match cmd {
        CtlCommand::Status => {
            let r = c.execute("query-status", None)?;
            let s = r.get("status").and_then(Json::as_str).unwrap_or("unknown");
            print(out, &if as_json { r.to_qmp() } else { s.to_string() })?;
            Ok(0)
        }
        CtlCommand::Pause => simple(&mut c, "stop", None, out),
        CtlCommand::Resume => simple(&mut c, "cont", None, out),
        CtlCommand::Reset => simple(&mut c, "system_reset", None, out),
        CtlCommand::Quit => simple(&mut c, "quit", None, out),
        CtlCommand::Screenshot(file) => {
            // The machine resolves relative paths from its own directory: send ours.
            let abs = std::path::absolute(file).map_err(CtlError::Io)?;
            let format = match abs.extension().and_then(|e| e.to_str()) {
                Some(e) if e.eq_ignore_ascii_case("ppm") => "ppm",
                _ => "png",
            };
            let args = Json::object([
                ("filename", Json::from(abs.display().to_string())),
                ("format", Json::from(format)),
            ]);
            simple(&mut c, "screendump", Some(args), out)
        }
        CtlCommand::Snapshot(dir, paused) => snapshot(&mut c, dir, *paused, as_json, out),
        CtlCommand::Powerdown(wait) => {
            simple(&mut c, "system_powerdown", None, out)?;
            match wait {
                Some(t) => wait_for_shutdown(&mut c, *t, as_json, out),
                None => Ok(0),
            }
        }
        CtlCommand::Events => loop {
            match c.next_event(Duration::from_secs(3600)) {
                Ok(Some(e)) => print(out, &e.to_qmp())?,
                Ok(None) => {}
                Err(CtlError::Closed) => return Ok(0),
                Err(e) => return Err(e),
            }
            out.flush().map_err(CtlError::Io)?;
        },
        CtlCommand::Qmp(what, args) => {
            let r = if what.trim_start().starts_with('{') {
                result(c.request(&parse_arg(what)?)?)?
            } else {
                let a = args.as_deref().map(parse_arg).transpose()?;
                c.execute(what, a)?
            };
            print(out, &if as_json { r.to_qmp() } else { r.to_pretty() })?;
            Ok(0)
        }
    }
}

/// `snapshot DIR`: `snapshot-save` with our directory made absolute (the machine
/// resolves relative paths from its own).
fn snapshot(
    c: &mut Client,
    dir: &Path,
    paused: bool,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let abs = std::path::absolute(dir).map_err(CtlError::Io)?;
    let args = Json::object([
        ("path", Json::from(abs.display().to_string())),
        ("paused", Json::Bool(paused)),
    ]);
    let r = c.execute("snapshot-save", Some(args))?;
    let text = if as_json {
        r.to_qmp()
    } else {
        let field = |k| r.get(k).map(|v| v.to_qmp()).unwrap_or_default();
        format!(
            "{} sha256={} memory_bytes={} paused_ms={}",
            abs.display(),
            r.get("sha256").and_then(Json::as_str).unwrap_or(""),
            field("memory-bytes"),
            field("paused-ms")
        )
    };
    print(out, &text)?;
    Ok(0)
}

/// Waits for `SHUTDOWN` (or the socket closing as the process exits).
fn wait_for_shutdown(
    c: &mut Client,
    timeout: Duration,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<u8, CtlError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left) {
            Ok(Some(e)) if e.get("event").and_then(Json::as_str) == Some("SHUTDOWN") => {
                if as_json {
                    print(out, &e.to_qmp())?;
                }
                return Ok(0);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                eprintln!("vmrun: the machine did not shut down within {timeout:?}");
                return Ok(EXIT_TIMEOUT);
            }
            Err(CtlError::Closed) => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

/// `5s`, `3m12s`, `1h02m`, `2d03h`.
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The `query-status` of the machine on `socket`, or "unknown".
fn status_of(socket: &Path) -> String {
    Client::connect(socket)
        .and_then(|mut c| c.execute("query-status", None))
        .ok()
        .and_then(|r| r.get("status").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// `vmrun ps`: the running machines of this user.
pub fn ps(as_json: bool, out: &mut dyn Write) -> Result<(), CtlError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<_> = runtime::running_in(&runtime::base_dir())
        .into_iter()
        .map(|s| {
            let status = status_of(&s.socket);
            (s.clone(), status, now.saturating_sub(s.started))
        })
        .collect();
    if as_json {
        let list = rows.iter().map(|(s, status, up)| {
            Json::object([
                ("name", Json::from(s.name.as_str())),
                ("pid", Json::from(s.pid)),
                ("status", Json::from(status.as_str())),
                ("started", Json::from(s.started)),
                ("uptime", Json::from(*up)),
                ("socket", Json::from(s.socket.display().to_string())),
            ])
        });
        return print(out, &Json::Array(list.collect()).to_qmp());
    }
    let w = rows
        .iter()
        .map(|(s, ..)| s.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    print(
        out,
        &format!(
            "{:w$}  {:>7}  {:8}  {:>7}  SOCKET",
            "NAME", "PID", "STATE", "UPTIME"
        ),
    )?;
    for (s, status, up) in &rows {
        let line = format!(
            "{:w$}  {:>7}  {:8}  {:>7}  {}",
            s.name,
            s.pid,
            status,
            format_uptime(*up),
            s.socket.display()
        );
        print(out, &line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(192), "3m12s");
        assert_eq!(format_uptime(3720), "1h02m");
        assert_eq!(format_uptime(2 * 86400 + 3 * 3600), "2d03h");
    }
}
