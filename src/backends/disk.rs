//! Disk images on the host: raw files, opened read-only or read-write, with an
//! advisory lock so that two VMs cannot write one image (shared `flock` for
//! read-only users, exclusive for a writer; the lock lives as long as the open file).
//!
//! qcow2 images (see [`super::qcow2`]) are read only: [`DiskImage::open`] refuses
//! them writable.
//!
//! I/O is synchronous positioned reads and writes on the calling thread (the vCPU
//! thread that kicked the queue); `flush` is `fsync`, so whatever the guest flushed
//! survives the VMM being killed.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::qcow2::{Qcow2, Qcow2Error};

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;

#[derive(Debug, Error)]
pub enum DiskError {
    #[error("cannot open disk image {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "disk image {path} is in use by another process ({what}); is another VM running with it?"
    )]
    Locked { path: PathBuf, what: &'static str },
    #[error("cannot lock disk image {path}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("disk image {path}: format `{format}` is not supported (raw or qcow2)")]
    Format { path: PathBuf, format: String },
    #[error("disk image {path}: qcow2 images are read-only in vmrun: set readonly = true, or convert with qemu-img convert -O raw")]
    Qcow2Writable { path: PathBuf },
    #[error("disk image {path}")]
    Qcow2 { path: PathBuf, source: Qcow2Error },
}

/// An open raw or qcow2 image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    /// Set for a qcow2 image (its reader has a clone of `file`).
    qcow2: Option<Box<Qcow2<File>>>,
    path: PathBuf,
    size: u64,
    readonly: bool,
}

impl DiskImage {
    /// Opens `path` (read-only when `readonly`) and takes the advisory lock.
    pub fn open(path: &Path, readonly: bool, format: &str) -> Result<Self, DiskError> {
        let qcow2 = format == "qcow2";
        if qcow2 && !readonly {
            return Err(DiskError::Qcow2Writable { path: path.into() });
        }
        if !format.is_empty() && format != "raw" && !qcow2 {
            return Err(DiskError::Format {
                path: path.into(),
                format: format.into(),
            });
        }
        let open_err = |source| DiskError::Open {
            path: path.into(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(open_err)?;
        let op = if readonly {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                DiskError::Locked {
                    path: path.into(),
                    what: if readonly {
                        "opened for writing"
                    } else {
                        "opened by another user"
                    },
                }
            } else {
                DiskError::Lock {
                    path: path.into(),
                    source: e,
                }
            });
        }
        let (size, qcow2) = if qcow2 {
            let q = Qcow2::open(file.try_clone().map_err(open_err)?).map_err(|source| {
                DiskError::Qcow2 {
                    path: path.into(),
                    source,
                }
            })?;
            (q.size(), Some(Box::new(q)))
        } else {
            (file.metadata().map_err(open_err)?.len(), None)
        };
        Ok(Self {
            file,
            qcow2,
            path: path.into(),
            size,
            readonly,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes (the file's length when opened).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whole sectors.
    pub fn sectors(&self) -> u64 {
        self.size / SECTOR_SIZE
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    fn in_bounds(&self, offset: u64, len: usize) -> std::io::Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.sectors() * SECTOR_SIZE => Ok(()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "access past the end of the disk",
            )),
        }
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.in_bounds(offset, buf.len())?;
        match &self.qcow2 {
            Some(q) => q.read_at(offset, buf),
            None => self.file.read_exact_at(buf, offset),
        }
    }

    /// Writes `buf` at `offset` (fails on a read-only image).
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if self.readonly {
            return Err(std::io::Error::from_raw_os_error(libc::EROFS));
        }
        self.in_bounds(offset, buf.len())?;
        self.file.write_all_at(buf, offset)
    }

    /// Everything written so far reaches stable storage (`fsync`).
    pub fn flush(&self) -> std::io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        self.file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, len: usize) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vmrun-disk-{}-{name}", std::process::id()));
        std::fs::write(&p, vec![0u8; len]).unwrap();
        p
    }

    #[test]
    fn locks_writers_out() {
        let p = image("lock", 4096);
        let w = DiskImage::open(&p, false, "raw").unwrap();
        let e = DiskImage::open(&p, false, "raw").unwrap_err();
        assert!(matches!(e, DiskError::Locked { .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()));
        assert!(DiskImage::open(&p, true, "raw").is_err());
        drop(w);
        let r1 = DiskImage::open(&p, true, "raw").unwrap();
        let _r2 = DiskImage::open(&p, true, "raw").unwrap();
        assert!(DiskImage::open(&p, false, "raw").is_err());
        drop(r1);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn bounds_and_readonly() {
        let p = image("rw", 1000);
        let d = DiskImage::open(&p, false, "").unwrap();
        assert_eq!(d.sectors(), 1);
        d.write_at(0, &[7; 512]).unwrap();
        assert!(d.write_at(512, &[1]).is_err());
        assert!(d.write_at(u64::MAX, &[1]).is_err());
        let mut b = [0u8; 4];
        d.read_at(508, &mut b).unwrap();
        assert_eq!(b, [7; 4]);
        d.flush().unwrap();
        drop(d);
        let r = DiskImage::open(&p, true, "raw").unwrap();
        assert!(r.write_at(0, &[1]).is_err());
        assert!(matches!(
            DiskImage::open(&p, true, "vmdk"),
            Err(DiskError::Format { .. })
        ));
        assert!(matches!(
            DiskImage::open(&p, false, "qcow2"),
            Err(DiskError::Qcow2Writable { .. })
        ));
        assert!(matches!(
            DiskImage::open(&p, true, "qcow2"),
            Err(DiskError::Qcow2 { .. })
        ));
        std::fs::remove_file(&p).unwrap();
    }
}
