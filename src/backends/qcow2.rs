//! qcow2 images (versions 2 and 3), read and written, with backing files.
//!
//! The format, from its specification: a big-endian header in the first cluster, a
//! level-1 table of offsets to level-2 tables (one cluster each), L2 entries giving
//! each guest cluster's host offset, and reference counts of every host cluster in a
//! two-level refcount table. What is supported:
//! - reads of standard clusters, unallocated clusters (from the backing file, zeros
//!   past its end or without one), v3 "reads as zero" clusters (zeros, never the
//!   backing file), compressed clusters (raw deflate via `miniz_oxide`);
//! - writes: a standard cluster whose refcount is one (COPIED) is written in place;
//!   any other (unallocated, zero, compressed, shared) gets a new cluster at the end
//!   of the file holding the whole cluster (the old contents, from the backing file,
//!   zeros or the inflated data, with the new bytes over them); new L2 tables, new
//!   refcount blocks and a bigger refcount table are allocated the same way;
//! - a backing chain ([`chain`]): raw or qcow2 backing files, opened read-only;
//! - [`create_overlay`]: a fresh v3 image over a backing file.
//!
//! Refused when an image is opened (so by `vmrun check`): encryption, an external
//! data file, a compression type other than deflate, extended L2 entries, unknown
//! incompatible features, sizes that do not fit the file; for writing also internal
//! snapshots, persistent dirty bitmaps, a set dirty bit (lazy refcounts left
//! inconsistent), and metadata that points outside the file, overlaps, is shared or
//! is not counted.
//!
//! Refcounts are always kept consistent (QEMU's behaviour without lazy_refcounts,
//! whatever the image's lazy_refcounts bit says): vmrun never sets the dirty bit.
//! Persistent dirty bitmaps are not updated, so an image with them is refused for
//! writing; other (unknown) autoclear feature bits are cleared before the first
//! write, as the specification asks of a writer that does not know them.
//!
//! Crash safety (see [`flush`]): guest data goes straight to the file; metadata
//! changes stay in memory until a guest flush (or an L2 cache full of changes, or the
//! image being closed), which writes them in dependency order with `fdatasync`
//! barriers: data and refcount increments, then the L2 and L1 entries that point at
//! them, then the decrements of clusters those entries stopped using. A flush leaves
//! an image `qemu-img check` calls clean holding every write before it. A crash
//! (kill -9, power loss) between flushes loses the unflushed writes to newly
//! allocated clusters, keeps or loses each in-place write, and can leave clusters
//! counted but unused, which `qemu-img check` reports as leaks (repaired by
//! `qemu-img check -r leaks`), never as corruption.
//!
//! Every offset and length taken from the file is checked before use: a corrupt table
//! gives an `io::Error` (the guest sees VIRTIO_BLK_S_IOERR), never a panic, a huge
//! allocation, or a guest write over metadata.

use std::io;
use std::sync::Mutex;

use thiserror::Error;

mod cache;
pub mod chain;
mod create;
mod flush;
mod header;
mod refcount;
mod storage;
mod write;

pub use create::create_overlay;
pub use header::{BackingRef, Header};
#[cfg(test)]
pub use storage::Mem;
pub use storage::Storage;

use cache::{Lru, Table};
use header::be64;
use refcount::Refcounts;

/// Bits 9..=55 of an L1 or standard L2 entry: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// The entry's cluster (or L2 table) has refcount one and may be written in place.
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;

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
    #[error("the image has a backing file; open it by path so that the backing file is found")]
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
    #[error("the image's dirty bit is set (refcounts not yet repaired after lazy refcounts); repair it with qemu-img check -r all, or set readonly = true")]
    Dirty,
    #[error("the image has {0} internal snapshot(s); vmrun writes only images without snapshots (qemu-img snapshot -d), or set readonly = true")]
    Snapshots(u32),
    #[error("the image has persistent dirty bitmaps, which vmrun would not keep up to date; remove them (qemu-img bitmap --remove), or set readonly = true")]
    Bitmaps,
    #[error("inconsistent metadata ({0}); check it with qemu-img check")]
    Metadata(&'static str),
    #[error("bad header: {0}")]
    Header(&'static str),
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt qcow2 image: {what}"),
    )
}

fn past_end() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "access past the end of the disk",
    )
}

/// A disk that can be read: what a backing file is to its overlay.
pub trait ReadDisk: Send + Sync + std::fmt::Debug {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Reads `buf.len()` bytes at `offset` (within the size).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A raw image as a backing file.
pub struct RawDisk<S> {
    store: S,
    size: u64,
}

impl<S: Storage> RawDisk<S> {
    pub fn new(store: S) -> io::Result<Self> {
        let size = store.byte_len()?;
        Ok(Self { store, size })
    }
}

impl<S> std::fmt::Debug for RawDisk<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDisk").field("size", &self.size).finish()
    }
}

impl<S: Storage> ReadDisk for RawDisk<S> {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.size => self.store.read_exact_at(offset, buf),
            _ => Err(past_end()),
        }
    }
}

/// What an L2 entry maps a guest cluster to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Read from the backing file (or zeros).
    Unallocated,
    /// Reads as zeros; the host cluster (0: none) may be preallocated.
    Zero(u64),
    Data(u64),
    /// The whole L2 entry.
    Compressed(u64),
}

/// What changes as the image is used.
struct State {
    /// Current file length (grows with allocations).
    file_len: u64,
    l1: Vec<u64>,
    /// L1 entries changed in memory, not yet written.
    l1_dirty: std::collections::BTreeSet<usize>,
    l2: Lru<Vec<u64>>,
    /// Present when the image is writable.
    rc: Option<Refcounts>,
    /// The autoclear bits were cleared (before the first write).
    prepared: bool,
    /// Something was written since the last flush.
    wrote: bool,
}

/// An open qcow2 image over some storage.
pub struct Qcow2<S: Storage> {
    store: S,
    hdr: Header,
    backing: Option<Box<dyn ReadDisk>>,
    st: Mutex<State>,
}

impl<S: Storage> std::fmt::Debug for Qcow2<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2")
            .field("header", &self.hdr)
            .field("backing", &self.backing)
            .finish()
    }
}

impl<S: Storage> Qcow2<S> {
    /// Opens a standalone image read-only.
    pub fn open(store: S) -> Result<Self, Qcow2Error> {
        Self::open_with(store, false, None)
    }

    /// Opens an image, writable or not, over `backing` (which must be given when
    /// the header names a backing file; see [`chain`] for opening it by path).
    pub fn open_with(
        store: S,
        writable: bool,
        backing: Option<Box<dyn ReadDisk>>,
    ) -> Result<Self, Qcow2Error> {
        let file_len = store.byte_len()?;
        let hdr = Header::parse(&first_cluster(&store, file_len)?, file_len)?;
        if hdr.backing.is_some() && backing.is_none() {
            return Err(Qcow2Error::Backing);
        }
        let mut raw = vec![0u8; hdr.l1_size as usize * 8];
        store.read_exact_at(hdr.l1_offset, &mut raw)?;
        let l1: Vec<u64> = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let rc = match writable {
            true => Some(Refcounts::load(&store, &hdr, &l1, file_len)?),
            false => None,
        };
        // Tables in memory: about 4 MiB of L2 tables.
        let l2 = Lru::new(((4 << 20) >> hdr.cluster_bits) as usize);
        let st = State {
            file_len,
            l1,
            l1_dirty: Default::default(),
            l2,
            rc,
            prepared: false,
            wrote: false,
        };
        Ok(Self {
            store,
            hdr,
            backing,
            st: Mutex::new(st),
        })
    }

    pub fn header(&self) -> &Header {
        &self.hdr
    }

    /// Virtual disk size in bytes.
    pub fn size(&self) -> u64 {
        self.hdr.size
    }

    pub fn writable(&self) -> bool {
        self.lock().is_ok_and(|st| st.rc.is_some())
    }

    /// The image file itself (the top of a chain).
    pub fn store(&self) -> &S {
        &self.store
    }

    fn cluster(&self) -> u64 {
        1 << self.hdr.cluster_bits
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        self.st.lock().map_err(|_| corrupt("state lock poisoned"))
    }

    fn classify(&self, e: u64) -> Mapping {
        if e & COMPRESSED != 0 {
            return Mapping::Compressed(e);
        }
        let host = e & OFFSET_MASK;
        if self.hdr.version == 3 && e & ZERO_FLAG != 0 {
            Mapping::Zero(host)
        } else if host == 0 {
            Mapping::Unallocated
        } else {
            Mapping::Data(host)
        }
    }

    /// The cache index of the L2 table at `table`, read if needed.
    fn load_l2(&self, st: &mut State, table: u64) -> io::Result<usize> {
        if let Some(i) = st.l2.find(table) {
            return Ok(i);
        }
        let cl = self.cluster();
        if !table.is_multiple_of(cl) {
            return Err(corrupt("L2 table offset not cluster aligned"));
        }
        if let Some(rc) = &st.rc {
            if rc.meta(table) != Some(refcount::Meta::L2) {
                return Err(corrupt("L2 table overlaps other metadata"));
            }
        }
        in_file(st.file_len, table, cl)?;
        let mut raw = vec![0u8; cl as usize];
        self.store.read_exact_at(table, &mut raw)?;
        let entries = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(st.l2.insert(Table {
            off: table,
            data: entries,
            dirty: false,
            linked: true,
        }))
    }

    /// The L2 entry of guest cluster `index` (0 when its L2 table is unallocated).
    fn l2_entry(&self, st: &mut State, index: u64) -> io::Result<u64> {
        let per_table = self.cluster() / 8;
        let l1e = usize::try_from(index / per_table)
            .ok()
            .and_then(|i| st.l1.get(i).copied())
            .ok_or_else(|| corrupt("L1 index past the table"))?;
        let table = l1e & OFFSET_MASK;
        if table == 0 {
            return Ok(0);
        }
        let i = self.load_l2(st, table)?;
        Ok(st.l2.get(i).data[(index % per_table) as usize])
    }

    /// Fills `buf` (within one guest cluster, `within` bytes into it) with what the
    /// guest cluster `index` holds under L2 entry `e`.
    fn read_mapped(
        &self,
        st: &State,
        index: u64,
        e: u64,
        within: u64,
        buf: &mut [u8],
    ) -> io::Result<()> {
        match self.classify(e) {
            Mapping::Compressed(e) => self.read_compressed(st, e, within, buf),
            Mapping::Zero(_) => {
                buf.fill(0);
                Ok(())
            }
            Mapping::Unallocated => self.read_backing(index * self.cluster() + within, buf),
            Mapping::Data(host) => {
                if !host.is_multiple_of(self.cluster()) {
                    return Err(corrupt("data cluster offset not cluster aligned"));
                }
                in_file(st.file_len, host + within, buf.len() as u64)?;
                self.store.read_exact_at(host + within, buf)
            }
        }
    }

    /// The backing file's bytes at guest offset `off`, zeros past its end.
    fn read_backing(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let n = match &self.backing {
            Some(b) => {
                let n = b.size().saturating_sub(off).min(buf.len() as u64) as usize;
                if n > 0 {
                    b.read_at(off, &mut buf[..n])?;
                }
                n
            }
            None => 0,
        };
        buf[n..].fill(0);
        Ok(())
    }

    /// Where a compressed cluster's data lies: (host offset, bytes available).
    fn compressed_span(&self, e: u64) -> (u64, u64) {
        // Bits 0..x-1: host byte offset; x..=61: additional 512-byte sectors.
        let x = 62 - (self.hdr.cluster_bits - 8);
        let off = e & ((1u64 << x) - 1);
        let extra = (e & ((1u64 << 62) - 1)) >> x;
        (off, (extra + 1) * 512 - (off & 511))
    }

    fn read_compressed(&self, st: &State, e: u64, within: u64, buf: &mut [u8]) -> io::Result<()> {
        let (off, span) = self.compressed_span(e);
        // The last compressed cluster may end before its last sector does.
        let avail = st.file_len.saturating_sub(off).min(span);
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

    /// Calls `f(guest cluster, offset in it, range of buf)` for each cluster that
    /// `[offset, offset + len)` touches, after checking it lies within the disk.
    fn for_clusters(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(u64, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.hdr.size => {}
            _ => return Err(past_end()),
        }
        let cluster = self.cluster();
        let (mut pos, mut done) = (offset, 0);
        while done < len {
            let within = pos % cluster;
            let n = ((cluster - within) as usize).min(len - done);
            f(pos / cluster, within, done..done + n)?;
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    /// Reads `buf.len()` guest bytes at `offset` (which must lie within the disk).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.lock()?;
        self.for_clusters(offset, buf.len(), |index, within, r| {
            let e = self.l2_entry(&mut st, index)?;
            self.read_mapped(&st, index, e, within, &mut buf[r])
        })
    }
}

impl<S: Storage> ReadDisk for Qcow2<S> {
    fn size(&self) -> u64 {
        self.hdr.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        Qcow2::read_at(self, offset, buf)
    }
}

/// The host range `[off, off + len)` lies in a file of `file_len` bytes.
fn in_file(file_len: u64, off: u64, len: u64) -> io::Result<()> {
    match off.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(corrupt("offset past the end of the file")),
    }
}

/// The image's first cluster (or all of a shorter file): header, extensions and
/// backing file name.
pub(crate) fn first_cluster<S: Storage>(store: &S, file_len: u64) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; 112.min(file_len) as usize];
    store.read_exact_at(0, &mut head)?;
    if head.len() >= 24 {
        let bits = header::be32(&head, 20);
        if (9..=21).contains(&bits) {
            head = vec![0u8; (1u64 << bits).min(file_len) as usize];
            store.read_exact_at(0, &mut head)?;
        }
    }
    Ok(head)
}

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests_chain;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_read;
#[cfg(test)]
mod tests_write;
