//! The qcow2 header (first cluster): the fixed fields of versions 2 and 3, the header
//! extensions vmrun reads (backing file format), the backing file name, and which
//! features an image may use here.

use super::Qcow2Error;

pub const MAGIC: u32 = 0x5146_49fb;
/// Incompatible feature bits: dirty, corrupt, external data file, compression type,
/// extended L2.
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
/// Autoclear bit 0: the persistent dirty bitmaps are consistent.
const AUTOCLEAR_BITMAPS: u64 = 1 << 0;
/// The largest L1 table we load (entries): 4 Mi entries = 32 MiB.
const MAX_L1_ENTRIES: u64 = 1 << 22;
/// The largest refcount table we load, in bytes (QEMU's limit too).
pub const MAX_REFCOUNT_TABLE: u64 = 8 << 20;
/// Header extension types.
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Byte offsets of the fields vmrun rewrites.
pub const OFF_REFCOUNT_TABLE: u64 = 48;
pub const OFF_AUTOCLEAR: u64 = 88;
/// The longest backing file name the format allows.
const MAX_BACKING_NAME: u32 = 1023;

pub fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

pub fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The image's backing file, as the header names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingRef {
    /// The name as stored (a path, relative to the image's directory unless absolute).
    pub name: String,
    /// The backing file format extension ("raw", "qcow2", ...), when present.
    pub format: Option<String>,
}

/// The header fields vmrun uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u32,
    pub l1_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    /// Refcount width is `1 << refcount_order` bits (4 for version 2).
    pub refcount_order: u32,
    pub nb_snapshots: u32,
    pub incompatible: u64,
    pub autoclear: u64,
    pub backing: Option<BackingRef>,
}

/// The version 3 feature bits: refuses what vmrun cannot read.
fn check_features(b: &[u8], header_len: u32) -> Result<u64, Qcow2Error> {
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
    Ok(incompat)
}

impl Header {
    /// Parses and validates the start of an image (its first cluster, or all of a
    /// shorter file; at least 104 bytes for v3, 72 for v2) against the file's length.
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
        let (mut header_len, mut incompatible, mut autoclear, mut refcount_order) = (72, 0, 0, 4);
        if version == 3 {
            if b.len() < 104 {
                return Err(Qcow2Error::Header("v3 header shorter than 104 bytes"));
            }
            header_len = be32(b, 100);
            if header_len < 104 || u64::from(header_len) > 1 << cluster_bits {
                return Err(Qcow2Error::Header("header_length out of range"));
            }
            incompatible = check_features(b, header_len)?;
            autoclear = be64(b, 88);
            refcount_order = be32(b, 96);
            if refcount_order > 6 {
                return Err(Qcow2Error::Header("refcount_order over 6"));
            }
        }
        let mut hdr = Self {
            version,
            cluster_bits,
            size: be64(b, 24),
            l1_size: be32(b, 36),
            l1_offset: be64(b, 40),
            refcount_table_offset: be64(b, 48),
            refcount_table_clusters: be32(b, 56),
            refcount_order,
            nb_snapshots: be32(b, 60),
            incompatible,
            autoclear,
            backing: None,
        };
        hdr.check_l1(file_len)?;
        let format = backing_format(b, header_len as usize)?;
        hdr.backing = backing_name(b)?.map(|name| BackingRef { name, format });
        Ok(hdr)
    }

    fn check_l1(&self, file_len: u64) -> Result<(), Qcow2Error> {
        let cluster = 1u64 << self.cluster_bits;
        // One L1 entry covers an L2 table's worth of clusters.
        let per_l1 = cluster * (cluster / 8);
        if self.size > 1 << 56 {
            return Err(Qcow2Error::Header("virtual size is over 64 PiB"));
        }
        if u64::from(self.l1_size) < self.size.div_ceil(per_l1) {
            return Err(Qcow2Error::Header(
                "L1 table too small for the virtual size",
            ));
        }
        if u64::from(self.l1_size) > MAX_L1_ENTRIES {
            return Err(Qcow2Error::Header("L1 table over 32 MiB"));
        }
        if self.l1_size > 0 {
            if !self.l1_offset.is_multiple_of(cluster) || self.l1_offset == 0 {
                return Err(Qcow2Error::Header("L1 table offset not cluster aligned"));
            }
            match self.l1_offset.checked_add(u64::from(self.l1_size) * 8) {
                Some(end) if end <= file_len => {}
                _ => return Err(Qcow2Error::Header("L1 table past the end of the file")),
            }
        }
        Ok(())
    }

    /// Checks what writing needs beyond reading: a consistent, snapshot-free image
    /// whose refcount table lies in the file.
    pub fn check_writable(&self, file_len: u64) -> Result<(), Qcow2Error> {
        if self.incompatible & INCOMPAT_DIRTY != 0 {
            return Err(Qcow2Error::Dirty);
        }
        if self.nb_snapshots != 0 {
            return Err(Qcow2Error::Snapshots(self.nb_snapshots));
        }
        if self.autoclear & AUTOCLEAR_BITMAPS != 0 {
            return Err(Qcow2Error::Bitmaps);
        }
        let cluster = 1u64 << self.cluster_bits;
        let len = u64::from(self.refcount_table_clusters) * cluster;
        let off = self.refcount_table_offset;
        if len == 0 || len > MAX_REFCOUNT_TABLE {
            return Err(Qcow2Error::Header("refcount table size out of range"));
        }
        if off == 0 || !off.is_multiple_of(cluster) {
            return Err(Qcow2Error::Header(
                "refcount table offset not cluster aligned",
            ));
        }
        match off.checked_add(len) {
            Some(end) if end <= file_len.next_multiple_of(cluster) => Ok(()),
            _ => Err(Qcow2Error::Header(
                "refcount table past the end of the file",
            )),
        }
    }
}

/// The backing file format extension, if any (extensions follow the header).
fn backing_format(b: &[u8], header_len: usize) -> Result<Option<String>, Qcow2Error> {
    let mut at = header_len;
    let mut format = None;
    // The extension area ends at the end marker or the end of what was read (the
    // first cluster).
    while at + 8 <= b.len() {
        let (ty, len) = (be32(b, at), be32(b, at + 4) as usize);
        if ty == EXT_END {
            break;
        }
        let data = at + 8;
        let end = data
            .checked_add(len)
            .filter(|&e| e <= b.len())
            .ok_or(Qcow2Error::Header(
                "header extension past the first cluster",
            ))?;
        if ty == EXT_BACKING_FORMAT {
            let name = std::str::from_utf8(&b[data..end])
                .map_err(|_| Qcow2Error::Header("backing format is not UTF-8"))?;
            format = Some(name.to_string());
        }
        at = data + len.next_multiple_of(8);
    }
    Ok(format)
}

/// The backing file name (bytes 8..20 locate it; it lies in the first cluster).
fn backing_name(b: &[u8]) -> Result<Option<String>, Qcow2Error> {
    let off = be64(b, 8);
    if off == 0 {
        return Ok(None);
    }
    let len = be32(b, 16);
    if len == 0 || len > MAX_BACKING_NAME {
        return Err(Qcow2Error::Header("backing file name length out of range"));
    }
    let bytes = usize::try_from(off)
        .ok()
        .and_then(|o| b.get(o..o.checked_add(len as usize)?))
        .ok_or(Qcow2Error::Header(
            "backing file name past the first cluster",
        ))?;
    let name = std::str::from_utf8(bytes)
        .map_err(|_| Qcow2Error::Header("backing file name is not UTF-8"))?;
    Ok(Some(name.to_string()))
}
