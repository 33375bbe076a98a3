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
/// The v3 header's length: its fields, the compression type byte, padding to 8.
const HEADER_LEN_V3: usize = 112;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;

/// The shape of a new, empty image.
pub(crate) struct Blank<'a> {
    pub size: u64,
    pub cluster_bits: u32,
    pub version: u32,
    /// 4 for version 2.
    pub refcount_order: u32,
    /// (name, format).
    pub backing: Option<(&'a str, &'a str)>,
}

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
    let bytes = blank_image(&Blank {
        size,
        cluster_bits: CLUSTER_BITS,
        version: 3,
        refcount_order: 4,
        backing: Some((name, backing_format.name())),
    });
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

/// The whole image: header cluster, refcount table, refcount block, L1 table (its
/// clusters must fit one refcount block: true for 64 KiB clusters at any size).
pub(crate) fn blank_image(b: &Blank) -> Vec<u8> {
    let cl = 1u64 << b.cluster_bits;
    let l1_size = b.size.div_ceil(cl * (cl / 8)).max(1);
    let l1_clusters = (l1_size * 8).div_ceil(cl);
    let clusters = 3 + l1_clusters;
    assert!(clusters <= (cl * 8) >> b.refcount_order);
    let mut v = vec![0u8; (clusters * cl) as usize];
    let header_len = if b.version == 2 { 72 } else { HEADER_LEN_V3 };
    put32(&mut v, 0, super::header::MAGIC);
    put32(&mut v, 4, b.version);
    put32(&mut v, 20, b.cluster_bits);
    put64(&mut v, 24, b.size);
    put32(&mut v, 36, l1_size as u32);
    put64(&mut v, 40, 3 * cl);
    put64(&mut v, 48, cl);
    put32(&mut v, 56, 1);
    if b.version == 3 {
        put32(&mut v, 96, b.refcount_order);
        put32(&mut v, 100, header_len as u32);
    }
    if let Some((name, format)) = b.backing {
        // The backing format extension, the end marker, then the name.
        put32(&mut v, header_len, EXT_BACKING_FORMAT);
        put32(&mut v, header_len + 4, format.len() as u32);
        v[header_len + 8..header_len + 8 + format.len()].copy_from_slice(format.as_bytes());
        let name_at = header_len + 8 + format.len().next_multiple_of(8) + 8;
        put64(&mut v, 8, name_at as u64);
        put32(&mut v, 16, name.len() as u32);
        v[name_at..name_at + name.len()].copy_from_slice(name.as_bytes());
    }
    // Refcount table entry 0 -> the block at cluster 2, which counts every cluster.
    put64(&mut v, cl as usize, 2 * cl);
    let block = &mut v[2 * cl as usize..3 * cl as usize];
    for c in 0..clusters as usize {
        super::refcount::set_entry(block, b.refcount_order, c, 1);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::qcow2::{Header, Qcow2};

    #[test]
    fn layout_parses_and_opens_writable() {
        let v = blank_image(&Blank {
            size: 10 << 30,
            cluster_bits: CLUSTER_BITS,
            version: 3,
            refcount_order: 4,
            backing: Some(("/base/img.qcow2", "qcow2")),
        });
        let h = Header::parse(&v[..1 << CLUSTER_BITS], v.len() as u64).unwrap();
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
