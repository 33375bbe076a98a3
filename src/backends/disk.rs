//! Disk images on the host: raw files and qcow2 images (see [`super::qcow2`]), opened
//! read-only or read-write, with an advisory lock so that two VMs cannot write one
//! image (shared `flock` for read-only users and for every backing file of a qcow2
//! image, exclusive for a writer; a lock lives as long as its open file).
//!
//! I/O is synchronous positioned reads and writes on the calling thread (the vCPU
//! thread that kicked the queue). `flush` makes every write so far durable (`fsync`
//! for raw, the ordered metadata writes of [`super::qcow2`]), so whatever the guest
//! flushed survives the VMM being killed.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::qcow2::{chain, Qcow2, Qcow2Error};

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;

/// An image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }

    /// "raw" or "qcow2".
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "raw" => Some(Format::Raw),
            "qcow2" => Some(Format::Qcow2),
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum DiskError {
    #[error("cannot open disk image {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "disk image {} is in use by another process ({what}); is another VM running with it?",
        path.display()
    )]
    Locked { path: PathBuf, what: &'static str },
    #[error("cannot lock disk image {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("disk image {}: format `{format}` is not supported (raw or qcow2)", path.display())]
    Format { path: PathBuf, format: String },
    #[error("disk image {} is not a usable qcow2 image", path.display())]
    Qcow2 {
        path: PathBuf,
        #[source]
        source: Qcow2Error,
    },
    #[error("backing file of {}", image.display())]
    Backing {
        image: PathBuf,
        #[source]
        source: Box<DiskError>,
    },
    #[error("backing chain loop: {} is already in the chain", path.display())]
    Loop { path: PathBuf },
    #[error("backing chain deeper than {} images at {}", chain::MAX_DEPTH, path.display())]
    Depth { path: PathBuf },
    #[error("cannot create overlay {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the advisory lock on `file`: exclusive for a writer, else shared.
pub(crate) fn lock_file(file: &File, path: &Path, exclusive: bool) -> Result<(), DiskError> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        DiskError::Locked {
            path: path.into(),
            what: if exclusive {
                "opened by another user"
            } else {
                "opened for writing"
            },
        }
    } else {
        DiskError::Lock {
            path: path.into(),
            source: e,
        }
    })
}

fn format_of(path: &Path, format: &str) -> Result<Format, DiskError> {
    match format {
        "" => Ok(Format::Raw),
        f => Format::parse(f).ok_or_else(|| DiskError::Format {
            path: path.into(),
            format: f.into(),
        }),
    }
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Virtual size in bytes.
    pub size: u64,
    /// The backing files (opened read-only), nearest first.
    pub backing: Vec<PathBuf>,
}

/// Checks that `path` opens as `format` ("" is raw) the way [`DiskImage::open`]
/// would (a qcow2 image with its whole backing chain, and whatever writing needs
/// unless `readonly`), without locking or writing anything.
pub fn inspect(path: &Path, readonly: bool, format: &str) -> Result<Inspected, DiskError> {
    let fmt = format_of(path, format)?;
    let open_err = |source| DiskError::Open {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    Ok(match fmt {
        Format::Raw => Inspected {
            size: file.metadata().map_err(open_err)?.len(),
            backing: Vec::new(),
        },
        Format::Qcow2 => {
            let (q, backing) = chain::open_chain(path, file, !readonly, false)?;
            Inspected {
                size: q.size(),
                backing,
            }
        }
    })
}

#[derive(Debug)]
enum Backend {
    Raw(File),
    Qcow2(Box<Qcow2<File>>),
}

/// An open raw or qcow2 image.
#[derive(Debug)]
pub struct DiskImage {
    backend: Backend,
    path: PathBuf,
    size: u64,
    readonly: bool,
}

impl DiskImage {
    /// Opens `path` (read-only when `readonly`) as `format` ("" is raw) and takes
    /// the advisory locks.
    pub fn open(path: &Path, readonly: bool, format: &str) -> Result<Self, DiskError> {
        let fmt = format_of(path, format)?;
        let open_err = |source| DiskError::Open {
            path: path.into(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(open_err)?;
        lock_file(&file, path, !readonly)?;
        let (size, backend) = match fmt {
            Format::Raw => (file.metadata().map_err(open_err)?.len(), Backend::Raw(file)),
            Format::Qcow2 => {
                let q = chain::open(path, file, !readonly, true)?;
                (q.size(), Backend::Qcow2(Box::new(q)))
            }
        };
        Ok(Self {
            backend,
            path: path.into(),
            size,
            readonly,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes (the raw file's length when opened, a qcow2 image's virtual size).
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
        match &self.backend {
            Backend::Qcow2(q) => q.read_at(offset, buf),
            Backend::Raw(f) => f.read_exact_at(buf, offset),
        }
    }

    /// Writes `buf` at `offset` (fails on a read-only image).
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if self.readonly {
            return Err(std::io::Error::from_raw_os_error(libc::EROFS));
        }
        self.in_bounds(offset, buf.len())?;
        match &self.backend {
            Backend::Qcow2(q) => q.write_at(offset, buf),
            Backend::Raw(f) => f.write_all_at(buf, offset),
        }
    }

    /// Flushes, then copies the top file of the image (the overlay of a chain, the raw
    /// file) to `dest`: a snapshot freezing a disk's overlay.
    pub fn copy_top_to(&self, dest: &Path) -> std::io::Result<u64> {
        self.flush()?;
        let src = match &self.backend {
            Backend::Qcow2(q) => q.store(),
            Backend::Raw(f) => f,
        };
        let mut reader = src.try_clone()?;
        use std::io::Seek;
        reader.seek(std::io::SeekFrom::Start(0))?;
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest)?;
        let n = std::io::copy(&mut reader, &mut out)?;
        out.sync_all()?;
        Ok(n)
    }

    /// Everything written so far reaches stable storage.
    pub fn flush(&self) -> std::io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        match &self.backend {
            Backend::Qcow2(q) => q.flush(),
            Backend::Raw(f) => f.sync_all(),
        }
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
        drop(r);
        assert!(matches!(
            DiskImage::open(&p, false, "qcow2"),
            Err(DiskError::Qcow2 { .. })
        ));
        assert!(matches!(
            DiskImage::open(&p, true, "qcow2"),
            Err(DiskError::Qcow2 { .. })
        ));
        std::fs::remove_file(&p).unwrap();
    }
}
