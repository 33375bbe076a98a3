//! Where a running machine's control socket lives, and how `vmrun ps` finds it.
//!
//! Every running machine registers under the per-user runtime directory
//! `$XDG_RUNTIME_DIR/vmrun/` (or `/tmp/vmrun-<uid>/` without one), in a directory
//! named after it (characters other than letters, digits, `-`, `_` and `.` become
//! `_`). Both directories are 0700 and must belong to this user. In it:
//!
//! - `lock`: held with `flock` for the whole run. A second machine with the same name
//!   fails to take it and is refused with the first one's pid; a lock left by a dead
//!   process is free again, so what it left behind is stale and replaced.
//! - `qmp.sock`: the QMP socket (0600), unless the run named its own (`--qmp PATH`).
//! - `state.json`: `{"name", "pid", "started" (Unix seconds), "socket"}`.
//!
//! A socket path the user chose is replaced only when it is a socket nobody answers
//! on; a live one, or a file that is not a socket, is refused.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::json::{self, Json};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot create the directory {}: {err}", path.display())]
    Dir { path: PathBuf, err: std::io::Error },
    #[error("{} is not a private directory of this user ({why}); remove it or set XDG_RUNTIME_DIR", path.display())]
    UnsafeDir { path: PathBuf, why: String },
    #[error("a machine named `{name}` is already running ({}); stop it or give this one another name", pid.map_or("pid unknown".to_string(), |p| format!("pid {p}")))]
    InUse { name: String, pid: Option<u32> },
    #[error("{}: another process is serving on this socket", path.display())]
    SocketInUse { path: PathBuf },
    #[error("{} exists and is not a socket; not replacing it", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot listen on {}: {err}", path.display())]
    Bind { path: PathBuf, err: std::io::Error },
    #[error("cannot write {}: {err}", path.display())]
    Write { path: PathBuf, err: std::io::Error },
}

/// The per-user runtime directory (not created).
pub fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("vmrun"),
        None => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("vmrun-{uid}"))
        }
    }
}

/// The directory name for machine `name`.
pub fn dir_name(name: &str) -> String {
    let s: String = (name.chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".repeat(s.len().max(1)),
        _ => s,
    }
}

/// Creates `path` (0700) if missing and checks that it is ours and private.
fn private_dir(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(err) => {
            return Err(RuntimeError::Dir {
                path: path.into(),
                err,
            })
        }
    }
    let unsafe_dir = |why: &str| RuntimeError::UnsafeDir {
        path: path.into(),
        why: why.into(),
    };
    let meta = std::fs::symlink_metadata(path).map_err(|err| RuntimeError::Dir {
        path: path.into(),
        err,
    })?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory"));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir("owned by another user"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_dir("others may use it"));
    }
    Ok(())
}

/// Takes an exclusive `flock` on `file` without waiting.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a file descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn open_lock(dir: &Path) -> Result<File, RuntimeError> {
    let path = dir.join("lock");
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|err| RuntimeError::Write { path, err })
}

/// What `state.json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub name: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    pub socket: PathBuf,
}

impl State {
    fn to_json(&self) -> Json {
        Json::object([
            ("name", Json::from(self.name.as_str())),
            ("pid", Json::from(self.pid)),
            ("started", Json::from(self.started)),
            ("socket", Json::from(self.socket.display().to_string())),
        ])
    }

    fn from_json(v: &Json) -> Option<State> {
        Some(State {
            name: v.get("name")?.as_str()?.to_string(),
            pid: u32::try_from(v.get("pid")?.as_i64()?).ok()?,
            started: u64::try_from(v.get("started")?.as_i64()?).ok()?,
            socket: PathBuf::from(v.get("socket")?.as_str()?),
        })
    }

    /// Reads the state file of the machine directory `dir`.
    pub fn read(dir: &Path) -> Option<State> {
        let text = std::fs::read(dir.join("state.json")).ok()?;
        State::from_json(&json::parse(&text).ok()?)
    }
}

/// Whether something accepts connections on the socket at `path`.
fn answers(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Makes room for a socket at `path`: nothing there, or a dead socket (removed).
fn clear_socket(path: &Path) -> Result<(), RuntimeError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(RuntimeError::NotASocket { path: path.into() });
    }
    if answers(path) {
        return Err(RuntimeError::SocketInUse { path: path.into() });
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn bind(path: &Path) -> Result<UnixListener, RuntimeError> {
    let l = UnixListener::bind(path).map_err(|err| RuntimeError::Bind {
        path: path.into(),
        err,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|err| {
        RuntimeError::Bind {
            path: path.into(),
            err,
        }
    })?;
    Ok(l)
}

fn write_state(dir: &Path, state: &State) -> Result<(), RuntimeError> {
    let path = dir.join("state.json");
    let tmp = dir.join("state.json.tmp");
    let mut text = state.to_json().to_qmp();
    text.push('\n');
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|err| RuntimeError::Write { path, err })
}

/// A machine's registration, held for its run: the lock, the socket, the state file.
/// Dropping it removes the socket and the state file.
#[derive(Debug)]
pub struct Registration {
    dir: PathBuf,
    socket: PathBuf,
    /// Held (locked) until drop.
    _lock: File,
}

impl Registration {
    /// Registers machine `name` under [`base_dir`] and listens on its socket:
    /// `qmp` when given, else `<dir>/qmp.sock`.
    pub fn register(name: &str, qmp: Option<&Path>) -> Result<(Self, UnixListener), RuntimeError> {
        Self::register_in(&base_dir(), name, qmp)
    }

    /// [`Registration::register`] under another base directory (tests).
    pub fn register_in(
        base: &Path,
        name: &str,
        qmp: Option<&Path>,
    ) -> Result<(Self, UnixListener), RuntimeError> {
        private_dir(base)?;
        let dir = base.join(dir_name(name));
        private_dir(&dir)?;
        let lock = open_lock(&dir)?;
        if !try_lock(&lock) {
            return Err(RuntimeError::InUse {
                name: name.into(),
                pid: State::read(&dir).map(|s| s.pid),
            });
        }
        let socket = match qmp {
            Some(p) => p.to_path_buf(),
            None => dir.join("qmp.sock"),
        };
        // We hold the lock: whatever the default socket is, its owner is gone.
        if qmp.is_none() {
            let _ = std::fs::remove_file(&socket);
        }
        clear_socket(&socket)?;
        let listener = bind(&socket)?;
        let reg = Registration {
            dir,
            socket,
            _lock: lock,
        };
        let state = State {
            name: name.into(),
            pid: std::process::id(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            socket: reg.socket.clone(),
        };
        write_state(&reg.dir, &state)?;
        Ok((reg, listener))
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(self.dir.join("state.json"));
    }
}

/// The running machines registered under `base`, by name. Registrations whose
/// process is gone are cleaned up on the way.
pub fn running_in(base: &Path) -> Vec<State> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(lock) = OpenOptions::new().read(true).open(dir.join("lock")) else {
            continue;
        };
        if try_lock(&lock) {
            // Nobody holds it: what is left is stale.
            let _ = std::fs::remove_file(dir.join("qmp.sock"));
            let _ = std::fs::remove_file(dir.join("state.json"));
            continue;
        }
        if let Some(s) = State::read(&dir) {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Finds the socket of `target`: a path to a socket (anything with a `/`), or the
/// name of a running machine.
pub fn resolve(target: &str) -> Option<PathBuf> {
    resolve_in(&base_dir(), target)
}

pub fn resolve_in(base: &Path, target: &str) -> Option<PathBuf> {
    if target.contains('/') {
        return Some(PathBuf::from(target));
    }
    let dir = base.join(dir_name(target));
    State::read(&dir)
        .map(|s| s.socket)
        .or_else(|| Some(dir.join("qmp.sock")).filter(|p| p.exists()))
        .or_else(|| Some(PathBuf::from(target)).filter(|p| p.exists()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str) -> PathBuf {
        let b = std::env::temp_dir().join(format!("vmrun-rt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&b);
        b
    }

    #[test]
    fn register_refuse_and_clean_up() {
        let b = base("reg");
        let (reg, _l) = Registration::register_in(&b, "my vm", None).unwrap();
        assert_eq!(reg.dir(), b.join("my_vm"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&b), 0o700);
        assert_eq!(mode(reg.dir()), 0o700);
        assert_eq!(mode(reg.socket()), 0o600);
        let err = Registration::register_in(&b, "my vm", None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        let running = running_in(&b);
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].name, "my vm");
        assert_eq!(resolve_in(&b, "my vm"), Some(reg.socket().to_path_buf()));
        let sock = reg.socket().to_path_buf();
        drop(reg);
        assert!(!sock.exists());
        assert!(running_in(&b).is_empty());
        // A stale socket left by a dead process is replaced.
        drop(UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        let (reg, _l) = Registration::register_in(&b, "my vm", None).unwrap();
        assert!(answers(reg.socket()));
        drop(reg);
        let _ = std::fs::remove_dir_all(&b);
    }

    #[test]
    fn explicit_sockets() {
        let b = base("explicit");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = b.join("plain");
        std::fs::write(&file, "x").unwrap();
        let e = Registration::register_in(&b, "a", Some(&file)).unwrap_err();
        assert!(matches!(e, RuntimeError::NotASocket { .. }), "{e}");
        let live = b.join("live.sock");
        let _keep = UnixListener::bind(&live).unwrap();
        let e = Registration::register_in(&b, "a", Some(&live)).unwrap_err();
        assert!(matches!(e, RuntimeError::SocketInUse { .. }), "{e}");
        let mine = b.join("mine.sock");
        let (reg, _l) = Registration::register_in(&b, "a", Some(&mine)).unwrap();
        assert_eq!(State::read(reg.dir()).unwrap().socket, mine);
        assert_eq!(resolve_in(&b, "a"), Some(mine.clone()));
        drop(reg);
        assert!(!mine.exists());
        let _ = std::fs::remove_dir_all(&b);
    }

    #[test]
    fn unsafe_dirs_are_refused() {
        let b = base("unsafe");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Registration::register_in(&b, "a", None).unwrap_err();
        assert!(e.to_string().contains("others may use it"), "{e}");
        let _ = std::fs::remove_dir_all(&b);
        assert_eq!(dir_name(".."), "__");
        assert_eq!(dir_name("a/b c"), "a_b_c");
    }
}
