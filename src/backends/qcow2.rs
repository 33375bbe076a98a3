//! qcow2 images (versions 2 and 3), read only.
//!
//! The format, from its specification: a big-endian header in the first cluster, a
//! level-1 table of offsets to level-2 tables (one cluster each), and level-2 entries
//! that give each guest cluster's host offset. What is read:
//! - standard clusters (copied from the host offset), unallocated clusters and v3
//!   "reads as zero" clusters (zeros), compressed clusters (raw deflate, decoded with
//!   `miniz_oxide`, a cluster at a time);
//! - refused when the image is opened (so by `vmrun check`): encryption, a backing
//!   file, an external data file, a compression type other than deflate, extended L2
//!   entries, any unknown incompatible feature, sizes that do not fit the file.
//!
//! Every offset and length taken from the file is checked before use: a corrupt table
//! gives an `io::Error` (the guest sees VIRTIO_BLK_S_IOERR), never a panic or a huge
//! allocation. The last few L2 tables read are cached.

use std::io;
use std::sync::Mutex;

use thiserror::Error;

const MAGIC: u32 = 0x5146_49fb;
/// Bits 9..=55 of an L1 or standard L2 entry: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;
/// Incompatible feature bits: dirty, corrupt, external data file, compression type,
/// extended L2.
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
/// The largest L1 table we load (entries): 4 Mi entries = 32 MiB.
const MAX_L1_ENTRIES: u64 = 1 << 22;
/// L2 tables kept in memory.
const L2_CACHE: usize = 16;

/// Why an image cannot be used (found when it is opened, so at check time).
#[derive(Debug, Error)]
pub enum Qcow2Error {
    #[error("cannot read the image")]
    Io(#[from] io::Error),
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    Magic,
    #[error("qcow2 version {0} is not supported (only 2 and 3)")]
    Version(u32),
    #[error("cluster_bits {0} is out of range (9..=21)")]
    ClusterBits(u32),
    #[error("the image is encrypted (crypt_method {0}); vmrun reads only plain images")]
    Encrypted(u32),
    #[error("the image has a backing file; vmrun reads only standalone images (qemu-img convert -O qcow2 flattens it)")]
    Backing,
    #[error("the image uses an external data file; not supported")]
    DataFile,
    #[error("the image uses compression type {0}; only deflate (0) is supported")]
    CompressionType(u8),
    #[error("the image uses extended L2 entries (subclusters); not supported")]
    ExtendedL2,
    #[error("the image uses unknown incompatible features {0:#x}")]
    Incompatible(u64),
    #[error("the image is marked corrupt; repair it with qemu-img check -r all")]
    Corrupt,
    #[error("bad header: {0}")]
    Header(&'static str),
}

/// A random-access byte source: the image file, or memory in tests.
pub trait Storage: Send + Sync {
    /// Fills `buf` from `offset` (an error if the source ends first).
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Length in bytes.
    fn byte_len(&self) -> io::Result<u64>;
}

impl Storage for std::fs::File {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl Storage for Vec<u8> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| corrupt("offset past the end"))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt qcow2 image: {what}"),
    )
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The header fields a reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u32,
    pub l1_offset: u64,
}

impl Header {
    /// Parses and validates the first bytes of an image (at least 104 for v3, 72 for
    /// v2) against the file's length.
    pub fn parse(b: &[u8], file_len: u64) -> Result<Self, Qcow2Error> {
        if b.len() < 72 || be32(b, 0) != MAGIC {
            return Err(Qcow2Error::Magic);
        }
        let version = be32(b, 4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Version(version));
        }
        let cluster_bits = be32(b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::ClusterBits(cluster_bits));
        }
        let crypt = be32(b, 32);
        if crypt != 0 {
            return Err(Qcow2Error::Encrypted(crypt));
        }
        if be64(b, 8) != 0 {
            return Err(Qcow2Error::Backing);
        }
        if version == 3 {
            if b.len() < 104 {
                return Err(Qcow2Error::Header("v3 header shorter than 104 bytes"));
            }
            let header_len = be32(b, 100);
            if header_len < 104 || u64::from(header_len) > 1 << cluster_bits {
                return Err(Qcow2Error::Header("header_length out of range"));
            }
            let incompat = be64(b, 72);
            let known = INCOMPAT_DIRTY
                | INCOMPAT_CORRUPT
                | INCOMPAT_DATA_FILE
                | INCOMPAT_COMPRESSION
                | INCOMPAT_EXTENDED_L2;
            if incompat & !known != 0 {
                return Err(Qcow2Error::Incompatible(incompat & !known));
            }
            if incompat & INCOMPAT_CORRUPT != 0 {
                return Err(Qcow2Error::Corrupt);
            }
            if incompat & INCOMPAT_DATA_FILE != 0 {
                return Err(Qcow2Error::DataFile);
            }
            if incompat & INCOMPAT_EXTENDED_L2 != 0 {
                return Err(Qcow2Error::ExtendedL2);
            }
            if incompat & INCOMPAT_COMPRESSION != 0 {
                let ty = if header_len > 104 && b.len() > 104 {
                    b[104]
                } else {
                    0
                };
                if ty != 0 {
                    return Err(Qcow2Error::CompressionType(ty));
                }
            }
        }
        let size = be64(b, 24);
        let l1_size = be32(b, 36);
        let l1_offset = be64(b, 40);
        let cluster = 1u64 << cluster_bits;
        // One L1 entry covers an L2 table's worth of clusters.
        let per_l1 = cluster * (cluster / 8);
        if size > 1 << 56 {
            return Err(Qcow2Error::Header("virtual size is over 64 PiB"));
        }
        let needed = size.div_ceil(per_l1);
        if u64::from(l1_size) < needed {
            return Err(Qcow2Error::Header(
                "L1 table too small for the virtual size",
            ));
        }
        if u64::from(l1_size) > MAX_L1_ENTRIES {
            return Err(Qcow2Error::Header("L1 table over 32 MiB"));
        }
        if l1_size > 0 {
            if !l1_offset.is_multiple_of(cluster) || l1_offset == 0 {
                return Err(Qcow2Error::Header("L1 table offset not cluster aligned"));
            }
            match l1_offset.checked_add(u64::from(l1_size) * 8) {
                Some(end) if end <= file_len => {}
                _ => return Err(Qcow2Error::Header("L1 table past the end of the file")),
            }
        }
        Ok(Self {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_offset,
        })
    }
}

#[derive(Default)]
struct Cache {
    /// (host offset of the table, its entries), most recently used last.
    l2: Vec<(u64, Vec<u64>)>,
}

/// An open qcow2 image over some storage.
pub struct Qcow2<S> {
    store: S,
    file_len: u64,
    hdr: Header,
    l1: Vec<u64>,
    cache: Mutex<Cache>,
}

impl<S> std::fmt::Debug for Qcow2<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2").field("header", &self.hdr).finish()
    }
}

impl<S: Storage> Qcow2<S> {
    /// Reads and checks the header and loads the L1 table.
    pub fn open(store: S) -> Result<Self, Qcow2Error> {
        let file_len = store.byte_len()?;
        let mut head = vec![0u8; 112.min(file_len as usize)];
        store.read_exact_at(0, &mut head)?;
        let hdr = Header::parse(&head, file_len)?;
        let mut raw = vec![0u8; hdr.l1_size as usize * 8];
        store.read_exact_at(hdr.l1_offset, &mut raw)?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(Self {
            store,
            file_len,
            hdr,
            l1,
            cache: Mutex::new(Cache::default()),
        })
    }

    pub fn header(&self) -> &Header {
        &self.hdr
    }

    /// Virtual disk size in bytes.
    pub fn size(&self) -> u64 {
        self.hdr.size
    }

    fn cluster(&self) -> u64 {
        1 << self.hdr.cluster_bits
    }

    /// The host range `[off, off + len)` lies in the file.
    fn in_file(&self, off: u64, len: u64) -> io::Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= self.file_len => Ok(()),
            _ => Err(corrupt("offset past the end of the file")),
        }
    }

    /// The L2 entry of guest cluster `index` (0 when its L2 table is unallocated).
    fn l2_entry(&self, index: u64) -> io::Result<u64> {
        let per_table = self.cluster() / 8;
        let l1_index = usize::try_from(index / per_table).map_err(|_| corrupt("L1 index"))?;
        let l1e = *self
            .l1
            .get(l1_index)
            .ok_or_else(|| corrupt("L1 index past the table"))?;
        let table = l1e & OFFSET_MASK;
        if table == 0 {
            return Ok(0);
        }
        if !table.is_multiple_of(self.cluster()) {
            return Err(corrupt("L2 table offset not cluster aligned"));
        }
        let slot = (index % per_table) as usize;
        let mut cache = self.cache.lock().map_err(|_| corrupt("cache poisoned"))?;
        if let Some(pos) = cache.l2.iter().position(|(o, _)| *o == table) {
            let hit = cache.l2.remove(pos);
            let e = hit.1[slot];
            cache.l2.push(hit);
            return Ok(e);
        }
        self.in_file(table, self.cluster())?;
        let mut raw = vec![0u8; self.cluster() as usize];
        self.store.read_exact_at(table, &mut raw)?;
        let entries: Vec<u64> = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let e = entries[slot];
        if cache.l2.len() >= L2_CACHE {
            cache.l2.remove(0);
        }
        cache.l2.push((table, entries));
        Ok(e)
    }

    /// Fills `buf` (within one guest cluster, at `within` bytes into it) from guest
    /// cluster `index`.
    fn read_cluster(&self, index: u64, within: u64, buf: &mut [u8]) -> io::Result<()> {
        let e = self.l2_entry(index)?;
        if e & COMPRESSED != 0 {
            return self.read_compressed(e, within, buf);
        }
        let host = e & OFFSET_MASK;
        if host == 0 || (self.hdr.version == 3 && e & ZERO_FLAG != 0) {
            buf.fill(0);
            return Ok(());
        }
        if !host.is_multiple_of(self.cluster()) {
            return Err(corrupt("data cluster offset not cluster aligned"));
        }
        self.in_file(host + within, buf.len() as u64)?;
        self.store.read_exact_at(host + within, buf)
    }

    fn read_compressed(&self, e: u64, within: u64, buf: &mut [u8]) -> io::Result<()> {
        // Bits 0..x-1: host byte offset; x..=61: additional 512-byte sectors.
        let x = 62 - (self.hdr.cluster_bits - 8);
        let off = e & ((1u64 << x) - 1);
        let extra = (e & ((1u64 << 62) - 1)) >> x;
        let span = (extra + 1) * 512 - (off & 511);
        // The last compressed cluster may end before its last sector does.
        let avail = self.file_len.saturating_sub(off).min(span);
        if off == 0 || avail == 0 {
            return Err(corrupt("compressed cluster offset"));
        }
        let mut input = vec![0u8; avail as usize];
        self.store.read_exact_at(off, &mut input)?;
        let mut out = vec![0u8; self.cluster() as usize];
        let n = miniz_oxide::inflate::decompress_slice_iter_to_slice(
            &mut out,
            std::iter::once(&input[..]),
            false,
            true,
        )
        .map_err(|_| corrupt("compressed cluster does not inflate"))?;
        if n != out.len() {
            return Err(corrupt("compressed cluster inflates short"));
        }
        let start = within as usize;
        buf.copy_from_slice(&out[start..start + buf.len()]);
        Ok(())
    }

    /// Reads `buf.len()` guest bytes at `offset` (which must lie within the disk).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.hdr.size => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "access past the end of the disk",
                ))
            }
        }
        let cluster = self.cluster();
        let mut pos = offset;
        let mut done = 0;
        while done < buf.len() {
            let within = pos % cluster;
            let n = ((cluster - within) as usize).min(buf.len() - done);
            self.read_cluster(pos / cluster, within, &mut buf[done..done + n])?;
            done += n;
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "qcow2_tests.rs"]
mod tests;
