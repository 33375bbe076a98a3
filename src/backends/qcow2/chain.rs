//! Opening a qcow2 image by path with its backing chain, as QEMU resolves it: a
//! relative backing file name is relative to the directory of the image naming it;
//! its format comes from the backing format header extension, else from probing
//! (the qcow2 magic, or raw). Backing files are opened read-only (never written),
//! with a shared lock when the chain is opened for use. A missing backing file, a
//! format other than raw or qcow2, a loop (compared by device and inode, so links
//! cannot hide one) or a chain deeper than [`MAX_DEPTH`] is an error.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::header::{BackingRef, Header, MAGIC};
use super::{first_cluster, Qcow2, RawDisk, ReadDisk, Storage};
use crate::backends::disk::{lock_file, DiskError, Format};

/// Backing files below the top image at most.
pub const MAX_DEPTH: usize = 16;

/// A file's identity: device and inode.
type FileId = (u64, u64);

fn file_id(file: &File, path: &Path) -> Result<FileId, DiskError> {
    let m = file.metadata().map_err(|source| DiskError::Open {
        path: path.into(),
        source,
    })?;
    Ok((m.dev(), m.ino()))
}

/// Where the backing file `name` of the image at `image` is: `name` itself when
/// absolute, else relative to the image's directory.
pub fn resolve(image: &Path, name: &str) -> PathBuf {
    let name = Path::new(name);
    if name.is_absolute() {
        return name.into();
    }
    match image.parent() {
        Some(dir) => dir.join(name),
        None => name.into(),
    }
}

/// Opens the qcow2 image at `path` (already open as `file`, and locked by the
/// caller when `lock`) and its backing chain. `writable` opens it for writing;
/// with `lock` false nothing is locked and nothing will be written (a check).
pub fn open(path: &Path, file: File, writable: bool, lock: bool) -> Result<Qcow2<File>, DiskError> {
    open_chain(path, file, writable, lock).map(|(q, _)| q)
}

/// [`open`], and the paths of the backing files, nearest first.
pub fn open_chain(
    path: &Path,
    file: File,
    writable: bool,
    lock: bool,
) -> Result<(Qcow2<File>, Vec<PathBuf>), DiskError> {
    let mut seen = vec![(file_id(&file, path)?, path.to_path_buf())];
    let q = open_qcow2(path, file, writable, lock, &mut seen)?;
    Ok((q, seen.into_iter().skip(1).map(|(_, p)| p).collect()))
}

fn open_qcow2(
    path: &Path,
    file: File,
    writable: bool,
    lock: bool,
    seen: &mut Vec<(FileId, PathBuf)>,
) -> Result<Qcow2<File>, DiskError> {
    let q_err = |source| DiskError::Qcow2 {
        path: path.into(),
        source,
    };
    let len = file.byte_len().map_err(|e| q_err(e.into()))?;
    let head = first_cluster(&file, len).map_err(|e| q_err(e.into()))?;
    let hdr = Header::parse(&head, len).map_err(q_err)?;
    let backing = match &hdr.backing {
        None => None,
        Some(b) => Some(
            open_backing(path, b, lock, seen).map_err(|e| DiskError::Backing {
                image: path.into(),
                source: Box::new(e),
            })?,
        ),
    };
    Qcow2::open_with(file, writable, backing).map_err(q_err)
}

/// Opens the backing file `b` of the image at `image`, read-only.
fn open_backing(
    image: &Path,
    b: &BackingRef,
    lock: bool,
    seen: &mut Vec<(FileId, PathBuf)>,
) -> Result<Box<dyn ReadDisk>, DiskError> {
    let path = resolve(image, &b.name);
    if seen.len() > MAX_DEPTH {
        return Err(DiskError::Depth { path });
    }
    let open_err = |source| DiskError::Open {
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(open_err)?;
    let id = file_id(&file, &path)?;
    if seen.iter().any(|(s, _)| *s == id) {
        return Err(DiskError::Loop { path });
    }
    seen.push((id, path.clone()));
    if lock {
        lock_file(&file, &path, false)?;
    }
    let format = match b.format.as_deref() {
        Some(name) => Format::parse(name).ok_or_else(|| DiskError::Format {
            path: path.clone(),
            format: name.into(),
        })?,
        None => probe(&file),
    };
    Ok(match format {
        Format::Raw => Box::new(RawDisk::new(file).map_err(open_err)?),
        Format::Qcow2 => Box::new(open_qcow2(&path, file, false, lock, seen)?),
    })
}

/// A backing file without a format extension: qcow2 if it has the magic.
fn probe(file: &File) -> Format {
    let mut magic = [0u8; 4];
    match file.read_exact_at(0, &mut magic) {
        Ok(()) if u32::from_be_bytes(magic) == MAGIC => Format::Qcow2,
        _ => Format::Raw,
    }
}
