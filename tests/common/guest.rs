//! A running vmrun whose COM1 is its stdio: lines read as they come, input written,
//! and waiting for a line that matches.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use vmrun::boot::probe::{parse_report, ProbeLine};

pub struct Guest {
    pub child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    /// Every line so far.
    pub lines: Vec<String>,
}

impl Guest {
    /// Starts `cmd` (a `vmrun run …`) with piped stdio.
    pub fn spawn(mut cmd: Command) -> Guest {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(l) = line else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Guest {
            child,
            stdin,
            rx,
            lines: Vec::new(),
        }
    }

    /// Waits for a line `pred` accepts, at most `timeout`; panics with what came.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.lines.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.child.kill();
                    let err = self
                        .child
                        .stderr
                        .take()
                        .map(|mut e| {
                            let mut s = String::new();
                            let _ = std::io::Read::read_to_string(&mut e, &mut s);
                            s
                        })
                        .unwrap_or_default();
                    panic!(
                        "no {what} within {timeout:?}; got:\n{}\nstderr: {err}",
                        self.lines.join("\n")
                    );
                }
            }
        }
    }

    /// Reads what is already there (waiting `settle` for more).
    pub fn drain(&mut self, settle: Duration) {
        while let Ok(l) = self.rx.recv_timeout(settle) {
            self.lines.push(l);
        }
    }

    pub fn send(&mut self, line: &str) {
        if let Some(s) = &mut self.stdin {
            let _ = s.write_all(format!("{line}\n").as_bytes());
            let _ = s.flush();
        }
    }

    /// Waits for the process to end (at most `timeout`), then reads the rest.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, Vec<String>, String) {
        drop(self.stdin.take());
        let end = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s.code();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.drain(Duration::from_millis(100));
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (status, self.lines, err)
    }
}

/// The probe lines among `lines` (others ignored).
pub fn probe_lines(lines: &[String]) -> Vec<ProbeLine> {
    let text: String = lines
        .iter()
        .filter(|l| l.starts_with("PROBE "))
        .map(|l| format!("{l}\n"))
        .collect();
    parse_report(&text).unwrap_or_default()
}

/// `vmrun ctl NAME ARGS…` with the same runtime directory; its stdout.
pub fn ctl(name: &str, args: &[&str]) -> String {
    let out = super::vmrun()
        .arg("ctl")
        .arg(name)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmrun ctl {name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

/// A raw image of `size` bytes at `path`, zero-filled.
pub fn raw_image(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}
