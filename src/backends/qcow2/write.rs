//! Guest writes: in place into a cluster the image owns alone, otherwise into a new
//! cluster holding the old contents (backing file, zeros, inflated compressed data,
//! a shared cluster) with the new bytes over them. The L2 entry changes only in
//! memory; [`super::flush`] writes it after the data is durable.

use std::io;

use super::cache::Table;
use super::{corrupt, Mapping, Qcow2, State, Storage, COPIED, OFFSET_MASK};

impl<S: Storage> Qcow2<S> {
    /// Writes `buf` at guest `offset` (within the disk). Fails with EROFS on an image
    /// opened read-only.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.rc.is_none() {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.hdr.size)
        {
            return Err(super::past_end());
        }
        self.prepare(&mut st)?;
        // Room in the L2 cache for the tables this request touches.
        let tables = buf.len() as u64 / (self.cluster() * self.cluster() / 8) + 2;
        if st.l2.dirty_count() as u64 + tables >= st.l2.cap() as u64 {
            self.flush_locked(&mut st)?;
        }
        self.for_clusters(offset, buf.len(), |index, within, r| {
            self.write_cluster(&mut st, index, within, &buf[r])
        })
    }

    /// Before the first write: clear the autoclear feature bits (data they describe,
    /// such as dirty bitmaps, is not kept up to date here) and make that durable.
    fn prepare(&self, st: &mut State) -> io::Result<()> {
        if st.prepared {
            return Ok(());
        }
        if self.hdr.autoclear != 0 {
            self.store
                .write_all_at(super::header::OFF_AUTOCLEAR, &[0; 8])?;
            self.store.sync_data()?;
        }
        st.prepared = true;
        Ok(())
    }

    /// Writes `data` at host offset `off`, tracking the file's length.
    pub(super) fn put(&self, st: &mut State, off: u64, data: &[u8]) -> io::Result<()> {
        self.store.write_all_at(off, data)?;
        st.wrote = true;
        st.file_len = st.file_len.max(off + data.len() as u64);
        Ok(())
    }

    /// The cache index of guest cluster `index`'s L2 table, allocating the table if
    /// the L1 entry is empty, and the entry's slot in it.
    fn l2_for_write(&self, st: &mut State, index: u64) -> io::Result<(usize, usize)> {
        let per = self.cluster() / 8;
        let l1i = usize::try_from(index / per).map_err(|_| corrupt("L1 index"))?;
        let slot = (index % per) as usize;
        let l1e = *st
            .l1
            .get(l1i)
            .ok_or_else(|| corrupt("L1 index past the table"))?;
        let table = l1e & OFFSET_MASK;
        if table != 0 {
            if l1e & COPIED == 0 {
                return Err(corrupt("shared L2 table"));
            }
            return Ok((self.load_l2(st, table)?, slot));
        }
        let rc = st.rc.as_mut().ok_or_else(read_only)?;
        let t = rc.alloc(&self.store)?;
        rc.add_l2(t);
        st.l1[l1i] = t | COPIED;
        st.l1_dirty.insert(l1i);
        let i = st.l2.insert(Table {
            off: t,
            data: vec![0; per as usize],
            dirty: true,
            linked: false,
        });
        Ok((i, slot))
    }

    /// Writes `buf` into guest cluster `index` at `within`.
    fn write_cluster(&self, st: &mut State, index: u64, within: u64, buf: &[u8]) -> io::Result<()> {
        let cl = self.cluster();
        let (i, slot) = self.l2_for_write(st, index)?;
        let e = st.l2.get(i).data[slot];
        let mapping = self.classify(e);
        let rc = st.rc.as_mut().ok_or_else(read_only)?;
        match mapping {
            Mapping::Data(host) if e & COPIED != 0 => {
                if !host.is_multiple_of(cl) || !rc.owned(&self.store, host)? {
                    return Err(corrupt("data cluster overlaps metadata or is free"));
                }
                return self.put(st, host + within, buf);
            }
            Mapping::Zero(host) if host != 0 && e & COPIED != 0 => {
                if !host.is_multiple_of(cl) || !rc.owned(&self.store, host)? {
                    return Err(corrupt("zero cluster overlaps metadata or is free"));
                }
                let mut full = vec![0u8; cl as usize];
                full[within as usize..within as usize + buf.len()].copy_from_slice(buf);
                self.put(st, host, &full)?;
                return self.set_entry(st, i, slot, host | COPIED);
            }
            _ => {}
        }
        let dropped = self.dropped_clusters(st, mapping)?;
        let rc = st.rc.as_mut().ok_or_else(read_only)?;
        let host = rc.alloc(&self.store)?;
        if within == 0 && buf.len() as u64 == cl {
            self.put(st, host, buf)?;
        } else {
            let mut full = vec![0u8; cl as usize];
            self.read_mapped(st, index, e, 0, &mut full)?;
            full[within as usize..within as usize + buf.len()].copy_from_slice(buf);
            self.put(st, host, &full)?;
        }
        self.set_entry(st, i, slot, host | COPIED)?;
        if let Some(rc) = st.rc.as_mut() {
            rc.pending_free.extend(dropped);
        }
        Ok(())
    }

    fn set_entry(&self, st: &mut State, i: usize, slot: usize, e: u64) -> io::Result<()> {
        let t = st.l2.get_mut(i);
        t.data[slot] = e;
        t.dirty = true;
        Ok(())
    }

    /// The host clusters a guest cluster stops referencing when it moves to a new
    /// cluster (one decrement each, once the new entry is durable).
    fn dropped_clusters(&self, st: &mut State, m: Mapping) -> io::Result<Vec<u64>> {
        let cl = self.cluster();
        let out = match m {
            Mapping::Unallocated | Mapping::Zero(0) => Vec::new(),
            Mapping::Zero(host) | Mapping::Data(host) => {
                if !host.is_multiple_of(cl) {
                    return Err(corrupt("cluster offset not cluster aligned"));
                }
                vec![host]
            }
            Mapping::Compressed(e) => {
                let (off, span) = self.compressed_span(e);
                let start = off - off % 512;
                let end = off + span;
                (start / cl..end.div_ceil(cl)).map(|c| c * cl).collect()
            }
        };
        let rc = st.rc.as_mut().ok_or_else(read_only)?;
        for &c in &out {
            if !rc.owned(&self.store, c)? {
                return Err(corrupt("a guest cluster overlaps metadata or is free"));
            }
        }
        Ok(out)
    }
}

fn read_only() -> io::Error {
    io::Error::from_raw_os_error(libc::EROFS)
}
