//! A running lab's recorded state: `state.json` in the state directory says which
//! processes belong to the lab (the switch and every node, with pid, start time and
//! paths), so `down`, `status` and `console` work from it alone — after the lab file was
//! edited, or deleted.
//!
//! Layout of the state directory (created 0700, refused if another user owns it or it
//! is group/world-writable):
//!
//! ```text
//! .vmrun/<lab>/state.json          this record
//! .vmrun/<lab>/switch/             the switch's config, control socket, port sockets, log
//! .vmrun/<lab>/<node>/machine.toml the node's resolved machine, as the lab wired it
//! .vmrun/<lab>/<node>/qmp.sock     its QMP socket
//! .vmrun/<lab>/<node>/console.sock its COM1 (any number of viewers)
//! .vmrun/<lab>/<node>/console.log  everything COM1 printed
//! .vmrun/<lab>/<node>/vmrun.log    the vmrun process's own output
//! .vmrun/<lab>/<node>/*.qcow2      disk overlays
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The version of `state.json`'s layout.
pub const STATE_VERSION: u32 = 1;
pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot read the lab state {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the lab state {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the lab state {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Process {
    pub pid: u32,
    /// Start time (seconds since the epoch) and the kernel's start tick of the pid, so
    /// a pid reused by another process is not mistaken for ours.
    pub started: u64,
    pub start_ticks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub name: String,
    /// The generated machine file.
    pub machine: PathBuf,
    pub qmp: PathBuf,
    pub console: PathBuf,
    pub console_log: PathBuf,
    pub log: PathBuf,
    pub process: Option<Process>,
    /// (NIC id, the link or network it is plugged into).
    pub ports: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabState {
    pub version: u32,
    pub name: String,
    pub file: PathBuf,
    pub dir: PathBuf,
    pub switch: Option<Process>,
    pub switch_control: Option<PathBuf>,
    pub nodes: Vec<NodeRecord>,
}

impl LabState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    pub fn load(dir: &Path) -> Result<LabState, StateError> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|source| StateError::Read {
            path: path.clone(),
            source,
        })?;
        let s: LabState = serde_json::from_str(&text).map_err(|e| StateError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if s.version != STATE_VERSION {
            return Err(StateError::Invalid {
                path,
                reason: format!("version {} (this vmrun reads {STATE_VERSION})", s.version),
            });
        }
        Ok(s)
    }

    /// Writes the record atomically (a reader never sees half of it).
    pub fn save(&self) -> Result<(), StateError> {
        let path = Self::path(&self.dir);
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeRecord> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }
}

/// The state directory of the lab in `file`: from the file when it can be read, else
/// (the file was deleted or broken) the one recorded state beside it whose `file` is it.
pub fn find_dir(file: &Path, from_spec: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = from_spec {
        return Some(d.to_path_buf());
    }
    let abs = crate::config::reader::absolute(file);
    let root = abs.parent()?.join(".vmrun");
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|d| LabState::load(d).is_ok_and(|s| s.file == abs))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The kernel's start time of `pid` (field 22 of /proc/PID/stat), if it runs.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // A zombie has ended: it waits only for a parent (often init, which may take its
    // time) to reap it.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl Process {
    /// The process record for a child just started.
    pub fn of(pid: u32) -> Process {
        Process {
            pid,
            started: now(),
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether this process still runs (and is the same process, not a reused pid).
    pub fn alive(&self) -> bool {
        match start_ticks(self.pid) {
            Some(t) => self.start_ticks == 0 || t == self.start_ticks,
            None => false,
        }
    }

    /// Sends `sig` if the process is still ours.
    pub fn signal(&self, sig: i32) -> bool {
        if !self.alive() {
            return false;
        }
        // SAFETY: kill(2) with a pid we started and just checked; no memory involved.
        unsafe { libc::kill(self.pid as libc::pid_t, sig) == 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_pids_are_checked() {
        let dir = std::env::temp_dir().join(format!("vmrun-labstate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = Process::of(std::process::id());
        assert!(me.alive());
        let s = LabState {
            version: STATE_VERSION,
            name: "t".into(),
            file: dir.join("lab.toml"),
            dir: dir.clone(),
            switch: Some(me.clone()),
            switch_control: None,
            nodes: vec![],
        };
        s.save().unwrap();
        assert_eq!(LabState::load(&dir).unwrap(), s);
        let reused = Process {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!reused.alive(), "a reused pid is not ours");
        std::fs::write(LabState::path(&dir), "{\"version\": 99}").unwrap();
        assert!(LabState::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
