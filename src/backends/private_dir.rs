//! Directories that hold a lab's sockets, checked the way ssh checks its files.
//!
//! Whoever can create a socket in a lab's directory can join its networks (bind a port
//! that receives the flooded frames, or send frames as a node), so vmrun refuses a
//! directory that another user could have prepared:
//! - [`ensure_private_dir`] creates a missing directory with mode 0700 (its parent must
//!   exist). An existing one must be a real directory (not a symlink), owned by the
//!   current user, and not writable by group or others.
//! - Every ancestor of such a directory, and of any socket vmrun binds
//!   ([`check_ancestors`]), must be owned by the current user or root and not writable
//!   by group or others, unless it has the sticky bit (`/tmp`): otherwise someone could
//!   rename the directory away and put their own in its place.
//!
//! Sockets vmrun binds are made 0600 with [`restrict_socket`].

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PrivateDirError {
    #[error("cannot create the directory {path}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot inspect {path}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("{0} exists and is not a directory")]
    NotDir(PathBuf),
    #[error("{0} is a symbolic link: a lab directory must be a real directory")]
    Symlink(PathBuf),
    #[error("refusing {path}: it is owned by uid {owner}, not by you (uid {me}); another user may have created it to join the lab: remove it or choose another path")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("refusing {path}: it is writable by {who} (mode {mode:04o}); make it `chmod go-w` or choose another path")]
    Writable {
        path: PathBuf,
        who: &'static str,
        mode: u32,
    },
    #[error("cannot restrict the socket {path} to its owner")]
    Chmod { path: PathBuf, source: io::Error },
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn stat(path: &Path) -> Result<std::fs::Metadata, PrivateDirError> {
    std::fs::symlink_metadata(path).map_err(|source| PrivateDirError::Stat {
        path: path.into(),
        source,
    })
}

fn writable_by(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("its group"),
        (false, true) => Some("others"),
        (false, false) => None,
    }
}

/// Creates `dir` with mode 0700 if it is missing; refuses one that is not safe (see the
/// module documentation). Its ancestors are checked either way.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let dir = absolute(dir);
    if let Some(parent) = dir.parent() {
        check_dirs_from(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(PrivateDirError::Create { path: dir, source }),
    }
    let md = stat(&dir)?;
    if md.file_type().is_symlink() {
        return Err(PrivateDirError::Symlink(dir));
    }
    if !md.is_dir() {
        return Err(PrivateDirError::NotDir(dir));
    }
    let me = euid();
    if md.uid() != me {
        return Err(PrivateDirError::NotOwned {
            path: dir,
            owner: md.uid(),
            me,
        });
    }
    let mode = md.permissions().mode() & 0o7777;
    if let Some(who) = writable_by(mode) {
        return Err(PrivateDirError::Writable {
            path: dir,
            who,
            mode,
        });
    }
    Ok(())
}

/// Checks the directories above a socket path `path` (see the module documentation).
pub fn check_ancestors(path: &Path) -> Result<(), PrivateDirError> {
    match absolute(path).parent() {
        Some(parent) => check_dirs_from(parent),
        None => Ok(()),
    }
}

/// `dir` and each of its ancestors: owned by us or root, not writable by others unless
/// sticky. Symlinked components are followed (`/var/run` -> `/run`).
fn check_dirs_from(dir: &Path) -> Result<(), PrivateDirError> {
    let me = euid();
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() {
            continue;
        }
        let md = std::fs::metadata(d).map_err(|source| PrivateDirError::Stat {
            path: d.into(),
            source,
        })?;
        if !md.is_dir() {
            return Err(PrivateDirError::NotDir(d.into()));
        }
        if md.uid() != me && md.uid() != 0 {
            return Err(PrivateDirError::NotOwned {
                path: d.into(),
                owner: md.uid(),
                me,
            });
        }
        let mode = md.permissions().mode() & 0o7777;
        if mode & 0o1000 == 0 {
            if let Some(who) = writable_by(mode) {
                return Err(PrivateDirError::Writable {
                    path: d.into(),
                    who,
                    mode,
                });
            }
        }
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.into())
}

/// Makes the socket file at `path` readable and writable by its owner only.
pub fn restrict_socket(path: &Path) -> Result<(), PrivateDirError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        PrivateDirError::Chmod {
            path: path.into(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmrun-pd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_0700_and_accepts_it_again() {
        let d = base("new");
        ensure_private_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure_private_dir(&d).unwrap();
        std::fs::remove_dir(&d).unwrap();
    }

    #[test]
    fn refuses_writable_symlinked_and_files() {
        let d = base("w");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private_dir(&d).unwrap_err();
        assert!(matches!(e, PrivateDirError::Writable { .. }), "{e}");
        assert!(e.to_string().contains("group and others"), "{e}");
        // Below a group-writable (not sticky) parent: refused too.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = ensure_private_dir(&d.join("sub")).unwrap_err();
        assert!(matches!(e, PrivateDirError::Writable { .. }), "{e}");
        assert!(check_ancestors(&d.join("x.sock")).is_err());
        // Sticky like /tmp: fine.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        ensure_private_dir(&d.join("sub")).unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(d.join("sub"), &link).unwrap();
        assert!(matches!(
            ensure_private_dir(&link),
            Err(PrivateDirError::Symlink(_))
        ));
        let file = d.join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            ensure_private_dir(&file),
            Err(PrivateDirError::NotDir(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_another_users_directory() {
        if euid() != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let d = base("owned");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = ensure_private_dir(&d).unwrap_err();
        assert!(
            matches!(e, PrivateDirError::NotOwned { owner: 65534, .. }),
            "{e}"
        );
        std::fs::remove_dir(&d).unwrap();
    }
}
