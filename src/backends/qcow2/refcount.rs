//! Reference counts of host clusters (writable images only): the refcount table,
//! a cache of refcount blocks, cluster allocation at the end of the file, new
//! refcount blocks and growth of the refcount table, and which clusters hold
//! metadata (so a corrupt L2 entry can never make a guest write land on a table).
//!
//! Ordering: an increment may reach the file at any time (an early increment only
//! leaks a cluster). A new refcount block is synced before the table entry that
//! points to it is written; a new refcount table is synced before the header points
//! to it, and the header is synced before the old table is freed. Decrements wait in
//! `pending_free` until the L2 entries that dropped the references are durable.

use std::collections::HashMap;
use std::io;

use super::cache::{Lru, Table};
use super::header::{Header, MAX_REFCOUNT_TABLE, OFF_REFCOUNT_TABLE};
use super::{corrupt, Qcow2Error, Storage, COPIED, OFFSET_MASK};

/// Bits 9..=63 of a refcount table entry.
const RT_MASK: u64 = !0x1ff;
/// The first host offset a cluster may not start at (L2 entries hold 56 bits).
const HOST_LIMIT: u64 = 1 << 56;

/// What a metadata cluster holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Header,
    L1,
    RefcountTable,
    RefcountBlock,
    L2,
}

pub struct Refcounts {
    cluster_bits: u32,
    order: u32,
    table: Vec<u64>,
    table_off: u64,
    blocks: Lru<Vec<u8>>,
    /// The next cluster the allocator tries.
    next_free: u64,
    /// Every metadata cluster, by host offset.
    meta: HashMap<u64, Meta>,
    /// Clusters whose references were dropped from L2 entries not yet durable: one
    /// decrement each once they are.
    pub pending_free: Vec<u64>,
}

/// Entry `i` of a refcount block of `1 << order`-bit entries.
pub(super) fn get_entry(b: &[u8], order: u32, i: usize) -> u64 {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let per = 8 / bits;
            u64::from(b[i / per] >> ((i % per) * bits)) & ((1 << bits) - 1)
        }
        3 => u64::from(b[i]),
        4 => u64::from(u16::from_be_bytes([b[2 * i], b[2 * i + 1]])),
        5 => u64::from(super::header::be32(b, 4 * i)),
        _ => super::header::be64(b, 8 * i),
    }
}

pub(super) fn set_entry(b: &mut [u8], order: u32, i: usize, v: u64) {
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let per = 8 / bits;
            let shift = (i % per) * bits;
            let mask = (((1u16 << bits) - 1) as u8) << shift;
            b[i / per] = (b[i / per] & !mask) | (((v as u8) << shift) & mask);
        }
        3 => b[i] = v as u8,
        4 => b[2 * i..2 * i + 2].copy_from_slice(&(v as u16).to_be_bytes()),
        5 => b[4 * i..4 * i + 4].copy_from_slice(&(v as u32).to_be_bytes()),
        _ => b[8 * i..8 * i + 8].copy_from_slice(&v.to_be_bytes()),
    }
}

fn to_bytes(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_be_bytes()).collect()
}

impl Refcounts {
    /// Loads the refcount table and maps every metadata cluster; refuses tables that
    /// point outside the file or overlap.
    pub fn load<S: Storage>(
        store: &S,
        hdr: &Header,
        l1: &[u64],
        file_len: u64,
    ) -> Result<Self, Qcow2Error> {
        let cl = 1u64 << hdr.cluster_bits;
        hdr.check_writable(file_len)?;
        let len = u64::from(hdr.refcount_table_clusters) * cl;
        let mut raw = vec![0u8; len as usize];
        let readable = file_len.saturating_sub(hdr.refcount_table_offset).min(len);
        store.read_exact_at(hdr.refcount_table_offset, &mut raw[..readable as usize])?;
        let table: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| super::header::be64(c, 0))
            .collect();
        let mut rc = Self {
            cluster_bits: hdr.cluster_bits,
            order: hdr.refcount_order,
            table,
            table_off: hdr.refcount_table_offset,
            blocks: Lru::new(((1 << 20) >> hdr.cluster_bits) as usize),
            next_free: 0,
            meta: HashMap::new(),
            pending_free: Vec::new(),
        };
        let end = file_len.next_multiple_of(cl);
        rc.claim_range(0, 1, Meta::Header)?;
        rc.claim_range(hdr.l1_offset, u64::from(hdr.l1_size) * 8, Meta::L1)?;
        rc.claim_range(rc.table_off, len, Meta::RefcountTable)?;
        for i in 0..rc.table.len() {
            let e = rc.table[i];
            if e == 0 {
                continue;
            }
            if e & !RT_MASK != 0 || !e.is_multiple_of(cl) || e >= end {
                return Err(Qcow2Error::Metadata("refcount block offset"));
            }
            rc.claim_range(e, 1, Meta::RefcountBlock)?;
        }
        for &e in l1 {
            let off = e & OFFSET_MASK;
            if off == 0 {
                continue;
            }
            if e & COPIED == 0 {
                return Err(Qcow2Error::Metadata(
                    "shared L2 table (L1 entry without COPIED)",
                ));
            }
            if !off.is_multiple_of(cl) || off >= end {
                return Err(Qcow2Error::Metadata("L2 table offset"));
            }
            rc.claim_range(off, 1, Meta::L2)?;
        }
        let mut metas: Vec<u64> = rc.meta.keys().copied().collect();
        metas.sort_unstable();
        for off in metas {
            if rc.get(store, off)? == 0 {
                return Err(Qcow2Error::Metadata("a metadata cluster has refcount 0"));
            }
        }
        rc.next_free = rc.meta.keys().map(|&o| o + cl).fold(end, u64::max);
        Ok(rc)
    }

    fn claim_range(&mut self, off: u64, len: u64, kind: Meta) -> Result<(), Qcow2Error> {
        let cl = 1u64 << self.cluster_bits;
        let mut c = off - off % cl;
        while c < off.saturating_add(len) {
            if self.meta.insert(c, kind).is_some() {
                return Err(Qcow2Error::Metadata("metadata tables overlap"));
            }
            c += cl;
        }
        Ok(())
    }

    fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Clusters one refcount block covers.
    fn per_block(&self) -> u64 {
        (self.cluster() * 8) >> self.order
    }

    /// What the cluster at `off` holds, if it is metadata.
    pub fn meta(&self, off: u64) -> Option<Meta> {
        self.meta.get(&(off - off % self.cluster())).copied()
    }

    /// Records a new L2 table.
    pub fn add_l2(&mut self, off: u64) {
        self.meta.insert(off, Meta::L2);
    }

    /// (table index, index in its block) of the cluster at `off`.
    fn locate(&self, off: u64) -> (u64, usize) {
        let idx = off >> self.cluster_bits;
        (idx / self.per_block(), (idx % self.per_block()) as usize)
    }

    /// The cache index of the refcount block at `boff`, read if needed.
    fn block<S: Storage>(&mut self, store: &S, boff: u64) -> io::Result<usize> {
        if let Some(i) = self.blocks.find(boff) {
            return Ok(i);
        }
        if self.blocks.dirty_count() >= self.blocks.cap() {
            self.write_dirty(store)?;
        }
        let mut data = vec![0u8; self.cluster() as usize];
        store.read_exact_at(boff, &mut data)?;
        Ok(self.blocks.insert(Table {
            off: boff,
            data,
            dirty: false,
            linked: true,
        }))
    }

    /// The refcount of the cluster at host offset `off`.
    pub fn get<S: Storage>(&mut self, store: &S, off: u64) -> io::Result<u64> {
        let (ti, bi) = self.locate(off);
        let boff = match self.table.get(ti as usize) {
            Some(&e) => e & RT_MASK,
            None => 0,
        };
        if boff == 0 {
            return Ok(0);
        }
        let i = self.block(store, boff)?;
        Ok(get_entry(&self.blocks.get(i).data, self.order, bi))
    }

    /// Sets the refcount of the cluster at `off`, whose block exists.
    fn set<S: Storage>(&mut self, store: &S, off: u64, v: u64) -> io::Result<()> {
        let (ti, bi) = self.locate(off);
        let boff = self.table.get(ti as usize).map_or(0, |e| e & RT_MASK);
        if boff == 0 {
            return Err(corrupt("refcount of a cluster without a refcount block"));
        }
        let i = self.block(store, boff)?;
        let t = self.blocks.get_mut(i);
        set_entry(&mut t.data, self.order, bi, v);
        t.dirty = true;
        Ok(())
    }

    /// Drops one reference to the cluster at `off`.
    pub fn decrement<S: Storage>(&mut self, store: &S, off: u64) -> io::Result<()> {
        match self.get(store, off)? {
            0 => Err(corrupt("refcount would drop below zero")),
            n => self.set(store, off, n - 1),
        }
    }

    /// Writes every changed refcount block (no sync: early increments only leak).
    pub fn write_dirty<S: Storage>(&mut self, store: &S) -> io::Result<()> {
        for t in self.blocks.iter_mut().filter(|t| t.dirty) {
            store.write_all_at(t.off, &t.data)?;
            t.dirty = false;
        }
        Ok(())
    }

    pub fn has_dirty(&self) -> bool {
        self.blocks.dirty_count() > 0
    }

    /// A free cluster at the end of the file, its refcount set to 1.
    pub fn alloc<S: Storage>(&mut self, store: &S) -> io::Result<u64> {
        loop {
            let c = self.next_free;
            if c >= HOST_LIMIT {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let (ti, _) = self.locate(c);
            let Some(&e) = self.table.get(ti as usize) else {
                self.grow(store, c)?;
                continue;
            };
            if e & RT_MASK == 0 {
                self.new_block(store, ti, c)?;
                continue;
            }
            self.next_free += self.cluster();
            if self.get(store, c)? == 0 && self.meta(c).is_none() {
                self.set(store, c, 1)?;
                return Ok(c);
            }
        }
    }

    /// A refcount block for table entry `ti` at cluster `c` (the first free cluster
    /// it covers), counting itself.
    fn new_block<S: Storage>(&mut self, store: &S, ti: u64, c: u64) -> io::Result<()> {
        let mut data = vec![0u8; self.cluster() as usize];
        set_entry(&mut data, self.order, self.locate(c).1, 1);
        store.write_all_at(c, &data)?;
        store.sync_data()?;
        store.write_all_at(self.table_off + ti * 8, &c.to_be_bytes())?;
        self.table[ti as usize] = c;
        self.meta.insert(c, Meta::RefcountBlock);
        self.blocks.insert(Table {
            off: c,
            data,
            dirty: false,
            linked: true,
        });
        self.next_free = c + self.cluster();
        Ok(())
    }

    /// (new refcount blocks, table clusters) for a new table placed from cluster `c`
    /// on, after the blocks, with twice the entries the region needs.
    fn grow_layout(&self, c: u64) -> io::Result<(u64, u64)> {
        let (cl, per) = (self.cluster(), self.per_block());
        let first = (c >> self.cluster_bits) / per;
        let (mut nb, mut t) = (1u64, 1u64);
        for _ in 0..16 {
            let last = ((c >> self.cluster_bits) + nb + t - 1) / per;
            let next = (last - first + 1, ((last + 1) * 2 * 8).div_ceil(cl));
            if next == (nb, t) {
                if t * cl > MAX_REFCOUNT_TABLE {
                    break;
                }
                return Ok((nb, t));
            }
            (nb, t) = next;
        }
        Err(io::Error::from_raw_os_error(libc::EFBIG))
    }

    /// Moves the refcount table to a bigger one at `c` (which lies past what the
    /// table covers), with new blocks for the clusters of the move itself.
    fn grow<S: Storage>(&mut self, store: &S, c: u64) -> io::Result<()> {
        let (cl, per) = (self.cluster(), self.per_block());
        let (nb, t) = self.grow_layout(c)?;
        let first = (c >> self.cluster_bits) / per;
        let mut blocks = vec![vec![0u8; cl as usize]; nb as usize];
        for k in 0..nb + t {
            let idx = (c >> self.cluster_bits) + k;
            let b = &mut blocks[(idx / per - first) as usize];
            set_entry(b, self.order, (idx % per) as usize, 1);
        }
        let mut table = self.table.clone();
        table.resize((t * cl / 8) as usize, 0);
        for k in 0..nb {
            table[(first + k) as usize] = c + k * cl;
        }
        for (k, b) in blocks.iter().enumerate() {
            store.write_all_at(c + k as u64 * cl, b)?;
        }
        let table_off = c + nb * cl;
        store.write_all_at(table_off, &to_bytes(&table))?;
        store.sync_data()?;
        let mut field = table_off.to_be_bytes().to_vec();
        field.extend_from_slice(&(t as u32).to_be_bytes());
        store.write_all_at(OFF_REFCOUNT_TABLE, &field)?;
        store.sync_data()?;
        let old = (self.table_off, (self.table.len() as u64 * 8).div_ceil(cl));
        self.table = table;
        self.table_off = table_off;
        for (k, data) in blocks.into_iter().enumerate() {
            let off = c + k as u64 * cl;
            self.meta.insert(off, Meta::RefcountBlock);
            self.blocks.insert(Table {
                off,
                data,
                dirty: false,
                linked: true,
            });
        }
        for k in 0..t {
            self.meta.insert(table_off + k * cl, Meta::RefcountTable);
        }
        self.next_free = table_off + t * cl;
        // The header no longer points at the old table: its clusters are free.
        for k in 0..old.1 {
            let off = old.0 + k * cl;
            self.meta.remove(&off);
            self.decrement(store, off)?;
        }
        Ok(())
    }

    /// Applies the pending decrements (their L2 entries are durable). A count
    /// already at zero (a corrupt image sharing a cluster it counted once) stays
    /// there.
    pub fn apply_frees<S: Storage>(&mut self, store: &S) -> io::Result<()> {
        while let Some(&off) = self.pending_free.last() {
            match self.get(store, off)? {
                0 => {}
                n => self.set(store, off, n - 1)?,
            }
            self.pending_free.pop();
        }
        Ok(())
    }

    /// Whether a guest cluster may be written in place at host offset `off`: not
    /// metadata and counted as used.
    pub fn owned<S: Storage>(&mut self, store: &S, off: u64) -> io::Result<bool> {
        Ok(self.meta(off).is_none() && self.get(store, off)? >= 1)
    }
}
