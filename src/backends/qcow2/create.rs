//! New overlays: a qcow2 v3 image (64 KiB clusters, 16-bit refcounts, QEMU's
//! layout: header, refcount table, refcount block, L1 table, one cluster each) whose
//! backing file is given, with nothing allocated, so every read goes to the backing
//! file until the guest writes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::chain::resolve;
use crate::backends::disk::{inspect, DiskError, Format};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Header length: the v3 fields, the compression type byte, padding to 8.
const HEADER_LEN: usize = 112;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;

/// Writes a fresh qcow2 v3 image at `path` (which must not exist) whose backing file
/// is `backing` in `backing_format`, stored as given (a relative name is, as for
/// QEMU, relative to the overlay's directory), and as big as the backing file's
/// virtual size, which it returns. The backing chain is opened (without locks) and
/// checked first; the overlay is synced before this returns.
pub fn create_overlay(
    path: &Path,
    backing: &Path,
    backing_format: Format,
) -> Result<u64, DiskError> {
    let create_err = |source| DiskError::Create {
        path: path.into(),
        source,
    };
    let name = backing
        .to_str()
        .filter(|n| !n.is_empty() && n.len() <= 1023);
    let Some(name) = name else {
        return Err(create_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the backing file name must be UTF-8, 1 to 1023 bytes",
        )));
    };
    let size = inspect(&resolve(path, name), true, backing_format.name())
        .map_err(|e| DiskError::Backing {
            image: path.into(),
            source: Box::new(e),
        })?
        .size;
    let bytes = overlay_bytes(size, name, backing_format.name());
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(create_err)?;
    let written = file.write_all(&bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(create_err(e));
    }
    Ok(size)
}

fn put32(v: &mut [u8], at: usize, x: u32) {
    v[at..at + 4].copy_from_slice(&x.to_be_bytes());
}

fn put64(v: &mut [u8], at: usize, x: u64) {
    v[at..at + 8].copy_from_slice(&x.to_be_bytes());
}

/// The whole image: header cluster, refcount table, refcount block, L1 table.
fn overlay_bytes(size: u64, backing: &str, format: &str) -> Vec<u8> {
    let l1_size = size.div_ceil(CLUSTER * (CLUSTER / 8)).max(1);
    let l1_clusters = (l1_size * 8).div_ceil(CLUSTER);
    let clusters = 3 + l1_clusters;
    let mut v = vec![0u8; (clusters * CLUSTER) as usize];
    // The backing format extension, the end marker, then the name.
    let ext_len = 8 + format.len().next_multiple_of(8);
    let name_at = HEADER_LEN + ext_len + 8;
    put32(&mut v, 0, super::header::MAGIC);
    put32(&mut v, 4, 3);
    put64(&mut v, 8, name_at as u64);
    put32(&mut v, 16, backing.len() as u32);
    put32(&mut v, 20, CLUSTER_BITS);
    put64(&mut v, 24, size);
    put32(&mut v, 36, l1_size as u32);
    put64(&mut v, 40, 3 * CLUSTER);
    put64(&mut v, 48, CLUSTER);
    put32(&mut v, 56, 1);
    put32(&mut v, 96, 4);
    put32(&mut v, 100, HEADER_LEN as u32);
    put32(&mut v, HEADER_LEN, EXT_BACKING_FORMAT);
    put32(&mut v, HEADER_LEN + 4, format.len() as u32);
    v[HEADER_LEN + 8..HEADER_LEN + 8 + format.len()].copy_from_slice(format.as_bytes());
    v[name_at..name_at + backing.len()].copy_from_slice(backing.as_bytes());
    // Refcount table entry 0 -> the block at cluster 2, which counts every cluster.
    put64(&mut v, CLUSTER as usize, 2 * CLUSTER);
    for c in 0..clusters as usize {
        v[2 * CLUSTER as usize + 2 * c + 1] = 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::qcow2::{Header, Qcow2};

    #[test]
    fn layout_parses_and_opens_writable() {
        let v = overlay_bytes(10 << 30, "/base/img.qcow2", "qcow2");
        let h = Header::parse(&v[..CLUSTER as usize], v.len() as u64).unwrap();
        assert_eq!(h.size, 10 << 30);
        assert_eq!(h.l1_size, 20);
        let b = h.backing.unwrap();
        assert_eq!(b.name, "/base/img.qcow2");
        assert_eq!(b.format.as_deref(), Some("qcow2"));
        // Without its backing file it can't be opened; with one it opens writable.
        assert!(Qcow2::open(v.clone()).is_err());
        let raw = crate::backends::qcow2::RawDisk::new(vec![0u8; 4096]).unwrap();
        Qcow2::open_with(v, true, Some(Box::new(raw))).unwrap();
    }
}
