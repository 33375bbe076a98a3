//! Writing the metadata kept in memory, in an order that survives a crash at any
//! point with at most leaked clusters:
//!
//! 1. refcount blocks (increments for every new cluster) and new L2 tables that no
//!    L1 entry on disk points to yet; then `fdatasync` — guest data written to new
//!    clusters before this flush is durable too;
//! 2. changed L2 tables already linked from the L1 table, and the changed L1 entries
//!    (which link the new tables); then `fdatasync`;
//! 3. only when some entries moved off a cluster (a compressed or shared one): the
//!    decrements of those clusters; then `fdatasync`.
//!
//! A crash during 1 leaves increments without references (leaks); during 2, each L2
//! or L1 entry is either old or new, and every new one points at data and tables
//! already durable and counted; during 3, clusters still counted but unused (leaks).
//! Rare allocations order themselves (see `refcount`): a new refcount block is
//! durable before its table entry, a grown refcount table before the header names it.

use std::io;

use super::{Qcow2, State, Storage};

impl<S: Storage> Qcow2<S> {
    /// Makes every write so far durable, and the image consistent on disk.
    pub fn flush(&self) -> io::Result<()> {
        let mut st = self.lock()?;
        self.flush_locked(&mut st)
    }

    pub(super) fn flush_locked(&self, st: &mut State) -> io::Result<()> {
        let Some(rc) = st.rc.as_mut() else {
            return Ok(());
        };
        let changed = rc.has_dirty()
            || !rc.pending_free.is_empty()
            || !st.l1_dirty.is_empty()
            || st.l2.dirty_count() > 0;
        if !changed {
            if st.wrote {
                self.store.sync_data()?;
                st.wrote = false;
            }
            return Ok(());
        }
        rc.write_dirty(&self.store)?;
        self.write_l2(st, false)?;
        self.store.sync_data()?;
        self.write_l2(st, true)?;
        self.write_l1(st)?;
        for t in st.l2.iter_mut() {
            t.linked = true;
        }
        self.store.sync_data()?;
        st.wrote = false;
        let Some(rc) = st.rc.as_mut() else {
            return Ok(());
        };
        if !rc.pending_free.is_empty() {
            rc.apply_frees(&self.store)?;
            rc.write_dirty(&self.store)?;
            self.store.sync_data()?;
        }
        Ok(())
    }

    /// Writes the changed L2 tables that are (`linked`) or are not yet reachable
    /// from the L1 table on disk.
    fn write_l2(&self, st: &mut State, linked: bool) -> io::Result<()> {
        let mut len = st.file_len;
        for t in st.l2.iter_mut().filter(|t| t.dirty && t.linked == linked) {
            let raw: Vec<u8> = t.data.iter().flat_map(|e| e.to_be_bytes()).collect();
            self.store.write_all_at(t.off, &raw)?;
            len = len.max(t.off + raw.len() as u64);
            t.dirty = false;
        }
        st.file_len = len;
        Ok(())
    }

    /// Writes the changed L1 entries, a run of neighbours at a time.
    fn write_l1(&self, st: &mut State) -> io::Result<()> {
        let dirty: Vec<usize> = st.l1_dirty.iter().copied().collect();
        let mut i = 0;
        while i < dirty.len() {
            let mut j = i + 1;
            while j < dirty.len() && dirty[j] == dirty[j - 1] + 1 {
                j += 1;
            }
            let (first, last) = (dirty[i], dirty[j - 1]);
            let raw: Vec<u8> = st.l1[first..=last]
                .iter()
                .flat_map(|e| e.to_be_bytes())
                .collect();
            self.store
                .write_all_at(self.hdr.l1_offset + first as u64 * 8, &raw)?;
            for k in &dirty[i..j] {
                st.l1_dirty.remove(k);
            }
            i = j;
        }
        Ok(())
    }
}

impl<S: Storage> Drop for Qcow2<S> {
    /// A closed image holds every write: metadata still in memory is written (an
    /// error here has no one to go to; the image then has at most leaks).
    fn drop(&mut self) {
        if let Ok(mut st) = self.st.lock() {
            let _ = self.flush_locked(&mut st);
        }
    }
}
